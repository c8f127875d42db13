# Sourced by scripts/test and scripts/run (from the repo root).
# Usage: . scripts/_setup.sh EXTRAS   e.g. "test" or "test,bench"
# Makes sure the current python has torch + triton (else creates and activates
# ./.venv and installs them), then installs this package with EXTRAS when it or
# any of its extra modules is missing.
_extras="$1"
_py="$(command -v python || command -v python3)"
if ! "$_py" -c "import torch, triton" >/dev/null 2>&1; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    . .venv/bin/activate
    if ! python -c "import torch, triton" >/dev/null 2>&1; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            pip install torch triton
        else
            # CPU-only machine: pinned versions; the CPU wheel index avoids
            # downloading CUDA libraries (override with TORCH_INDEX_URL).
            pip install torch==2.13.0 triton==3.7.1 \
                --extra-index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
        fi
    fi
fi
case "$_extras" in
    *bench*) _mods="pytest, pytest_benchmark, hypothesis, pandas, tabulate, matplotlib, rich" ;;
    *)       _mods="pytest, pytest_benchmark, hypothesis, pandas, tabulate, matplotlib" ;;
esac
if ! python -c "import importlib.metadata as m; m.version('helion_ops'); import $_mods" >/dev/null 2>&1; then
    pip install -e ".[$_extras]"
fi
unset _extras _py _mods
