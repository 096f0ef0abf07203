"""TraceV2: byte-exact writing, strict reading, replay token synthesis, run-trace records."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from _shared import requires_shared
from blis_core.request import COMPLETED, QUEUED, RUNNING, TIMED_OUT, Request
from blis_workloads import (LegacyWorkload, TraceError, TraceHeader, WorkloadOptions,
                            build_cli_workload, export_run_trace, generate_legacy_requests,
                            load_trace, records_from_requests, replay_requests, write_trace)
from blis_workloads.tracev2 import COLUMNS
from workload_cases import case_dir, corpus_dir, workload_arguments


def _trace_cases() -> list[tuple[str, str]]:
    corpus = corpus_dir()
    if corpus is None:
        return []
    pairs = []
    for d in sorted(corpus.iterdir()):
        for stem in ("trace", "trace_in"):
            if (d / f"{stem}.csv").is_file():
                pairs.append((d.name, stem))
    return pairs


@requires_shared
@pytest.mark.parametrize("case,stem", _trace_cases())
def test_corpus_traces_read_and_rewrite_byte_for_byte(tmp_path, case, stem):
    src = case_dir(case)
    trace = load_trace(src / f"{stem}.yaml", src / f"{stem}.csv")
    write_trace(tmp_path / "t.yaml", tmp_path / "t.csv", trace.header, trace.records)
    assert (tmp_path / "t.yaml").read_bytes() == (src / f"{stem}.yaml").read_bytes()
    assert (tmp_path / "t.csv").read_bytes() == (src / f"{stem}.csv").read_bytes()


def _session_workload():
    options = WorkloadOptions(concurrency=3, think_time_ms=10, num_requests=9, prefix_tokens=8,
                              explicit=frozenset({"num-requests"}))
    return build_cli_workload(options).workload


def test_round_trip_write_read_replay_is_stable(tmp_path):
    wl = _session_workload()
    export_run_trace(tmp_path / "a", wl.requests, workload_seed=wl.seed)
    first = replay_requests(load_trace(tmp_path / "a.yaml", tmp_path / "a.csv"), seed=5)
    export_run_trace(tmp_path / "b", first, mode="replayed")
    second = replay_requests(load_trace(tmp_path / "b.yaml", tmp_path / "b.csv"), seed=5)
    assert len(first) == len(second) == len(wl.requests)
    for orig, a, b in zip(wl.requests, first, second):
        for field in ("arrival_time", "num_input", "num_output", "max_output_len", "deadline",
                      "session_id", "round_index", "client_id", "prefix_group",
                      "prefix_length", "streaming", "tenant_id", "slo_class", "model"):
            assert getattr(orig, field) == getattr(a, field) == getattr(b, field), field
        assert np.array_equal(a.input_tokens, b.input_tokens)
        assert np.array_equal(a.output_tokens, b.output_tokens)
    # One shared prefix per group, drawn once.
    assert len({r.input_tokens[:8].tobytes() for r in first}) == 1
    header = (tmp_path / "b.yaml").read_text()
    assert header == ("trace_version: 2\ntime_unit: microseconds\nmode: replayed\n"
                      "warm_up_requests: 0\n")


def test_replay_draw_order_prefix_then_records():
    """engine.md §5.8: prefixes first (per new group), then input and output ids per record."""
    from blis_core.gorand import GoRand
    from blis_workloads.tracev2 import TraceRecord, TraceV2
    trace = TraceV2(TraceHeader(mode="real"), [
        TraceRecord(0, prefix_group="p", prefix_length=3, input_tokens=2, output_tokens=1),
        TraceRecord(7, input_tokens=1, output_tokens=2, arrival_time_us=9)])
    reqs = replay_requests(trace, seed=11)
    rng = GoRand(11)
    draws = [rng.intn(128000) for _ in range(9)]
    assert reqs[0].input_tokens.tolist() == draws[0:5]
    assert reqs[0].output_tokens.tolist() == draws[5:6]
    assert reqs[1].input_tokens.tolist() == draws[6:7]
    assert reqs[1].output_tokens.tolist() == draws[7:9]
    assert [r.id for r in reqs] == ["request_0", "request_7"]
    assert (reqs[1].arrival_time, reqs[1].max_output_len) == (9, 2)


@requires_shared
def test_replay_of_legacy_trace_keeps_lengths_and_prefix_sharing():
    import json
    from _shared import shared_dir
    case = json.loads((shared_dir() / "reference" / "upstream" / "testdata" /
                       "goldendataset.json").read_text())["tests"][0]
    legacy = generate_legacy_requests(LegacyWorkload.from_golden_case(case))
    src = case_dir("golden_bb_1")
    replayed = replay_requests(load_trace(src / "trace_in.yaml", src / "trace_in.csv"), 42)
    assert [(r.num_input, r.num_output, r.arrival_time) for r in replayed] == [
        (r.num_input, r.num_output, r.arrival_time) for r in legacy]
    assert len({r.input_tokens[:284].tobytes() for r in replayed}) == 1


def _write(tmp_path, header: str, rows: list[str]):
    (tmp_path / "h.yaml").write_text(header)
    (tmp_path / "d.csv").write_text(",".join(COLUMNS) + "\n" + "".join(r + "\n" for r in rows))
    return tmp_path / "h.yaml", tmp_path / "d.csv"


_GOOD = "0,c,,,,0,,0,false,10,5,0,0,0,0,0,,0,0,100,100,0,0,0,ok,,"
_HEADER = "trace_version: 2\ntime_unit: microseconds\nmode: real\nwarm_up_requests: 0\n"


@pytest.mark.parametrize("row,message", [
    (_GOOD.replace(",10,5,", ",x,5,"), "row 2: parsing input_tokens 'x': invalid syntax"),
    (_GOOD.replace(",10,5,", ",-1,5,"),
     "row 2: parsing input_tokens: negative value -1 not allowed"),
    (_GOOD.replace("false", "maybe"), "row 2: parsing streaming 'maybe': invalid syntax"),
    (_GOOD.rsplit(",", 3)[0], "row 2: CSV row has 24 columns, expected at least 27"),
    (_GOOD.replace(",,0,0,100,", ",,50,0,100,"),
     "row 2: parsing deadline_us: value 50 precedes arrival_time_us 100 (corrupt trace?)"),
    (_GOOD.replace(",0,,0,0,100", ",1.5,,0,0,100"),
     "row 2: parsing reason_ratio '1.5': must be in range [0.0, 1.0]"),
])
def test_malformed_rows_name_file_and_row(tmp_path, row, message):
    header, data = _write(tmp_path, _HEADER, [_GOOD, row])
    with pytest.raises(TraceError) as info:
        load_trace(header, data)
    assert str(info.value) == f"{data}: {message}"


def test_header_is_strict(tmp_path):
    header, data = _write(tmp_path, _HEADER + "color: blue\n", [_GOOD])
    with pytest.raises(TraceError, match='color: unknown field "color"'):
        load_trace(header, data)
    with pytest.raises(TraceError, match="reading trace header"):
        load_trace(tmp_path / "missing.yaml", data)


def test_extra_trailing_columns_are_allowed(tmp_path):
    header, data = _write(tmp_path, _HEADER, [_GOOD + ",extra"])
    assert load_trace(header, data).records[0].input_tokens == 10


def test_write_is_atomic_and_world_readable(tmp_path):
    write_trace(tmp_path / "t.yaml", tmp_path / "t.csv", TraceHeader(mode="generated",
                                                                     workload_seed=-3), [])
    assert sorted(os.listdir(tmp_path)) == ["t.csv", "t.yaml"]
    assert stat.S_IMODE(os.stat(tmp_path / "t.csv").st_mode) == 0o644
    assert (tmp_path / "t.yaml").read_text().endswith("workload_seed: -3\n")


def test_csv_fields_are_quoted_like_go(tmp_path):
    from blis_workloads.tracev2 import TraceRecord
    rec = TraceRecord(0, client_id='a,"b"', tenant_id=" lead", model="m", reason_ratio=0.125)
    write_trace(tmp_path / "t.yaml", tmp_path / "t.csv", TraceHeader(mode="real"), [rec])
    line = (tmp_path / "t.csv").read_text().splitlines()[1]
    assert line.startswith('0,"a,""b"""," lead",')
    assert ",0.125,m," in line
    assert load_trace(tmp_path / "t.yaml", tmp_path / "t.csv").records[0] == rec


