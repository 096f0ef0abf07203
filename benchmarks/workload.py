"""Workload generation time and memory for the distribution workload of the bench_golden1 runs.

Flags of ``bench_golden1_100k``: rate 10/s, 284-token shared prefix, prompts 70±35 (2..200),
outputs 215±80 (1..512), seed 42. Prints the median of 3 generations (wall and CPU time) for
10k and 100k requests, and the memory held by the requests' token arrays.

Run from the project root: ``python benchmarks/workload.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blis_workloads import WorkloadOptions, build_cli_workload  # noqa: E402

RUNS = 3


def options(num_requests: int) -> WorkloadOptions:
    return WorkloadOptions(rate=10.0, num_requests=num_requests, seed=42, prefix_tokens=284,
                           prompt_tokens=70, prompt_tokens_stdev=35, prompt_tokens_min=2,
                           prompt_tokens_max=200, output_tokens=215, output_tokens_stdev=80,
                           output_tokens_min=1, output_tokens_max=512,
                           explicit=frozenset({"num-requests", "seed", "rate"}))


def token_memory(requests) -> tuple[int, int]:
    """(token count, bytes of the distinct numpy buffers holding them)."""
    buffers = {}
    tokens = 0
    for req in requests:
        for arr in (req.input_tokens, req.output_tokens):
            tokens += len(arr)
            base = arr.base if arr.base is not None else arr
            buffers[id(base)] = base.nbytes
    return tokens, sum(buffers.values())


def main() -> None:
    for n in (10_000, 100_000):
        walls, cpus = [], []
        for _ in range(RUNS):
            wall, cpu = time.perf_counter(), time.process_time()
            workload = build_cli_workload(options(n)).workload
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        tokens, nbytes = token_memory(workload.requests)
        print(f"{n:>7} requests: wall {statistics.median(walls):.3f} s, "
              f"cpu {statistics.median(cpus):.3f} s (median of {RUNS}); "
              f"{tokens / 1e6:.1f} M tokens in {nbytes / 2**20:.0f} MiB of arrays "
              f"({nbytes / tokens:.2f} B/token)")
        del workload


if __name__ == "__main__":
    main()
