"""Flash attention (forward and backward) written in helion_ops.dsl.

``attention(q, k, v, causal=False, scale=None, *, attn_mask=None, dropout_p=0.0, cu_seqlens_q=None, ...)``
has ``F.scaled_dot_product_attention`` semantics (the public function's docstring holds the contract):
* ``q``: ``[B, H, S_q, D]``, ``k`` and ``v``: ``[B, H_kv, S_k, D]``; grouped-query attention when ``H_kv``
  divides ``H`` (query head ``h`` reads kv head ``h // (H // H_kv)``, as SDPA's ``enable_gqa``). ``causal``:
  SDPA's ``is_causal`` (top-left aligned: query ``i`` sees keys ``j <= i``); ``scale``: ``1 / sqrt(D)``.
* Any ``D`` in 1..256: the kernels pad it to a power of two (masked loads; below 16 the host pads to 16).
  fp16, bf16 (fp32 too: IEEE fp32 dots, slow on GPU, used by CPU tests). Accumulation, softmax statistics
  and the log-sum-exp are fp32; the output has the inputs' dtype.
* ``attn_mask`` and packed sequences (``cu_seqlens_q/k``) run the kernels of ``_attention_masked.py``
  and ``_attention_varlen.py``; decode (S_q = 1) packs a GQA group's heads as rows and splits the keys
  when the heads leave SMs idle (``_attention_masked.decode``). The plain path's kernels (below) take no
  mask. Refused with ``InputError`` (``supports()`` first): dropout, a mask needing grad, mask + cu_seqlens.
Kernels (one DSL source each, the Config picks block sizes, warps, stages, TMA):

* ``attn_fwd``: one program per (query block, batch*head): ``for tile_m, tile_bh in hl.tile([S_q, B*H],
  block_size=[block_m, 1])`` (query blocks vary fastest, so programs running together share K/V in L2).
  Online softmax over key blocks in base 2 (``exp2``, the scale folded into ``scale * log2(e)``),
  running max ``m_i`` and sum ``l_i`` in fp32, ``acc = hl.dot(p, v, acc=acc)``. Causal: the key loop stops
  at ``min(tile_m.end, S_k)`` (fully masked key blocks are never visited) and only the diagonal needs
  the ``torch.where`` mask. Saves ``lse = m_i + log2(l_i)`` (base 2, fp32, ``[B, H, S_q]``) for backward.
  While a query's scores are all -inf the rescaling runs against 0 (not ``-inf - -inf``, NaN); a query
  whose every score is -inf (scores overflowing fp32) gets a zero output and ``lse = +inf``, hence zero
  gradients, as torch's SDPA (FlashAttention's convention).
* ``attn_bwd_preprocess``: ``delta = rowsum(dO * O)`` (fp32).
* ``attn_bwd_dkdv``: one program per (key block, batch*kv-head); loops over the query heads of its GQA
  group (``hl.grid(group)``) and over query blocks (from the key block's start when causal), recomputes
  ``P = exp2(q k^T * scale*log2e - lse)``; ``dV += P^T dO``, ``dK += dS^T Q`` with ``dS = P * (dO V^T -
  delta)``. The GQA group is reduced in-kernel, so dK/dV need no host-side sum.
* ``attn_bwd_dq``: one program per (query block, batch*head); ``dQ += dS K`` over key blocks.

FLOPs (what ``work`` / ``backward_work`` count, as FlashAttention does): forward two matmuls,
``4 * B * H * S_q * S_k * D``, halved when causal; backward five matmuls (recompute ``QK^T``, ``dV``, ``dP``,
``dQ``, ``dK``): ``2.5x`` the forward count.

Integration: the op layer (``helion_ops._oplib``) makes ``helion_ops::attention_fwd`` / ``attention_bwd``
custom ops with fakes and autograd, so ``torch.compile(fullgraph=True)`` traces through ``attention``
with no graph break.

Configs: the op layer's policy: ``configs/<arch>/attention.json`` when it has an entry (nearest
shape bucket; head dim and causal flag exact), else the analytic defaults of ``default_config`` (per
kernel, head dim, dtype). Tunables beyond the standard knobs: ``causal_split`` (causal: the forward and
dQ visit the key blocks left of the diagonal band, and dK/dV the query blocks below it, in a loop without
the mask; default on) and ``keys_rows`` (dK/dV computes P^T and dP^T, keys as the rows: what the Gluon
backend needs, see ``_dkdv_step``; default off). Causal forward and dQ also take the query blocks
last-first (``grid_reverses``, see ``_longest_first``): the longest programs start first.

Backends: on an sm_90 GPU the forward (``attn_fwd``, the plain path) compiles through the DSL's Gluon
backend (a TMA producer warp, two wgmma consumer warpgroups of 64 query rows, ``gluon_overlap``) for the
calls it covers (fp16/bf16, head dim 128, sequences of 128 or more, tensors TMA can load:
``_attention_gluon.refusal``), and so do the backward's dQ and dK/dV kernels (``attn_bwd_dq``,
``attn_bwd_dkdv``) where, beyond that, the lengths are equal multiples of 128 (causal dK/dV: from 8192 keys;
``_attention_gluon.refusal_bwd``); the policy's last step (``_attention_gluon.choose``) puts that Config in
place of the Triton one (a Gluon table entry is kept), so the table's Triton entries and the analytic
defaults are the Triton choice (``triton_config``).
Triton runs everything else: other GPUs, the interpreter, other dtypes and head dims, the masked, varlen
and decode kernels. A Gluon build or launch that fails runs the Triton Config instead (one
``FallbackWarning``; ``HELION_OPS_STRICT=1`` raises); one the backend refuses (``NotSupported``: a
misaligned data pointer) does so quietly. ``HELION_OPS_GLUON=0`` keeps every call on
Triton; like every choice it is made once per signature (``helion_ops._oplib.reset_caches()`` chooses again).

Figures: results/<GPU>/attention.md (the harness, against SDPA's cuDNN and flash backends).

Known limits: every kernel loads through pointers (pipelined cp.async); TMA descriptors, which the DSL
emits and the tuner explores, ran slower on the H100. Upstream Triton 3.6 warp-specializes this loop
on sm_90 only with 4 warps (one consumer warpgroup): with TMA and 64-row query blocks it compiles and
partitions but ran slower than the shipped config (H100 probe), and 128-row blocks fail in Triton's
partitioner. So on the Triton backend the forward cannot overlap its softmax with the next block's
matmuls as cuDNN's FA3-style schedule does (the Gluon backend does: docs/decisions/gluon-attention.md);
it runs at the level of Triton's own tutorial kernel. Triton 3.6 miscompiled dK for dkdv 128x32 w8 s3
(wrong values) and hit a misaligned address at 128x16 w4, so the defaults avoid those.

Memory (tests/reliability/test_memory.py): forward allocates the output plus ``lse`` ([B, H, S_q] fp32,
saved for backward); backward allocates dq, dk, dv plus ``delta`` ([B, H, S_q] fp32; no zero gradient
is materialised for ``lse``); no [S_q, S_k] buffer (the eager fallback has one).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import Config
from helion_ops.dsl.config import BoolFragment
from helion_ops import _oplib as C
from helion_ops.ops import _attention_gluon as G
from helion_ops.dsl.exc import InputError
from helion_ops.errors import ArgumentTypeError, DeviceError, DtypeError, ShapeError

NAME = "attention"
MAX_HEAD_DIM = 256  # any head dim 1..256: the kernels pad it to a power of two (>= 16) with masked loads
LOG2E = 1.4426950408889634


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

def _block_cap(n: int) -> int:
    """Upper bound of a registered (inner-loop) block size: next_pow2(n) within [16, 256]."""
    return max(16, min(256, helion.next_power_of_2(n)))


def _fwd_step(q_blk, k, v, ib, ikv, tile_m, tile_n, qk_scale, m_i, l_i, acc, masked: bool):
    """One key block of the online softmax (inlined into ``attn_fwd``): the running max ``m_i``, sum
    ``l_i`` and output ``acc`` after it; ``masked`` applies the causal mask (diagonal blocks only)."""
    s = hl.dot(q_blk, k[ib, ikv, tile_n, :].T) * qk_scale
    if masked:
        s = torch.where(tile_m.index[:, None] >= tile_n.index[None, :], s, float("-inf"))
    m_new = torch.maximum(m_i, torch.amax(s, dim=1))
    # A row whose scores so far are all -inf rescales against 0: exp2(-inf - -inf) would be NaN and poison
    # l_i and acc for good; exp2(-inf - 0) is the 0 it should be (see attn_fwd for rows that stay -inf).
    m_ref = torch.where(m_new == float("-inf"), 0.0, m_new)
    p = torch.exp2(s - m_ref[:, None])
    alpha = torch.exp2(m_i - m_ref)
    l_i = l_i * alpha + torch.sum(p, dim=1)
    acc = acc * alpha[:, None]
    acc = hl.dot(p.to(v.dtype), v[ib, ikv, tile_n, :], acc=acc)
    return m_new, l_i, acc


def _dkdv_step(q, dout, lse, delta, k_blk, v_blk, ib, ih, tile_m, tile_n, qk_scale, dk_acc, dv_acc, masked: bool,
               keys_rows: bool):
    """One query block of dK/dV (inlined into ``attn_bwd_dkdv``): P recomputed from the saved lse. ``keys_rows``
    computes P^T and dP^T (keys as rows) so that every hl.dot's right operand is a query-side tile loaded from
    memory: the Gluon backend's wgmma reads that operand from shared memory and splits the key rows between
    its consumer warpgroups."""
    q_blk = q[ib, ih, tile_m, :]
    do_blk = dout[ib, ih, tile_m, :]
    if keys_rows:
        p_t = torch.exp2(hl.dot(k_blk, q_blk.T) * qk_scale - lse[ib, ih, tile_m][None, :])
        if masked:
            p_t = torch.where(tile_m.index[None, :] >= tile_n.index[:, None], p_t, 0.0)
        dv_acc = hl.dot(p_t.to(q.dtype), do_blk, acc=dv_acc)
        ds_t = p_t * (hl.dot(v_blk, do_blk.T) - delta[ib, ih, tile_m][None, :])
        dk_acc = hl.dot(ds_t.to(q.dtype), q_blk, acc=dk_acc)
    else:
        p = torch.exp2(hl.dot(q_blk, k_blk.T) * qk_scale - lse[ib, ih, tile_m][:, None])
        if masked:
            p = torch.where(tile_m.index[:, None] >= tile_n.index[None, :], p, 0.0)
        dv_acc = hl.dot(p.to(q.dtype).T, do_blk, acc=dv_acc)
        dp = hl.dot(do_blk, v_blk.T)
        ds = p * (dp - delta[ib, ih, tile_m][:, None])
        dk_acc = hl.dot(ds.to(q.dtype).T, q_blk, acc=dk_acc)
    return dk_acc, dv_acc


def _dq_step(q_blk, do_blk, lse_blk, delta_blk, k, v, ib, ikv, tile_m, tile_n, qk_scale, dq_acc, masked: bool):
    """One key block of dQ (inlined into ``attn_bwd_dq``)."""
    k_blk = k[ib, ikv, tile_n, :]
    p = torch.exp2(hl.dot(q_blk, k_blk.T) * qk_scale - lse_blk[:, None])
    if masked:
        p = torch.where(tile_m.index[:, None] >= tile_n.index[None, :], p, 0.0)
    dp = hl.dot(do_blk, v[ib, ikv, tile_n, :].T)
    ds = p * (dp - delta_blk[:, None])
    return hl.dot(ds.to(q_blk.dtype), k_blk, acc=dq_acc)


@helion.kernel(static_shapes=True, replay_host=True)
def attn_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, qk_scale: float):
    """(out, lse): softmax(q k^T * scale) v per head; ``qk_scale = scale * log2(e)``; lse in base 2."""
    b, h, s_q, d = q.size()
    h_kv = k.size(1)
    s_k = k.size(2)
    group = h // h_kv
    out = torch.empty_like(q)
    lse = torch.empty([b, h, s_q], dtype=torch.float32, device=q.device)
    block_m = hl.register_block_size(16, _block_cap(s_q))
    block_n = hl.register_block_size(16, _block_cap(s_k))
    # causal only: visit the key blocks left of the diagonal block in a loop without the causal mask
    split = hl.register_tunable("causal_split", BoolFragment(True)) and causal
    for tile_m, tile_bh in hl.tile([s_q, b * h], block_size=[block_m, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        ikv = ih // group
        q_blk = q[ib, ih, tile_m, :]
        m_i = hl.full([tile_m], float("-inf"), dtype=torch.float32)
        l_i = hl.zeros([tile_m], dtype=torch.float32)
        acc = hl.zeros([tile_m, d], dtype=torch.float32)
        start_n = 0
        if split:
            start_n = min(tile_m.begin, s_k)
            for tile_n in hl.tile(0, start_n, block_size=block_n):
                m_i, l_i, acc = _fwd_step(q_blk, k, v, ib, ikv, tile_m, tile_n, qk_scale, m_i, l_i, acc, False)
        end_n = min(tile_m.end, s_k) if causal else s_k
        for tile_n in hl.tile(start_n, end_n, block_size=block_n):
            m_i, l_i, acc = _fwd_step(q_blk, k, v, ib, ikv, tile_m, tile_n, qk_scale, m_i, l_i, acc, causal)
        # l_i is >= 1 once a score is finite; 0 only for a query whose every score is -inf. Such a row
        # gives 0, as torch's SDPA (acc is 0), and lse = +inf, so backward's P = exp2(S - lse) is 0 there
        # (FlashAttention's convention) and its gradients are 0, not NaN.
        empty = l_i == 0.0
        out[ib, ih, tile_m, :] = acc / torch.where(empty, 1.0, l_i)[:, None]
        lse[ib, ih, tile_m] = torch.where(empty, float("inf"), m_i + torch.log2(l_i))
    return out, lse


@helion.kernel(static_shapes=True, replay_host=True)
def attn_bwd_preprocess(out: torch.Tensor, dout: torch.Tensor) -> torch.Tensor:
    """delta = rowsum(dO * O) in fp32, [B, H, S_q]."""
    b, h, s_q, d = out.size()
    delta = torch.empty([b, h, s_q], dtype=torch.float32, device=out.device)
    for tile_m, tile_bh in hl.tile([s_q, b * h], block_size=[None, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        o = out[ib, ih, tile_m, :].to(torch.float32)
        do = dout[ib, ih, tile_m, :].to(torch.float32)
        delta[ib, ih, tile_m] = torch.sum(o * do, dim=1)
    return delta


@helion.kernel(static_shapes=True, replay_host=True)
def attn_bwd_dkdv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor,
                  delta: torch.Tensor, causal: bool, qk_scale: float, sm_scale: float):
    """(dk, dv): per key block, summed over the query heads of the kv head's group."""
    b, h, s_q, d = q.size()
    h_kv = k.size(1)
    s_k = k.size(2)
    group = h // h_kv
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    block_n = hl.register_block_size(16, _block_cap(s_k))
    block_m = hl.register_block_size(16, _block_cap(s_q))
    # causal only: the query blocks below the key block's diagonal band run without the causal mask
    split = hl.register_tunable("causal_split", BoolFragment(True)) and causal
    keys_rows = hl.register_tunable("keys_rows", BoolFragment(False))  # see _dkdv_step
    for tile_n, tile_bh in hl.tile([s_k, b * h_kv], block_size=[block_n, 1]):
        bh = tile_bh.begin
        ib = bh // h_kv
        ikv = bh % h_kv
        k_blk = k[ib, ikv, tile_n, :]
        v_blk = v[ib, ikv, tile_n, :]
        dk_acc = hl.zeros([tile_n, d], dtype=torch.float32)
        dv_acc = hl.zeros([tile_n, d], dtype=torch.float32)
        start_m = tile_n.begin if causal else 0
        end_m = min(tile_n.end, s_q) if split else s_q
        for g in hl.grid(group):
            ih = ikv * group + g
            for tile_m in hl.tile(start_m, end_m, block_size=block_m):
                dk_acc, dv_acc = _dkdv_step(q, dout, lse, delta, k_blk, v_blk, ib, ih, tile_m, tile_n, qk_scale,
                                            dk_acc, dv_acc, causal, keys_rows)
            if split:
                for tile_m in hl.tile(end_m, s_q, block_size=block_m):
                    dk_acc, dv_acc = _dkdv_step(q, dout, lse, delta, k_blk, v_blk, ib, ih, tile_m, tile_n, qk_scale,
                                                dk_acc, dv_acc, False, keys_rows)
        dk[ib, ikv, tile_n, :] = dk_acc * sm_scale
        dv[ib, ikv, tile_n, :] = dv_acc
    return dk, dv


