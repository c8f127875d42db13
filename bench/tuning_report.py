"""Tuning report (issue 3): quick and full tuning of softmax 8192x8192 and matmul 4096^3 (bf16),
against the default config and Helion 1.4's quick tuning of the same-language kernels.

    python -m bench.tuning_report [--out results/H100/tuning.md] [--full-limit 240]

The Helion baseline runs tests/dsl/kernels.py itself with only its imports swapped
(``import helion`` for ``import helion_ops.dsl as helion``): same source, two compilers.
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
import triton

from tests.dsl import kernels as K


def _ms(fn) -> float:
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--full-limit", type=float, default=240.0)
    ap.add_argument("--no-helion", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HELION_OPS_CACHE_DIR", tempfile.mkdtemp())  # fresh tuning cache: real tuning times
    d = dict(device="cuda", dtype=torch.bfloat16)
    cases = [
        ("softmax", "8192x8192", "GB/s", lambda: (torch.randn(8192, 8192, **d),), K.softmax,
         lambda x: 2 * x.numel() * x.element_size(), lambda x: torch.softmax(x.float(), -1)),
        ("matmul", "4096x4096x4096", "TFLOP/s", lambda: (torch.randn(4096, 4096, **d), torch.randn(4096, 4096, **d)),
         K.matmul, lambda a, b: 2 * a.shape[0] * a.shape[1] * b.shape[1], lambda a, b: a.float() @ b.float()),
    ]
    hmod, why = (None, "skipped") if args.no_helion else _helion_module()
    lines = [f"# Tuning on {torch.cuda.get_device_name()} ({datetime.date.today()}, torch {torch.__version__}, "
             f"triton {triton.__version__})", "",
             "Wall time includes compilation, candidates' accuracy checks and timing. Times are medians of "
             "triton.testing.do_bench in the same process.", "",
             "| kernel | shape | what | tuning wall s | ms | throughput | vs default |", "|---|---|---|---|---|---|---|"]
    for name, shape, unit, make, kern, work, ref in cases:
        inputs = make()
        scale = 1e-6 if unit == "GB/s" else 1e-9
        b = kern.bind(inputs)
        default = b.default_config()
        t_def = _ms(lambda: b.run(default, *inputs))
        rows = [("default config", 0.0, t_def, default)]
        for effort, limit in (("quick", None), ("full", args.full_limit)):
            t0 = time.perf_counter()
            from helion_ops.dsl.autotune import autotune
            cfg = autotune(b, inputs, effort, time_limit=limit, cache=False, progress=False)
            wall = time.perf_counter() - t0
            out = b.run(cfg, *inputs)
            err = ((out.float() - ref(*inputs)).abs().max() / ref(*inputs).abs().max()).item()
            rows.append((f"{effort} (err {err:.1e})", wall, _ms(lambda: b.run(cfg, *inputs)), cfg))
        if hmod is not None:
            try:
                hk = getattr(hmod, kern.__name__)
                t0 = time.perf_counter()
                hk(*inputs)
                wall = time.perf_counter() - t0
                rows.append(("helion 1.4 quick", wall, _ms(lambda: hk(*inputs)), None))
            except Exception as e:
                lines.append(f"<!-- helion {name} failed: {type(e).__name__}: {str(e)[:200]} -->")
        for what, wall, ms, cfg in rows:
            thr = work(*inputs) / ms * scale
            lines.append(f"| {name} | {shape} | {what} | {wall:.1f} | {ms:.4f} | {thr:.1f} {unit} | {t_def / ms:.2f}x |")
        for what, _, _, cfg in rows:
            if cfg is not None:
                lines.append(f"<!-- {name} {what}: {cfg.to_json()} -->")
    from bench.dsl_check import dispatch
    lines += ["", "Dispatch overhead, 16-element add, µs per call (same run):", "", "| what | µs/call |", "|---|---|"]
    lines += [f"| {w} | {u:.1f} |" for w, u in dispatch()]
    if why and not args.no_helion:
        lines.append(f"\nHelion baseline: {why}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
