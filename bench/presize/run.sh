#!/usr/bin/env bash
# Presize benchmark: dsprep presize vs vipsthumbnail vs Pillow thumbnail(), side by side in one
# run on the same images, single core and all cores, → --size 704 at quality 90, plus the stage
# breakdown and PSNR. Results go to bench/out/presize/results.txt.
#
# Needs: apt-get install -y cmake nasm libvips-tools plasma-workspace-wallpapers ukui-wallpapers
#        pip install pillow numpy
# Usage: bench/presize/run.sh [COUNT]   (default 200 images per set)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
COUNT=${1:-200}
SHARED=${SHARED:-$ROOT/../shared}
DATA=$ROOT/bench/data
OUT=$ROOT/bench/out/presize
CORES=$(nproc)
mkdir -p "$OUT"
RES="$OUT/results.txt"
: > "$RES"
say() { echo "$*" | tee -a "$RES"; }

for spec in "phone$COUNT:4032" "hd$COUNT:1920"; do
  set_name=${spec%%:*}; long=${spec##*:}
  if [ ! -d "$DATA/$set_name" ]; then
    python3 "$SHARED/bench/make_coco_like.py" "$DATA/$set_name" --count "$COUNT" --long-side "$long"
  fi
done

[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin dsprep --example presize_stages
BIN=target/release/dsprep
say "# presize benchmark $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
say "# vipsthumbnail $(vipsthumbnail --vips-version 2>/dev/null | head -1); Pillow $(python3 -c 'import PIL; print(PIL.__version__)')"

# Run a command ROUNDS times (tools interleaved by the caller), keep the fastest wall time and
# its CPU time: other work on a shared 2-core machine only ever makes a run slower.
ROUNDS=${ROUNDS:-2}
declare -A BEST_WALL BEST_CPU
timed() {  # key cmd...
  local key=$1; shift
  local t0 t1 wall cpu
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$OUT/time.tmp" "$@" > /dev/null 2>> "$OUT/stderr.log"
  t1=$(date +%s.%N)
  wall=$(echo "$t1 - $t0" | bc -l)
  cpu=$(awk '{print $1 + $2}' "$OUT/time.tmp")
  if [ -z "${BEST_WALL[$key]:-}" ] || [ "$(echo "$wall < ${BEST_WALL[$key]}" | bc -l)" = 1 ]; then
    BEST_WALL[$key]=$wall; BEST_CPU[$key]=$cpu
  fi
}
report() {  # key label n
  say "$(printf '%-34s %7.1f img/s  (wall %6.2f s, CPU %6.1f ms/img)' "$2" \
    "$(echo "$3 / ${BEST_WALL[$1]}" | bc -l)" "${BEST_WALL[$1]}" "$(echo "1000 * ${BEST_CPU[$1]} / $3" | bc -l)")"
}

vips_all() {  # images out cores
  mkdir -p "$2"
  ls "$1" | sed "s|^|$1/|" | VIPS_CONCURRENCY=1 xargs -P "$3" -n 20 vipsthumbnail --size 704 -o "$2/%s.jpg[Q=90,subsample-mode=on]"
}

for set_name in "phone$COUNT" "hd$COUNT"; do
  imgs="$DATA/$set_name/train2017"
  n=$(ls "$imgs" | wc -l)
  cat "$imgs"/* > /dev/null  # warm the page cache
  say ""
  say "## $set_name: $n images, $(du -sm "$imgs" | cut -f1) MB"
  for cores in 1 "$CORES"; do
    pin=""; [ "$cores" = 1 ] && pin="taskset -c 0"
    for round in $(seq "$ROUNDS"); do
      rm -rf "$OUT/dsprep-$set_name" "$OUT/vips-$set_name" "$OUT/pillow-$set_name"
      timed "d$cores" $pin "$BIN" presize "$DATA/$set_name" "$OUT/dsprep-$set_name" --size 704 --quality 90 -j "$cores" --quiet
      timed "v$cores" $pin bash -c "$(declare -f vips_all); vips_all $imgs $OUT/vips-$set_name $cores"
      timed "p$cores" $pin python3 "$ROOT/bench/presize/pillow_thumb.py" "$imgs" "$OUT/pillow-$set_name" --workers "$cores"
    done
    report "d$cores" "dsprep presize ($cores core)" "$n"
    report "v$cores" "vipsthumbnail ($cores core)" "$n"
    report "p$cores" "Pillow thumbnail ($cores core)" "$n"
    unset BEST_WALL BEST_CPU; declare -A BEST_WALL BEST_CPU
  done
  say "stage breakdown (dsprep, 1 core, 40 images):"
  taskset -c 0 target/release/examples/presize_stages "$imgs" --count 40 --quality 90 --psnr | tee -a "$RES"
  python3 "$ROOT/bench/presize/psnr.py" "$imgs" --count 30 \
    dsprep="$OUT/dsprep-$set_name/train2017" vips="$OUT/vips-$set_name" pillow="$OUT/pillow-$set_name" | tee -a "$RES"
done

# Bounded memory: six 12000x9000 photos (three progressive) at once.
[ -d "$DATA/huge6" ] || python3 "$ROOT/bench/presize/make_huge.py" "$DATA/huge6" --count 6
say ""
say "## huge6: six 12000x9000 JPEGs (3 progressive), peak memory"
for j in 1 "$CORES" 6; do
  rm -rf "$OUT/huge"
  /usr/bin/time -f "%e %M" -o "$OUT/time.tmp" "$BIN" presize "$DATA/huge6" "$OUT/huge" -j "$j" --quiet > /dev/null
  say "$(awk -v j="$j" '{printf "-j %-3s wall %5.2f s, peak RSS %4.0f MB\n", j, $1, $2 / 1024}' "$OUT/time.tmp")"
done
