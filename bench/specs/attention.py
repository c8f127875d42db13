"""Benchmark spec: attention (B, H, S, D, causal[, H_kv[, S_k]]): FlashAttention's benchmark shapes (docs/CONTRACTS.md §1)."""
from __future__ import annotations

import math

import torch

import torch.nn.functional as F

from helion_ops.ops.attention import attention

NAME = "attention"
METRIC = "TFLOP/s"

# (B, H, S, D, causal): D=128, B*S = 16K tokens, H=16 (B*H*S = 256K rows of q), as FlashAttention benchmarks.
SHAPES: list[tuple] = [(16384 // s, 16, s, 128, c) for c in (False, True)
                       for s in (1024, 2048, 4096, 8192, 16384)]
# interpreter shapes; optional 6th and 7th entries: H_kv (grouped-query attention) and S_k (keys, when
# not S). The S=1 query attends 17 keys: with one key the exact dQ/dK are 0 and a relative error is void.
SMALL_SHAPES: list[tuple] = [(1, 2, 1, 64, False, 2, 17), (1, 2, 17, 64, True), (2, 1, 17, 128, False),
                             (1, 1, 130, 64, True), (1, 4, 17, 64, True, 2)]

TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
GRAD_INPUTS = (0, 1, 2)


def _unpack(shape: tuple) -> tuple[int, int, int, int, int, int, bool]:
    """(B, H, H_kv, S_q, S_k, D, causal) of a shape tuple (B, H, S, D, causal[, H_kv[, S_k]])."""
    b, h, s, d, causal = shape[:5]
    h_kv = shape[5] if len(shape) > 5 else h
    s_k = shape[6] if len(shape) > 6 else s
    return b, h, h_kv, s, s_k, d, bool(causal)


def make_inputs(shape, dtype, device):
    """(q, k, v, causal): standard normal q [B, H, S, D] and k, v [B, H_kv, S_k, D]."""
    b, h, h_kv, s, s_k, d, causal = _unpack(shape)
    q = torch.randn(b, h, s, d, dtype=dtype, device=device)
    k = torch.randn(b, h_kv, s_k, d, dtype=dtype, device=device)
    v = torch.randn(b, h_kv, s_k, d, dtype=dtype, device=device)
    return q, k, v, causal


def impl(q, k, v, causal):
    return attention(q, k, v, causal)


def eager(q, k, v, causal):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=k.shape[1] != q.shape[1])


def _sdpa_backend(backend):
    def fn(q, k, v, causal):
        from torch.nn.attention import sdpa_kernel
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    fn.__name__ = f"sdpa_{backend.name.lower()}"
    return fn


def _baselines() -> dict:
    try:
        from torch.nn.attention import SDPBackend
    except ImportError:  # pragma: no cover
        return {}
    return {"cudnn": _sdpa_backend(SDPBackend.CUDNN_ATTENTION), "flash": _sdpa_backend(SDPBackend.FLASH_ATTENTION)}


BASELINES: dict = _baselines()


def reference(q, k, v, causal):
    """fp32 attention, returned in fp32: explicit math (fp32 matmuls, no TF32) when the score matrix
    fits in 1 GiB, else SDPA on fp32 inputs (memory-efficient kernel, fp32 arithmetic)."""
    q, k, v = q.float(), k.float(), v.float()
    b, h, s_q, d = q.shape
    s_k = k.shape[2]
    if b * h * s_q * s_k <= 2**28:
        return _math_attention(q, k, v, causal, 1.0 / math.sqrt(d))
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=k.shape[1] != h)


def _math_attention(q, k, v, causal: bool, scale: float):
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if causal:
        s_q, s_k = q.shape[2], k.shape[2]
        keep = torch.ones(s_q, s_k, dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def work(shape, dtype) -> float:
    """Forward FLOPs: QK^T and PV, 2 * 2 * B * H * S_q * S_k * D (S_q = S_k = S for SHAPES); halved when
    causal (as FlashAttention counts)."""
    b, h, _, s, s_k, d, causal = _unpack(shape)
    f = 4.0 * b * h * s * s_k * d
    return f / 2 if causal else f


def backward_work(shape, dtype) -> float:
    """Backward FLOPs: five S x S x D matmuls (QK^T recomputed, dV, dP, dQ, dK) = 2.5x the forward's
    two, i.e. 10 * B * H * S^2 * D (halved when causal)."""
    return 2.5 * work(shape, dtype)
