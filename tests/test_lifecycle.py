"""blis lifecycle extensions: node provisioning, warm-up and drain policies (docs/autoscaling.md).

Each is off by default; with the keys at their defaults a run is byte-identical to one without
them, so upstream parity (corpus family ``n_``) is untouched.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _shared import run_cli
from blis_core.autoscaling import WarmUp
from blis_core.infrastructure import (ACTIVE, DRAINING, NODE_PROVISIONING, NODE_READY,
                                      TERMINATED, WARMING_UP)
from test_autoscaling import MODEL, autoscaler, check_lifecycle, pools, run

SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
BUSY = "--num-instances 2 --prompt-tokens 600 --output-tokens 80 --trace-level decisions"


def lifecycle(**fields) -> str:
    body = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return f"instance_lifecycle: {{{body}}}\n"


def growing_pool(delay: str, initial: int = 1, most: int = 3) -> str:
    return ("routing: {policy: least-loaded}\nnode_pools:\n"
            f"  - {{name: h100, gpu_type: H100, gpus_per_node: 1, gpu_memory_gib: 80,"
            f" initial_nodes: {initial}, max_nodes: {most}, cost_per_hour: 12,"
            f" provisioning_delay: {delay}}}\n")


def conserved(m) -> None:
    assert m.arrived == m.injected + m.rejected_requests + m.routing_rejections
    assert m.completed + m.still_queued + m.still_running + m.dropped_unservable \
        + m.timed_out == m.injected


# -- provisioning --------------------------------------------------------------------------------
SCALE_OUT = autoscaler("threshold", params="cooldown_us: 0, scale_out_queue_depth: 1",
                       extra="  provision_nodes: true\n")
LOADED = "--num-instances 1 --rate 30 --num-requests 200 --seed 3 --prompt-tokens 600 " \
         "--output-tokens 80 --trace-level decisions"


def test_a_provisioned_node_delays_its_instance_by_the_provisioning_delay(tmp_path):
    bundle = (growing_pool("{mean: 0.5, stddev: 0}") + SCALE_OUT
              + lifecycle(loading_delay="{mean: 0.2, stddev: 0}"))
    result = run(tmp_path, bundle, LOADED)
    elastic = result.simulation.cluster.elastic
    nodes = [node for pool in elastic.placement.nodes for node in pool]
    assert [n.id for n in nodes] == ["h100-0", "h100-1", "h100-2"]
    assert all(n.state == NODE_READY for n in nodes)
    assert result.metrics.elasticity.nodes_provisioned == 2
    added = [i for i in elastic.started if i.startswith("autoscale-")]
    assert len(added) == 2
    for inst_id in added:    # provisioning, then loading, then routable
        assert elastic.loaded[inst_id] - elastic.started[inst_id] == 500_000 + 200_000
    check_lifecycle(result)
    conserved(result.metrics)


def test_without_provision_nodes_a_full_pool_fails_the_scale_up_as_upstream(tmp_path):
    # wva's optimizer ignores the inventory, so it asks for replicas the pool has no room for.
    bundle = growing_pool("{mean: 0.5, stddev: 0}") + autoscaler("wva")
    result = run(tmp_path, bundle, LOADED)
    e = result.metrics.elasticity
    assert e.nodes_provisioned == 0 and e.scale_ups == 0 and e.failed_placements > 0
    assert len(result.simulation.cluster.elastic.placement.nodes[0]) == 1


def test_instances_wait_on_a_provisioning_node_in_scheduling(tmp_path):
    # Scale-ups of 1-GPU instances onto 2-GPU nodes: the second shares the first's new node.
    bundle = ("routing: {policy: least-loaded}\nnode_pools:\n"
              "  - {name: h100, gpu_type: H100, gpus_per_node: 2, gpu_memory_gib: 80,"
              " initial_nodes: 1, max_nodes: 2, cost_per_hour: 12,"
              " provisioning_delay: {mean: 5, stddev: 0}}\n"
              + autoscaler("oscillator", extra="  provision_nodes: true\n")
              .replace("policy: oscillator", "policy: threshold")
              + "  params: {cooldown_us: 0, scale_out_queue_depth: 0.5}\n")
    result = run(tmp_path, bundle, "--num-instances 2 --rate 40 --num-requests 300 --seed 5 "
                 "--prompt-tokens 600 --output-tokens 80 --trace-level decisions")
    elastic = result.simulation.cluster.elastic
    assert result.metrics.elasticity.nodes_provisioned == 1
    on_new = [i for i in elastic.started if i.startswith("autoscale-")]
    assert len(on_new) == 2
    assert all(elastic.loaded[i] == 5_000_000 + min(elastic.started[j] for j in on_new)
               for i in on_new)
    check_lifecycle(result)


# -- warm-up -------------------------------------------------------------------------------------
class _Latency:
    needs_positions = False

    def step_time(self, *args) -> int:
        return 100

    def output_token_processing_time(self) -> int:
        return 7


class _Inst:
    id = "i"
    state = ""


def test_warm_up_slows_exactly_the_first_steps_then_activates():
    inst = _Inst()
    inst.latency = base = _Latency()
    inst.state = WARMING_UP
    inst.latency = WarmUp(inst, 3, 2.5)
    times = []
    for _ in range(5):
        latency = inst.latency
        times.append(latency.step_time(1, 2, None, None))
        assert latency.output_token_processing_time() == 7
    assert times == [250, 250, 250, 100, 100]
    assert inst.latency is base and inst.state == ACTIVE


def test_added_instances_warm_up_then_serve_at_full_speed(tmp_path):
    bundle = ("routing: {policy: least-loaded}\n" + pools(4, 1) + autoscaler("oscillator")
              + lifecycle(warm_up_steps=5, warm_up_factor=4))
    plain = run(tmp_path, bundle.replace("warm_up_steps: 5", "warm_up_steps: 0"),
                BUSY + " --rate 30 --num-requests 300 --seed 3")
    warm = run(tmp_path, bundle, BUSY + " --rate 30 --num-requests 300 --seed 3")
    added = [i for i in warm.simulation.instances if i.id.startswith("autoscale-")]
    assert added
    for inst in added:
        if inst.step_count > 5:
            assert inst.state in (ACTIVE, DRAINING, TERMINATED)
            assert not isinstance(inst.latency, WarmUp)
        elif inst.step_count > 0:
            assert inst.state in (WARMING_UP, TERMINATED)
    startup = [i for i in warm.simulation.instances if not i.id.startswith("autoscale-")]
    assert all(not isinstance(i.latency, WarmUp) for i in startup)
    assert warm.metrics.ttft_us.mean != plain.metrics.ttft_us.mean
    check_lifecycle(warm)


# -- drain policies ------------------------------------------------------------------------------
def drained_run(tmp_path, policy: str, rate: float, seed: int, gpus: int = 4,
                prompt: int = 600):
    bundle = ("routing: {policy: least-loaded}\n" + pools(gpus, 1) + autoscaler("oscillator")
              + lifecycle(drain_policy=policy))
    return run(tmp_path, bundle, f"{BUSY} --rate {rate} --num-requests 150 --seed {seed}"
               .replace("--prompt-tokens 600", f"--prompt-tokens {prompt}"))


@SETTINGS
@given(rate=st.sampled_from([10.0, 40.0, 120.0, 400.0]), seed=st.integers(0, 2**31 - 1),
       gpus=st.integers(2, 4), prompt=st.sampled_from([600, 1500]))
def test_redirect_loses_no_request(tmp_path, rate, seed, gpus, prompt):
    result = drained_run(tmp_path, "REDIRECT", rate, seed, gpus, prompt)
    m = result.metrics
    conserved(m)
    assert m.routing_rejections == 0 and m.rejected_requests == 0
    assert m.completed == m.arrived, "every request, redirected or not, completes"
    assert m.elasticity.drain_dropped == 0
    # Each redirected request was routed once more than the others.
    routed = [r["request_id"] if "request_id" in r else r.get("id")
              for r in result.decisions if r["kind"] == "routing"]
    assert len(routed) == m.arrived + m.elasticity.drain_redirected
    check_lifecycle(result)


@SETTINGS
@given(rate=st.sampled_from([10.0, 40.0, 120.0, 400.0]), seed=st.integers(0, 2**31 - 1),
       prompt=st.sampled_from([600, 1500]))
def test_wait_drained_instances_finish_their_requests(tmp_path, rate, seed, prompt):
    result = drained_run(tmp_path, "WAIT", rate, seed, prompt=prompt)
    m = result.metrics
    conserved(m)
    assert m.completed == m.arrived
    drained = [i for i in result.simulation.instances if i.state in (DRAINING, TERMINATED)]
    assert drained
    for inst in drained:
        assert not inst.wait and not inst.running
        assert inst.in_flight == 0
    assert m.elasticity.drain_dropped == m.elasticity.drain_redirected == 0
    check_lifecycle(result)


@SETTINGS
@given(rate=st.sampled_from([10.0, 40.0, 120.0, 400.0]), seed=st.integers(0, 2**31 - 1),
       prompt=st.sampled_from([600, 1500]))
def test_immediate_drops_what_the_instance_held_and_conserves(tmp_path, rate, seed, prompt):
    result = drained_run(tmp_path, "IMMEDIATE", rate, seed, prompt=prompt)
    m = result.metrics
    conserved(m)
    # The workload is servable, so every drop is the drain's.
    assert m.dropped_unservable == m.elasticity.drain_dropped
    assert m.completed + m.dropped_unservable == m.arrived
    for inst in result.simulation.instances:
        if inst.state == TERMINATED:
            assert not inst.wait and not inst.running and inst.in_flight == 0
    assert all(i.state != DRAINING for i in result.simulation.instances)
    check_lifecycle(result)


def test_immediate_drops_requests_under_load(tmp_path):
    result = drained_run(tmp_path, "IMMEDIATE", 400.0, 3, prompt=1500)
    assert result.metrics.elasticity.drain_dropped > 0


def test_redirect_moves_queued_requests_under_load(tmp_path):
    result = drained_run(tmp_path, "REDIRECT", 400.0, 3, prompt=1500)
    assert result.metrics.elasticity.drain_redirected > 0


# -- defaults and bad input ----------------------------------------------------------------------
DEFAULTS = ("instance_lifecycle: {loading_delay: {mean: 0, stddev: 0}, warm_up_steps: 0,"
            " warm_up_factor: 1.0, drain_policy: WAIT}\n")


@pytest.mark.parametrize("policy", ["wva", "oscillator"])
def test_lifecycle_keys_at_their_defaults_change_no_byte(tmp_path, capsys, policy):
    base = growing_pool("{mean: 3, stddev: 1}") + autoscaler(policy)
    outputs = []
    for i, extra in enumerate(("", DEFAULTS + "", DEFAULTS.replace("drain_policy: WAIT", "")
                               )):
        bundle = base + ("  provision_nodes: false\n" if i == 1 else "") + extra
        (tmp_path / f"p{i}.yaml").write_text(bundle)
        results = tmp_path / f"r{i}.json"
        code, out, err = run_cli(f"run {MODEL} --num-instances 1 --rate 30 --num-requests 120 "
                               f"--seed 9 --policy-config {tmp_path}/p{i}.yaml "
                               f"--metrics-path {results}".split(), capsys)
        assert code == 0, err
        outputs.append((out, results.read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]


@pytest.mark.parametrize("bundle, expected", [
    (lifecycle(warm_up_steps=-1), "instance_lifecycle.warm_up_steps: must be >= 0, got -1"),
    (lifecycle(warm_up_factor=-2), "instance_lifecycle.warm_up_factor: must be a finite value"
                                   " >= 1, got -2"),
    (lifecycle(warm_up_factor=0.5), "instance_lifecycle.warm_up_factor: must be a finite"),
    (lifecycle(warm_up_steps=1.5), "instance_lifecycle.warm_up_steps: expected an integer"),
    (lifecycle(drain_policy="LATER"), "instance_lifecycle.drain_policy: unknown drain policy "
                                      "'LATER' (known: IMMEDIATE, REDIRECT, WAIT)"),
    (lifecycle(drain_policy="wait"), "instance_lifecycle.drain_policy: unknown drain policy"),
    (lifecycle(loading_delay="{mean: -1, stddev: 0}"),
     "instance_lifecycle.loading_delay.mean: must be a finite value >= 0"),
    (growing_pool("{mean: 1, stddev: -1}"),
     "node_pools[0].provisioning_delay.stddev: must be >= 0"),
    ("autoscaler: {interval_us: 1, provision_nodes: 3}\n",
     "autoscaler.provision_nodes: expected true or false"),
])
def test_bad_lifecycle_input_exits_2_with_one_line(tmp_path, capsys, bundle, expected):
    (tmp_path / "p.yaml").write_text(bundle)
    code, _, err = run_cli(f"run {MODEL} --policy-config {tmp_path}/p.yaml".split(), capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if "p.yaml" in line]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err


def test_provisioned_nodes_never_exceed_max_nodes(tmp_path):
    bundle = growing_pool("{mean: 0.1, stddev: 0.05}", most=2) + SCALE_OUT
    result = run(tmp_path, bundle, LOADED.replace("--rate 30", "--rate 80"))
    placement = result.simulation.cluster.elastic.placement
    assert len(placement.nodes[0]) == 2
    assert all(n.state != NODE_PROVISIONING for n in placement.nodes[0])
    assert result.metrics.elasticity.nodes_provisioned == 1


def test_redirect_with_pd_disaggregation_is_refused(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(pools(4, 1) + lifecycle(drain_policy="REDIRECT"))
    code, _, err = run_cli(f"run {MODEL} --num-instances 2 --prefill-instances 1 "
                           f"--decode-instances 1 --policy-config {tmp_path}/p.yaml".split(),
                           capsys)
    assert code == 2
    assert "instance_lifecycle.drain_policy: REDIRECT is not supported with P/D" in err
    assert "Traceback" not in err


@SETTINGS
@given(policy=st.sampled_from(["wva", "threshold", "oscillator"]),
       drain=st.sampled_from(["WAIT", "IMMEDIATE", "REDIRECT"]),
       provisioning=st.sampled_from([0.0, 0.4, 1.5]), loading=st.sampled_from([0.0, 0.3]),
       warm=st.sampled_from([0, 8]), rate=st.sampled_from([20.0, 150.0]),
       seed=st.integers(0, 2**31 - 1))
def test_every_extension_together_keeps_the_lifecycle_and_conservation(
        tmp_path, policy, drain, provisioning, loading, warm, rate, seed):
    params = "cooldown_us: 500000, scale_out_queue_depth: 1" if policy == "threshold" else ""
    bundle = (growing_pool(f"{{mean: {provisioning}, stddev: 0.2}}", most=4)
              + autoscaler(policy, params=params, extra="  provision_nodes: true\n")
              + lifecycle(loading_delay=f"{{mean: {loading}, stddev: 0.1}}",
                          warm_up_steps=warm, warm_up_factor=1.5, drain_policy=drain))
    result = run(tmp_path, bundle, f"--num-instances 1 --rate {rate} --num-requests 150 "
                 f"--seed {seed} --prompt-tokens 700 --output-tokens 60 --trace-level decisions")
    check_lifecycle(result)       # nothing routed while Scheduling, Loading or Draining
    m = result.metrics
    conserved(m)
    assert m.dropped_unservable == m.elasticity.drain_dropped
    if drain != "IMMEDIATE":
        assert m.completed == m.arrived - m.routing_rejections
    placement = result.simulation.cluster.elastic.placement
    assert len(placement.nodes[0]) <= 4
    assert m.elasticity.nodes_provisioned == len(placement.nodes[0]) - 1


def test_redirected_prompts_are_counted_once(tmp_path):
    wait = drained_run(tmp_path, "WAIT", 400.0, 3, prompt=1500)
    redirect = drained_run(tmp_path, "REDIRECT", 400.0, 3, prompt=1500)
    assert redirect.metrics.elasticity.drain_redirected > 0
    for result in (wait, redirect):
        completed = [r for inst in result.simulation.instances for r in inst.completed_requests]
        assert len(completed) == 150
        counted = sum(inst.counters.total_input_tokens for inst in result.simulation.instances)
        assert counted == sum(r.num_input for r in completed)
