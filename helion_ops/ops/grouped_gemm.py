"""grouped_gemm: the MoE grouped matmul, one kernel launch for all groups, with autograd.

Public entry point: ``grouped_gemm(x, w, offsets)``.

- ``x``: ``[M_total, K]``; its rows are split into G consecutive groups by ``offsets``,
  ``offsets[g]`` being the end row of group g (cumulative, int32 or int64, ``offsets[-1] == M_total``);
  group g spans rows ``[offsets[g-1], offsets[g])`` (``offsets[-1]`` taken as 0 for g = 0), so
  empty groups are allowed. ``w``: ``[G, K, N]``. Returns ``out[M_total, N]`` with
  ``out[rows of g] = x[rows of g] @ w[g]``. fp16, bf16 or fp32 (IEEE, not TF32), fp32 accumulation
  (under Triton's interpreter the DSL runs bf16 dots on fp32 copies of their operands, which is exact).
- One launch, persistent over (group, M-tile) x N-tile pairs, reading the offsets on device:
  the launch grid has ``cdiv(M_total, BM) + G`` M-slots (an upper bound on
  ``sum_g cdiv(M_g, BM)``) times ``cdiv(N, BN)`` N-tiles. Each program loads the G offsets, derives
  each group's tile count and their prefix sum, and finds its slot's group and first row; slots past
  the last tile do nothing. With ``pid_type="persistent_*"`` the grid is one program per SM looping
  over those pairs, L2-grouped.
- Backward through autograd: ``dx = grouped_gemm(dy, w^T)`` (the same kernel; ``w^T`` is read in
  place, transposed in registers) and ``dw[g] = x_g^T @ dy_g`` (one DSL kernel over
  (group, K-tile, N-tile), with a device-bounded loop over the group's rows; empty groups give 0).
- The op layer (``helion_ops._oplib``) makes ``helion_ops::grouped_gemm`` / ``grouped_gemm_bwd`` custom
  ops with fakes and autograd, so ``torch.compile`` traces through without a graph break.
- Offsets are validated on the host (sorted, in ``[0, M_total]``, last == M_total): that reads G
  ints back from the device. Pass ``validate=False`` to skip it (e.g. inside CUDA graphs; the
  benchmark skips it, as ``torch._grouped_mm`` does no such check). Meta tensors are not validated.
  Unchecked offsets cannot reach memory outside the tensors: both kernels clamp each group's (each
  tile's) row range to ``[0, M_total)`` (a scalar min and max per tile, nothing per element), so rows
  a bad offset points past M are dropped and rows no group covers are left unwritten (``torch.empty``:
  undefined), but x and dy are never read, nor out written, out of bounds.

Figures: results/<GPU>/grouped_gemm.md (the harness, against ``torch._grouped_mm`` and a Python loop of
cuBLAS calls in the same run). The forward and dx configs come from ``bench.grouped_gemm_sweep`` (dx
keyed as variant "T" in the table), dw's from its dw grid (see ``choose_dw_config``).

Memory (tests/reliability/test_memory.py): the output only; autograd saves x, w and offsets; backward
allocates dx and dw only; no workspace beyond Triton's TMA descriptor scratch (a few KiB, on GPU).
"""
from __future__ import annotations

from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import Config
from helion_ops import _oplib as C
from helion_ops.dsl.exc import InputError
from helion_ops.errors import ArgumentTypeError, DeviceError, DtypeError, IndexOverflowError, ShapeError

NAME = "grouped_gemm"


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

