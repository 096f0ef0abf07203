"""Run bundle variants of the n_ family (node pools, autoscaler windows, routing, flags) with
upstream's binary and with `blis run`, and compare stdout and the metrics file byte for byte.

    python tools/autoscale_variants.py [NAME ...]     # blis on PATH

Outputs go to $OUT (default: a temporary folder). Needs ../shared (or BLIS_SHARED_DIR).
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(os.environ.get("BLIS_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
C = f"{SHARED}/reference/corpus"
UP = f"{SHARED}/reference/bin/blis-upstream-4e179804"
CWD = f"{SHARED}/reference/upstream"
ROOT = os.environ.get("OUT") or tempfile.mkdtemp()
BASE = ("run --model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 --tp {tp} "
        "--alpha-coeffs 232.46191091038054,1.752360364195244,3357.4400353290152 "
        "--beta-coeffs 5752.705191348184,17.25086436834028,5.999143920128404 --max-model-len 4096 "
        "--total-kv-blocks {blocks} --num-instances {n} --policy-config {pol} --workload-spec {wl} --metrics-path {out}/results.json {extra}")
POOL1 = """node_pools:
  - {name: h100-pool, gpu_type: H100, gpus_per_node: %d, gpu_memory_gib: 80.0, initial_nodes: %d, min_nodes: 1, max_nodes: 4, cost_per_hour: 12.0}
"""
POOL2 = """node_pools:
  - {name: h100-pool, gpu_type: H100, gpus_per_node: 1, gpu_memory_gib: 80.0, initial_nodes: 1, min_nodes: 1, max_nodes: 1, cost_per_hour: 12.0}
  - {name: a100-pool, gpu_type: A100-80, gpus_per_node: 4, gpu_memory_gib: 80.0, initial_nodes: 2, min_nodes: 1, max_nodes: 2, cost_per_hour: 4.0}
"""
POOL2R = """node_pools:
  - {name: a100-pool, gpu_type: A100-80, gpus_per_node: 2, gpu_memory_gib: 80.0, initial_nodes: 1, min_nodes: 1, max_nodes: 2, cost_per_hour: 4.0}
  - {name: h100-pool, gpu_type: H100, gpus_per_node: 2, gpu_memory_gib: 80.0, initial_nodes: 2, min_nodes: 1, max_nodes: 2, cost_per_hour: 4.0}
