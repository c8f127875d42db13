"""Benchmark spec: Softmax over the last dim of (M, N) rows (docs/CONTRACTS.md §1)."""
from __future__ import annotations

import torch

from bench.specs import element_size
from helion_ops.ops.softmax import softmax

NAME = "softmax"
METRIC = "GB/s"
# Llama-like (M, N), each input <= 1 GiB in bf16; N=1000 and 4097 are the awkward (non power of two) rows.
SHAPES = [(m, n) for m in (4096, 16384, 32768) for n in (1000, 4096, 5120, 8192, 32000, 128256)
          if m * n * 2 <= 2**30] + [(4096, 4097)]
SMALL_SHAPES = [(3, 1), (5, 17), (4, 1000), (2, 4097)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_INPUTS = (0,)
BASELINES: dict = {}


def make_inputs(shape, dtype, device):
    """One random (M, N) matrix."""
    return (torch.randn(shape, dtype=dtype, device=device),)


def impl(x):
    return softmax(x, dim=-1)


def eager(x):
    return torch.softmax(x, dim=-1)


def reference(x):
    """fp64 softmax, returned in fp32."""
    return torch.softmax(x.double(), dim=-1).float()



def work(shape, dtype) -> float:
    """One read of x and one write of out."""
    m, n = shape[:2]
    return 2.0 * m * n * element_size(dtype)


def backward_work(shape, dtype) -> float:
    """Read y and dy, write dx."""
    m, n = shape[:2]
    return 3.0 * m * n * element_size(dtype)
