"""Benchmark spec: grouped_gemm (G, M_total, N, K): MoE expert shapes (docs/CONTRACTS.md §1)."""
from __future__ import annotations

import math

import torch

from helion_ops.ops.grouped_gemm import grouped_gemm

NAME = "grouped_gemm"
METRIC = "TFLOP/s"

# (G, M_total, N, K): MoE expert shapes (Mixtral/DeepSeek/Llama-like d_model and expert widths).
SHAPES: list[tuple] = [
    (8, 8192, 4096, 4096), (8, 16384, 14336, 4096), (8, 16384, 4096, 14336),
    (16, 32768, 2048, 4096), (16, 16384, 4096, 2048),
    (64, 65536, 1408, 2048), (64, 65536, 2048, 1408), (64, 32768, 1024, 1024),
]
SMALL_SHAPES: list[tuple] = [(4, 62, 65, 33), (3, 17, 65, 33), (5, 130, 65, 33)]

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
GRAD_INPUTS = (0, 1)


def group_sizes(g: int, m_total: int, seed: int = 0) -> list[int]:
    """Deterministic, unequal group sizes summing to m_total, with one empty group (when g > 1)."""
    gen = torch.Generator().manual_seed(seed * 1000003 + g * 7919 + m_total)
    p = torch.rand(g, generator=gen, dtype=torch.float64) + 0.25
    if g > 1:
        p[g // 2] = 0.0
    sizes = torch.floor(p / p.sum() * m_total).to(torch.int64)
    sizes[0] += m_total - int(sizes.sum())
    return [int(s) for s in sizes]


def make_inputs(shape: tuple, dtype: torch.dtype, device) -> tuple:
    g, m_total, n, k = shape[:4]
    x = torch.randn(m_total, k, dtype=dtype, device=device)
    w = torch.randn(g, k, n, dtype=dtype, device=device) / math.sqrt(k)
    sizes = group_sizes(g, m_total)
    offsets = torch.tensor(sizes, dtype=torch.int64).cumsum(0).to(device=device, dtype=torch.int32)
    return x, w, offsets


def impl(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return grouped_gemm(x, w, offsets, validate=False)


def _loop(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor, dtype=None) -> torch.Tensor:
    """A Python loop of torch.mm per group (differentiable when x or w requires grad)."""
    ends = offsets.tolist()
    if dtype is not None:
        x, w = x.to(dtype), w.to(dtype)
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        starts = [0] + ends[:-1]
        return torch.cat([x[s:e] @ w[g] for g, (s, e) in enumerate(zip(starts, ends))])
    out = x.new_empty((x.shape[0], w.shape[2]))
    start = 0
    for g, end in enumerate(ends):
        if end > start:
            torch.mm(x[start:end], w[g], out=out[start:end])
        start = end
    return out


def eager(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return _loop(x, w, offsets)


def _grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return torch._grouped_mm(x, w, offs=offsets)


BASELINES = {"loop_cublas": _loop}
if hasattr(torch, "_grouped_mm"):
    BASELINES = {"grouped_mm": _grouped_mm, **BASELINES}


def reference(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return _loop(x, w, offsets, dtype=torch.float64 if x.device.type == "cpu" else torch.float32).float()


def work(shape: tuple, dtype) -> float:
    g, m_total, n, k = shape[:4]
    return 2.0 * m_total * n * k


def backward_work(shape: tuple, dtype) -> float:
    g, m_total, n, k = shape[:4]
    return 4.0 * m_total * n * k
