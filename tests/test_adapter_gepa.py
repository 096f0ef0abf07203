"""The GEPA adapter: candidate bundles, evaluation batches, reflective datasets, a real
``gepa.optimize`` run with a stub reflection model, and ``blis gepa-evaluate``."""

import json
import subprocess
import sys

import pytest

gepa = pytest.importorskip("gepa", reason="the GEPA adapter needs gepa: pip install 'blis[gepa]'")

from blis_adapters.gepa import (  # noqa: E402
    BlisGEPAAdapter,
    CandidateError,
    Workload,
    candidate_bundle,
    reflection_prompt,
)
from blis_core import RunConfig  # noqa: E402

BASE_ARGS = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox "
             "--num-instances 4 --rate 40 --num-requests 120")


@pytest.fixture(scope="module")
def workloads():
    base = RunConfig.from_args(BASE_ARGS)
    return [Workload("seed42", base), Workload("seed7", base.replace(seed=7))]


# -- candidates -----------------------------------------------------------------------------------
def test_components_combine_into_one_bundle():
    bundle = candidate_bundle({"routing": "policy: least-loaded",
                               "scheduler": "sjf",
                               "bundle": "admission:\n  policy: always-admit\n"})
    assert (bundle.routing.policy, bundle.scheduler, bundle.admission.policy) == \
        ("least-loaded", "sjf", "always-admit")


@pytest.mark.parametrize("candidate, problem", [
    ({"routing": "policy: ["}, "routing: not YAML"),
    ({"router": "policy: least-loaded"}, "router: unknown component"),
    ({"routing": "policy: bogus"}, "unknown routing policy 'bogus'"),
    ({"bundle": "- a list"}, "bundle: expected a policy bundle"),
    ({"bundle": "routing:\n  policy: round-robin\n", "routing": "policy: least-loaded"},
     "sets routing, which bundle sets already"),
])
def test_a_bad_candidate_names_its_component(candidate, problem):
    with pytest.raises(CandidateError, match=problem) as info:
        candidate_bundle(candidate)
    assert "\n" not in str(info.value)


# -- evaluate -------------------------------------------------------------------------------------
def test_evaluate_returns_one_score_output_and_trajectory_per_workload(workloads):
    adapter = BlisGEPAAdapter("throughput:0.5,p99_ttft:0.5", slo_ttft_ms=40)
    batch = adapter.evaluate(workloads, {"routing": "policy: least-loaded"}, capture_traces=True)
    assert len(batch.scores) == len(batch.outputs) == len(batch.trajectories) == 2
    assert all(0 < s < 1 for s in batch.scores)
    for output, trajectory in zip(batch.outputs, batch.trajectories):
        assert output["completed"] == 120 and "error" not in output
        assert trajectory["score"] == output["score"]
        assert set(trajectory["fitness"]) == {"throughput", "p99_ttft"}
        assert sum(trajectory["routing"].values()) == 120 and len(trajectory["routing"]) == 4
        assert trajectory["slo_misses"]["default"]["requests"] == 120
        assert len(trajectory["worst_requests"]) == 5
        e2e = [row["e2e_ms"] for row in trajectory["worst_requests"]]
        assert e2e == sorted(e2e, reverse=True)
    json.dumps(batch.trajectories)      # GEPA may persist them
    assert adapter.evaluations == 2
    assert adapter.evaluate(workloads, {"routing": "policy: least-loaded"}).trajectories is None


def test_the_candidate_overrides_the_workloads_own_policies(workloads):
    busiest = Workload("busiest", workloads[0].config.replace(
        **{"policies.routing.policy": "always-busiest"}))
    adapter = BlisGEPAAdapter()
    own = adapter.evaluate([busiest], {}, capture_traces=True)
    spread = adapter.evaluate([busiest], {"routing": "policy: round-robin"}, capture_traces=True)
    assert len(own.trajectories[0]["routing"]) == 1
    assert len(spread.trajectories[0]["routing"]) == 4
    assert spread.scores[0] > own.scores[0]


def test_scores_are_deterministic(workloads):
    adapter = BlisGEPAAdapter()
    first = adapter.evaluate(workloads, {"routing": "policy: round-robin"}, capture_traces=True)
    second = adapter.evaluate(workloads, {"routing": "policy: round-robin"}, capture_traces=True)
    assert json.dumps(first.trajectories) == json.dumps(second.trajectories)


def test_a_bad_candidate_scores_zero_with_its_error_and_never_raises(workloads):
    batch = BlisGEPAAdapter().evaluate(workloads, {"routing": "policy: nope"},
                                       capture_traces=True)
    assert batch.scores == [0.0, 0.0]
    assert all("unknown routing policy 'nope'" in o["error"] for o in batch.outputs)


def test_a_failing_workload_costs_only_itself(workloads):
    broken = Workload("broken", workloads[0].config.replace(**{"model.name": "no/such-model"}))
    batch = BlisGEPAAdapter().evaluate([broken, workloads[0]], {"routing": "policy: round-robin"},
                                       capture_traces=True)
    assert batch.scores[0] == 0.0 and "error" in batch.outputs[0]
    assert batch.scores[1] > 0


