"""matmul: ``out = activation(a @ b + bias)`` in the helion_ops DSL, with autograd.

Public entry point: ``matmul(a, b, bias=None, activation=None)``.

- ``a``: ``[..., K]`` (leading dims are flattened to M), ``b``: ``[K, N]``, ``bias``: ``[N]`` or None,
  ``activation``: None, ``"relu"``, ``"gelu"`` (erf form) or ``"silu"``; bias and activation are fused
  into the kernel's epilogue (the ``if activation == ...`` below is resolved at compile time).
- dtypes: fp16, bf16 and fp32 (``a`` and ``b`` alike; bias may also be fp32). Accumulation is
  always fp32. fp32 inputs use IEEE fp32 dot products (the DSL emits ``input_precision='ieee'``),
  *not* TF32: exact, but far below tensor-core speed; use fp16/bf16 for speed. Under Triton's
  interpreter (CPU tensors) the DSL runs bf16 dots on fp32 copies of their operands (exact bf16
  products, fp32 accumulation, as on the GPU).
- Transposed operands cost no copy: an operand whose *first* dim has stride 1 (``b = w.t()``) is
  passed to the kernel in its stored layout with a ``trans_*`` flag, and the kernel loads the
  stored tile and transposes it in registers (so TMA descriptors still apply to it). Operands with
  no unit stride are read through generic strided pointers.
- Unaligned rows: in a large GEMM (``_gemm.worth_padding``: min(M, N) >= 256 and M*N*K >= 2^27) an operand
  whose rows do not start 16-byte aligned (K or N odd, e.g. 4097, in fp16/bf16), or that has no unit
  stride, is first copied into rows padded to 128 bytes (``_gemm.padded``; contiguous operands through
  ``pad_rows_kernel``), as torch.compile's pad_mm does: TMA descriptors and 16-byte vector loads need
  aligned rows (results/H100/sweeps/ has the 4097^3 sweep with and without padding).
- Backward through autograd: ``dA = dZ @ B^T`` and ``dB = A^T @ dZ`` with the same kernel on the
  stored operands read transposed (``_run``'s ``ta``/``tb``: no copies, no views),
  ``dbias = dZ.sum(0)``; ``dZ`` is ``grad * act'(z)``.
- The op layer (``helion_ops._oplib``) makes ``helion_ops::matmul`` / ``matmul_bwd`` custom ops with
  fakes and autograd, so ``torch.compile`` traces through it without a graph break.

Configs: per shape (M, N, K, dtype) and operand layout (NN forward; NT and TN, backward's dA and dB)
from ``configs/<arch>/matmul.json`` when it has an entry for the GPU, else from ``choose_config``
(analytic; see there), cached per specialization; split-K (below) is chosen per shape. The layout is
part of the key because a transposed operand changes which loads coalesce (backward-shaped problems
ran far slower on the forward's configs than on their own: bench.matmul_sweep).

Figures: results/<GPU>/matmul.md (the harness, against cuBLAS and torch.compile in the same run).
Small backwards are host-bound (two GEMMs of a few us each on the GPU): see results/<GPU>/host.md.

Memory (tests/reliability/test_memory.py): the output only (plus, in large GEMMs, a padded copy of an
operand with unaligned rows, see above); autograd saves a and b (and the output with
relu); backward allocates dA and dB only (operands read in place, no copies), plus an [N] fp32 sum for dbias
and, with gelu/silu, the recomputed pre-activation [M, N] and its fp32 temporaries; no workspace beyond
Triton's TMA descriptor scratch (a few KiB, on GPU), or split-K's fp32 partials [S, M, N] (small outputs).
"""
from __future__ import annotations

from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl.config import Config, PowerOfTwoFragment
from helion_ops import _fast, _oplib as C
from helion_ops.ops import _gemm as GE
from helion_ops.dsl.exc import InputError
from helion_ops.errors import ShapeError

NAME = "matmul"
ACTIVATIONS = (None, "relu", "gelu", "silu")


# ---------------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------------

