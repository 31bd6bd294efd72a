#!/usr/bin/env bash
# Diagnoses a stall of the loader feed: runs a feed, and after 35 s dumps every thread.
set -u
B="$PWD/devbin-loader"
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
rm -rf /tmp/site; mkdir -p /tmp/site && python3 -m zipfile -e "$(ls "$B"/dsprep-*.whl | head -1)" /tmp/site
export PYTHONPATH=/tmp/site
[ -d /tmp/shards ] || { python3 "$B/make_coco_like.py" /tmp/coco --count 3000 --sources "$B/src" --workers 16 | tail -1; "$B/dsprep" convert /tmp/coco /tmp/shards --shards 16 -q | tail -1; }
which gdb eu-stack py-spy 2>/dev/null
for feed in ${FEEDS:-alone dsprep}; do
  echo "=== $feed"
  BENCH_TRACE=1 python3 -X faulthandler -c "
import faulthandler, sys, runpy; faulthandler.dump_traceback_later(34, exit=False)
sys.argv=['train_bench.py','/tmp/shards','--seconds','20','--only','$feed']
runpy.run_path('$B/train_bench.py', run_name='__main__')" > /tmp/diag-$feed.log 2>&1 &
  pid=$!
  sleep 35
  for t in /proc/$pid/task/*; do echo "$(cat $t/comm) $(cat $t/wchan) $(awk '{print $3, $14, $15}' $t/stat)"; done | sort | uniq -c | sort -rn | head -40
  if command -v gdb >/dev/null; then timeout 40 gdb -batch -p $pid -ex "thread apply all bt 12" 2>/dev/null | grep -E "^Thread|^#" | head -400; fi
  kill -9 $pid; wait $pid 2>/dev/null
  tail -60 /tmp/diag-$feed.log
done
