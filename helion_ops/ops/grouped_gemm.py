"""grouped_gemm: the MoE grouped matmul, one kernel launch for all groups, with autograd.

Public entry point: ``grouped_gemm(x, w, offsets)``.

- ``x``: ``[M_total, K]``; its rows are split into G consecutive groups by ``offsets``,
  ``offsets[g]`` being the end row of group g (cumulative, int32 or int64, ``offsets[-1] == M_total``);
  group g spans rows ``[offsets[g-1], offsets[g])`` (``offsets[-1]`` taken as 0 for g = 0), so
  empty groups are allowed. ``w``: ``[G, K, N]``. Returns ``out[M_total, N]`` with
  ``out[rows of g] = x[rows of g] @ w[g]``. fp16, bf16 or fp32 (IEEE, not TF32), fp32 accumulation
  (under Triton's interpreter, whose bf16 dots are wrong, bf16 runs on fp32 copies, rounded once).
- One launch, persistent over (group, M-tile) x N-tile pairs, reading the offsets on device:
  the launch grid has ``cdiv(M_total, BM) + G`` M-slots (an upper bound on
  ``sum_g cdiv(M_g, BM)``) times ``cdiv(N, BN)`` N-tiles. Each program loads the G offsets, derives
  each group's tile count and their prefix sum, and finds its slot's group and first row; slots past
  the last tile do nothing. With ``pid_type="persistent_*"`` the grid is one program per SM looping
  over those pairs, L2-grouped.
- Backward through autograd: ``dx = grouped_gemm(dy, w^T)`` (the same kernel; ``w^T`` is read in
  place, transposed in registers) and ``dw[g] = x_g^T @ dy_g`` (one DSL kernel over
  (group, K-tile, N-tile), with a device-bounded loop over the group's rows; empty groups give 0).
- Registered as torch.library custom ops ``helion_ops::grouped_gemm`` / ``grouped_gemm_dw`` with
  fake kernels and autograd, so ``torch.compile`` traces through without a graph break.
- Offsets are validated on the host (sorted, in ``[0, M_total]``, last == M_total): that reads G
  ints back from the device. Pass ``validate=False`` to skip it (e.g. inside CUDA graphs);
  ``impl`` (the benchmark entry) skips it, as ``torch._grouped_mm`` does no such check. Unchecked
  offsets cannot reach memory outside the tensors: both kernels clamp each group's (each tile's) row
  range to ``[0, M_total)`` (a scalar min and max per tile, nothing per element), so rows a bad
  offset points past M are dropped and rows no group covers are left unwritten (``torch.empty``:
  undefined), but x and dy are never read, nor out written, out of bounds.

Measured through the harness (results/H100/grouped_gemm.csv; H100 80GB HBM3, torch 2.11, Triton 3.6,
bf16, commit 4122470, 2026-11-26), against ``torch._grouped_mm`` timed in the same run: forward 1.02x
geomean (0.98-1.06x over SHAPES; 482-724 TFLOP/s), backward (dx and dw) 1.01x (0.92-1.11x; it was
0.92x before dw's grid order, see ``choose_dw_config``). Against the Python loop of cuBLAS calls
(``eager``): 0.95-7.95x on the forward (the loop ties or wins at 8 groups of ~2K rows with N or K = 14336,
where each group is a large, efficient cuBLAS GEMM; which of the two shapes it wins moves between
runs, and an interleaved device probe put ours, the loop and ``_grouped_mm`` within the card's clock
drift of each other there), 2.8-64x on the backward. The forward and dx configs come from ``bench.grouped_gemm_sweep`` (dx keyed as variant "T" in the table), dw's from
its dw grid (see ``choose_dw_config``). On the K=14336 shape the same kernel ran 5% faster with equal
groups of 2048 rows than with the harness's uneven groups (a one-off kernel timing): partial tiles at
group ends and L2 windows straddling two groups' weights cost what is left; the H100's clocks also
drift by several percent over a long compute-bound run, so single comparisons at that size are noisy.

Memory (tests/reliability/test_memory.py): the output only; autograd saves x, w and offsets; backward
allocates dx and dw only; no workspace beyond Triton's TMA descriptor scratch (a few KiB, on GPU).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import Config
from helion_ops import _common as C
from helion_ops.dsl.exc import InputError
from helion_ops.errors import ArgumentTypeError, DeviceError, DtypeError, IndexOverflowError, ShapeError

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

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


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

def _num_sms() -> int:
    from helion_ops.dsl.runtime import num_sms
    try:
        return num_sms()
    except Exception:  # pragma: no cover
        return 132


def choose_config(g: int, m_total: int, n: int, k: int, dtype: torch.dtype) -> Config:
    """Forward config: block_sizes = [BM (rows per slot), BN, BK]. Like matmul's large-M configs
    (TMA for w, persistent, L2-grouped), with BM 64 when groups are small on average.
    On an H100 (bf16, 2026-11-25) 128x256x64 / 3 stages / 8 warps / persistent ran at 0.99-1.02x
    torch._grouped_mm on three MoE shapes, 128x128x64 at 0.77-0.91x, 64x128x64 at 0.61-0.65x."""
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
    all eight SHAPES on an H100 (bf16, 2026-11-26; ``python -m bench.grouped_gemm_sweep --kernel dw``, 63-76
    candidates timed per shape, results/H100/sweeps/grouped_gemm_dw_sweep_2026-11-26.json), 0.78-0.88x
    torch._grouped_mm's dw. Pointer loads, because a group's rows start at a device offset and end
    mid-tile, and the rows past the end must be masked (a TMA box would read the next group's rows).

    Grid order: ``loop_orders=[[1, 2, 0]]`` makes the group the slowest grid dim and L2-groups the (K, N)
    tiles inside it, so the programs in flight share a few of the group's x and dy column blocks. The
    default order grouped (group, K tile) with the N tile slowest: every N tile's programs read all of x
    (128 MB at 16384 x 4096 bf16) while a group's dy (56 MB at N = 14336) exceeds the L2. With this order
    and a persistent grid the dw kernel went from 0.82-0.95x to 0.96-1.11x torch._grouped_mm's dw on the
    eight SHAPES (H100 device probe: kernel timings interleaved with _grouped_mm, median of three; not a
    harness figure)."""
    if dtype == torch.float32:
        return Config(block_sizes=[32, 64, 64], num_warps=4, num_stages=3, pid_type="flat",
                      indexing="tensor_descriptor", loop_orders=[[1, 2, 0]], l2_groupings=[8])
    return Config(block_sizes=[64, 128, 256], num_warps=8, num_stages=4, pid_type="persistent_interleaved",
                  indexing="pointer", loop_orders=[[1, 2, 0]], l2_groupings=[8])


