"""Draws per second of blis_core.gorand's hot paths (median of 3 runs).

Run from the project root: ``python benchmarks/gorand_speed.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blis_core.gorand import GoRand  # noqa: E402

RUNS = 3


def draws_per_second(draw_batch: Callable[[GoRand], None], draws: int) -> float:
    rates = []
    for run in range(RUNS):
        rng = GoRand(run)
        start = time.perf_counter()
        draw_batch(rng)
        rates.append(draws / (time.perf_counter() - start))
    return statistics.median(rates)


def scalar_intn(rng: GoRand) -> None:
    for _ in range(1_000_000):
        rng.intn(128000)


def batched_intn(rng: GoRand) -> None:
    for _ in range(2_000):
        rng.intn_array(128000, 5000)


def scalar_norm(rng: GoRand) -> None:
    for _ in range(1_000_000):
        rng.norm_float64()


def main() -> None:
    cases = [
        ("intn(128000), scalar", scalar_intn, 1_000_000),
        ("intn_array(128000, 5000)", batched_intn, 2_000 * 5000),
        ("norm_float64, scalar", scalar_norm, 1_000_000),
    ]
    for label, draw_batch, draws in cases:
        rate = draws_per_second(draw_batch, draws)
        print(f"{label:<26} {rate / 1e6:8.2f} M draws/s")


if __name__ == "__main__":
    main()
