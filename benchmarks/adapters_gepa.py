"""What the GEPA adapter costs per evaluation over a bare ``blis_core.evaluate()``.

One candidate (a routing section), one workload (4 instances, 40 req/s, ``--num-requests``
requests), timed alternately, each figure the median of ``--repeat`` rounds after a warm-up:

- bare: ``blis_core.evaluate(config, bundle)`` with the bundle parsed once;
- adapter: ``BlisGEPAAdapter.evaluate([workload], candidate)`` (parses the candidate, runs,
  builds the output);
- adapter with traces: the same with ``capture_traces=True`` (the trajectory: worst requests,
  routing counts, SLO misses).

Run from the project root: ``python benchmarks/adapters_gepa.py [--num-requests N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import blis_core  # noqa: E402
from blis_adapters.gepa import BlisGEPAAdapter, Workload, candidate_bundle  # noqa: E402

RUN_ARGS = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox "
            "--num-instances 4 --rate 40 --num-requests {n}")
CANDIDATE = {"routing": "policy: least-loaded"}
WEIGHTS = {"throughput": 0.5, "p99_ttft": 0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("blis").setLevel(logging.ERROR)

    config = blis_core.RunConfig.from_args(RUN_ARGS.format(n=args.num_requests))
    bundle = candidate_bundle(CANDIDATE)
    workload = Workload("bench", config)
    adapter = BlisGEPAAdapter(WEIGHTS)
    ways = {
        "bare evaluate()": lambda: blis_core.evaluate(config, bundle,
                                                      fitness_weights=WEIGHTS).score,
        "adapter.evaluate": lambda: adapter.evaluate([workload], CANDIDATE).scores[0],
        "adapter.evaluate, traces": lambda: adapter.evaluate(
            [workload], CANDIDATE, capture_traces=True).scores[0],
    }
    scores = {name: call() for name, call in ways.items()}          # warm-up
    if len(set(scores.values())) != 1:
        sys.exit(f"the ways disagree on the score: {scores}")
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeat):
        for name, call in ways.items():     # alternating, so drift hits every way alike
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    bare = statistics.median(times["bare evaluate()"])
    print(f"{args.num_requests} requests, median of {args.repeat} (min-max):")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:26s} {median * 1e3:8.1f} ms  ({min(samples) * 1e3:.1f}-"
              f"{max(samples) * 1e3:.1f})  ratio {median / bare:.3f}")


if __name__ == "__main__":
    main()