def _fit(bound, cfg: Config) -> Config:
    return bound.normalize(C.clamp_blocks(bound, cfg))


def _pretuned(kernel_name: str, shape: list, dtype, variant: Optional[str] = None) -> Optional[Config]:
    try:
        from helion_ops.dsl import pretuned
        return pretuned.lookup(NAME, kernel_name, dtype, shape, variant=variant)
    except Exception:
        return None


def variant_of(args: tuple) -> Optional[str]:
    """The table variant of a launch: "T" when the forward kernel reads w transposed (backward's dx),
    whose loads coalesce along another dim, so it never borrows a forward entry of the same shape."""
    return "T" if len(args) == 4 and args[3] else None


def _launch(kernel, args: tuple, shape: list, chooser, eager):
    """Run ``kernel`` on ``args`` with its chosen config; ``eager()`` when it fails to compile or launch
    (see ``_common.kernel_failed``: bad input and strict mode raise)."""
    bound = None
    try:
        bound = kernel.bind(args)
        chosen = getattr(bound, "_op_config_chosen", False)
        if chosen is not True:
            if chosen == C.EAGER:  # failed before: eager, no new warning
                raise C.UseEager
            _configure(kernel, args, shape, chooser, variant_of(args))
        return bound(*args)
    except Exception as e:
        C.kernel_failed(NAME, kernel.name, e, bound)
        return eager()


def _configure(kernel, args: tuple, shape: list, chooser, variant: Optional[str] = None) -> "helion.BoundKernel":
    bound = kernel.bind(args)
    if not getattr(bound, "_op_config_chosen", False):
        cfg = None
        pre = _pretuned(kernel.name, shape, args[0].dtype, variant)
        if pre is not None:
            try:
                cfg = _fit(bound, pre)
            except Exception:
                cfg = None
        bound.config = cfg if cfg is not None else _fit(bound, chooser(*shape, args[0].dtype))
        bound._op_config_chosen = True
    return bound


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