@helion.kernel(static_shapes=True, replay_host=True)
def grouped_gemm_kernel(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor, trans_w: bool) -> torch.Tensor:
    """out[rows of g] = x[rows of g] @ W_g, W_g = w[g] ([K, N]) or, with trans_w, w[g].T (w is [G, N, K])."""
    m_total, k = x.size()
    if trans_w:
        g_count, n, k2 = w.size()
    else:
        g_count, k2, n = w.size()
    assert k == k2, f"grouped_gemm: K mismatch {k} != {k2}"
    out = torch.empty([m_total, n], dtype=x.dtype, device=x.device)
    bm = hl.register_block_size(16, 256)
    num_slots = (m_total + bm - 1) // bm + g_count  # >= sum_g cdiv(M_g, bm)
    for tile_s, tile_n in hl.tile([num_slots * bm, n], block_size=[bm, None]):
        slot = tile_s.id
        gidx = hl.arange(g_count)
        ends = offsets[:]
        starts = hl.load(offsets, [gidx - 1], extra_mask=gidx > 0)
        ntiles = (ends - starts + (bm - 1)) // bm
        cum = torch.cumsum(ntiles, 0, dtype=torch.int32)  # inclusive prefix sum of tiles per group
        # int32 scheduling arithmetic (torch would sum in int64): offsets are int32, rows < 2**31
        g = torch.sum(cum <= slot, dtype=torch.int32)  # this slot's group (g_count: past the end)
        if g < g_count:
            sel = gidx == g
            first_slot = torch.sum(torch.where(sel, cum - ntiles, 0), dtype=torch.int32)
            row_start = torch.sum(torch.where(sel, starts, 0), dtype=torch.int32) + (slot - first_slot) * bm
            row_end = torch.minimum(torch.sum(torch.where(sel, ends, 0), dtype=torch.int32), row_start + bm)
            # Unchecked offsets (validate=False) past M or negative: the tile's rows are clamped to
            # [0, M), so x is never read nor out written outside its rows (two scalar ops per tile).
            row_end = torch.minimum(row_end, m_total)
            row_start = torch.maximum(row_start, 0)
            for tile_m in hl.tile(row_start, row_end, block_size=bm):  # exactly one tile
                acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
                for tile_k in hl.tile(k):
                    if trans_w:
                        wt = w[g, tile_n, tile_k].T
                    else:
                        wt = w[g, tile_k, tile_n]
                    acc = torch.addmm(acc, x[tile_m, tile_k], wt)
                out[tile_m, tile_n] = acc
    return out


