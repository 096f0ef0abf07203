"""Regenerate (or check) ``testdata/golden_runs.json``: blis's own golden runs.

Each entry is a small deterministic ``blis`` command line that needs nothing but the shipped
catalog, and the exact stdout blis printed for it. ``tests/test_golden_testdata.py`` replays
every entry and requires byte-identical stdout, so any change of simulated behavior shows up.

    python tools/make_testdata.py           # check plausibility, then (re)write the file
    python tools/make_testdata.py --check   # compare the current code with the file

Regenerate only when behavior changes on purpose (and say why in the commit); never to make a
failing golden test pass.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "testdata" / "golden_runs.json"

MODEL = ["--model", "meta-llama/llama-3.1-8b-instruct"]
BLACKBOX = [
    "--latency-model", "blackbox", "--hardware", "H100", "--tp", "1",
    "--alpha-coeffs", "232.46191091038054,1.752360364195244,3357.4400353290152",
    "--beta-coeffs", "5752.705191348184,17.25086436834028,5.999143920128404",
]

SCENARIOS: list[tuple[str, list[str]]] = [
    # The README's first command, shortened: roofline, H100, TP 1 from the shipped catalog.
    ("roofline-defaults-50", ["run", *MODEL, "--num-requests", "50"]),
    # A KV cache too small for the load: heavy preemption and recomputation.
    ("blackbox-preemption-small-kv", [
        "run", *MODEL, *BLACKBOX, "--total-kv-blocks", "400", "--rate", "5",
        "--num-requests", "200", "--prompt-tokens", "512", "--prompt-tokens-stdev", "200",
        "--prompt-tokens-min", "16", "--prompt-tokens-max", "1500", "--output-tokens", "300",
        "--output-tokens-stdev", "150", "--output-tokens-min", "8",
        "--output-tokens-max", "900", "--max-model-len", "4096"]),
    # A cluster: per-instance blocks, then the cluster block.
    ("roofline-3-instances-round-robin", [
        "run", *MODEL, "--num-instances", "3", "--routing-policy", "round-robin",
        "--rate", "20", "--num-requests", "60"]),
    # Load-aware routing (ties broken with the router's random stream).
    ("blackbox-4-instances-least-loaded", [
        "run", *MODEL, *BLACKBOX, "--num-instances", "4", "--routing-policy", "least-loaded",
        "--total-kv-blocks", "2000", "--rate", "30", "--num-requests", "120"]),
    # GPU + CPU tiered KV cache with a shared prefix: offload, reload, thrashing.
    ("blackbox-tiered-kv-cpu-blocks", [
        "run", *MODEL, *BLACKBOX, "--total-kv-blocks", "300", "--kv-cpu-blocks", "2000",
        "--kv-transfer-bandwidth", "50", "--kv-transfer-base-latency", "10",
        "--prefix-tokens", "256", "--rate", "8", "--num-requests", "120",
        "--prompt-tokens", "400", "--prompt-tokens-stdev", "150", "--prompt-tokens-min", "16",
        "--prompt-tokens-max", "1200", "--output-tokens", "200", "--output-tokens-stdev", "100",
        "--output-tokens-min", "8", "--output-tokens-max", "600", "--max-model-len", "4096"]),
    # A workload preset through the workload-generator plugin hook.
    ("roofline-chatbot-preset", [
        "run", "--model", "qwen/qwen3-14b", "--workload", "chatbot", "--rate", "5",
        "--num-requests", "40"]),
]


def run(argv: list[str]) -> str:
    """``blis ARGV`` in-process; its stdout (raises if blis exits with an error)."""
    from blis_core.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        try:
            main(list(argv))
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"blis {' '.join(argv)} exited with {exc.code}") from None
    return buffer.getvalue()


def metric_blocks(stdout: str) -> list[dict]:
    """The ``=== Simulation Metrics ===`` JSON objects, in order (the cluster's is last)."""
    blocks, lines = [], stdout.splitlines()
    for i, line in enumerate(lines):
        if line == "=== Simulation Metrics ===":
            body = []
            for follow in lines[i + 1:]:
                body.append(follow)
                if follow == "}":
                    break
            blocks.append(json.loads("\n".join(body)))
    return blocks


def _numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def plausibility_problems(name: str, argv: list[str], stdout: str) -> list[str]:
    """Everything implausible about one run: lost requests, negative or non-finite numbers."""
    problems = []
    blocks = metric_blocks(stdout)
    if not blocks:
        return [f"{name}: no Simulation Metrics section"]
    requested = int(argv[argv.index("--num-requests") + 1])
    cluster = blocks[-1]
    if cluster.get("instance_id") != "cluster":
        problems.append(f"{name}: last block is {cluster.get('instance_id')!r}, not the cluster")
    for key, want in (("completed_requests", requested), ("injected_requests", requested),
                      ("still_queued", 0), ("still_running", 0), ("dropped_unservable", 0),
                      ("timed_out_requests", 0)):
        if cluster.get(key) != want:
            problems.append(f"{name}: {key} = {cluster.get(key)!r}, expected {want}")
    instances = blocks[:-1]
    num_instances = int(argv[argv.index("--num-instances") + 1]) \
        if "--num-instances" in argv else 1
    if num_instances > 1:
        if len(instances) != num_instances:
            problems.append(f"{name}: {len(instances)} instance blocks, expected {num_instances}")
        for key in ("completed_requests", "total_input_tokens", "total_output_tokens",
                    "preemption_count"):
            total = sum(b.get(key, 0) for b in instances)
            if total != cluster.get(key, 0):
                problems.append(f"{name}: instances' {key} sum to {total}, cluster says "
                                f"{cluster.get(key)}")
    for block in blocks:
        for number in _numbers(block):
            if number != number or number in (float("inf"), float("-inf")) or number < 0:
                problems.append(f"{name}: implausible number {number!r} in "
                                f"{block.get('instance_id')}")
        for key in ("e2e", "ttft"):
            if block.get("completed_requests") and not block.get(f"{key}_mean_ms", 0) > 0:
                problems.append(f"{name}: {key}_mean_ms is not positive")
    for line in stdout.splitlines():        # text sections: "Preemption Rate: 0.8900" etc.
        for number in re.findall(r"-\d+(?:\.\d+)?", line.split(":", 1)[-1]):
            problems.append(f"{name}: negative number {number} in {line!r}")
    return problems


def generate() -> list[dict]:
    logging.getLogger().addHandler(logging.NullHandler())   # upstream's warnings: not needed
    entries, problems = [], []
    for name, argv in SCENARIOS:
        stdout = run(argv)
        if run(argv) != stdout:
            problems.append(f"{name}: two runs printed different stdout (not deterministic)")
        problems += plausibility_problems(name, argv, stdout)
        entries.append({"name": name, "argv": argv, "stdout": stdout})
    if problems:
        raise SystemExit("refusing to write golden data:\n  " + "\n  ".join(problems))
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare the current code with the file instead of writing it")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    entries = generate()
    if args.check:
        stored = json.loads(OUTPUT.read_text())
        stored_by_name = {e["name"]: e for e in stored}
        differ = [e["name"] for e in entries
                  if stored_by_name.get(e["name"], {}).get("stdout") != e["stdout"]
                  or stored_by_name[e["name"]]["argv"] != e["argv"]]
        if differ or len(stored) != len(entries):
            raise SystemExit(f"golden data out of date: {differ or 'scenario list changed'}")
        print(f"{OUTPUT.relative_to(ROOT)}: {len(entries)} runs match")
        return
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(entries, indent=2) + "\n")
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(entries)} runs")
    for entry in entries:
        cluster = metric_blocks(entry["stdout"])[-1]
        print(f"  {entry['name']}: completed={cluster['completed_requests']} "
              f"preemptions={cluster['preemption_count']} e2e_mean_ms={cluster['e2e_mean_ms']:.1f}")


if __name__ == "__main__":
    main()
