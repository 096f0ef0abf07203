"""Request-by-request parity of the workload generator with upstream's traces.

Every ``blis run`` case of the reference corpus exported its requests (``--trace-output``). The
initial requests (all of them, or round 0 of each session: later rounds are created during the
run) must equal what ``build_cli_workload`` generates from the same flags, field by field. The
legacy golden generator must reproduce ``golden_bb_*/trace_in.csv`` and the sanity values of
engine.md §5.2 / §7.1.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from _shared import requires_shared, shared_dir
from blis_core.gorand import GoRand
from blis_workloads import (LegacyWorkload, WorkloadOptions, build_cli_workload,
                            generate_legacy_requests, generate_requests, generate_workload,
                            records_from_requests)
from blis_workloads.spec import ArrivalSpec, ClientSpec, DistSpec, WorkloadSpec
from blis_workloads.tracev2 import _csv_row
from workload_cases import case_dir, run_cases_with_trace, trace_rows, workload_arguments

# Columns 1..19: client_id .. arrival_time_us (request_id and the run's timing excluded).
_WORKLOAD_COLUMNS = slice(1, 20)


def _workload_fields(requests) -> list[list[str]]:
    return [_csv_row(r).rstrip("\n").split(",")[_WORKLOAD_COLUMNS]
            for r in records_from_requests(requests)]


@requires_shared
@pytest.mark.parametrize("case", run_cases_with_trace())
def test_initial_requests_match_upstream_trace(case):
    options, workload, spec_path, horizon = workload_arguments(case)
    generated = build_cli_workload(options, workload, spec_path, horizon).workload
    rows = trace_rows(case_dir(case) / "trace.csv")
    # Follow-up rounds (round_index > 0 of a session) were injected during the run.
    initial = [row[_WORKLOAD_COLUMNS] for row in rows if row[4] == "" or row[5] == "0"]
    got = _workload_fields(generated.requests)
    assert len(got) == len(initial)
    for i, (g, want) in enumerate(zip(got, initial)):
        assert g == want, f"request_{i}"
    assert [r.id for r in generated.requests] == [f"request_{i}" for i in range(len(got))]


@requires_shared
def test_cli_worked_example_golden_case_1():
    """engine.md §5.3: request_0 at 99999 µs with (L, O) = (336, 278); totals 106434 / 63609."""
    options, workload, spec_path, horizon = workload_arguments("golden_bb_run_1")
    cli = build_cli_workload(options, workload, spec_path, horizon)
    reqs = cli.workload.requests
    assert (reqs[0].arrival_time, reqs[0].num_input, reqs[0].num_output) == (99999, 336, 278)
    assert sum(r.num_input for r in reqs) == 106434
    assert sum(r.num_output for r in reqs) == 63609
    assert all(r.max_output_len == r.num_output and r.deadline == 0 for r in reqs)
    assert cli.workload.sessions is None and cli.workload.follow_up_budget == -1


@requires_shared
def test_roofline_sessions_keep_round_zero_with_blueprints():
    options, workload, spec_path, horizon = workload_arguments("golden_roofline_17")
    wl = build_cli_workload(options, workload, spec_path, horizon).workload
    assert all(r.round_index == 0 and r.session_id.startswith("sess_") for r in wl.requests)
    assert set(wl.sessions.sessions) == {r.session_id for r in wl.requests}
    assert all(r.deadline == r.arrival_time + 300_000_000 for r in wl.requests)
    # Total completions of an unhindered run = Σ MaxRounds of the surviving sessions (5100).
    assert sum(s.blueprint.max_rounds for s in wl.sessions.sessions.values()) == 5100


def _session_cases() -> list[str]:
    return [case for case in run_cases_with_trace()
            if any(row[5] != "0" for row in trace_rows(case_dir(case) / "trace.csv"))]


@requires_shared
@pytest.mark.parametrize("case", _session_cases())
def test_follow_up_rounds_match_upstream_trace(case):
    """Replays each session's completions (tick = next arrival - think time) through the
    SessionManager: every follow-up row of upstream's trace is reproduced (lengths, context
    accumulation, prefix, arrival, deadline) without running the engine. A completed request
    leaves ProgressIndex at L + O - 1 (the last token is emitted without advancing it), so
    accumulation carries O - 1 output tokens."""
    options, workload, spec_path, horizon = workload_arguments(case)
    wl = build_cli_workload(options, workload, spec_path, horizon).workload
    latest = {r.session_id: r for r in wl.requests}
    rows = [row for row in trace_rows(case_dir(case) / "trace.csv") if row[5] != "0"]
    assert rows
    for row in sorted(rows, key=lambda row: int(row[5])):
        prev = latest[row[4]]
        prev.state, prev.progress = "completed", prev.num_input + prev.num_output - 1
        think = wl.sessions.sessions[row[4]].blueprint.think_time_us
        follow = wl.sessions.on_complete(prev, int(row[19]) - think)
        assert follow is not None and follow.round_index == int(row[5])
        got = _csv_row(records_from_requests([follow])[0]).rstrip("\n").split(",")
        assert got[_WORKLOAD_COLUMNS] == row[_WORKLOAD_COLUMNS]
        latest[row[4]] = follow


def _golden_cases():
    base = shared_dir()
    if base is None:
        return []
    path = base / "reference" / "upstream" / "testdata" / "goldendataset.json"
    return list(enumerate(json.loads(path.read_text())["tests"], start=1))


@requires_shared
@pytest.mark.parametrize("number,case", _golden_cases())
def test_legacy_generator_reproduces_golden_workload(number, case):
    reqs = generate_legacy_requests(LegacyWorkload.from_golden_case(case))
    rows = trace_rows(case_dir(f"golden_bb_{number}") / "trace_in.csv")
    assert len(reqs) == len(rows) == case["num-requests"]
    prefix = case["prefix_tokens"]
    for req, row in zip(reqs, rows):
        assert (req.num_input - prefix, req.num_output, req.arrival_time) == (
            int(row[9]), int(row[10]), int(row[19]))
    assert [r.id for r in reqs] == [f"request_{i}" for i in range(len(reqs))]
    assert all(r.max_output_len == 0 and r.deadline == 0 for r in reqs)


@requires_shared
def test_legacy_sanity_values_case_1():
    """engine.md §5.2/§7.1 and engine-pr4.md appendix A."""
    case = _golden_cases()[0][1]
    reqs = generate_legacy_requests(LegacyWorkload.from_golden_case(case))
    assert [(r.num_input, r.num_output) for r in reqs[:4]] == [(414, 212), (381, 246),
                                                                (354, 53), (365, 287)]
    assert [r.arrival_time for r in reqs[:4]] == [0, 99999, 199998, 299997]
    assert reqs[-1].arrival_time == 29899701
    assert reqs[0].input_tokens[:4].tolist() == [48305, 38987, 1668, 50750]
    assert sum(r.num_input for r in reqs) == 106250
    assert sum(r.num_output for r in reqs) == 65040
    # One shared prefix for all requests.
    assert all(np.array_equal(r.input_tokens[:284], reqs[0].input_tokens[:284]) for r in reqs)


def test_legacy_case_2_first_prompt_draws_norm_first():
    """engine-pr4.md appendix A: golden case 2's first prompt token is the 2nd Intn value."""
    w = LegacyWorkload(rate=10, num_requests=3, prefix_tokens=0, prompt_tokens=2048,
                       prompt_tokens_stdev=1974, prompt_tokens_min=2, prompt_tokens_max=3500,
                       output_tokens=28, output_tokens_stdev=60, output_tokens_min=6,
                       output_tokens_max=200, seed=42)
    reqs = generate_legacy_requests(w)
    assert (reqs[0].num_input, reqs[0].num_output) == (3500, 72)
    assert reqs[0].input_tokens[0] == 38987


