#!/usr/bin/env bash
# The issue-13 presize margin protocol: dsprep presize vs vipsthumbnail, one core each
# (`taskset -c 0`), → --size 704 at quality 90, 4:2:0 for both; RUNS runs per set, each run the
# best of ROUNDS interleaved rounds; prints every run's ratio, then the median and the lowest.
# An optional second dsprep binary runs in the same rounds (before/after in one run).
# Usage: bench/presize/margin.sh [SET_DIR...]   (default bench/data/phone40 bench/data/phone200)
#   env: RUNS (5) ROUNDS (2) BIN (target/release/dsprep) OLD (unset)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-5}; ROUNDS=${ROUNDS:-2}; BIN=${BIN:-target/release/dsprep}; OLD=${OLD:-}
[ $# -gt 0 ] || set -- bench/data/phone40 bench/data/phone200
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
secs() {  # wall seconds of a command pinned to core 0
  local t0 t1; sync; sleep 0.3; t0=$(date +%s.%N)
  taskset -c 0 "$@" > /dev/null 2>> "$W/stderr.log"; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
min() { printf '%s\n' "$@" | sort -g | head -1; }
vips() {  # images out
  mkdir -p "$2"
  ls "$1" | sed "s|^|$1/|" | VIPS_CONCURRENCY=1 xargs -n 20 vipsthumbnail --size 704 -o "$2/%s.jpg[Q=90,subsample-mode=on]"
}
export -f vips
echo "# presize margin $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(vipsthumbnail --vips-version | head -1); dsprep $(git rev-parse --short HEAD)"
for set in "$@"; do
  n=$(ls "$set/train2017" | wc -l)
  cat "$set"/train2017/* > /dev/null
  ratios=(); old_ratios=()
  for run in $(seq "$RUNS"); do
    d=(); v=(); o=()
    for round in $(seq "$ROUNDS"); do
      rm -rf "$W/d" "$W/v" "$W/o"
      d+=("$(secs "$BIN" presize "$set" "$W/d" --size 704 --quality 90 -j 1 --quiet)")
      v+=("$(secs bash -c "vips $set/train2017 $W/v")")
      [ -z "$OLD" ] || o+=("$(secs "$OLD" presize "$set" "$W/o" --size 704 --quality 90 -j 1 --quiet)")
    done
    bd=$(min "${d[@]}"); bv=$(min "${v[@]}")
    r=$(echo "$bv / $bd" | bc -l); ratios+=("$r")
    line=$(printf '%s run %d: dsprep %.1f img/s, vips %.1f img/s, %.2fx' "$(basename "$set")" "$run" \
      "$(echo "$n / $bd" | bc -l)" "$(echo "$n / $bv" | bc -l)" "$r")
    if [ -n "$OLD" ]; then
      bo=$(min "${o[@]}"); ro=$(echo "$bv / $bo" | bc -l); old_ratios+=("$ro")
      line+=$(printf '; old %.1f img/s, %.2fx' "$(echo "$n / $bo" | bc -l)" "$ro")
    fi
    echo "$line"
  done
  med=$(printf '%s\n' "${ratios[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")
  printf '%s: median %.2fx, lowest %.2fx over %d runs\n' "$(basename "$set")" "$med" "$(min "${ratios[@]}")" "$RUNS"
  if [ -n "$OLD" ]; then
    med=$(printf '%s\n' "${old_ratios[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")
    printf '%s (old): median %.2fx, lowest %.2fx\n' "$(basename "$set")" "$med" "$(min "${old_ratios[@]}")"
  fi
done
