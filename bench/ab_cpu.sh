#!/usr/bin/env bash
# Before/after check of a refactor on this machine: `convert` (3,000 COCO-like images, warm
# page cache) and `presize` (40 phone photos, one core) with an old and a new binary,
# interleaved A B A B (this 2-vCPU machine drifts ±15 % between runs, so only pairs run
# back to back compare). Usage: bash bench/ab_cpu.sh OLD_BIN NEW_BIN [ROUNDS]
# Data: bench/data/coco3k and bench/data/phone40 (make_coco_like.py, see bench/convert/run.sh).
set -euo pipefail
OLD=$1; NEW=$2; ROUNDS=${3:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$ROOT/bench/data
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
cat "$DATA"/coco3k/train2017/*.jpg > /dev/null   # warm the page cache
echo "# ab_cpu $(date -u +%FT%TZ) $(nproc) cores; old=$OLD new=$NEW"
for r in $(seq "$ROUNDS"); do
  for who in old new; do
    bin=$NEW; [ $who = old ] && bin=$OLD
    rm -rf "$W/out"
    echo "convert $who round $r: $(secs "$bin" convert "$DATA/coco3k" "$W/out" -q) s"
  done
done
for r in $(seq "$ROUNDS"); do
  for who in old new; do
    bin=$NEW; [ $who = old ] && bin=$OLD
    rm -rf "$W/p"
    echo "presize $who round $r: $(secs "$bin" presize "$DATA/phone40" "$W/p" -q -j 1 --size 704) s"
  done
done
