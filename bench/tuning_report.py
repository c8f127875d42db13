"""Tuning report (issues 3 and 29): quick and full tuning of each op's kernel at one shape (bf16),
against the default config and Helion's quick tuning of the same-language kernels.

    python -m bench.tuning_report [--out results/H100/tuning.md] [--ops softmax,rms_norm,layer_norm,matmul]
                                  [--full-limit 40] [--budget 230] [--no-helion]
    python -m bench.tuning_report --dry      (no GPU: the plan and its estimated seconds)

The kernels are tests/dsl/kernels.py's (softmax, rms_norm, layer_norm, matmul: the catalog's ops written
in plain Helion language); the Helion baseline runs that file itself with only its imports swapped
(``import helion`` for ``import helion_ops.dsl as helion``): same source, two compilers.

``--budget`` (seconds, soft) keeps the run inside one GPU-session step: ours first (quick, then full
capped by ``--full-limit`` and by an even share of what is left), then Helion's quick search (about
85 s a kernel on an H100 host), matmul first, for as many kernels as an estimated HELION_S still fits
(``--budget 600`` gives all four in one 600 s command); rows left out say so. Quick is never cut: it
is the figure the report exists for.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import sys
import tempfile
import time

import torch

from bench import helion_baseline
from tests.dsl import kernels as K

QUICK_S, HELION_S = 10.0, 90.0  # estimates per kernel (plan and budget); results/H100/tuning.md has the times
SHAPE = (8192, 8192)


def _cases(names: list[str]) -> list[tuple]:
    """(name, shape text, unit, make inputs, kernel, work, reference) per op."""
    d = dict(device="cuda", dtype=torch.bfloat16)
    m, n = SHAPE
    row_bytes = lambda x, *_: 2 * x.numel() * x.element_size()  # noqa: E731
    all_cases = {
        "softmax": ("softmax", f"{m}x{n}", "GB/s", lambda: (torch.randn(m, n, **d),), K.softmax, row_bytes,
                    lambda x: torch.softmax(x.float(), -1)),
        "rms_norm": ("rms_norm", f"{m}x{n}", "GB/s", lambda: (torch.randn(m, n, **d), torch.randn(n, **d)), K.rms_norm,
                     row_bytes, lambda x, w: torch.nn.functional.rms_norm(x.float(), (n,), w.float(), 1e-5)),
        "layer_norm": ("layer_norm", f"{m}x{n}", "GB/s",
                       lambda: (torch.randn(m, n, **d), torch.randn(n, **d), torch.randn(n, **d)), K.layer_norm,
                       row_bytes, lambda x, w, b: torch.nn.functional.layer_norm(x.float(), (n,), w.float(), b.float())),
        "matmul": ("matmul", "4096x4096x4096", "TFLOP/s",
                   lambda: (torch.randn(4096, 4096, **d), torch.randn(4096, 4096, **d)), K.matmul,
                   lambda a, b: 2 * a.shape[0] * a.shape[1] * b.shape[1], lambda a, b: a.float() @ b.float()),
    }
    unknown = [x for x in names if x not in all_cases]
    if unknown:
        raise SystemExit(f"--ops: unknown {unknown}; choose from {sorted(all_cases)}")
    return [all_cases[x] for x in names]


def _full_share(full_limit: float, left: float, kernels_left: int) -> float:
    """A kernel's full-search cap: ``full_limit``, or an even share of the budget left after the
    remaining kernels' quick searches."""
    return max(0.0, min(full_limit, (left - QUICK_S * kernels_left) / kernels_left))


def plan(ops: list[str], full_limit: float, budget: float, helion: bool) -> list[tuple[str, str, float]]:
    """(kernel, phase, estimated s) in run order, as ``main`` schedules them within ``budget``."""
    out, left = [], budget
    for i, name in enumerate(ops):
        full = _full_share(full_limit, left, len(ops) - i)
        out += [(name, "quick", QUICK_S), (name, "full", full)]
        left -= QUICK_S + full
    for name in sorted(ops, key=lambda x: x != "matmul") if helion else []:
        if left >= HELION_S:
            out.append((name, "helion quick", HELION_S))
            left -= HELION_S
    return out


