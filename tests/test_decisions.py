"""The decision trace: records, counterfactual regret, the summary and the JSON Lines file."""

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blis_core
from blis_core.decisions import TraceSummary, read_jsonl

BASE = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox "
        "--total-kv-blocks 3000")


def run(args: str):
    return blis_core.evaluate(blis_core.RunConfig.from_args(f"{BASE} {args}"))


def routings(result):
    return [d for d in result.decisions if d["kind"] == "routing"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(["round-robin", "least-loaded", "always-busiest", "weighted"]),
       instances=st.integers(1, 5), rate=st.sampled_from([5.0, 40.0, 120.0]),
       k=st.integers(0, 6), seed=st.integers(0, 2**31 - 1),
       admission=st.sampled_from(["always-admit", "token-bucket"]))
def test_trace_invariants(policy, instances, rate, k, seed, admission):
    result = run(f"--routing-policy {policy} --num-instances {instances} --rate {rate} "
                 f"--num-requests 60 --seed {seed} --admission-policy {admission} "
                 "--token-bucket-capacity 4000 --token-bucket-refill-rate 3000 "
                 f"--trace-level decisions --counterfactual-k {k}")
    admissions = [d for d in result.decisions if d["kind"] == "admission"]
    routed = routings(result)
    # One admission record per arrival, one routing record per admitted (and routed) request.
    assert len(admissions) == result.metrics.arrived
    assert [d["request_id"] for d in admissions if d["admitted"]] == \
        [d["request_id"] for d in routed]
    assert sum(not d["admitted"] for d in admissions) == result.metrics.rejected_requests
    clocks = [d["clock"] for d in result.decisions]
    assert clocks == sorted(clocks)
    assigned = {r.id: r.assigned_instance for r in result.simulation.requests}
    for d in routed:
        assert assigned[d["request_id"]] == d["chosen"]
        assert d["regret"] >= 0
        if k == 0:
            assert d["candidates"] is None and d["regret"] == 0
        else:
            scores = [c["score"] for c in d["candidates"]]
            assert len(scores) == min(k, instances)
            assert scores == sorted(scores, reverse=True)
        if policy in ("least-loaded", "weighted"):
            assert d["regret"] == 0        # they choose the best score by construction
        assert (d["scores"] is None) == (policy != "weighted")


def test_round_robin_has_regret_under_load():
    result = run("--routing-policy round-robin --num-instances 4 --rate 200 --num-requests 200 "
                 "--trace-level decisions --counterfactual-k 2")
    assert max(d["regret"] for d in routings(result)) > 0


def test_tracing_changes_no_result():
    args = "--routing-policy weighted --num-instances 3 --rate 60 --num-requests 150"
    plain = run(args)
    traced = run(args + " --trace-level decisions --counterfactual-k 3")
    assert plain.decisions == [] and traced.decisions
    assert plain.to_dict() == traced.to_dict()


def _blis(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "blis_core.cli", "run", *BASE.split(), *args],
                          capture_output=True, text=True, cwd=cwd)


def test_the_jsonl_file_reads_back_into_the_printed_summary(tmp_path):
    path = tmp_path / "decisions.jsonl"
    args = ("--routing-policy always-busiest", "--num-instances", "3", "--rate", "80",
            "--num-requests", "100", "--trace-level", "decisions", "--counterfactual-k", "2",
            "--summarize-trace", "--decision-trace", str(path))
    done = _blis(*args[0].split(), *args[1:])
    assert done.returncode == 0, done.stderr
    records = read_jsonl(path.read_text())
    printed = done.stdout[done.stdout.index("=== Trace Summary ==="):].splitlines()
    assert TraceSummary.of(records).lines() == printed
    assert sum(r["kind"] == "routing" for r in records) == 100
    assert TraceSummary.of(records).max_regret > 0
    again = tmp_path / "again.jsonl"
    _blis(*args[0].split(), *args[1:-1], str(again))
    assert again.read_bytes() == path.read_bytes()


def test_decision_trace_alone_records_without_changing_stdout(tmp_path):
    path = tmp_path / "d.jsonl"
    plain = _blis("--num-instances", "2", "--num-requests", "30")
    traced = _blis("--num-instances", "2", "--num-requests", "30", "--decision-trace", str(path))
    assert traced.returncode == 0 and traced.stdout == plain.stdout
    kinds = [json.loads(line)["kind"] for line in path.read_text().splitlines()]
    assert kinds.count("admission") == kinds.count("routing") == 30


@pytest.mark.parametrize("args, message", [
    (["--trace-level", "detailed"], "--trace-level: unknown trace level 'detailed'"),
    (["--trace-level", "decisions", "--counterfactual-k", "-1"],
     "--counterfactual-k must be >= 0, got -1"),
    (["--decision-trace", "no/such/dir/d.jsonl"], "--decision-trace: cannot write"),
])
def test_bad_trace_input_is_one_line(tmp_path, args, message):
    done = _blis(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, warning", [
    (["--counterfactual-k", "3"], "--counterfactual-k=3 has no effect without --trace-level"),
    (["--summarize-trace"], "--summarize-trace has no effect without --trace-level"),
])
def test_trace_options_without_the_level_warn(args, warning):
    done = _blis(*args)
    assert done.returncode == 0 and warning in done.stderr
    assert "Trace Summary" not in done.stdout