def _mnk(a: torch.Tensor, b: torch.Tensor, trans_a: bool, trans_b: bool) -> tuple[int, int, int]:
    """(M, N, K) of ``A @ B`` with A = a or a.T, B = b or b.T (host code of both GEMM kernels)."""
    m, k = (a.size(1), a.size(0)) if trans_a else (a.size(0), a.size(1))
    k2, n = (b.size(1), b.size(0)) if trans_b else (b.size(0), b.size(1))
    assert k == k2, f"matmul: K mismatch {k} != {k2}"
    return m, n, k


# replay_host: the host code reads only sizes and allocates with torch.empty, so repeat calls replay
# the recorded launch (helion_ops.dsl.replay) instead of running it.
@helion.kernel(static_shapes=True, replay_host=True)
def matmul_kernel(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str],
                  trans_a: bool, trans_b: bool) -> torch.Tensor:
    """``activation(A @ B + bias)``. ``A`` is ``a`` ([M, K]) or, with trans_a, ``a.T`` (a is [K, M]);
    likewise ``B`` is ``b`` ([K, N]) or ``b.T`` (b is [N, K])."""
    m, n, k = _mnk(a, b, trans_a, trans_b)
    out = torch.empty([m, n], dtype=a.dtype, device=a.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            if trans_a:
                x = a[tile_k, tile_m].T
            else:
                x = a[tile_m, tile_k]
            if trans_b:
                y = b[tile_n, tile_k].T
            else:
                y = b[tile_k, tile_n]
            acc = torch.addmm(acc, x, y)
        if bias is not None:
            acc = acc + bias[tile_n].to(torch.float32)[None, :]
        if activation == "relu":
            acc = torch.relu(acc)
        elif activation == "gelu":
            acc = torch.nn.functional.gelu(acc)
        elif activation == "silu":
            acc = torch.nn.functional.silu(acc)
        out[tile_m, tile_n] = acc
    return out


# Split-K (small M*N, large K): too few output tiles to fill the SMs, so each program reduces one
# K slice of one tile into an fp32 partial (plain stores: no memset, no atomics, deterministic),
# and a second launch sums the partials with the epilogue. With 16-row tiles and a deep K block this
# is also the GEMV path for M <= 16: many programs stream B, where one pass has one per N tile.
# Which kernel runs (forward and both backward products alike): _route, below: the table's faster
# entry for the shape, else split_factor's conservative heuristic; configs: choose_split_k_config.
@helion.kernel(static_shapes=True, replay_host=True)
def matmul_split_k_kernel(a: torch.Tensor, b: torch.Tensor, trans_a: bool, trans_b: bool) -> torch.Tensor:
    """fp32 partials ``[S, M, N]``: ``parts[s] = A[:, K_s] @ B[K_s, :]`` over ``S = cdiv(K, kb)`` slices of
    ``kb`` (the ``split_k`` knob's share of K, rounded up to the K block); A, B as in ``matmul_kernel``."""
    m, n, k = _mnk(a, b, trans_a, trans_b)
    bm = hl.register_block_size(m)
    bn = hl.register_block_size(n)
    bk = hl.register_block_size(k)
    split = hl.register_tunable("split_k", PowerOfTwoFragment(1, 64, 4))
    kb = hl.cdiv(hl.cdiv(k, split), bk) * bk
    parts = torch.empty([hl.cdiv(k, kb), m, n], dtype=torch.float32, device=a.device)
    for tile_s, tile_m, tile_n in hl.tile([parts.size(0), m, n], block_size=[1, bm, bn]):
        s = tile_s.begin
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(s * kb, min(s * kb + kb, k), block_size=bk):
            if trans_a:
                x = a[tile_k, tile_m].T
            else:
                x = a[tile_m, tile_k]
            if trans_b:
                y = b[tile_n, tile_k].T
            else:
                y = b[tile_k, tile_n]
            acc = torch.addmm(acc, x, y)
        parts[s, tile_m, tile_n] = acc
    return parts


@helion.kernel(static_shapes=True, replay_host=True)
def matmul_split_k_reduce_kernel(parts: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str],
                                 out: torch.Tensor) -> None:
    """``out = activation(parts.sum(0) + bias)`` in ``out``'s dtype (the split-K epilogue)."""
    m, n = out.size()
    for tile_m, tile_n in hl.tile([m, n]):
        acc = parts[:, tile_m, tile_n].sum(0)
        if bias is not None:
            acc = acc + bias[tile_n].to(torch.float32)[None, :]
        if activation == "relu":
            acc = torch.relu(acc)
        elif activation == "gelu":
            acc = torch.nn.functional.gelu(acc)
        elif activation == "silu":
            acc = torch.nn.functional.silu(acc)
        out[tile_m, tile_n] = acc.to(out.dtype)


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

