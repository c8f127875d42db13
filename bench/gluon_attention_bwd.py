"""Ceiling probe for issue 22's backward: a hand-written, warp-specialized Gluon attention backward for sm_90.

Not part of the catalog. The catalog's backward runs two kernels (dK/dV, then dQ) that recompute ``S = Q K^T``
and ``dP = dO V^T`` for dQ: seven matmuls where cuDNN runs five, so it sits at 0.75x cuDNN although each kernel
runs its matmuls at cuDNN's rate (docs/decisions/attention-backward.md). Fusing dQ into dK/dV in a kernel that is
not warp-specialized lost on Triton 3.6 (its dQ accumulation waits in line with the matmuls). This probe asks
whether FlashAttention-3's schedule, written by hand in Gluon, runs the five-matmul backward at cuDNN's speed.

Layout: q, k, v, o, dO are ``[B, H, S, D]`` bf16, contiguous, seen by TMA as 2-D ``[B*H*S, D]``; D = 128,
S a multiple of 128, no GQA. One program owns ``BLOCK_N = 128`` keys of one (batch, head), split between two
consumer warpgroups of 64 keys each, and walks the query blocks of 64 rows (causal: from its diagonal on):

* a **producer** warp loads K and V once, then Q_j and dO_j into two-slot rings (ready/empty mbarriers, each
  slot released by both consumers);
* each **consumer** warpgroup computes, for its 64 keys, ``S^T = K Q_j^T``, ``P^T = exp2(S^T * scale*log2e -
  lse_j)`` (the forward's base-2 log-sum-exp), ``dV += P^T dO_j``, ``dP^T = V dO_j^T``, ``dS^T = P^T (dP^T -
  delta_j)``, ``dK += dS^T Q_j`` and its share of ``dQ_j = dS_j K`` (dS through shared memory, transposed by
  the wgmma's operand descriptor): five matmuls;
* dQ accumulates across the programs of a head in an fp32 buffer: ``dq="atomic"``, each consumer adds its share
  with relaxed atomic adds straight from its registers; ``dq="writer"``, the consumers drop their shares into
  shared memory and a **dQ-writer** warp sums the two and issues the atomic adds, so no consumer waits on them
  (Gluon 3.6 has no TMA reduce-add, FlashAttention-3's way). ``red_vec`` 2 or 4 issues sm_90's vector reductions
  (``red.global.add.v2/v4.f32``, inline PTX) instead of one 32-bit atomic per element.

A final elementwise pass scales dQ and casts it to bf16; ``delta = rowsum(dO * O)`` comes from the catalog's
``attn_bwd_preprocess``, lse from its forward. Both passes are timed with the kernel, as cuDNN's backward is
timed whole.

Run on a GPU: ``python -m bench.gluon_attention_bwd [--out FILE]`` checks every variant against fp32 autograd of
SDPA, then times the whole backward against SDPA-cuDNN's, SDPA-flash's and the catalog's
(``helion_ops.attention``) with the harness's ``gpu_bench``. On a CPU machine, ``compile_sm90`` builds a variant
for ``GPUTarget("cuda", 90, 32)`` (TTGIR, PTX, spills).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

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

from bench.gluon_attention import LOG2E, _env, _smem_layout, build_in_fresh_process, desc_type, sm90_json

HEAD_D = 128
BLOCK_N = 128   # keys per program (two consumers of 64)
BLOCK_M = 64    # queries per step
HALF_N = 64
# the same, for device code
_D, _BN, _BM, _HN = gl.constexpr(HEAD_D), gl.constexpr(BLOCK_N), gl.constexpr(BLOCK_M), gl.constexpr(HALF_N)


@gluon.constexpr_function
def _mma_layout(num_warps, n):
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, n, 16])


@gluon.jit
def _red_add(ptrs, x, VEC: gl.constexpr):
    """``*ptrs += x`` with relaxed reductions whose result nobody reads: ``VEC`` = 1 through ``gl.atomic_add`` (one
    32-bit reduction per element), 2 or 4 as sm_90's vector ``red.global.add.v{2,4}.f32``, one per VEC elements
    adjacent in memory and in the thread's registers (the layout's contiguous run must be a multiple of VEC)."""
    if VEC == 1:
        gl.atomic_add(ptrs, x, sem="relaxed")
    elif VEC == 2:
        gl.inline_asm_elementwise("red.global.add.v2.f32 [$2], {$4, $5};\n\tmov.b32 $0, 0;\n\tmov.b32 $1, 0;",
                                  "=r,=r,l,l,f,f", [ptrs.to(gl.int64, bitcast=True), x], dtype=gl.int32,
                                  is_pure=False, pack=2)
    else:
        gl.inline_asm_elementwise(
            "red.global.add.v4.f32 [$4], {$8, $9, $10, $11};\n\tmov.b32 $0, 0;\n\tmov.b32 $1, 0;\n\t"
            "mov.b32 $2, 0;\n\tmov.b32 $3, 0;", "=r,=r,=r,=r,l,l,l,l,f,f,f,f",
            [ptrs.to(gl.int64, bitcast=True), x], dtype=gl.int32, is_pure=False, pack=4)


@gluon.jit
def _consumer(k_smem, v_smem, q_smem, do_smem, ds_smem, dq_smem, q_ready, do_ready, q_empty, do_empty,
              ds_ready, ds_empty, dq_full, dq_empty, dk_desc, dv_desc, dq_acc_ptr, lse_ptr, delta_ptr, kv_ready,
              qk_scale, sm_scale, bh, S, n0, j0, n_q,
              WG: gl.constexpr, CAUSAL: gl.constexpr, DQ_WRITER: gl.constexpr, RED_VEC: gl.constexpr):
    """One warpgroup: keys ``n0 + WG*64 ..`` against query blocks j0 .. n_q - 1; its dQ share is the columns
    ``WG*64 ..`` of every query block (both warpgroups' dS, through shared memory, times K's column half), so
    each warpgroup holds dK, dV (64 registers each) and a 32-register dQ share."""
    s_layout: gl.constexpr = _mma_layout(4, _BM)          # [64 keys, 64 queries] (and dQ's [64, 64] share)
    a_layout: gl.constexpr = _mma_layout(4, _D)           # [64, 128] accumulators dK, dV
    op_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=a_layout, k_width=2)
    col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)

    k_w = k_smem.index(WG)
    v_w = v_smem.index(WG)
    offs_k = n0 + WG * _HN + gl.arange(0, _HN, layout=row_layout)
    s_zero = gl.zeros([_HN, _BM], gl.float32, s_layout)
    dk = gl.zeros([_HN, _D], gl.float32, a_layout)
    dv = gl.zeros([_HN, _D], gl.float32, a_layout)
    mbarrier.wait(kv_ready, 0)
    for it in range(n_q - j0):
        j = j0 + it
        slot = it % 2
        phase = (it // 2) & 1
        offs_q = j * _BM + gl.arange(0, _BM, layout=col_layout)
        lse = gl.load(lse_ptr + bh * S + offs_q)
        delta = gl.load(delta_ptr + bh * S + offs_q)
        mbarrier.wait(q_ready.index(slot), phase)
        q_j = q_smem.index(slot)
        st = warpgroup_mma(k_w, q_j.permute((1, 0)), s_zero, use_acc=False, is_async=True)
        st = warpgroup_mma_wait(0, deps=(st, ))
        pt = gl.exp2(st * qk_scale - lse[None, :])
        if CAUSAL:
            # only query blocks that start before the key block's end hold masked pairs
            if j * _BM < n0 + _BN:
                pt = gl.where(offs_k[:, None] <= offs_q[None, :], pt, 0.0)
        mbarrier.wait(do_ready.index(slot), phase)
        do_j = do_smem.index(slot)
        dpt = warpgroup_mma(v_w, do_j.permute((1, 0)), s_zero, use_acc=False, is_async=True)
        pt_op = gl.convert_layout(pt.to(gl.bfloat16), op_layout)
        dv = warpgroup_mma(pt_op, do_j, dv, is_async=True)
        # groups complete in order: dP^T is done, P^T dO may still run
        dpt = warpgroup_mma_wait(1, deps=(dpt, ))
        dst = (pt * (dpt - delta[None, :])).to(gl.bfloat16)
        dk = warpgroup_mma(gl.convert_layout(dst, op_layout), q_j, dk, is_async=True)
        # dS^T halves in slot `slot`: free once both warpgroups' dQ of two steps ago read them
        mbarrier.wait(ds_empty.index(slot), phase ^ 1)
        ds_smem.index(2 * slot + WG).store(dst)
        fence_async_shared()
        mbarrier.arrive(ds_ready.index(slot))
        mbarrier.wait(ds_ready.index(slot), phase)
        dq = warpgroup_mma(ds_smem.index(2 * slot).permute((1, 0)), k_smem.index(0).slice(WG * _HN, _HN, dim=1),
                           s_zero, use_acc=False, is_async=True)
        dq = warpgroup_mma(ds_smem.index(2 * slot + 1).permute((1, 0)), k_smem.index(1).slice(WG * _HN, _HN, dim=1),
                           dq, is_async=True)
        dv, dk, dq = warpgroup_mma_wait(0, deps=(dv, dk, dq))
        mbarrier.arrive(q_empty.index(slot))
        mbarrier.arrive(do_empty.index(slot))
        mbarrier.arrive(ds_empty.index(slot))
        if DQ_WRITER:
            # the writer has drained this warpgroup's share of the step before
            mbarrier.wait(dq_empty.index(WG), (it & 1) ^ 1)
            dq_smem.index(WG).store(dq)
            mbarrier.arrive(dq_full.index(WG))
        else:
            rows = bh * S + j * _BM + gl.arange(0, _BM, layout=row_layout)
            cols = WG * _HN + gl.arange(0, _HN, layout=col_layout)
            # the wgmma accumulator layout holds column pairs: at most v2 reductions
            _red_add(dq_acc_ptr + rows[:, None] * _D + cols[None, :], dq, RED_VEC)
    # K and V are dead once the other warpgroup's last dQ share (which reads both K halves) is done: stage dK
    # (scaled) and dV there for the TMA stores
    last = n_q - j0 - 1
    mbarrier.wait(ds_empty.index(last % 2), (last // 2) & 1)
    k_w.store((dk * sm_scale).to(gl.bfloat16))
    v_w.store(dv.to(gl.bfloat16))
    fence_async_shared()
    tma.async_copy_shared_to_global(dk_desc, [bh * S + n0 + WG * _HN, 0], k_w)
    tma.async_copy_shared_to_global(dv_desc, [bh * S + n0 + WG * _HN, 0], v_w)
    tma.store_wait(0)


@gluon.jit
def _producer(k_desc, v_desc, q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready, do_ready,
              q_empty, do_empty, bh, S, n0, j0, n_q):
    """One warp: K and V once (two 64-key halves each), then Q_j and dO_j into their two-slot rings."""
    mbarrier.expect(kv_ready, 4 * k_desc.block_type.nbytes)
    for w in gl.static_range(2):
        tma.async_copy_global_to_shared(k_desc, [bh * S + n0 + w * _HN, 0], kv_ready, k_smem.index(w))
        tma.async_copy_global_to_shared(v_desc, [bh * S + n0 + w * _HN, 0], kv_ready, v_smem.index(w))
    for it in range(n_q - j0):
        row = bh * S + (j0 + it) * _BM
        slot = it % 2
        phase = ((it // 2) & 1) ^ 1   # a fresh mbarrier passes a wait on parity 1
        mbarrier.wait(q_empty.index(slot), phase)
        mbarrier.expect(q_ready.index(slot), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [row, 0], q_ready.index(slot), q_smem.index(slot))
        mbarrier.wait(do_empty.index(slot), phase)
        mbarrier.expect(do_ready.index(slot), do_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(do_desc, [row, 0], do_ready.index(slot), do_smem.index(slot))


@gluon.jit
def _dq_writer(dq_smem, dq_full, dq_empty, dq_acc_ptr, bh, S, j0, n_q, RED_VEC: gl.constexpr):
    """One warp: per query block, each consumer's dQ share ([64, 64] fp32) added to the fp32 buffer, 2 rows at a
    time, so no consumer waits on the atomics."""
    CH: gl.constexpr = 2
    layout: gl.constexpr = gl.BlockedLayout([1, 4], [2, 16], [1, 1], [1, 0])
    rows = gl.arange(0, CH, layout=gl.SliceLayout(1, layout))
    cols = gl.arange(0, _HN, layout=gl.SliceLayout(0, layout))
    for it in range(n_q - j0):
        base = dq_acc_ptr + (bh * S + (j0 + it) * _BM) * _D
        for w in gl.static_range(2):
            mbarrier.wait(dq_full.index(w), it & 1)
            for c in gl.static_range(_BM // CH):
                x = dq_smem.index(w).slice(c * CH, CH).load(layout)
                _red_add(base + (c * CH + rows)[:, None] * _D + (w * _HN + cols)[None, :], x, RED_VEC)
            mbarrier.arrive(dq_empty.index(w))


@gluon.jit
def attn_bwd_kernel(k_desc, v_desc, q_desc, do_desc, dk_desc, dv_desc, dq_acc_ptr, lse_ptr, delta_ptr,
                    qk_scale, sm_scale, S,
                    CAUSAL: gl.constexpr, DQ_WRITER: gl.constexpr, RED_VEC: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                    CONSUMER_REGS: gl.constexpr, WRITER_REGS: gl.constexpr):
    pid_n = gl.program_id(0)   # causal: the longest programs (first key blocks) start first
    bh = gl.program_id(1)
    n0 = pid_n * _BN
    n_q = S // _BM
    j0 = n0 // _BM if CAUSAL else 0

    k_smem = gl.allocate_shared_memory(k_desc.dtype, [2] + k_desc.block_type.shape, k_desc.layout)
    v_smem = gl.allocate_shared_memory(v_desc.dtype, [2] + v_desc.block_type.shape, v_desc.layout)
    q_smem = gl.allocate_shared_memory(q_desc.dtype, [2] + q_desc.block_type.shape, q_desc.layout)
    do_smem = gl.allocate_shared_memory(do_desc.dtype, [2] + do_desc.block_type.shape, do_desc.layout)
    # dS^T halves of both warpgroups, two steps deep: [slot * 2 + warpgroup]
    ds_smem = gl.allocate_shared_memory(gl.bfloat16, [4, _HN, _BM],
                                        gl.NVMMASharedLayout.get_default_for([_HN, _BM], gl.bfloat16))
    if DQ_WRITER:
        dq_smem = gl.allocate_shared_memory(gl.float32, [2, _BM, _HN],
                                            gl.SwizzledSharedLayout(1, 1, 1, order=[1, 0]))
    else:
        dq_smem = ds_smem
    kv_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    q_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    do_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    do_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    ds_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    ds_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    dq_full = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    dq_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_ready, count=1)
    for i in gl.static_range(2):
        mbarrier.init(q_ready.index(i), count=1)
        mbarrier.init(do_ready.index(i), count=1)
        mbarrier.init(q_empty.index(i), count=2)
        mbarrier.init(do_empty.index(i), count=2)
        mbarrier.init(ds_ready.index(i), count=2)
        mbarrier.init(ds_empty.index(i), count=2)
        mbarrier.init(dq_full.index(i), count=1)
        mbarrier.init(dq_empty.index(i), count=1)
    fence_async_shared()

    # Gluon's frontend takes each partition's arguments as a literal tuple (a tuple sum loses the constexprs)
    if DQ_WRITER:
        gl.warp_specialize([
            (_consumer, (k_smem, v_smem, q_smem, do_smem, ds_smem, dq_smem, q_ready, do_ready, q_empty, do_empty,
                         ds_ready, ds_empty, dq_full, dq_empty, dk_desc, dv_desc, dq_acc_ptr, lse_ptr, delta_ptr,
                         kv_ready, qk_scale, sm_scale, bh, S, n0, j0, n_q, 0, CAUSAL, DQ_WRITER, RED_VEC)),
            (_consumer, (k_smem, v_smem, q_smem, do_smem, ds_smem, dq_smem, q_ready, do_ready, q_empty, do_empty,
                         ds_ready, ds_empty, dq_full, dq_empty, dk_desc, dv_desc, dq_acc_ptr, lse_ptr, delta_ptr,
                         kv_ready, qk_scale, sm_scale, bh, S, n0, j0, n_q, 1, CAUSAL, DQ_WRITER, RED_VEC)),
            (_producer, (k_desc, v_desc, q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready,
                         do_ready, q_empty, do_empty, bh, S, n0, j0, n_q)),
            (_dq_writer, (dq_smem, dq_full, dq_empty, dq_acc_ptr, bh, S, j0, n_q, RED_VEC)),
        ], [4, 1, 1], [CONSUMER_REGS, PRODUCER_REGS, WRITER_REGS])
    else:
        gl.warp_specialize([
            (_consumer, (k_smem, v_smem, q_smem, do_smem, ds_smem, dq_smem, q_ready, do_ready, q_empty, do_empty,
                         ds_ready, ds_empty, dq_full, dq_empty, dk_desc, dv_desc, dq_acc_ptr, lse_ptr, delta_ptr,
                         kv_ready, qk_scale, sm_scale, bh, S, n0, j0, n_q, 0, CAUSAL, DQ_WRITER, RED_VEC)),
            (_consumer, (k_smem, v_smem, q_smem, do_smem, ds_smem, dq_smem, q_ready, do_ready, q_empty, do_empty,
                         ds_ready, ds_empty, dq_full, dq_empty, dk_desc, dv_desc, dq_acc_ptr, lse_ptr, delta_ptr,
                         kv_ready, qk_scale, sm_scale, bh, S, n0, j0, n_q, 1, CAUSAL, DQ_WRITER, RED_VEC)),
            (_producer, (k_desc, v_desc, q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready,
                         do_ready, q_empty, do_empty, bh, S, n0, j0, n_q)),
        ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])


@gluon.jit
def dq_convert_kernel(dq_acc_ptr, dq_ptr, sm_scale, n, BLOCK: gl.constexpr):
    """dQ = sm_scale * the fp32 accumulator, cast to bf16."""
    layout: gl.constexpr = gl.BlockedLayout([8], [32], [4], [0])
    offs = gl.program_id(0) * BLOCK + gl.arange(0, BLOCK, layout=layout)
    mask = offs < n
    x = gl.load(dq_acc_ptr + offs, mask=mask)
    gl.store(dq_ptr + offs, (x * sm_scale).to(gl.bfloat16), mask=mask)


# ----------------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    dq: str                     # "atomic" or "writer"
    red_vec: int = 1            # fp32 elements per reduction instruction (1: gl.atomic_add; 2, 4: red.v2/v4)
    producer_regs: int = 24
    consumer_regs: int = 240
    writer_regs: int = 56
    maxnreg: int | None = 168


VARIANTS = {v.name: v for v in [
    Variant("ws_dq_atomic", dq="atomic", consumer_regs=240),
    Variant("ws_dq_writer", dq="writer", consumer_regs=240, writer_regs=24),
    Variant("ws_dq_atomic_v2", dq="atomic", red_vec=2),
    Variant("ws_dq_writer_v4", dq="writer", red_vec=4, consumer_regs=240, writer_regs=24),
]}


def _constexprs(v: Variant, causal: bool) -> dict:
    return dict(CAUSAL=causal, DQ_WRITER=v.dq == "writer", RED_VEC=v.red_vec, PRODUCER_REGS=v.producer_regs,
                CONSUMER_REGS=v.consumer_regs, WRITER_REGS=v.writer_regs)


def attention_bwd(q, k, v, do, lse, delta, causal: bool, variant: str = "ws_dq_writer", scale: float | None = None):
    """(dq, dk, dv) of SDPA for bf16 ``[B, H, S, 128]`` contiguous q, k, v, dO (S % 128 == 0), from the forward's
    base-2 ``lse`` and ``delta = rowsum(dO * O)`` (both fp32 ``[B, H, S]``)."""
    var = VARIANTS[variant]
    for name, t in (("q", q), ("k", k), ("v", v), ("do", do)):
        if t.dtype != torch.bfloat16 or t.dim() != 4 or not t.is_contiguous() or t.shape != q.shape:
            raise ValueError(f"{name}: expected a contiguous bf16 tensor of q's shape, got {t.dtype} {tuple(t.shape)}")
    b, h, s, d = q.shape
    if d != HEAD_D or s % BLOCK_N:
        raise ValueError(f"q: the probe needs D={HEAD_D} and S % {BLOCK_N} == 0, got S={s}, D={d}")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    dq_acc = torch.zeros(b * h * s, d, device=q.device, dtype=torch.float32)
    half, step = [HALF_N, d], [BLOCK_M, d]
    descs = [TensorDescriptor.from_tensor(t.view(b * h * s, d), blk, _smem_layout(blk))
             for t, blk in ((k, half), (v, half), (q, step), (do, step), (dk, half), (dv, half))]
    ce = _constexprs(var, causal)
    opts = {} if var.maxnreg is None else {"maxnreg": var.maxnreg}
    attn_bwd_kernel[(s // BLOCK_N, b * h)](*descs, dq_acc, lse, delta, scale * LOG2E, scale, s, **ce, num_warps=4,
                                           **opts)
    dq = torch.empty_like(q)
    n = dq.numel()
    dq_convert_kernel[(triton.cdiv(n, 4096), )](dq_acc, dq, scale, n, BLOCK=4096, num_warps=4)
    return dq, dk, dv


def compile_sm90(variant: str, causal: bool):
    """Build a variant for sm_90 without a GPU; returns the CompiledKernel (``.asm``, ``.metadata``); under
    TRITON_INTERPRET=1 in a fresh process (``bench.gluon_attention.build_in_fresh_process``)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return build_in_fresh_process("bench.gluon_attention_bwd", variant, causal)
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    var = VARIANTS[variant]
    half, step = desc_type([HALF_N, HEAD_D]), desc_type([BLOCK_M, HEAD_D])
    signature = {"k_desc": half, "v_desc": half, "q_desc": step, "do_desc": step, "dk_desc": half, "dv_desc": half,
                 "dq_acc_ptr": "*fp32", "lse_ptr": "*fp32", "delta_ptr": "*fp32", "qk_scale": "fp32",
                 "sm_scale": "fp32", "S": "i32"}
    ce = _constexprs(var, causal)
    signature.update({name: "constexpr" for name in ce})
    options = {"num_warps": 4}
    if var.maxnreg is not None:
        options["maxnreg"] = var.maxnreg
    return triton.compile(GluonASTSource(attn_bwd_kernel, signature, ce), target=GPUTarget("cuda", 90, 32),
                          options=options)


