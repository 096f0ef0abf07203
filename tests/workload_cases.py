"""Reference-corpus helpers for the workload tests: turn a case's ``cmd.txt`` into workload
options and read its TraceV2 rows."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

from blis_workloads import WorkloadOptions

from _shared import shared_dir

_INT_FLAGS = {
    "num-requests", "seed", "prefix-tokens", "prompt-tokens", "prompt-tokens-stdev",
    "prompt-tokens-min", "prompt-tokens-max", "output-tokens", "output-tokens-stdev",
    "output-tokens-min", "output-tokens-max", "concurrency", "think-time-ms",
}


def corpus_dir() -> Path | None:
    base = shared_dir()
    return base / "reference" / "corpus" if base is not None else None


def case_dir(case: str) -> Path:
    return corpus_dir() / case


def run_cases_with_trace() -> list[str]:
    """Every ``blis run`` case that has a reference trace."""
    corpus = corpus_dir()
    if corpus is None:
        return []
    return sorted(d.name for d in corpus.iterdir()
                  if (d / "trace.csv").is_file() and (d / "cmd.txt").is_file()
                  and shlex.split((d / "cmd.txt").read_text())[1] == "run")


def command_flags(case: str) -> dict[str, str]:
    """``--flag value`` pairs of the case's command, with ``$CASE_DIR`` resolved."""
    text = (case_dir(case) / "cmd.txt").read_text().replace("$CASE_DIR", str(case_dir(case)))
    argv = shlex.split(text)
    flags: dict[str, str] = {}
    i = 2
    while i < len(argv):
        name = argv[i][2:]
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            flags[name] = argv[i + 1]
            i += 2
        else:
            flags[name] = "true"
            i += 1
    return flags


def workload_arguments(case: str) -> tuple[WorkloadOptions, str, str | None, int | None]:
    """``build_cli_workload`` arguments for the case: options, workload, spec path, horizon."""
    flags = command_flags(case)
    options = WorkloadOptions()
    explicit = set()
    for name, value in flags.items():
        if name in _INT_FLAGS:
            setattr(options, name.replace("-", "_"), int(value))
            explicit.add(name)
        elif name == "rate":
            options.rate = float(value)
            explicit.add(name)
    options.explicit = frozenset(explicit)
    horizon = int(flags["horizon"]) if "horizon" in flags else None
    return options, flags.get("workload", "distribution"), flags.get("workload-spec"), horizon


def trace_rows(path: Path) -> list[list[str]]:
    """The data rows of a TraceV2 CSV (header row dropped)."""
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]
