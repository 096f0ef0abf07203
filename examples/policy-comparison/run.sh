#!/usr/bin/env bash
# The same workload under three policy bundles, one fitness score each.
set -euo pipefail
# An OUT given relative to the caller's folder must not land in the example folder.
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")"

# The run is fixed by these flags (and the default seed), so the three runs see identical
# requests and only the bundle differs. --log error hides the catalog-default warnings.
RUN=(--model meta-llama/llama-3.1-8b-instruct --num-instances 4 --rate 40 --num-requests 300
     --fitness-weights throughput:0.5,p99_ttft:0.3,mean_e2e:0.2 --log error)

printf '%-18s %-10s %s\n' bundle score ttft_p99_ms
: > "$OUT/scores.txt"
for bundle in round-robin.yaml least-loaded.yaml weighted.yaml; do
    name="${bundle%.yaml}"
    blis run "${RUN[@]}" --policy-config "$bundle" --metrics-path "$OUT/$name.json" \
        > "$OUT/$name.txt"
    score=$(awk '/^Score:/ {print $2}' "$OUT/$name.txt")
    ttft=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["ttft_p99_ms"])' \
        "$OUT/$name.json")
    printf '%-18s %-10s %.2f\n' "$bundle" "$score" "$ttft"
    echo "$score $bundle" >> "$OUT/scores.txt"
done

best=$(sort -g -r "$OUT/scores.txt" | head -n 1)
echo "outputs in $OUT"
echo "example ok: policy-comparison: best ${best#* } (score ${best%% *})"
