#!/usr/bin/env bash
# The same workload on 4 instances, all serving everything, then split into a prefill and a
# decode pool of 2 each, with every request disaggregated, then only the long-prompt ones.
set -euo pipefail
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")"

# Blackbox coefficients of Qwen2.5-7B on 4 H100s (upstream's); the KV transfer is sized from
# the model's architecture in blis's catalog.
RUN=(--model qwen/qwen2.5-7b-instruct --latency-model blackbox --hardware H100 --tp 4
     --alpha-coeffs 6748.565706303843,1.60068623289796,1952.6809484593186
     --beta-coeffs 2206.931356893263,16.799213648645086,218.0953180138298
     --total-kv-blocks 50000 --num-instances 4 --rate 30 --num-requests 300
     --prompt-tokens 1024 --prompt-tokens-stdev 400 --prompt-tokens-max 3000
     --output-tokens 128 --fitness-weights throughput:0.5,p99_ttft:0.5 --log error)

blis run "${RUN[@]}" > "$OUT/colocated.txt"
blis run "${RUN[@]}" --prefill-instances 2 --decode-instances 2 --pd-decider always \
    --decision-trace "$OUT/always.jsonl" > "$OUT/always.txt"
blis run "${RUN[@]}" --prefill-instances 2 --decode-instances 2 --pd-decider prefix-threshold \
    --pd-prefix-threshold 1024 --pd-transfer-contention > "$OUT/threshold.txt"

for name in colocated always threshold; do
    score=$(awk '/^Score:/ {print $2}' "$OUT/$name.txt")
    split=$(awk -F': ' '/^Disaggregated Requests:/ {print $2}' "$OUT/$name.txt")
    printf '%-10s score %s  split %s\n' "$name" "$score" "${split:-0}"
done
sed -n '/=== PD Metrics ===/,/^$/p' "$OUT/threshold.txt"
transfers=$(grep -c '"kind": "kv_transfer"' "$OUT/always.jsonl")
echo "outputs in $OUT"
echo "example ok: pd-deployment: $transfers KV transfers traced"