def test_the_reflective_dataset_carries_the_evidence(workloads):
    adapter = BlisGEPAAdapter(slo_ttft_ms=40)
    candidate = {"routing": "policy: always-busiest", "scheduler": "fcfs"}
    batch = adapter.evaluate(workloads, candidate, capture_traces=True)
    dataset = adapter.make_reflective_dataset(candidate, batch, ["routing"])
    assert list(dataset) == ["routing"] and len(dataset["routing"]) == 2
    record = dataset["routing"][0]
    assert record["Generated Outputs"] == "policy: always-busiest"
    assert record["Inputs"]["workload"] == "seed42"
    text = record["Feedback"]
    assert "Requests per instance: instance_0 100%" in text
    assert "missed the TTFT target of 40 ms" in text
    assert "Worst requests:" in text
    assert "Routing regret" in text and "Routing decisions with the most regret" in text
    decisions = batch.trajectories[0]["decisions"]
    assert decisions["max_regret"] > 0 and len(decisions["worst"]) == 5
    assert all(len(d["candidates"]) == 3 for d in decisions["worst"])
    json.dumps(dataset)


# -- a real GEPA run ------------------------------------------------------------------------------
class StubReflectionLM:
    """Proposes the next bundle section of a fixed list, whatever the prompt says: a
    deterministic stand-in for a language model."""

    def __init__(self, proposals):
        self.proposals = list(proposals)
        self.prompts = []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        proposal = self.proposals[min(len(self.prompts) - 1, len(self.proposals) - 1)]
        return f"Here is a better policy:\n```\n{proposal}\n```"


def test_gepa_optimize_evolves_a_routing_policy_through_blis(workloads, tmp_path):
    adapter = BlisGEPAAdapter("throughput:0.5,p99_ttft:0.5")
    lm = StubReflectionLM(["policy: round-robin", "policy: least-loaded"])
    seed = {"routing": "policy: always-busiest"}
    result = gepa.optimize(seed_candidate=seed, trainset=workloads, valset=workloads,
                           adapter=adapter, reflection_lm=lm, max_metric_calls=16,
                           reflection_minibatch_size=2,
                           reflection_prompt_template=reflection_prompt(), run_dir=str(tmp_path / "gepa"),
                           seed=0, display_progress_bar=False)
    assert lm.prompts, "GEPA never asked the reflection model"
    assert "Requests per instance: instance_0 100%" in str(lm.prompts[0])
    assert "routing: always-busiest, least-loaded" in str(lm.prompts[0])
    assert adapter.evaluations >= 6
    assert len(result.candidates) >= 2
    best = result.best_candidate
    assert best["routing"] != seed["routing"]
    seed_score = result.val_aggregate_scores[0]
    best_score = result.val_aggregate_scores[result.best_idx]
    assert best_score > seed_score > 0
    # The reported score is blis's: re-evaluating the best candidate gives it again.
    again = adapter.evaluate(workloads, best).scores
    assert sum(again) / len(again) == pytest.approx(best_score)


# -- the command ----------------------------------------------------------------------------------
def _blis(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "blis_core.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_gepa_evaluate_prints_scores_as_json(tmp_path):
    run = tmp_path / "small.yaml"
    dump = _blis("run", *BASE_ARGS.split(), "--dump-config")
    assert dump.returncode == 0, dump.stderr
    run.write_text(dump.stdout)
    bundle = tmp_path / "p.yaml"
    bundle.write_text("routing:\n  policy: least-loaded\n")
    done = _blis("gepa-evaluate", "--policy-config", str(bundle), "--workloads", str(run),
                 "--feedback")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [row] = report["workloads"]
    assert row["workload"] == "small" and row["completed"] == 120
    assert report["mean_score"] == row["score"] > 0
    assert "Requests per instance" in row["feedback"]
    # The same score as the adapter computes in-process.
    adapter = BlisGEPAAdapter()
    expected = adapter.evaluate([Workload.load(run)], {"bundle": bundle.read_text()}).scores[0]
    assert row["score"] == pytest.approx(expected)


@pytest.mark.parametrize("bundle_text, args, message", [
    ("routing:\n  policy: bogus\n", [], "bad candidate bundle"),
    ("routing:\n  policy: round-robin\n", ["--fitness-weights", "speed:1"],
     "--fitness-weights: unknown fitness key 'speed'"),
    ("routing:\n  policy: round-robin\n", ["--workloads", "missing.yaml"],
     "--workloads: missing.yaml: cannot read run config"),
])
def test_gepa_evaluate_refuses_bad_input_in_one_line(tmp_path, bundle_text, args, message):
    bundle = tmp_path / "p.yaml"
    bundle.write_text(bundle_text)
    done = _blis("gepa-evaluate", "--policy-config", str(bundle), *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