"""
def AS(interval, up=0, down=0, mean=0, sd=0, an=""):
    s = f"autoscaler:\n  interval_us: {interval}\n  scale_up_stabilization_window_us: {up}\n  scale_down_stabilization_window_us: {down}\n  hpa_scrape_delay: {{mean: {mean}, stddev: {sd}}}\n"
    if an: s += f"  analyzer: {{{an}}}\n"
    return s
WL1 = f"{C}/n_autoscale_spike_least_loaded/workload.yaml"
WL2 = f"{C}/n_autoscale_double_spike_stabilized/workload.yaml"
WL3 = f"{C}/n_autoscale_two_pools_cost_aware/workload.yaml"
V = [
 ("rr_down0", "routing: {policy: round-robin}\n" + POOL1 % (4, 2) + AS(2000000), WL1, 2, 1, 2000, ""),
 ("ll_up2s", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(2000000, up=2000000, down=6000000, mean=1.0), WL1, 2, 1, 2000, ""),
 ("w_two_pools_sd", "routing: {policy: weighted}\n" + POOL2 + AS(1500000, down=5000000, mean=0.5, sd=0.3, an="avg_input_tokens: 1000"), WL3, 2, 1, 2000, ""),
 ("placement_fail", "routing: {policy: least-loaded}\n" + POOL1 % (2, 1) + AS(1000000, down=3000000), WL1, 4, 1, 2000, ""),
 ("n1_scaleup", "routing: {policy: least-loaded}\n" + POOL1 % (4, 1) + AS(1000000, down=4000000, mean=0.5), WL2, 1, 1, 1800, ""),
 ("horizon", "routing: {policy: round-robin}\n" + POOL1 % (4, 2) + AS(2000000, down=6000000), WL1, 2, 1, 2000, "--horizon 30000000"),
 ("tp2", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(1000000, down=6000000), WL1, 2, 2, 2000, ""),
 ("snap_periodic", "routing: {policy: weighted}\n" + POOL1 % (4, 2) + AS(1000000, down=6000000), WL1, 2, 1, 2000, "--snapshot-refresh-interval 100000"),
 ("latencies", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(1000000, down=6000000), WL1, 2, 1, 2000, "--admission-latency 2000 --routing-latency 1000"),
 ("analyzer", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(1000000, down=2000000, an="kv_cache_threshold: 0.5, scale_up_threshold: 0.6, scale_down_boundary: 0.2, avg_input_tokens: 300"), WL1, 2, 1, 2000, ""),
 ("pools_reversed", "routing: {policy: weighted}\n" + POOL2R + AS(1000000, down=3000000), WL3, 3, 1, 2000, ""),
 ("pools_no_autoscaler", "routing: {policy: least-loaded}\n" + POOL1 % (2, 1), WL1, 3, 1, 2000, ""),
 ("autoscaler_no_pools", "routing: {policy: least-loaded}\n" + AS(1000000, down=2000000), WL1, 3, 1, 2000, ""),
 ("seed7", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(1000000, up=1000000, down=6000000, mean=1.5, sd=0.5), WL2, 2, 1, 1800, "--seed 7"),
 ("fast_interval", "routing: {policy: round-robin}\n" + POOL1 % (8, 1) + AS(300000, up=500000, down=1000000, mean=0.2, sd=0.1), WL2, 2, 1, 1800, ""),
 ("prefix_scorer", "routing:\n  policy: weighted\n  scorers: [{name: prefix-affinity, weight: 3}, {name: queue-depth, weight: 2}]\n" + POOL1 % (4, 2) + AS(1000000, down=4000000), WL3, 2, 1, 2000, ""),
 ("cache_delay0", "routing:\n  policy: weighted\n  scorers: [{name: prefix-affinity, weight: 3}, {name: kv-utilization, weight: 1}]\n" + POOL1 % (4, 2) + AS(1000000, down=4000000), WL3, 2, 1, 2000, "--cache-signal-delay 0"),
 ("trace_decisions", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(1000000, down=4000000), WL1, 2, 1, 2000, "--trace-level decisions --summarize-trace --counterfactual-k 2"),
 ("fitness", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(2000000, down=6000000), WL1, 2, 1, 2000, "--fitness-weights throughput:1,p99_ttft:2"),
 ("cli_interval", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2), WL1, 2, 1, 2000, "--model-autoscaler-interval-us 1000000"),
 ("tenant_budget", "routing: {policy: least-loaded}\ntenant_budgets: {burst: 0.3}\n" + POOL1 % (4, 2) + AS(1000000, down=3000000), WL1, 2, 1, 2000, ""),
 ("always_busiest", "routing: {policy: always-busiest}\n" + POOL1 % (4, 2) + AS(1000000, down=3000000), WL1, 2, 1, 2000, ""),
 ("slo_priority", "routing: {policy: least-loaded}\npriority: {policy: slo-based}\nscheduler: priority-fcfs\n" + POOL1 % (4, 2) + AS(1000000, down=3000000), WL2, 2, 1, 1800, ""),
 ("tiered_kv", "routing: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(1000000, down=3000000), WL1, 2, 1, 1200, "--kv-cpu-blocks 800"),
 ("weighted_default_3", "routing: {policy: weighted}\n" + POOL2R + AS(700000, up=700000, down=2100000, mean=0.3, sd=0.2), WL3, 3, 1, 2000, ""),
 ("token_bucket", "admission: {policy: token-bucket, token_bucket_capacity: 50000, token_bucket_refill_rate: 40000}\nrouting: {policy: least-loaded}\n" + POOL1 % (4, 2) + AS(1000000, down=3000000), WL1, 2, 1, 2000, ""),
]
only = sys.argv[1:]
ok = 0; total = 0
for name, pol, wl, n, tp, blocks, extra in V:
    if only and name not in only: continue
    total += 1
    d = f"{ROOT}/{name}"; shutil.rmtree(d, ignore_errors=True)
    res = {}
    for who in ("up", "blis"):
        out = f"{d}/{who}"; os.makedirs(out)
        open(f"{d}/policy.yaml", "w").write(pol)
        args = BASE.format(tp=tp, blocks=blocks, n=n, pol=f"{d}/policy.yaml", wl=wl, out=out, extra=extra).split()
        exe = [UP] if who == "up" else [shutil.which("blis") or "blis"]
        p = subprocess.run(exe + args, cwd=CWD, capture_output=True, text=True)
        open(f"{out}/stdout.txt", "w").write(p.stdout); open(f"{out}/stderr.txt", "w").write(p.stderr)
        m = open(f"{out}/results.json").read() if os.path.exists(f"{out}/results.json") else None
        res[who] = (p.returncode, p.stdout, m)
    same = res["up"] == res["blis"]
    ok += same
    print(f"{name}: {'MATCH' if same else 'DIFF'} rc={res['up'][0]}/{res['blis'][0]} stdout={'same' if res['up'][1]==res['blis'][1] else 'diff'} metrics={'same' if res['up'][2]==res['blis'][2] else 'diff'}", flush=True)
print(f"{ok}/{total} matched")
