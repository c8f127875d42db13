"""CLI: python -m bench.run --op <name|all> [--dtype bf16,fp16,fp32] [--shapes preset|small|FILE|AxB;CxD]
[--baselines eager,compile,compile_max,cublas,cudnn,flash,grouped_mm,liger,helion,copy] [--mode fwd|bwd|both]
[--quick] [--max-shapes N] [--tuned-shapes N] [--warmup MS] [--rep MS] [--timing plain,graph] [--time-budget S]
[--plan] [--out results]

On a CUDA GPU: times every impl, writes results/<GPU>/<op>.csv and rebuilds the reports from
every CSV on disk (so ops run in separate commands end up in one report).
Without one: checks correctness of ours (and eager) on SMALL_SHAPES in fp32/fp16 in
Triton's interpreter, prints a table, and writes nothing.
--plan prints the GPU plan (cases per op) and an estimate of its duration, and runs nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from bench import baselines, gpu_info, metrics, schema

REPO = Path(__file__).resolve().parent.parent
CPU_TITLE = "INTERPRETER CORRECTNESS RUN (no GPU): no timings"
BUDGET_EXIT = 3  # the time budget ran out before every case ran

# Cost model for --plan and the start-of-run estimate (seconds; H100). First calls: ours compiles its
# Triton kernels, torch.compile runs dynamo + inductor (fresh per shape), Helion compiles (with a stored
# config), Liger JIT-compiles its kernels; compile_max's first call runs inductor's autotuning. Each timed
# impl costs warmup + rep of do_bench plus set-up. The H100 run of 2026-11-27 (results/H100/runs.json)
# measured first calls per case of 1.0-1.3 s for compile on the norms (5.5 s on grouped GEMM) and
# 0.3-1.8 s for ours; the run of 2026-12-06 measured compile_max's first call (inductor's search) at
# 7.5-9.1 s for matmul fwd, 18.0 s for its bwd, 23.2 s for grouped GEMM fwd, and liger's at 0.2-0.3 s.
# The figures below round those up.
FIRST_CALL_S = {("compile", "fwd"): 1.5, ("compile", "bwd"): 3.0, (baselines.OURS, "fwd"): 1.0,
                (baselines.OURS, "bwd"): 1.5, ("helion", "fwd"): 2.0, (baselines.LIGER, "fwd"): 0.5,
                (baselines.LIGER, "bwd"): 1.0, (baselines.COMPILE_MAX, "fwd"): 15.0,
                (baselines.COMPILE_MAX, "bwd"): 30.0}
PER_IMPL_S = 0.15  # do_bench estimate calls, rotation sets, reference, sync
STARTUP_S = 10.0  # per process: imports, ceilings, report
FIRST_COMPILE_S = 15.0  # per process, once: inductor imports, compile workers, cold caches


MODES = {"fwd": ["fwd"], "bwd": ["bwd"], "both": ["fwd", "bwd"]}


def _timing_arg(text: str) -> set:
    """--timing: 'plain' (every row, always), plus 'graph' (every mode) or 'graph:fwd' / 'graph:bwd' (those
    rows only): the impls captured once in a CUDA graph and replayed. Returns the modes graph-timed."""
    graph: set = set()
    for part in _split(text) or ["?"]:
        if part == "plain":
            continue
        name, _, mode = part.partition(":")
        if name != "graph" or mode not in ("", "fwd", "bwd"):
            raise argparse.ArgumentTypeError(f"{part!r}: want plain, graph, graph:fwd or graph:bwd (comma-separated)")
        graph |= {mode} if mode else {"fwd", "bwd"}
    return graph


def _dtypes_arg(text: str) -> list[str]:
    """--dtype: a comma list of bf16, fp16, fp32 (or their long names)."""
    names = _split(text)
    if not names:
        raise argparse.ArgumentTypeError("empty (want a comma list of bf16, fp16, fp32)")
    for n in names:
        try:
            schema.parse_dtype(n)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return names


def _shapes_arg(text: str) -> str:
    """--shapes: 'preset', 'small', a JSON file, or inline shapes 'AxB;CxD' (checked here, used per op)."""
    if text in ("preset", "small"):
        return text
    path = Path(text)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text}: not JSON ({e})") from None
        if not isinstance(data, (dict, list)):
            raise argparse.ArgumentTypeError(f"{text}: want {{op: [[...], ...]}} or [[...], ...]")
        return text
    if text.endswith(".json") or "/" in text:
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    try:
        shapes = [schema.parse_shape(s) for s in text.split(";") if s.strip()]
    except (KeyError, ValueError):
        shapes = []
    if not shapes:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'preset', 'small', a JSON file, or shapes like '4096x4096;8192x1000' "
            "(integers and True/False joined by x, shapes separated by ;)")
    return text


def _max_shapes_arg(text: str) -> str:
    """--max-shapes / --tuned-shapes: N, op=N pairs 'matmul=5,attention=4', or both '2,grouped_gemm=1'
    (a bare N: the ops not named; N >= 1)."""
    bare = 0
    for part in text.split(","):
        name, eq, n = part.rpartition("=") if "=" in part else ("", "", part)
        bare += not eq
        if (eq and not name.strip()) or not n.strip().isdigit() or int(n) < 1 or bare > 1:
            raise argparse.ArgumentTypeError(f"{text!r}: want N, op=N pairs like 'matmul=5,attention=4', "
                                             "or both ('2,grouped_gemm=1'), N >= 1")
    return text


def _positive(kind):
    def check(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'number' if kind is float else 'whole number'}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: want a value > 0")
        return v
    return check


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring); a bad value exits 2 naming its option."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[1])
    p.add_argument("--op", default="all", help="'all', op names, module paths or .py files (comma-separated)")
    p.add_argument("--dtype", default=None, type=_dtypes_arg, help="comma list of bf16,fp16,fp32 (GPU default: bf16)")
    p.add_argument("--shapes", default="preset", type=_shapes_arg,
                   help="'preset' (SHAPES; SMALL_SHAPES without GPU), 'small', a JSON file "
                        "({op: [[...]]} or [[...]]), or inline '4096x4096;8192x1000'")
    p.add_argument("--baselines", default=None,
                   help="comma list (default: every one that applies: eager,compile,compile_max,<op's BASELINES>,"
                        "liger,helion; no GPU: eager)")
    p.add_argument("--mode", default="both", choices=list(MODES),
                   help="fwd, bwd, or both (forward and backward; bwd only for ops with GRAD_INPUTS)")
    p.add_argument("--quick", action="store_true",
                   help="at most 3 shapes per op, shorter timing (--max-shapes 3 --warmup 10 --rep 40)")
    p.add_argument("--max-shapes", default=None, type=_max_shapes_arg,
                   help="at most N shapes per op, spread over the list (first, last, middle, ...); "
                        "an int, or per op: 'matmul=5,attention=4' (ops not named: all)")
    p.add_argument("--tuned-shapes", type=_max_shapes_arg, default=None,
                   help="run the tuned baselines (helion, compile_max: their first call searches configs) on at "
                        "most N shapes per op (spread), to bound their tuning time; N, 'matmul=2,grouped_gemm=1' "
                        "(ops not named: all), or '2,grouped_gemm=1' (ops not named: 2)")
    p.add_argument("--warmup", type=_positive(float), default=None, help="do_bench warm-up, ms (default 25; --quick 10)")
    p.add_argument("--rep", type=_positive(float), default=None, help="do_bench repetitions, ms (default 100; --quick 40)")
    p.add_argument("--timing", default=set(), type=_timing_arg, metavar="plain[,graph[:fwd|:bwd]]",
                   help="plain (default: each call launched from Python, do_bench) and, with graph, also each impl "
                        "captured once in a CUDA graph and replayed (ms_graph; GPU only), on every row or only "
                        "the fwd or bwd ones")
    p.add_argument("--time-budget", type=_positive(float), default=None,
                   help="seconds for the whole run: no case starts after it, and each op gets a share "
                        "proportional to its cases; shapes run spread-first so a cut run still covers "
                        f"the range (exit {BUDGET_EXIT} when cases were left out)")
    p.add_argument("--older-than", default=None, type=_iso_date, metavar="YYYY-MM-DD",
                   help="only the cases whose committed helion_ops row (results/<GPU>/<op>.csv; GPU: the detected "
                        "one, else $BENCH_GPU or H100, for --plan) is missing or measured before this date: "
                        "refreshes stale rows without re-running the rest")
    p.add_argument("--plan", action="store_true", help="print the GPU plan and its estimated duration; run nothing")
    p.add_argument("--out", default=str(REPO / "results"), help="results root (GPU only)")
    p.add_argument("--no-report", action="store_true", help="don't rebuild reports after the run")
    return p.parse_args(argv)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def spread_order(n: int) -> list[int]:
    """0..n-1 ordered so every prefix covers the range: first, last, middle, quarters, ..."""
    if n <= 2:
        return list(range(n))
    order, seen, level = [0, n - 1], {0, n - 1}, [(0, n - 1)]
    while level:
        nxt = []
        for a, b in level:
            if b - a > 1:
                m = (a + b) // 2
                if m not in seen:
                    order.append(m)
                    seen.add(m)
                nxt += [(a, m), (m, b)]
        level = nxt
    return order


def max_shapes_for(spec, op: str) -> int | None:
    """--max-shapes for one op: "6" -> 6; "matmul=5,attention=4" -> 5 for matmul, None (all) for others;
    "2,matmul=5" -> 5 for matmul, 2 for others."""
    if spec is None or isinstance(spec, int):
        return spec
    default = None
    for part in str(spec).split(","):
        name, eq, n = part.rpartition("=") if "=" in part else ("", "", part)
        if not eq:
            default = int(n)
        elif name.strip() == op:
            return int(n)
    return default


def spread_subset(items: list, n: int | None) -> list:
    """At most n items, spread over the list (first, last, middle, ...), in list order."""
    if n is None or len(items) <= n:
        return list(items)
    return [items[i] for i in sorted(spread_order(len(items))[:max(n, 0)])]


def select_shapes(mod, spec: str, gpu: bool, quick: bool, max_shapes=None) -> list[tuple]:
    """Shapes for one op from --shapes, in list order; --max-shapes (--quick: 3) keeps a spread subset."""
    if spec == "preset":
        shapes = list(mod.SHAPES if gpu else mod.SMALL_SHAPES)
    elif spec == "small":
        shapes = list(mod.SMALL_SHAPES)
    elif Path(spec).is_file():
        data = json.loads(Path(spec).read_text())
        shapes = [tuple(s) for s in (data.get(mod.NAME, []) if isinstance(data, dict) else data)]
    else:
        shapes = [schema.parse_shape(s) for s in spec.split(";") if s.strip()]
    limit = max_shapes_for(max_shapes, mod.NAME)
    return spread_subset(shapes, limit if limit is not None else (3 if quick else None))


def _printer():
    """print(), or rich's console when installed (no markup: shapes contain brackets)."""
    try:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        return lambda msg="": console.print(msg, markup=False)
    except ImportError:
        return lambda msg="": print(msg, flush=True)