def _ms(fn) -> float:
    import triton.testing
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def _helion_module():
    try:
        import helion  # noqa: F401
    except Exception as e:  # optional baseline
        return None, f"helion not importable: {type(e).__name__}: {e}"
    src = open(K.__file__).read()
    src = src.replace("import helion_ops.dsl as helion", "import helion").replace(
        "import helion_ops.dsl.language as hl", "import helion.language as hl")
    src = src.replace("@helion.kernel()", '@helion.kernel(autotune_effort="quick")')
    d = tempfile.mkdtemp()
    path = os.path.join(d, "helion_kernels.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("helion_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("--ops", default="softmax,rms_norm,layer_norm,matmul")
    ap.add_argument("--full-limit", type=float, default=40.0, help="seconds per kernel's full search (at most)")
    ap.add_argument("--budget", type=float, default=230.0, help="soft seconds for the whole report")
    ap.add_argument("--no-helion", action="store_true")
    ap.add_argument("--dry", action="store_true", help="print the plan and its estimated seconds (no GPU)")
    args = ap.parse_args(argv)
    ops = args.ops.split(",")
    cases = _cases(ops)
    if args.dry or not torch.cuda.is_available():
        steps = plan(ops, args.full_limit, args.budget, not args.no_helion)
        for name, phase, s in steps:
            print(f"{name:10s} {phase:13s} ~{s:.0f} s")
        print(f"estimated {sum(s for *_, s in steps):.0f} s (budget {args.budget:.0f} s)")
        return 0 if args.dry else 2
    import triton

    from helion_ops.dsl.autotune import autotune
    from helion_ops.dsl.autotune.bench import Precompiler

    os.environ.setdefault("HELION_OPS_CACHE_DIR", tempfile.mkdtemp())  # fresh tuning cache: real tuning times
    t_end = time.perf_counter() + args.budget
    # The compile workers are one pool per process, shared by every search (each worker imports torch and
    # Triton: seconds). Started here, so the first kernel's quick row does not carry the process's start.
    t0 = time.perf_counter()
    pool = Precompiler()
    pool.warm()
    pool.close()
    pool_s = time.perf_counter() - t0
    hmod, why = (None, "skipped (--no-helion)") if args.no_helion else _helion_module()
    hname = helion_baseline.version() or "helion"  # 'helion 1.4.0'
    lines = [f"# Tuning on {torch.cuda.get_device_name()} ({datetime.date.today()}, torch {torch.__version__}, "
             f"triton {triton.__version__})", "",
             "Wall time includes compilation, candidates' accuracy checks and timing. Times are medians of "
             "triton.testing.do_bench in the same process. `vs full`: throughput against the full search's "
             f"config (full capped at {args.full_limit:.0f} s and by the report's {args.budget:.0f} s budget). "
             f"Our searches share one pool of compile workers per process, started once before the first "
             f"search ({pool_s:.1f} s, in no row).", "",
             "| kernel | shape | what | tuning wall s | ms | throughput | vs default | vs full |",
             "|---|---|---|---|---|---|---|---|"]
    measured = {}  # name -> (inputs, rows)
    for i, (name, shape, unit, make, kern, work, ref) in enumerate(cases):
        inputs = make()
        expected = ref(*inputs)
        b = kern.bind(inputs)
        default = b.default_config()
        rows = [("default config", 0.0, _ms(lambda: b.run(default, *inputs)), default)]
        for effort in ("quick", "full"):
            limit = None if effort == "quick" else \
                _full_share(args.full_limit, t_end - time.perf_counter(), len(cases) - i)
            if limit is not None and limit < 5:
                rows.append(("full: not run (budget)", 0.0, None, None))
                continue
            t0 = time.perf_counter()
            # progress lines (stderr, in the step's log): when each round ended and what it compiled and timed
            cfg = autotune(b, inputs, effort, time_limit=limit, cache=False, progress=effort == "quick")
            wall = time.perf_counter() - t0
            out = b.run(cfg, *inputs)
            err = ((out.float() - expected).abs().max() / expected.abs().max()).item()
            rows.append((f"{effort} (err {err:.1e})", wall, _ms(lambda: b.run(cfg, *inputs)), cfg))
            print(f"{name} {effort}: {wall:.1f} s, {rows[-1][2]:.4f} ms", flush=True)
        measured[name] = (inputs, rows)
    for name, shape, unit, make, kern, work, ref in sorted(cases, key=lambda c: c[0] != "matmul"):
        inputs, rows = measured[name]
        if hmod is None:
            continue
        if t_end - time.perf_counter() < HELION_S:
            rows.append((f"{hname} quick: not run (budget)", 0.0, None, None))
            continue
        try:
            hk = getattr(hmod, kern.__name__)
            t0 = time.perf_counter()
            hk(*inputs)
            wall = time.perf_counter() - t0
            rows.append((f"{hname} quick", wall, _ms(lambda: hk(*inputs)), None))
        except Exception as e:
            lines.append(f"<!-- helion {name} failed: {type(e).__name__}: {str(e)[:200]} -->")
    for name, shape, unit, make, kern, work, ref in cases:
        inputs, rows = measured[name]
        scale = 1e-6 if unit == "GB/s" else 1e-9
        t_def = rows[0][2]
        t_full = next((ms for what, _, ms, _ in rows if what.startswith("full (")), None)
        for what, wall, ms, cfg in rows:
            if ms is None:
                lines.append(f"| {name} | {shape} | {what} | - | - | - | - | - |")
                continue
            vs_full = f"{t_full / ms:.2f}x" if t_full else "-"
            lines.append(f"| {name} | {shape} | {what} | {wall:.1f} | {ms:.4f} | {work(*inputs) / ms * scale:.1f} {unit} "
                         f"| {t_def / ms:.2f}x | {vs_full} |")
        for what, _, _, cfg in rows:
            if cfg is not None:
                lines.append(f"<!-- {name} {what}: {cfg.to_json()} -->")
    from bench.dsl_check import dispatch
    lines += ["", "Dispatch overhead, 16-element add, µs per call (same run):", "", "| what | µs/call |", "|---|---|"]
    lines += [f"| {w} | {u:.1f} |" for w, u in dispatch()]
    if why:
        lines.append(f"\nHelion baseline: {why}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
