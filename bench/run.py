"""CLI: python -m bench.run --op <name|all> [--dtype bf16,fp16,fp32] [--shapes preset|small|FILE|AxB;CxD]
[--baselines eager,compile,cublas,cudnn,flash,grouped_mm,helion] [--mode fwd,bwd] [--quick] [--out results]

On a CUDA GPU: times every impl, writes results/<GPU>/<op>.csv and rebuilds the reports.
Without one: checks correctness of ours (and eager) on SMALL_SHAPES in fp32/fp16 in
Triton's interpreter, prints a table, and writes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from bench import baselines, gpu_info, metrics, schema

REPO = Path(__file__).resolve().parent.parent
CPU_TITLE = "INTERPRETER CORRECTNESS RUN (no GPU): no timings"


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[1])
    p.add_argument("--op", default="all", help="'all', op names, module paths or .py files (comma-separated)")
    p.add_argument("--dtype", default=None, help="comma list of bf16,fp16,fp32 (GPU default: bf16)")
    p.add_argument("--shapes", default="preset",
                   help="'preset' (SHAPES; SMALL_SHAPES without GPU), 'small', a JSON file "
                        "({op: [[...]]} or [[...]]), or inline '4096x4096;8192x1000'")
    p.add_argument("--baselines", default=None,
                   help="comma list (default: eager,compile,<op's BASELINES>,helion; no GPU: eager)")
    p.add_argument("--mode", default="fwd,bwd", help="fwd, bwd or both (bwd only for ops with GRAD_INPUTS)")
    p.add_argument("--quick", action="store_true", help="at most 3 shapes per op, shorter timing")
    p.add_argument("--out", default=str(REPO / "results"), help="results root (GPU only)")
    p.add_argument("--no-report", action="store_true", help="don't rebuild reports after the run")
    return p.parse_args(argv)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def select_shapes(mod, spec: str, gpu: bool, quick: bool) -> list[tuple]:
    """Shapes for one op from --shapes; --quick keeps at most 3, evenly spaced."""
    if spec == "preset":
        shapes = list(mod.SHAPES if gpu else mod.SMALL_SHAPES)
    elif spec == "small":
        shapes = list(mod.SMALL_SHAPES)
    elif Path(spec).is_file():
        data = json.loads(Path(spec).read_text())
        shapes = [tuple(s) for s in (data.get(mod.NAME, []) if isinstance(data, dict) else data)]
    else:
        shapes = [schema.parse_shape(s) for s in spec.split(";") if s.strip()]
    if quick and len(shapes) > 3:
        shapes = [shapes[round(i * (len(shapes) - 1) / 2)] for i in range(3)]
    return shapes


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


def main(argv=None) -> int:
    """Run the benchmark (GPU) or the interpreter correctness run (no GPU). Returns the exit code."""
    args = parse_args(argv)
    gpu = has_gpu()
    if not gpu:
        # Must precede the first import of helion_ops: kernels pick the
        # interpreter when they are defined.
        os.environ["TRITON_INTERPRET"] = "1"
    from bench import case, catalog, timing  # noqa: E402  (after the env var)

    say = _printer()
    mods, problems = catalog.resolve(args.op)
    for name, why in problems.items():
        say(f"op {name}: not loaded: {why}")
    if not mods:
        say("no op modules to run" + ("" if args.op != "all" else " (none found in helion_ops.ops)"))
        return 1

    modes = _split(args.mode) or ["fwd"]
    if gpu:
        dtypes = [schema.parse_dtype(d) for d in (_split(args.dtype) or ["bf16"])]
        requested = _split(args.baselines)
        warmup, rep = (10, 40) if args.quick else (25, 100)
        timer = lambda fn: timing.gpu_bench(fn, warmup=warmup, rep=rep)  # noqa: E731
        env = gpu_info.info()
        out_dir = Path(args.out) / env["gpu"]
        say(f"GPU {env['gpu_full']}  torch {env['torch']}  triton {env['triton']}  commit {env['commit']}")
        ceilings = metrics.measure_ceilings(timer)
        say(f"ceilings: copy {ceilings['copy_GBps']:.0f} GB/s, cuBLAS bf16 8192^3 {ceilings['matmul_TFLOPs']:.0f} TFLOP/s")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "ceilings.json").write_text(json.dumps({**ceilings, **env}, indent=1) + "\n")
    else:
        say("no CUDA GPU: correctness only, in Triton's interpreter (TRITON_INTERPRET=1), fp32 and fp16"
            + (f" (--dtype {args.dtype} ignored)" if args.dtype else ""))
        dtypes = [torch.float32, torch.float16]
        requested = _split(args.baselines) or ["eager"]
        timer, env = None, {}

    # (mod, mode, shape, dtype) for everything that applies; ops lacking a dtype in TOLERANCE skip it.
    plan, notes = [], set()
    for mod in mods:
        notes.update(f"{mod.NAME}: no TOLERANCE for {schema.dtype_name(dt)}, skipped"
                     for dt in dtypes if dt not in mod.TOLERANCE)
        for mode in modes:
            if mode == "bwd" and not mod.GRAD_INPUTS:
                continue
            for shape in select_shapes(mod, args.shapes, gpu, args.quick):
                plan += [(mod, mode, shape, dt) for dt in dtypes if dt in mod.TOLERANCE]

    all_rows: list[dict] = []
    for i, (mod, mode, shape, dt) in enumerate(plan, 1):
        impls, skipped = baselines.impl_names(mod, requested)
        notes.update(skipped)
        say(f"[{i}/{len(plan)}] {mod.NAME} {mode} {schema.format_shape(shape)} {schema.dtype_name(dt)}")
        rows = case.run_case(mod, shape, dt, mode, impls, DEVICE if gpu else "cpu",
                             timer=timer, env=env, log=say)
        all_rows += rows
        if gpu:  # write after every case, so a crash keeps what was measured
            schema.write_rows(out_dir / f"{mod.NAME}.csv", rows)
    for note in sorted(notes):
        say(f"note: {note}")

    if gpu:
        say(table(all_rows, ["op", "mode", "shape", "dtype", "impl", "ms", "metric", "unit",
                             "speedup_vs_eager", "speedup_vs_compile", "err", "status"]))
        if not args.no_report:
            _report(Path(args.out), say)
    else:
        tols = {m.NAME: m.TOLERANCE for m in mods}
        for r in all_rows:
            r["tol"] = tols[r["op"]][schema.DTYPES[r["dtype"]]]
        say("")
        say(CPU_TITLE)
        say(table(all_rows, ["op", "mode", "shape", "dtype", "impl", "err", "tol", "status"]))
        say("nothing written under results/ (timings need a CUDA GPU)")

    bad = [r for r in all_rows if r["impl"] == baselines.OURS and r["status"] != "ok"]
    say(f"{len(plan)} cases, {len(all_rows)} rows; ours not ok: {len(bad)}; ops not loaded: {len(problems)}")
    return 1 if bad or problems or not plan else 0


def _report(results: Path, say) -> None:
    """Rebuild tables, plots and summaries; the project README only for the repo's results/."""
    try:
        from bench import report

        readme = REPO / "README.md" if results.resolve() == (REPO / "results").resolve() else None
        report.build(results, readme=readme)
        say(f"reports rebuilt under {results}")
    except ImportError as e:
        say(f"reports not rebuilt ({e}); run `python -m bench.report` after installing the bench extra")


if __name__ == "__main__":
    sys.exit(main())
