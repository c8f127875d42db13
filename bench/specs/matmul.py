"""Benchmark spec: matmul (M, N, K): Llama-3 projection shapes, squares and awkward sizes (docs/CONTRACTS.md §1)."""
from __future__ import annotations

import math

import torch

from helion_ops.ops.matmul import matmul

NAME = "matmul"
METRIC = "TFLOP/s"

# (M, N, K). Square sizes, Llama-3 8B/70B projection shapes (N, K) for several token counts M,
# and awkward sizes.
SHAPES: list[tuple] = [
    (1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192),
    # Llama-3 8B: qkv/o (4096, 4096), up/gate (14336, 4096), down (4096, 14336)
    (1, 4096, 4096), (16, 14336, 4096), (128, 4096, 14336),
    (1024, 14336, 4096), (4096, 4096, 14336), (4096, 14336, 4096), (16384, 4096, 4096),
    # Llama-3 70B: qkv/o (8192, 8192), up/gate (28672, 8192), down (8192, 28672)
    (1, 8192, 8192), (16, 28672, 8192), (128, 8192, 8192), (1024, 8192, 28672),
    (4096, 28672, 8192), (16384, 8192, 8192),
    # awkward
    (4000, 4000, 4000), (4097, 4097, 4097),
]
SMALL_SHAPES: list[tuple] = [(1, 65, 33), (17, 65, 33), (130, 65, 33)]

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
GRAD_INPUTS = (0, 1)


def make_inputs(shape: tuple, dtype: torch.dtype, device) -> tuple:
    m, n, k = shape[:3]
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device) / math.sqrt(k)
    return a, b


def impl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return matmul(a, b)


def eager(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.matmul(a, b)


BASELINES = {"cublas": torch.matmul}


def reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.device.type == "cpu":
        return torch.matmul(a.double(), b.double()).float()
    return torch.matmul(a.float(), b.float())


def work(shape: tuple, dtype) -> float:
    m, n, k = shape[:3]
    return 2.0 * m * n * k


def backward_work(shape: tuple, dtype) -> float:
    m, n, k = shape[:3]
    return 4.0 * m * n * k