def table(rows: list[dict], cols: list[str]) -> str:
    """A plain-text table (tabulate when installed)."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(c, "")) for c in cols] for r in rows]
    try:
        from tabulate import tabulate

        return tabulate(body, headers=cols, disable_numparse=True)
    except ImportError:
        widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
        return "\n".join(lines)


def has_gpu() -> bool:
    """Whether to benchmark (a CUDA device is visible) or only check correctness."""
    return torch.cuda.is_available()


DEVICE = "cuda"  # where inputs live on the GPU path (tests swap in "cpu")


def _iso_date(text: str) -> str:
    import datetime
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want a date as YYYY-MM-DD") from None


def stale_cases(cases: list, path: Path, before: str) -> list:
    """The cases [(mode, shape, dtype, tuned?)] whose helion_ops row in the CSV at ``path`` is missing or
    dated before ``before`` (YYYY-MM-DD)."""
    if not path.exists():
        return cases
    dated = {(r["mode"], r["shape"], r["dtype"]): r.get("date", "")[:10]
             for r in schema.read_rows(path) if r.get("impl") == "helion_ops"}
    return [c for c in cases
            if dated.get((c[0], schema.format_shape(c[1]), schema.dtype_name(c[2])), "") < before]


def build_plan(mods, args, gpu: bool, dtypes, modes) -> tuple[dict, set]:
    """{op name: (mod, [(mode, shape, dtype, tuned?), ...])}, shapes spread-first; plus notes.
    tuned?: whether the tuned baselines (helion, compile_max) run on this shape (--tuned-shapes)."""
    plan, notes = {}, set()
    for mod in mods:
        notes.update(f"{mod.NAME}: no TOLERANCE for {schema.dtype_name(dt)}, skipped"
                     for dt in dtypes if dt not in mod.TOLERANCE)
        shapes = select_shapes(mod, args.shapes, gpu, args.quick, args.max_shapes)
        tuned_shapes = set(spread_subset(shapes, max_shapes_for(args.tuned_shapes, mod.NAME)))
        cases = []
        for i in spread_order(len(shapes)):
            for mode in modes:
                if mode == "bwd" and not mod.GRAD_INPUTS:
                    continue
                cases += [(mode, shapes[i], dt, shapes[i] in tuned_shapes) for dt in dtypes if dt in mod.TOLERANCE]
        if getattr(args, "older_than", None):
            gpu_dir = gpu_info.info()["gpu"] if has_gpu() else os.environ.get("BENCH_GPU", "H100")
            cases = stale_cases(cases, Path(args.out) / gpu_dir / f"{mod.NAME}.csv", args.older_than)
        plan[mod.NAME] = (mod, cases)
    return plan, notes


def estimate_s(cases: list, impls_of, warmup: float, rep: float, helion_tune_s: float = 0.0,
               graph_modes: set = frozenset()) -> float:
    """Estimated seconds for cases [(mode, shape, dtype, tuned?)] by the cost model above, plus
    helion_tune_s per helion case (its search, when no config is stored); a graph-timed mode costs each
    impl a second do_bench and a capture."""
    total = 0.0
    for mode, _, _, tuned in cases:
        for name in impls_of(mode):
            if name in baselines.TUNED and not tuned:
                continue
            total += FIRST_CALL_S.get((name, mode), 0.0) + PER_IMPL_S + (warmup + rep) / 1e3
            if mode in graph_modes:
                total += PER_IMPL_S + (warmup + rep) / 1e3
            total += helion_tune_s if name == "helion" else 0.0
    return total


def helion_tune_s(op: str) -> float:
    """Estimated seconds of the helion search per shape: none when the effort is "none" or the op's configs
    are stored (helion_baseline.store), else the cap plus the candidates' compile overrun (a 7 s cap
    took 17-24 s on the H100, 2026-12-06)."""
    from bench import helion_baseline

    if helion_baseline.effort() == "none" or helion_baseline.load_entries(op):
        return 0.0
    return helion_baseline.tune_cap_s() + 17.0


def _shape_rank(mod):
    """CSV sort key: mode (fwd first), dtype, then the shape's place in SHAPES (others after, stable)."""
    known = {schema.format_shape(s): i for i, s in enumerate(list(mod.SHAPES) + list(mod.SMALL_SHAPES))}
    return lambda r: (r.get("mode") != "fwd", r.get("dtype", ""), known.get(r.get("shape", ""), len(known)))


