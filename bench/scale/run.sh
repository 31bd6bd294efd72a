#!/usr/bin/env bash
# Million-image convert at flat memory (issue #14): peak RSS and throughput of `dsprep convert`
# for 100k and 1M tiny images (bench/scale/make_tiny_coco.py), as one run and as 2 tasks + merge.
# Usage: bash bench/scale/run.sh [SIZES]   (default "100000 1000000"; data in bench/data/scale)
# Prints one JSON line per run (bench/convert/rss_split.py: wall time and peak RSS of dsprep
# itself, split anonymous / file-backed, sampled every 20 ms).
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes="${1:-100000 1000000}"
bin="${DSPREP_BIN:-${CARGO_TARGET_DIR:-target}/release/dsprep}"
[ -x "$bin" ] || cargo build --release
data=bench/data/scale
out=bench/out/scale
mkdir -p "$data" "$out"
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $sizes; do
    [ -f "$data/$n/annotations/instances_train.json" ] ||
        python3 bench/scale/make_tiny_coco.py "$data/$n" --images "$n" > /dev/null
    rm -rf "$out/$n-one" "$out/$n-tasks"
    sync
    # Whole run, 64 shards.
    python3 bench/convert/rss_split.py "$bin" convert "$data/$n" "$out/$n-one" --shards 64 -q
    # The same as two tasks (one after the other, as two machines would) and the merge.
    for k in 0 1; do
        python3 bench/convert/rss_split.py "$bin" convert "$data/$n" "$out/$n-tasks" \
        --shards 64 -q --tasks 2 --task "$k"
    done
    python3 bench/convert/rss_split.py "$bin" merge "$out/$n-tasks"
    # One task with the default shard count (256 MiB shards): it stats every image of the split.
    rm -rf "$out/$n-bysize"
    python3 bench/convert/rss_split.py "$bin" convert "$data/$n" "$out/$n-bysize" -q \
        --tasks 2 --task 0
    if diff -r "$out/$n-one" "$out/$n-tasks" > /dev/null; then
        echo "n=$n: merged tasks byte-identical to the one-machine run"
    else
        echo "n=$n: MERGED OUTPUT DIFFERS"
        exit 1
    fi
done
