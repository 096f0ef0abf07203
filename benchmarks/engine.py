"""Wall time and peak memory of whole ``blis run`` invocations on the corpus benchmark workloads.

For each case (``bench_golden1_10k``, ``bench_rr4_10k``, ``bench_weighted4_10k``,
``bench_weighted8_50k``, ``bench_golden1_100k`` by default) the
script runs the case's command line (``cmd.txt``, with ``blis`` replaced by
``python -m blis_core.cli``) in a fresh subprocess, from ``shared/reference/upstream`` as
upstream ran it, ``--repeat`` times. Each child is reaped with ``os.wait4``, which returns that
child's own resource usage, so its peak RSS is measured separately from every other child. The
child's stdout is compared with the corpus ``stdout.txt`` (same text, blank lines ignored).

A baseline, ``python -c "import blis_core.cli"`` timed the same way, shows how much of each
figure is interpreter start-up and imports, and how noisy the machine is.

Run from the project root: ``python benchmarks/engine.py [--cases NAME ...] [--repeat N]``.
The reference directory is ``BLIS_SHARED_DIR`` or the ``shared`` folder beside the project.
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
                 "bench_weighted8_50k", "bench_golden1_100k")
# Upstream's wall time on a 2-core machine of the same kind (shared/reference/README.md).
# Upstream's binary on this 2-core machine class (from the issues; 100k was not timed).
UPSTREAM_SECONDS = {"bench_golden1_10k": 9.5, "bench_rr4_10k": 12.5, "bench_weighted4_10k": 8.4,
                    "bench_weighted8_50k": 57.0}
CLI = [sys.executable, "-m", "blis_core.cli"]


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


def case_argv(case_dir: Path, out_dir: Path) -> tuple[list[str], int]:
    """The case's command line with our CLI in place of ``blis``, and its --num-requests."""
    text = (case_dir / "cmd.txt").read_text()
    text = text.replace("$CASE_DIR", str(case_dir)).replace("$OUT_DIR", str(out_dir))
    words = shlex.split(text)
    if not words or words[0] != "blis":
        raise SystemExit(f"{case_dir / 'cmd.txt'}: expected a 'blis ...' command line")
    num_requests = 100  # the CLI's default
    for i, word in enumerate(words):
        if word == "--num-requests" and i + 1 < len(words):
            num_requests = int(words[i + 1])
        elif word.startswith("--num-requests="):
            num_requests = int(word.split("=", 1)[1])
    return CLI + words[1:], num_requests


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


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The children run from the upstream folder: make sure they import this checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), metavar="CASE",
                        help=f"corpus cases to run (default: {' '.join(DEFAULT_CASES)})")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    shared = shared_dir()
    if shared is None:
        raise SystemExit(f"reference material not found: set {ENV_VAR} or place the 'shared' "
                         "directory beside the project checkout")
    upstream = shared / "reference" / "upstream"
    corpus = shared / "reference" / "corpus"
    for name in args.cases:
        if not (corpus / name / "cmd.txt").is_file():
            raise SystemExit(f"unknown case {name!r}: no {corpus / name / 'cmd.txt'}")
    env = child_env()

    baseline = [run_child([sys.executable, "-c", "import blis_core.cli"], upstream, env)
                for _ in range(args.repeat)]
    if any(c.returncode for c in baseline):
        raise SystemExit(f"baseline failed: {baseline[0].stderr.strip()}")
    base_walls = [c.wall for c in baseline]
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs, "
          f"repeat {args.repeat}")
    print(f"baseline `python -c \"import blis_core.cli\"`: median "
          f"{statistics.median(base_walls):.3f} s (min {min(base_walls):.3f}, "
          f"max {max(base_walls):.3f}), peak RSS {max(c.max_rss_mb for c in baseline):.0f} MB")
    print()

    header = ("case", "median s", "min s", "max s", "req/s", "peak RSS MB", "stdout",
              "upstream s", "ratio")
    rows = []
    notes = []
    for name in args.cases:
        case_dir = corpus / name
        expected = (case_dir / "stdout.txt").read_text()
        children = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="blis-bench-") as out_dir:
                argv, num_requests = case_argv(case_dir, Path(out_dir))
                children.append(run_child(argv, upstream, env))
            print(f"  {name}: run {len(children)} {children[-1].wall:.2f} s", file=sys.stderr)
        failed = [c for c in children if c.returncode != 0]
        if failed:
            verdict = f"EXIT {failed[0].returncode}"
            notes.append(f"{name}: {failed[0].stderr.strip().splitlines()[-1:] or ['(no stderr)']}")
        else:
            diffs = [first_difference(c.stdout, expected) for c in children]
            verdict = "MATCH" if all(d is None for d in diffs) else "MISMATCH"
            notes += [f"{name}: {d}" for d in diffs if d is not None][:1]
        walls = [c.wall for c in children]
        median = statistics.median(walls)
        reference = UPSTREAM_SECONDS.get(name)
        rows.append((name, f"{median:.2f}", f"{min(walls):.2f}", f"{max(walls):.2f}",
                     f"{num_requests / median:,.0f}",
                     f"{max(c.max_rss_mb for c in children):.0f}", verdict,
                     f"{reference:.1f}" if reference else "-",
                     f"{median / reference:.2f}x" if reference else "-"))

    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print()
    print("req/s = --num-requests / median wall (start-up included); ratio = median / upstream's "
          "time (below 1 is faster).")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
