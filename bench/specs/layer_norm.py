"""Benchmark spec: LayerNorm of (M, N) rows with weight and bias (docs/CONTRACTS.md §1)."""
from __future__ import annotations

import torch

from bench.specs import element_size
from helion_ops.ops.layer_norm import layer_norm

NAME = "layer_norm"
METRIC = "GB/s"
SHAPES = [(m, n) for m in (4096, 16384, 32768) for n in (1000, 4096, 5120, 8192)] + [(4096, 4097)]
SMALL_SHAPES = [(3, 1), (5, 17), (4, 1000), (2, 4097)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_INPUTS = (0, 1, 2)
BASELINES: dict = {}


def make_inputs(shape, dtype, device):
    """x (M, N), weight (N,), bias (N,)."""
    m, n = shape[:2]
    x = torch.randn((m, n), dtype=dtype, device=device)
    w = (1.0 + 0.1 * torch.randn((n,), device=device)).to(dtype)
    b = (0.1 * torch.randn((n,), device=device)).to(dtype)
    return x, w, b


def impl(x, weight, bias):
    return layer_norm(x, (x.shape[-1],), weight, bias, 1e-5)


def eager(x, weight, bias):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, bias, 1e-5)


def reference(x, weight, bias):
    """fp64 LayerNorm, returned in fp32."""
    return torch.nn.functional.layer_norm(x.double(), (x.shape[-1],), weight.double(), bias.double(),
                                          1e-5).float()



def work(shape, dtype) -> float:
    """Read x, weight and bias; write out."""
    m, n = shape[:2]
    return (2.0 * m * n + 2 * n) * element_size(dtype)


def backward_work(shape, dtype) -> float:
    """Read x, dy, weight, mean and rstd; write dx, dweight and dbias."""
    m, n = shape[:2]
    return (3.0 * m * n + 3 * n) * element_size(dtype) + 8.0 * m