def _run_fwd(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    m_total, k = x.shape
    g, _, n = w.shape
    if m_total == 0 or n == 0:
        return x.new_empty((m_total, n))
    if k == 0:
        return x.new_zeros((m_total, n))
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":
        # CPU means Triton's interpreter, whose dots multiply bf16 bit patterns (garbage): fp32 copies hold
        # every bf16 product exactly and accumulate in fp32 as the GPU kernel does; rounded to bf16 once.
        return _run_fwd(x.float(), w.float(), offsets).to(x.dtype)
    if w.stride(2) == 1 or n == 1:
        pw, tw = w, False
    elif w.stride(1) == 1:
        pw, tw = w.transpose(1, 2), True  # read w^T's storage in place
    else:
        pw, tw = w, False
    args = (x, pw, offsets, tw)
    return _launch(grouped_gemm_kernel, args, [g, m_total, n, k], choose_config,
                   lambda: _eager_fwd(x, w, offsets))


def _run_dw(x: torch.Tensor, dy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    m_total, k = x.shape
    n = dy.shape[1]
    g = offsets.shape[0]
    if m_total == 0 or k == 0 or n == 0:
        return x.new_zeros((g, k, n))
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":  # the interpreter: see _run_fwd
        return _run_dw(x.float(), dy.float(), offsets).to(x.dtype)
    args = (x, dy, offsets)
    return _launch(grouped_gemm_dw_kernel, args, [g, m_total, n, k], choose_dw_config,
                   lambda: _eager_dw(x, dy, offsets))


def _eager_fwd(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The forward with PyTorch (fp32 accumulation, one mm per group): the fallback."""
    out = x.new_zeros((x.shape[0], w.shape[2]))
    start = 0
    for g, end in enumerate(offsets.tolist()):
        if end > start:
            out[start:end] = (x[start:end].float() @ w[g].float()).to(x.dtype)
        start = end
    return out


def _eager_dw(x: torch.Tensor, dy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """dw[g] = x_g^T @ dy_g with PyTorch (zero for empty groups): the fallback."""
    dw = x.new_zeros((offsets.shape[0], x.shape[1], dy.shape[1]))
    start = 0
    for g, end in enumerate(offsets.tolist()):
        if end > start:
            dw[g] = (x[start:end].float().t() @ dy[start:end].float()).to(x.dtype)
        start = end
    return dw


@torch.library.custom_op("helion_ops::grouped_gemm", mutates_args=())
def _grouped_gemm_op(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return _run_fwd(x, w, offsets)


@_grouped_gemm_op.register_fake
def _grouped_gemm_fake(x, w, offsets):
    return x.new_empty((x.shape[0], w.shape[2]))


@torch.library.custom_op("helion_ops::grouped_gemm_dw", mutates_args=())
def _grouped_gemm_dw_op(x: torch.Tensor, dy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return _run_dw(x, dy, offsets)


@_grouped_gemm_dw_op.register_fake
def _grouped_gemm_dw_fake(x, dy, offsets):
    return x.new_empty((offsets.shape[0], x.shape[1], dy.shape[1]))


def _setup_context(ctx, inputs, output):
    x, w, offsets = inputs
    ctx.save_for_backward(x, w, offsets)


def _backward(ctx, grad):
    x, w, offsets = ctx.saved_tensors
    grad = grad.to(x.dtype)
    dx = _grouped_gemm_op(grad, w.transpose(1, 2), offsets) if ctx.needs_input_grad[0] else None
    dw = _grouped_gemm_dw_op(x, grad, offsets) if ctx.needs_input_grad[1] else None
    return dx, dw, None


torch.library.register_autograd("helion_ops::grouped_gemm", _backward, setup_context=_setup_context)


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
    if x.dtype not in _DTYPES:
        raise DtypeError(f"grouped_gemm(): 'x' has dtype {x.dtype}; supported: float16, bfloat16, float32")
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
    if not x.is_cuda:  # CPU only under the interpreter (one attribute check on the GPU hot path)
        C.check_device("grouped_gemm", "x", x)
    for name, t in (("w", w), ("offsets", offsets)):
        if t.device != x.device:
            raise DeviceError(f"grouped_gemm(): '{name}' is on {t.device} but 'x' is on {x.device}")
    if x.shape[0] >= 2**31:
        raise IndexOverflowError(f"grouped_gemm(): 'x' has {x.shape[0]} rows; at most 2**31 - 1 are supported")
    if validate:
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


def grouped_gemm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """``out[rows of g] = x[rows of g] @ w[g]``; see the module docstring.

    x: [M_total, K], w: [G, K, N] (same dtype: fp16/bf16/fp32), offsets: [G] cumulative group ends
    (int32; int64 is converted), offsets[-1] == M_total, empty groups allowed. Returns [M_total, N].
    Differentiable in x and w. ``validate=False`` skips the host-side check of the offsets."""
    _check(x, w, offsets, validate)
    if offsets.dtype != torch.int32:
        offsets = offsets.to(torch.int32)
    if offsets.stride(0) != 1:
        offsets = offsets.contiguous()
    if _direct_ok(x, w, offsets):
        return _run_fwd(x, w, offsets)  # skips the custom op's dispatch (about 10 us)
    return _grouped_gemm_op(x, w, offsets)


def _direct_ok(*tensors) -> bool:
    """Plain eager inference (no autograd, no tracing, no tensor subclass or functorch transform)."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if type(t) is not torch.Tensor or (grad and t.requires_grad):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Op contract (docs/CONTRACTS.md §1)
# ---------------------------------------------------------------------------------------------

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
