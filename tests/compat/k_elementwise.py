"""Compat kernels: elementwise and gather classes (exp, add, swiglu, geglu, rope, embedding,
concatenate, dropout). Written in Helion's language; only the imports differ from Helion."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl


@helion.kernel()
def exp_fwd(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for t in hl.tile(x.size()):
        out[t] = torch.exp(x[t])
    return out


@helion.kernel(static_shapes=True)
def scale_shift(x: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
    """Scalar-tensor arithmetic with host floats and a reversed operand order."""
    out = x.new_empty(x.shape)
    for ti, tj in hl.tile([x.size(0), x.size(1)]):
        v = x[ti, tj].float()
        out[ti, tj] = (2.0 - v * scale) / (1 + shift)
    return out


@helion.kernel()
def swiglu_fwd(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    flat_g, flat_u = gate.view(-1), up.view(-1)
    out = torch.empty_like(gate)
    flat_o = out.view(-1)
    for t in hl.tile(gate.numel()):
        g = flat_g[t].to(torch.float32)
        flat_o[t] = (F.silu(g) * flat_u[t].float()).to(out.dtype)
    return out


@helion.kernel()
def geglu_fwd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(a, dtype=torch.promote_types(a.dtype, b.dtype))
    rows, cols = a.shape
    for tr, tc in hl.tile([rows, cols]):
        av = a[tr, tc].float()
        gelu = F.gelu(av, approximate="tanh")
        out[tr, tc] = gelu.to(b.dtype) * b[tr, tc]
    return out


@helion.kernel()
def geglu_manual(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GELU(tanh) spelled out with torch.tanh, as hand-written kernels do."""
    out = torch.empty_like(a)
    a_flat, b_flat, out_flat = a.reshape(-1), b.reshape(-1), out.view(-1)
    for t in hl.tile(a.numel()):
        x = a_flat[t].float()
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        y = 0.5 * x * (1.0 + torch.tanh(inner))
        out_flat[t] = y.to(a.dtype) * b_flat[t]
    return out


@helion.kernel()
def rope_fwd(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on [tokens, heads, dim]: rotate halves of the head dim."""
    n_tok, n_head, dim = q.shape
    half = hl.specialize(dim // 2)
    out = torch.empty_like(q)
    for tt, th in hl.tile([n_tok, n_head]):
        x1 = hl.load(q, [tt, th, hl.arange(half)]).float()
        x2 = hl.load(q, [tt, th, hl.arange(half) + half]).float()
        c = cos[tt, :][:, None, :].float()
        s = sin[tt, :][:, None, :].float()
        hl.store(out, [tt, th, hl.arange(half)], (x1 * c - x2 * s).to(q.dtype))
        hl.store(out, [tt, th, hl.arange(half) + half], (x2 * c + x1 * s).to(q.dtype))
    return out


@helion.kernel()
def embedding_fwd(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    flat = ids.reshape(-1)
    _, dim = table.size()
    out = torch.empty([flat.size(0), dim], dtype=table.dtype, device=table.device)
    for tb, td in hl.tile([flat.size(0), dim]):
        out[tb, td] = table[flat[tb], td]
    return out.view(*ids.size(), dim)


@helion.kernel()
def concat_cols(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    assert x.size(0) == y.size(0)
    nx = x.size(1)
    out = torch.empty([x.size(0), nx + y.size(1)], dtype=x.dtype, device=x.device)
    for tr, tc in hl.tile(out.size()):
        cols = hl.tile_index(tc)
        left = (cols < nx)[None, :]
        xa = hl.load(x, [tr, tc], extra_mask=left)
        ya = hl.load(y, [tr, cols - nx], extra_mask=(cols >= nx)[None, :])
        out[tr, tc] = torch.where(left, xa, ya)
    return out


@helion.kernel()
def dropout_seeded(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    out = torch.empty_like(x)
    mask_out = torch.empty_like(x, dtype=torch.bool)
    for t in hl.tile(x.numel()):
        r = hl.rand([t], seed=seed)
        keep = r > p
        mask_out[t] = keep
        out[t] = torch.where(keep, x[t] / (1 - p), 0.0)
    return out, mask_out


@helion.kernel()
def dropout_rand_like(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.rand_like in device code (a fresh seed per call)."""
    out = torch.empty_like(x)
    keep_out = torch.empty_like(x, dtype=torch.bool)
    for tm, tn in hl.tile(x.size()):
        v = x[tm, tn]
        keep = torch.rand_like(v) > p
        keep_out[tm, tn] = keep
        out[tm, tn] = torch.where(keep, v / (1 - p), torch.zeros_like(v))
    return out, keep_out
