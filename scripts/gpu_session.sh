#!/usr/bin/env bash
# One GPU session (device tool): everything a run needs, in one command.
#   bash scripts/gpu_session.sh <step...>
# Steps:
#   dsl           DSL core check            -> results/<GPU>/dsl_check.md
#   tune          tuning report: quick and full (<= FULL_LIMIT s) of softmax, rms_norm, layer_norm, matmul,
#                 then Helion's quick where TUNE_BUDGET (soft, 200 s) leaves ~90 s a kernel (TUNE_BUDGET=560:
#                 all four, ~540 s; hard limit TUNE_BUDGET + 100 s, at most 580 s, so setup and the results
#                 archive still fit one 600 s device call)
#                 -> results/<GPU>/tuning.md (estimated 230 s; `python -m bench.tuning_report --dry`)
#   test          pytest -m gpu (hard TEST_TIMEOUT, 540 s, by SIGINT: a cut run still prints its failures and
#                 summary; the whole log in $OUT/test_full.log, ~430 s on an H100). TEST_WORKERS=N: N pytest
#                 processes sharing the GPU, a test file each (pytest-xdist and execnet wheels in .whl/; the
#                 tests mostly wait on Triton compiles, which then run on N cores); TEST_PATHS: files or folders
#                 in place of tests/
#   helion_tune   tune upstream Helion (quick effort, at most HELION_BENCH_TUNE_S s per shape) on the
#                 TUNED_SHAPES shapes each op's bench step runs it on -> results/<GPU>/helion_configs/
#                 (the bench steps reuse them; a missing one is tuned in the run, inside its budget). Run it
#                 in the same command as the bench steps: each device call starts from this checkout's
#                 results/, so configs tuned by an earlier call are gone unless committed first
#   soak          bench.soak, random shapes (SOAK_SHAPES, budget SOAK_BUDGET s) -> results/<GPU>/soak.md
#   host          bench.host: host time per call of every op against eager -> results/<GPU>/host.md
#                 (HOST_EXTRA="--profile 15": a cProfile of each of ours in the log)
#   host_dispatch bench.host --dispatch --profile 12: the op layer's host path with launches stubbed, profiled (log only)
#   bench_norms   softmax, rms_norm, layer_norm, fwd+bwd        (estimated 175 s; soft BENCH_BUDGET, hard STEP_TIMEOUT)
#   bench_gemm    matmul, grouped_gemm, attention, fwd+bwd      (estimated 270 s; soft BENCH_BUDGET, hard STEP_TIMEOUT)
#                 both on the representative shapes of bench/session_shapes.json (BENCH_SHAPES), helion's
#                 configs stored by helion_tune (each missing one adds its search: HELION_BENCH_TUNE_S + ~17 s)
#   bench_report  rebuild every report from all CSVs on disk (also run at the end of each bench step)
#   bench:OPS     the named ops only (comma-separated), e.g. bench:softmax,rms_norm
#   bench         all six ops in one process (estimated 420 s), soft budget BENCH_ALL_BUDGET (480 s)
#                 shared among the ops by case count: fits one 600 s command, cutting cases if slow
#   plan          print the bench plans and their estimated durations (no GPU work)
#   e2e           training step of a small Llama and a small Mixtral (Hugging Face), helion_ops-patched vs
#                 eager vs torch.compile (bench.e2e)     -> results/<GPU>/e2e.md  (estimated 250 s; hard E2E_TIMEOUT)
#   e2e_x2        the same under FSDP2 on 2 GPUs (needs a 2-GPU machine), patched and unpatched, E2E_X2_STEPS
#                 steps (200)                            -> results/<GPU>x2/e2e.md (hard E2E_TIMEOUT)
#   gluon         the DSL's Gluon backend (issue 22): its -m gpu tests and the catalog attention's (forward
#                 and backward on Gluon, through the public API; hard GLUON_TEST_TIMEOUT, 360 s), then
#                 attn_fwd through it (with and without gluon_overlap) against
#                 SDPA-cuDNN/flash, the probe's d0_two_wg_overlap (the schedule the DSL emits) and
#                 d_pingpong_overlap and the DSL's Triton path at 4x16x4096x128 and 1x16x16384x128, causal and
#                 not (bench.gluon_attention --dsl) -> $OUT/gluon_dsl.json (estimated 270-350 s; hard
#                 GLUON_TIMEOUT for the bench, 240 s)
#   gluon_kernels the DSL's backward kernels alone (GLUON_KERNELS, default attn_bwd_dq,attn_bwd_dkdv): the catalog's
#                 Triton Config against the Gluon backend's, TFLOP/s, at 4x16x4096x128 and 1x16x16384x128, causal
#                 and not (bench.gluon_attention --dsl-bwd) -> $OUT/gluon_kernels.json (estimated 80 s for both;
#                 hard GLUON_TIMEOUT; GLUON_EXTRA=--quick: the first shape only)
#   gluon_bwd     the hand-written warp-specialized Gluon attention backward probe (bench.gluon_attention_bwd: five
#                 matmuls in one kernel, dQ by relaxed atomics from the consumers or a dQ-writer warp) against
#                 SDPA-cuDNN's, SDPA-flash's and the catalog's backward -> $OUT/gluon_attention_bwd.json (hard
#                 GLUON_BWD_TIMEOUT, 200 s)
#   matmul_sweep  bench.matmul_sweep on SWEEP_SHAPES (decode, skinny, small squares, 4097^3; fwd+bwd) for
#                 the one-pass and split-K kernels against cuBLAS, soft budget SWEEP_BUDGET (170 s), hard
#                 SWEEP_TIMEOUT (240 s); winners written into helion_ops/configs/<arch>/matmul.json,
#                 measurements into results/<GPU>/sweeps/matmul_split_k_sweep_<date>.json (estimated 200 s)
# <GPU> is the detected card's short name (H100, H200, ...). Every bench step writes
# results/<GPU>/<op>.csv after each case, rebuilds results/<GPU>/README.md, the PNGs,
# results/README.md and the project README table from every CSV on disk, and copies
# results/ into $OUT after each step, so a killed command still returns what it measured.
# Baselines: eager, compile, compile_max (max-autotune-no-cudagraphs; GEMMs), the vendor libraries,
# liger (Liger-Kernel; norms, softmax), helion (tuned, stored configs) and copy; carry the liger and
# helion wheels in .whl/ (installed below with --no-deps).
# Knobs (env): BENCH_BUDGET (s, soft, per bench step; default 480), STEP_TIMEOUT (s, hard; 540),
#   BENCH_TIMING ("--warmup 10 --rep 40"), BENCH_SHAPES (bench/session_shapes.json; "preset" for
#   every shape of each op, then add e.g. BENCH_EXTRA="--max-shapes 6", or "--older-than 2026-12-07": only
#   the rows measured before that date), TUNED_SHAPES ("2,grouped_gemm=1": 2 per op, 1 for grouped GEMM;
#   shapes per op for helion and compile_max, whose first calls search configs), BENCH_DTYPE (bf16),
#   BENCH_GRAPH_TIMING ("plain,graph:bwd": backward rows also timed captured in a CUDA graph and replayed,
#   the ms_graph column; "plain" to leave it out, "plain,graph" for every row),
#   HELION_BENCH_EFFORT (quick; none: Helion's default config, untuned), HELION_BENCH_TUNE_S (20),
#   TUNE_TIMEOUT (s, hard, helion_tune; 240), TUNE_EXTRA (e.g. "--max-shapes 6", as BENCH_EXTRA),
#   NORM_OPS / GEMM_OPS (the ops of bench_norms / bench_gemm, comma-separated; default all three),
#   SOAK_SHAPES (120), SOAK_BUDGET (s; 90), SOAK_EXTRA, E2E_STEPS (10), E2E_EXTRA (e.g. "--model llama"),
#   E2E_TIMEOUT (s, hard; 420; e2e writes its page after every run, so a killed step keeps what it measured).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site
fi
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUTDIR/nvidia-smi.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
GPU=$(python3 -c "from bench.gpu_info import gpu_name, short_name; n = gpu_name(); print(short_name(n) if n != 'cpu' else 'cpu')")
echo "results directory: results/$GPU"
export HELION_BENCH_EFFORT=${HELION_BENCH_EFFORT:-quick} HELION_BENCH_TUNE_S=${HELION_BENCH_TUNE_S:-20}
export HELION_AUTOTUNE_PROGRESS_BAR=0 HELION_AUTOTUNE_LOG_LEVEL=${HELION_AUTOTUNE_LOG_LEVEL:-WARNING}
BASELINES=eager,compile,compile_max,cublas,cudnn,flash,grouped_mm,liger,helion,copy
SHAPES=${BENCH_SHAPES:-bench/session_shapes.json}
BENCH="python3 -m bench.run --dtype ${BENCH_DTYPE:-bf16} --mode both --baselines $BASELINES ${BENCH_TIMING:---warmup 10 --rep 40} --timing ${BENCH_GRAPH_TIMING:-plain,graph:bwd} --shapes $SHAPES --tuned-shapes ${TUNED_SHAPES:-2,grouped_gemm=1} --time-budget ${BENCH_BUDGET:-480} ${BENCH_EXTRA:-}"
NORMS="--op ${NORM_OPS:-softmax,rms_norm,layer_norm}"
GEMMS="--op ${GEMM_OPS:-matmul,grouped_gemm,attention}"
save() { tar czf "$OUTDIR/results.tgz" results 2>/dev/null; }
bench() {  # bench <log name> <bench.run args...>: soft budget inside, hard timeout outside, reports always rebuilt
  local log=$1; shift
  timeout -s INT -k 20 "${STEP_TIMEOUT:-540}" $BENCH "$@" 2>&1 | tee "$OUTDIR/$log.log"
  echo "bench.run exit ${PIPESTATUS[0]} (3: time budget left cases out; 124: killed by STEP_TIMEOUT)"
  python3 -m bench.report 2>&1 | tail -3
  save
}
for step in "$@"; do
  echo "=== $step $(date -u +%H:%M:%S)"
  case "$step" in
    dsl)   python3 -m bench.dsl_check --out "results/$GPU/dsl_check.md" 2>&1 | tee "$OUTDIR/dsl.log" ;;
    tune)  timeout -s INT -k 20 $(( ${TUNE_BUDGET:-200} + 100 < 580 ? ${TUNE_BUDGET:-200} + 100 : 580 )) python3 -m bench.tuning_report --out "results/$GPU/tuning.md" \
             --full-limit ${FULL_LIMIT:-35} --budget ${TUNE_BUDGET:-200} 2>&1 | tee "$OUTDIR/tune.log" ;;
    test)  timeout -s INT -k 30 "${TEST_TIMEOUT:-540}" python3 -m pytest -q -m gpu ${TEST_PATHS:-tests} -p no:cacheprovider --tb=short \
             -rfE --durations=10 ${TEST_WORKERS:+-n $TEST_WORKERS --dist loadfile} 2>&1 \
             | tee "$OUTDIR/test_full.log" | tail -80 | tee "$OUTDIR/test.log" ;;
    host)  python3 -m bench.host --out results ${HOST_EXTRA:-} 2>&1 | tee "$OUTDIR/host.log" ;;
    helion_tune) timeout -s INT -k 20 "${TUNE_TIMEOUT:-240}" python3 -m bench.helion_baseline \
             --op softmax,rms_norm,layer_norm,matmul --shapes "$SHAPES" --tuned-shapes ${TUNED_SHAPES:-2,grouped_gemm=1} \
             --dtype ${BENCH_DTYPE:-bf16} ${TUNE_EXTRA:-} 2>&1 | tee "$OUTDIR/helion_tune.log" ;;
    soak)  timeout -s INT -k 20 $(( ${SOAK_BUDGET:-90} + 60 )) python3 -m bench.soak --shapes ${SOAK_SHAPES:-120} \
             --seconds-budget ${SOAK_BUDGET:-90} --out "results/$GPU/soak.md" ${SOAK_EXTRA:-} 2>&1 | tail -40 | tee "$OUTDIR/soak.log" ;;
    plan)  $BENCH $NORMS --plan; $BENCH $GEMMS --plan
           $BENCH --op softmax,rms_norm,layer_norm,matmul,grouped_gemm,attention --time-budget ${BENCH_ALL_BUDGET:-480} --plan | tail -1 ;;
    bench_norms) bench bench_norms $NORMS ;;
    bench_gemm)  bench bench_gemm $GEMMS ;;
    bench) bench bench --op softmax,rms_norm,layer_norm,matmul,grouped_gemm,attention --time-budget ${BENCH_ALL_BUDGET:-480} ;;
    gluon) timeout -s INT -k 30 "${GLUON_TEST_TIMEOUT:-360}" python3 -m pytest -q -m gpu tests/dsl/test_gluon_backend.py \
             tests/ops/test_attention_gluon.py 2>&1 \
             | tail -30 | tee "$OUTDIR/gluon_test.log"
           timeout -s INT -k 20 "${GLUON_TIMEOUT:-240}" python3 -m bench.gluon_attention \
             --variants d0_two_wg_overlap,d_pingpong_overlap \
             --dsl --out "$OUTDIR/gluon_dsl.json" 2>&1 | tail -40 | tee "$OUTDIR/gluon_bench.log" ;;
    gluon_kernels) timeout -s INT -k 20 "${GLUON_TIMEOUT:-240}" python3 -m bench.gluon_attention --variants "" \
             --dsl-bwd "${GLUON_KERNELS:-attn_bwd_dq,attn_bwd_dkdv}" ${GLUON_EXTRA:-} --out "$OUTDIR/gluon_kernels.json" 2>&1 \
             | tail -40 | tee "$OUTDIR/gluon_kernels.log" ;;
    gluon_bwd) timeout -s INT -k 20 "${GLUON_BWD_TIMEOUT:-200}" python3 -m bench.gluon_attention_bwd \
             --out "$OUTDIR/gluon_attention_bwd.json" 2>&1 | tee "$OUTDIR/gluon_bwd.log" | tail -60 ;;
    bench_report) python3 -m bench.report 2>&1 | tee "$OUTDIR/report.log" ;;
    e2e)   timeout -s INT -k 20 "${E2E_TIMEOUT:-420}" python3 -m bench.e2e --steps ${E2E_STEPS:-10} ${E2E_EXTRA:-} \
             2>&1 | tee "$OUTDIR/e2e.log" ;;
    e2e_x2) timeout -s INT -k 20 "${E2E_TIMEOUT:-420}" python3 -m bench.e2e --distributed fsdp2 --nproc 2 \
             --steps ${E2E_X2_STEPS:-200} --timeout $(( ${E2E_TIMEOUT:-420} - 30 )) ${E2E_EXTRA:-} 2>&1 | tee "$OUTDIR/e2e_x2.log" ;;
    host_dispatch) python3 -m bench.host --dispatch --profile 12 2>&1 | tee "$OUTDIR/host_dispatch.log" ;;
    matmul_sweep) mkdir -p "results/$GPU/sweeps"
           timeout -s INT -k 20 "${SWEEP_TIMEOUT:-240}" python3 -m bench.matmul_sweep --write --budget ${SWEEP_BUDGET:-170} \
             --shapes ${SWEEP_SHAPES:-1x8192x8192,16x8192x8192,1024x1024x1024,2048x2048x2048,4097x4097x4097} \
             --kernels one_pass,split_k --max-candidates ${SWEEP_CANDIDATES:-16} \
             --out "results/$GPU/sweeps/matmul_split_k_sweep_$(date -u +%F).json" 2>&1 | tee "$OUTDIR/matmul_sweep.log"
           cp helion_ops/configs/sm90/matmul.json "$OUTDIR/" 2>/dev/null ;;
    bench:*) bench "bench_${step#bench:}" --op "${step#bench:}" ;;  # e.g. bench:softmax,rms_norm
    *) echo "unknown step $step" ;;
  esac
  save
  echo "=== $step done $(date -u +%H:%M:%S)"
done
save
