#!/usr/bin/env bash
# convert vs `cp -r` on the same COCO-like folder, page cache warm, interleaved rounds (this
# 2-vCPU machine drifts ±15 % between runs, so only neighbours compare). Optional second binary
# for a before/after in the same run. Usage:
#   bash bench/convert/vs_cp.sh [DATA_DIR] [ROUNDS] [OLD_BIN]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${1:-$ROOT/bench/data/coco3k}; ROUNDS=${2:-5}; OLD=${3:-}
BIN=$ROOT/target/release/dsprep
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
cat "$DATA"/*/*.jpg > /dev/null   # warm the page cache
echo "# vs_cp $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(du -sh "$DATA" | cut -f1) in $DATA"
for r in $(seq "$ROUNDS"); do
  rm -rf "$W/cp" "$W/new" "$W/old"
  echo "round $r: cp -r $(secs cp -r "$DATA" "$W/cp") s  dsprep $(secs "$BIN" convert "$DATA" "$W/new" -q) s$( [ -n "$OLD" ] && echo "  old $(secs "$OLD" convert "$DATA" "$W/old" -q) s")"
done