def test_legacy_horizon_stops_after_first_arrival_past_it():
    w = LegacyWorkload(rate=10, num_requests=100, prefix_tokens=0, prompt_tokens=10,
                       prompt_tokens_stdev=0, prompt_tokens_min=10, prompt_tokens_max=10,
                       output_tokens=5, output_tokens_stdev=0, output_tokens_min=5,
                       output_tokens_max=5, seed=1)
    reqs = generate_legacy_requests(w, horizon=250000)
    assert [r.arrival_time for r in reqs] == [0, 99999, 199998]


def _two_client_spec(**client_overrides) -> WorkloadSpec:
    gaussian = DistSpec("gaussian", {"mean": 50.0, "std_dev": 10.0, "min": 1.0, "max": 100.0})
    a = ClientSpec(id="a", rate_fraction=0.5, arrival=ArrivalSpec("poisson"),
                   input_distribution=gaussian, output_distribution=gaussian, prefix_group="g")
    b = ClientSpec(id="b", rate_fraction=0.5, arrival=ArrivalSpec("constant"),
                   input_distribution=gaussian, output_distribution=gaussian,
                   **client_overrides)
    return WorkloadSpec(version="2", seed=7, aggregate_rate=100.0, clients=[a, b])


def test_lazy_merge_equals_full_generation_then_truncation():
    """Truncating to N must equal generating everything (horizon-bounded) then cutting."""
    spec = _two_client_spec()
    full = generate_requests(spec, horizon=3_000_000, max_requests=0)
    capped = generate_requests(spec, horizon=3_000_000, max_requests=50)
    assert len(capped) == 50
    assert [(r.client_id, r.arrival_time, r.num_input) for r in capped] == [
        (r.client_id, r.arrival_time, r.num_input) for r in full[:50]]
    assert all(a.arrival_time <= b.arrival_time for a, b in zip(full, full[1:]))


