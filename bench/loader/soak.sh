#!/usr/bin/env bash
# Soak test of the training loop (after the CUDA_DEVICE_MAX_CONNECTIONS fix): the dsprep feed
# for SECS seconds (default 240, ~1,600 batches of 256), progress every 10 batches; a stall would
# end it with the watchdog's description. Carry: devbin-loader.
set -u
B="$PWD/devbin-loader"
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
rm -rf /tmp/site; mkdir -p /tmp/site && python3 -m zipfile -e "$(ls "$B"/dsprep-*.whl | head -1)" /tmp/site
export PYTHONPATH=/tmp/site
date -u
[ -d /tmp/shards ] || { python3 "$B/make_coco_like.py" /tmp/coco --count 3000 --sources "$B/src" --workers 16 | tail -1; "$B/dsprep" convert /tmp/coco /tmp/shards --shards 16 -q | tail -1; }
BENCH_TRACE=1 timeout $(( ${SECS:-240} + 90 )) python3 "$B/train_bench.py" /tmp/shards --seconds "${SECS:-240}" --only dsprep > /tmp/soak.log 2>&1; echo "rc=$?"
grep -c trace /tmp/soak.log | sed 's/^/trace lines: /'; grep trace /tmp/soak.log | tail -2; grep -v trace /tmp/soak.log | tail -4
