# Sourced by scripts/test and scripts/run (from the repo root).
# Usage: . scripts/_setup.sh EXTRAS   e.g. "test", "test,hf" or "test,bench"
# Makes sure the current python has torch + triton (else creates and activates
# ./.venv and installs them), then installs this package with EXTRAS when it or
# any of its extra modules is missing. pip runs with -qq: one line per step here,
# pip's errors still show. The "hf" extra (transformers) is optional: when it
# cannot be installed (no index), one line says so and its tests skip.
_extras="${1//,hf/}"
case ",$1," in *,hf,*) _hf=1 ;; *) _hf= ;; esac
_py="$(command -v python || command -v python3)"
if ! "$_py" -c "import torch, triton" >/dev/null 2>&1; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    . .venv/bin/activate
    if ! python -c "import torch, triton" >/dev/null 2>&1; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            echo "setup: installing torch and triton into .venv"
            pip install -qq torch triton
        else
            # CPU-only machine: pinned versions. CPU builds of torch avoid downloading CUDA
            # libraries; they come from the CPU wheel index (TORCH_INDEX_URL overrides it) when
            # that answers, else from pip's configured indexes and find-links (a mirror or a local
            # wheel directory), without sitting through pip's retries against an unreachable host.
            _index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
            _extra=(--extra-index-url "$_index")
            if [ -z "${TORCH_INDEX_URL:-}" ] && ! python -c "import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$_index" >/dev/null 2>&1; then
                echo "setup: $_index did not answer; using pip's configured indexes"
                _extra=()
            fi
            echo "setup: installing torch==2.13.0 and triton==3.7.1 (CPU) into .venv"
            pip install -qq torch==2.13.0 triton==3.7.1 ${_extra[@]+"${_extra[@]}"}
            unset _index _extra
        fi
    fi
fi
case "$_extras" in
    *bench*) _mods="pytest, pytest_benchmark, hypothesis, pandas, tabulate, matplotlib, rich" ;;
    *)       _mods="pytest, pytest_benchmark, hypothesis, pandas, tabulate, matplotlib" ;;
esac
if ! python -c "import importlib.metadata as m; m.version('helion_ops'); import $_mods" >/dev/null 2>&1; then
    echo "setup: installing helion_ops[$_extras] (editable)"
    pip install -qq -e ".[$_extras]"
fi
if [ -n "$_hf" ] && ! python -c "import transformers" >/dev/null 2>&1; then
    echo "setup: installing helion_ops[hf] (transformers)"
    pip install -qq --retries 1 --timeout 20 -e ".[hf]" >/dev/null 2>&1 \
        || echo "setup: transformers could not be installed (index unreachable?); tests/integrations skip"
fi
unset _extras _py _mods _hf
