"""Benchmark spec: RMSNorm of (M, N) rows with a weight (docs/CONTRACTS.md §1)."""
from __future__ import annotations

import torch

from bench.specs import element_size
from helion_ops.ops.rms_norm import rms_norm

NAME = "rms_norm"
METRIC = "GB/s"
SHAPES = [(m, n) for m in (4096, 16384, 32768) for n in (1000, 4096, 5120, 8192)] + [(4096, 4097)]
SMALL_SHAPES = [(3, 1), (5, 17), (4, 1000), (2, 4097)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_INPUTS = (0, 1)
BASELINES: dict = {}


def make_inputs(shape, dtype, device):
    """x (M, N) and weight (N,)."""
    m, n = shape[:2]
    x = torch.randn((m, n), dtype=dtype, device=device)
    w = (1.0 + 0.1 * torch.randn((n,), device=device)).to(dtype)
    return x, w


def impl(x, weight):
    return rms_norm(x, (x.shape[-1],), weight, 1e-6)


def eager(x, weight):
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, 1e-6)


def reference(x, weight):
    """fp64 RMSNorm, returned in fp32."""
    xd = x.double()
    y = xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.double()
    return y.float()



def work(shape, dtype) -> float:
    """Read x and weight, write out."""
    m, n = shape[:2]
    return (2.0 * m * n + n) * element_size(dtype)


def backward_work(shape, dtype) -> float:
    """Read x, dy, weight and rstd; write dx and dweight."""
    m, n = shape[:2]
    return (3.0 * m * n + 2 * n) * element_size(dtype) + 4.0 * m
