#!/usr/bin/env bash
# One GPU session (device tool): everything a run needs, in one command.
#   bash scripts/gpu_session.sh <step...>   steps: dsl, test, bench, tune, helion
# Results land under results/<GPU>/ and are copied to $OUT for fetching.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site
fi
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUTDIR/nvidia-smi.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
for step in "$@"; do
  echo "=== $step $(date -u +%H:%M:%S)"
  case "$step" in
    dsl)   python3 -m bench.dsl_check --out results/H100/dsl_check.md 2>&1 | tee "$OUTDIR/dsl.log" ;;
    tune)  python3 -m bench.tuning_report --out results/H100/tuning.md --full-limit ${FULL_LIMIT:-100} 2>&1 | tee "$OUTDIR/tune.log" ;;
    test)  python3 -m pytest -q -x -m gpu tests 2>&1 | tail -30 | tee "$OUTDIR/test.log" ;;
    bench) python3 -m bench.run --op all --dtype bf16 --mode fwd,bwd --baselines eager,compile,cublas,cudnn,flash,grouped_mm,helion 2>&1 | tee "$OUTDIR/bench.log" ;;
    *) echo "unknown step $step" ;;
  esac
done
tar czf "$OUTDIR/results.tgz" results 2>/dev/null