def test_default_prefix_is_fifty_tokens_shared_by_the_group():
    reqs = generate_requests(_two_client_spec(prefix_group="g", prefix_length=200),
                             horizon=1_000_000, max_requests=40)
    prefixes = {r.input_tokens[:50].tobytes() for r in reqs}
    assert len(prefixes) == 1
    # The group's length comes from its first client (a: default 50), not from b's 200.
    assert {r.prefix_length for r in reqs} == {50}


def test_generation_leaves_the_spec_untouched():
    spec = _two_client_spec()
    spec.version = "1"
    spec.clients[0].slo_class = "realtime"
    generate_workload(spec, 1_000_000, 10)
    assert spec.version == "1" and spec.clients[0].slo_class == "realtime"


def test_zero_horizon_generates_nothing():
    assert generate_requests(_two_client_spec(), horizon=0, max_requests=10) == []


def test_timeout_and_closed_loop_deadlines():
    reqs = generate_requests(_two_client_spec(timeout=5000), 1_000_000, 20)
    for r in reqs:
        assert r.deadline == (r.arrival_time + 5000 if r.client_id == "b" else 0)
    reqs = generate_requests(_two_client_spec(closed_loop=True), 1_000_000, 20)
    for r in reqs:
        assert r.deadline == (r.arrival_time + 300_000_000 if r.client_id == "b" else 0)
    reqs = generate_requests(_two_client_spec(timeout=0, closed_loop=True), 1_000_000, 20)
    assert all(r.deadline == 0 for r in reqs)


def test_concurrency_workload_seeds_and_budget():
    options = WorkloadOptions(concurrency=4, think_time_ms=100, num_requests=10,
                              prefix_tokens=16, explicit=frozenset({"num-requests"}))
    wl = build_cli_workload(options).workload
    assert [r.arrival_time for r in wl.requests] == [0, 25000, 50000, 75000]
    assert [r.session_id for r in wl.requests] == [
        f"concurrency_distribution_user_{u}" for u in range(4)]
    assert wl.follow_up_budget == 6
    assert wl.sessions.follow_up_budget == 6


def test_block_rand_matches_gorand_for_the_generation_draw_mix():
    from blis_workloads.distributions import BlockRand
    for seed in (42, -1, 0):
        a, b = GoRand(seed), BlockRand(seed)
        for k in range(400):
            assert a.norm_float64() == b.norm_float64()
            assert a.exp_float64() == b.exp_float64()
            n = (k * 7919) % 3000
            assert np.array_equal(a.intn_array(128000, n), b.intn_array(128000, n))
            assert a.int63() == b.int63()
            assert a.float64() == b.float64()
            assert a.intn(17) == b.intn(17)


def test_shared_prefix_is_joined_on_first_read_and_tokens_drop_after_completion():
    from blis_core.request import Request

    prefix = np.arange(5, dtype=np.int32)
    own = np.array([7, 8], dtype=np.int32)
    req = Request("r", 0, own, np.array([9], dtype=np.int32), 1, shared_prefix=prefix)
    assert (req.num_input, req.num_output) == (7, 1)
    assert req.input_tokens.tolist() == [0, 1, 2, 3, 4, 7, 8]
    assert req.input_tokens is req.input_tokens           # joined once
    req.input_tokens = own
    assert req.input_tokens is own
    req.hash_chain = [1]
    req.drop_tokens()
    assert (req.input_tokens, req.output_tokens, req.hash_chain) == (None, None, None)
    assert (req.num_input, req.num_output) == (7, 1)     # lengths stay for the metrics
