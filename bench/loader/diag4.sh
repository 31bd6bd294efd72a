#!/usr/bin/env bash
set -u
B="$PWD/devbin-loader"
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PYTHONPATH=/tmp/site
rm -rf /tmp/site; mkdir -p /tmp/site && python3 -m zipfile -e "$(ls "$B"/dsprep-*.whl | head -1)" /tmp/site
[ -d /tmp/shards ] || { python3 "$B/make_coco_like.py" /tmp/coco --count 3000 --sources "$B/src" --workers 16 | tail -1; "$B/dsprep" convert /tmp/coco /tmp/shards --shards 16 -q | tail -1; }
BENCH_TRACE=1 timeout 60 python3 "$B/train_bench.py" /tmp/shards --seconds 30 --only dsprep > /tmp/d.log 2>&1; echo "rc=$?"
grep trace /tmp/d.log | tail -1; grep -v trace /tmp/d.log | tail -6
