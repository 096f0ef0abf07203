"""The named scenarios (blis_workloads/scenarios.py, docs/workloads.md): each one is registered,
validates, round-trips through YAML, and has the shape it documents.

Shape checks use bounds of k standard deviations of the count or fraction being checked
(binomial or Poisson), with k = 6, so a correct generator fails with probability < 1e-8 per
check; the seeds are fixed, so the tests are deterministic anyway.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blis_core.cli import main
from blis_core.plugins import get_registry
from blis_workloads import (MAX_HORIZON, WorkloadOptions, build_cli_workload, generate_workload,
                            parse_workload_spec)
from blis_workloads.scenarios import (SCENARIOS, CacheWarmupScenario, DiurnalCycleScenario,
                                      LoadSpikeScenario, dump_workload_spec)

K = 6.0
NAMES = [cls.name for cls in SCENARIOS]


def generate(name: str, rate: float = 20.0, num_requests: int = 2000, seed: int = 42):
    options = WorkloadOptions(rate=rate, num_requests=num_requests, seed=seed,
                              explicit=frozenset({"rate", "num-requests", "seed"}))
    generators = {e.name: e.cls() for e in get_registry().entries("workload")}
    return build_cli_workload(options, name, generators=generators)


def within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count / n - p) <= K * math.sqrt(p * (1 - p) / n)


def within_poisson(count: int, expected: float) -> bool:
    return abs(count - expected) <= K * math.sqrt(expected)


def test_every_scenario_is_a_registered_workload_generator():
    registered = {e.name: e for e in get_registry().entries("workload")}
    assert len(set(NAMES)) == len(NAMES) == 8
    for cls in SCENARIOS:
        entry = registered[cls.name]
        assert entry.cls is cls
        assert entry.distribution == "blis"
        assert entry.summary                    # the first docstring line, for plugins list


@pytest.mark.parametrize("name", NAMES)
def test_scenario_validates_generates_and_round_trips(name):
    cli = generate(name, num_requests=300)
    spec = cli.spec
    spec.validate()
    assert spec.num_requests == 300 and spec.seed == 42 and spec.aggregate_rate == 20.0
    requests = cli.workload.requests
    assert 0 < len(requests) <= 300
    arrivals = [r.arrival_time for r in requests]
    assert arrivals == sorted(arrivals)
    # The exported YAML loads back as the same spec and generates the same requests.
    again = parse_workload_spec(dump_workload_spec(spec, f"scenario {name}"))
    assert again == spec
    replay = generate_workload(again, MAX_HORIZON, 300).requests
    assert [(r.arrival_time, r.num_input, r.max_output_len, r.client_id) for r in replay] == [
        (r.arrival_time, r.num_input, r.max_output_len, r.client_id) for r in requests]


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(NAMES), rate=st.floats(0.5, 500.0),
       num_requests=st.integers(1, 200), seed=st.integers(-(2**63), 2**63 - 1))
def test_scenarios_scale_with_the_flags(name, rate, num_requests, seed):
    cli = generate(name, rate=rate, num_requests=num_requests, seed=seed)
    assert cli.spec.aggregate_rate == rate and cli.spec.seed == seed
    assert len(cli.workload.requests) <= num_requests
    assert parse_workload_spec(dump_workload_spec(cli.spec)) == cli.spec


def test_bursty_traffic_is_burstier_than_poisson():
    arrivals = np.array([r.arrival_time for r in generate("bursty-traffic").workload.requests])
    iats = np.diff(arrivals)
    # Gamma with cv 3.5; a Poisson stream has cv 1 (its sample cv from 2000 IATs is 1 ± 0.1).
    assert iats.std() / iats.mean() > 2.0
    assert {r.slo_class for r in generate("bursty-traffic", num_requests=50).workload.requests} \
        == {"batch"}


def test_unfair_tenants_split_ninety_ten():
    requests = generate("unfair-tenants").workload.requests
    bulk = sum(r.tenant_id == "tenant-bulk" and r.slo_class == "batch" for r in requests)
    critical = sum(r.tenant_id == "tenant-realtime" and r.slo_class == "critical"
                   for r in requests)
    assert bulk + critical == len(requests) == 2000
    assert within_binomial(bulk, 2000, 0.9)


def test_prefix_heavy_shares_one_prefix_in_eighty_percent():
    requests = generate("prefix-heavy").workload.requests
    shared = [r for r in requests if r.prefix_group == "system-prompt"]
    assert within_binomial(len(shared), len(requests), 0.8)
    assert {r.prefix_length for r in shared} == {50}
    first = shared[0].input_tokens[:50]
    assert all(np.array_equal(r.input_tokens[:50], first) for r in shared)


def test_mixed_slo_thirds():
    requests = generate("mixed-slo", num_requests=3000).workload.requests
    for slo, share in (("critical", 0.33), ("standard", 0.34), ("batch", 0.33)):
        assert within_binomial(sum(r.slo_class == slo for r in requests), 3000, share)


def test_diurnal_cycle_follows_the_cosine():
    cli = generate("diurnal-cycle", num_requests=6000)
    requests = cli.workload.requests
    windows = cli.spec.clients[0].lifecycle.windows
    scenario = DiurnalCycleScenario()
    slot = windows[1].start_us - windows[0].start_us
    counts = np.bincount([r.arrival_time // slot for r in requests], minlength=24)
    assert len(counts) == 24
    for r in requests:
        w = windows[r.arrival_time // slot]
        assert w.start_us <= r.arrival_time < w.end_us
    # Each slot carries rate · active time; the peak slot has 4 times the trough's load.
    # The request cap ends the run near the end of the cycle (the expected count is exactly
    # the cap): only slots that closed before the last arrival are complete.
    rate_per_us = 20.0 / 1e6
    complete = [h for h, w in enumerate(windows) if w.end_us <= requests[-1].arrival_time]
    assert len(complete) >= 20
    for h in complete:
        w = windows[h]
        assert within_poisson(int(counts[h]), rate_per_us * (w.end_us - w.start_us)), h
    assert scenario.multiplier(12) == 1.0 and scenario.multiplier(0) == pytest.approx(0.25)
    assert counts[11:14].sum() > 3 * counts[[0, 1, 23]].sum()


def test_load_spike_has_four_times_the_rate_in_its_window():
    cli = generate("load-spike")
    spike = cli.spec.cohorts[0].spike
    start, end = spike.start_time_us, spike.start_time_us + spike.duration_us
    requests = cli.workload.requests
    for r in requests:
        if r.client_id == "spike-0":
            assert start <= r.arrival_time < end
    last = requests[-1].arrival_time
    inside = sum(start <= r.arrival_time < end for r in requests)
    outside = len(requests) - inside
    assert end < last                                   # the run continues after the spike
    rate_in = inside / (end - start)
    rate_out = outside / (last - (end - start))
    assert within_poisson(inside, 20.0 / 1e6 * (end - start))
    assert 3.0 < rate_in / rate_out < 5.5
    # The expected span places the spike 40%..60% into the run.
    assert start / last == pytest.approx(LoadSpikeScenario.spike_start, abs=0.08)


def test_cache_warmup_front_loads_shared_prefixes():
    cli = generate("cache-warmup")
    end = cli.spec.clients[0].lifecycle.windows[0].end_us
    requests = cli.workload.requests
    warm = [r for r in requests if r.client_id.startswith("warmup-")]
    assert warm and all(r.arrival_time < end for r in warm)
    early = [r for r in requests if r.arrival_time < end]
    late = [r for r in requests if r.arrival_time >= end]
    # During the warm-up 9/10 of the load carries a shared prefix, afterwards 3/4.
    assert within_binomial(sum(bool(r.prefix_group) for r in early), len(early), 0.9)
    assert within_binomial(sum(bool(r.prefix_group) for r in late), len(late), 0.75)
    assert len(early) / end > 2 * len(late) / (requests[-1].arrival_time - end)
    lengths = dict(CacheWarmupScenario.groups)
    assert all(r.prefix_length == lengths[r.prefix_group] for r in requests if r.prefix_group)


def test_multi_turn_chat_keeps_round_zero_and_hands_later_rounds_to_sessions():
    workload = generate("multi-turn-chat", num_requests=500).workload
    assert workload.requests and all(r.round_index == 0 for r in workload.requests)
    sessions = workload.sessions.sessions
    assert set(sessions) == {r.session_id for r in workload.requests}
    assert {s.blueprint.max_rounds for s in sessions.values()} == {5}
    assert {s.blueprint.context_growth for s in sessions.values()} == {"accumulate"}


def test_blis_run_with_a_scenario_and_with_its_export_agree(tmp_path, capsys):
    engine = ["--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "blackbox",
              "--hardware", "H100", "--tp", "1", "--alpha-coeffs", "232.46,1.75,3357.44",
              "--beta-coeffs", "5752.7,17.25,5.99"]
    flags = ["--rate", "20", "--num-requests", "80", "--seed", "9"]

    def run(argv):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code in (0, None)
        return capsys.readouterr().out

    by_name = run(["run", *engine, "--workload", "load-spike", *flags])
    assert '"completed_requests": 80' in by_name
    run(["workload", "export", "load-spike", *flags, "-o", str(tmp_path / "spike.yaml")])
    by_file = run(["run", *engine, "--workload-spec", str(tmp_path / "spike.yaml")])
    assert by_file == by_name