@helion.kernel(static_shapes=True, replay_host=True)
def attn_bwd_dq(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor,
                delta: torch.Tensor, causal: bool, qk_scale: float, sm_scale: float) -> torch.Tensor:
    """dq, per query block."""
    b, h, s_q, d = q.size()
    h_kv = k.size(1)
    s_k = k.size(2)
    group = h // h_kv
    dq = torch.empty_like(q)
    block_m = hl.register_block_size(16, _block_cap(s_q))
    block_n = hl.register_block_size(16, _block_cap(s_k))
    # causal only: the key blocks left of the query block's diagonal band run without the causal mask
    split = hl.register_tunable("causal_split", BoolFragment(True)) and causal
    for tile_m, tile_bh in hl.tile([s_q, b * h], block_size=[block_m, 1]):
        bh = tile_bh.begin
        ib = bh // h
        ih = bh % h
        ikv = ih // group
        q_blk = q[ib, ih, tile_m, :]
        do_blk = dout[ib, ih, tile_m, :]
        lse_blk = lse[ib, ih, tile_m]
        delta_blk = delta[ib, ih, tile_m]
        dq_acc = hl.zeros([tile_m, d], dtype=torch.float32)
        start_n = 0
        if split:
            start_n = min(tile_m.begin, s_k)
            for tile_n in hl.tile(0, start_n, block_size=block_n):
                dq_acc = _dq_step(q_blk, do_blk, lse_blk, delta_blk, k, v, ib, ikv, tile_m, tile_n, qk_scale,
                                  dq_acc, False)
        end_n = min(tile_m.end, s_k) if causal else s_k
        for tile_n in hl.tile(start_n, end_n, block_size=block_n):
            dq_acc = _dq_step(q_blk, do_blk, lse_blk, delta_blk, k, v, ib, ikv, tile_m, tile_n, qk_scale, dq_acc,
                              causal)
        dq[ib, ih, tile_m, :] = dq_acc * sm_scale
    return dq


