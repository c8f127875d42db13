"""Attention with an ``attn_mask``, and decode: the kernels behind ``helion_ops.attention(q, k, v,
attn_mask=...)`` and a single query against a long cache (the public function, its checks and its docs
are in ``attention.py``, whose plain-path kernels take no mask and are untouched; the packed
variable-length kernels, which share this module's device helpers, are in ``_attention_varlen.py``).

* ``attn_fwd_mask`` / ``attn_bwd_dkdv_mask`` / ``attn_bwd_dq_mask``: ``[B, H, S, D]`` inputs and a mask
  expanded (stride 0, never materialised) to ``[B, H, S_q, S_k]``, read tile by tile next to the scores.
  Boolean (True = attend) or additive (any float dtype, read in fp32), combinable with ``causal``
  (top-left, as SDPA's ``is_causal``).
* ``attn_fwd_split`` + ``attn_split_combine`` (flash-decoding): a few query rows (decode packs a GQA
  group's heads as rows) against long keys, split over the keys when the heads alone leave SMs idle;
  each split's output is normalised by its own max and sum, and the combine weighs them. The backward
  is the masked one's (an all-True [1, 1, 1, 1] mask stands in for none).

Scores are kept in natural units, ``s = q k^T * scale + mask``, and exponentiated as ``exp2((s - m) *
log2(e))``: folding log2(e) into the scale (as the plain kernels do) would overflow an additive mask of
``finfo(float32).min`` (what Hugging Face uses) to -inf, where SDPA gives a uniform row. The forward saves
the row max ``m`` and ``log2(l)`` apart (not their sum, which loses ``log(l)`` next to a huge ``m``), so the
backward's ``P = exp2((s - m) * log2e - log2(l))`` is exact for such rows too. A row that attends to no key
(every score -inf) gives a zero output and zero gradients (``m = +inf``), as FlashAttention; SDPA gives NaN
there for a boolean mask.

The backward's dK/dV loops carry masks, so they run unpipelined when causal (Triton 3.6 miscompiled a
pipelined causal dK/dV loop with partial blocks; see attention.py).
"""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _oplib as C
from helion_ops.dsl import Config
from helion_ops.errors import ArgumentTypeError, DeviceError, DtypeError, InputError, ShapeError

NAME = "attention"
LOG2E = 1.4426950408889634


def _block_cap(n: int) -> int:
    return max(16, min(256, helion.next_power_of_2(n)))


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

def _mask_scores(s, mb, additive: bool):
    """Scores with one mask tile applied (natural units; -inf where a boolean mask says False)."""
    if additive:
        return s + mb.to(torch.float32)
    return torch.where(mb, s, float("-inf"))


def _causal(s, tile_m, tile_n, off):
    """Query row r sees key c <= r + off (off = 0: SDPA's top-left; len_k - len_q: bottom-right)."""
    return torch.where(tile_m.index[:, None] + off >= tile_n.index[None, :], s, float("-inf"))


def _online(s, v_blk, m_i, l_i, acc):
    """One key block of the online softmax over natural-unit scores ``s``."""
    m_new = torch.maximum(m_i, torch.amax(s, dim=1))
    m_ref = torch.where(m_new == float("-inf"), 0.0, m_new)  # an all -inf row so far rescales against 0
    p = torch.exp2((s - m_ref[:, None]) * 1.4426950408889634)
    alpha = torch.exp2((m_i - m_ref) * 1.4426950408889634)
    l_i = l_i * alpha + torch.sum(p, dim=1)
    acc = hl.dot(p.to(v_blk.dtype), v_blk, acc=acc * alpha[:, None])
    return m_new, l_i, acc


def _finish(m_i, l_i, acc):
    """(output block, saved m, saved log2(l)); a row with no finite score: 0, m = +inf (P = 0 in backward)."""
    empty = l_i == 0.0
    o = acc / torch.where(empty, 1.0, l_i)[:, None]
    return o, torch.where(empty, float("inf"), m_i), torch.log2(torch.where(empty, 1.0, l_i))


