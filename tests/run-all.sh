#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this after fmt and clippy):
#   1. Python venv for the compat tests (cached; tests/compat/venv.sh)
#   2. cargo test --release          unit + integration tests (real binary on fixtures/)
#   3. tests/slurm/run.sh            convert as a real Slurm job array + dependent merge
#   4. pytest python/tests           the Python loader (pip install ./python), CPU + NumPy
#   5. pytest tests/compat           TensorFlow, DALI and py-lmdb read what dsprep writes
# Usage: bash tests/run-all.sh     (DSPREP_NO_VENV=1 to use the current python3 as it is)
set -euo pipefail
cd "$(dirname "$0")/.."

declare -a TIMES=()
phase() { # phase NAME CMD...: run, time, remember
    local name="$1" start rc=0
    shift
    echo "::: $name: $*"
    start=$(date +%s)
    "$@" || rc=$?
    TIMES+=("$(printf '%-24s %5ss  exit %s' "$name" "$(( $(date +%s) - start ))" "$rc")")
    echo "::: $name took $(( $(date +%s) - start ))s (exit $rc)"
    return "$rc"
}

start=$(date +%s)
# shellcheck source=tests/compat/venv.sh
source tests/compat/venv.sh
TIMES+=("$(printf '%-24s %5ss' "python venv" "$(( $(date +%s) - start ))")")

cargo_rc=0
phase "cargo test --release" cargo test --release || cargo_rc=$?
# The compat tests run the binary that `cargo test --release` just built for the integration
# tests. A separate `cargo build --release` would compile the whole crate again: dev-dependencies
# change the feature set of shared dependencies, so it is a different build (minutes in CI).
bin="${CARGO_TARGET_DIR:-target}/release/dsprep"
if [ -z "${DSPREP_BIN:-}" ] && [ "$cargo_rc" -eq 0 ] && [ -x "$bin" ]; then
    DSPREP_BIN="$(cd "$(dirname "$bin")" && pwd)/dsprep"
    export DSPREP_BIN
fi

# --- Slurm job array (issue #14): a one-node cluster on localhost; installs slurm-wlm + munge
# when missing (~1 min). Exit 77 = could not run here (said why); under CI=true it fails instead.
slurm_rc=0
if [ -n "${DSPREP_BIN:-}" ]; then
    phase "slurm job array" bash tests/slurm/run.sh || slurm_rc=$?
else
    echo "SLURM TEST NOT RUN: no dsprep binary (cargo test failed)"
    slurm_rc=1
fi
if [ "$slurm_rc" -eq 77 ]; then
    echo "WARNING: the Slurm job-array test did not run on this machine (reason above)"
    slurm_rc=0
fi
# --- end Slurm

# The Python loader (python/): built into the venv with pip (maturin; CI builds the extension
# with the dev profile, a third of the release build's time) and tested on the CPU with NumPy.
# DSPREP_NO_LOADER=1 skips it.
loader_rc=0
if [ "${DSPREP_NO_LOADER:-0}" != 1 ]; then
    export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}"
    phase "pytest python/tests" bash -c 'python -m pip install --quiet ./python &&
        python -m pytest python/tests -q -p no:cacheprovider' || loader_rc=$?
fi

PYTEST_LOG="$(mktemp)"
trap 'rm -f "$PYTEST_LOG"' EXIT
pytest_rc=0
phase "pytest tests/compat" bash -c 'set -o pipefail; python -m pytest tests/compat 2>&1 | tee "$0"' \
    "$PYTEST_LOG" || pytest_rc=$?
if [ "$pytest_rc" -eq 5 ]; then
    echo "ERROR: pytest collected no tests in tests/compat" >&2
    pytest_rc=1
fi

echo "::: run-all timings"
printf '  %s\n' "${TIMES[@]}"
if [ -n "${DSPREP_CI_START:-}" ]; then
    echo "  CI total (from .ci/run start) $(( $(date +%s) - DSPREP_CI_START ))s"
fi
# Keep pytest's summary the last line, where CI looks for it.
tail -n 1 "$PYTEST_LOG"
if [ "$loader_rc" -ne 0 ]; then
    echo "FAILED: pytest python/tests exited $loader_rc"
    [ "$cargo_rc" -eq 0 ] && cargo_rc=$loader_rc
fi
if [ "$cargo_rc" -ne 0 ]; then
    echo "FAILED: cargo test --release exited $cargo_rc"
    exit "$cargo_rc"
fi
if [ "$slurm_rc" -ne 0 ]; then
    echo "FAILED: the Slurm job-array test (tests/slurm/run.sh) exited $slurm_rc"
    exit "$slurm_rc"
fi
exit "$pytest_rc"
