"""What the OpenEvolve evaluator's isolation costs per evaluation.

One candidate program (the shipped initial program by default), one configuration (the
evaluator's default run, 500 requests; ``--num-requests`` changes it), timed three ways, each
the median of ``--repeat`` evaluations after one untimed warm-up:

- in process: ``blis_core.evaluate(config, bundle, registry=...)`` on the candidate's classes,
  loaded and registered once (what the simulation itself costs);
- ``evaluate(program_path)`` with ``isolation: fork-server`` (the default): a fork of a
  pre-imported blis process per evaluation; the server's one-time start is timed separately;
- ``evaluate(program_path)`` with ``isolation: subprocess``: a new interpreter per evaluation.

The overhead is the isolated median over the in-process median. The scores must agree, or the
figures compare different runs.

Run from the project root: ``python benchmarks/adapters_openevolve.py [--num-requests N]
[--repeat N] [--program PATH]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from blis_adapters import openevolve as oe  # noqa: E402


def timed(call, repeat: int) -> tuple[list[float], object]:
    result = call()  # warm-up: caches, the fork server, the page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return times, result


def settings_file(folder: str, num_requests: int, isolation: str) -> str:
    run_args = oe.DEFAULT_RUN_ARGS.replace("--num-requests 500", f"--num-requests {num_requests}")
    path = os.path.join(folder, f"{isolation}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"blis": {"run_args": run_args, "isolation": isolation}}, f)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--program", default=str(oe.INITIAL_PROGRAM))
    args = parser.parse_args()
    logging.getLogger("blis").setLevel(logging.ERROR)  # the catalog's default-value notices

    import blis_core

    with tempfile.TemporaryDirectory() as folder:
        paths = {mode: settings_file(folder, args.num_requests, mode)
                 for mode in oe.ISOLATION_MODES}
        settings = oe.load_settings(paths["fork-server"])
        classes = oe.load_candidate(args.program)
        registry = oe.candidate_registry(classes)
        bundle = oe.candidate_bundle(classes, registry)
        config = blis_core.RunConfig.from_json(settings.full_config_json)

        def in_process():
            return blis_core.evaluate(config, bundle, fitness_weights=settings.fitness_weights,
                                      registry=registry).score

        rows = [("in process", *timed(in_process, args.repeat))]

        os.environ[oe.CONFIG_ENV] = paths["fork-server"]
        start = time.perf_counter()
        problem = oe._fork_server().start()
        if problem:
            sys.exit(problem)
        server_start = time.perf_counter() - start
        for mode in oe.ISOLATION_MODES:
            os.environ[oe.CONFIG_ENV] = paths[mode]
            times, outcome = timed(lambda: oe.evaluate_outcome(args.program), args.repeat)
            rows.append((f"evaluate(), {mode}", times, outcome["metrics"]["combined_score"]))

    base = statistics.median(rows[0][1])
    print(f"{args.num_requests} requests, {Path(args.program).name}, median of {args.repeat}")
    print(f"{'':22} {'median s':>9} {'min s':>7} {'max s':>7} {'overhead':>9}  score")
    for label, times, score in rows:
        median = statistics.median(times)
        overhead = f"{(median - base) / base:+.1%}" if label != "in process" else ""
        print(f"{label:22} {median:9.3f} {min(times):7.3f} {max(times):7.3f} {overhead:>9}  "
              f"{score:.6f}")
    print(f"fork server start-up (once per OpenEvolve process): {server_start:.3f} s")
    scores = {round(score, 12) for _, _, score in rows}
    if len(scores) != 1:
        sys.exit(f"the scores differ ({sorted(scores)}): the figures compare different runs")


if __name__ == "__main__":
    main()
