"""Compat kernels: matmul classes (split-k with atomics, bmm/baddbmm, squeeze-and-excitation,
matmul with an epilogue, fp16 gemm, int8 gemm-like integer math)."""
from __future__ import annotations

import math
from typing import Callable

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl.autotuner import PowerOfTwoFragment


@helion.kernel(static_shapes=True)
def matmul_split_k(x: torch.Tensor, y: torch.Tensor,
                   epilogue: Callable = lambda acc, tile: acc) -> torch.Tensor:
    m, k = x.size()
    k2, n = y.size()
    assert k == k2
    out = torch.zeros([m, n], dtype=torch.float32, device=x.device)
    split = hl.register_tunable("split_k", PowerOfTwoFragment(1, 64, 2))
    kb = helion.next_power_of_2(helion.cdiv(k, split))
    for tm, tn, tk_outer in hl.tile([m, n, k], block_size=[None, None, kb]):
        acc = hl.zeros([tm, tn], dtype=torch.float32)
        for tk in hl.tile(tk_outer.begin, tk_outer.end):
            acc = torch.addmm(acc, x[tm, tk], y[tk, tn])
        if tk_outer.begin == 0:
            acc = epilogue(acc, [tm, tn])
        hl.atomic_add(out, [tm, tn], acc)
    return out


@helion.kernel(static_shapes=True)
def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    nb, m, k = a.size()
    nb, k, n = b.size()
    out = torch.empty([nb, m, n], device=a.device, dtype=torch.promote_types(a.dtype, b.dtype))
    for tb, tm, tn in hl.tile([nb, m, n]):
        acc = hl.zeros([tb, tm, tn], dtype=torch.float32)
        for tk in hl.tile(k):
            acc = torch.baddbmm(acc, a[tb, tm, tk], b[tb, tk, tn])
        out[tb, tm, tn] = acc
    return out


@helion.kernel(static_shapes=True)
def bmm_grid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """hl.grid over the batch mixed with tiles, torch.bmm on 3-D tiles of one batch."""
    nb, m, k = a.size()
    _, _, n = b.size()
    out = torch.empty([nb, m, n], device=a.device, dtype=a.dtype)
    for bi in hl.grid(nb):
        for tm, tn in hl.tile([m, n]):
            acc = hl.zeros([tm, tn], dtype=torch.float32)
            for tk in hl.tile(k):
                acc = acc + torch.matmul(a[bi, tm, tk], b[bi, tk, tn]).float()
            out[bi, tm, tn] = acc.to(a.dtype)
    return out


