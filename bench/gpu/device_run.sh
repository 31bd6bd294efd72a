#!/usr/bin/env bash
# One device call: probe, dataset, shards, GPU tests, compute-sanitizer, verify-throughput
# configs, torchvision baseline. Needs devbin/ (carried): dsprep, gpu-tests (release, stripped),
# src/*.jpg source photos, bench/{make_coco_like,torchvision_pipeline}.py, fixtures/.
# Logs go to $OUT (at most 8 files come back).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=devbin
mkdir -p /tmp/devtree && ln -sfn "$PWD/fixtures" /tmp/devtree/fixtures
[ -d /work/main/fixtures ] || { mkdir -p /work && ln -sfn "$PWD" /work/main; }  # tests find fixtures via CARGO_MANIFEST_DIR
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
SECS=${SECS:-6}
{
  date -u; nvidia-smi; ls /usr/local/cuda/lib64 | grep -E 'nvjpeg|nvrtc'; nproc; free -g
  python3 -c 'import PIL, torch, torchvision; print("PIL", PIL.__version__, "torch", torch.__version__, "tv", torchvision.__version__)'
  which compute-sanitizer
} > "$OUT/probe.log" 2>&1
echo "== dataset"; t=$(date +%s)
python3 $B/bench/make_coco_like.py /tmp/coco --count 3000 --sources $B/src --workers 16 2>&1 | tail -2
echo "dataset $(( $(date +%s) - t )) s"
$B/dsprep convert /tmp/coco /tmp/shards --shards 16 -q | tail -2
$B/dsprep verify /tmp/shards -q | tail -1
$B/dsprep convert /tmp/coco /tmp/shards_lmdb --shards 16 --format lmdb -q | tail -1
du -sh /tmp/shards
echo "== tests"
cd $B && timeout 90 ./gpu-tests --nocapture --test-threads=1 > "$OUT/tests.log" 2>&1; echo "tests rc=$?"; cd ..
grep -E "^test |test result|round|mean \|d\|.*max (1[3-9]|[2-9][0-9])" "$OUT/tests.log" | head -40
echo "== torchvision"
timeout 150 python3 $B/bench/torchvision_pipeline.py /tmp/shards --iters 30 2>&1 | tee "$OUT/torchvision.log" | tail -3
echo "== verify-throughput"
# The real command line, as a user runs it.
run() { # label, args...
  local label=$1; shift
  echo "--- $label: dsprep verify-throughput $*" >> "$OUT/vt.log"
  timeout 60 $B/dsprep verify-throughput "$@" 2>&1 | tee -a "$OUT/vt.log" | grep -E "images/s|decoded by|target|watchdog|panicked|error" | sed "s/^/[$label] /"
}
A="/tmp/shards -q --seconds $SECS"
run default       $A --target-ips 20000 --json $OUT/vt_default.json
run decode-only   $A --decode-only
run hw-only-dec   $A --decode-only --decoders hw
run cuda-only-dec $A --decode-only --decoders cuda
run fp16          $A --dtype fp16
run letterbox     $A --resize letterbox
run lmdb          /tmp/shards_lmdb -q --seconds $SECS
# Our own re-encodes (EXIF-rotated, CMYK, PNG inputs of fixtures/coco) through the hardware path.
$B/dsprep convert fixtures/coco /tmp/fx -q --overwrite | tail -1
run fixture-hw    /tmp/fx -q --epochs 2 --batch 8 --decoders hw --decode-only
echo "== torchvision (again, after)"
timeout 150 python3 $B/bench/torchvision_pipeline.py /tmp/shards --iters 30 2>&1 | tee -a "$OUT/torchvision.log" | tail -3
echo "== sanitizer"
{
  cd $B
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 ./gpu-tests kernel_matches --test-threads=1 2>&1 | tail -5; echo "memcheck kernel rc=${PIPESTATUS[0]}"
  timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 ./gpu-tests kernel_matches --test-threads=1 2>&1 | tail -5; echo "racecheck kernel rc=${PIPESTATUS[0]}"
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./gpu-tests gpu_pipeline_end --test-threads=1 2>&1 | tail -8; echo "memcheck pipeline rc=${PIPESTATUS[0]}"
  cd ..
} > "$OUT/sanitizer.log" 2>&1
grep -E "rc=|ERROR SUMMARY" "$OUT/sanitizer.log"
