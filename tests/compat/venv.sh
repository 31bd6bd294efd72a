# shellcheck shell=bash
# Source this (bash): creates or reuses the Python venv for tests/compat and puts it first on
# PATH. The venv lives in a cache folder named by a hash of requirements.txt and the Python
# version, so an unchanged list reuses it (CI on the same machine: seconds) and any edit builds a
# new one. Also exports where NVRTC (pip wheel nvidia-cuda-nvrtc) is, for compiling kernels/*.cu
# without a CUDA toolkit:
#   DSPREP_NVRTC_LIB_DIR  folder holding libnvrtc.so.*; also prepended to LD_LIBRARY_PATH.
# Knobs: DSPREP_CI_CACHE (default ~/.cache/dsprep-ci); DSPREP_NO_VENV=1 uses the python3 on
# PATH as it is (compat tests then skip what is missing, or fail under CI=true).

_dsprep_venv_setup() {
    local root req py key cache venv
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    req="$root/tests/compat/requirements.txt"
    py="${DSPREP_PYTHON:-python3}"
    if [ "${DSPREP_NO_VENV:-0}" = "1" ]; then
        echo "[venv] DSPREP_NO_VENV=1: using $(command -v "$py")"
    else
        key="$( { cat "$req"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)"
        cache="${DSPREP_CI_CACHE:-$HOME/.cache/dsprep-ci}"
        venv="$cache/venv-$key"
        # .complete is written last: an interrupted install is redone, never half-trusted.
        if [ ! -f "$venv/.complete" ]; then
            echo "[venv] creating $venv"
            rm -rf "$venv"
            mkdir -p "$cache"
            "$py" -m venv "$venv"
            "$venv/bin/python" -m pip install --quiet --upgrade pip
            "$venv/bin/python" -m pip install --quiet --progress-bar off -r "$req"
            touch "$venv/.complete"
        else
            echo "[venv] reusing $venv"
        fi
        export VIRTUAL_ENV="$venv"
        export PATH="$venv/bin:$PATH"
        py="$venv/bin/python"
    fi
    local nvrtc
    nvrtc="$("$py" - <<'PY' 2>/dev/null || true
import glob, os, site, sys
dirs = site.getsitepackages() + [site.getusersitepackages()]
for d in dirs:
    hits = sorted(glob.glob(os.path.join(d, "nvidia", "**", "libnvrtc.so*"), recursive=True))
    if hits:
        print(os.path.dirname(hits[0]))
        sys.exit(0)
PY
)"
    if [ -n "$nvrtc" ]; then
        export DSPREP_NVRTC_LIB_DIR="$nvrtc"
        export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "[venv] NVRTC: $nvrtc"
    else
        echo "[venv] NVRTC wheel not found (GPU kernel compile tests will say so)"
    fi
}
_dsprep_venv_setup
unset -f _dsprep_venv_setup
