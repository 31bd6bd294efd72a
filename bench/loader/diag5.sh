#!/usr/bin/env bash
# Diagnoses the training-loop stall of the GPU loader: runs the dsprep training feed, and when
# batches stop coming dumps GPU load, every thread's state and CPU time, and every thread's
# stack (cuda-gdb attached to the process; there is no gdb on the device), then waits for the
# engine watchdog's description of each thread's phase. Results in $OUT.
set -u
B="$PWD/devbin-loader"
O="${OUT:-/tmp/out}"; mkdir -p "$O"
export DSPREP_CACHE_DIR=/tmp/kcache PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
rm -rf /tmp/site; mkdir -p /tmp/site && python3 -m zipfile -e "$(ls "$B"/dsprep-*.whl | head -1)" /tmp/site
export PYTHONPATH=/tmp/site
[ -d /tmp/shards ] || { python3 "$B/make_coco_like.py" /tmp/coco --count 3000 --sources "$B/src" --workers 16 | tail -1; "$B/dsprep" convert /tmp/coco /tmp/shards --shards 16 -q | tail -1; }
command -v cuda-gdb
# VARIANTS: space-separated "decoders[:VAR=value,...]" (e.g. "both cuda:DSPREP_EVENT_WAIT=poll").
for variant in ${VARIANTS:-both}; do
  dec="${variant%%:*}"; venv=""; [ "$dec" != "$variant" ] && venv="$(echo "${variant#*:}" | tr , ' ')"
  variant="$(echo "$variant" | tr ':=,' '___')"
  log="$O/$variant.log"
  echo "=== $dec $venv"
  env $venv BENCH_TRACE=1 BENCH_DECODERS=$dec python3 "$B/train_bench.py" /tmp/shards --seconds ${SECS:-90} --only dsprep > "$log" 2>&1 &
  pid=$!
  last=""; same=0; t=0
  while kill -0 $pid 2>/dev/null && [ $t -lt 150 ]; do
    sleep 1; t=$((t+1))
    cur="$(grep -c trace "$log")"
    if [ "$cur" = "$last" ] && [ "$cur" != "0" ]; then same=$((same+1)); else same=0; last="$cur"; fi
    [ $same -ge 6 ] && break
  done
  echo "t=$t s, trace lines $last, stalled=$([ $same -ge 6 ] && echo yes || echo no)"
  if [ $same -ge 6 ]; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 1 > "$O/$variant-smi.txt" 2>&1 & smi=$!
    sleep 3; kill $smi
    cat "$O/$variant-smi.txt"
    for th in /proc/$pid/task/*; do echo "$(cat $th/comm) $(awk '{print $3, $14, $15}' $th/stat)"; done > "$O/$variant-threads-a.txt"
    sleep 2
    for th in /proc/$pid/task/*; do echo "$(cat $th/comm) $(awk '{print $3, $14, $15}' $th/stat)"; done > "$O/$variant-threads-b.txt"
    paste "$O/$variant-threads-a.txt" "$O/$variant-threads-b.txt" | awk '{d=($7+$8)-($3+$4); if (d>0 || $1 ~ /decoder|reader|assembler|loader/) print $1, $2, $6, "ticks in 2 s:", d}' | sort | uniq -c | head -40
    [ "${GDB:-1}" = 1 ] && timeout 150 cuda-gdb -batch -p $pid -ex "info threads" -ex "thread apply all bt 30" > "$O/$variant-gdb.txt" 2>&1
    echo "cuda-gdb rc=$? lines $(wc -l < "$O/$variant-gdb.txt")"
    # Waits for the watchdog (20 s after the last finished image) to describe the threads.
    for k in $(seq 1 30); do grep -q "no progress" "$log" && break; sleep 1; done
  fi
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  grep -v trace "$log" | tail -8
  grep trace "$log" | tail -2
done