# ----------------------------------------------------------------------------------------------------
# GPU session: correctness, then timing in the harness's way
# ----------------------------------------------------------------------------------------------------

SHAPES = [(4, 16, 4096, 128), (1, 16, 16384, 128)]


def work(b: int, h: int, s: int, d: int, causal: bool) -> float:
    """Backward FLOPs as the harness counts them (five matmuls): 2.5x the forward's 4*B*H*S*S*D, halved when causal."""
    f = 2.5 * 4.0 * b * h * s * s * d
    return f / 2 if causal else f


def _probe(name):
    """The probe's whole backward (the catalog's forward for lse, its preprocess for delta) as ``fn(q, k, v, do,
    causal) -> (setup, run)``: ``setup`` runs the forward once, ``run`` the timed backward."""
    from helion_ops.dsl import Config
    from helion_ops.ops import attention as A

    def make(q, k, v, do, causal):
        qk_scale = LOG2E / math.sqrt(q.shape[-1])
        fwd = (q, k, v, causal, qk_scale)
        o, lse = A.attn_fwd.bind(fwd).run(A.triton_config(fwd), *fwd)
        pre = A.attn_bwd_preprocess.bind((o, do))
        pre_cfg = pre.normalize(Config(**dict(A.config_for("attn_bwd_preprocess", (o, do)))))

        def run():
            delta = pre.run(pre_cfg, o, do)
            return attention_bwd(q, k, v, do, lse, delta, causal, name)
        return run
    return make