def choose_config(m: int, n: int, k: int, dtype: torch.dtype, num_sms: Optional[int] = None,
                  aligned: Optional[bool] = None) -> Config:
    """Analytic config for an (M, N, K) problem; block_sizes = [BM, BN, BK].

    From H100 sweeps (bench.matmul_sweep) and the Triton anchors (anchors/):
    - large problems (two waves or more of 128x256 tiles, or about one wave when 128x128 tiles
      would not make two):
      128x256x64, 3 stages (4 overflow shared memory), 8 warps, persistent (one program per SM),
      L2 grouping 8, TMA descriptors (no warp specialization: on sm_90, Triton 3.6/3.7 ignore
      ``warp_specialize`` with 8 warps: the TTGIR has no ``ttg.warp_specialize``; the tuner may still
      pick it with 4 warps, where it is real);
    - fewer tiles, or operands that TMA cannot read (a row stride that is not 16-byte aligned,
      e.g. K = 4097 in a GEMM too small to pad, where 128x128 beat 128x256): 128x128x64,
      4 stages; fewer than one wave of those: 64x128x64 (more programs);
    - 16 < M <= 256: 64-row tiles, N block 128 or 64, whichever fills the SMs;
    - M <= 16 (decode): bandwidth-bound on B: 16x64 tiles with a deep K block.
    fp32 (IEEE, no tensor cores) uses moderate 64x64x32 tiles.
    ``aligned``: whether every operand row starts 16-byte aligned (TMA-readable); None infers it from
    contiguous operands of these dims.
    Block sizes are clamped to the kernel's ConfigSpace by the caller."""
    sms = num_sms or C.num_sms()
    if dtype == torch.float32:
        return Config(block_sizes=[64, 64, 32], num_warps=4, num_stages=3, l2_groupings=[8],
                      pid_type="flat", indexing="tensor_descriptor")
    cdiv = lambda x, y: -(-x // y)  # noqa: E731
    es = torch.empty((), dtype=dtype).element_size()
    if aligned is None:
        aligned = (k * es) % 16 == 0 and (n * es) % 16 == 0 and (m * es) % 16 == 0
    if m <= 16:
        return Config(block_sizes=[16, 64, 256 if k >= 4096 else 128], num_warps=4, num_stages=3,
                      l2_groupings=[1], pid_type="flat", indexing="tensor_descriptor")
    if m <= 256:
        bm = 32 if m <= 32 else 64
        if cdiv(m, bm) * cdiv(n, 128) >= sms:
            bs = [bm, 128, 64]
        else:
            bs = [bm, 64, 128]
        return Config(block_sizes=bs, num_warps=4, num_stages=4, l2_groupings=[8], pid_type="flat",
                      indexing="tensor_descriptor")
    tiles_big = cdiv(m, 128) * cdiv(n, 256)
    tiles_mid = cdiv(m, 128) * cdiv(n, 128)
    if aligned and (tiles_big >= 2 * sms or (tiles_big >= sms - sms // 8 and tiles_mid < 2 * sms)):
        bs, stages, warps = [128, 256, 64], 3, 8
    elif tiles_mid >= sms:
        bs, stages, warps = [128, 128, 64], 4, 8
    else:
        bs, stages, warps = [64, 128, 64], 4, 4
    tiles = cdiv(m, bs[0]) * cdiv(n, bs[1])
    pid = "persistent_interleaved" if tiles > sms else "flat"
    return Config(block_sizes=bs, num_warps=warps, num_stages=stages, l2_groupings=[8], pid_type=pid,
                  indexing="tensor_descriptor")


# Split-K only pays where the output has too few tiles to fill the GPU and every K slice stays deep.
# Conservative until bench.matmul_sweep has measured it (table entries then decide, see _route):
# M <= 64 (decode and skinny rows, backward's dB of few columns), a quarter wave of tiles at most,
# K >= 4 slices of SPLIT_MIN_SLICE, and the fp32 partials' round trip at most a quarter of the
# operands' bytes.
SPLIT_MIN_SLICE = 1024


def split_k_tiles(m: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """The split-K kernel's analytic [BM, BN, BK]: 16-row tiles with a deep K block for M <= 16 (the
    GEMV path: bandwidth-bound on B), 64x128 up to M = 128, 128x128 above; fp32 (IEEE) smaller."""
    if dtype == torch.float32:
        return (16, 64, 64) if m <= 16 else (64, 64, 32)
    return (16, 64, 256) if m <= 16 else (64, 128, 64) if m <= 128 else (128, 128, 64)


def split_factor(m: int, n: int, k: int, dtype: torch.dtype, num_sms: Optional[int] = None) -> int:
    """How many K slices the heuristic gives an (M, N, K) problem: 1 means one pass (matmul_kernel)."""
    sms = num_sms or C.num_sms()
    bm, bn, _ = split_k_tiles(m, dtype)
    tiles = C.cdiv(m, bm) * C.cdiv(n, bn)
    if m > 64 or 4 * tiles > sms or k < 4 * SPLIT_MIN_SLICE:
        return 1
    s = 1
    while 2 * s * tiles <= 2 * sms and k // (2 * s) >= SPLIT_MIN_SLICE:
        s *= 2
    while s > 1 and 8 * s * m * n > (m + n) * k * C.element_size(dtype) // 4:
        s //= 2
    return s


def choose_split_k_config(m: int, n: int, k: int, dtype: torch.dtype, aligned: bool = True,
                          split: Optional[int] = None) -> Config:
    """Analytic config of matmul_split_k_kernel: block_sizes [BM, BN, BK] (split_k_tiles), split_k from
    ``split`` or split_factor (at least 2: a split-K launch with one slice is a one-pass GEMM plus a cast)."""
    bs = list(split_k_tiles(m, dtype))
    return Config(block_sizes=bs, split_k=max(2, split or split_factor(m, n, k, dtype)),
                  num_warps=8 if bs[0] >= 128 else 4, num_stages=3 if bs[2] >= 256 else 4, l2_groupings=[1],
                  pid_type="flat", indexing="tensor_descriptor" if aligned and dtype != torch.float32 else "pointer")


def reduce_config(s: int, m: int, n: int) -> Config:
    """The split-K epilogue: tiles of at most 8K partial elements (S x BM x BN fp32 in registers)."""
    bm = min(C.next_pow2(m), 16)
    bn = max(16, min(1024, 8192 // (C.next_pow2(s) * bm)))
    return Config(block_sizes=[bm, bn], num_warps=4, reduction_loops=[None])


LAYOUTS = {(False, False): None, (False, True): "NT", (True, False): "TN", (True, True): "TT"}


def _dims(args: tuple) -> tuple[int, int, int]:
    a, b, _, _, ta, tb = args
    m, k = (a.shape[1], a.shape[0]) if ta else tuple(a.shape)
    return m, (b.shape[0] if tb else b.shape[1]), k


def _default(args: tuple) -> Config:
    return choose_config(*_dims(args), args[0].dtype, aligned=GE.rows_aligned(args[0]) and GE.rows_aligned(args[1]))


def _eager_kernel(a, b, bias, activation, ta, tb):
    return _eager2d(a.t() if ta else a, b.t() if tb else b, bias, activation)


# The table is keyed by layout too: a transposed operand changes which loads coalesce.
_mm = C.Kern(NAME, matmul_kernel, _default, key=_dims, variant=lambda a: LAYOUTS[(a[4], a[5])], eager=_eager_kernel)


def _dims_sk(args: tuple) -> tuple[int, int, int]:
    return _dims((args[0], args[1], None, None, args[2], args[3]))


def _default_sk(args: tuple) -> Config:
    return choose_split_k_config(*_dims_sk(args), args[0].dtype,
                                 aligned=GE.rows_aligned(args[0]) and GE.rows_aligned(args[1]))


def _eager_sk(a, b, ta, tb):
    return torch.matmul(C.acc(a.t() if ta else a), C.acc(b.t() if tb else b))[None]


def _eager_reduce(parts, bias, activation, out):
    z = parts.sum(0)
    out.copy_(_eager_act(z if bias is None else z + C.acc(bias), activation))


_sk = C.Kern(NAME, matmul_split_k_kernel, _default_sk, key=_dims_sk, variant=lambda a: LAYOUTS[(a[2], a[3])],
             eager=_eager_sk)
_skr = C.Kern(NAME, matmul_split_k_reduce_kernel, lambda a: reduce_config(*a[0].shape), key=lambda a: a[0].shape,
              eager=_eager_reduce)
# One pass (0) or split-K (1): the table's measured times where it has both, else split_factor.
# Keyed by what the tables and split_factor read (shapes, dtype, layout): cheaper than the full signature.
_route = C.Route([_mm, _sk], lambda args: int(split_factor(*_dims(args), args[0].dtype) > 1),
                 key=lambda a: (a[0].shape, a[1].shape, a[0].dtype, a[4], a[5]))


def config_for(args: tuple) -> Config:
    """The Config used for kernel ``args`` (the op layer's policy: table, else ``choose_config``)."""
    return _mm.config_for(*args)


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

def _run(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str],
         ta: bool = False, tb: bool = False) -> torch.Tensor:
    """The kernel launch for 2-D A [M, K] @ B [K, N] (already validated); A is ``a``, or ``a.t()`` with
    ``ta`` (B likewise), so backward's transposed operands need no view of their own."""
    m, k = (a.shape[1], a.shape[0]) if ta else (a.shape[0], a.shape[1])
    n = b.shape[0] if tb else b.shape[1]
    if bias is not None and bias.stride(0) != 1:
        bias = bias.contiguous()
    if m == 0 or n == 0 or k == 0:
        return _eager_kernel(a, b, bias, activation, ta, tb)
    pa, pb, ta, tb = GE.operands(a, b, m, n, k, ta, tb)
    args = (pa, pb, bias, activation, ta, tb)
    if _route(args, lambda: (args, (pa, pb, ta, tb))) == 0:
        return _mm(*args)
    out = C.empty((m, n), a.dtype, a.device)
    _skr(_sk(pa, pb, ta, tb), bias, activation, out)
    return out


def _eager2d(a, b, bias, activation):
    z = torch.matmul(C.acc(a), C.acc(b))
    if bias is not None:
        z = z + C.acc(bias)
    return _eager_act(z, activation).to(a.dtype)


def _eager_act(z: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    if activation == "relu":
        return torch.relu(z)
    if activation == "gelu":
        return torch.nn.functional.gelu(z)
    if activation == "silu":
        return torch.nn.functional.silu(z)
    return z


def _eager_act_grad(z: torch.Tensor, activation: str) -> torch.Tensor:
    """d act / d z, in fp32."""
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(z * 0.7071067811865476))
        pdf = torch.exp(-0.5 * z * z) * 0.3989422804014327
        return cdf + z * pdf
    if activation == "silu":
        s = torch.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    raise AssertionError(activation)


# The backward's elementwise host math, as fast-path steps (replayed as they are, see helion_ops/_fast.py).
@_fast.step
def _relu_grad(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return grad * (out > 0).to(grad.dtype)


@_fast.step
def _act_grad(grad: torch.Tensor, z: torch.Tensor, activation: str, dtype: torch.dtype) -> torch.Tensor:
    """``grad * act'(z)`` in fp32, in ``dtype`` (z: the recomputed pre-activation)."""
    return (grad.float() * _eager_act_grad(z.float(), activation)).to(dtype)


@_fast.step
def _bias_grad(dz: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return dz.float().sum(0).to(dtype)


def _fake_bwd(grad, a, b, bias, out, activation, need_a, need_b):
    return (a.new_empty(a.shape if need_a else [0]), b.new_empty(b.shape if need_b else [0]),
            a.new_empty([0]) if bias is None else bias.new_empty(bias.shape))


@C.op("matmul_bwd", fake=_fake_bwd)
def matmul_bwd_op(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor],
                  out: Optional[torch.Tensor], activation: Optional[str], need_a: bool,
                  need_b: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dA, dB, dbias) of ``activation(a @ b + bias)``: ``dZ = grad * act'(z)``, dA = dZ @ B^T, dB = A^T @ dZ
    (the forward's kernel on the stored operands read transposed); empty where not needed."""
    if activation is None:
        dz = grad
    elif activation == "relu":
        dz = _relu_grad(grad, out)
    else:
        dz = _act_grad(grad, _run(a, b, bias, None), activation, a.dtype)
    if GE.worth_padding(a.shape[0], b.shape[1], a.shape[1]):
        dz = GE.padded(dz)  # an operand of both GEMMs: padded once here, not in each
    da = _run(dz, b, None, None, tb=True) if need_a else C.placeholder(a)
    db = _run(a, dz, None, None, ta=True) if need_b else C.placeholder(b)
    dbias = _bias_grad(dz, bias.dtype) if bias is not None else C.placeholder(a)
    return da, db, dbias


def _backward(inputs, saved, needs, grad):
    a, b, bias, activation = inputs
    grad = grad if grad.dtype == a.dtype else grad.to(a.dtype)
    da, db, dbias = matmul_bwd_op(grad, a, b, bias, saved[0] if activation == "relu" else None,
                                  activation, needs[0], needs[1])
    return (da if needs[0] else None, db if needs[1] else None,
            dbias if bias is not None and needs[2] else None, None)


@C.op("matmul", eager=_eager2d, backward=_backward, save_outputs=(0,))
def matmul_op(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor],
              activation: Optional[str]) -> torch.Tensor:
    """``activation(a @ b + bias)`` of a 2-D ``a`` [M, K] and ``b`` [K, N]."""
    return _run(a, b, bias, activation)


def _check(a, b, bias, activation) -> None:
    C.check_input(NAME, a, "a")
    C.check_tensor(NAME, "b", b)
    if a.dim() < 2:
        raise ShapeError(f"matmul(): 'a' must have at least 2 dims [..., K], got shape {tuple(a.shape)}")
    if b.dim() != 2:
        raise ShapeError(f"matmul(): 'b' must be 2-D [K, N], got shape {tuple(b.shape)}")
    C.check_same(NAME, "a", a, "b", b)
    if a.shape[-1] != b.shape[0]:
        raise ShapeError(f"matmul(): K mismatch: 'a' is {tuple(a.shape)} (K={a.shape[-1]}) but 'b' is "
                         f"{tuple(b.shape)} (K={b.shape[0]})")
    if bias is not None:
        C.check_tensor(NAME, "bias", bias)
        if bias.dim() != 1 or bias.shape[0] != b.shape[1]:
            raise ShapeError(f"matmul(): 'bias' must have shape ({b.shape[1]},), got {tuple(bias.shape)}")
        C.check_dtype(NAME, "bias", bias, (a.dtype, torch.float32))
        C.check_same(NAME, "a", a, "bias", bias, dtype=False)
    if activation not in ACTIVATIONS:
        raise InputError(f"matmul(): 'activation' must be one of {ACTIVATIONS}, got {activation!r}")


@C.public
def matmul(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor] = None,
           activation: Optional[str] = None) -> torch.Tensor:
    """``activation(a @ b + bias)`` with fp32 accumulation; see the module docstring.

    a: [..., K] (fp16/bf16/fp32), b: [K, N] (same dtype), bias: [N] or None,
    activation: None | "relu" | "gelu" | "silu". Returns [..., N] in a's dtype.
    Differentiable in a, b and bias (to any order); works under torch.compile, torch.func and on
    meta tensors."""
    _check(a, b, bias, activation)
    a2 = a if a.dim() == 2 else a.reshape(-1, a.shape[-1])
    out = matmul_op(a2, b, bias, activation)
    return out if a.dim() == 2 else C.unview(out, (*a.shape[:-1], b.shape[1]))
