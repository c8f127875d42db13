"""Tune an op's kernels on this GPU and write the pretuned table configs/<arch>/<op>.json.

    python -m bench.tune --op matmul[,grouped_gemm,...] [--effort quick] [--dtype bf16]
                         [--shapes all|N|MxN;...] [--kernels name,...] [--mode fwd,bwd] [--time-limit S]

For each shape of the op's SHAPES, the op runs once (forward, and backward with --mode bwd for ops
with GRAD_INPUTS) while this script records which kernels it launched, with which arguments, and
under which pretuned key (op, kernel, dtype, shape) each kernel looked up its config. Each recorded
kernel is then autotuned on those exact arguments, seeded with the config the op would use today
(pretuned entry or the op's own chooser). The winner is written only when it beats that config by
more than the noise band (2%) in a fresh timing; otherwise the current config is written with its
time, so the table records what was measured either way.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time

import torch

from bench import catalog

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
NOISE = 0.02


def record(op_mod, shape, dtype, mode: str, device: str = "cuda"):
    """Run the op once; return [(kernel name, (op, key shape, variant), bound, config, args)], one per
    distinct (kernel, key) it launched: each launch is paired with the pretuned lookup that chose its
    config (matmul's backward launches one kernel twice, dA and dB, under different keys)."""
    from helion_ops._oplib import record_choices
    from helion_ops.dsl.runtime import record_launches

    inputs = op_mod.make_inputs(shape, dtype, device)
    with record_choices() as choices, record_launches() as runs:
        if mode == "bwd" and op_mod.GRAD_INPUTS:
            inputs = tuple(x.detach().requires_grad_(i in op_mod.GRAD_INPUTS) if isinstance(x, torch.Tensor) else x
                           for i, x in enumerate(inputs))
            out = op_mod.impl(*inputs)
            choices.clear()  # only the backward's kernels
            runs.clear()
            out.backward(torch.randn_like(out))
        else:
            op_mod.impl(*inputs)
        if device == "cuda":
            torch.cuda.synchronize()
    # Each kernel's launches follow its choices in order (a choice, then the launch it chose for).
    keys: dict[str, list] = {}
    for name, key in choices:
        keys.setdefault(name, []).append(key)
    launches: dict = {}
    for bound, cfg, args in runs:
        pending = keys.get(bound.kernel.name)
        if pending:
            key = pending.pop(0)
            launches.setdefault((bound.kernel.name, repr(key)), (bound.kernel.name, key, bound, cfg, args))
    return list(launches.values())


def time_config(bound, cfg, args) -> float:
    import triton.testing
    return float(triton.testing.do_bench(lambda: bound.run(cfg, *args), warmup=10, rep=50, return_mode="median"))


def tune_op(name: str, effort: str, dtype: torch.dtype, shapes, kernels, modes, time_limit,
            write=lambda entry: None) -> list[dict]:
    """Tune every recorded kernel of every shape; ``write(entry)`` is called as each one finishes, so
    a run cut short keeps what it measured."""
    from helion_ops.dsl.autotune import autotune

    op_mod = catalog.load(name)
    entries = []
    for shape in shapes:
        for mode in modes:
            if mode == "bwd" and not op_mod.GRAD_INPUTS:
                continue
            try:
                rec = record(op_mod, shape, dtype, mode)
            except Exception as e:  # one shape that fails must not stop the table
                print(f"{name} {shape} {mode}: op failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
                continue
            for kname, (op, key, variant), bound, current, args in rec:
                if kernels and kname not in kernels:
                    continue
                t0 = time.time()
                try:
                    best = autotune(bound, args, effort, seeds=[current], cache=False,
                                    time_limit=time_limit, progress=False)
                    t_cur, t_best = time_config(bound, current, args), time_config(bound, best, args)
                except Exception as e:
                    print(f"{name} {shape} {kname}: tuning failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
                    continue
                better = t_best < t_cur * (1 - NOISE)
                cfg, ms = (best, t_best) if better else (current, t_cur)
                print(f"{name} {shape} {kname}: current {t_cur:.4f} ms, tuned {t_best:.4f} ms -> "
                      f"{'tuned' if better else 'kept'} ({time.time() - t0:.0f} s)", flush=True)
                entries.append({"kernel": kname, "key": {"dtype": dtype, "shape": key,
                                                         **({"variant": variant} if variant else {})},
                                "config": cfg, "ms": ms})
                write(entries[-1])
    return entries


def pick_shapes(shapes: list, spec: str) -> list:
    """``spec``: "all", N (the first N), or shapes written like the results ("16384x5120;4096x4097")."""
    if spec == "all":
        return list(shapes)
    if spec.isdigit():
        return list(shapes[:int(spec)])
    from bench.schema import parse_shape
    return [parse_shape(t) for t in spec.split(";") if t.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", required=True, help="comma-separated op names")
    ap.add_argument("--effort", default="quick", choices=["quick", "full"])
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--shapes", default="all",
                    help="'all', the first N shapes of SHAPES, or a ';'-separated list such as '16384x5120;4096x4097'")
    ap.add_argument("--kernels", default="", help="only these kernel names")
    ap.add_argument("--mode", default="fwd", help="fwd, bwd or fwd,bwd")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds per kernel and shape")
    ap.add_argument("--arch", default=None, help="default: this GPU's (e.g. sm90)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.tune needs a CUDA GPU: tuning measures real kernels (nothing written)")
        return 2
    import triton

    from helion_ops import pretuned
    arch = args.arch or pretuned.current_arch()
    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "date": datetime.date.today().isoformat(),
            "method": f"python -m bench.tune --effort {args.effort} (autotune seeded with the op's own config; "
                      f"kept unless {NOISE:.0%} faster)"}
    kernels = set(filter(None, args.kernels.split(",")))
    modes = args.mode.split(",")
    for name in args.op.split(","):
        op_mod = catalog.load(name)
        shapes = pick_shapes(op_mod.SHAPES, args.shapes)
        t0 = time.time()
        entries = tune_op(name, args.effort, DTYPES[args.dtype], shapes, kernels, modes, args.time_limit,
                          write=lambda e, name=name: pretuned.write_entries(name, arch, [e], meta))
        path = pretuned.config_path(name, arch)
        print(f"{name}: {len(entries)} entries -> {path} ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
