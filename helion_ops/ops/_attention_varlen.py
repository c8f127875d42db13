"""Attention over packed variable-length sequences (FlashAttention's varlen API): the kernels behind
``helion_ops.attention(q, k, v, cu_seqlens_q=..., cu_seqlens_k=...)`` (the public function and its docs
are in ``attention.py``; the device helpers, configs and numerics are ``_attention_masked.py``'s).

q ``[total_q, H, D]``, k/v ``[total_k, H_kv, D]`` are viewed as ``[1, H, total, D]`` (no copy). One program
per (query block of a sequence, sequence * head) (dK/dV: key block); a sequence's rows are ``cu_seqlens[i] :
cu_seqlens[i + 1]``, read through an inner tile loop over exactly that range (at most one iteration,
masked at the sequence's end), so no program reads or writes another sequence's rows. ``causal`` is
bottom-right aligned per sequence (FlashAttention >= 2.1): query ``i`` of a sequence sees keys
``j <= i + len_k - len_q``; a query that so sees no key gets zeros. The kernels trust cu_seqlens, which
``check_cu_seqlens`` asserts on the device.
"""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _oplib as C
from helion_ops.errors import ArgumentTypeError, DeviceError, ShapeError
from helion_ops.ops._attention_masked import (_block_cap, _causal, _eager_bwd_mask, _eager_scores_mask,
                                              _eager_stats, _finish, _grads, _online, _stats_like, kern)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

