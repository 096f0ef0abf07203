"""Node pools, instance lifecycle and autoscalers: invariants, the plugin kind, bad input.

Parity of upstream's pipeline (``wva``) is checked by the corpus (family ``n_``); these tests
check what must hold for any autoscaler on runs the corpus does not cover.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blis_core
from _shared import run_cli
from blis_core.infrastructure import HOLDS_GPUS, TERMINATED
from blis_core.plugins import get_registry
from blis_core.protocols import Autoscaler

MODEL = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 "
         "--alpha-coeffs 232.46191091038054,1.752360364195244,3357.4400353290152 "
         "--beta-coeffs 5752.705191348184,17.25086436834028,5.999143920128404 "
         "--max-model-len 4096 --total-kv-blocks 1500")


def pools(gpus_h100: int, nodes_h100: int, gpus_a100: int = 0) -> str:
    text = ("node_pools:\n"
            f"  - {{name: h100, gpu_type: H100, gpus_per_node: {gpus_h100}, gpu_memory_gib: 80,"
            f" initial_nodes: {nodes_h100}, max_nodes: {nodes_h100}, cost_per_hour: 12}}\n")
    if gpus_a100:
        text += (f"  - {{name: a100, gpu_type: A100-80, gpus_per_node: {gpus_a100},"
                 " gpu_memory_gib: 80, initial_nodes: 1, max_nodes: 1, cost_per_hour: 4}\n")
    return text


def autoscaler(policy: str, interval: int = 500_000, params: str = "", extra: str = "") -> str:
    text = f"autoscaler:\n  interval_us: {interval}\n  policy: {policy}\n{extra}"
    if params:
        text += f"  params: {{{params}}}\n"
    return text


def run(tmp_path, bundle: str, args: str):
    path = tmp_path / "policy.yaml"
    path.write_text(bundle)
    return blis_core.evaluate(blis_core.RunConfig.from_args(f"{MODEL} {args}"), str(path))


def check_lifecycle(result) -> None:
    """GPUs never over-committed, and no request routed where it must not go."""
    sim = result.simulation
    elastic = sim.cluster.elastic
    placement = elastic.placement
    for inst in sim.instances:
        held = placement.held.get(inst.id, [])
        if inst.state in HOLDS_GPUS:
            assert len(held) == max(inst.tp_degree, 1), inst.id
            assert all(node.pool.gpu_type == inst.gpu_type for node, _ in held)
        else:
            assert inst.state == TERMINATED and not held
    assert placement.used_gpus() <= placement.total_gpus()
    holders = [h for nodes in placement.nodes for node in nodes for h in node.holders
               if h is not None]
    assert len(holders) == sum(len(v) for v in placement.held.values())
    for record in result.decisions:
        if record["kind"] != "routing":
            continue
        target, tick = record["chosen"], record["clock"]
        assert elastic.loaded[target] <= tick, record     # never while Loading
        assert tick <= elastic.drained.get(target, tick), record


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(policy=st.sampled_from(["wva", "threshold", "oscillator"]),
       gpus=st.integers(1, 4), a100=st.sampled_from([0, 2]), start=st.integers(1, 3),
       rate=st.sampled_from([5.0, 40.0]), delay=st.sampled_from([0.0, 0.3]),
       routing=st.sampled_from(["round-robin", "least-loaded"]),
       loading=st.sampled_from([0.0, 0.7]), seed=st.integers(0, 2**31 - 1))
def test_placement_and_routing_respect_the_lifecycle(tmp_path, policy, gpus, a100, start, rate,
                                                     delay, routing, loading, seed):
    extra = f"  hpa_scrape_delay: {{mean: {delay}, stddev: 0.1}}\n"
    params = "cooldown_us: 1000000" if policy == "threshold" else ""
    bundle = (f"routing: {{policy: {routing}}}\n" + pools(gpus, 1, a100)
              + autoscaler(policy, params=params, extra=extra)
              + f"instance_lifecycle: {{loading_delay: {{mean: {loading}, stddev: 0.2}}}}\n")
    result = run(tmp_path, bundle, f"--num-instances {start} --rate {rate} --num-requests 120 "
                 f"--seed {seed} --prompt-tokens 600 --output-tokens 80 --trace-level decisions")
    check_lifecycle(result)
    sim = result.simulation
    assert len(sim.instances) <= gpus + a100 + sim.cluster.elastic.scale_ups
    m = result.metrics
    assert m.arrived == m.injected + m.rejected_requests + m.routing_rejections
    assert m.completed + m.still_queued + m.still_running + m.dropped_unservable \
        + m.timed_out == m.injected


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(low=st.integers(1, 2), span=st.integers(0, 2), rate=st.sampled_from([4.0, 60.0]),
       seed=st.integers(0, 2**31 - 1))
def test_threshold_keeps_replicas_within_bounds(tmp_path, low, span, rate, seed):
    high = low + span
    bundle = ("routing: {policy: least-loaded}\n" + pools(8, 1)
              + autoscaler("threshold", params=f"min_replicas: {low}, max_replicas: {high}, "
                           "cooldown_us: 0, scale_out_queue_depth: 1"))
    result = run(tmp_path, bundle, f"--num-instances {low} --rate {rate} --num-requests 150 "
                 f"--seed {seed} --prompt-tokens 900 --output-tokens 120")
    timeline = result.metrics.elasticity.timeline
    assert all(low <= count <= high for _, count in timeline), timeline


STEADY = "--num-instances 2 --rate 6 --num-requests 200 --seed 3 --prompt-tokens 500 " \
         "--output-tokens 60"


def test_oscillator_trips_the_oscillation_counter_and_threshold_does_not(tmp_path):
    base = "routing: {policy: least-loaded}\n" + pools(4, 1)
    oscillating = run(tmp_path, base + autoscaler("oscillator"), STEADY)
    steady = run(tmp_path, base + autoscaler("threshold", params="cooldown_us: 2000000"), STEADY)
    assert oscillating.anomalies.scale_oscillations >= 5
    assert oscillating.metrics.elasticity.scale_ups >= 5
    assert steady.anomalies.scale_oscillations == 0
    assert steady.metrics.elasticity.scale_downs == 1     # two idle replicas, min 1
    # Lower is better for the elasticity fitness keys: the steady scaler scores higher.
    weights = {"scale_oscillations": 1.0}
    assert (blis_core.evaluation.compute_fitness(steady.metrics, weights).score
            > blis_core.evaluation.compute_fitness(oscillating.metrics, weights).score)


def test_replica_seconds_and_cost_follow_the_pools(tmp_path):
    bundle = "routing: {policy: round-robin}\n" + pools(1, 1, gpus_a100=2)
    result = run(tmp_path, bundle, "--num-instances 3 --rate 20 --num-requests 100")
    e = result.metrics.elasticity
    seconds = result.metrics.sim_duration_us / 1e6
    assert e.replica_seconds == pytest.approx(3 * seconds)
    assert e.gpu_cost == pytest.approx(seconds / 3600 * (12 + 4 + 4))
    assert (e.scale_ups, e.scale_downs, e.min_replicas, e.max_replicas) == (0, 0, 3, 3)


def test_blis_only_lines_print_only_for_blis_autoscalers(tmp_path, capsys):
    base = "routing: {policy: least-loaded}\n" + pools(4, 1)
    for policy, shown in (("oscillator", True), ("wva", False)):
        (tmp_path / "p.yaml").write_text(base + autoscaler(policy))
        code, out, _ = run_cli(f"run {MODEL} {STEADY} --policy-config {tmp_path}/p.yaml".split(),
                               capsys)
        assert code == 0
        assert ("=== Autoscaling Metrics ===" in out) == shown
        assert ("Scale Oscillations:" in out) == shown


def test_every_autoscaler_satisfies_the_protocol():
    entries = get_registry().entries("autoscaler")
    assert {"wva", "threshold", "oscillator"} <= {e.name for e in entries}
    for entry in entries:
        assert isinstance(entry.cls(), Autoscaler)


@pytest.mark.parametrize("bundle, expected", [
    ("autoscaler: {interval_us: 1, policy: nope}\n", "autoscaler.policy: unknown autoscaler"),
    ("autoscaler: {interval_us: 1, policy: oscillator}\n", "needs node_pools"),
    (pools(4, 1) + "autoscaler: {interval_us: 1, policy: threshold, params: {min_replicas: 4,"
     " max_replicas: 2}}\n", "autoscaler.params: min_replicas 4 must be <= max_replicas 2"),
    ("autoscaler: {interval_us: 1, scale_up_stabilization_window_us: -3}\n",
     "autoscaler.scale_up_stabilization_window_us: must be a finite value >= 0"),
    (pools(4, 1) + "autoscaler: {interval_us: 1, oscillation_window_us: -1}\n",
     "autoscaler.oscillation_window_us: must be a finite value >= 0"),
    (pools(0, 1), "node_pools[0].gpus_per_node: must be >= 1, got 0"),
    (pools(4, 0), "node_pools: no pool has initial nodes"),
])
def test_bad_autoscaler_bundles_exit_2_with_one_line(tmp_path, capsys, bundle, expected):
    (tmp_path / "p.yaml").write_text(bundle)
    code, _, err = run_cli(f"run {MODEL} --policy-config {tmp_path}/p.yaml".split(), capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if "p.yaml" in line]
    assert len(lines) == 1 and expected in lines[0], err


def test_a_loading_instance_becomes_routable_after_its_delay(tmp_path):
    base = "routing: {policy: least-loaded}\n" + pools(4, 1) + autoscaler("oscillator")
    lifecycle = "instance_lifecycle: {loading_delay: {mean: 0.25, stddev: 0}}\n"
    result = run(tmp_path, base + lifecycle, STEADY + " --trace-level decisions")
    elastic = result.simulation.cluster.elastic
    added = [i for i in elastic.started if i.startswith("autoscale-")]
    assert added
    for inst_id in added:
        if inst_id in elastic.loaded:
            assert elastic.loaded[inst_id] - elastic.started[inst_id] == 250_000
    check_lifecycle(result)
