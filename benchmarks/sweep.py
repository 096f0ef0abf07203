"""Wall time of a 32-point sweep on a 2-worker process pool against the same points run one
after another, measured in the same run, alternating, several times.

Points: 2 policies x 2 instance counts x 2 rates x 4 seeds of a blackbox workload of
``--requests`` requests. "Sequential" is ``run_sweep(..., jobs=1)`` (one worker process,
start-up included) and "pool" is ``jobs=2``; both write the result files as a real sweep does.
The figure that matters is pool / sequential (target <= 0.6 on 2 cores); the rows of the two are
checked to be identical.

Run from the project root: ``python benchmarks/sweep.py [--repeat N] [--requests N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blis_adapters.sweep import load_grid, run_sweep  # noqa: E402
from blis_core.runconfig import RunConfig  # noqa: E402

BASE = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 "
        "--tp 1 --fitness-weights throughput:0.5,p99_ttft:0.5 --num-requests {requests}")


def make_grid(folder: Path, requests: int) -> Path:
    (folder / "base.yaml").write_text(RunConfig.from_args(BASE.format(requests=requests)).to_yaml())
    (folder / "grid.yaml").write_text(
        "base: base.yaml\n"
        "axes:\n"
        "  policies: [{routing: {policy: round-robin}}, {routing: {policy: least-loaded}}]\n"
        "  cluster.num_instances: [2, 4]\n"
        "  workload.rate: [20, 40]\n"
        "  seed: [1, 2, 3, 4]\n")
    return folder / "grid.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid = load_grid(make_grid(folder, args.requests))
        times: dict[int, list[float]] = {1: [], 2: []}
        outputs: dict[int, str] = {}
        for _ in range(args.repeat):
            for jobs in (1, 2):
                prefix = str(folder / f"jobs{jobs}")
                for suffix in (".jsonl", ".csv"):
                    Path(prefix + suffix).unlink(missing_ok=True)
                start = time.perf_counter()
                run_sweep(grid, prefix, jobs=jobs)
                times[jobs].append(time.perf_counter() - start)
                outputs[jobs] = Path(prefix + ".jsonl").read_text()
        assert outputs[1] == outputs[2], "pool rows differ from sequential rows"
    seq, pool = statistics.median(times[1]), statistics.median(times[2])
    print(f"{len(grid.points)} points, {args.requests} requests each, {args.repeat} runs")
    print(f"sequential (jobs=1): median {seq:.2f} s  range {min(times[1]):.2f}-{max(times[1]):.2f}")
    print(f"pool (jobs=2):       median {pool:.2f} s  range {min(times[2]):.2f}-{max(times[2]):.2f}")
    print(f"pool / sequential:   {pool / seq:.2f}  (target <= 0.60)")


if __name__ == "__main__":
    main()
