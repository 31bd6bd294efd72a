#!/usr/bin/env bash
# convert against `cp -r` and against its floor (examples/convert_floor.rs: read + SHA-256 +
# CRC32C + XXH3 + write, two threads, nothing else), interleaved in one run, page cache warm,
# earlier outputs emptied (truncated, not removed), `sync` (SYNC=0: not) and a pause before
# every timing; the outputs are removed when the run ends. Each output goes to a new folder of a
# scratch folder marked `chattr +T` (ext4 "top directory": each new folder goes to another block
# group). Why all this: ext4 skips inodes freed in the last 60–360 s when it creates files
# (`recently_deleted()`); right after an `rm -rf` of the previous round's copy, `cp -r` (3,000
# creates) spent 60 % of its time there (perf) and ran 3–6× slower (0.6–1.0 s instead of
# 0.16–0.2 s); convert creates a few files and never saw it. Emptied files keep their inodes, so a
# run frees none; kept whole, 1 GB per round reached the disk and every command slowed to
# seconds. A run started less than ~6 minutes after another one's clean-up can still find cp in
# its slow state: the cp column says so (≥ 2× the floor). Prints each round and the medians.
# Usage: [SYNC=0] bash bench/convert/floor.sh [DATA_DIR] [ROUNDS] [OLD_BIN]
# Needs: cargo build --release --bin dsprep --example convert_floor
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${1:-$ROOT/bench/data/coco3k}; ROUNDS=${2:-7}; OLD=${3:-}
BIN=$ROOT/target/release/dsprep; FLOOR=$ROOT/target/release/examples/convert_floor
IMGS=$(dirname "$(ls -d "$DATA"/*/ | grep -v annotations | head -1)/x")
W=$(mktemp -d "${SCRATCH:-$ROOT/target}/floor.XXXXXX"); trap 'rm -rf "$W"' EXIT
chattr +T "$W" 2>/dev/null || echo "# chattr +T failed on $W: outputs may share block groups (cp -r can hit ext4's recently-deleted inodes)"

SYNC=${SYNC:-1}
secs() { local t0 t1; find "${W:?}" -type f -exec truncate -s 0 {} +; [ "$SYNC" = 0 ] || sync; sleep 1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
cat "$IMGS"/* > /dev/null
echo "# convert floor $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), sync $SYNC; $(du -sh "$IMGS" | cut -f1) in $IMGS; dsprep $(git -C "$ROOT" rev-parse --short HEAD)"
declare -a C F D O
for r in $(seq "$ROUNDS"); do
  c=$(secs cp -r "$DATA" "$W/cp$r"); f=$(secs "$FLOOR" "$IMGS" "$W/floor$r" 2); d=$(secs "$BIN" convert "$DATA" "$W/convert$r" -q)
  C+=("$c"); F+=("$f"); D+=("$d")
  line="round $r: cp -r $c  floor $f  convert $d"
  if [ -n "$OLD" ]; then o=$(secs "$OLD" convert "$DATA" "$W/old$r" -q); O+=("$o"); line+="  old $o"; fi
  echo "$line"
done
med() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
mc=$(med "${C[@]}"); mf=$(med "${F[@]}"); md=$(med "${D[@]}")
printf 'medians: cp -r %.3f s, floor %.3f s, convert %.3f s; convert %.2fx cp, floor %.2fx cp, convert/floor %.2f; 0.8x cp = %.3f s\n' \
  "$mc" "$mf" "$md" "$(echo "$mc / $md" | bc -l)" "$(echo "$mc / $mf" | bc -l)" "$(echo "$mf / $md" | bc -l)" "$(echo "$mc / 0.8" | bc -l)"
[ -z "$OLD" ] || printf 'old convert median %.3f s (%.2fx cp)\n' "$(med "${O[@]}")" "$(echo "$mc / $(med "${O[@]}")" | bc -l)"