KERNELS = {"attn_fwd": attn_fwd, "attn_bwd_preprocess": attn_bwd_preprocess,
           "attn_bwd_dkdv": attn_bwd_dkdv, "attn_bwd_dq": attn_bwd_dq}


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

def default_config(kernel: str, d: int, dtype: torch.dtype, causal: bool = False, even: bool = False) -> Config:
    """Analytic per-shape default (the tuner refines it). ``block_sizes`` are [outer, inner]:
    fwd/dq [BLOCK_M, BLOCK_N], dkdv [BLOCK_N, BLOCK_M], preprocess [BLOCK_M].

    Measured on H100 (bf16, B=4, H=16, S=4096, D=128; Triton 3.6), see the module notes:
    * fwd: 128x128 tiles, 8 warps, 3 stages, pointer loads (TMA descriptors were slower);
      D=256 halves the tiles and stages (shared memory).
    * dkdv: 64x64 tiles, 4 warps, 2 stages (FA2-Triton's 128x32 w8 s3 was slower and *miscompiles* dK
      on Triton 3.6: avoid BLOCK_M=32 with 8 warps and 3 stages there).
      Causal: 1 stage (pipelining the diagonal-start loop gave wrong dK on Triton 3.6) unless ``even``
      (both sequence lengths multiples of 128, so the loop has no masks) and D <= 128: 2 stages.
    * dq: 128x32, 8 warps (4 for D=64), 3 stages.
    * every kernel: pointer loads (faster than TMA descriptors for dK/dV and dQ on the H100).
    * fp32 (IEEE dots, CPU tests): small tiles."""
    if kernel == "attn_bwd_preprocess":
        return Config(block_sizes=[128], num_warps=4, num_stages=2, indexing="pointer")
    if dtype == torch.float32:
        bs = [32, 32] if d <= 128 else [16, 32]
        return Config(block_sizes=bs, num_warps=4, num_stages=2, indexing="pointer")
    if kernel == "attn_fwd":
        if d <= 64:
            bs, w, st = [128, 64], 4, 3
        elif d <= 128:
            bs, w, st = [128, 128], 8, 3
        else:
            bs, w, st = [64, 64], 8, 2
    elif kernel == "attn_bwd_dkdv":
        if d <= 64:
            bs, w, st = [64, 64], 4, 3
        elif d <= 128:
            bs, w, st = [64, 64], 4, 2
        else:
            bs, w, st = [64, 32], 8, 2
    elif kernel == "attn_bwd_dq":
        if d <= 64:
            bs, w, st = [128, 32], 4, 3
        elif d <= 128:
            bs, w, st = [128, 32], 8, 3
        else:
            bs, w, st = [64, 32], 8, 2
    else:
        raise KeyError(kernel)
    if kernel == "attn_bwd_dkdv" and causal:
        # Triton 3.6 on the H100 computes wrong dK (dV and dQ right) when this loop, which starts at
        # the key block's diagonal, is software-pipelined with partial (masked) query blocks: found by
        # the soak (results/H100/soak.md) for D=256, GQA and S_q != S_k, all with S not a multiple of
        # the blocks; num_stages=1 was right in every case. With S a multiple of 128 the loop has no
        # masks, and 2 stages gave bitwise the same dK/dV, faster; D=256 stays unpipelined.
        st = 2 if even and d <= 128 else 1
    return Config(block_sizes=bs, num_warps=w, num_stages=st, indexing="pointer")


