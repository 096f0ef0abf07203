"""One spiky workload under each built-in autoscaler: replicas, cost, p99 TTFT side by side.

The same run from the command line: ``blis run ... --policy-config threshold.yaml``; the
threshold and oscillator runs print an ``=== Autoscaling Metrics ===`` section there (upstream's
own wva pipeline keeps upstream's stdout, so its figures come from ``evaluate()``).
"""

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import blis_core

HERE = Path(__file__).resolve().parent
# Upstream's blackbox coefficients of Llama-3.1-8B on one H100.
RUN = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 "
       "--alpha-coeffs 232.46191091038054,1.752360364195244,3357.4400353290152 "
       "--beta-coeffs 5752.705191348184,17.25086436834028,5.999143920128404 "
       "--max-model-len 4096 --total-kv-blocks 1800 --num-instances 2 "
       f"--workload-spec {HERE / 'spiky.yaml'}")


def main() -> int:
    logging.getLogger("blis").setLevel(logging.ERROR)   # upstream's start-up warnings
    out = Path(os.environ.get("OUT") or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    print(f"{'autoscaler':<11} {'ups':>4} {'downs':>5} {'replicas min/mean/max':>22} "
          f"{'replica-s':>9} {'cost $':>7} {'p99 TTFT ms':>11} {'oscillations':>12}")
    for name in ("wva", "threshold", "oscillator"):
        result = blis_core.evaluate(blis_core.RunConfig.from_args(RUN), str(HERE / f"{name}.yaml"))
        m = result.metrics
        e = m.elasticity
        rows[name] = result.to_dict()
        print(f"{name:<11} {e.scale_ups:>4} {e.scale_downs:>5} "
              f"{f'{e.min_replicas}/{e.mean_replicas:.2f}/{e.max_replicas}':>22} "
              f"{e.replica_seconds:>9.1f} {e.gpu_cost:>7.4f} {m.ttft_us.p99 / 1000:>11.1f} "
              f"{result.anomalies.scale_oscillations:>12}")
    (out / "autoscaling.json").write_text(json.dumps(rows, indent=1, sort_keys=True))
    print(f"outputs in {out}")
    print(f"example ok: autoscaling: {len(rows)} autoscalers compared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
