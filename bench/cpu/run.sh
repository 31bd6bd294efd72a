#!/usr/bin/env bash
# Issue 13, the CPU pipeline: dsprep `verify-throughput --device cpu` against the Pillow loader
# (bench/cpu/pillow_loader.py) with as many processes as cores, in the same run, on the same
# shards: 640² stretch, fp32, random flip, ImageNet normalisation on both sides.
#
#   bench/cpu/run.sh SHARD_DIR [DSPREP_BIN] [OLD_BIN]
#
# OLD_BIN (optional): the binary before the change, measured in the same run (before/after).
# Each side runs three times, interleaved; the median is the figure. Needs python3 with
# pillow and numpy.
set -euo pipefail
shards=$1
bin=${2:-target/release/dsprep}
old=${3:-}
procs=$(nproc)
secs=${SECS:-10}
echo "date $(date -u +%FT%TZ) host $(hostname) cores $procs"
grep -m1 "model name" /proc/cpuinfo || true
python3 -c "import PIL, numpy; print('pillow', PIL.__version__, 'numpy', numpy.__version__)"
dsprep_ips() {
  "$1" verify-throughput "$shards" --device cpu --resize stretch --dtype fp32 --seconds "$secs" \
    -q --json /tmp/cpu-bench.json >/dev/null
  python3 -c "import json; r=json.load(open('/tmp/cpu-bench.json')); print(r['images_per_s'] if 'images_per_s' in r else r)"
}
for i in 1 2 3; do
  p=$(python3 "$(dirname "$0")/pillow_loader.py" "$shards" --procs "$procs" --passes 1 | python3 -c "import json,sys; print(json.load(sys.stdin)['images_per_s'])")
  d=$(dsprep_ips "$bin")
  line="run $i pillow_${procs}p $p dsprep $d"
  [ -n "$old" ] && line="$line old $(dsprep_ips "$old")"
  echo "$line"
done
