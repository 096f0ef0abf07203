"""Workload generation time and memory: the CLI distribution workload and a workload spec.

1. The distribution workload of the bench_golden1 runs (flags of ``bench_golden1_100k``: rate
   10/s, 284-token shared prefix, prompts 70±35 (2..200), outputs 215±80 (1..512), seed 42),
   10k and 100k requests.
2. A two-client workload spec of 100k requests (``SPEC_100K``): a bursty batch tenant (gamma
   arrivals, cv 3.5; pareto-lognormal prompts behind a shared prefix; exponential outputs) and
   a Poisson chat tenant (gaussian prompts, exponential outputs). Issue 5 asks for under 2 s.

Each case prints the median of 3 generations (wall and CPU time) and the memory held by the
requests' token arrays. A fixed pure-Python loop (``baseline``) is timed around every case:
on a quiet machine it takes about 0.25 s, so a larger figure shows how much other load slowed
that run, and ``÷ baseline`` compares runs across machines and load.

Run from the project root: ``python benchmarks/workload.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blis_workloads import (MAX_HORIZON, WorkloadOptions, build_cli_workload,  # noqa: E402
                            generate_workload, parse_workload_spec)

RUNS = 3

SPEC_100K = """
version: "2"
seed: 42
aggregate_rate: 100.0
num_requests: 100000
clients:
  - id: batch
    tenant_id: tenant-A
    slo_class: batch
    rate_fraction: 0.7
    arrival: {process: gamma, cv: 3.5}
    input_distribution:
      type: pareto_lognormal
      params: {alpha: 1.5, xm: 50, mu: 5.5, sigma: 1.2, mix_weight: 0.3}
    output_distribution: {type: exponential, params: {mean: 256}}
    prefix_group: shared-system-prompt
  - id: chat
    tenant_id: tenant-B
    slo_class: critical
    rate_fraction: 0.3
    arrival: {process: poisson}
    input_distribution: {type: gaussian, params: {mean: 128, std_dev: 50, min: 10, max: 2048}}
    output_distribution: {type: exponential, params: {mean: 64}}
"""


def options(num_requests: int) -> WorkloadOptions:
    return WorkloadOptions(rate=10.0, num_requests=num_requests, seed=42, prefix_tokens=284,
                           prompt_tokens=70, prompt_tokens_stdev=35, prompt_tokens_min=2,
                           prompt_tokens_max=200, output_tokens=215, output_tokens_stdev=80,
                           output_tokens_min=1, output_tokens_max=512,
                           explicit=frozenset({"num-requests", "seed", "rate"}))


def baseline() -> float:
    """CPU seconds of a fixed pure-Python loop: the machine's speed right now."""
    start = time.process_time()
    total = 0
    for i in range(3_000_000):
        total += i * i
    return time.process_time() - start


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


def measure(label: str, generate) -> None:
    walls, cpus, bases = [], [], []
    for _ in range(RUNS):
        bases.append(baseline())
        wall, cpu = time.perf_counter(), time.process_time()
        requests = generate()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        del requests
    bases.append(baseline())
    requests = generate()
    tokens, nbytes = token_memory(requests)
    base = statistics.median(bases)
    print(f"{label}: wall {statistics.median(walls):.3f} s, cpu {statistics.median(cpus):.3f} s "
          f"(median of {RUNS}); baseline {base:.3f} s, cpu ÷ baseline "
          f"{statistics.median(cpus) / base:.1f}; {len(requests)} requests, "
          f"{tokens / 1e6:.1f} M tokens in {nbytes / 2**20:.0f} MiB of arrays "
          f"({nbytes / tokens:.2f} B/token)")


def main() -> None:
    # Plugin discovery happens once per process; do it before timing anything.
    generate_workload(parse_workload_spec(SPEC_100K), MAX_HORIZON, 1)
    for n in (10_000, 100_000):
        measure(f"distribution {n:>7}",
                lambda n=n: build_cli_workload(options(n)).workload.requests)
    spec = parse_workload_spec(SPEC_100K)
    measure("spec (2 clients) 100000",
            lambda: generate_workload(spec, MAX_HORIZON, spec.num_requests).requests)


if __name__ == "__main__":
    main()
