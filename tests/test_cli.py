"""The ``blis`` command line as a user meets it: defaults, bad input, output files, traces.

Commands run in-process through ``blis_core.cli.main`` (stdout and stderr captured with capsys);
two end-to-end checks run the installed ``blis`` console script in a subprocess.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from blis_core import cli, files
from _shared import run_cli

MODEL = ["--model", "meta-llama/llama-3.1-8b-instruct"]
BLACKBOX = [
    "--latency-model", "blackbox", "--hardware", "H100", "--tp", "1",
    "--alpha-coeffs", "232.46191091038054,1.752360364195244,3357.4400353290152",
    "--beta-coeffs", "5752.705191348184,17.25086436834028,5.999143920128404",
]
METRICS_HEADER = "=== Simulation Metrics ==="
TRACE_COLUMNS = (
    "request_id,client_id,tenant_id,slo_class,session_id,round_index,prefix_group,"
    "prefix_length,streaming,input_tokens,output_tokens,text_tokens,image_tokens,audio_tokens,"
    "video_tokens,reason_ratio,model,deadline_us,server_input_tokens,arrival_time_us,"
    "send_time_us,first_chunk_time_us,last_chunk_time_us,num_chunks,status,error_message,"
    "finish_reason")
TRACE_HEADER = "trace_version: 2\ntime_unit: microseconds\nmode: generated\nwarm_up_requests: 0\n"


def error_lines(err: str) -> list[str]:
    """stderr without upstream-style log lines (``level=WARNING msg=...``), which may precede
    the error: bad input must end the output with exactly one error line."""
    return [line for line in err.splitlines() if not line.startswith("level=")]


def metric_blocks(stdout: str) -> list[dict]:
    """Every ``=== Simulation Metrics ===`` JSON object, in order (the cluster block is last)."""
    blocks = []
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line == METRICS_HEADER:
            body = []
            for follow in lines[i + 1:]:
                body.append(follow)
                if follow == "}":
                    break
            blocks.append(json.loads("\n".join(body)))
    return blocks


def cluster_metrics(stdout: str) -> dict:
    blocks = metric_blocks(stdout)
    assert blocks, f"no {METRICS_HEADER!r} section in:\n{stdout}"
    return blocks[-1]


def files_in(path) -> set[str]:
    return {entry.name for entry in path.iterdir()}


# -- the README's first command -----------------------------------------------------------------
def test_run_with_only_a_model_uses_defaults_and_is_deterministic(capsys):
    code, first, err = run_cli(["run", *MODEL], capsys)
    assert code == 0, err
    assert METRICS_HEADER in first
    summary = cluster_metrics(first)
    assert summary["instance_id"] == "cluster"
    assert summary["completed_requests"] == 100
    assert summary["injected_requests"] == 100
    assert summary["still_queued"] == summary["still_running"] == 0
    assert summary["total_input_tokens"] > 0 and summary["total_output_tokens"] > 0
    assert "blis: error" not in err

    code, second, _ = run_cli(["run", *MODEL], capsys)
    assert code == 0
    assert second == first


def test_console_script_end_to_end_matches_in_process_run(capsys):
    exe = shutil.which("blis")
    if exe is None:
        pytest.skip("the blis console script is not on PATH")
    proc = subprocess.run([exe, "run", *MODEL, "--num-requests", "20"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    code, in_process, _ = run_cli(["run", *MODEL, "--num-requests", "20"], capsys)
    assert code == 0
    assert proc.stdout == in_process          # same bytes across processes (no hash seeding)
    assert cluster_metrics(proc.stdout)["completed_requests"] == 20


def test_console_script_bad_input_is_one_line_on_real_stderr(tmp_path):
    exe = shutil.which("blis")
    if exe is None:
        pytest.skip("the blis console script is not on PATH")
    metrics = tmp_path / "m.json"
    argv = [exe, "run", *MODEL, "--rate", "0", "--metrics-path", str(metrics)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    # At the default log level upstream's warnings (level=...) may precede the error line.
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("level=")]
    assert len(errors) == 1 and errors[0].startswith("blis: error: --rate"), proc.stderr
    # With warnings silenced the error is the only line.
    proc = subprocess.run(argv + ["--log", "error"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == errors
    assert not metrics.exists()
    assert files_in(tmp_path) == set()


def test_the_executable_exits_quickly_with_every_output_written_and_flushed(tmp_path, capsys):
    # console_main skips the interpreter's teardown: stdout (a pipe here, so block-buffered),
    # the log line on stderr and the metrics file must all be complete all the same.
    metrics = tmp_path / "m.json"
    argv = ["run", *MODEL, "--num-requests", "20", "--metrics-path", str(metrics),
            "--log", "info"]
    proc = subprocess.run([sys.executable, "-m", "blis_core.cli", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].endswith(f"Metrics written to: {metrics}")
    written = metrics.read_text()
    code, in_process, _ = run_cli(argv, capsys)
    assert code == 0
    assert proc.stdout == in_process
    assert metrics.read_text() == written
    assert len(json.loads(written)["requests"]) == 20


# -- bad input: one line, exit code 2, no traceback, no output files ---------------------------
def _bad_csv(directory) -> tuple[str, str]:
    header = directory / "bad.yaml"
    data = directory / "bad.csv"
    header.write_text(TRACE_HEADER)
    data.write_text(TRACE_COLUMNS + "\n"
                    "0,,,,,0,,0,false,100,50,0,0,0,0,0,,0,0,0,0,0,0,0,ok,,\n"
                    "1,,,,,0,,0,false,abc,50,0,0,0,0,0,,0,0,1000,0,0,0,0,ok,,\n"
                    "2,,,,,0,,0,false,100,50,0,0,0,0,0,,0,0,2000,0,0,0,0,ok,,\n")
    return str(header), str(data)


def _short_csv(directory) -> tuple[str, str]:
    header = directory / "short.yaml"
    data = directory / "short.csv"
    header.write_text(TRACE_HEADER)
    data.write_text(TRACE_COLUMNS + "\n"
                    "0,,,,,0,,0,false,100,50,0,0,0,0,0,,0,0,0,0,0,0,0,ok,,\n"
                    "1,,,,,0,,0,false,100,50\n")
    return str(header), str(data)


def _bad_header(directory) -> tuple[str, str]:
    header = directory / "badkey.yaml"
    data = directory / "ok.csv"
    header.write_text(TRACE_HEADER + "bogus_header_key: 1\n")
    data.write_text(TRACE_COLUMNS + "\n0,,,,,0,,0,false,100,50,0,0,0,0,0,,0,0,0,0,0,0,0,ok,,\n")
    return str(header), str(data)


def _spec_with_unknown_key(directory) -> str:
    spec = directory / "spec.yaml"
    spec.write_text('version: "2"\nseed: 7\naggregate_rate: 1\nnum_requests: 5\n'
                    "bogus_key: 3\n")
    return str(spec)


# (id, argv builder taking tmp_path, substrings the message must contain (case-insensitive))
RUN_CASES = [
    ("unknown-model", lambda d: ["run", "--model", "nobody/nothing"],
     ["nobody/nothing", "--hardware"]),
    ("unknown-model-blackbox", lambda d: ["run", "--model", "nobody/nothing",
                                          "--latency-model", "blackbox"],
     ["nobody/nothing", "--alpha-coeffs"]),
    ("rate-zero", lambda d: ["run", *MODEL, "--rate", "0"], ["--rate"]),
    ("rate-negative", lambda d: ["run", *MODEL, "--rate", "-1"], ["--rate", "-1"]),
    ("rate-nan", lambda d: ["run", *MODEL, "--rate", "nan"], ["--rate"]),
    ("rate-not-a-number", lambda d: ["run", *MODEL, "--rate", "abc"], ["--rate"]),
    ("num-requests-negative", lambda d: ["run", *MODEL, "--num-requests", "-5"],
     ["--num-requests", "-5"]),
    ("prompt-min-above-max", lambda d: ["run", *MODEL, "--prompt-tokens-min", "10",
                                        "--prompt-tokens-max", "5"],
     ["--prompt-tokens-min", "--prompt-tokens-max"]),
    ("alpha-not-a-number", lambda d: ["run", *MODEL, "--alpha-coeffs", "1,abc,3"],
     ["--alpha-coeffs", "abc"]),
    ("alpha-not-finite", lambda d: ["run", *MODEL, "--latency-model", "blackbox",
                                    "--alpha-coeffs", "1,inf,3", "--beta-coeffs", "1,2,3"],
     ["--alpha-coeffs", "inf"]),
    ("beta-not-finite", lambda d: ["run", *MODEL, "--latency-model", "blackbox",
                                   "--alpha-coeffs", "1,2,3", "--beta-coeffs", "1,nan,3"],
     ["--beta-coeffs", "nan"]),
    ("alpha-too-few", lambda d: ["run", *MODEL, "--latency-model", "blackbox",
                                 "--alpha-coeffs", "1,2", "--beta-coeffs", "1,2,3"],
     ["alphacoeffs", "3"]),
    ("beta-too-few", lambda d: ["run", *MODEL, "--latency-model", "blackbox",
                                "--alpha-coeffs", "1,2,3", "--beta-coeffs", "1"],
     ["betacoeffs", "3"]),
    ("alpha-without-beta", lambda d: ["run", *MODEL, "--latency-model", "blackbox",
                                      "--alpha-coeffs", "1,2,3"],
     ["--alpha-coeffs", "--beta-coeffs"]),
    ("unknown-flag", lambda d: ["run", *MODEL, "--no-such-flag"], ["--no-such-flag"]),
    ("unknown-latency-model", lambda d: ["run", *MODEL, "--latency-model", "nope"],
     ["--latency-model", "nope", "roofline", "blackbox"]),
    ("unknown-routing-policy", lambda d: ["run", *MODEL, "--routing-policy", "nope"],
     ["--routing-policy", "nope", "round-robin", "least-loaded", "always-busiest"]),
    ("unknown-admission-policy", lambda d: ["run", *MODEL, "--admission-policy", "nope"],
     ["--admission-policy", "nope", "always-admit", "token-bucket", "tier-shed"]),
    ("unknown-priority-policy", lambda d: ["run", *MODEL, "--priority-policy", "nope"],
     ["--priority-policy", "nope", "constant", "slo-based", "inverted-slo"]),
    ("unknown-scheduler", lambda d: ["run", *MODEL, "--scheduler", "nope"],
     ["--scheduler", "nope", "fcfs", "priority-fcfs", "sjf", "reverse-priority"]),
    ("token-bucket-capacity-zero", lambda d: ["run", *MODEL, "--admission-policy", "token-bucket",
                                              "--token-bucket-capacity", "0"],
     ["--token-bucket-capacity", "> 0"]),
    ("token-bucket-refill-negative", lambda d: ["run", *MODEL, "--admission-policy",
                                                "token-bucket", "--token-bucket-refill-rate",
                                                "-1"],
     ["--token-bucket-refill-rate", "> 0"]),
    ("token-bucket-capacity-nan", lambda d: ["run", *MODEL, "--admission-policy", "token-bucket",
                                             "--token-bucket-capacity", "nan"],
     ["--token-bucket-capacity"]),
    ("unknown-workload", lambda d: ["run", *MODEL, "--workload", "nope"],
     ["nope", "chatbot"]),
    ("workload-spec-unknown-key", lambda d: ["run", *MODEL,
                                             "--workload-spec", _spec_with_unknown_key(d)],
     ["bogus_key", "workload spec"]),
    ("workload-spec-missing", lambda d: ["run", *MODEL,
                                         "--workload-spec", str(d / "absent.yaml")],
     ["absent.yaml"]),
    ("total-kv-blocks-zero", lambda d: ["run", *MODEL, "--total-kv-blocks", "0"],
     ["--total-kv-blocks"]),
    ("total-kv-blocks-huge", lambda d: ["run", *MODEL, "--total-kv-blocks",
                                        "99999999999999999999999"],
     ["--total-kv-blocks", "not in the range"]),
    ("max-num-running-reqs-zero", lambda d: ["run", *MODEL, "--max-num-running-reqs", "0"],
     ["--max-num-running-reqs"]),
    ("num-instances-zero", lambda d: ["run", *MODEL, "--num-instances", "0"],
     ["--num-instances"]),
    ("bad-log-level", lambda d: ["run", *MODEL, "--log", "loud"], ["--log", "loud"]),
    ("missing-model", lambda d: ["run"], ["--model"]),
]


@pytest.mark.parametrize("builder,expected", [(b, e) for _, b, e in RUN_CASES],
                         ids=[case_id for case_id, _, _ in RUN_CASES])
def test_bad_run_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, builder, expected):
    inputs = tmp_path / "in"
    outputs = tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    argv = builder(inputs) + ["--metrics-path", str(outputs / "metrics.json"),
                              "--trace-output", str(outputs / "trace")]
    code, out, err = run_cli(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("blis: error: ")
    for text in expected:
        assert text.lower() in lines[0].lower(), lines[0]
    assert METRICS_HEADER not in out
    assert files_in(outputs) == set(), "bad input left output files behind"


REPLAY_CASES = [
    ("missing-header", lambda d: (str(d / "absent.yaml"), str(d / "absent.csv")),
     ["absent.yaml"]),
    ("missing-data", lambda d: (_bad_csv(d)[0], str(d / "absent.csv")), ["absent.csv"]),
    ("malformed-row", _bad_csv, ["bad.csv", "row 2", "input_tokens", "abc"]),
    ("short-row", _short_csv, ["short.csv", "row 2", "columns"]),
    ("unknown-header-key", _bad_header, ["badkey.yaml", "bogus_header_key"]),
]


@pytest.mark.parametrize("builder,expected", [(b, e) for _, b, e in REPLAY_CASES],
                         ids=[case_id for case_id, _, _ in REPLAY_CASES])
def test_bad_replay_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, builder,
                                                           expected):
    inputs = tmp_path / "in"
    outputs = tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    header, data = builder(inputs)
    argv = ["replay", *MODEL, *BLACKBOX, "--trace-header", header, "--trace-data", data,
            "--results-path", str(outputs / "results.json"),
            "--trace-output", str(outputs / "trace")]
    code, out, err = run_cli(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("blis: error: ")
    for text in expected:
        assert text.lower() in lines[0].lower(), lines[0]
    assert out == ""
    assert files_in(outputs) == set()


def test_replay_requires_trace_flags(capsys):
    code, _, err = run_cli(["replay", *MODEL], capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("blis: error: "), err
    assert "--trace-header" in lines[0]


def test_unwritable_output_paths_name_the_flag_not_a_temp_file(tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    for flag, target in (("--metrics-path", str(missing / "m.json")),
                         ("--trace-output", str(missing / "trace"))):
        code, out, err = run_cli(["run", *MODEL, "--num-requests", "3", flag, target], capsys)
        assert code == 2
        lines = error_lines(err)
        assert len(lines) == 1 and lines[0].startswith(f"blis: error: {flag}: "), err
        assert target in lines[0]
        assert ".blis-" not in lines[0] and ".tmp" not in lines[0]
        assert "Traceback" not in err
    assert not missing.exists()


def test_die_keeps_multiline_messages_on_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        cli._die("first line\n  second line\n")
    assert info.value.code == 2
    assert capsys.readouterr().err == "blis: error: first line second line\n"


def test_plugins_list_unknown_kind_is_one_line(capsys):
    code, out, err = run_cli(["plugins", "list", "--kind", "nope"], capsys)
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("blis: error: --kind"), err
    assert "routing" in lines[0]


# -- --metrics-path -----------------------------------------------------------------------------
def test_metrics_path_writes_json_with_one_record_per_completed_request(tmp_path, capsys):
    target = tmp_path / "metrics.json"
    code, out, err = run_cli(["run", *MODEL, "--num-requests", "25", "--rate", "4",
                              "--metrics-path", str(target)], capsys)
    assert code == 0, err
    data = json.loads(target.read_text())
    summary = cluster_metrics(out)
    assert summary["completed_requests"] == 25
    assert isinstance(data["requests"], list)
    assert len(data["requests"]) == data["completed_requests"] == 25
    # The file's summary is the printed cluster summary plus the per-request records.
    requests = data.pop("requests")
    assert data == summary
    ids = [r["requestID"] for r in requests]
    assert len(set(ids)) == len(ids)
    # Written atomically: no temporary files left beside it.
    assert files_in(tmp_path) == {"metrics.json"}
    assert not any(name.startswith(".blis-") for name in os.listdir(tmp_path))
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_write_atomically_replaces_whole_file_and_cleans_up_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    files.write_atomically(str(target), "first\n")
    files.write_atomically(str(target), "second\n")
    assert target.read_text() == "second\n"
    assert files_in(tmp_path) == {"out.json"}

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError):
        files.write_atomically(str(target), "third\n")
    assert target.read_text() == "second\n"       # the old file is intact
    assert files_in(tmp_path) == {"out.json"}     # and the temporary file is gone


# -- --trace-output and replay ------------------------------------------------------------------
def _summary_counts(summary: dict) -> tuple[int, int, int]:
    return (summary["completed_requests"], summary["total_input_tokens"],
            summary["total_output_tokens"])


def test_trace_output_round_trips_through_replay(tmp_path, capsys):
    prefix = tmp_path / "run"
    engine = [*MODEL, *BLACKBOX, "--total-kv-blocks", "2000", "--max-model-len", "4096"]
    code, run_out, err = run_cli(["run", *engine, "--rate", "5", "--num-requests", "40",
                                  "--trace-output", str(prefix)], capsys)
    assert code == 0, err
    header, data = tmp_path / "run.yaml", tmp_path / "run.csv"
    assert header.is_file() and data.is_file()
    assert files_in(tmp_path) == {"run.yaml", "run.csv"}   # atomic writes left no temp files
    text = header.read_text()
    assert "trace_version: 2" in text and "mode: generated" in text

    with data.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == TRACE_COLUMNS.split(",")
    assert len(rows) == 40
    arrivals = [int(r["arrival_time_us"]) for r in rows]
    assert len(set(arrivals)) == len(arrivals), "the scenario needs distinct arrival times"
    assert arrivals == sorted(arrivals)
    assert all(r["status"] == "ok" for r in rows)
    run_summary = cluster_metrics(run_out)
    assert sum(int(r["input_tokens"]) + int(r["prefix_length"]) for r in rows) \
        == run_summary["total_input_tokens"]
    assert sum(int(r["output_tokens"]) for r in rows) == run_summary["total_output_tokens"]

    results = tmp_path / "results.json"
    code, replay_out, err = run_cli(["replay", *engine, "--trace-header", str(header),
                                     "--trace-data", str(data),
                                     "--results-path", str(results)], capsys)
    assert code == 0, err
    replay_summary = cluster_metrics(replay_out)
    assert _summary_counts(replay_summary) == _summary_counts(run_summary)
    assert _summary_counts(run_summary)[0] == 40
    records = json.loads(results.read_text())
    assert [r["request_id"] for r in records] == list(range(40))
    assert [r["input_tokens"] for r in records] == \
        [int(r["input_tokens"]) + int(r["prefix_length"]) for r in rows]
    assert [r["output_tokens"] for r in records] == [int(r["output_tokens"]) for r in rows]


def test_trace_output_of_replay_is_replayable_again(tmp_path, capsys):
    engine = [*MODEL, *BLACKBOX, "--total-kv-blocks", "2000"]
    code, first_out, err = run_cli(["run", *engine, "--rate", "3", "--num-requests", "15",
                                    "--trace-output", str(tmp_path / "a")], capsys)
    assert code == 0, err
    code, second_out, err = run_cli(["replay", *engine, "--trace-header", str(tmp_path / "a.yaml"),
                                     "--trace-data", str(tmp_path / "a.csv"),
                                     "--trace-output", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert "mode: replayed" in (tmp_path / "b.yaml").read_text()
    code, third_out, err = run_cli(["replay", *engine, "--trace-header", str(tmp_path / "b.yaml"),
                                    "--trace-data", str(tmp_path / "b.csv")], capsys)
    assert code == 0, err
    assert second_out == third_out                # same trace, same seed: same run
    assert _summary_counts(cluster_metrics(first_out)) == \
        _summary_counts(cluster_metrics(third_out))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


ENDLESS_SPEC = """version: "2"
seed: 1
aggregate_rate: 1.0
num_requests: 1
clients:
  - id: a
    rate_fraction: 1
    arrival: {process: poisson}
    input_distribution: {type: constant, params: {value: 100}}
    output_distribution: {type: constant, params: {value: 3300}}
"""


def test_a_request_that_outgrows_the_cache_without_a_horizon_is_an_error(tmp_path, capsys):
    # 3,400 tokens need 213 blocks of 16; with 200 the request is preempted forever (as
    # upstream): without a horizon that run would never end.
    spec = tmp_path / "spec.yaml"
    spec.write_text(ENDLESS_SPEC)
    metrics = tmp_path / "m.json"
    argv = ["run", *MODEL, *BLACKBOX, "--workload-spec", str(spec), "--total-kv-blocks", "200",
            "--metrics-path", str(metrics)]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == "" and not metrics.exists()
    errors = [line for line in err.splitlines() if line.startswith("blis: error:")]
    assert errors == [line for line in err.splitlines() if not line.startswith("level=")]
    assert len(errors) == 1 and "request_0 can never complete" in errors[0]
    assert "it needs 201 KV blocks but the cache holds 200" in errors[0]
    # With a horizon the cycling is part of the result, exactly as upstream reports it.
    code, out, _ = run_cli(argv + ["--horizon", "100000000"], capsys)
    assert code == 0
    cluster = metric_blocks(out)[-1]
    assert (cluster["completed_requests"], cluster["still_running"]) == (0, 1)
    assert cluster["preemption_count"] > 1
