#!/usr/bin/env bash
# convert against `cp -r` and against its floor (examples/convert_floor.rs: read + SHA-256 +
# CRC32C + XXH3 + write, two threads, nothing else), interleaved in one run, page cache warm,
# outputs removed and `sync` + a pause before every timing (SYNC=0: the pause only — `cp -r`
# right after a `sync` runs 3–6× slower on this VM, convert and the floor do not). Prints each
# round and the medians.
# Usage: [SYNC=0] bash bench/convert/floor.sh [DATA_DIR] [ROUNDS] [OLD_BIN]
# Needs: cargo build --release --bin dsprep --example convert_floor
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${1:-$ROOT/bench/data/coco3k}; ROUNDS=${2:-7}; OLD=${3:-}
BIN=$ROOT/target/release/dsprep; FLOOR=$ROOT/target/release/examples/convert_floor
IMGS=$(dirname "$(ls -d "$DATA"/*/ | grep -v annotations | head -1)/x")
W=$(mktemp -d "${SCRATCH:-$ROOT/target}/floor.XXXXXX"); trap 'rm -rf "$W"' EXIT
SYNC=${SYNC:-1}
secs() { local t0 t1; rm -rf "$W/out"; [ "$SYNC" = 0 ] || sync; sleep 1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
cat "$IMGS"/* > /dev/null
echo "# convert floor $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), sync $SYNC; $(du -sh "$IMGS" | cut -f1) in $IMGS; dsprep $(git -C "$ROOT" rev-parse --short HEAD)"
declare -a C F D O
for r in $(seq "$ROUNDS"); do
  c=$(secs cp -r "$DATA" "$W/out"); f=$(secs "$FLOOR" "$IMGS" "$W/out" 2); d=$(secs "$BIN" convert "$DATA" "$W/out" -q)
  C+=("$c"); F+=("$f"); D+=("$d")
  line="round $r: cp -r $c  floor $f  convert $d"
  if [ -n "$OLD" ]; then o=$(secs "$OLD" convert "$DATA" "$W/out" -q); O+=("$o"); line+="  old $o"; fi
  echo "$line"
done
med() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
mc=$(med "${C[@]}"); mf=$(med "${F[@]}"); md=$(med "${D[@]}")
printf 'medians: cp -r %.3f s, floor %.3f s, convert %.3f s; convert %.2fx cp, floor %.2fx cp, convert/floor %.2f; 0.8x cp = %.3f s\n' \
  "$mc" "$mf" "$md" "$(echo "$mc / $md" | bc -l)" "$(echo "$mc / $mf" | bc -l)" "$(echo "$mf / $md" | bc -l)" "$(echo "$mc / 0.8" | bc -l)"
[ -z "$OLD" ] || printf 'old convert median %.3f s (%.2fx cp)\n' "$(med "${O[@]}")" "$(echo "$mc / $(med "${O[@]}")" | bc -l)"
