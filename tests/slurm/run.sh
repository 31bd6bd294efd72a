#!/usr/bin/env bash
# The job-array test on a real Slurm (issue #14): starts a one-node cluster on localhost
# (tests/slurm/cluster.sh), submits examples/slurm/convert-array.sbatch as
# `sbatch --array=0-3 --wait` and examples/slurm/merge.sbatch with --dependency=afterok on the
# array, compares every byte of the merged folder with a one-machine run, checks that an array
# with a step is refused by name, and stops the cluster.
#
# Usage: DSPREP_BIN=path/to/dsprep bash tests/slurm/run.sh   (as root; installs the packages)
# When this machine cannot run the daemons (not root, no apt, slurmd refusing), it says so and
# exits 77 ("not run"), or 1 under CI=true: CI must not pass without the test having run.
set -uo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

not_run() {
    echo "SLURM TEST NOT RUN: $*"
    if [ "${CI:-}" = true ]; then
        echo "FAILED: CI=true requires the Slurm test to run"
        exit 1
    fi
    exit 77
}

bin="${DSPREP_BIN:-}"
[ -x "$bin" ] || { echo "FAILED: set DSPREP_BIN to the dsprep binary (got '${bin}')"; exit 1; }
[ "$(id -u)" = 0 ] || not_run "needs root (runs slurmctld, slurmd and munged itself)"

# shellcheck source=tests/slurm/cluster.sh
source tests/slurm/cluster.sh
slurm_install || not_run "could not install slurm-wlm and munge with apt-get"
SLURM_WORK="$(mktemp -d /tmp/dsprep-slurm.XXXXXX)"
export SLURM_WORK
trap 'slurm_stop; rm -rf "$SLURM_WORK"' EXIT
if ! slurm_start; then
    tail -n 20 "$SLURM_WORK"/log/*.log 2>/dev/null
    not_run "this machine cannot run a local Slurm cluster (daemon logs above)"
fi

fail=0
check() { # check WHAT CMD...: run, print PASS/FAIL
    local what="$1"
    shift
    if "$@"; then echo "PASS  $what"; else echo "FAIL  $what"; fail=1; fi
}

in="$root/fixtures/coco"
one="$SLURM_WORK/one" out="$SLURM_WORK/out" logs="$SLURM_WORK/jobs"
mkdir -p "$logs"
opts=(--shards 6)
"$bin" convert "$in" "$one" -q "${opts[@]}"
rc=$?
check "one-machine run (exit $rc)" test "$rc" -le 1

export DSPREP="$bin"
# The array, waited for in the background; --parsable prints its id at submission.
sbatch --parsable --wait --array=0-3 --cpus-per-task=1 --mem=500 -D "$SLURM_WORK" \
    -o "$logs/convert-%a.out" examples/slurm/convert-array.sbatch "$in" "$out" "${opts[@]}" \
    > "$SLURM_WORK/array.id" &
array_pid=$!
for _ in $(seq 100); do [ -s "$SLURM_WORK/array.id" ] && break; sleep 0.1; done
array_id=$(cut -d';' -f1 "$SLURM_WORK/array.id")
echo "array job: ${array_id:-none}"
sbatch --parsable --wait --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
    --cpus-per-task=1 --mem=500 -D "$SLURM_WORK" -o "$logs/merge.out" \
    examples/slurm/merge.sbatch "$out" > /dev/null
merge_rc=$?
wait "$array_pid"
array_rc=$?
for f in "$logs"/*.out; do echo "--- $(basename "$f")"; cat "$f"; done
check "sbatch --array=0-3 --wait: every task succeeded (exit $array_rc)" test "$array_rc" = 0
check "dependent merge job succeeded (exit $merge_rc)" test "$merge_rc" = 0
tasks_seen=$(grep -l "^dsprep task [0-3] of array $array_id: done" "$logs"/convert-*.out | wc -l)
check "four array tasks reported done ($tasks_seen)" test "$tasks_seen" = 4
check "merged output byte-identical to the one-machine run (diff -r)" diff -r "$one" "$out"
check "manifest.json identical" cmp "$one/manifest.json" "$out/manifest.json"
check "parts folder removed by the merge" test ! -e "$out/dsprep-tasks"

# An array with a step cannot number the tasks: every task fails, naming the variable.
sbatch --wait --array=0-6:3 --cpus-per-task=1 --mem=500 -D "$SLURM_WORK" \
    -o "$logs/stepped-%a.out" examples/slurm/convert-array.sbatch "$in" "$SLURM_WORK/stepped" \
    > /dev/null
stepped_rc=$?
check "array with a step fails (exit $stepped_rc)" test "$stepped_rc" != 0
check "...naming SLURM_ARRAY_TASK_STEP=3" grep -q "SLURM_ARRAY_TASK_STEP=3" "$logs/stepped-0.out"
check "...and writing nothing" test ! -e "$SLURM_WORK/stepped"

if [ "$fail" = 0 ]; then
    echo "slurm job-array test: PASSED ($(sinfo -V), $(nproc) CPUs)"
else
    echo "slurm job-array test: FAILED"
fi
exit "$fail"
