"""Ceiling probe for issue 22: a hand-written Gluon FlashAttention forward for sm_90 (Hopper).

Not part of the catalog. It answers one question: how close does Triton's Gluon, with FlashAttention-3's
schedule written out by hand, get to SDPA's cuDNN backend on the H100? The answer decides what the DSL's
Gluon backend should emit (docs/decisions/gluon-attention.md).

Layout: q, k, v, o are ``[B, H, S, D]`` bf16, contiguous, seen by the TMA engine as 2-D ``[B*H*S, D]``
tensors; one program owns ``BLOCK_M = NUM_CONS * BLOCK_Q`` query rows of one (batch, head) and walks the
key/value blocks of that head (causal: only up to its diagonal block, the last one masked). ``S`` must be
a multiple of 128 (the probe's shapes are); D = 128.

Schedule elements, each one flag of ``Variant`` so the decision record can credit each:

* ``ws``: warp specialization. ``False``: one partition that issues its own TMA loads of K/V one ring slot
  ahead (software pipelining). ``True``: a one-warp producer partition issues every TMA load (Q once,
  then K and V into a ``NUM_BUF``-slot shared-memory ring guarded by ready/empty mbarriers), so no
  consumer warp ever waits on issuing a copy.
* ``cons``: consumer partitions. 1: one partition of 8 warps (two warpgroups working on one 128-row
  block together, each wgmma split across them). 2: two 4-warp partitions (one warpgroup each, 64 rows
  each), sharing each K/V slot (the empty barrier counts both).
* ``pingpong`` (cons=2): two mbarriers pass a turn between the consumer warpgroups, so one issues its
  GEMMs while the other runs its softmax (the tensor cores never idle on a softmax).
* ``overlap``: FlashAttention-3's intra-warpgroup pipelining: issue ``S_{j+1} = Q K_{j+1}^T`` and
  ``O += P_j V_j`` back to back, then run softmax(S_{j+1}) while ``P_j V_j`` is still on the tensor cores.
* ``regs``: register budgets of the worker partitions (``gl.warp_specialize``'s ``worker_num_regs``:
  setmaxnreg moves registers from the producer to the consumers), with ``maxnreg`` for the kernel.

Softmax: base 2 (``exp2``, the scale folded into ``scale * log2(e)``), running max and sum in fp32; a row
whose every key so far is masked keeps ``m = -inf`` and subtracts 0 instead (no ``-inf - -inf`` NaN), and
the final ``l = 0`` divides by 1.

Run on a GPU: ``python -m bench.gluon_attention [--out FILE] [--quick]``: checks every variant against
fp32 SDPA, times them with the harness's ``gpu_bench`` against SDPA-cuDNN and SDPA-flash, prints TFLOP/s
(causal counts half the FLOPs, as the catalog's ``attention.work``) and writes JSON. ``--dsl`` adds the DSL's
own forward through its Gluon and Triton backends; ``--dsl-bwd attn_bwd_dq,attn_bwd_dkdv`` the DSL's backward kernels alone,
Triton against Gluon (``bwd_session``). On a CPU machine,
``compile_sm90`` builds a variant for ``GPUTarget("cuda", 90, 32)`` and returns its TTGIR and PTX.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import types

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

LOG2E = 1.4426950408889634
HEAD_D = 128
BLOCK_N = 128


# ----------------------------------------------------------------------------------------------------
# device code
# ----------------------------------------------------------------------------------------------------

@gluon.constexpr_function
def _mma_layout(num_warps, block_n):
    # wgmma atom m16 x n x k16 (bf16); warps stacked along M, 4 per warpgroup (64 rows per warpgroup).
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, block_n, 16])


@gluon.jit
def _softmax(s, m_i, l_i, qk_scale, offs_m, col0, MASKED: gl.constexpr, layout: gl.constexpr,
             BLOCK_KV: gl.constexpr):
    """One online-softmax step on raw scores s: returns (p fp32, alpha, new m, new l)."""
    if MASKED:
        offs_n = col0 + gl.arange(0, BLOCK_KV, layout=gl.SliceLayout(0, layout))
        s = gl.where(offs_n[None, :] <= offs_m[:, None], s, -float("inf"))
    m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
    # -inf guard: a row with no visible key yet subtracts 0, so exp2 gives 0, not NaN
    m_use = gl.where(m_new == -float("inf"), 0.0, m_new)
    p = gl.exp2(s * qk_scale - m_use[:, None])
    alpha = gl.exp2(m_i - m_use)
    l_new = l_i * alpha + gl.sum(p, 1)
    return p, alpha, m_new, l_new


@gluon.jit
def _step_softmax(s, m_i, l_i, qk_scale, offs_m, j, n_full, CAUSAL: gl.constexpr, layout: gl.constexpr,
                  BLOCK_KV: gl.constexpr):
    # causal: only the blocks from n_full on cross the diagonal and need the mask
    if CAUSAL:
        if j >= n_full:
            p, alpha, m_new, l_new = _softmax(s, m_i, l_i, qk_scale, offs_m, j * BLOCK_KV, True, layout, BLOCK_KV)
        else:
            p, alpha, m_new, l_new = _softmax(s, m_i, l_i, qk_scale, offs_m, j * BLOCK_KV, False, layout,
                                              BLOCK_KV)
    else:
        p, alpha, m_new, l_new = _softmax(s, m_i, l_i, qk_scale, offs_m, j * BLOCK_KV, False, layout, BLOCK_KV)
    return p, alpha, m_new, l_new


@gluon.jit
def _issue_kv(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, kv_row0, j, NUM_BUF: gl.constexpr, pred):
    slot = j % NUM_BUF
    mbarrier.expect(k_ready.index(slot), k_desc.block_type.nbytes, pred)
    tma.async_copy_global_to_shared(k_desc, [kv_row0 + j * k_desc.block_type.shape[0], 0], k_ready.index(slot),
                                    k_smem.index(slot), pred)
    mbarrier.expect(v_ready.index(slot), v_desc.block_type.nbytes, pred)
    tma.async_copy_global_to_shared(v_desc, [kv_row0 + j * v_desc.block_type.shape[0], 0], v_ready.index(slot),
                                    v_smem.index(slot), pred)


@gluon.jit
def _turn_wait(turn, t, WG: gl.constexpr, PINGPONG: gl.constexpr):
    # warpgroup 0 owns the tensor cores first: a fresh mbarrier passes a wait on parity 1 at once
    if PINGPONG:
        mbarrier.wait(turn.index(WG), (t & 1) ^ (1 - WG))


@gluon.jit
def _turn_pass(turn, WG: gl.constexpr, PINGPONG: gl.constexpr):
    if PINGPONG:
        mbarrier.arrive(turn.index(1 - WG))


@gluon.jit
def _consumer(q_desc, k_desc, v_desc, o_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, k_empty, v_empty,
              turn,
              qk_scale, q_row, kv_row0, seq_m0, n_full, n_kv,
              WG: gl.constexpr, CNUM_WARPS: gl.constexpr, CAUSAL: gl.constexpr, NUM_BUF: gl.constexpr,
              SELF_LOAD: gl.constexpr, PINGPONG: gl.constexpr, OVERLAP: gl.constexpr):
    """One consumer partition: BLOCK_Q query rows (q_smem.index(WG)) against all its key blocks."""
    BLOCK_Q: gl.constexpr = q_desc.block_type.shape[0]
    BLOCK_KV: gl.constexpr = k_desc.block_type.shape[0]
    D: gl.constexpr = q_desc.block_type.shape[1]
    s_layout: gl.constexpr = _mma_layout(CNUM_WARPS, BLOCK_KV)
    o_layout: gl.constexpr = _mma_layout(CNUM_WARPS, D)
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)

    offs_m = seq_m0 + WG * BLOCK_Q + gl.arange(0, BLOCK_Q, layout=row_layout)
    m_i = gl.full([BLOCK_Q], -float("inf"), gl.float32, row_layout)
    l_i = gl.full([BLOCK_Q], 0.0, gl.float32, row_layout)
    acc = gl.zeros([BLOCK_Q, D], gl.float32, o_layout)
    s_zero = gl.zeros([BLOCK_Q, BLOCK_KV], gl.float32, s_layout)

    if SELF_LOAD:
        # one partition: Q, then K/V of the first NUM_BUF - 1 blocks, in flight before the loop
        mbarrier.expect(q_ready, q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [q_row, 0], q_ready, q_smem.index(WG))
        for i in gl.static_range(NUM_BUF - 1):
            _issue_kv(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, kv_row0, i, NUM_BUF, i < n_kv)
    mbarrier.wait(q_ready, 0)
    q = q_smem.index(WG)

    if OVERLAP:
        t = 0
        _turn_wait(turn, t, WG, PINGPONG)
        mbarrier.wait(k_ready.index(0), 0)
        s_tok = warpgroup_mma(q, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        _turn_pass(turn, WG, PINGPONG)
        s = warpgroup_mma_wait(0, deps=(s_tok, ))
        mbarrier.arrive(k_empty.index(0))
        p, alpha, m_i, l_i = _step_softmax(s, m_i, l_i, qk_scale, offs_m, 0, n_full, CAUSAL, s_layout, BLOCK_KV)
        for j in range(n_kv - 1):
            t += 1
            slot = j % NUM_BUF
            nslot = (j + 1) % NUM_BUF
            p_op = gl.convert_layout(p.to(gl.bfloat16), p_layout)
            _turn_wait(turn, t, WG, PINGPONG)
            mbarrier.wait(k_ready.index(nslot), ((j + 1) // NUM_BUF) & 1)
            s_tok = warpgroup_mma(q, k_smem.index(nslot).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            mbarrier.wait(v_ready.index(slot), (j // NUM_BUF) & 1)
            acc = warpgroup_mma(p_op, v_smem.index(slot), acc, is_async=True)
            _turn_pass(turn, WG, PINGPONG)
            # the older group (S_{j+1}) is done; P_j V_j may still run while the softmax below does
            s = warpgroup_mma_wait(1, deps=(s_tok, ))
            mbarrier.arrive(k_empty.index(nslot))
            p, alpha, m_i, l_i = _step_softmax(s, m_i, l_i, qk_scale, offs_m, j + 1, n_full, CAUSAL, s_layout,
                                               BLOCK_KV)
            acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))
            mbarrier.arrive(v_empty.index(slot))
            acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
        last = n_kv - 1
        slot = last % NUM_BUF
        p_op = gl.convert_layout(p.to(gl.bfloat16), p_layout)
        mbarrier.wait(v_ready.index(slot), (last // NUM_BUF) & 1)
        acc = warpgroup_mma(p_op, v_smem.index(slot), acc, is_async=True)
        acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))
        mbarrier.arrive(v_empty.index(slot))
    else:
        for j in range(n_kv):
            slot = j % NUM_BUF
            phase = (j // NUM_BUF) & 1
            if SELF_LOAD:
                # refill the slot that block j - 1 used (its wgmmas were waited for)
                nj = j + NUM_BUF - 1
                _issue_kv(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, kv_row0, nj, NUM_BUF, nj < n_kv)
            _turn_wait(turn, j, WG, PINGPONG)
            mbarrier.wait(k_ready.index(slot), phase)
            s_tok = warpgroup_mma(q, k_smem.index(slot).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            _turn_pass(turn, WG, PINGPONG)
            s = warpgroup_mma_wait(0, deps=(s_tok, ))
            if not SELF_LOAD:
                mbarrier.arrive(k_empty.index(slot))
            p, alpha, m_i, l_i = _step_softmax(s, m_i, l_i, qk_scale, offs_m, j, n_full, CAUSAL, s_layout, BLOCK_KV)
            acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
            p_op = gl.convert_layout(p.to(gl.bfloat16), p_layout)
            mbarrier.wait(v_ready.index(slot), phase)
            acc = warpgroup_mma(p_op, v_smem.index(slot), acc, is_async=True)
            acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))
            if not SELF_LOAD:
                mbarrier.arrive(v_empty.index(slot))

    l_safe = gl.where(l_i == 0.0, 1.0, l_i)
    o = acc / gl.convert_layout(l_safe, gl.SliceLayout(1, o_layout))[:, None]
    # Q's tile is dead (every wgmma reading it was waited for): stage O there for the TMA store
    q.store(o.to(gl.bfloat16))
    fence_async_shared()
    tma.async_copy_shared_to_global(o_desc, [q_row, 0], q)
    tma.store_wait(0)


@gluon.jit
def _producer(q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, k_empty, v_empty, q_row0,
              kv_row0, n_kv, NUM_CONS: gl.constexpr, NUM_BUF: gl.constexpr):
    """One warp: Q once, then K and V block by block into their rings, each slot refilled once every
    consumer released it (K slots free as soon as S is computed, V slots after P V)."""
    BLOCK_Q: gl.constexpr = q_desc.block_type.shape[0]
    BLOCK_KV: gl.constexpr = k_desc.block_type.shape[0]
    mbarrier.expect(q_ready, NUM_CONS * q_desc.block_type.nbytes)
    for c in gl.static_range(NUM_CONS):
        tma.async_copy_global_to_shared(q_desc, [q_row0 + c * BLOCK_Q, 0], q_ready, q_smem.index(c))
    for j in range(n_kv):
        slot = j % NUM_BUF
        # a fresh mbarrier passes a wait on parity 1, so the first NUM_BUF fills go ahead at once
        phase = ((j // NUM_BUF) & 1) ^ 1
        mbarrier.wait(k_empty.index(slot), phase)
        mbarrier.expect(k_ready.index(slot), k_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [kv_row0 + j * BLOCK_KV, 0], k_ready.index(slot), k_smem.index(slot))
        mbarrier.wait(v_empty.index(slot), phase)
        mbarrier.expect(v_ready.index(slot), v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(v_desc, [kv_row0 + j * BLOCK_KV, 0], v_ready.index(slot), v_smem.index(slot))


@gluon.jit
def attn_fwd_kernel(q_desc, k_desc, v_desc, o_desc, qk_scale, S,
                    CAUSAL: gl.constexpr, NUM_CONS: gl.constexpr, NUM_BUF: gl.constexpr, WS: gl.constexpr,
                    PINGPONG: gl.constexpr, OVERLAP: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                    CONSUMER_REGS: gl.constexpr, num_warps: gl.constexpr):
    BLOCK_Q: gl.constexpr = q_desc.block_type.shape[0]
    BLOCK_KV: gl.constexpr = k_desc.block_type.shape[0]
    BLOCK_M: gl.constexpr = NUM_CONS * BLOCK_Q
    pid_m = gl.program_id(0)
    bh = gl.program_id(1)
    if CAUSAL:
        # the longest programs (last query blocks) start first
        m_blk = gl.num_programs(0) - 1 - pid_m
        n_full = (m_blk * BLOCK_M) // BLOCK_KV
        n_kv = ((m_blk + 1) * BLOCK_M) // BLOCK_KV
    else:
        m_blk = pid_m
        n_full = S // BLOCK_KV
        n_kv = n_full
    kv_row0 = bh * S
    seq_m0 = m_blk * BLOCK_M
    q_row0 = kv_row0 + seq_m0

    q_smem = gl.allocate_shared_memory(q_desc.dtype, [NUM_CONS] + q_desc.block_type.shape, q_desc.layout)
    k_smem = gl.allocate_shared_memory(k_desc.dtype, [NUM_BUF] + k_desc.block_type.shape, k_desc.layout)
    v_smem = gl.allocate_shared_memory(v_desc.dtype, [NUM_BUF] + v_desc.block_type.shape, v_desc.layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_ready, count=1)
    for i in gl.static_range(NUM_BUF):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=NUM_CONS)
        mbarrier.init(v_empty.index(i), count=NUM_CONS)
    for i in gl.static_range(2):
        mbarrier.init(turn.index(i), count=1)
    fence_async_shared()

    if WS:
        if NUM_CONS == 2:
            gl.warp_specialize([
                (_consumer, (q_desc, k_desc, v_desc, o_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready,
                             k_empty, v_empty, turn, qk_scale, q_row0, kv_row0, seq_m0, n_full, n_kv,
                             0, num_warps, CAUSAL, NUM_BUF, False, PINGPONG, OVERLAP)),
                (_consumer, (q_desc, k_desc, v_desc, o_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready,
                             k_empty, v_empty, turn, qk_scale, q_row0 + BLOCK_Q, kv_row0, seq_m0, n_full, n_kv,
                             1, 4, CAUSAL, NUM_BUF, False, PINGPONG, OVERLAP)),
                (_producer, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, k_empty,
                             v_empty, q_row0, kv_row0, n_kv, NUM_CONS, NUM_BUF)),
            ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])
        else:
            gl.warp_specialize([
                (_consumer, (q_desc, k_desc, v_desc, o_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready,
                             k_empty, v_empty, turn, qk_scale, q_row0, kv_row0, seq_m0, n_full, n_kv,
                             0, num_warps, CAUSAL, NUM_BUF, False, False, OVERLAP)),
                (_producer, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, k_empty,
                             v_empty, q_row0, kv_row0, n_kv, NUM_CONS, NUM_BUF)),
            ], [1], [PRODUCER_REGS])
    else:
        _consumer(q_desc, k_desc, v_desc, o_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, k_empty, v_empty,
                  turn, qk_scale, q_row0, kv_row0, seq_m0, n_full, n_kv, 0, num_warps, CAUSAL, NUM_BUF, True, False,
                  False)


# ----------------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Variant:
    """One schedule. cons=1: one 8-warp consumer on 128 rows; cons=2: two 4-warp consumers, 64 rows each."""
    name: str
    ws: bool
    cons: int
    pingpong: bool = False
    overlap: bool = False
    num_buf: int = 2
    producer_regs: int = 24
    consumer_regs: int = 240
    maxnreg: int | None = None

    @property
    def block_q(self) -> int:
        return 128 if self.cons == 1 else 64

    @property
    def num_warps(self) -> int:
        return 8 if self.cons == 1 else 4


# (a) -> (e): each adds one schedule element to the one before (c0 isolates the split into two partitions).
VARIANTS = {
    v.name: v for v in [
        Variant("a_single", ws=False, cons=1),
        Variant("b_producer", ws=True, cons=1, maxnreg=168),
        Variant("c0_two_wg", ws=True, cons=2, maxnreg=168),
        Variant("c_pingpong", ws=True, cons=2, pingpong=True, maxnreg=168),
        Variant("d0_two_wg_overlap", ws=True, cons=2, overlap=True, maxnreg=168),
        Variant("d_pingpong_overlap", ws=True, cons=2, pingpong=True, overlap=True, maxnreg=168),
        Variant("e_pingpong_overlap_buf3", ws=True, cons=2, pingpong=True, overlap=True, num_buf=3, maxnreg=168),
        Variant("b2_producer_overlap", ws=True, cons=1, overlap=True, maxnreg=168),
    ]
}


def _smem_layout(block_shape):
    return gl.NVMMASharedLayout.get_default_for(block_shape, gl.bfloat16)


def _constexprs(v: Variant, causal: bool) -> dict:
    return dict(CAUSAL=causal, NUM_CONS=v.cons, NUM_BUF=v.num_buf, WS=v.ws, PINGPONG=v.pingpong,
                OVERLAP=v.overlap, PRODUCER_REGS=v.producer_regs, CONSUMER_REGS=v.consumer_regs,
                num_warps=v.num_warps)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, variant: str = "d_pingpong_overlap",
              scale: float | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA forward (no GQA, no mask beyond causal) with the named schedule. bf16, D=128, S % 128 == 0.
    ``out`` (optional, q's shape and dtype, contiguous) receives the result."""
    var = VARIANTS[variant]
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype != torch.bfloat16 or t.dim() != 4 or not t.is_contiguous():
            raise ValueError(f"{name}: expected a contiguous 4-D bf16 tensor, got {t.dtype} {tuple(t.shape)}")
    if q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v: shapes must match (no GQA here), got {q.shape}, {k.shape}, {v.shape}")
    b, h, s, d = q.shape
    if d != HEAD_D or s % 128:
        raise ValueError(f"q: the probe needs D={HEAD_D} and S % 128 == 0, got S={s}, D={d}")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    if out is not None and (out.shape != q.shape or out.dtype != q.dtype or not out.is_contiguous()):
        raise ValueError(f"out: expected a contiguous {q.dtype} tensor of shape {tuple(q.shape)}")
    o = torch.empty_like(q) if out is None else out
    q2, k2, v2, o2 = (t.view(b * h * s, d) for t in (q, k, v, o))
    qo_block = [var.block_q, d]
    kv_block = [BLOCK_N, d]
    q_desc = TensorDescriptor.from_tensor(q2, qo_block, _smem_layout(qo_block))
    o_desc = TensorDescriptor.from_tensor(o2, qo_block, _smem_layout(qo_block))
    k_desc = TensorDescriptor.from_tensor(k2, kv_block, _smem_layout(kv_block))
    v_desc = TensorDescriptor.from_tensor(v2, kv_block, _smem_layout(kv_block))
    block_m = var.cons * var.block_q
    grid = (s // block_m, b * h)
    opts = {} if var.maxnreg is None else {"maxnreg": var.maxnreg}
    ce = _constexprs(var, causal)
    nw = ce.pop("num_warps")
    attn_fwd_kernel[grid](q_desc, k_desc, v_desc, o_desc, scale * LOG2E, s, **ce, num_warps=nw, **opts)
    return o


def desc_type(block) -> str:
    """The signature type of a bf16 TMA descriptor argument with block ``block`` (offline builds)."""
    return f"tensordesc<bf16[{block[0]}, {block[1]}],{_smem_layout(block)!r}>"


def build_in_fresh_process(module: str, variant: str, causal: bool):
    """A probe module's ``compile_sm90(variant, causal)`` run as ``python -m module --compile-sm90`` with
    TRITON_INTERPRET=0. Under TRITON_INTERPRET=1 (the CPU tests) Triton's own jit helpers (``tl.max``...) were
    made interpreter functions when triton was imported, and a real compile cannot call them (a warm Triton
    cache hid this). Returns what ``sm90_json`` printed, as namespaces (``.asm``, ``.metadata``)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TRITON_INTERPRET": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", module, "--compile-sm90", f"{variant},{int(causal)}"]
    r = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"compile_sm90({variant!r}, causal={causal}) failed:\n{r.stderr[-4000:]}")
    built = json.loads(r.stdout.splitlines()[-1])
    return types.SimpleNamespace(asm=built["asm"], metadata=types.SimpleNamespace(**built["metadata"]))


def sm90_json(kernel) -> str:
    """A compiled kernel's TTGIR, PTX and metadata (shared memory, warps; spills and registers where the build
    reports them) as the JSON line ``--compile-sm90`` prints."""
    meta = ("shared", "num_warps", "n_spills", "n_regs")
    return json.dumps({"asm": {n: kernel.asm[n] for n in ("ttgir", "ptx")},
                       "metadata": {n: getattr(kernel.metadata, n) for n in meta if hasattr(kernel.metadata, n)}})


def compile_sm90(variant: str, causal: bool):
    """Compile a variant for sm_90 without a GPU (Triton's GluonASTSource); returns the CompiledKernel
    (``.asm["ttgir"]``, ``.asm["ptx"]``, ``.metadata``); under TRITON_INTERPRET=1 in a fresh process
    (``build_in_fresh_process``)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return build_in_fresh_process("bench.gluon_attention", variant, causal)
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    var = VARIANTS[variant]
    qo, kv = desc_type([var.block_q, HEAD_D]), desc_type([BLOCK_N, HEAD_D])
    signature = {"q_desc": qo, "k_desc": kv, "v_desc": kv, "o_desc": qo, "qk_scale": "fp32", "S": "i32"}
    ce = _constexprs(var, causal)
    signature.update({name: "constexpr" for name in ce})
    src = GluonASTSource(attn_fwd_kernel, signature, ce)
    options = {"num_warps": var.num_warps}
    if var.maxnreg is not None:
        options["maxnreg"] = var.maxnreg
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


# ----------------------------------------------------------------------------------------------------
# GPU session: correctness, then timing in the harness's way
# ----------------------------------------------------------------------------------------------------

SHAPES = [(4, 16, 4096, 128), (1, 16, 16384, 128)]


def work(b: int, h: int, s: int, d: int, causal: bool) -> float:
    """Forward FLOPs as helion_ops.ops.attention.work counts them: 4*B*H*S*S*D, halved when causal."""
    f = 4.0 * b * h * s * s * d
    return f / 2 if causal else f


def _sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def run(q, k, v, causal, out=None):
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return run


def _check(fn, causal, gen, b=2, h=4, s=1024) -> dict:
    """Max abs error and relative Frobenius error against fp32 SDPA on fresh randn inputs; our kernels
    write into a NaN-poisoned output, so an unwritten element fails."""
    q, k, v = (torch.randn(b, h, s, HEAD_D, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    poisoned = torch.full_like(q, float("nan"))
    out = fn(q, k, v, causal, poisoned).float()
    err = (out - ref).abs().max().item()
    rel = ((out - ref).norm() / ref.norm()).item()
    ok = bool(torch.isfinite(out).all().item()) and err < 2e-2 and rel < 1e-2
    return {"max_abs_err": err, "rel_err": rel, "ok": ok, "check_shape": [b, h, s, HEAD_D]}


def dsl_attention(backend: str):
    """The DSL catalog's forward kernel (``helion_ops.ops.attention.attn_fwd``, as it is) under a code
    generation backend: "gluon" (Config backend="gluon", two consumer warpgroups of 64 rows, 128x128
    tiles), "gluon_overlap" (the same with gluon_overlap) or "triton" (the op's policy with the Gluon backend
    off, ``attention.triton_config``: what the catalog ran before it selected Gluon on sm_90).
    Same call shape as the probe's variants."""
    from helion_ops.dsl import Config
    from helion_ops.ops import attention as A

    def run(q, k, v, causal, out=None):
        args = (q, k, v, causal, LOG2E / math.sqrt(q.shape[-1]))
        bound = A.attn_fwd.bind(args)
        if backend.startswith("gluon"):
            cfg = Config(block_sizes=[128, 128], backend="gluon", gluon_consumers=2, grid_reverses=[causal],
                         gluon_overlap=backend == "gluon_overlap")
        else:
            cfg = A.triton_config(args)
        return bound.run(bound.normalize(cfg), *args)[0]
    return run


DSL_IMPLS = ("dsl_gluon", "dsl_gluon_overlap", "dsl_triton")
# the Configs bwd_session times: the catalog's Triton choice (None), and the op's Gluon Config
# (_attention_gluon.config_bwd) with these keys over it
BWD_IMPLS = {"triton": None, "gluon_c2": {}, "gluon_c2_serial": {"gluon_mma_ahead": False}}
BWD_MATMULS = {"attn_bwd_dq": 3, "attn_bwd_dkdv": 4}   # the forward counts two


def bwd_configs(kernel: str, args: tuple) -> dict:
    """The Configs ``bwd_session`` times the DSL's backward ``kernel`` under, on ``args``, named ``dq_*`` / ``dkdv_*``:
    the catalog's Triton choice (``attention.triton_config``) and the op's Gluon Config built from it
    (``_attention_gluon.config_bwd``, the catalog's choice on sm_90, dP's wgmma issued ahead: ``*_gluon_c2``) with
    ``BWD_IMPLS``' keys (``*_gluon_c2_serial``: each wgmma waited for before the next is issued)."""
    from helion_ops.dsl import Config
    from helion_ops.ops import _attention_gluon as G, attention as A

    bound, tri = A.KERNELS[kernel].bind(args), A.triton_config(args, kernel)
    gluon = dict(G.config_bwd(kernel, tri))
    return {f"{kernel.split('_')[-1]}_{name}": bound.normalize(tri if kw is None else Config(**{**gluon, **kw}))
            for name, kw in BWD_IMPLS.items()}


def bwd_session(kernel: str, gen, quick: bool = False) -> list:
    """A backward kernel alone (dQ: ``QK^T``, ``dP``, ``dQ``; dK/dV: ``P^T``, ``dP^T``, ``dV``, ``dK``) under each of
    ``bwd_configs``, at SHAPES, causal and not, TFLOP/s and the ratio to the catalog's Triton Config: whether warp
    specialization lifts the backward's matmul rate as it lifted the forward's
    (docs/decisions/attention-backward.md). Each result is checked against the Triton Config's (the catalog's,
    covered by its tests)."""
    from bench.timing import gpu_bench
    from helion_ops.ops import attention as A

    rows = []
    for (b, h, s, d) in SHAPES[:1] if quick else SHAPES:
        for causal in (False, True):
            q, k, v, do = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, generator=gen)
                           for _ in range(4))
            qk_scale = LOG2E / math.sqrt(d)
            fwd = (q, k, v, causal, qk_scale)
            o, lse = A.attn_fwd.bind(fwd).run(A.triton_config(fwd), *fwd)
            delta = (o.float() * do.float()).sum(-1)
            args = (q, k, v, do, lse, delta, causal, qk_scale, 1 / math.sqrt(d))
            bound, ref, base = A.KERNELS[kernel].bind(args), None, None
            flops = BWD_MATMULS[kernel] / 2 * work(b, h, s, d, causal)
            for name, cfg in bwd_configs(kernel, args).items():
                row = {"impl": name, "shape": [b, h, s, d], "causal": causal}
                try:
                    got = bound.run(cfg, *args)
                    got = got if isinstance(got, tuple) else (got,)
                    ref = got if ref is None else ref
                    row["rel_err"] = max(((g.float() - r.float()).abs().max() / r.float().abs().max()).item()
                                         for g, r in zip(got, ref))
                    if not (row["rel_err"] < 2e-2):
                        raise AssertionError(f"differs from the Triton Config's: {row['rel_err']:.3g}")
                    row["ms"] = gpu_bench(lambda: bound.run(cfg, *args))
                    row["tflops"] = flops / row["ms"] / 1e9
                    base = row["ms"] if base is None else base
                    row["vs_triton"] = base / row["ms"]
                except Exception as e:  # a Config that fails to build or run is reported, not fatal
                    row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                print(f"{kernel} {name:22s} {b}x{h}x{s}x{d} causal={causal}: {row}", flush=True)
                rows.append(row)
            del q, k, v, do, o, lse, delta
    return rows


def run_session(variants, quick: bool = False, dsl: bool = False) -> dict:
    from torch.nn.attention import SDPBackend

    from bench.timing import gpu_bench

    seed = int.from_bytes(os.urandom(4), "little")  # fresh inputs every run; recorded for a rerun
    gen = torch.Generator(device="cuda").manual_seed(seed)
    baselines = {"cudnn": _sdpa(SDPBackend.CUDNN_ATTENTION), "flash": _sdpa(SDPBackend.FLASH_ATTENTION)}
    impls = dict(baselines)
    for name in variants:
        impls[name] = (lambda n: (lambda q, k, v, c, out=None: attention(q, k, v, c, n, out=out)))(name)
    if dsl:
        impls.update({name: dsl_attention(name[4:]) for name in DSL_IMPLS})

    checks, rows = {}, []
    for name, fn in impls.items():
        for causal in (False, True):
            key = f"{name}/{'causal' if causal else 'full'}"
            try:
                checks[key] = _check(fn, causal, gen)
            except Exception as e:  # a variant that fails to compile or run is reported, not fatal
                checks[key] = {"ok": False, "error": f"{type(e).__name__}: {str(e)[:400]}"}
            print(f"check {key:32s} {checks[key]}", flush=True)

    shapes = SHAPES[:1] if quick else SHAPES
    for (b, h, s, d) in shapes:
        for causal in (False, True):
            q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
            flops = work(b, h, s, d, causal)
            times = {}
            for name, fn in impls.items():
                if not checks.get(f"{name}/{'causal' if causal else 'full'}", {}).get("ok"):
                    continue
                try:
                    ms = gpu_bench(lambda: fn(q, k, v, causal))
                except Exception as e:
                    print(f"time {name}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                    continue
                times[name] = ms
            for name, ms in times.items():
                row = {"impl": name, "shape": [b, h, s, d], "causal": causal, "ms": ms,
                       "tflops": flops / ms / 1e9}
                if "cudnn" in times:
                    row["vs_cudnn"] = times["cudnn"] / ms
                if "flash" in times:
                    row["vs_flash"] = times["flash"] / ms
                rows.append(row)
            del q, k, v
    return {"seed": seed, "checks": checks, "timings": rows}


def _env() -> dict:
    from bench.gpu_info import info

    props = torch.cuda.get_device_properties(0)
    return {**info(), "sm_count": props.multi_processor_count, "cudnn": torch.backends.cudnn.version()}


def _table(result: dict) -> str:
    lines = [f"{'impl':22s} {'shape':>18s} {'causal':>6s} {'ms':>8s} {'TFLOP/s':>8s} {'x cuDNN':>8s} {'x flash':>8s}"]
    for r in result["timings"]:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"{r['impl']:22s} {shape:>18s} {str(r['causal']):>6s} {r['ms']:8.3f} {r['tflops']:8.1f} "
                     f"{r.get('vs_cudnn', float('nan')):8.3f} {r.get('vs_flash', float('nan')):8.3f}")
    for kernel in BWD_MATMULS:
        if not result.get(kernel):
            continue
        lines.append(f"{kernel:22s} {'shape':>18s} {'causal':>6s} {'ms':>8s} {'TFLOP/s':>8s} {'x Triton':>8s}")
        for r in result[kernel]:
            shape = "x".join(map(str, r["shape"]))
            lines.append(f"{r['impl']:22s} {shape:>18s} {str(r['causal']):>6s} " + (
                f"{r['ms']:8.3f} {r['tflops']:8.1f} {r['vs_triton']:8.3f}" if "ms" in r else r.get("error", "")))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON file for the results (default: $OUT/gluon_attention.json); "
                    "an existing file gains this run under 'runs'")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    ap.add_argument("--quick", action="store_true", help="time the first shape only")
    ap.add_argument("--dsl", action="store_true", help="also the DSL's attn_fwd through its Gluon backend "
                    "(dsl_gluon, dsl_gluon_overlap) and its Triton backend (dsl_triton)")
    ap.add_argument("--dsl-bwd", default="", metavar="KERNELS", help="also the DSL's backward kernels alone "
                    "(comma-separated: attn_bwd_dq, attn_bwd_dkdv), the catalog's Triton Config against the Gluon "
                    "backend's (BWD_IMPLS)")
    ap.add_argument("--compile-sm90", default=None, metavar="VARIANT,CAUSAL",
                    help="build one variant for sm_90 (no GPU needed) and print its TTGIR, PTX and metadata as JSON")
    args = ap.parse_args(argv)
    if args.compile_sm90:
        variant, causal = args.compile_sm90.split(",")
        print(sm90_json(compile_sm90(variant, causal == "1")))
        return 0
    names = [n for n in args.variants.split(",") if n]
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        ap.error(f"--variants: unknown {bad}; choose from {list(VARIANTS)}")
    if not torch.cuda.is_available():
        print("gluon_attention: needs a CUDA GPU (use compile_sm90 on CPU)", file=sys.stderr)
        return 2
    run = {"env": _env(), "variants": {n: dataclasses.asdict(VARIANTS[n]) for n in names}}
    run.update(run_session(names, quick=args.quick, dsl=args.dsl))
    for kernel in [k for k in args.dsl_bwd.split(",") if k]:
        if kernel not in BWD_MATMULS:
            ap.error(f"--dsl-bwd: unknown {kernel!r}; choose from {list(BWD_MATMULS)}")
        run[kernel] = bwd_session(kernel, torch.Generator(device="cuda").manual_seed(run["seed"] + 1), args.quick)
    out = args.out or os.path.join(os.environ.get("OUT", "."), "gluon_attention.json")
    doc = {"runs": []}
    if os.path.exists(out):
        with open(out) as f:
            doc = json.load(f)
    doc["runs"].append(run)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(_table(run))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
