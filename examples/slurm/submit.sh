#!/bin/bash
# Submits the convert array and its dependent merge in one go.
# Usage: bash examples/slurm/submit.sh TASKS COCO_DIR OUT_DIR [convert options...]
# e.g.   bash examples/slurm/submit.sh 16 /shared/coco /shared/coco-shards --shuffle 1
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tasks="$1" in="$2" out="$3"
shift 3
array=$(sbatch --parsable --array="0-$((tasks - 1))" "$here/convert-array.sbatch" "$in" "$out" "$@")
merge=$(sbatch --parsable --dependency="afterok:${array%%;*}" --kill-on-invalid-dep=yes \
    "$here/merge.sbatch" "$out")
echo "convert array: job ${array%%;*} ($tasks tasks); merge: job ${merge%%;*} (runs when every task succeeded)"
