#!/usr/bin/env bash
# Convert benchmark (bench/BENCHMARKS.md, "## convert"): dsprep convert vs `cp -r` vs a
# TF-OD-API-style Python converter on COCO-like data, page cache warm, 3 interleaved runs each,
# median; then peak RSS at 3k vs BIG images; then the parse time of a COCO-train-sized
# annotation file. Results: bench/out/convert/*.json (bench/out and bench/data are git-ignored).
#
# Usage: bash bench/convert/run.sh            everything (BIG=30000 images when disk allows)
#        BIG=12000 bash bench/convert/run.sh  smaller RSS-flatness set
#        STEPS="speed" bash bench/convert/run.sh   only some of: speed rss parse
# Needs root for apt-get (photographs for the generator, GNU time).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DATA=$ROOT/bench/data
OUT=$ROOT/bench/out/convert
RUNS=${RUNS:-3}
STEPS=${STEPS:-"speed rss parse"}
mkdir -p "$DATA" "$OUT"

need_apt=()
[ -x /usr/bin/time ] || need_apt+=(time)
ls /usr/share/wallpapers/*/contents/images/*.jpg >/dev/null 2>&1 ||
    need_apt+=(plasma-workspace-wallpapers ukui-wallpapers)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# Python with TensorFlow, Pillow, numpy: the compat-test venv (cached).
# shellcheck source=../../tests/compat/venv.sh
source tests/compat/venv.sh
PY=$(command -v python)

gen() { # gen NAME COUNT
    if [ ! -f "$DATA/$1/annotations/instances_train2017.json" ]; then
        echo "--- generating $1 ($2 images)"
        rm -rf "${DATA:?}/$1"
        "$PY" /work/shared/bench/make_coco_like.py "$DATA/$1" --count "$2"
    fi
}

cargo build --release --quiet --bin dsprep
DSPREP=$ROOT/target/release/dsprep
"$DSPREP" --version

echo "--- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"

if [[ " $STEPS " == *" speed "* ]]; then
    gen coco3k 3000
    "$PY" bench/convert/bench.py --coco "$DATA/coco3k" --out "$OUT/work" --dsprep "$DSPREP" \
        --python "$PY" --runs "$RUNS" --json "$OUT/speed-coco3k.json"
fi

if [[ " $STEPS " == *" rss "* ]]; then
    # 30k images are ~5 GB of JPEGs plus as much output; fall back to 12k on a small disk.
    free_gb=$(df -BG --output=avail "$DATA" | tail -1 | tr -dc 0-9)
    BIG=${BIG:-$([ "$free_gb" -gt 20 ] && echo 30000 || echo 12000)}
    big=coco$((BIG / 1000))k
    gen coco3k 3000
    gen "$big" "$BIG"
    for set in coco3k "$big"; do
        "$PY" bench/convert/bench.py --coco "$DATA/$set" --out "$OUT/work" --dsprep "$DSPREP" \
            --python "$PY" --runs 1 --tools dsprep --json "$OUT/rss-$set.json"
        rm -rf "$OUT/split-out"
        "$PY" bench/convert/rss_split.py "$DSPREP" convert "$DATA/$set" "$OUT/split-out" --quiet |
            tee "$OUT/rss-split-$set.json"
        rm -rf "$OUT/split-out"
    done
    rm -rf "$OUT/work"
fi

if [[ " $STEPS " == *" parse "* ]]; then
    if [ -f bench/gen_big_coco.py ]; then
        bash bench/convert/parse.sh "$DSPREP" "$PY" "$OUT"
    else
        echo "--- parse: bench/gen_big_coco.py not there yet; skipped"
    fi
fi
echo "--- results in $OUT"
