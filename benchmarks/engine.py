"""Wall time and peak memory of whole ``blis run`` invocations against upstream's binary.

For each case (``bench_golden1_10k``, ``bench_rr4_10k``, ``bench_weighted4_10k``,
``bench_weighted8_50k``, ``bench_golden1_100k`` and the three thrashing roofline goldens by
default) the script runs the case's command line (``cmd.txt``) in fresh subprocesses, from
``shared/reference/upstream`` as upstream ran it: once with ``python -m blis_core.cli`` in
place of ``blis`` and once with upstream's binary (``reference/bin/blis-upstream-4e179804``),
alternating (which goes first alternates too) ``--repeat`` times. The machine is shared and
noisy, so only figures from the same run are compared: the ratio is blis's median wall time
over upstream's, and min-max ranges are printed beside each median. Each child is reaped with
``os.wait4``, which returns that child's own resource usage, so its peak RSS is its own. Every
blis stdout is compared with the same run's upstream stdout and with the corpus
``stdout.txt`` (same text, blank lines ignored).

A baseline, ``python -c "import blis_core.cli"`` timed the same way, shows how much of each
figure is interpreter start-up and imports. The children use cached bytecode, as an installed
blis does (a cache folder of the run, warmed by one untimed import of every module a run
loads, plugins included), even where the caller's environment sets PYTHONDONTWRITEBYTECODE.
The load average is printed before and after.

Run from the project root: ``python benchmarks/engine.py [--cases NAME ...] [--repeat N]
[--no-upstream]``. The reference directory is ``BLIS_SHARED_DIR`` or the ``shared`` folder
beside the project. docs/performance.md records the latest table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "BLIS_SHARED_DIR"
DEFAULT_CASES = ("bench_golden1_10k", "bench_rr4_10k", "bench_weighted4_10k",
                 "bench_weighted8_50k", "bench_golden1_100k",
                 # the CPU tier thrashes: every step mirrors more keys than the tier holds
                 "golden_roofline_20260217-155451", "golden_roofline_20260217-162547",
                 "golden_roofline_20260217-231439")
CLI = [sys.executable, "-m", "blis_core.cli"]
UPSTREAM_BINARY = Path("reference") / "bin" / "blis-upstream-4e179804"


def shared_dir() -> Path | None:
    """The reference directory, located as tests/_shared.py does; None when absent."""
    configured = os.environ.get(ENV_VAR)
    candidate = Path(configured) if configured else PROJECT_ROOT.parent / "shared"
    return candidate if candidate.is_dir() else None


@dataclass
class Child:
    wall: float  # seconds
    max_rss_mb: float  # peak resident set size of this child, MiB
    returncode: int
    stdout: str
    stderr: str


def run_child(argv: list[str], cwd: Path, env: dict[str, str]) -> Child:
    """Run ``argv`` to completion; wall time and the child's own peak RSS (via ``wait4``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: tell Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return Child(wall, rss, proc.returncode, stdout, stderr)


def case_argv(case_dir: Path, out_dir: Path,
              program: list[str] = CLI) -> tuple[list[str], int | None]:
    """The case's command line with ``program`` in place of ``blis``, and its --num-requests
    (None when a workload spec sets the count instead)."""
    text = (case_dir / "cmd.txt").read_text()
    text = text.replace("$CASE_DIR", str(case_dir)).replace("$OUT_DIR", str(out_dir))
    words = shlex.split(text)
    if not words or words[0] != "blis":
        raise SystemExit(f"{case_dir / 'cmd.txt'}: expected a 'blis ...' command line")
    num_requests = None
    for i, word in enumerate(words):
        if word == "--num-requests" and i + 1 < len(words):
            num_requests = int(words[i + 1])
        elif word.startswith("--num-requests="):
            num_requests = int(word.split("=", 1)[1])
    return program + words[1:], num_requests


def first_difference(got: str, want: str) -> str | None:
    """None when the texts agree ignoring blank lines, else a short description."""
    got_lines = [line for line in got.splitlines() if line.strip()]
    want_lines = [line for line in want.splitlines() if line.strip()]
    for i, (g, w) in enumerate(zip(got_lines, want_lines)):
        if g != w:
            return f"line {i + 1}: got {g.strip()!r}, expected {w.strip()!r}"
    if len(got_lines) != len(want_lines):
        return f"{len(got_lines)} non-blank lines, expected {len(want_lines)}"
    return None


