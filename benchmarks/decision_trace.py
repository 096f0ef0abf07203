"""What the decision trace costs: bench_rr4_10k with tracing off and on, against upstream.

Runs the case's command line (``cmd.txt``) from ``shared/reference/upstream`` in fresh
subprocesses, alternating the variants so that machine drift hits each alike, ``--repeat``
times, and prints the median and range of each with its ratio to upstream's binary measured in
the same run:

- blis, as given (``--trace-level none``);
- blis with ``--trace-level decisions --counterfactual-k 3 --summarize-trace``;
- the same two under upstream's binary (``reference/bin/blis-upstream-4e179804``);
- with ``--baseline-src DIR`` (a checkout of an earlier commit), blis from DIR: the cost of
  the trace's hooks when it is off.

Stdout of the untraced runs must equal the corpus ``stdout.txt``, and the traced runs of blis and
upstream must agree with each other, or the figures compare different work.

Run from the project root: ``python benchmarks/decision_trace.py [--repeat N]
[--baseline-src DIR] [--case NAME]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRACE_ARGS = ["--trace-level", "decisions", "--counterfactual-k", "3", "--summarize-trace"]


def shared_dir() -> Path:
    return Path(os.environ.get("BLIS_SHARED_DIR", PROJECT_ROOT.parent / "shared"))


def timed(argv: list[str], cwd: Path, env: dict | None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{shlex.join(argv[:3])}...: exit {done.returncode}: {done.stderr[-500:]}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="bench_rr4_10k")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-src", default=None,
                        help="a checkout of an earlier blis commit, run with PYTHONPATH=DIR")
    args = parser.parse_args()

    shared = shared_dir()
    case = shared / "reference" / "corpus" / args.case
    upstream_dir = shared / "reference" / "upstream"
    binary = shared / "reference" / "bin" / "blis-upstream-4e179804"
    flags = shlex.split((case / "cmd.txt").read_text())[1:]
    blis = [sys.executable, "-m", "blis_core.cli"]
    here = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    variants = {
        "blis, trace off": (blis + flags, here),
        "blis, trace on": (blis + flags + TRACE_ARGS, here),
        "upstream, trace off": ([str(binary)] + flags, None),
        "upstream, trace on": ([str(binary)] + flags + TRACE_ARGS, None),
    }
    if args.baseline_src:
        base_env = dict(os.environ, PYTHONPATH=str(Path(args.baseline_src).resolve()))
        variants["blis baseline, trace off"] = (blis + flags, base_env)

    expected = [line for line in (case / "stdout.txt").read_text().splitlines() if line.strip()]
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, str] = {}
    for _ in range(args.repeat):
        for name, (argv, env) in variants.items():
            elapsed, stdout = timed(argv, upstream_dir, env)
            times[name].append(elapsed)
            outputs[name] = stdout
    for name in variants:
        if "trace off" in name:
            got = [line for line in outputs[name].splitlines() if line.strip()]
            if got != expected:
                sys.exit(f"{name}: stdout differs from the corpus stdout.txt")
    if outputs["blis, trace on"] != outputs["upstream, trace on"]:
        sys.exit("traced stdout differs between blis and upstream")

    print(f"{args.case}, median of {args.repeat} (min-max), ratio to upstream in the same run:")
    for name, samples in times.items():
        median = statistics.median(samples)
        reference = statistics.median(times["upstream, trace on" if "trace on" in name
                                           else "upstream, trace off"])
        print(f"  {name:26s} {median:7.2f} s ({min(samples):.2f}-{max(samples):.2f})  "
              f"x{median / reference:.2f}")
    if args.baseline_src:
        before = statistics.median(times["blis baseline, trace off"])
        after = statistics.median(times["blis, trace off"])
        print(f"  trace off vs baseline: {after / before:.3f}")


if __name__ == "__main__":
    main()