def _request(state, ttft_set=True, itl=(), e2e=0, prefix_length=0):
    req = Request("r", 1000, np.zeros(10, np.int32), np.zeros(4, np.int32), 4,
                  prefix_length=prefix_length)
    req.state, req.ttft_set, req.first_token_time = state, ttft_set, 50 if ttft_set else 0
    req.itl, req.e2e = list(itl), e2e
    return req


def test_records_status_and_timing_rules():
    recs = records_from_requests([
        _request(COMPLETED, e2e=50 + 30 + 7, prefix_length=4),   # ΣITL 30, overhead 7
        _request(TIMED_OUT, itl=(10, 11)),
        _request(RUNNING, itl=(3,)),
        _request(QUEUED, ttft_set=False),
    ], post_decode_overhead=7)
    assert [r.status for r in recs] == ["ok", "timeout", "incomplete", "incomplete"]
    assert [(r.first_chunk_time_us, r.last_chunk_time_us) for r in recs] == [
        (1050, 1080), (1050, 1071), (1050, 1053), (0, 0)]
    assert [r.request_id for r in recs] == [0, 1, 2, 3]
    assert (recs[0].input_tokens, recs[0].prefix_length) == (6, 4)
    assert all(r.send_time_us == 1000 and r.output_tokens == 4 for r in recs)


