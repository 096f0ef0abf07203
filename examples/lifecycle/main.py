"""One spiky workload on a growing node pool under each drain policy (blis extensions).

Nodes are provisioned on demand, added instances load and warm up, and scale-downs drain
with WAIT, IMMEDIATE or REDIRECT: what each costs in completed, dropped and re-routed requests
and in p99 TTFT. The WAIT run from the command line:
``blis run ... --policy-config lifecycle.yaml``.

The threshold autoscaler scales in only with nothing queued, so REDIRECT seldom has a request
to move here. WAIT keeps upstream's quirk that an instance drained while idle never terminates
and keeps its GPUs, which leaves less room for later scale-outs; IMMEDIATE and REDIRECT free
them at once.
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
       f"--workload-spec {HERE.parent / 'autoscaling' / 'spiky.yaml'}")


def main() -> int:
    logging.getLogger("blis").setLevel(logging.ERROR)   # upstream's start-up warnings
    out = Path(os.environ.get("OUT") or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    base = (HERE / "lifecycle.yaml").read_text()
    rows = {}
    print(f"{'drain':<9} {'nodes+':>6} {'ups':>4} {'downs':>5} {'completed':>9} {'dropped':>7} "
          f"{'redirected':>10} {'p99 TTFT ms':>11} {'cost $':>7}")
    for policy in ("WAIT", "IMMEDIATE", "REDIRECT"):
        bundle = out / f"lifecycle-{policy.lower()}.yaml"
        bundle.write_text(base.replace("drain_policy: WAIT", f"drain_policy: {policy}"))
        result = blis_core.evaluate(blis_core.RunConfig.from_args(RUN), str(bundle))
        m = result.metrics
        e = m.elasticity
        assert m.completed + m.still_queued + m.still_running + m.dropped_unservable \
            + m.timed_out == m.injected, "conservation"
        rows[policy] = result.to_dict()
        print(f"{policy:<9} {e.nodes_provisioned:>6} {e.scale_ups:>4} {e.scale_downs:>5} "
              f"{m.completed:>9} {e.drain_dropped:>7} {e.drain_redirected:>10} "
              f"{m.ttft_us.p99 / 1000:>11.1f} {e.gpu_cost:>7.4f}")
    (out / "lifecycle.json").write_text(json.dumps(rows, indent=1, sort_keys=True))
    print(f"outputs in {out}")
    print(f"example ok: lifecycle: {len(rows)} drain policies compared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
