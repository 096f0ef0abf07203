"""``blis workload validate|preview|export`` as a user meets them (docs/cli.md, docs/workloads.md).

Commands run in-process through ``blis_core.cli.main`` with capsys, like tests/test_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _shared import run_cli
from blis_workloads import WorkloadOptions, build_cli_workload, load_workload_spec

UPSTREAM_EXAMPLES = Path("/work/shared/reference/upstream/examples")

SPEC = """\
version: "2"
seed: 11
aggregate_rate: 50
num_requests: 400
clients:
  - id: chat
    tenant_id: t-chat
    slo_class: critical
    rate_fraction: 0.75
    arrival: {process: poisson}
    input_distribution: {type: gaussian, params: {mean: 200, std_dev: 40, min: 10, max: 400}}
    output_distribution: {type: exponential, params: {mean: 50}}
    prefix_group: sys
    prefix_length: 32
  - id: bulk
    tenant_id: t-bulk
    slo_class: batch
    rate_fraction: 0.25
    arrival: {process: gamma, cv: 2.0}
    input_distribution: {type: constant, params: {value: 700}}
    output_distribution: {type: constant, params: {value: 9}}
"""


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("level=")]
    assert len(lines) == 1, err
    assert lines[0].startswith("blis: error: ")
    return lines[0]


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


# -- validate ---------------------------------------------------------------------------------

def test_validate_prints_one_line_naming_what_the_spec_declares(spec_file, capsys):
    code, out, err = run_cli(["workload", "validate", str(spec_file)], capsys)
    assert code == 0, err
    assert out.splitlines() == [
        f"{spec_file}: valid workload spec (2 clients, aggregate_rate 50 req/s, "
        "num_requests 400, seed 11)"]


@pytest.mark.parametrize("name", sorted(p.name for p in UPSTREAM_EXAMPLES.glob("*.yaml"))
                         if UPSTREAM_EXAMPLES.exists() else [])
def test_validate_accepts_every_upstream_workload_example(name, capsys):
    path = UPSTREAM_EXAMPLES / name
    text = path.read_text()
    if "clients:" not in text and "inference_perf:" not in text and "cohorts:" not in text:
        pytest.skip("a policy bundle, not a workload spec")
    code, out, err = run_cli(["workload", "validate", str(path)], capsys)
    assert code == 0, err
    assert out.startswith(f"{path}: valid workload spec (")


@pytest.mark.parametrize("edit, message", [
    (("rate_fraction: 0.25", "rate_fraction: -0.25"),
     "clients[1].rate_fraction must be positive, got -0.250000"),
    (("process: gamma", "process: zipf"), "clients[1].arrival.process: unknown arrival process"),
    (("seed: 11", "seed: 11\nsede: 3"), 'sede: unknown field "sede"'),
    (("{value: 700}", "{amount: 700}"), None),  # constant without value is legal upstream
    (("std_dev: 40, ", ""), 'client "chat" input distribution: distribution requires '
                            'parameter "std_dev"'),
    (("aggregate_rate: 50", "aggregate_rate: .nan"), "aggregate_rate must be a finite number"),
])
def test_validate_rejects_bad_input_with_one_line_naming_the_field(tmp_path, capsys, edit,
                                                                   message):
    path = tmp_path / "bad.yaml"
    old, new = edit
    assert old in SPEC
    path.write_text(SPEC.replace(old, new))
    code, out, err = run_cli(["workload", "validate", str(path)], capsys)
    if message is None:
        assert code == 0, err
        return
    assert code == 2
    assert out == ""
    assert message in error_line(err)


def test_validate_gives_the_same_error_as_run(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.replace("process: gamma", "process: zipf"))
    _, _, validate_err = run_cli(["workload", "validate", str(path)], capsys)
    _, _, run_err = run_cli(["run", "--model", "meta-llama/llama-3.1-8b-instruct",
                             "--workload-spec", str(path)], capsys)
    assert error_line(validate_err) == error_line(run_err)


def test_validate_missing_file_and_unbounded_spec(tmp_path, capsys):
    code, _, err = run_cli(["workload", "validate", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and "none.yaml" in error_line(err)
    path = tmp_path / "unbounded.yaml"
    path.write_text(SPEC.replace("num_requests: 400\n", ""))
    code, out, err = run_cli(["workload", "validate", str(path)], capsys)
    assert code == 0, err
    assert "unbounded: blis run needs --num-requests or --horizon" in out


# -- preview ----------------------------------------------------------------------------------

def _preview_json(argv, capsys) -> dict:
    code, out, err = run_cli(["workload", "preview", *argv, "--format", "json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_preview_progress_goes_to_stderr_only_when_asked(spec_file, capsys):
    code, plain, err = run_cli(["workload", "preview", str(spec_file)], capsys)
    assert code == 0 and err == ""              # stderr is not a terminal here
    code, shown, err = run_cli(["workload", "preview", str(spec_file), "--progress"], capsys)
    assert code == 0 and shown == plain
    lines = err.splitlines()
    assert lines[0] == f"blis: generating {spec_file}..."
    assert lines[1].startswith("blis: generated 400 requests in ")
    assert lines[2].startswith("blis: done in ") and len(lines) == 3
    code, _, err = run_cli(["workload", "preview", str(spec_file), "--no-progress"], capsys)
    assert code == 0 and err == ""


def test_preview_counts_match_the_generated_workload(spec_file, capsys):
    data = _preview_json([str(spec_file), "--buckets", "7"], capsys)
    reference = build_cli_workload(WorkloadOptions(), spec_path=str(spec_file)).workload.requests
    assert data["requests"] == len(reference) == 400
    assert data["seed"] == 11
    assert data["last_arrival_us"] == max(r.arrival_time for r in reference)
    assert data["first_arrival_us"] == min(r.arrival_time for r in reference)
    assert sum(b["requests"] for b in data["rate_over_time"]) == 400
    assert len(data["rate_over_time"]) <= 7
    # The buckets tile [0, last arrival] without gaps.
    assert data["rate_over_time"][0]["start_us"] == 0
    for a, b in zip(data["rate_over_time"], data["rate_over_time"][1:]):
        assert a["end_us"] == b["start_us"]
    assert data["rate_over_time"][-1]["end_us"] > data["last_arrival_us"]
    by_class = {row["name"]: row["requests"] for row in data["slo_classes"]}
    assert by_class == {
        "batch": sum(r.slo_class == "batch" for r in reference),
        "critical": sum(r.slo_class == "critical" for r in reference)}
    assert {row["name"] for row in data["tenants"]} == {"t-bulk", "t-chat"}
    assert [row["name"] for row in data["prefix_groups"]] == ["sys"]
    inputs = sorted(r.num_input for r in reference)
    assert data["input_tokens"]["min"] == inputs[0]
    assert data["input_tokens"]["max"] == inputs[-1]
    assert data["input_tokens"]["mean"] == pytest.approx(sum(inputs) / len(inputs))
    assert sum(b["requests"] for b in data["input_tokens"]["histogram"]) == 400
    assert sum(b["requests"] for b in data["output_tokens"]["histogram"]) == 400
    # Bulk inputs are constant: 700 tokens, no prefix.
    assert data["input_tokens"]["max"] == 700


def test_preview_length_bins_hold_exactly_their_values(spec_file, capsys):
    data = _preview_json([str(spec_file), "--buckets", "5"], capsys)
    reference = build_cli_workload(WorkloadOptions(), spec_path=str(spec_file)).workload.requests
    for b in data["output_tokens"]["histogram"]:
        assert b["requests"] == sum(b["from"] <= r.max_output_len <= b["to"] for r in reference)


def test_preview_text_is_deterministic_and_has_every_section(spec_file, capsys):
    argv = ["workload", "preview", str(spec_file)]
    code, first, err = run_cli(argv, capsys)
    assert code == 0, err
    _, second, _ = run_cli(argv, capsys)
    assert first == second
    for heading in ("requests: 400", "rate over time (20 buckets", "input tokens",
                    "output tokens", "slo_class", "tenant", "client", "prefix_group"):
        assert heading in first
    assert all(line == line.rstrip() for line in first.splitlines())


def test_preview_flags_override_the_spec_like_run(spec_file, capsys):
    data = _preview_json([str(spec_file), "--num-requests", "50", "--seed", "3"], capsys)
    assert data["requests"] == 50 and data["seed"] == 3
    spec = load_workload_spec(spec_file)
    assert spec.seed == 11                  # the file is untouched
    horizon = _preview_json([str(spec_file), "--horizon", "1000000"], capsys)
    assert 0 < horizon["requests"] < 400
    assert horizon["last_arrival_us"] < 1_000_000


def test_preview_named_generator_and_sessions(capsys):
    data = _preview_json(["--workload", "multi-turn-chat", "--rate", "40",
                          "--num-requests", "200"], capsys)
    s = data["sessions"]
    assert s["sessions"] == s["closed_loop"] == data["requests"] > 0
    assert s["max_rounds"] == 5
    chat = _preview_json(["--workload", "chatbot", "--num-requests", "30"], capsys)
    assert chat["requests"] == 30
    assert chat["input_tokens"]["min"] >= 2 and chat["input_tokens"]["max"] <= 800


@pytest.mark.parametrize("argv, fragment", [
    ([], "give a workload spec FILE or --workload NAME"),
    (["--workload", "nope"], "--workload: unknown workload 'nope'"),
    (["--workload", "chatbot", "--rate", "-1"], "--rate must be a finite value > 0"),
    (["--workload", "chatbot", "--buckets", "0"], "--buckets must be in [1, 1000]"),
    (["--workload", "load-spike", "--num-requests", "0", "--horizon", "9"],
     "--num-requests must be > 0 for the load-spike scenario"),
    (["--workload", "chatbot", "--format", "xml"], "--format"),
])
def test_preview_bad_input(argv, fragment, capsys):
    code, out, err = run_cli(["workload", "preview", *argv], capsys)
    assert code == 2
    assert out == ""
    assert fragment in error_line(err)


def test_preview_bad_spec_and_rate_with_file(spec_file, tmp_path, capsys):
    code, _, err = run_cli(["workload", "preview", str(spec_file), "--rate", "5"], capsys)
    assert code == 2 and "--rate applies to --workload" in error_line(err)
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("    prefix_length: 32", "    prefix_lenght: 32"))
    code, out, err = run_cli(["workload", "preview", str(bad)], capsys)
    assert code == 2 and out == ""
    assert 'clients[0].prefix_lenght: unknown field "prefix_lenght"' in error_line(err)


# -- export -----------------------------------------------------------------------------------

def test_export_round_trips_through_workload_spec(tmp_path, capsys):
    flags = ["--rate", "30", "--num-requests", "120", "--seed", "5"]
    code, yaml_text, err = run_cli(["workload", "export", "load-spike", *flags], capsys)
    assert code == 0, err
    path = tmp_path / "spike.yaml"
    path.write_text(yaml_text)
    from_file = _preview_json([str(path)], capsys)
    from_name = _preview_json(["--workload", "load-spike", *flags], capsys)
    from_file.pop("source"), from_name.pop("source")
    assert from_file == from_name


def test_export_writes_a_file_atomically(tmp_path, capsys):
    out = tmp_path / "chat.yaml"
    code, stdout, err = run_cli(["workload", "export", "chatbot", "-o", str(out)], capsys)
    assert code == 0, err
    assert stdout == ""
    spec = load_workload_spec(out)
    assert spec.num_requests == 100 and spec.seed == 42
    code, _, err = run_cli(["workload", "export", "chatbot", "-o",
                            str(tmp_path / "missing" / "x.yaml")], capsys)
    assert code == 2 and "--output: cannot write" in error_line(err)
    assert not (tmp_path / "missing").exists()
    code, _, err = run_cli(["workload", "export", "nope"], capsys)
    assert code == 2 and "unknown workload 'nope'" in error_line(err)
