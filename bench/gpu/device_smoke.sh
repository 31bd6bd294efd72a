#!/usr/bin/env bash
# Short device check after a change to the pipeline (≈ 4 min): dataset, shards, the GPU test
# suite, verify-throughput (default, decode-only, LMDB, a cold first run) and the torchvision
# baseline in the same call. Same carried devbin/ as device_run.sh. Logs go to $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=devbin
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
(cd $B && timeout 120 ./gpu-tests --nocapture --test-threads=1 > "$OUT/tests.log" 2>&1; echo "tests rc=$?")
grep -E "^test |test result" "$OUT/tests.log" | head -20
echo "== verify-throughput"
run() { # label, args...
  local label=$1; shift
  echo "--- $label: dsprep verify-throughput $*" >> "$OUT/vt.log"
  timeout 60 $B/dsprep verify-throughput "$@" 2>&1 | tee -a "$OUT/vt.log" | grep -E "images/s|decoded by|target|watchdog|panicked|rror" | sed "s/^/[$label] /"
}
run cold-first  /tmp/shards -q --seconds 6 --json "$OUT/vt_cold.json"
run default     /tmp/shards -q --seconds 6 --target-ips 20000 --json "$OUT/vt_default.json"
run decode-only /tmp/shards -q --seconds 6 --decode-only
run lmdb        /tmp/shards_lmdb -q --seconds 6
run cpu-path    /tmp/shards -q --seconds 4 --device cpu
echo "== torchvision"
timeout 150 python3 $B/bench/torchvision_pipeline.py /tmp/shards --iters 30 2>&1 | tee "$OUT/torchvision.log" | tail -3