@helion.kernel(static_shapes=True, replay_host=True)
def grouped_gemm_dw_kernel(x: torch.Tensor, dy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """dw[g] = x[rows of g].T @ dy[rows of g]  ([G, K, N]; zero for an empty group)."""
    m_total, k = x.size()
    m2, n = dy.size()
    g_count = offsets.size(0)
    dw = torch.empty([g_count, k, n], dtype=x.dtype, device=x.device)
    bm = hl.register_block_size(16, 256)
    for tile_g, tile_k, tile_n in hl.tile([g_count, k, n], block_size=[1, None, None]):
        g = tile_g.begin
        # clamped to [0, M) as in the forward: unchecked offsets never read x or dy outside its rows
        end = torch.minimum(hl.load(offsets, [g]), m_total)
        start = torch.maximum(hl.load(offsets, [g - 1], extra_mask=g > 0), 0)
        acc = hl.zeros([tile_k, tile_n], dtype=torch.float32)
        for tile_m in hl.tile(start, end, block_size=bm):
            acc = torch.addmm(acc, x[tile_m, tile_k].T, dy[tile_m, tile_n])
        dw[g, tile_k, tile_n] = acc
    return dw


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

def choose_config(g: int, m_total: int, n: int, k: int, dtype: torch.dtype) -> Config:
    """Forward config: block_sizes = [BM (rows per slot), BN, BK]. Like matmul's large-M configs
    (TMA for w, persistent, L2-grouped), with BM 64 when groups are small on average; 128x256x64 /
    3 stages / 8 warps / persistent was the fastest of the tiles tried on MoE shapes (H100 sweeps)."""
    if dtype == torch.float32:
        return Config(block_sizes=[64, 64, 32], num_warps=4, num_stages=3, l2_groupings=[8],
                      pid_type="flat", indexing="tensor_descriptor")
    avg = m_total / max(g, 1)
    bm = 128 if avg >= 256 else 64
    bn = 256 if (bm == 128 and n >= 1024) else 128
    stages = 3 if bn == 256 else 4
    return Config(block_sizes=[bm, bn, 64], num_warps=8 if bm * bn >= 128 * 128 else 4, num_stages=stages,
                  l2_groupings=[8], pid_type="persistent_interleaved", indexing="tensor_descriptor")


def choose_dw_config(g: int, m_total: int, n: int, k: int, dtype: torch.dtype) -> Config:
    """dw config: block_sizes = [BM (contraction over the group's rows), BK, BN].

    A 128x256 output tile with a 64-row contraction step, 8 warps, 4 stages and pointer loads won on
    every benchmark shape on an H100 (``python -m bench.grouped_gemm_sweep --kernel dw``,
    results/H100/sweeps/). Pointer loads, because a group's rows start at a device offset and end
    mid-tile, and the rows past the end must be masked (a TMA box would read the next group's rows).

    Grid order: ``loop_orders=[[1, 2, 0]]`` makes the group the slowest grid dim and L2-groups the (K, N)
    tiles inside it, so the programs in flight share a few of the group's x and dy column blocks. The
    default order grouped (group, K tile) with the N tile slowest: every N tile's programs read all of x
    (128 MB at 16384 x 4096 bf16) while a group's dy (56 MB at N = 14336) exceeds the L2; this order
    with a persistent grid ran faster on every benchmark shape (H100 device probe)."""
    if dtype == torch.float32:
        return Config(block_sizes=[32, 64, 64], num_warps=4, num_stages=3, pid_type="flat",
                      indexing="tensor_descriptor", loop_orders=[[1, 2, 0]], l2_groupings=[8])
    return Config(block_sizes=[64, 128, 256], num_warps=8, num_stages=4, pid_type="persistent_interleaved",
                  indexing="pointer", loop_orders=[[1, 2, 0]], l2_groupings=[8])


def variant_of(args: tuple) -> Optional[str]:
    """The table variant of a launch: "T" when the forward kernel reads w transposed (backward's dx),
    whose loads coalesce along another dim, so it never borrows a forward entry of the same shape."""
    return "T" if len(args) == 4 and args[3] else None


def _key(args: tuple) -> list:
    """[G, M_total, N, K] of a forward (or dx) launch, or of a dw launch."""
    if len(args) == 4:
        x, w, offsets, tw = args
        return [w.shape[0], x.shape[0], w.shape[1] if tw else w.shape[2], x.shape[1]]
    x, dy, offsets = args
    return [offsets.shape[0], x.shape[0], dy.shape[1], x.shape[1]]


def _eager_kernel(x, w, offsets, tw):
    return _eager_fwd(x, w.transpose(1, 2) if tw else w, offsets)


_fwd = C.Kern(NAME, grouped_gemm_kernel, lambda a: choose_config(*_key(a), a[0].dtype), key=_key,
              variant=variant_of, eager=_eager_kernel)
_dw = C.Kern(NAME, grouped_gemm_dw_kernel, lambda a: choose_dw_config(*_key(a), a[0].dtype), key=_key,
             eager=lambda x, dy, offsets: _eager_dw(x, dy, offsets))


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

def _run_fwd(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    if w.stride(2) == 1 or w.shape[2] == 1 or w.stride(1) != 1:
        return _fwd(x, w, offsets, False)
    return _fwd(x, C.transpose(w, 1, 2), offsets, True)  # read w^T's storage in place


def _run_dw(x: torch.Tensor, dy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return _dw(x, dy, offsets)


def _eager_fwd(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The forward with PyTorch (fp32 accumulation, one mm per group): the fallback."""
    out = x.new_zeros((x.shape[0], w.shape[2]))
    start = 0
    for g, end in enumerate(offsets.tolist()):
        if end > start:
            out[start:end] = (C.acc(x[start:end]) @ C.acc(w[g])).to(x.dtype)
        start = end
    return out


def _eager_dw(x: torch.Tensor, dy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """dw[g] = x_g^T @ dy_g with PyTorch (zero for empty groups): the fallback."""
    dw = x.new_zeros((offsets.shape[0], x.shape[1], dy.shape[1]))
    start = 0
    for g, end in enumerate(offsets.tolist()):
        if end > start:
            dw[g] = (C.acc(x[start:end]).t() @ C.acc(dy[start:end])).to(x.dtype)
        start = end
    return dw


def _fake_bwd(dy, x, w, offsets, need_x, need_w):
    return x.new_empty(x.shape if need_x else [0]), w.new_empty(w.shape if need_w else [0])


@C.op("grouped_gemm_bwd", fake=_fake_bwd)
def grouped_gemm_bwd_op(dy: torch.Tensor, x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor, need_x: bool,
                        need_w: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dw): dx = grouped_gemm(dy, w^T) (w^T read in place), dw[g] = x_g^T @ dy_g; empty where not needed."""
    dy = dy.to(x.dtype)
    dx = _run_fwd(dy, C.transpose(w, 1, 2), offsets) if need_x else C.placeholder(x)
    return dx, (_run_dw(x, dy, offsets) if need_w else C.placeholder(w))


def _backward(inputs, saved, needs, dy):
    x, w, offsets = inputs
    dx, dw = grouped_gemm_bwd_op(dy, x, w, offsets, needs[0], needs[1])
    return dx if needs[0] else None, dw if needs[1] else None, None


@C.op("grouped_gemm", eager=_eager_fwd, fake=lambda x, w, offsets: x.new_empty((x.shape[0], w.shape[2])),
      backward=_backward)
def grouped_gemm_op(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``out[rows of g] = x[rows of g] @ w[g]`` of validated inputs (offsets int32, unit stride)."""
    return _run_fwd(x, w, offsets)


def _check(x, w, offsets, validate: bool) -> None:
    for name, t in (("x", x), ("w", w), ("offsets", offsets)):
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"grouped_gemm(): '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() != 2:
        raise ShapeError(f"grouped_gemm(): 'x' must be 2-D [M_total, K], got shape {tuple(x.shape)}")
    if w.dim() != 3:
        raise ShapeError(f"grouped_gemm(): 'w' must be 3-D [G, K, N], got shape {tuple(w.shape)}")
    if offsets.dim() != 1:
        raise ShapeError(f"grouped_gemm(): 'offsets' must be 1-D [G], got shape {tuple(offsets.shape)}")
    C.check_dtype(NAME, "x", x)
    if w.dtype != x.dtype:
        raise DtypeError(f"grouped_gemm(): 'w' has dtype {w.dtype} but 'x' has {x.dtype}; they must match")
    if offsets.dtype not in (torch.int32, torch.int64):
        raise DtypeError(f"grouped_gemm(): 'offsets' must be int32 (or int64), got {offsets.dtype}")
    if x.shape[1] != w.shape[1]:
        raise ShapeError(f"grouped_gemm(): K mismatch: 'x' is {tuple(x.shape)} (K={x.shape[1]}) but 'w' is "
                         f"{tuple(w.shape)} (K={w.shape[1]})")
    if w.shape[0] == 0:
        raise ShapeError("grouped_gemm(): 'w' has no groups (G = 0)")
    if offsets.shape[0] != w.shape[0]:
        raise ShapeError(f"grouped_gemm(): 'offsets' has {offsets.shape[0]} entries but 'w' has "
                         f"G={w.shape[0]} groups")
    C.check_device("grouped_gemm", "x", x)
    for name, t in (("w", w), ("offsets", offsets)):
        if t.device != x.device:
            raise DeviceError(f"grouped_gemm(): '{name}' is on {t.device} but 'x' is on {x.device}")
    if x.shape[0] >= 2**31:
        raise IndexOverflowError(f"grouped_gemm(): 'x' has {x.shape[0]} rows; at most 2**31 - 1 are supported")
    if validate and x.device.type != "meta":
        m = x.shape[0]
        o = offsets.to(torch.int64)
        prev = torch.cat([o.new_zeros(1), o[:-1]])
        # one host read: [unsorted or negative, last != M_total]
        flags = torch.stack([(o < prev).any(), o[-1] != m]).tolist()
        if flags[0]:
            raise InputError(f"grouped_gemm(): 'offsets' must be non-decreasing and >= 0 (cumulative group "
                             f"ends), got {offsets.tolist()}")
        if flags[1]:
            raise InputError(f"grouped_gemm(): 'offsets' must end at M_total = {m} (x.shape[0]); "
                             f"got offsets[-1] = {int(o[-1])} (offsets exceed or fall short of M)")


@C.public
def grouped_gemm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """``out[rows of g] = x[rows of g] @ w[g]``; see the module docstring.

    x: [M_total, K], w: [G, K, N] (same dtype: fp16/bf16/fp32), offsets: [G] cumulative group ends
    (int32; int64 is converted), offsets[-1] == M_total, empty groups allowed. Returns [M_total, N].
    Differentiable in x and w (to any order). ``validate=False`` skips the host-side check of the offsets."""
    _check(x, w, offsets, validate)
    if offsets.dtype != torch.int32:
        offsets = offsets.to(torch.int32)
    if offsets.stride(0) != 1:
        offsets = offsets.contiguous()
    return grouped_gemm_op(x, w, offsets)
