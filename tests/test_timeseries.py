"""The time series and the progress line: what they record, and that neither changes a result.

Sampling and progress only read state when the clock crosses a mark; these tests run the same
command lines with and without them and compare stdout and the results file byte for byte.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings, strategies as st

import blis_core
from blis_core.progress import Progress, wanted
from blis_core.simulation import simulate
from blis_core.timeseries import (CLUSTER, COLUMNS, TimeSeries, TimeSeriesError,
                                  read_timeseries)
from _shared import run_cli

MODEL = ["--model", "meta-llama/llama-3.1-8b-instruct", "--latency-model", "blackbox"]

# Shapes that exercise every sampled field: several instances, a CPU tier with a small GPU
# cache (preemptions, reloads), admission rejections, timeouts by horizon, a weighted router.
CASES = {
    "single": ["--rate", "30", "--num-requests", "150"],
    "four-rr": ["--rate", "60", "--num-requests", "300", "--num-instances", "4"],
    "tiered": ["--rate", "40", "--num-requests", "200", "--num-instances", "2",
               "--total-kv-blocks", "400", "--kv-cpu-blocks", "300"],
    "rejecting": ["--rate", "80", "--num-requests", "200", "--num-instances", "2",
                  "--admission-policy", "token-bucket", "--token-bucket-capacity", "20000",
                  "--token-bucket-refill-rate", "20000"],
    "pd": ["--rate", "40", "--num-requests", "150", "--num-instances", "4",
           "--prefill-instances", "2", "--decode-instances", "2", "--pd-decider", "always"],
    "closed-loop": ["--concurrency", "6", "--num-requests", "120", "--num-instances", "2"],
    "horizon": ["--rate", "50", "--num-requests", "300", "--num-instances", "3",
                "--routing-policy", "weighted", "--horizon", "2500000"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sampling_and_progress_change_no_byte_of_the_results(case, tmp_path, capsys):
    args = MODEL + CASES[case]
    plain = tmp_path / "plain.json"
    code, out_plain, _ = run_cli(["run", *args, "--metrics-path", str(plain)], capsys)
    assert code == 0
    sampled = tmp_path / "sampled.json"
    series = tmp_path / "ts.csv"
    code, out_sampled, err = run_cli(["run", *args, "--metrics-path", str(sampled),
                                      "--timeseries", str(series), "--timeseries-interval",
                                      "7919", "--progress"], capsys)
    assert code == 0
    assert out_sampled == out_plain
    assert sampled.read_bytes() == plain.read_bytes()
    assert "requests" in err          # the progress line went to stderr
    rows = read_timeseries(str(series))
    assert len(rows) > 10


# Reference cases of upstream's binary with every feature the samples read: preemption, the CPU
# tier, P/D pools, closed-loop sessions, admission, a replayed trace, the decision trace.
PARITY_CASES = ("a_preemption_small_kv", "i_tiered_kv", "j_pd_always", "x_concurrency_closed_loop",
                "d_token_bucket", "h_policy_config_tier_shed", "g_trace_replay",
                "k_decision_trace_counterfactual", "f_workload_spec_multiturn")


@pytest.mark.parametrize("case", PARITY_CASES)
def test_upstream_parity_holds_with_sampling_and_progress_on(case, tmp_path, monkeypatch):
    import parity

    if parity.corpus_dir() is None or not (parity.corpus_dir() / case).is_dir():
        pytest.skip("upstream's reference runs (../shared) are not available")
    original = parity.case_argv
    series = tmp_path / "ts.csv"
    monkeypatch.setattr(parity, "case_argv", lambda c, out: original(c, out) + [
        "--timeseries", str(series), "--timeseries-interval", "10007", "--progress"])
    assert parity.check_case(case, tmp_path) == []
    assert len(read_timeseries(str(series))) > 1


def _run(args: str, interval: int, reference: bool = False):
    config = blis_core.RunConfig.from_args(
        f"--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox {args} "
        f"--timeseries ts.csv --timeseries-interval {interval}")
    prepared = config.prepare()
    return simulate(prepared.simulation, prepared.workload.requests, prepared.workload.sessions,
                    reference=reference)


def _by_time(series: TimeSeries) -> dict[int, dict[str, tuple]]:
    out: dict[int, dict[str, tuple]] = {}
    for row in series.rows:
        out.setdefault(row[0], {})[row[1]] = row
    return out


@settings(max_examples=12, deadline=None)
@given(instances=st.integers(1, 4), rate=st.sampled_from([5.0, 40.0, 120.0]),
       interval=st.integers(1_000, 400_000), cpu=st.booleans())
def test_series_invariants(instances, rate, interval, cpu):
    tier = "--total-kv-blocks 300 --kv-cpu-blocks 200" if cpu else ""
    result = _run(f"--num-instances {instances} --rate {rate} --num-requests 60 {tier}",
                  interval)
    series = result.timeseries
    by_time = _by_time(series)
    times = sorted(by_time)
    assert times[0] == 0
    assert all(b - a == interval for a, b in zip(times, times[1:]))
    names = [f"instance_{i}" for i in range(instances)]
    previous = None
    for t in times:
        rows = by_time[t]
        assert sorted(rows) == sorted(names + [CLUSTER])
        cluster = rows[CLUSTER]
        assert cluster[2] == sum(rows[n][2] for n in names)            # queue depth
        assert cluster[3] == sum(rows[n][3] for n in names)            # batch size
        assert cluster[7] == sum(rows[n][7] for n in names)            # completions
        for n in names:
            assert 0.0 <= rows[n][4] <= 1.0 and 0.0 <= rows[n][5] <= 1.0
            assert rows[n][3] <= result.config.batch.max_running
        if previous is not None:                                      # cumulative counts
            assert all(cluster[i] >= previous[i] for i in (6, 7, 8))
        previous = cluster
    # The last sample is after the last event: every request arrived and was accounted for.
    final = by_time[times[-1]]
    assert final[CLUSTER][6] == 60
    assert final[CLUSTER][7] == result.summary.counters["completed"]
    assert final[CLUSTER][7] + final[CLUSTER][8] == 60
    for n in names:
        assert final[n][6] == final[n][7] + final[n][8]                # routed = done + dropped


def test_the_shortcuts_of_the_engine_are_invisible_to_sampling():
    """Implicit decoding and the lazy CPU tier are read as if every step ran explicitly."""
    args = ("--num-instances 2 --rate 60 --num-requests 120 --total-kv-blocks 500 "
            "--kv-cpu-blocks 300")
    fast = _run(args, 20_000).timeseries.rows
    reference = _run(args, 20_000, reference=True).timeseries.rows
    assert fast == reference


def test_csv_and_json_files_hold_the_same_rows(tmp_path):
    series = _run("--num-instances 2 --rate 20 --num-requests 30", 50_000).timeseries
    (tmp_path / "a.csv").write_text(series.render("a.csv"))
    (tmp_path / "a.json").write_text(series.render("a.json"))
    header = next(csv.reader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert tuple(header) == COLUMNS
    assert json.loads((tmp_path / "a.json").read_text())["interval_us"] == 50_000
    assert read_timeseries(str(tmp_path / "a.csv")) == read_timeseries(str(tmp_path / "a.json"))


def test_a_file_that_is_not_a_series_is_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(TimeSeriesError, match="not a blis time series"):
        read_timeseries(str(bad))
    bad.write_text(",".join(COLUMNS) + "\n0,instance_0,x,0,0,0,0,0,0\n")
    with pytest.raises(TimeSeriesError, match="row 2"):
        read_timeseries(str(bad))


def test_the_interval_is_checked(capsys, tmp_path):
    code, _, err = run_cli(["run", *MODEL, "--timeseries", str(tmp_path / "t.csv"),
                            "--timeseries-interval", "0"], capsys)
    assert code == 2
    assert err.strip().splitlines()[-1] == "blis: error: --timeseries-interval must be > 0, got 0"
    code, _, err = run_cli(["run", *MODEL, "--timeseries", str(tmp_path / "no" / "t.csv")],
                           capsys)
    assert code == 2 and "--timeseries: cannot write" in err.splitlines()[-1]


def test_the_output_section_is_part_of_the_run_description(tmp_path, capsys):
    code, out, _ = run_cli(["run", *MODEL, "--timeseries", "ts.json", "--no-progress",
                            "--dump-config"], capsys)
    assert code == 0
    assert "output:\n  timeseries: ts.json\n  timeseries_interval: 100000\n  progress: false" \
        in out
    described = tmp_path / "run.yaml"
    described.write_text(out)
    code, _, _ = run_cli(["run", "--config", str(described), "--num-requests", "20"], capsys)
    assert code == 0
    # Relative to the description's folder, like every other file it names.
    assert read_timeseries(str(tmp_path / "ts.json"))
    result = blis_core.evaluate(blis_core.RunConfig.load(described))
    assert result.timeseries is not None and result.timeseries.rows
    assert blis_core.evaluate(blis_core.RunConfig()
                              .replace(**{"model.name": "meta-llama/llama-3.1-8b-instruct"})
                              ).timeseries is None


# -- progress ---------------------------------------------------------------------------------
def test_progress_is_off_when_stderr_is_not_a_terminal_unless_asked(capsys):
    args = ["run", *MODEL, "--num-requests", "50", "--rate", "20", "--log", "error"]
    code, out_auto, err = run_cli(args, capsys)
    assert code == 0 and err == ""
    code, out_off, err = run_cli(args + ["--no-progress"], capsys)
    assert code == 0 and err == "" and out_off == out_auto
    code, out_on, err = run_cli(args + ["--progress"], capsys)
    assert code == 0 and out_on == out_auto
    assert err.startswith("blis: 100% sim ") and "50/50 requests" in err and "done in" in err
    assert err.count("\n") == 1


def test_progress_auto_follows_the_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert wanted(None, Tty()) and not wanted(None, io.StringIO())
    assert wanted(True, io.StringIO()) and not wanted(False, Tty())


class _Cluster:
    """What the progress line reads of a cluster: nothing done yet."""

    def __init__(self) -> None:
        self.rejected = self.routing_rejections = 0
        self.instances = []


class _FakeWall:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_checks_adapt_to_the_wall_clock_and_lines_are_paced():
    wall = _FakeWall()
    stream = io.StringIO()
    progress = Progress(1000, 10_000_000, stream=stream, terminal=False, wall=wall)
    cluster = _Cluster()
    clock = 0
    for _ in range(20):              # checks far more often than needed: the step grows
        wall.now += 0.001
        clock = progress.update(clock, cluster)
    assert progress.step == 1_000 * 2 ** 20
    assert stream.getvalue() == ""   # under 5 wall seconds: no line in a log
    step = progress.step
    wall.now += 6.0                  # a slow check: the step shrinks, and a line is due
    progress.update(clock, cluster)
    assert progress.step == step // 2
    line = stream.getvalue()
    assert line.startswith("blis: ") and line.endswith("\n") and "ETA" in line
    assert "sim " in line and "/10.000s" in line and "0/1000 requests" in line


def test_progress_on_a_terminal_rewrites_one_line():
    wall = _FakeWall()
    stream = io.StringIO()
    progress = Progress(None, stream=stream, terminal=True, wall=wall)
    wall.now = 1.0
    progress.update(5_000_000, _Cluster())
    progress.finish(6_000_000, _Cluster())
    text = stream.getvalue()
    assert text.startswith("\rblis: sim 5.000s") and text.count("\r") == 2
    assert text.endswith("\x1b[K\n") and text.count("\n") == 1


def test_progress_chosen_automatically_leaves_nothing_after_a_short_run():
    for always, expected in ((False, ""), (True, "\rblis: sim 0.002s")):
        stream = io.StringIO()
        progress = Progress(None, stream=stream, terminal=True, wall=_FakeWall(),
                            always=always)
        progress.update(0, _Cluster())       # under the first refresh: no line yet
        progress.finish(2_000, _Cluster())
        assert stream.getvalue().startswith(expected) and (always or not stream.getvalue())