@helion.kernel(static_shapes=True)
def se_net_fwd(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m, n = x.size()
    k = a.size(1)
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    c = torch.empty([m, k], dtype=x.dtype, device=x.device)
    d = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tm in hl.tile(m):
        for tk in hl.tile(k):
            c[tm, tk] = torch.relu(x[tm, :] @ a[:, tk])
        for tn in hl.tile(n):
            acc = hl.zeros([tm, tn], dtype=torch.float32)
            for tk in hl.tile(k):
                acc = torch.addmm(acc, c[tm, tk], b[tk, tn])
            d[tm, tn] = torch.sigmoid(acc.to(x.dtype))
            out[tm, tn] = x[tm, tn] * d[tm, tn]
    return out, c, d


@helion.kernel(static_shapes=True)
def se_net_bwd_db(grad_out: torch.Tensor, x: torch.Tensor, d: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Several top-level loops with a barrier between them; a transposed matmul operand."""
    m, n = grad_out.size()
    k = c.size(1)
    g = torch.empty([m, n], dtype=torch.float32, device=x.device)
    grad_b = torch.empty([k, n], dtype=grad_out.dtype, device=grad_out.device)
    for pm, pn in hl.tile((m, n)):
        g[pm, pn] = grad_out[pm, pn].float() * x[pm, pn] * d[pm, pn] * (1.0 - d[pm, pn])
    hl.barrier()
    for tk, tn in hl.tile([k, n]):
        acc = hl.zeros([tk, tn], dtype=torch.float32)
        for tm in hl.tile(m):
            acc = torch.addmm(acc, c[tm, tk].T.float(), g[tm, tn])
        grad_b[tk, tn] = acc
    return grad_b


@helion.kernel(config=helion.Config(block_sizes=[16, 16, 16]))
def matmul_bias_relu(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    m, k = x.shape
    _, n = w.shape
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tm, tn in hl.tile([m, n]):
        acc = hl.zeros([tm, tn], dtype=torch.float32)
        for tk in hl.tile(k):
            acc = hl.dot(x[tm, tk], w[tk, tn], acc=acc)
        out[tm, tn] = torch.relu(acc + bias[tn]).to(out.dtype)
    return out


@helion.kernel()
def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int8 x int8 -> int32 accumulation (integer tensors through hl.dot)."""
    m, k = a.shape
    _, n = b.shape
    out = torch.empty([m, n], dtype=torch.int32, device=a.device)
    for tm, tn in hl.tile([m, n]):
        acc = hl.zeros([tm, tn], dtype=torch.int32)
        for tk in hl.tile(k):
            acc = hl.dot(a[tm, tk], b[tk, tn], acc=acc)
        out[tm, tn] = acc
    return out


@helion.kernel(static_shapes=True)
def attention(q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Online-softmax attention over [batch*heads] with exp2, torch.bmm(..., out_dtype) and an optional causal mask."""
    m_len, d = q_in.size(-2), hl.specialize(q_in.size(-1))
    n_len = k_in.size(-2)
    q_all = q_in.reshape([-1, m_len, d])
    k_all = k_in.reshape([-1, n_len, d])
    v_all = v_in.reshape([-1, n_len, d])
    out = torch.empty_like(q_all)
    scale = 1.0 / math.sqrt(d) * 1.44269504
    for tb, tm in hl.tile([q_all.size(0), m_len]):
        row_max = hl.full([tb, tm], float("-inf"), dtype=torch.float32)
        denom = torch.full_like(row_max, 1.0)
        acc = hl.zeros([tb, tm, d], dtype=torch.float32)
        q = q_all[tb, tm, :]
        for tn in hl.tile(n_len):
            s = torch.bmm(q * scale, k_all[tb, tn, :].transpose(1, 2), torch.float32)
            if causal:
                s = torch.where(tm.index[None, :, None] >= tn.index[None, None, :], s, float("-inf"))
            new_max = torch.maximum(row_max, torch.amax(s, -1))
            p = torch.exp2(s - new_max[:, :, None])
            alpha = torch.exp2(row_max - new_max)
            denom = denom * alpha + torch.sum(p, -1)
            acc = torch.baddbmm(acc * alpha[:, :, None], p.to(v_all.dtype), v_all[tb, tn, :])
            row_max = new_max
        out[tb, tm, :] = (acc / denom[:, :, None]).to(out.dtype)
    return out.view(q_in.size())


def split_k_with_bias(x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The epilogue lambda closes over a tensor: it reaches the device loop as a launcher value."""
    return matmul_split_k(x, y, epilogue=lambda acc, tile: acc + bias[tile[1]])


@helion.kernel(static_shapes=True)
def int4_matmul(a: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ unpack(packed [K/2, N] int8: two signed 4-bit values per byte, low nibble = even row).
    Reads a's columns with a device-started slice ``a[tm, k0 : k0 + 2 * bk]``, unpacks with
    torch.stack + a reshape that merges the packed tile into plain lanes, then hl.dot."""
    m, k = a.size()
    kp, n = packed.size()
    out = torch.empty([m, n], dtype=a.dtype, device=a.device)
    bk = hl.register_block_size(kp)
    for tm, tn in hl.tile([m, n]):
        acc = hl.zeros([tm, tn], dtype=torch.float32)
        for tk in hl.tile(kp, block_size=bk):
            k0 = tk.begin * 2
            x = a[tm, k0 : k0 + bk * 2]
            p = packed[tk, tn].to(torch.int32)
            lo = torch.where((p & 15) >= 8, (p & 15) - 16, p & 15)
            hi = p >> 4
            w = torch.stack([lo.to(a.dtype), hi.to(a.dtype)], dim=1).reshape(tk.block_size * 2, tn.block_size)
            acc = hl.dot(x, w, acc=acc)
        out[tm, tn] = acc.to(a.dtype)
    return out
