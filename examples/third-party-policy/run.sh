#!/usr/bin/env bash
# A routing policy from a separately installed package, used through a policy bundle.
# requires: blis_example_policies (pip install ./plugins_example)
set -euo pipefail
# An OUT given relative to the caller's folder must not land in the example folder.
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")"

blis plugins list --kind routing | tee "$OUT/routing.txt"
if ! grep -q '^routing  *shortest-queue ' "$OUT/routing.txt"; then
    echo "shortest-queue is not installed: pip install ./plugins_example (from the repository root)" >&2
    exit 1
fi

# Checked against the installed plugins, without running anything.
blis policies validate shortest-queue.yaml

RUN=(--model meta-llama/llama-3.1-8b-instruct --num-instances 4 --rate 40 --num-requests 300
     --fitness-weights throughput:0.5,p99_ttft:0.5 --log error)
blis run "${RUN[@]}" --policy-config shortest-queue.yaml > "$OUT/shortest-queue.txt"
# The built-in default on the same requests, for scale.
blis run "${RUN[@]}" --routing-policy round-robin > "$OUT/round-robin.txt"

plugin=$(awk '/^Score:/ {print $2}' "$OUT/shortest-queue.txt")
builtin=$(awk '/^Score:/ {print $2}' "$OUT/round-robin.txt")
echo "shortest-queue (plugin):  $plugin"
echo "round-robin (built-in):   $builtin"
echo "example ok: third-party-policy: shortest-queue score $plugin"
