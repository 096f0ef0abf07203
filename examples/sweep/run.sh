#!/usr/bin/env bash
# A 4-point grid on a 2-worker process pool; results go to $OUT, never next to the grid.
set -euo pipefail
# An OUT given relative to the caller's folder must not land in the example folder.
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")"

blis sweep grid.yaml --jobs 2 -o "$OUT/grid"

python - "$OUT/grid.csv" <<'PY'
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
failed = [row for row in rows if row["status"] != "ok"]
if failed:
    sys.exit(f"{len(failed)} points failed: {failed[0]['error']}")
print(f"{'policies':40} {'instances':>9} {'score':>9} {'ttft_p99_ms':>11}")
for row in rows:
    print(f"{row['policies']:40} {row['cluster.num_instances']:>9} "
          f"{float(row['score']):9.6f} {float(row['ttft_p99_us']) / 1000:11.2f}")
best = max(rows, key=lambda row: float(row["score"]))
print(f"example ok: sweep: {len(rows)} points, best point {best['point']} "
      f"(score {float(best['score']):.6f})")
PY