def triton_config(args: tuple, kernel: str = "attn_fwd") -> Config:
    """The Config ``kernel(*args)`` runs with on the Triton backend (the policy with Gluon off): what runs when
    the Gluon build or launch fails, and the bench's Triton reference."""
    with G.triton_only():
        return _KERNS[kernel].config_for(*args)


def _gluon_fallback(kernel: str):
    return lambda cfg, args: triton_config(args, kernel) if G.is_gluon(cfg) else None


def _shape_key(q: torch.Tensor, k: torch.Tensor, causal: bool) -> list[int]:
    b, h, s_q, d = q.shape
    return [b * h, s_q, k.shape[2], d, 2 if causal else 1]


def _qkc(kernel: str, args: tuple) -> tuple:
    """(q, k, causal) of a kernel's arguments (the preprocess kernel has no k: its shape stands in)."""
    if kernel == "attn_fwd":
        return args[0], args[1], args[3]
    if kernel == "attn_bwd_preprocess":
        return args[0], args[0], False
    return args[0], args[1], args[6]


def _kern(kernel: str, eager) -> C.Kern:
    def default(args: tuple) -> Config:
        q, k, causal = _qkc(kernel, args)
        even = q.shape[2] % 128 == 0 and k.shape[2] % 128 == 0  # every block (<= 128) divides both lengths
        return default_config(kernel, q.shape[-1], q.dtype, causal, even)

    def adjust(cfg: Config, args: tuple) -> Config:
        if kernel in GLUON_KERNELS:
            cfg = G.choose(kernel, cfg, args, default)
        return _longest_first(kernel, cfg, _qkc(kernel, args)[2])
    # Head dim and causal flag must match a table entry exactly; only the sizes are bucketed.
    return C.Kern(NAME, KERNELS[kernel], default, key=lambda a: _shape_key(*_qkc(kernel, a)), exact=(3, 4),
                  adjust=adjust, eager=eager, fallback=_gluon_fallback(kernel) if kernel in GLUON_KERNELS else None)