def _autograd(fn):
    """A forward with autograd (SDPA backend or the catalog) as ``make(q, k, v, do, causal) -> run``: run is the
    backward alone (the graph kept for repeats)."""
    def make(q, k, v, do, causal):
        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
        out = fn(qg, kg, vg, causal)
        return lambda: torch.autograd.grad(out, (qg, kg, vg), do, retain_graph=True)
    return make


def _sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def f(q, k, v, causal):
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return f


def _catalog(q, k, v, causal):
    import helion_ops
    return helion_ops.attention(q, k, v, causal=causal)


def _check(make, causal, gen, b=2, h=4, s=1024) -> dict:
    """Worst relative error of dq, dk, dv against fp32 autograd of SDPA on fresh randn inputs."""
    q, k, v, do = (torch.randn(b, h, s, HEAD_D, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(4))
    qf, kf, vf = (t.float().requires_grad_() for t in (q, k, v))
    ref = torch.autograd.grad(torch.nn.functional.scaled_dot_product_attention(qf, kf, vf, is_causal=causal),
                              (qf, kf, vf), do.float())
    got = make(q, k, v, do, causal)()
    errs = {n: ((g.float() - r).norm() / r.norm()).item() for n, g, r in zip(("dq", "dk", "dv"), got, ref)}
    ok = all(math.isfinite(e) and e < 2e-2 for e in errs.values())
    return {"rel_err": errs, "ok": ok, "check_shape": [b, h, s, HEAD_D]}


def run_session(variants) -> dict:
    from torch.nn.attention import SDPBackend

    from bench.timing import gpu_bench

    seed = int.from_bytes(os.urandom(4), "little")
    gen = torch.Generator(device="cuda").manual_seed(seed)
    impls = {"cudnn": _autograd(_sdpa(SDPBackend.CUDNN_ATTENTION)), "flash": _autograd(_sdpa(SDPBackend.FLASH_ATTENTION)),
             "catalog": _autograd(_catalog)}
    impls.update({n: _probe(n) for n in variants})
    checks, rows = {}, []
    for name, make in impls.items():
        for causal in (False, True):
            key = f"{name}/{'causal' if causal else 'full'}"
            try:
                checks[key] = _check(make, causal, gen)
            except Exception as e:  # a variant that fails to build or run is reported, not fatal
                checks[key] = {"ok": False, "error": f"{type(e).__name__}: {str(e)[:400]}"}
            print(f"check {key:28s} {checks[key]}", flush=True)
    for (b, h, s, d) in SHAPES:
        for causal in (False, True):
            q, k, v, do = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, generator=gen)
                           for _ in range(4))
            times = {}
            for name, make in impls.items():
                if not checks.get(f"{name}/{'causal' if causal else 'full'}", {}).get("ok"):
                    continue
                try:
                    times[name] = gpu_bench(make(q, k, v, do, causal))
                except Exception as e:
                    print(f"time {name}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                torch.cuda.empty_cache()
            for name, ms in times.items():
                row = {"impl": name, "shape": [b, h, s, d], "causal": causal, "ms": ms,
                       "tflops": work(b, h, s, d, causal) / ms / 1e9}
                for base in ("cudnn", "flash", "catalog"):
                    if base in times:
                        row[f"vs_{base}"] = times[base] / ms
                rows.append(row)
                print(f"time {name:14s} {b}x{h}x{s}x{d} causal={causal}: {row}", flush=True)
            del q, k, v, do
    return {"seed": seed, "checks": checks, "timings": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON file (default: $OUT/gluon_attention_bwd.json); an existing "
                    "file gains this run under 'runs'")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
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
        print("gluon_attention_bwd: needs a CUDA GPU (use compile_sm90 on CPU)", file=sys.stderr)
        return 2
    run = {"env": _env(), "variants": {n: dataclasses.asdict(VARIANTS[n]) for n in names}}
    run.update(run_session(names))
    out = args.out or os.path.join(os.environ.get("OUT", "."), "gluon_attention_bwd.json")
    doc = {"runs": []}
    if os.path.exists(out):
        with open(out) as f:
            doc = json.load(f)
    doc["runs"].append(run)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