def _cuda_broken() -> str | None:
    """Why the CUDA context is unusable (a sticky error after an illegal access), or None."""
    if not torch.cuda.is_available():
        return None
    try:
        torch.cuda.synchronize()
        torch.ones(1, device="cuda").add_(1).item()
        return None
    except Exception as e:  # e.g. "an illegal memory access was encountered"
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _with_opt(argv: list[str], opt: str, value: str) -> list[str]:
    """argv with option `opt` set to value (replacing `opt X` or `opt=X`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == opt:
            skip = True
            continue
        if a.startswith(opt + "="):
            continue
        out.append(a)
    return out + [opt, value]


def _restart(argv: list[str], ops: list[str], budget_left: float | None, say) -> None:
    """Carry on with `ops` in a fresh process (the CUDA context of this one is broken)."""
    new = _with_opt(argv, "--op", ",".join(ops))
    if budget_left is not None:
        new = _with_opt(new, "--time-budget", f"{max(budget_left, 1.0):.0f}")
    say(f"restarting in a fresh process for the remaining ops: python -m bench.run {' '.join(new)}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "bench.run", *new])


def _write_run_info(path: Path, op: str, info: dict) -> None:
    """Merge one op's run summary into results/<GPU>/runs.json (read by bench.report)."""
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data[op] = info
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")
    tmp.replace(path)