GLUON_KERNELS = ("attn_fwd", "attn_bwd_dq", "attn_bwd_dkdv")  # those the Gluon backend may take (_attention_gluon)


def _longest_first(kernel: str, cfg: Config, causal: bool) -> Config:
    """Causal forward and dQ: a query block's work grows with its index (it visits the key blocks up to
    its diagonal), so the grid takes the blocks last-first (``grid_reverses``) unless ``cfg`` says."""
    if causal and kernel in ("attn_fwd", "attn_bwd_dq") and "grid_reverses" not in cfg:
        return cfg.replace(grid_reverses=[True])
    return cfg


def config_for(kernel: str, args: tuple, q: torch.Tensor = None, k: torch.Tensor = None,
               causal: bool = False) -> Config:
    """The Config kernel ``kernel`` runs with on ``args`` (the op layer's policy; ``attn_fwd``: Gluon or
    Triton, see ``_attention_gluon``)."""
    return _KERNS[kernel].config_for(*args)


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

def _eager_scores(q, k, causal: bool, scale: float) -> torch.Tensor:
    group = q.shape[1] // k.shape[1]
    kf = C.acc(k).repeat_interleave(group, 1) if group > 1 else C.acc(k)
    s = torch.matmul(C.acc(q), kf.transpose(-1, -2)) * scale
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    return s