# ---------------------------------------------------------------------------------------------
# Whole runs through the engine: the exported trace equals upstream's file byte for byte.

def _engine_config(case: str):
    simulation = pytest.importorskip("blis_core.simulation")
    from blis_core.config import KVConfig, SimulationConfig
    from blis_core.instance import BatchConfig
    from blis_core.latency import build_latency_model
    from workload_cases import command_flags
    flags = command_flags(case)
    alpha = [float(x) for x in flags["alpha-coeffs"].split(",")]
    beta = [float(x) for x in flags["beta-coeffs"].split(",")]
    config = SimulationConfig(
        latency=build_latency_model("blackbox", alpha, beta),
        batch=BatchConfig(int(flags.get("max-num-running-reqs", 256)),
                          int(flags.get("max-num-scheduled-tokens", 2048)),
                          int(flags.get("long-prefill-token-threshold", 0)),
                          int(flags["max-model-len"])),
        kv=KVConfig(int(flags["total-kv-blocks"]), 16))
    return simulation, config


@requires_shared
@pytest.mark.parametrize("case", ["golden_bb_run_1", "x_concurrency_closed_loop"])
def test_run_trace_matches_upstream(tmp_path, case):
    simulation, config = _engine_config(case)
    options, workload, spec_path, horizon = workload_arguments(case)
    wl = build_cli_workload(options, workload, spec_path, horizon).workload
    simulation.simulate(config, wl.requests, wl.sessions)
    export_run_trace(tmp_path / "trace", wl.requests, wl.follow_ups, workload_seed=wl.seed,
                     post_decode_overhead=config.latency.post_decode_fixed_overhead())
    for name in ("trace.yaml", "trace.csv"):
        assert (tmp_path / name).read_bytes() == (case_dir(case) / name).read_bytes(), name


@requires_shared
def test_replay_trace_matches_upstream(tmp_path):
    simulation, config = _engine_config("golden_bb_1")
    src = case_dir("golden_bb_1")
    requests = replay_requests(load_trace(src / "trace_in.yaml", src / "trace_in.csv"), 42)
    simulation.simulate(config, requests)
    export_run_trace(tmp_path / "trace", requests, mode="replayed")
    for name in ("trace.yaml", "trace.csv"):
        assert (tmp_path / name).read_bytes() == (src / name).read_bytes(), name
