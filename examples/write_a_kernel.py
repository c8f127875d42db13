"""Write a kernel of your own in the Helion language, read the Triton it becomes, tune it and run it.

The kernel fuses a residual add with an RMSNorm, a pair that eager PyTorch runs as several kernels:
``h = x + residual`` (also returned, as the next residual) and ``y = h / sqrt(mean(h**2) + eps) * w``.

    python examples/write_a_kernel.py            # on a GPU: 8192 x 4096 bf16, tuned (quick search)
    python examples/write_a_kernel.py --tiny     # tiny sizes, no tuning; the default without a GPU

Without a GPU the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set here) in fp32, and
the script shows the default Config and the space a tuner would search instead of tuning.
"""
from __future__ import annotations

import argparse
import os

import torch

INTERPRET = not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"  # before any Triton kernel is created

import helion_ops.dsl as helion  # noqa: E402  (where Helion code has `import helion`)
import helion_ops.dsl.language as hl  # noqa: E402


@helion.kernel()
def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = x.size()
    y = torch.empty_like(x)
    h_out = torch.empty_like(x)
    for tile_m in hl.tile(m):                      # the launch grid: one program per block of rows
        h = x[tile_m, :].to(torch.float32) + residual[tile_m, :].to(torch.float32)
        h_out[tile_m, :] = h.to(x.dtype)
        rstd = torch.rsqrt(torch.mean(h * h, dim=1, keepdim=True) + eps)
        y[tile_m, :] = (h * rstd * weight[:].to(torch.float32)).to(x.dtype)
    return y, h_out


def reference(x, residual, weight, eps):
    h = x.float() + residual.float()
    return torch.nn.functional.rms_norm(h, (h.shape[1],), weight.float(), eps), h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the default without a GPU)")
    args = parser.parse_args()
    device = "cpu" if INTERPRET else "cuda"
    dtype = torch.float32 if INTERPRET else torch.bfloat16  # the interpreter gets bf16 arithmetic wrong
    m, n = (19, 300) if args.tiny or INTERPRET else (8192, 4096)
    x, residual = (torch.randn(m, n, device=device, dtype=dtype) for _ in range(2))
    weight = torch.randn(n, device=device, dtype=dtype)
    args_ = (x, residual, weight, 1e-6)

    bound = add_rms_norm.bind(args_)               # specialised on dtypes, shapes and strides
    if INTERPRET:
        config = bound.default_config()            # tuning times real launches: GPU only
        print("default config:", config)
        print("the space a tuner searches:", bound.config_space)
    else:
        config = add_rms_norm.autotune(args_, effort="quick")  # cached on disk for later runs
        print("tuned config:", config)
    print("---- generated Triton " + "-" * 50)
    print(bound.to_triton_code(config))
    print("-" * 72)

    y, h = bound.run(config, *args_)               # the kernel with that config (compiled on first use)
    y_ref, h_ref = reference(*args_)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(y.float(), y_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(h.float(), h_ref, atol=tol, rtol=tol)
    print(f"add_rms_norm {m}x{n} {dtype}: matches torch")
    if not INTERPRET:
        import triton
        ms = triton.testing.do_bench(lambda: bound.run(config, *args_))
        eager_ms = triton.testing.do_bench(lambda: reference(*args_))
        print(f"{ms * 1e3:.1f} us; the eager reference (fp32 math) {eager_ms * 1e3:.1f} us")


if __name__ == "__main__":
    main()