@helion.kernel(static_shapes=True, replay_host=True)
def attn_fwd_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor,
                    max_q: int, max_k: int, causal: bool, scale: float):
    """(out, m, log2 l) of packed sequences; q [1, H, total_q, D], k/v [1, H_kv, total_k, D] (views)."""
    _, h, t_q, d = q.size()
    h_kv = k.size(1)
    group = h // h_kv
    n_seq = cu_q.size(0) - 1
    out = torch.empty_like(q)
    mx = torch.empty([1, h, t_q], dtype=torch.float32, device=q.device)
    ll = torch.empty([1, h, t_q], dtype=torch.float32, device=q.device)
    block_m = hl.register_block_size(16, _block_cap(max_q))
    block_n = hl.register_block_size(16, _block_cap(max_k))
    for tile_i, tile_bh in hl.tile([max_q, n_seq * h], block_size=[block_m, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        ikv = ih // group
        q0 = cu_q[ib]
        q1 = cu_q[ib + 1]
        k0 = cu_k[ib]
        k1 = cu_k[ib + 1]
        off = k1 - q1  # bottom-right causal: row r sees key c <= r + off
        # at most one iteration: this program's query rows of sequence ib, masked at its end
        for tile_m in hl.tile(q0 + tile_i.begin, min(q0 + tile_i.end, q1), block_size=block_m):
            q_blk = q[0, ih, tile_m, :]
            m_i = hl.full([tile_m], float("-inf"), dtype=torch.float32)
            l_i = hl.zeros([tile_m], dtype=torch.float32)
            acc = hl.zeros([tile_m, d], dtype=torch.float32)
            end_n = max(min(tile_m.end + off, k1), k0) if causal else k1
            for tile_n in hl.tile(k0, end_n, block_size=block_n):
                s = hl.dot(q_blk, k[0, ikv, tile_n, :].T) * scale
                if causal:
                    s = _causal(s, tile_m, tile_n, off)
                m_i, l_i, acc = _online(s, v[0, ikv, tile_n, :], m_i, l_i, acc)
            o, m_s, ll_s = _finish(m_i, l_i, acc)
            out[0, ih, tile_m, :] = o
            mx[0, ih, tile_m] = m_s
            ll[0, ih, tile_m] = ll_s
    return out, mx, ll


@helion.kernel(static_shapes=True, replay_host=True)
def attn_bwd_dkdv_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor, mx: torch.Tensor,
                         ll: torch.Tensor, delta: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor, max_q: int,
                         max_k: int, causal: bool, scale: float):
    """(dk, dv) of packed sequences."""
    _, h, t_q, d = q.size()
    h_kv = k.size(1)
    group = h // h_kv
    n_seq = cu_q.size(0) - 1
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    block_n = hl.register_block_size(16, _block_cap(max_k))
    block_m = hl.register_block_size(16, _block_cap(max_q))
    for tile_j, tile_bh in hl.tile([max_k, n_seq * h_kv], block_size=[block_n, 1]):
        bh = tile_bh.begin
        ib = bh // h_kv
        ikv = bh % h_kv
        q0 = cu_q[ib]
        q1 = cu_q[ib + 1]
        k0 = cu_k[ib]
        k1 = cu_k[ib + 1]
        off = k1 - q1
        for tile_n in hl.tile(k0 + tile_j.begin, min(k0 + tile_j.end, k1), block_size=block_n):
            k_blk = k[0, ikv, tile_n, :]
            v_blk = v[0, ikv, tile_n, :]
            dk_acc = hl.zeros([tile_n, d], dtype=torch.float32)
            dv_acc = hl.zeros([tile_n, d], dtype=torch.float32)
            start_m = min(max(tile_n.begin - off, q0), q1) if causal else q0
            for g in hl.grid(group):
                ih = ikv * group + g
                for tile_m in hl.tile(start_m, q1, block_size=block_m):
                    q_blk = q[0, ih, tile_m, :]
                    do_blk = dout[0, ih, tile_m, :]
                    s = hl.dot(q_blk, k_blk.T) * scale
                    if causal:
                        s = _causal(s, tile_m, tile_n, off)
                    p, ds = _grads(s, q_blk, k_blk, v_blk, do_blk, mx[0, ih, tile_m], ll[0, ih, tile_m],
                                   delta[0, ih, tile_m])
                    dv_acc = hl.dot(p.to(q.dtype).T, do_blk, acc=dv_acc)
                    dk_acc = hl.dot(ds.to(q.dtype).T, q_blk, acc=dk_acc)
            dk[0, ikv, tile_n, :] = dk_acc * scale
            dv[0, ikv, tile_n, :] = dv_acc
    return dk, dv


@helion.kernel(static_shapes=True, replay_host=True)
def attn_bwd_dq_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor, mx: torch.Tensor,
                       ll: torch.Tensor, delta: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor, max_q: int,
                       max_k: int, causal: bool, scale: float) -> torch.Tensor:
    """dq of packed sequences."""
    _, h, t_q, d = q.size()
    h_kv = k.size(1)
    group = h // h_kv
    n_seq = cu_q.size(0) - 1
    dq = torch.empty_like(q)
    block_m = hl.register_block_size(16, _block_cap(max_q))
    block_n = hl.register_block_size(16, _block_cap(max_k))
    for tile_i, tile_bh in hl.tile([max_q, n_seq * h], block_size=[block_m, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        ikv = ih // group
        q0 = cu_q[ib]
        q1 = cu_q[ib + 1]
        k0 = cu_k[ib]
        k1 = cu_k[ib + 1]
        off = k1 - q1
        for tile_m in hl.tile(q0 + tile_i.begin, min(q0 + tile_i.end, q1), block_size=block_m):
            q_blk = q[0, ih, tile_m, :]
            do_blk = dout[0, ih, tile_m, :]
            m_blk = mx[0, ih, tile_m]
            ll_blk = ll[0, ih, tile_m]
            dl_blk = delta[0, ih, tile_m]
            dq_acc = hl.zeros([tile_m, d], dtype=torch.float32)
            end_n = max(min(tile_m.end + off, k1), k0) if causal else k1
            for tile_n in hl.tile(k0, end_n, block_size=block_n):
                k_blk = k[0, ikv, tile_n, :]
                s = hl.dot(q_blk, k_blk.T) * scale
                if causal:
                    s = _causal(s, tile_m, tile_n, off)
                p, ds = _grads(s, q_blk, k_blk, v[0, ikv, tile_n, :], do_blk, m_blk, ll_blk, dl_blk)
                dq_acc = hl.dot(ds.to(q.dtype), k_blk, acc=dq_acc)
            dq[0, ih, tile_m, :] = dq_acc * scale
    return dq


KERNELS = {"attn_fwd_varlen": attn_fwd_varlen, "attn_bwd_dkdv_varlen": attn_bwd_dkdv_varlen,
           "attn_bwd_dq_varlen": attn_bwd_dq_varlen}


# ---------------------------------------------------------------------------------------------
# Eager twins
# ---------------------------------------------------------------------------------------------

def _seqs(cu_q, cu_k):
    """[(q0, q1, k0, k1)] per sequence (host sync: eager paths only)."""
    a, b = cu_q.tolist(), cu_k.tolist()
    return [(a[i], a[i + 1], b[i], b[i + 1]) for i in range(len(a) - 1)]


def _eager_fwd_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal: bool, scale: float):
    """Per sequence on the [1, H, total, D] views: (out, m, log2 l) as attn_fwd_varlen's."""
    out, mx, ll = torch.zeros_like(q), q.new_full(q.shape[:3], float("inf"), dtype=torch.float32), \
        q.new_zeros(q.shape[:3], dtype=torch.float32)
    for q0, q1, k0, k1 in _seqs(cu_q, cu_k):
        if q1 == q0 or k1 == k0:  # no queries, or no keys: zeros (the defaults)
            continue
        qs, ks, vs = q[:, :, q0:q1], k[:, :, k0:k1], v[:, :, k0:k1]
        group = qs.shape[1] // ks.shape[1]
        vf = C.acc(vs).repeat_interleave(group, 1) if group > 1 else C.acc(vs)
        o, m, l2 = _eager_stats(_eager_scores_mask(qs, ks, None, causal, scale, (k1 - k0) - (q1 - q0)), vf, q.dtype)
        rows = torch.arange(q0, q1, device=q.device)
        out, mx, ll = (t.index_copy(2, rows, x) for t, x in ((out, o), (mx, m), (ll, l2)))
    return out, mx, ll


def _eager_bwd_varlen(dout, q, k, v, cu_q, cu_k, causal: bool, scale: float):
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for q0, q1, k0, k1 in _seqs(cu_q, cu_k):
        if q1 == q0 or k1 == k0:
            continue
        g = _eager_bwd_mask(dout[:, :, q0:q1], q[:, :, q0:q1], k[:, :, k0:k1], v[:, :, k0:k1], None, causal, scale,
                            (k1 - k0) - (q1 - q0))
        dq[:, :, q0:q1], dk[:, :, k0:k1], dv[:, :, k0:k1] = g
    return dq, dk, dv


def _qkc_varlen(args):  # (..., max_q, max_k, causal, scale)
    return args[0], args[-4], args[-3], args[-2]


_KERNS = {
    "attn_fwd_varlen": kern(attn_fwd_varlen, _eager_fwd_varlen, _qkc_varlen),
    "attn_bwd_dkdv_varlen": kern(attn_bwd_dkdv_varlen, lambda q, k, v, do, mx, ll, dl, cq, ck, mq, mk, c, sc:
                                 _eager_bwd_varlen(do, q, k, v, cq, ck, c, sc)[1:], _qkc_varlen),
    "attn_bwd_dq_varlen": kern(attn_bwd_dq_varlen, lambda q, k, v, do, mx, ll, dl, cq, ck, mq, mk, c, sc:
                               _eager_bwd_varlen(do, q, k, v, cq, ck, c, sc)[0], _qkc_varlen),
}


# ---------------------------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------------------------

def _as4(t: torch.Tensor) -> torch.Tensor:
    """[total, H, D] as the [1, H, total, D] view the kernels index."""
    return C.unit_last(t).unsqueeze(0).transpose(1, 2)


def _as3(t: torch.Tensor) -> torch.Tensor:
    """A kernel's [1, H, total, D] output as [total, H, D], not a view (see ``C.unview``)."""
    t3 = t[0].transpose(0, 1)
    return C.unview(t3, t3.shape) if t3.is_contiguous() else t3.contiguous()


def _fake_varlen_fwd(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale):
    return (q.new_empty(q.shape), *_stats_like(q, q.shape[1], q.shape[0]))


def _fake_varlen_bwd(dout, q, k, v, *rest):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


@C.op("attention_varlen_bwd", fake=_fake_varlen_bwd)
def attention_varlen_bwd_op(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            out: torch.Tensor, mx: torch.Tensor, ll: torch.Tensor, cu_q: torch.Tensor,
                            cu_k: torch.Tensor, max_q: int, max_k: int, causal: bool,
                            scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from helion_ops.ops import attention as A
    if q.numel() == 0 or k.shape[0] == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    q4, k4, v4, o4, do4 = (_as4(t) for t in (q, k, v, out, dout.to(q.dtype)))
    mx4, ll4 = mx.unsqueeze(0), ll.unsqueeze(0)
    delta = A._KERNS["attn_bwd_preprocess"](o4, do4)
    common = (q4, k4, v4, do4, mx4, ll4, delta, cu_q, cu_k, max_q, max_k, bool(causal), float(scale))
    dk, dv = _KERNS["attn_bwd_dkdv_varlen"](*common)
    return _as3(_KERNS["attn_bwd_dq_varlen"](*common)), _as3(dk), _as3(dv)


def _backward_varlen(inputs, saved, needs, dout, _dm, _dll):
    q, k, v, cu_q, cu_k, max_q, max_k, causal, scale = inputs
    return (*attention_varlen_bwd_op(dout, q, k, v, *saved, cu_q, cu_k, max_q, max_k, causal, scale),
            None, None, None, None, None, None)


def _eager_varlen_op(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale):
    out, mx, ll = _eager_fwd_varlen(_as4(q), _as4(k), _as4(v), cu_q, cu_k, max_q, max_k, causal, scale)
    return _as3(out), mx[0], ll[0]


@C.op("attention_varlen_fwd", eager=_eager_varlen_op, fake=_fake_varlen_fwd, backward=_backward_varlen,
      save_outputs=(0, 1, 2))
def attention_varlen_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor,
                            cu_k: torch.Tensor, max_q: int, max_k: int, causal: bool,
                            scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out [total_q, H, D], m [H, total_q], log2 l [H, total_q]) of validated packed sequences."""
    if q.numel() == 0 or k.shape[0] == 0 or cu_q.shape[0] < 2:
        mx, ll = _stats_like(q, q.shape[1], q.shape[0])
        return torch.zeros_like(q), mx.fill_(float("inf")), ll.zero_()
    out, mx, ll = _KERNS["attn_fwd_varlen"](_as4(q), _as4(k), _as4(v), cu_q, cu_k, max_q, max_k, bool(causal),
                                            float(scale))
    return _as3(out), mx[0], ll[0]


def check_cu_seqlens(q, k, cu_q, cu_k, max_q, max_k) -> None:
    """cu_seqlens start at 0, never decrease and end at the packed length; no sequence is longer than a
    given max_seqlen. The kernels trust these (a wrong entry would read or write past a sequence), so they
    are asserted on the device, without a host sync (``torch._assert_async``: a failure surfaces as a
    device-side assert at the next synchronisation)."""
    if cu_q.device.type == "meta":
        return
    for cu, t, m in ((cu_q, q, max_q), (cu_k, k, max_k)):
        lens = cu[1:] - cu[:-1]
        ok = (cu[0] == 0) & (cu[-1] == t.shape[0]) & (lens >= 0).all()
        if m is not None:
            ok = ok & (lens <= m).all()
        torch._assert_async(ok, "attention(): cu_seqlens must start at 0, never decrease, end at the packed "
                                "length (q.shape[0] / k.shape[0]) and hold no sequence longer than max_seqlen")


def check_varlen(q, k, cu_q, cu_k, max_q, max_k) -> tuple[int, int]:
    """cu_seqlens as FlashAttention's varlen API: int32 1-D, one more entry than sequences, on q's device.
    Returns (max_q, max_k) for the kernels (computed from cu_seqlens, with a host sync, when None)."""
    for name, cu in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        if not isinstance(cu, torch.Tensor):
            raise ArgumentTypeError(f"attention(): argument '{name}' must be a torch.Tensor (int32 cumulative "
                                    f"sequence lengths) when the other cu_seqlens is given, got {type(cu).__name__}")
        if cu.dim() != 1 or cu.shape[0] < 1 or cu.dtype != torch.int32:
            raise ShapeError(f"attention(): argument '{name}' must be a 1-D int32 tensor [num_seqs + 1], got "
                             f"{cu.dtype} of shape {tuple(cu.shape)}")
        if cu.device != q.device:
            raise DeviceError(f"attention(): argument '{name}' is on {cu.device} but 'q' is on {q.device}")
    if cu_q.shape != cu_k.shape:
        raise ShapeError(f"attention(): arguments 'cu_seqlens_q' {tuple(cu_q.shape)} and 'cu_seqlens_k' "
                         f"{tuple(cu_k.shape)} must have the same length (one entry per sequence, plus one)")
    out = []
    for name, m, cu, t in (("max_seqlen_q", max_q, cu_q, q), ("max_seqlen_k", max_k, cu_k, k)):
        if m is None:
            m = t.shape[0] if cu.device.type == "meta" or cu.shape[0] < 2 else int((cu[1:] - cu[:-1]).max())
        elif isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ArgumentTypeError(f"attention(): argument '{name}' must be a non-negative int or None, got {m!r}")
        # Rounded up to a power of two: the kernels specialise on it, so this bounds the recompiles.
        out.append(max(16, C.next_pow2(m)))
    return out[0], out[1]
