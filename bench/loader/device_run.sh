#!/usr/bin/env bash
# One device call for the loader (issue #12): wheel, dataset, GPU suite, pytest (GPU + CPU),
# verify-throughput vs the loader alone, the training-loop benchmark.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B="$PWD/devbin-loader"
mkdir -p /work && { [ -e /work/wt-loader ] || ln -sfn "$PWD" /work/wt-loader; }
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
rm -rf /tmp/site; mkdir -p /tmp/site && python3 -m zipfile -e "$B"/dsprep-*.whl /tmp/site && export PYTHONPATH=/tmp/site
[ -f "$B/__init__.py" ] && cp "$B/__init__.py" /tmp/site/dsprep/__init__.py
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
cd /tmp && timeout 300 python3 -m pytest "$B/tests" -q -rs -s -p no:cacheprovider > "$OUT/pytest.log" 2>&1; echo "pytest rc=$?"
grep -E "passed|failed|Error|GPU vs CPU|NVML|SKIP" "$OUT/pytest.log" | tail -25
cd - >/dev/null
[ "${SKIP_VT:-0}" = 1 ] || {
echo "== verify-throughput (letterbox fp16)"
timeout 40 "$B/dsprep" verify-throughput /tmp/shards -q --seconds 8 --resize letterbox --dtype fp16 > "$OUT/vt.log" 2>&1
grep -E "images/s|decoded|GPU memory" "$OUT/vt.log"; }
echo "== bench"
timeout "${BENCH_T:-230}" python3 "$B/train_bench.py" /tmp/shards --coco /tmp/coco --seconds "${SECS:-12}" --only "${ONLY:-alone,synthetic,dsprep,torch}" > "$OUT/bench.log" 2>&1
grep -E "feed|Error|error" "$OUT/bench.log" | head -12