def _eager_forward(q, k, v, causal: bool, scale: float):
    """(out, lse in base 2) with PyTorch in fp32: the fallback when a kernel cannot compile or launch."""
    group = q.shape[1] // k.shape[1]
    s = _eager_scores(q, k, causal, scale)
    vf = C.acc(v).repeat_interleave(group, 1) if group > 1 else C.acc(v)
    out = torch.matmul(_softmax0(s), vf).to(q.dtype)
    lse = torch.logsumexp(s, dim=-1)
    return out, lse.masked_fill(lse == float("-inf"), float("inf")) * LOG2E  # as attn_fwd's


def _softmax0(s: torch.Tensor) -> torch.Tensor:
    """Softmax over keys with 0 (torch's SDPA, the kernels) for a query whose every score is -inf."""
    return torch.softmax(s, dim=-1).masked_fill((s == float("-inf")).all(-1, keepdim=True), 0.0)


def _eager_backward(dout, q, k, v, causal: bool, scale: float):
    """(dq, dk, dv) with PyTorch in fp32 (the fallback; explicit formulas, since autograd is off inside a
    custom op); the GQA group's heads are summed into their kv head."""
    return _eager_backward_p(_softmax0(_eager_scores(q, k, causal, scale)), dout, q, k, v, scale)


def _eager_backward_p(p, dout, q, k, v, scale: float):
    """(dq, dk, dv) from the probabilities ``p`` [B, H, S_q, S_k] (fp32): the formulas every eager
    attention backward shares (plain, masked)."""
    b, h, s_q, d = q.shape
    h_kv, s_k = k.shape[1], k.shape[2]
    group = h // h_kv
    kf, vf, qf, g = C.acc(k), C.acc(v), C.acc(q), C.acc(dout)
    if group > 1:
        kf, vf = kf.repeat_interleave(group, 1), vf.repeat_interleave(group, 1)
    dv = torch.matmul(p.transpose(-1, -2), g)
    dp = torch.matmul(g, vf.transpose(-1, -2))
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    dq = torch.matmul(ds, kf) * scale
    dk = torch.matmul(ds.transpose(-1, -2), qf) * scale
    if group > 1:
        dk = dk.reshape(b, h_kv, group, s_k, d).sum(2)
        dv = dv.reshape(b, h_kv, group, s_k, d).sum(2)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _eager_delta(out, dout):
    return (C.acc(out) * C.acc(dout)).sum(-1)


def _eager_dkdv(q, k, v, dout, lse, delta, causal, qk_scale, sm_scale):
    return _eager_backward(dout, q, k, v, causal, sm_scale)[1:]


def _eager_dq(q, k, v, dout, lse, delta, causal, qk_scale, sm_scale):
    return _eager_backward(dout, q, k, v, causal, sm_scale)[0]


_KERNS = {"attn_fwd": _kern("attn_fwd", lambda q, k, v, causal, qs: _eager_forward(q, k, v, causal, qs / LOG2E)),
          "attn_bwd_preprocess": _kern("attn_bwd_preprocess", _eager_delta),
          "attn_bwd_dkdv": _kern("attn_bwd_dkdv", _eager_dkdv), "attn_bwd_dq": _kern("attn_bwd_dq", _eager_dq)}


def _fake_fwd(q, k, v, causal, scale):
    return torch.empty_like(q), q.new_empty(q.shape[:3], dtype=torch.float32)


