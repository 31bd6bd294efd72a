#!/usr/bin/env bash
# Before/after check of a refactor on the device (one call, ≈ 6 min): dataset, shards, the GPU
# test suite and compute-sanitizer on the new build, then verify-throughput of the old and the
# new binary interleaved (A B A B) on the same shards: default, decode-only, LMDB, CPU path.
# Needs devbin/ (carried): dsprep, dsprep-old, gpu-tests (release, stripped), src/*.jpg,
# bench/make_coco_like.py. Logs go to $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=$PWD/devbin
[ -d /work/main/fixtures ] || { mkdir -p /work && ln -sfn "$PWD" /work/main; }
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; } > "$OUT/probe.log" 2>&1
cat "$OUT/probe.log"
python3 $B/bench/make_coco_like.py /tmp/coco --count 3000 --sources $B/src --workers 16 2>&1 | tail -1
$B/dsprep convert /tmp/coco /tmp/shards --shards 16 -q | tail -1
$B/dsprep verify /tmp/shards -q | tail -1
$B/dsprep convert /tmp/coco /tmp/shards_lmdb --shards 16 --format lmdb -q | tail -1
echo "== tests"
(cd $B && timeout 150 ./gpu-tests --nocapture --test-threads=1 > "$OUT/tests.log" 2>&1; echo "tests rc=$?")
grep -E "^test |test result" "$OUT/tests.log" | head -20
echo "== sanitizer"
{
  cd $B
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 ./gpu-tests kernel_matches --test-threads=1 2>&1 | tail -3; echo "memcheck kernel rc=${PIPESTATUS[0]}"
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./gpu-tests gpu_pipeline_end --test-threads=1 2>&1 | tail -4; echo "memcheck pipeline rc=${PIPESTATUS[0]}"
  timeout 90 compute-sanitizer --tool racecheck --error-exitcode 9 ./gpu-tests gpu_pipeline_end --test-threads=1 2>&1 | tail -4; echo "racecheck pipeline rc=${PIPESTATUS[0]}"
} > "$OUT/sanitizer.log" 2>&1
grep -E "rc=|ERROR SUMMARY" "$OUT/sanitizer.log"
echo "== A/B verify-throughput (old = dsprep-old, new = dsprep)"
# Warm both binaries' kernel caches and the page cache first (not measured).
$B/dsprep-old verify-throughput /tmp/shards -q --seconds 2 > /dev/null 2>&1
$B/dsprep verify-throughput /tmp/shards -q --seconds 2 > /dev/null 2>&1
ab() { # label, args...
  local label=$1; shift
  for round in 1 2; do
    for who in old new; do
      local bin=$B/dsprep; [ $who = old ] && bin=$B/dsprep-old
      local j="$OUT/ab_${label}_${who}_${round}.json"
      timeout 60 $bin verify-throughput "$@" -q --json "$j" > /dev/null 2>>"$OUT/ab_err.log"
      python3 - "$j" "$label" "$who" "$round" <<'PY' >> "$OUT/ab.txt"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:12} {sys.argv[3]:3} round {sys.argv[4]}: {r['images_per_s']:9.0f} img/s  decoders {r.get('decoders')} bad {r.get('bad_record_count')}")
PY
    done
  done
}
: > "$OUT/ab.txt"
ab default /tmp/shards --seconds 6
ab decode-only /tmp/shards --seconds 6 --decode-only
ab lmdb /tmp/shards_lmdb --seconds 6
ab cpu /tmp/shards --seconds 4 --device cpu
cat "$OUT/ab.txt"