def main(argv=None) -> int:
    """Run the benchmark (GPU) or the interpreter correctness run (no GPU). Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.command = "python -m bench.run " + " ".join(argv)
    # A kernel that fails must show as an error row, never as an eager fallback timed as ours.
    os.environ["HELION_OPS_STRICT"] = "1"
    t_start = time.perf_counter()
    gpu = has_gpu() or args.plan
    if not gpu:
        # Must precede the first import of helion_ops: kernels pick the
        # interpreter when they are defined.
        os.environ["TRITON_INTERPRET"] = "1"
    from bench import case, catalog, helion_baseline, liger_baseline, timing  # noqa: E402  (after the env var)

    say = _printer()
    elapsed = lambda: time.perf_counter() - t_start  # noqa: E731
    mods, problems = catalog.resolve(args.op)
    for name, why in problems.items():
        say(f"op {name}: not loaded: {why}")
    if not mods:
        say("no op modules to run" + ("" if args.op != "all" else " (none found in bench.specs)"))
        return 1

    modes = MODES[args.mode]
    warmup = args.warmup if args.warmup is not None else (10 if args.quick else 25)
    rep = args.rep if args.rep is not None else (40 if args.quick else 100)
    requested = _split(args.baselines)
    if gpu:
        dtypes = [schema.parse_dtype(d) for d in (args.dtype or ["bf16"])]
    else:
        say("no CUDA GPU: correctness only, in Triton's interpreter (TRITON_INTERPRET=1), fp32 and fp16"
            + (f" (--dtype {','.join(args.dtype)} ignored)" if args.dtype else ""))
        dtypes = [torch.float32, torch.float16]
        requested = requested or ["eager"]

    plan, notes = build_plan(mods, args, gpu, dtypes, modes)
    if gpu and not args.plan:
        helion_baseline.store = Path(args.out) / gpu_info.short_name(gpu_info.gpu_name()) / helion_baseline.STORE_DIR

    def impls_fn(mod):
        def impls(mode):
            names = baselines.impl_names(mod, requested, mode, gpu=gpu)[0]
            if args.plan:  # --plan estimates for the GPU machine, where the wheels are installed
                for extra, applies in (("helion", mode == "fwd" and helion_baseline.has_kernel(mod)),
                                       (baselines.LIGER, liger_baseline.has_op(mod))):
                    if applies and extra not in names and (requested is None or extra in requested):
                        names.append(extra)
            return names
        return impls

    impls_of = {name: impls_fn(mod) for name, (mod, _) in plan.items()}
    n_cases = sum(len(c) for _, c in plan.values())
    graph_modes = args.timing if gpu else set()
    if args.timing and not gpu:
        say("note: --timing graph ignored: CPU runs check correctness only, with no timings (plain or graph)")
    est = {name: estimate_s(cases, impls_of[name], warmup, rep, helion_tune_s(name) if gpu else 0.0, graph_modes)
           for name, (_, cases) in plan.items()}
    if gpu:
        for name, (mod, cases) in plan.items():
            shapes = len({c[1] for c in cases})
            say(f"plan {name}: {len(cases)} cases ({shapes} shapes x {','.join(sorted({c[0] for c in cases}))} x "
                f"{','.join(sorted({schema.dtype_name(c[2]) for c in cases}))}); impls fwd: "
                f"{','.join(impls_of[name]('fwd'))}; estimated {est[name]:.0f} s")
        total = sum(est.values()) + STARTUP_S + (
            FIRST_COMPILE_S if any("compile" in impls_of[n]("fwd") for n in plan) else 0.0)
        say(f"plan: {n_cases} cases, estimated {total:.0f} s (do_bench warmup {warmup:g} ms, rep {rep:g} ms"
            + (f"; time budget {args.time_budget:.0f} s" if args.time_budget else "") + ")")
    if args.plan:
        return 0

    graph_timer = lambda build: timing.graph_bench(build, warmup=warmup, rep=rep)  # noqa: E731
    if gpu:
        timer = lambda fn: timing.gpu_bench(fn, warmup=warmup, rep=rep)  # noqa: E731
        env = gpu_info.info()
        out_dir = Path(args.out) / env["gpu"]
        helion_baseline.store = out_dir / helion_baseline.STORE_DIR
        say(f"GPU {env['gpu_full']}  torch {env['torch']}  triton {env['triton']}  commit {env['commit']}")
        if any("helion" in impls_of[n]("fwd") for n in plan):
            say(f"helion baseline: {helion_baseline.label()}")
        if any(baselines.LIGER in impls_of[n]("fwd") for n in plan):
            say(f"liger baseline: {liger_baseline.version()}")
        ceilings = metrics.measure_ceilings(timer)
        say(f"ceilings: copy {ceilings['copy_GBps']:.0f} GB/s, cuBLAS bf16 8192^3 {ceilings['matmul_TFLOPs']:.0f} TFLOP/s")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "ceilings.json").write_text(json.dumps({**ceilings, **env}, indent=1) + "\n")
    else:
        timer, env, out_dir = None, {}, None

    all_rows: list[dict] = []
    skipped_budget: dict[str, int] = {}
    done_cases, i = 0, 0
    for op_i, (name, (mod, cases)) in enumerate(plan.items()):
        t_op = elapsed()
        deadline = None
        if args.time_budget:
            left_cases = sum(len(c) for _, c in list(plan.values())[op_i:])
            share = (args.time_budget - t_op) * len(cases) / max(left_cases, 1)
            deadline = t_op + max(share, 0.0)
        say(f"== {name}: {len(cases)} cases, t={t_op:.0f}s"
            + (f", until t={deadline:.0f}s" if deadline is not None else ""))
        first_calls: dict[str, float] = {}
        impl_info: dict[str, dict] = {}  # impl -> version and tuning states seen (runs.json "baselines")
        op_notes: set[str] = set()
        ran = 0
        for j, (mode, shape, dt, tuned) in enumerate(cases):
            i += 1
            if deadline is not None and elapsed() >= deadline:
                skipped_budget[name] = len(cases) - j
                break
            impls, skipped = baselines.impl_names(mod, requested, mode, gpu=gpu)
            op_notes.update(skipped)
            if not tuned:
                impls = [n for n in impls if n not in baselines.TUNED]
            say(f"[{i}/{n_cases} t={elapsed():.0f}s] {name} {mode} {schema.format_shape(shape)} {schema.dtype_name(dt)}")
            try:
                rows = case.run_case(mod, shape, dt, mode, impls, DEVICE if gpu else "cpu",
                                     timer=timer, env=env, log=say,
                                     graph_timer=graph_timer if mode in graph_modes else None)
            except Exception as e:  # anything run_case did not catch: record the case as errors, go on
                say(f"    case crashed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                rows = case._rows({"op": name, "mode": mode, "shape": schema.format_shape(shape),
                                   "dtype": schema.dtype_name(dt), "unit": mod.METRIC},
                                  {n: {**case.blank(), "note": f"case crashed: {case._why(e)}"} for n in impls},
                                  math.nan, env)
            ran += 1
            if gpu:  # fraction of the ceiling measured in this run (copy GB/s or cuBLAS TFLOP/s)
                ceiling = metrics.ceiling_for(mod.METRIC, ceilings)
                for r in rows:
                    r[schema.FRACTION] = r["metric"] / ceiling if ceiling else math.nan
            for r in rows:
                if math.isfinite(r.get("compile_s", math.nan)):
                    first_calls[r["impl"]] = first_calls.get(r["impl"], 0.0) + r["compile_s"]
                if r.get("tuning"):
                    impl_info.setdefault(r["impl"], {"version": r.get("version", ""), "tuning": set()})
                    impl_info[r["impl"]]["tuning"].add(r["tuning"])
                elif r.get("version") and r["impl"] not in impl_info:
                    impl_info[r["impl"]] = {"version": r["version"], "tuning": set()}
            all_rows += rows
            if gpu:  # write after every case, so a crash keeps what was measured
                schema.write_rows(out_dir / f"{name}.csv", rows, order=_shape_rank(mod))
                broken = _cuda_broken()
                if broken:
                    say(f"CUDA context broken after {name} {mode} {schema.format_shape(shape)}: {broken}; "
                        f"{len(cases) - j - 1} cases of {name} not run")
                    _write_run_info(out_dir / "runs.json", name, _op_info(
                        args, ran, len(cases), elapsed() - t_op, first_calls, op_notes, warmup, rep,
                        env, impl_info, broken=broken))
                    rest = list(plan)[op_i + 1:]
                    if rest:
                        _restart(argv, rest, args.time_budget - elapsed() if args.time_budget else None, say)
                    if not args.no_report:
                        _report(Path(args.out), say)
                    return 1
        done_cases += ran
        notes.update(op_notes)
        spent = elapsed() - t_op
        firsts = ", ".join(f"{k} first calls {v:.1f} s" for k, v in first_calls.items())
        say(f"== {name} done: {ran}/{len(cases)} cases in {spent:.1f} s (estimated {est[name]:.0f} s"
            + (f"; {firsts}" if firsts else "") + f"); elapsed {elapsed():.0f} s")
        if gpu:
            _write_run_info(out_dir / "runs.json", name, _op_info(
                args, ran, len(cases), spent, first_calls, op_notes, warmup, rep, env, impl_info,
                helion=helion_baseline.label() if "helion" in impls_of[name]("fwd") else None))
    for note in sorted(notes):
        say(f"note: {note}")
    for name, n in skipped_budget.items():
        say(f"TIME BUDGET: {name}: {n} of {len(plan[name][1])} cases not run (raise --time-budget or run the op alone)")

    if gpu:
        say(table(all_rows, ["op", "mode", "shape", "dtype", "impl", "ms", *(["ms_graph"] if graph_modes else []),
                             "metric", "unit", "speedup_vs_eager", "speedup_vs_compile", "err", "status"]))
        if not args.no_report:
            _report(Path(args.out), say)
    else:
        tols = {m.NAME: m.TOLERANCE for m in mods}
        for r in all_rows:
            r["tol"] = tols[r["op"]][schema.DTYPES[r["dtype"]]]
        for r in all_rows:  # explain each non-ok row (and each ok one that needed an explanation) in place
            r["why"] = r.get("note", "") if (r["status"] != "ok" or r.get("note")) else ""
        say("")
        say(CPU_TITLE)
        say(table(all_rows, ["op", "mode", "shape", "dtype", "impl", "err", "tol", "status", "why"]))
        say("nothing written under results/ (timings need a CUDA GPU)")

    bad = [r for r in all_rows if r["impl"] == baselines.OURS and r["status"] != "ok"]
    say(f"{done_cases} of {n_cases} cases, {len(all_rows)} rows in {elapsed():.0f} s; ours not ok: {len(bad)}; "
        f"ops not loaded: {len(problems)}")
    if bad or problems or not n_cases:
        return 1
    return BUDGET_EXIT if skipped_budget else 0


def _op_info(args, ran, total, spent, first_calls, notes, warmup, rep, env, impl_info=None, helion=None,
             broken=None) -> dict:
    """One op's entry of runs.json; "baselines": each impl's library version and tuning states in this run."""
    info = {"command": args.command, "date": env.get("date", ""), "commit": env.get("commit", ""),
            "cases_run": ran, "cases_planned": total,
            "seconds": round(spent, 1), "first_call_s": {k: round(v, 1) for k, v in first_calls.items()},
            "do_bench_ms": [warmup, rep], "notes": sorted(notes),
            "baselines": {k: {"version": v["version"], "tuning": sorted(v["tuning"])}
                          for k, v in sorted((impl_info or {}).items())}}
    if helion:
        info["helion"] = helion
    if broken:
        info["cuda_error"] = broken
    return info


def _report(results: Path, say) -> None:
    """Rebuild tables, plots and summaries from every CSV on disk; the project README only for the repo's results/."""
    try:
        from bench import report

        readme = REPO / "README.md" if results.resolve() == (REPO / "results").resolve() else None
        report.build(results, readme=readme)
        say(f"reports rebuilt under {results}")
    except ImportError as e:
        say(f"reports not rebuilt ({e}); run `python -m bench.report` after installing the bench extra")


if __name__ == "__main__":
    sys.exit(main())
