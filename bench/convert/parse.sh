#!/usr/bin/env bash
# Annotation-parse benchmark: a COCO-train2017-sized instances file (bench/gen_big_coco.py,
# ~450 MB, 118k images, 860k annotations), page cache warm, 3 runs each of
#   - dsprep's parser alone (examples/parse_coco.rs: dsprep::dataset::load_coco), and
#   - Python's json.load + the image_id index (what create_coco_tf_record.py does first),
# reporting wall time and peak RSS. Called by run.sh; alone: parse.sh DSPREP_BIN PYTHON OUTDIR
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${2:-python3}
OUT=${3:-bench/out/convert}
BIG=bench/data/big_coco/annotations/instances_train2017.json
mkdir -p "$OUT"
[ -f "$BIG" ] || "$PY" bench/gen_big_coco.py --out "$BIG"
cargo build --release --quiet --example parse_coco
PARSER=target/release/examples/parse_coco
cat "$BIG" >/dev/null # warm

measure() { # measure NAME CMD... → one JSON line per run
    local name=$1
    shift
    for i in 1 2 3; do
        local t0 t1
        t0=$(date +%s.%N)
        /usr/bin/time -v -o "$OUT/.time" "$@" >"$OUT/.stdout"
        t1=$(date +%s.%N)
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/.time")
        awk -v n="$name" -v i="$i" -v a="$t0" -v b="$t1" -v r="$rss" \
            'BEGIN { printf "{\"tool\":\"%s\",\"run\":%d,\"wall_s\":%.3f,\"rss_mb\":%.1f}\n", n, i, b - a, r / 1024 }'
    done
    head -c 600 "$OUT/.stdout" >&2
    echo >&2
}

{
    measure dsprep_parse "$PARSER" "$BIG"
    measure python_json_load "$PY" -c '
import collections, json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
idx = collections.defaultdict(list)
for a in d["annotations"]:
    idx[a["image_id"]].append(a)
print(len(d["images"]), "images", len(d["annotations"]), "annotations")
' "$BIG"
} | tee "$OUT/parse.jsonl"
# Anonymous vs file-backed peak (the annotation file is mmapped: its pages count in RSS).
"$PY" bench/convert/rss_split.py "$PARSER" "$BIG" | tee "$OUT/parse-rss-split.json"
ls -l "$BIG" | tee "$OUT/parse.jsonl.info"
rm -f "$OUT/.time" "$OUT/.stdout"
