"""GPU check of the DSL core (issue 2): the acceptance kernels in bf16/fp16/fp32 against torch,
plus host dispatch overhead of a cached kernel against a bare Triton launch and a torch add.

    python -m bench.dsl_check [--out results/H100/dsl_check.md]
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import torch
import triton
import triton.language as tl

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from tests.dsl import kernels as K

TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def rel(out, ref):
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()


def cases(dtype):
    d = dict(device="cuda", dtype=dtype)
    for n in (1, 17, 1000, 4097, 8192):
        x, y = torch.randn(64, n, **d), torch.randn(n, **d)
        yield "add(bcast)", n, lambda x=x, y=y: K.add(x, y), lambda x=x, y=y: x.double() + y.double()
        yield "softmax", n, lambda x=x: K.softmax(x), lambda x=x: torch.softmax(x.double(), -1)
        b = K.softmax.bind((x,))
        cfg = b.config.replace(reduction_loops=[256])
        yield "softmax(looped)", n, lambda x=x, b=b, c=cfg: b.run(c, x), lambda x=x: torch.softmax(x.double(), -1)
        yield "softmax_two_pass", n, lambda x=x: K.softmax_two_pass(x), lambda x=x: torch.softmax(x.double(), -1)
        yield "rms_norm", n, lambda x=x, y=y: K.rms_norm(x, y), \
            lambda x=x, y=y: torch.nn.functional.rms_norm(x.double(), (x.shape[1],), y.double(), 1e-5)
        yield "layer_norm", n, lambda x=x, y=y: K.layer_norm(x, y, y), \
            lambda x=x, y=y: torch.nn.functional.layer_norm(x.double(), (x.shape[1],), y.double(), y.double(), 1e-5)
        yield "row_sum", n, lambda x=x: K.row_sum(x), lambda x=x: x.double().sum(-1)
        yield "grid_scale_add", n, lambda x=x: K.grid_scale_add(x, x, 0.5), lambda x=x: x.double() * 1.5
        xt = torch.randn(n, 64, **d).t()
        yield "softmax(transposed)", n, lambda x=xt: K.softmax(x), lambda x=xt: torch.softmax(x.double(), -1)
    for m, n, k in ((1, 65, 33), (130, 65, 33), (512, 512, 512), (1000, 4097, 256)):
        a, b_ = torch.randn(m, k, **d), torch.randn(k, n, **d)
        yield "matmul", f"{m}x{n}x{k}", lambda a=a, b=b_: K.matmul(a, b), lambda a=a, b=b_: a.double() @ b.double()
        bb = K.matmul.bind((a, b_))
        cfg = bb.config.replace(indexing="tensor_descriptor", pid_type="persistent_interleaved")
        yield "matmul(tma,persistent)", f"{m}x{n}x{k}", lambda a=a, b=b_, bb=bb, c=cfg: bb.run(c, a, b), \
            lambda a=a, b=b_: a.double() @ b.double()


@triton.jit
def _bare_add(x, y, out, n, BLOCK: tl.constexpr):
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = off < n
    tl.store(out + off, tl.load(x + off, mask=m) + tl.load(y + off, mask=m), mask=m)


def us_per_call(fn, n=2000):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e6


@helion.kernel()
def _add_into(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    for tile in hl.tile(x.size(0)):
        out[tile] = x[tile] + y[tile]
    return out


@helion.kernel()
def _add_alloc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile in hl.tile(x.size(0)):
        out[tile] = x[tile] + y[tile]
    return out


def dispatch():
    """Same work for each row: the first two rows differ from the bare launch only by our
    runtime (and, for the second, the host code's own torch.empty_like)."""
    x = torch.randn(16, device="cuda")
    out = torch.empty_like(x)
    rows = [("helion_ops.dsl kernel writing into out (runtime + launch)", us_per_call(lambda: _add_into(x, x, out))),
            ("helion_ops.dsl kernel with out = torch.empty_like(x)", us_per_call(lambda: _add_alloc(x, x))),
            ("helion_ops.dsl broadcasting add (host: broadcast_tensors, promote_types, empty)",
             us_per_call(lambda: K.add(x, x))),
            ("bare Triton kernel[grid] writing into out", us_per_call(lambda: _bare_add[(1,)](x, x, out, 16, BLOCK=16))),
            ("torch.empty_like(x) alone", us_per_call(lambda: torch.empty_like(x))),
            ("torch eager add", us_per_call(lambda: torch.add(x, x)))]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines = [f"# DSL core on {torch.cuda.get_device_name()} ({datetime.date.today()}, torch {torch.__version__}, "
             f"triton {triton.__version__})", "", "| kernel | size | dtype | rel err | status |", "|---|---|---|---|---|"]
    fails = 0
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for name, size, fn, ref in cases(dtype):
            try:
                e = rel(fn(), ref())
                ok = e < TOL[dtype]
            except Exception as ex:  # report and go on: one broken case must not hide the rest
                e, ok = float("nan"), False
                print(f"{name} {size} {dtype}: {type(ex).__name__}: {str(ex)[:300]}", file=sys.stderr)
            fails += not ok
            lines.append(f"| {name} | {size} | {str(dtype).replace('torch.', '')} | {e:.2e} | {'ok' if ok else 'FAIL'} |")
    lines += ["", "Dispatch overhead, 16-element add, µs per call (host-bound loop, same run):", "",
              "| what | µs/call |", "|---|---|"]
    lines += [f"| {w} | {u:.1f} |" for w, u in dispatch()]
    text = "\n".join(lines) + f"\n\n{fails} failures\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