def _fake_bwd(dout, q, k, v, out, lse, causal, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


@C.op("attention_bwd", fake=_fake_bwd)
def attention_bwd_op(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                     lse: torch.Tensor, causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) from the saved forward (FA2 scheme)."""
    if q.numel() == 0 or k.shape[2] == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dout, q, k, v, out = (C.unit_last(t.to(q.dtype) if t is dout else t) for t in (dout, q, k, v, out))
    delta = _KERNS["attn_bwd_preprocess"](out, dout)
    common = (q, k, v, dout, lse, delta, bool(causal), float(scale) * LOG2E, float(scale))
    dk, dv = _KERNS["attn_bwd_dkdv"](*common)
    return _KERNS["attn_bwd_dq"](*common), dk, dv


def _backward(inputs, saved, needs, dout, _dlse):
    q, k, v, causal, scale = inputs
    return (*attention_bwd_op(dout, q, k, v, saved[0], saved[1], causal, scale), None, None)


@C.op("attention_fwd", eager=lambda q, k, v, causal, scale: _eager_forward(q, k, v, causal, scale),
      fake=_fake_fwd, backward=_backward, save_outputs=(0, 1))
def attention_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                     scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(out [B, H, S_q, D], lse [B, H, S_q] fp32, base 2) of validated inputs."""
    if q.numel() == 0 or k.shape[2] == 0:  # SDPA: no keys -> zeros
        return torch.zeros_like(q), torch.full(q.shape[:3], float("-inf"), dtype=torch.float32, device=q.device)
    q, k, v = C.unit_last(q), C.unit_last(k), C.unit_last(v)
    return _KERNS["attn_fwd"](q, k, v, bool(causal), float(scale) * LOG2E)


def _check_qkv(q, k, v, causal, scale, rank: int) -> None:
    """q, k, v: tensors of ``rank`` dims ([B, H, S, D] or varlen [total, H, D]), one dtype and device, one
    head dim in 1..256, GQA heads; ``causal`` a bool, ``scale`` finite or None."""
    layout = "[B, H, S, D]" if rank == 4 else "[total, H, D] (cu_seqlens given)"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"attention(): argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != rank:
            raise ShapeError(f"attention(): argument '{name}' must be {rank}-D {layout}, got shape {tuple(t.shape)}")
        C.check_dtype(NAME, name, t)
        C.check_device("attention", name, t)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise DtypeError(f"attention(): argument '{name}' has dtype {t.dtype} but 'q' has {q.dtype}; "
                             f"q, k and v must have the same dtype")
        if t.device != q.device:
            raise DeviceError(f"attention(): argument '{name}' is on {t.device} but 'q' is on {q.device}")
    d = q.shape[-1]
    if not 1 <= d <= MAX_HEAD_DIM:
        raise ShapeError(f"attention(): argument 'q' has head dim {d}; supported head dims are 1..{MAX_HEAD_DIM}")
    for name, t in (("k", k), ("v", v)):
        if t.shape[-1] != d:
            raise ShapeError(f"attention(): argument '{name}' has head dim {t.shape[-1]} but 'q' has {d}; "
                             f"head dims must match")
        if rank == 4 and t.shape[0] != q.shape[0]:
            raise ShapeError(f"attention(): argument '{name}' has batch {t.shape[0]} but 'q' has {q.shape[0]}")
    if v.shape != k.shape:
        raise ShapeError(f"attention(): argument 'v' has shape {tuple(v.shape)} but 'k' has {tuple(k.shape)}; "
                         f"k and v must have the same shape")
    h, h_kv = q.shape[1], k.shape[1]  # [B, H, S, D] and [total, H, D] both keep the heads at dim 1
    if h_kv == 0 or h % h_kv != 0:
        raise ShapeError(f"attention(): argument 'k' has {h_kv} heads, which does not divide the {h} heads "
                         f"of 'q' (grouped-query attention needs H % H_kv == 0)")
    if not isinstance(causal, bool):
        raise ArgumentTypeError(f"attention(): argument 'causal' must be a bool, got {type(causal).__name__}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise InputError(f"attention(): argument 'scale' must be a finite float or None, got {scale!r}")


def supports(q, k, v, causal: bool = False, scale: Optional[float] = None, *, attn_mask=None, dropout_p: float = 0.0,
             cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None) -> tuple[bool, str]:
    """Whether :func:`attention` takes these arguments: ``(True, "")``, or ``(False, reason)`` naming the
    argument it refuses (the message of the ``InputError`` that ``attention`` would raise). Checks
    attributes only (dtypes, shapes, devices; no kernel runs) except that ``cu_seqlens`` without
    ``max_seqlen`` costs one host sync, as in ``attention``."""
    try:
        _check(q, k, v, causal, scale, attn_mask, dropout_p, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    except InputError as e:
        return False, str(e)
    return True, ""


def _check(q, k, v, causal, scale, attn_mask, dropout_p, cu_q, cu_k, max_q, max_k):
    """Validated arguments: (mask as 4-D or None, (max_q, max_k) or None)."""
    if not (isinstance(dropout_p, (int, float)) and dropout_p == 0):
        raise InputError(f"attention(): argument 'dropout_p' = {dropout_p!r} is not supported (dropout must be 0)")
    if (cu_q is None) != (cu_k is None):
        missing = "cu_seqlens_k" if cu_k is None else "cu_seqlens_q"
        raise InputError(f"attention(): argument '{missing}' is missing: varlen attention needs both cu_seqlens")
    if cu_q is None:
        for name, m in (("max_seqlen_q", max_q), ("max_seqlen_k", max_k)):
            if m is not None:
                raise InputError(f"attention(): argument '{name}' is given without cu_seqlens_q/cu_seqlens_k")
        _check_qkv(q, k, v, causal, scale, 4)
        if attn_mask is None:
            return None, None
        from helion_ops.ops import _attention_masked as M
        return M.check_mask(q, k, attn_mask), None
    if attn_mask is not None:
        raise InputError("attention(): argument 'attn_mask' is not supported together with cu_seqlens "
                         "(variable-length sequences are masked by their lengths)")
    _check_qkv(q, k, v, causal, scale, 3)
    from helion_ops.ops import _attention_varlen as V
    return None, V.check_varlen(q, k, cu_q, cu_k, max_q, max_k)


@C.public
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              scale: Optional[float] = None, *, attn_mask: Optional[torch.Tensor] = None,
              dropout_p: float = 0.0, cu_seqlens_q: Optional[torch.Tensor] = None,
              cu_seqlens_k: Optional[torch.Tensor] = None, max_seqlen_q: Optional[int] = None,
              max_seqlen_k: Optional[int] = None) -> torch.Tensor:
    """Scaled dot-product attention, ``softmax(q @ k^T * scale + mask) @ v``, as SDPA / FlashAttention.

    Batched: q ``[B, H, S_q, D]``; k, v ``[B, H_kv, S_k, D]`` with ``H % H_kv == 0`` (grouped-query
    attention). ``causal`` is SDPA's ``is_causal``: top-left aligned, query i attends keys j <= i, also
    when S_q != S_k (so a single decode query with ``causal=True`` sees key 0 only: pass ``causal=False``
    at decode, or a mask). ``attn_mask``: as SDPA's, boolean (True = attend) or floating point (added to
    the scores), broadcastable to ``[B, H, S_q, S_k]`` (``[B, 1, 1, S_k]`` padding masks, ``[S_q, S_k]``,
    ...); read tile by tile, never expanded in memory; may be combined with ``causal`` (SDPA refuses the
    combination). A query row that attends to no key (an all-False boolean row, an all ``-inf`` additive
    row) returns **zeros** and zero gradients, as FlashAttention (SDPA returns NaN there).

    Variable length (FlashAttention's varlen API): with ``cu_seqlens_q`` / ``cu_seqlens_k`` (1-D int32,
    ``[num_seqs + 1]`` cumulative lengths), q is ``[total_q, H, D]`` and k, v ``[total_k, H_kv, D]``; sequence
    i is rows ``cu[i]:cu[i + 1]`` and attends only within itself; returns ``[total_q, H, D]``. ``causal`` is
    **bottom-right** aligned per sequence there (FlashAttention >= 2.1): query i sees keys
    ``j <= i + len_k - len_q``. ``max_seqlen_q/k`` (ints, at least the longest sequence: a smaller value
    leaves rows uncomputed) are computed from ``cu_seqlens`` with a host sync when None.

    Decode (S_q = 1 against a KV cache, no causal flag): the query heads of a GQA group are packed as the
    rows of one program, so each kv head's cache is read once. The kernels specialise on shapes, so a
    cache that grows by one key per step compiles once per length: use a static (fixed-length) cache
    with a padding mask for generation on a GPU.

    D: any head dim 1..256 (the kernels pad it to a power of two, at least 16, with masked loads);
    fp16/bf16 (or fp32), all one dtype. ``scale`` defaults to 1/sqrt(D). Returns q's shape and dtype.
    Differentiable in q, k and v (to any order); works under ``torch.compile(fullgraph=True)``,
    ``torch.func`` and on meta tensors. Refused with ``InputError`` (see :func:`supports`): ``dropout_p !=
    0``, a mask that requires grad, a mask together with cu_seqlens.
    """
    mask, lens = _check(q, k, v, causal, scale, attn_mask, dropout_p, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                        max_seqlen_k)
    d = q.shape[-1]
    sc = float(scale) if scale is not None else 1.0 / math.sqrt(d)
    if d < 16:  # tensor-core dots need K >= 16: zero columns change neither q.k nor the kept columns of p.v
        pad = lambda t: torch.nn.functional.pad(t, (0, 16 - d))  # noqa: E731
        out = attention(pad(q), pad(k), pad(v), causal, sc, attn_mask=attn_mask, cu_seqlens_q=cu_seqlens_q,
                        cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k)
        return out[..., :d].contiguous()
    if lens is not None:
        from helion_ops.ops import _attention_varlen as V
        V.check_cu_seqlens(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
        return V.attention_varlen_fwd_op(q, k, v, cu_seqlens_q, cu_seqlens_k, *lens, causal, sc)[0]
    if mask is None and (q.shape[2] != 1 or causal):  # the plain path
        return attention_fwd_op(q, k, v, causal, sc)[0]
    from helion_ops.ops import _attention_masked as M
    if q.shape[2] == 1 and not causal:
        return M.decode(q, k, v, mask, sc, attention_fwd_op)
    return M.attention_mask_fwd_op(q, k, v, mask, causal, sc)[0]