def _grads(s, q_blk, k_blk, v_blk, do_blk, m_blk, ll_blk, dl_blk):
    """(P, dS) of one block from the saved statistics."""
    p = torch.exp2((s - m_blk[:, None]) * 1.4426950408889634 - ll_blk[:, None])
    dp = hl.dot(do_blk, v_blk.T)
    return p, p * (dp - dl_blk[:, None])


@helion.kernel(static_shapes=True, replay_host=True)
def attn_fwd_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, causal: bool,
                  scale: float):
    """(out, m, log2 l) with a [B, H, S_q, S_k] (broadcast) mask."""
    b, h, s_q, d = q.size()
    h_kv = k.size(1)
    s_k = k.size(2)
    group = h // h_kv
    additive = mask.dtype != torch.bool
    out = torch.empty_like(q)
    mx = torch.empty([b, h, s_q], dtype=torch.float32, device=q.device)
    ll = torch.empty([b, h, s_q], dtype=torch.float32, device=q.device)
    block_m = hl.register_block_size(16, _block_cap(s_q))
    block_n = hl.register_block_size(16, _block_cap(s_k))
    for tile_m, tile_bh in hl.tile([s_q, b * h], block_size=[block_m, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        ikv = ih // group
        q_blk = q[ib, ih, tile_m, :]
        m_i = hl.full([tile_m], float("-inf"), dtype=torch.float32)
        l_i = hl.zeros([tile_m], dtype=torch.float32)
        acc = hl.zeros([tile_m, d], dtype=torch.float32)
        end_n = min(tile_m.end, s_k) if causal else s_k
        for tile_n in hl.tile(0, end_n, block_size=block_n):
            s = _mask_scores(hl.dot(q_blk, k[ib, ikv, tile_n, :].T) * scale, mask[ib, ih, tile_m, tile_n], additive)
            if causal:
                s = _causal(s, tile_m, tile_n, 0)
            m_i, l_i, acc = _online(s, v[ib, ikv, tile_n, :], m_i, l_i, acc)
        o, m_s, ll_s = _finish(m_i, l_i, acc)
        out[ib, ih, tile_m, :] = o
        mx[ib, ih, tile_m] = m_s
        ll[ib, ih, tile_m] = ll_s
    return out, mx, ll


@helion.kernel(static_shapes=True, replay_host=True)
def attn_bwd_dkdv_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dout: torch.Tensor,
                       mx: torch.Tensor, ll: torch.Tensor, delta: torch.Tensor, causal: bool, scale: float):
    """(dk, dv) with the mask; the GQA group's query heads are summed in-kernel."""
    b, h, s_q, d = q.size()
    h_kv = k.size(1)
    s_k = k.size(2)
    group = h // h_kv
    additive = mask.dtype != torch.bool
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    block_n = hl.register_block_size(16, _block_cap(s_k))
    block_m = hl.register_block_size(16, _block_cap(s_q))
    for tile_n, tile_bh in hl.tile([s_k, b * h_kv], block_size=[block_n, 1]):
        bh = tile_bh.begin
        ib = bh // h_kv
        ikv = bh % h_kv
        k_blk = k[ib, ikv, tile_n, :]
        v_blk = v[ib, ikv, tile_n, :]
        dk_acc = hl.zeros([tile_n, d], dtype=torch.float32)
        dv_acc = hl.zeros([tile_n, d], dtype=torch.float32)
        start_m = tile_n.begin if causal else 0
        for g in hl.grid(group):
            ih = ikv * group + g
            for tile_m in hl.tile(start_m, s_q, block_size=block_m):
                q_blk = q[ib, ih, tile_m, :]
                do_blk = dout[ib, ih, tile_m, :]
                s = _mask_scores(hl.dot(q_blk, k_blk.T) * scale, mask[ib, ih, tile_m, tile_n], additive)
                if causal:
                    s = _causal(s, tile_m, tile_n, 0)
                p, ds = _grads(s, q_blk, k_blk, v_blk, do_blk, mx[ib, ih, tile_m], ll[ib, ih, tile_m],
                               delta[ib, ih, tile_m])
                dv_acc = hl.dot(p.to(q.dtype).T, do_blk, acc=dv_acc)
                dk_acc = hl.dot(ds.to(q.dtype).T, q_blk, acc=dk_acc)
        dk[ib, ikv, tile_n, :] = dk_acc * scale
        dv[ib, ikv, tile_n, :] = dv_acc
    return dk, dv


@helion.kernel(static_shapes=True, replay_host=True)
def attn_bwd_dq_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dout: torch.Tensor,
                     mx: torch.Tensor, ll: torch.Tensor, delta: torch.Tensor, causal: bool,
                     scale: float) -> torch.Tensor:
    """dq with the mask."""
    b, h, s_q, d = q.size()
    h_kv = k.size(1)
    s_k = k.size(2)
    group = h // h_kv
    additive = mask.dtype != torch.bool
    dq = torch.empty_like(q)
    block_m = hl.register_block_size(16, _block_cap(s_q))
    block_n = hl.register_block_size(16, _block_cap(s_k))
    for tile_m, tile_bh in hl.tile([s_q, b * h], block_size=[block_m, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        ikv = ih // group
        q_blk = q[ib, ih, tile_m, :]
        do_blk = dout[ib, ih, tile_m, :]
        m_blk = mx[ib, ih, tile_m]
        ll_blk = ll[ib, ih, tile_m]
        dl_blk = delta[ib, ih, tile_m]
        dq_acc = hl.zeros([tile_m, d], dtype=torch.float32)
        end_n = min(tile_m.end, s_k) if causal else s_k
        for tile_n in hl.tile(0, end_n, block_size=block_n):
            k_blk = k[ib, ikv, tile_n, :]
            s = _mask_scores(hl.dot(q_blk, k_blk.T) * scale, mask[ib, ih, tile_m, tile_n], additive)
            if causal:
                s = _causal(s, tile_m, tile_n, 0)
            p, ds = _grads(s, q_blk, k_blk, v[ib, ikv, tile_n, :], do_blk, m_blk, ll_blk, dl_blk)
            dq_acc = hl.dot(ds.to(q.dtype), k_blk, acc=dq_acc)
        dq[ib, ih, tile_m, :] = dq_acc * scale
    return dq


@helion.kernel(static_shapes=True, replay_host=True)
def attn_fwd_split(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, n_split: int,
                   scale: float):
    """Decode, split over the keys (flash-decoding): per (query block, head, split), the normalised
    partial output over keys ``[split * chunk, (split + 1) * chunk)`` with its max ``m`` and sum ``l``."""
    b, h, s_q, d = q.size()
    h_kv = k.size(1)
    s_k = k.size(2)
    group = h // h_kv
    chunk = helion.cdiv(s_k, n_split)
    additive = mask.dtype != torch.bool
    o_part = torch.empty([b, h, s_q, n_split, d], dtype=torch.float32, device=q.device)
    m_part = torch.empty([b, h, s_q, n_split], dtype=torch.float32, device=q.device)
    l_part = torch.empty([b, h, s_q, n_split], dtype=torch.float32, device=q.device)
    block_m = hl.register_block_size(16, _block_cap(s_q))
    block_n = hl.register_block_size(16, _block_cap(chunk))
    for tile_m, tile_bh, tile_s in hl.tile([s_q, b * h, n_split], block_size=[block_m, 1, 1]):
        bh = tile_bh.begin
        sp = tile_s.begin
        ib = bh // h
        ih = bh % h
        ikv = ih // group
        q_blk = q[ib, ih, tile_m, :]
        m_i = hl.full([tile_m], float("-inf"), dtype=torch.float32)
        l_i = hl.zeros([tile_m], dtype=torch.float32)
        acc = hl.zeros([tile_m, d], dtype=torch.float32)
        for tile_n in hl.tile(sp * chunk, min(sp * chunk + chunk, s_k), block_size=block_n):
            s = _mask_scores(hl.dot(q_blk, k[ib, ikv, tile_n, :].T) * scale, mask[ib, ih, tile_m, tile_n], additive)
            m_i, l_i, acc = _online(s, v[ib, ikv, tile_n, :], m_i, l_i, acc)
        o_part[ib, ih, tile_m, sp, :] = acc / torch.where(l_i == 0.0, 1.0, l_i)[:, None]
        m_part[ib, ih, tile_m, sp] = m_i
        l_part[ib, ih, tile_m, sp] = l_i
    return o_part, m_part, l_part


@helion.kernel(static_shapes=True, replay_host=True)
def attn_split_combine(o_part: torch.Tensor, m_part: torch.Tensor, l_part: torch.Tensor, like: torch.Tensor):
    """(out in ``like``'s dtype, m, log2 l) from the splits: each weighted by ``l * exp(m - max m)``."""
    b, h, s_q, n_split, d = o_part.size()
    out = torch.empty([b, h, s_q, d], dtype=like.dtype, device=like.device)
    mx = torch.empty([b, h, s_q], dtype=torch.float32, device=like.device)
    ll = torch.empty([b, h, s_q], dtype=torch.float32, device=like.device)
    for tile_m, tile_bh in hl.tile([s_q, b * h], block_size=[None, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        mp = m_part[ib, ih, tile_m, :]
        m_all = torch.amax(mp, dim=1)
        m_ref = torch.where(m_all == float("-inf"), 0.0, m_all)
        w = l_part[ib, ih, tile_m, :] * torch.exp2((mp - m_ref[:, None]) * 1.4426950408889634)
        l_all = torch.sum(w, dim=1)
        o = torch.sum(o_part[ib, ih, tile_m, :, :] * w[:, :, None], dim=1)
        o_b, m_s, ll_s = _finish(m_all, l_all, o)
        out[ib, ih, tile_m, :] = o_b
        mx[ib, ih, tile_m] = m_s
        ll[ib, ih, tile_m] = ll_s
    return out, mx, ll


KERNELS = {"attn_fwd_mask": attn_fwd_mask, "attn_bwd_dkdv_mask": attn_bwd_dkdv_mask,
           "attn_bwd_dq_mask": attn_bwd_dq_mask, "attn_fwd_split": attn_fwd_split,
           "attn_split_combine": attn_split_combine}


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

def default_config(kernel: str, d: int, dtype: torch.dtype, causal: bool) -> Config:
    """The plain kernel's analytic default (``attention.default_config``) for the same role (masked and
    varlen kernels alike), except: the
    masked forward takes 64-key blocks (shared memory), dK/dV runs unpipelined when causal (its loops
    carry masks: see the module docstring). Sized by the sm_90 build (shared memory), not tuned on a GPU."""
    from helion_ops.ops import attention as A
    if kernel == "attn_split_combine":
        return Config(block_sizes=[16], num_warps=4, num_stages=1, indexing="pointer")
    if kernel == "attn_fwd_split":  # decode: memory-bound, a few query rows against long key chunks
        if dtype == torch.float32:
            return Config(block_sizes=[16, 32], num_warps=4, num_stages=2, indexing="pointer")
        return Config(block_sizes=[16, 128 if d <= 128 else 64], num_warps=4, num_stages=3, indexing="pointer")
    base = kernel.replace("_mask", "").replace("_varlen", "")
    cfg = A.default_config(base, d, dtype, causal=False)
    if kernel == "attn_fwd_mask" and dtype != torch.float32 and d <= 128:
        # the mask tile is pipelined with K and V: 128x128 x 3 stages needs 256-288 KiB of shared memory
        cfg = cfg.replace(block_sizes=[128, 64])
    if base == "attn_bwd_dkdv" and causal:
        cfg = cfg.replace(num_stages=1)
    return cfg


def kern(kernel, eager, qkc) -> C.Kern:
    """The Kern of DSL kernel ``kernel`` (this module's or the varlen one's); ``qkc(args)``: (q, rows, keys,
    causal) the config depends on (varlen: its max lengths)."""
    def default(args: tuple) -> Config:
        q, _, _, causal = qkc(args)
        return default_config(kernel.name, q.shape[-1], q.dtype, causal)

    def key(args: tuple) -> list[int]:
        q, rows, keys, causal = qkc(args)
        return [q.shape[0] * q.shape[1], rows, keys, q.shape[-1], 2 if causal else 1]
    return C.Kern(NAME, kernel, default, key=key, exact=(3, 4), eager=eager)


# ---------------------------------------------------------------------------------------------
# Eager twins (fallback, fake-free reference, higher-order gradients)
# ---------------------------------------------------------------------------------------------

def _eager_scores_mask(q, k, mask, causal: bool, scale: float, off: int = 0) -> torch.Tensor:
    """Natural-unit scores [B, H, S_q, S_k] with the mask and the causal band (row r sees c <= r + off)."""
    group = q.shape[1] // k.shape[1]
    kf = C.acc(k).repeat_interleave(group, 1) if group > 1 else C.acc(k)
    s = torch.matmul(C.acc(q), kf.transpose(-1, -2)) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.to(s.dtype)
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(off)
        s = s.masked_fill(~keep, float("-inf"))
    return s


def _eager_stats(s: torch.Tensor, vf: torch.Tensor, dtype: torch.dtype):
    """(out, m, log2 l) of natural-unit scores, with the kernels' convention for rows with no finite score."""
    m = s.amax(-1)
    empty = m == float("-inf")
    m = m.masked_fill(empty, float("inf"))
    p = torch.exp(s - m.masked_fill(empty, 0.0)[..., None])
    l = p.sum(-1)
    out = torch.matmul(p / l.masked_fill(empty, 1.0)[..., None], vf).to(dtype)
    return out, m.float(), torch.log2(l.masked_fill(empty, 1.0)).float()


def _eager_fwd_mask(q, k, v, mask, causal: bool, scale: float):
    group = q.shape[1] // k.shape[1]
    vf = C.acc(v).repeat_interleave(group, 1) if group > 1 else C.acc(v)
    return _eager_stats(_eager_scores_mask(q, k, mask, causal, scale), vf, q.dtype)


def _eager_bwd_mask(dout, q, k, v, mask, causal: bool, scale: float, off: int = 0):
    """(dq, dk, dv) with PyTorch (explicit formulas); GQA heads summed into their kv head."""
    from helion_ops.ops import attention as A
    return A._eager_backward_p(A._softmax0(_eager_scores_mask(q, k, mask, causal, scale, off)), dout, q, k, v, scale)


def _eager_split(q, k, v, mask, n_split: int, scale: float):
    """(o_part, m_part, l_part) as attn_fwd_split's: per key chunk, normalised output, raw max and sum."""
    s_k = k.shape[2]
    chunk = C.cdiv(s_k, n_split)
    group = q.shape[1] // k.shape[1]
    o, m, l = [], [], []
    for i in range(n_split):
        a, b = min(i * chunk, s_k), min(i * chunk + chunk, s_k)
        s = _eager_scores_mask(q, k[:, :, a:b], mask[..., a:b], False, scale) if b > a else None
        if s is None:
            o.append(C.acc(q).new_zeros(q.shape))
            m.append(C.acc(q).new_full(q.shape[:3], float("-inf")))
            l.append(C.acc(q).new_zeros(q.shape[:3]))
            continue
        mi = s.amax(-1)
        p = torch.exp(s - mi.masked_fill(mi == float("-inf"), 0.0)[..., None])
        li = p.sum(-1)
        vf = C.acc(v[:, :, a:b]).repeat_interleave(group, 1) if group > 1 else C.acc(v[:, :, a:b])
        o.append(torch.matmul(p, vf) / li.masked_fill(li == 0, 1.0)[..., None])
        m.append(mi)
        l.append(li)
    return torch.stack(o, 3).float(), torch.stack(m, 3).float(), torch.stack(l, 3).float()


def _eager_combine(o_part, m_part, l_part, like):
    m_all = m_part.amax(-1)
    w = l_part * torch.exp(m_part - m_all.masked_fill(m_all == float("-inf"), 0.0)[..., None])
    l_all = w.sum(-1)
    empty = l_all == 0
    out = (o_part * w[..., None]).sum(3) / l_all.masked_fill(empty, 1.0)[..., None]
    return out.to(like.dtype), m_all.masked_fill(empty, float("inf")), torch.log2(l_all.masked_fill(empty, 1.0))


def _qkc_mask(args):  # (q, k, v, mask, [dout, mx, ll, delta,] causal, scale)
    return args[0], args[0].shape[2], args[1].shape[2], args[-2]


_KERNS = {
    "attn_fwd_mask": kern(attn_fwd_mask, _eager_fwd_mask, _qkc_mask),
    "attn_bwd_dkdv_mask": kern(attn_bwd_dkdv_mask, lambda q, k, v, mask, do, mx, ll, dl, c, sc:
                               _eager_bwd_mask(do, q, k, v, mask, c, sc)[1:], _qkc_mask),
    "attn_bwd_dq_mask": kern(attn_bwd_dq_mask, lambda q, k, v, mask, do, mx, ll, dl, c, sc:
                             _eager_bwd_mask(do, q, k, v, mask, c, sc)[0], _qkc_mask),
    "attn_fwd_split": kern(attn_fwd_split, _eager_split, lambda a: (a[0], a[0].shape[2], a[1].shape[2], False)),
    "attn_split_combine": kern(attn_split_combine, _eager_combine,
                               lambda a: (a[0][:, :, :, 0], a[0].shape[2], a[0].shape[3], False)),
}


# ---------------------------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------------------------

def _expand(mask: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The (already 4-D) mask as a [B, H, S_q, S_k] view: stride 0 along broadcast dims, nothing copied."""
    return mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])


def _stats_like(q: torch.Tensor, *lead: int):
    shape = lead or tuple(q.shape[:3])
    return q.new_empty(shape, dtype=torch.float32), q.new_empty(shape, dtype=torch.float32)


def _fake_mask_fwd(q, k, v, mask, causal, scale):
    return (torch.empty_like(q), *_stats_like(q))


def _fake_bwd(dout, q, k, v, *rest):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


@C.op("attention_mask_bwd", fake=_fake_bwd)
def attention_mask_bwd_op(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          mask: torch.Tensor, out: torch.Tensor, mx: torch.Tensor, ll: torch.Tensor, causal: bool,
                          scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from helion_ops.ops import attention as A
    if q.numel() == 0 or k.shape[2] == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dout, q, k, v, out = (C.unit_last(t.to(q.dtype) if t is dout else t) for t in (dout, q, k, v, out))
    delta = A._KERNS["attn_bwd_preprocess"](out, dout)
    common = (q, k, v, _expand(mask, q, k), dout, mx, ll, delta, bool(causal), float(scale))
    dk, dv = _KERNS["attn_bwd_dkdv_mask"](*common)
    return _KERNS["attn_bwd_dq_mask"](*common), dk, dv


def _backward_mask(inputs, saved, needs, dout, _dm, _dll):
    q, k, v, mask, causal, scale = inputs
    return (*attention_mask_bwd_op(dout, q, k, v, mask, *saved, causal, scale), None, None, None)


def _eager_mask_op(q, k, v, mask, causal, scale):
    return _eager_fwd_mask(q, k, v, _expand(mask, q, k), causal, scale)


@C.op("attention_mask_fwd", eager=_eager_mask_op, fake=_fake_mask_fwd, backward=_backward_mask,
      save_outputs=(0, 1, 2))
def attention_mask_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, causal: bool,
                          scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out [B, H, S_q, D], row max m, log2 of the row sum) of validated inputs; ``mask`` 4-D, broadcastable."""
    if q.numel() == 0 or k.shape[2] == 0:  # SDPA: no keys -> zeros
        mx, ll = _stats_like(q)
        return torch.zeros_like(q), mx.fill_(float("inf")), ll.zero_()
    q, k, v = C.unit_last(q), C.unit_last(k), C.unit_last(v)
    return _KERNS["attn_fwd_mask"](q, k, v, _expand(mask, q, k), bool(causal), float(scale))


def decode_splits(b: int, h: int, rows: int, s_k: int) -> int:
    """Key splits for a decode problem of ``b * h`` heads of ``rows`` query rows: enough programs to fill
    the GPU twice over when ``b * h`` alone does not, each over at least 256 keys; a power of two (the
    kernel specialises on it). 1: the plain (or masked) kernel."""
    programs = b * h * C.cdiv(rows, 16)
    sms = C.num_sms()
    if s_k < 512 or programs >= sms:
        return 1
    n = min(C.cdiv(2 * sms, programs), s_k // 256, 64)
    return 1 << (n.bit_length() - 1)


def _backward_decode(inputs, saved, needs, dout, _dm, _dll):
    q, k, v, mask, n_split, scale = inputs
    return (*attention_mask_bwd_op(dout, q, k, v, mask, *saved, False, scale), None, None, None)


def _eager_decode_op(q, k, v, mask, n_split, scale):
    return _eager_fwd_mask(q, k, v, _expand(mask, q, k), False, scale)


def _fake_decode_fwd(q, k, v, mask, n_split, scale):
    return (torch.empty_like(q), *_stats_like(q))


@C.op("attention_decode_fwd", eager=_eager_decode_op, fake=_fake_decode_fwd, backward=_backward_decode,
      save_outputs=(0, 1, 2))
def attention_decode_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, n_split: int,
                            scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, m, log2 l) of a few query rows against long keys, split ``n_split`` ways over the keys and
    combined (its backward is the masked one's). ``mask`` 4-D, broadcastable (all-True [1, 1, 1, 1] for none)."""
    if q.numel() == 0 or k.shape[2] == 0:
        mx, ll = _stats_like(q)
        return torch.zeros_like(q), mx.fill_(float("inf")), ll.zero_()
    q, k, v = C.unit_last(q), C.unit_last(k), C.unit_last(v)
    parts = _KERNS["attn_fwd_split"](q, k, v, _expand(mask, q, k), int(n_split), float(scale))
    return _KERNS["attn_split_combine"](*parts, q)


def decode(q, k, v, mask, sc, plain):
    """One query per head against the cache: the G = H / H_kv query heads of a kv head become G rows of one
    [B, H_kv, G, D] problem (views, no copy), so each kv head's keys and values are read once; where that
    leaves the GPU short of programs, the keys are split too (``decode_splits``). ``plain``: the plain
    path's forward op (no mask, no split)."""
    b, h, _, d = q.shape
    h_kv, s_k = k.shape[1], k.shape[2]
    qp = q.reshape(b, h_kv, h // h_kv, d)
    mp = None if mask is None else mask.expand(b, h, 1, s_k).reshape(b, h_kv, h // h_kv, s_k)
    n_split = decode_splits(b, h_kv, h // h_kv, s_k)
    if n_split > 1:
        if mp is None:
            mp = torch.ones((1, 1, 1, 1), dtype=torch.bool, device=q.device)
        out = attention_decode_fwd_op(qp, k, v, mp, n_split, sc)[0]
    elif mp is None:
        out = plain(qp, k, v, False, sc)[0]
    else:
        out = attention_mask_fwd_op(qp, k, v, mp, False, sc)[0]
    return C.unview(out, (b, h, 1, d))


def check_mask(q, k, mask) -> torch.Tensor:
    """``attn_mask`` as SDPA takes it, returned 4-D (size-1 dims where it broadcasts)."""
    if not isinstance(mask, torch.Tensor):
        raise ArgumentTypeError(f"attention(): argument 'attn_mask' must be a torch.Tensor or None, "
                                f"got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise DtypeError(f"attention(): argument 'attn_mask' has dtype {mask.dtype}; it must be bool (True = "
                         f"attend) or floating point (added to the scores)")
    if mask.device != q.device:
        raise DeviceError(f"attention(): argument 'attn_mask' is on {mask.device} but 'q' is on {q.device}")
    want = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask.dim() > 4 or any(m not in (1, w) for m, w in zip(mask.shape[::-1], want[::-1])):
        raise ShapeError(f"attention(): argument 'attn_mask' has shape {tuple(mask.shape)}, which does not "
                         f"broadcast to [B, H, S_q, S_k] = {list(want)}")
    if mask.requires_grad and torch.is_grad_enabled():
        raise InputError("attention(): argument 'attn_mask' requires grad; gradients with respect to the mask "
                         "are not supported (detach it, or use torch.nn.functional.scaled_dot_product_attention)")
    return mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape)) if mask.dim() < 4 else mask
