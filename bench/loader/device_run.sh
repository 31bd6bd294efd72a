#!/usr/bin/env bash
# One device call for the loader (issue #12) and the CPU pipeline (issue #13): wheel, dataset,
# GPU suite, pytest (GPU + CPU), verify-throughput, the CPU pipeline vs Pillow, the loader
# alone (this build and the one in devbin-loader/old), the training-loop benchmark.
# Carry: devbin-loader (see bench/gpu/README.md for what goes in it).
# Knobs: SKIP_RUST=1, SKIP_PYTEST=1, SKIP_VT=1, SKIP_CPU=1, SKIP_OLD=1, ONLY=feeds, SECS=12.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B="$PWD/devbin-loader"
# The GPU test binary has CARGO_MANIFEST_DIR=/work/main baked in (fixtures).
mkdir -p /work && { [ -e /work/main ] || ln -sfn "$PWD" /work/main; }
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
site() { rm -rf "$2"; mkdir -p "$2" && python3 -m zipfile -e "$1" "$2"; }
site "$(ls "$B"/dsprep-*.whl | head -1)" /tmp/site && export PYTHONPATH=/tmp/site${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}
python3 -c "import dsprep, torch, timm; print('dsprep ok, torch', torch.__version__)"
t=$(date +%s)
[ -d /tmp/shards ] || {
  python3 "$B/make_coco_like.py" /tmp/coco --count 3000 --sources "$B/src" --workers 16 | tail -1
  "$B/dsprep" convert /tmp/coco /tmp/shards --shards 16 -q | tail -1; }
echo "dataset $(( $(date +%s) - t )) s"
if [ "${SKIP_RUST:-0}" != 1 ]; then
  (cd "$B" && timeout 150 ./gpu-tests --test-threads=1 --nocapture > "$OUT/gpu-tests.log" 2>&1; echo "gpu-tests rc=$?")
  grep -E "^test |test result|skipped" "$OUT/gpu-tests.log" | head -30
fi
export DSPREP_BIN="$B/dsprep"
if [ "${SKIP_PYTEST:-0}" != 1 ]; then
  (cd /tmp && timeout 300 python3 -m pytest "$B/tests" -q -rs -s -p no:cacheprovider > "$OUT/pytest.log" 2>&1; echo "pytest rc=$?")
  grep -E "passed|failed|Error|GPU vs CPU|NVML|SKIP|levels" "$OUT/pytest.log" | tail -25
fi
[ "${SKIP_VT:-0}" = 1 ] || {
echo "== verify-throughput (letterbox fp16)"
timeout 40 "$B/dsprep" verify-throughput /tmp/shards -q --seconds 8 --resize letterbox --dtype fp16 > "$OUT/vt.log" 2>&1
grep -E "images/s|decoded|GPU memory" "$OUT/vt.log"; }
[ "${SKIP_CPU:-0}" = 1 ] || {
echo "== CPU pipeline vs Pillow (16 processes)"
SECS=8 timeout 200 bash "$B/cpu/run.sh" /tmp/shards "$B/dsprep" > "$OUT/cpu.log" 2>&1; cat "$OUT/cpu.log"; }
[ "${SKIP_OLD:-0}" = 1 ] || [ ! -d "$B/old" ] || {
echo "== loader alone, old build (before)"
site "$(ls "$B"/old/dsprep-*.whl | head -1)" /tmp/site-old
[ -f "$B/old/__init__.py" ] && cp "$B/old/__init__.py" /tmp/site-old/dsprep/__init__.py
PYTHONPATH=/tmp/site-old timeout 60 python3 "$B/train_bench.py" /tmp/shards --seconds "${SECS:-12}" --only alone > "$OUT/bench-old.log" 2>&1
grep -E "feed|Error|error" "$OUT/bench-old.log" | head -3; }
echo "== bench"
timeout "${BENCH_T:-260}" python3 "$B/train_bench.py" /tmp/shards --coco /tmp/coco --seconds "${SECS:-12}" --only "${ONLY:-alone,synthetic,dsprep,torch}" > "$OUT/bench.log" 2>&1
grep -E "feed|Error|error" "$OUT/bench.log" | head -12