def child_env(bytecode_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    # The children run from the upstream folder: make sure they import this checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    # An installed blis runs from cached bytecode; with PYTHONDONTWRITEBYTECODE inherited (as
    # in some sandboxes) every child would recompile the project's sources, about 0.1 s a run.
    # The cache goes to a folder of this run, not into the checkout.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = bytecode_dir
    return env


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def run_case(case_dir: Path, program: list[str], cwd: Path, env: dict[str, str]) -> Child:
    with tempfile.TemporaryDirectory(prefix="blis-bench-") as out_dir:
        argv, _ = case_argv(case_dir, Path(out_dir), program)
        return run_child(argv, cwd, env)


def verdict(children: list[Child], expected: list[str]) -> tuple[str, str | None]:
    """MATCH when every child exited 0 and printed each expected text; else why not."""
    failed = [c for c in children if c.returncode != 0]
    if failed:
        last = failed[0].stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        return f"EXIT {failed[0].returncode}", last[0]
    for child in children:
        for want in expected:
            difference = first_difference(child.stdout, want)
            if difference is not None:
                return "MISMATCH", difference
    return "MATCH", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), metavar="CASE",
                        help=f"corpus cases to run (default: {' '.join(DEFAULT_CASES)})")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case and program "
                        "(default 5)")
    parser.add_argument("--no-upstream", action="store_true",
                        help="time blis only (no upstream binary, no ratio)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    shared = shared_dir()
    if shared is None:
        raise SystemExit(f"reference material not found: set {ENV_VAR} or place the 'shared' "
                         "directory beside the project checkout")
    upstream = shared / "reference" / "upstream"
    corpus = shared / "reference" / "corpus"
    binary = shared / UPSTREAM_BINARY
    if not args.no_upstream and not os.access(binary, os.X_OK):
        raise SystemExit(f"upstream binary not found or not executable: {binary} "
                         "(or pass --no-upstream)")
    for name in args.cases:
        if not (corpus / name / "cmd.txt").is_file():
            raise SystemExit(f"unknown case {name!r}: no {corpus / name / 'cmd.txt'}")
    bytecode = tempfile.TemporaryDirectory(prefix="blis-bench-pyc-")
    env = child_env(bytecode.name)
    # Every module a run imports, plugins included, so no timed run compiles any.
    warm = run_child([sys.executable, "-c", "import blis_core.cli, blis_core.simulation; "
                      "from blis_core.plugins import get_registry; get_registry()"], upstream, env)
    if warm.returncode:
        raise SystemExit(f"import failed: {warm.stderr.strip()}")

    baseline = [run_child([sys.executable, "-c", "import blis_core.cli"], upstream, env)
                for _ in range(args.repeat)]
    if any(c.returncode for c in baseline):
        raise SystemExit(f"baseline failed: {baseline[0].stderr.strip()}")
    base_walls = [c.wall for c in baseline]
    load_before = os.getloadavg()
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs, "
          f"repeat {args.repeat}, load average {load_before[0]:.2f} at start")
    print(f"baseline `python -c \"import blis_core.cli\"`: {spread(base_walls)} s, "
          f"peak RSS {max(c.max_rss_mb for c in baseline):.0f} MB")
    print()

    header = ("case", "blis s [min-max]", "upstream s [min-max]", "ratio", "req/s",
              "blis RSS MB", "stdout")
    rows = []
    notes = []
    for name in args.cases:
        case_dir = corpus / name
        expected = (case_dir / "stdout.txt").read_text()
        _, num_requests = case_argv(case_dir, case_dir)
        ours: list[Child] = []
        theirs: list[Child] = []
        for i in range(args.repeat):
            order = [(ours, CLI), (theirs, [str(binary)])]
            if args.no_upstream:
                order = order[:1]
            elif i % 2:
                order.reverse()
            for into, program in order:
                into.append(run_case(case_dir, program, upstream, env))
            line = f"  {name}: run {i + 1} blis {ours[-1].wall:.2f} s"
            if theirs:
                line += f", upstream {theirs[-1].wall:.2f} s"
            print(line, file=sys.stderr)
        upstream_verdict, why = verdict(theirs, [expected]) if theirs else ("-", None)
        if why:
            notes.append(f"{name}: upstream {upstream_verdict}: {why}")
        # blis must print what upstream printed in this run and what the corpus recorded
        expected_texts = [expected] + ([theirs[0].stdout] if theirs else [])
        ours_verdict, why = verdict(ours, expected_texts)
        if why:
            notes.append(f"{name}: blis {ours_verdict}: {why}")
        walls = [c.wall for c in ours]
        their_walls = [c.wall for c in theirs]
        ratio = (f"{statistics.median(walls) / statistics.median(their_walls):.2f}x"
                 if theirs else "-")
        rows.append((name, spread(walls), spread(their_walls) if theirs else "-", ratio,
                     f"{num_requests / statistics.median(walls):,.0f}" if num_requests else "-",
                     f"{max(c.max_rss_mb for c in ours):.0f}", ours_verdict))

    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print()
    print(f"load average {os.getloadavg()[0]:.2f} at the end. ratio = blis median / upstream "
          "median, same run (below 1 is faster); req/s = --num-requests / blis median wall "
          "(start-up included).")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
