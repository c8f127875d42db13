"""matmul: ``out = activation(a @ b + bias)`` in the helion_ops DSL, with autograd.

Public entry point: ``matmul(a, b, bias=None, activation=None)``.

- ``a``: ``[..., K]`` (leading dims are flattened to M), ``b``: ``[K, N]``, ``bias``: ``[N]`` or None,
  ``activation``: None, ``"relu"``, ``"gelu"`` (erf form) or ``"silu"``; bias and activation are fused
  into the kernel's epilogue (the ``if activation == ...`` below is resolved at compile time).
- dtypes: fp16, bf16 and fp32 (``a`` and ``b`` alike; bias may also be fp32). Accumulation is
  always fp32. fp32 inputs use IEEE fp32 dot products (the DSL emits ``input_precision='ieee'``),
  *not* TF32: exact, but far below tensor-core speed; use fp16/bf16 for speed. Under Triton's
  interpreter (CPU tensors), whose bf16 dots are wrong, bf16 GEMMs run on fp32 copies of the operands
  (exact bf16 products, fp32 accumulation, one rounding to bf16, as on the GPU).
- Transposed operands cost no copy: an operand whose *first* dim has stride 1 (``b = w.t()``) is
  passed to the kernel in its stored layout with a ``trans_*`` flag, and the kernel loads the
  stored tile and transposes it in registers (so TMA descriptors still apply to it). Operands with
  no unit stride are read through generic strided pointers.
- Unaligned rows: in a large GEMM (``_worth_padding``: min(M, N) >= 256 and M*N*K >= 2^27) an operand
  whose rows do not start 16-byte aligned (K or N odd, e.g. 4097, in fp16/bf16), or that has no unit
  stride, is first copied into rows padded to 128 bytes (``_padded``; contiguous operands through
  ``pad_rows_kernel``), as torch.compile's pad_mm does: TMA descriptors and 16-byte vector loads need
  aligned rows. At 4097^3 bf16 on the H100 the kernel then took 257-265 us against 960-1304 us on the
  unaligned operands (bench.matmul_sweep, kernel time without the copies;
  results/H100/sweeps/matmul_sweep_4097_padded_2026-11-26.json).
- Backward through autograd: ``dA = dZ @ B^T`` and ``dB = A^T @ dZ`` with the same kernel on the
  stored operands read transposed (``_run``'s ``ta``/``tb``: no copies, no views),
  ``dbias = dZ.sum(0)``; ``dZ`` is ``grad * act'(z)``.
- Registered as the torch.library custom op ``helion_ops::matmul`` with a fake (meta) kernel
  and autograd formula, so ``torch.compile`` traces through it without a graph break.

Configs: per shape (M, N, K, dtype) and operand layout (NN forward; NT and TN, backward's dA and dB)
from ``configs/<arch>/matmul.json`` when it has an entry for the GPU, else from ``choose_config``
(analytic; see there), cached per specialization. The layout is part of the key because a
transposed operand changes which loads coalesce: backward-shaped problems on the forward's configs
ran at 0.52-0.84x cuBLAS for 4097^3, 1024^3 and the M <= 128 shapes; on their own (bench.matmul_sweep,
H100, 2026-11-26) at 0.93-1.19x.

Measured (H100 80GB HBM3, torch 2.11, Triton 3.6, bf16, the harness at commit 4122470, 2026-11-26,
results/H100/matmul.csv; the cuBLAS and eager columns time the same torch.matmul and differ by up
to ~10% on large shapes, which is the run-to-run noise): forward geomean 1.08x cuBLAS over the 19
SHAPES, lowest 0.88x (1024^3); 4097^3 (operands padded) 311 us against cuBLAS's 1023 us and
torch.compile's 242 us (which pads to 4104, then calls cuBLAS: docs/decisions/matmul-unaligned-padding.md, the tile
grid at 4097). Backward geomean 1.10x, lowest 0.65x at 2048^3. Small backwards are host-bound: the
two GEMMs take 6-30 us on the GPU, and our backward's host path (Python autograd Function, two
replayed launches; 78-112 us per backward in a tight loop on the H100 machine against eager's 59-89
us, a device probe) is about as long as the head start that do_bench's L2 flush gives, so such rows
move between runs (2048^3: 0.58x cuBLAS at cb367b7, 0.96x at bd25164, 0.65x at 4122470).

Memory (tests/reliability/test_memory.py): the output only (plus, in large GEMMs, a padded copy of an
operand with unaligned rows, see above); autograd saves a and b (and the output with
relu); backward allocates dA and dB only (operands read in place, no copies), plus an [N] fp32 sum for dbias
and, with gelu/silu, the recomputed pre-activation [M, N] and its fp32 temporaries; no workspace beyond
Triton's TMA descriptor scratch (a few KiB, on GPU).
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
from helion_ops.errors import ArgumentTypeError, DeviceError, DtypeError, ShapeError

NAME = "matmul"
METRIC = "TFLOP/s"

# (M, N, K). Square sizes, Llama-3 8B/70B projection shapes (N, K) for several token counts M,
# and awkward sizes.
SHAPES: list[tuple] = [
    (1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192),
    # Llama-3 8B: qkv/o (4096, 4096), up/gate (14336, 4096), down (4096, 14336)
    (1, 4096, 4096), (16, 14336, 4096), (128, 4096, 14336),
    (1024, 14336, 4096), (4096, 4096, 14336), (4096, 14336, 4096), (16384, 4096, 4096),
    # Llama-3 70B: qkv/o (8192, 8192), up/gate (28672, 8192), down (8192, 28672)
    (1, 8192, 8192), (16, 28672, 8192), (128, 8192, 8192), (1024, 8192, 28672),
    (4096, 28672, 8192), (16384, 8192, 8192),
    # awkward
    (4000, 4000, 4000), (4097, 4097, 4097),
]
SMALL_SHAPES: list[tuple] = [(1, 65, 33), (17, 65, 33), (130, 65, 33)]

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
GRAD_INPUTS = (0, 1)

ACTIVATIONS = (None, "relu", "gelu", "silu")
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# ---------------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------------

# replay_host: the host code reads only sizes and allocates with torch.empty, so repeat calls replay
# the recorded launch (helion_ops.dsl.replay) instead of running it.
@helion.kernel(static_shapes=True, replay_host=True)
def matmul_kernel(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str],
                  trans_a: bool, trans_b: bool) -> torch.Tensor:
    """``activation(A @ B + bias)``. ``A`` is ``a`` ([M, K]) or, with trans_a, ``a.T`` (a is [K, M]);
    likewise ``B`` is ``b`` ([K, N]) or ``b.T`` (b is [N, K])."""
    if trans_a:
        k, m = a.size()
    else:
        m, k = a.size()
    if trans_b:
        n, k2 = b.size()
    else:
        k2, n = b.size()
    assert k == k2, f"matmul: K mismatch {k} != {k2}"
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


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

_NUM_SMS_DEFAULT = 132  # H100 SXM


def _num_sms() -> int:
    from helion_ops.dsl.runtime import num_sms
    try:
        return num_sms()
    except Exception:  # pragma: no cover
        return _NUM_SMS_DEFAULT


def choose_config(m: int, n: int, k: int, dtype: torch.dtype, num_sms: Optional[int] = None,
                  aligned: Optional[bool] = None) -> Config:
    """Analytic config for an (M, N, K) problem; block_sizes = [BM, BN, BK].

    Measured on an H100 (bf16, 2026-11-25; see the module notes) and matching the Triton anchors
    (anchors/2026-11-25-h100-triton-matmul.txt):
    - large problems (two waves or more of 128x256 tiles, or about one wave when 128x128 tiles
      would not make two; 2048^3: 0.91x vs 0.83x for 128x128):
      128x256x64, 3 stages (4 overflow shared memory), 8 warps, persistent (one program per SM),
      L2 grouping 8, TMA descriptors (no warp specialization: on sm_90, Triton 3.6/3.7 ignore
      ``warp_specialize`` with 8 warps, the TTGIR has no ``ttg.warp_specialize``, so the +1-4% once
      measured for it at 4096^2 was noise; the tuner may still pick it with 4 warps, where it is real);
    - fewer tiles, or operands that TMA cannot read (a row stride that is not 16-byte aligned,
      e.g. K = 4097 in a GEMM too small to pad: 128x256 ran at 0.73x cuBLAS there, 128x128 at
      0.89-0.92x): 128x128x64,
      4 stages; fewer than one wave of those: 64x128x64 (more programs);
    - 16 < M <= 256: 64-row tiles, N block 128 or 64, whichever fills the SMs (M=128, N=4096,
      K=14336: 64x64x128 0.95x vs 64x128x64 0.74x);
    - M <= 16 (decode): bandwidth-bound on B: 16x64 tiles with a deep K block.
    fp32 (IEEE, no tensor cores) uses moderate 64x64x32 tiles.
    ``aligned``: whether every operand row starts 16-byte aligned (TMA-readable); None infers it from
    contiguous operands of these dims.
    Block sizes are clamped to the kernel's ConfigSpace by the caller."""
    sms = num_sms or _num_sms()
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


def _fit(bound, cfg: Config) -> Config:
    """Clamp block sizes into the bound kernel's space and drop knobs it lacks."""
    space = bound.config_space
    d = C.clamp_blocks(bound, cfg).to_dict()
    if d.get("range_warp_specializes") and not space.spec.warp_specialize:
        d.pop("range_warp_specializes")
    return bound.normalize(Config(**d))


def _pretuned(m: int, n: int, k: int, dtype: torch.dtype, variant: Optional[str]) -> Optional[Config]:
    try:
        from helion_ops.dsl import pretuned
        return pretuned.lookup(NAME, "matmul_kernel", dtype, [m, n, k], variant=variant)
    except Exception:
        return None


LAYOUTS = {(False, False): None, (False, True): "NT", (True, False): "TN", (True, True): "TT"}


def config_for(args: tuple) -> Config:
    """The Config used for kernel ``args`` (pretuned entry, else ``choose_config``)."""
    a, b, _, _, ta, tb = args
    m, k = (a.shape[1], a.shape[0]) if ta else tuple(a.shape)
    n = b.shape[0] if tb else b.shape[1]
    bound = matmul_kernel.bind(args)
    # The table is keyed by layout too: a transposed operand changes which loads coalesce (1024^3
    # with B transposed, backward's dA: 0.67x cuBLAS on the forward's config, 0.93x on its own).
    cfg = _pretuned(m, n, k, a.dtype, LAYOUTS[(ta, tb)])
    if cfg is not None:
        try:
            return _fit(bound, cfg)
        except Exception:
            pass
    return _fit(bound, choose_config(m, n, k, a.dtype, aligned=_rows_aligned(a) and _rows_aligned(b)))


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

def _layout(t: torch.Tensor, transposed: bool = False) -> tuple[torch.Tensor, bool]:
    """(tensor to pass, transposed?) for the operand ``t`` (``t.t()`` with ``transposed``), so that the
    passed tensor's last dim has stride 1 if possible. Backward passes ``b`` with ``transposed`` for
    ``b^T``: a row-major ``b`` is then passed as it is, with no transposed view made twice."""
    if transposed:
        if t.stride(0) == 1 or t.shape[0] == 1:
            return t.t(), False
        if t.stride(1) == 1 or t.shape[1] == 1:
            return t, True
        return t.t(), False
    if t.stride(1) == 1 or t.shape[1] == 1:
        return t, False
    if t.stride(0) == 1 or t.shape[0] == 1:
        return t.t(), True
    return t, False  # generic strides: pointer indexing by strides


def _rows_aligned(t: torch.Tensor) -> bool:
    """Every row of the (layout-normalised, see ``_layout``) 2-D operand ``t`` starts 16-byte aligned
    and has unit stride: what TMA descriptors and 16-byte vector loads need."""
    if t.stride(1) != 1 and t.shape[1] != 1:
        return False
    return t.data_ptr() % 16 == 0 and (t.shape[0] == 1 or (t.stride(0) * t.element_size()) % 16 == 0)


# Padding an operand whose rows are not 16-byte aligned (K or N = 4097 in bf16) costs one copy of it;
# it pays once the GEMM is compute-bound and large: unaligned rows rule out TMA and vector loads, and
# the kernel then ran 4-5x slower than on the same data with padded rows (4097^3 bf16 on the H100).
PAD_MIN_MNK = 2 ** 27   # m * n * k: about 512^3
PAD_MIN_MN = 256        # min(m, n): below it the GEMM is bound by reading one operand, as the copy is


@helion.kernel(replay_host=True)
def pad_rows_kernel(src: torch.Tensor, cols: int, width: int):
    """The row-major matrix whose elements are the flat ``src`` (rows of ``cols``), as flat rows of
    ``width`` >= ``cols`` (lanes past ``cols`` hold 0). Indexed by the output, so every store is a full,
    aligned vector; the loads are 2-byte gathers of consecutive elements, which coalesce per warp."""
    rows = src.size(0) // cols
    out = torch.empty([rows * width], dtype=src.dtype, device=src.device)
    for tile in hl.tile(rows * width):
        i = tile.index // width
        j = tile.index - i * width
        out[tile] = hl.load(src, [i * cols + j], extra_mask=j < cols)
    return out


# H100, 4097^2 bf16 into 4160-element rows: torch's copy_ into the padded view takes 43-48 us (its strided
# elementwise kernel), this kernel 28-30 us with 1024-4096 lanes (device probes), torch.compile's pad
# kernel (the same flat form) 24 us.
_pad = C.Launcher(NAME, pad_rows_kernel, lambda shape: Config(block_sizes=[1024], num_warps=4),
                  eager=lambda src, cols, width: torch.nn.functional.pad(src.view(-1, cols), (0, width - cols)).view(-1))


def _pad_rows(p: torch.Tensor) -> torch.Tensor:
    """A copy of the 2-D ``p`` whose rows start on 128-byte boundaries (the padding is never read)."""
    rows, cols = p.shape
    step = max(1, 128 // p.element_size())
    width = -(-cols // step) * step
    if p.is_contiguous():
        return _pad(p.view(-1), cols, width).view(rows, width)[:, :cols]
    buf = torch.empty((rows, width), dtype=p.dtype, device=p.device)[:, :cols]
    buf.copy_(p)
    return buf


def _padded(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if its rows are aligned (``_rows_aligned`` of its layout), else a copy of it in the
    same orientation with padded rows (``_pad_rows``)."""
    p, trans = _layout(t)
    if _rows_aligned(p):
        return t
    return _pad_rows(p).t() if trans else _pad_rows(p)


def _worth_padding(m: int, n: int, k: int) -> bool:
    return min(m, n) >= PAD_MIN_MN and m * n * k >= PAD_MIN_MNK


def _operands(a: torch.Tensor, b: torch.Tensor, m: int, n: int, k: int, ta: bool = False,
              tb: bool = False) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """(pa, pb, trans_a, trans_b): what the kernel reads for ``A [M, K] @ B [K, N]`` (A = ``a``, or
    ``a.t()`` with ``ta``; B likewise): the stored layouts (``_layout``), with unaligned rows padded in
    large GEMMs. One layout pass: every GEMM's host path."""
    pa, ta = _layout(a, ta)
    pb, tb = _layout(b, tb)
    if _worth_padding(m, n, k):
        if not _rows_aligned(pa):
            pa = _pad_rows(pa)
        if not _rows_aligned(pb):
            pb = _pad_rows(pb)
    return pa, pb, ta, tb


def _run(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str],
         ta: bool = False, tb: bool = False) -> torch.Tensor:
    """The kernel launch for 2-D A [M, K] @ B [K, N] (already validated); A is ``a``, or ``a.t()`` with
    ``ta`` (B likewise), so backward's transposed operands need no view of their own."""
    m, k = (a.shape[1], a.shape[0]) if ta else (a.shape[0], a.shape[1])
    n = b.shape[0] if tb else b.shape[1]
    if m == 0 or n == 0 or k == 0:
        return _eager2d(a.t() if ta else a, b.t() if tb else b, bias, activation)
    if a.dtype == torch.bfloat16 and a.device.type == "cpu":
        # CPU means Triton's interpreter, whose dots multiply bf16 bit patterns (garbage): fp32 copies hold
        # every bf16 product exactly and accumulate in fp32 as the GPU kernel does; rounded to bf16 once.
        return _run(a.float(), b.float(), None if bias is None else bias.float(), activation, ta, tb).to(a.dtype)
    if bias is not None and bias.stride(0) != 1:
        bias = bias.contiguous()
    pa, pb, ta, tb = _operands(a, b, m, n, k, ta, tb)
    args = (pa, pb, bias, activation, ta, tb)
    bound = None
    try:
        bound = matmul_kernel.bind(args)
        chosen = getattr(bound, "_op_config_chosen", False)
        if chosen is not True:
            if chosen == C.EAGER:  # this specialisation failed before: eager, no new warning
                raise C.UseEager
            bound.config = config_for(args)
            bound._op_config_chosen = True
        return bound(*args)
    except Exception as e:  # compile/launch failure: eager fallback or LaunchError (_common.kernel_failed)
        C.kernel_failed(NAME, "matmul_kernel", e, bound)
        return _eager2d(pa.t() if ta else pa, pb.t() if tb else pb, bias, activation)


def _eager2d(a, b, bias, activation):
    z = torch.matmul(a.float(), b.float())
    if bias is not None:
        z = z + bias.float()
    return _act(z, activation).to(a.dtype)


def _act(z: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    if activation == "relu":
        return torch.relu(z)
    if activation == "gelu":
        return torch.nn.functional.gelu(z)
    if activation == "silu":
        return torch.nn.functional.silu(z)
    return z


def _act_grad(z: torch.Tensor, activation: str) -> torch.Tensor:
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


@torch.library.custom_op("helion_ops::matmul", mutates_args=())
def _matmul_op(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str]) -> torch.Tensor:
    return _run(a, b, bias, activation)


@_matmul_op.register_fake
def _matmul_fake(a, b, bias, activation):
    return a.new_empty((a.shape[0], b.shape[1]))


def _setup_context(ctx, inputs, output):
    a, b, bias, activation = inputs
    ctx.activation = activation
    ctx.has_bias = bias is not None
    ctx.bias_dtype = bias.dtype if bias is not None else None
    ctx.save_for_backward(a, b, bias, output if activation == "relu" else None)


def _backward(ctx, grad):
    a, b, bias, out = ctx.saved_tensors
    act = ctx.activation
    if act is None:
        dz = grad
    elif act == "relu":
        dz = grad * (out > 0).to(grad.dtype)
    else:
        z = _mm(a, b, bias, None).float()
        dz = (grad.float() * _act_grad(z, act)).to(a.dtype)
    if dz.dtype != a.dtype:
        dz = dz.to(a.dtype)
    if _worth_padding(a.shape[0], b.shape[1], a.shape[1]):
        dz = _padded(dz)  # dz is an operand of both GEMMs: pad it once here, not in each
    da = _mm(dz, b, None, None, tb=True) if ctx.needs_input_grad[0] else None   # dZ @ B^T
    db = _mm(a, dz, None, None, ta=True) if ctx.needs_input_grad[1] else None   # A^T @ dZ
    dbias = dz.float().sum(0).to(ctx.bias_dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return da, db, dbias, None


torch.library.register_autograd("helion_ops::matmul", _backward, setup_context=_setup_context)


def _mm(a, b, bias, activation, ta: bool = False, tb: bool = False):
    """A GEMM inside backward (operands as in ``_run``): the kernel launch itself, unless the result must
    be differentiable again (create_graph=True) or is being traced (torch.compile), which need the
    custom op."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return _matmul_op(a.t() if ta else a, b.t() if tb else b, bias, activation)
    return _run(a, b, bias, activation, ta, tb)


class _MatmulFn(torch.autograd.Function):
    """Eager training: the custom op's kernels and backward without torch.library's per-call
    dispatch (tens of us of host time per GEMM, longer than the GEMM itself below ~2048^3)."""

    @staticmethod
    def forward(ctx, a, b, bias, activation):
        out = _run(a, b, bias, activation)
        _setup_context(ctx, (a, b, bias, activation), out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return _backward(ctx, grad)


def _check(a, b, bias, activation) -> None:
    if not isinstance(a, torch.Tensor):
        raise ArgumentTypeError(f"matmul(): 'a' must be a torch.Tensor, got {type(a).__name__}")
    if not isinstance(b, torch.Tensor):
        raise ArgumentTypeError(f"matmul(): 'b' must be a torch.Tensor, got {type(b).__name__}")
    if a.dim() < 2:
        raise ShapeError(f"matmul(): 'a' must have at least 2 dims [..., K], got shape {tuple(a.shape)}")
    if b.dim() != 2:
        raise ShapeError(f"matmul(): 'b' must be 2-D [K, N], got shape {tuple(b.shape)}")
    if a.dtype not in _DTYPES:
        raise DtypeError(f"matmul(): 'a' has dtype {a.dtype}; supported: float16, bfloat16, float32")
    if b.dtype != a.dtype:
        raise DtypeError(f"matmul(): 'b' has dtype {b.dtype} but 'a' has {a.dtype}; they must match")
    if a.shape[-1] != b.shape[0]:
        raise ShapeError(f"matmul(): K mismatch: 'a' is {tuple(a.shape)} (K={a.shape[-1]}) but 'b' is "
                         f"{tuple(b.shape)} (K={b.shape[0]})")
    if not a.is_cuda:  # CPU only under the interpreter (one attribute check on the GPU hot path)
        C.check_device("matmul", "a", a)
    if b.device != a.device:
        raise DeviceError(f"matmul(): 'b' is on {b.device} but 'a' is on {a.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise ArgumentTypeError(f"matmul(): 'bias' must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.dim() != 1 or bias.shape[0] != b.shape[1]:
            raise ShapeError(f"matmul(): 'bias' must have shape ({b.shape[1]},), got {tuple(bias.shape)}")
        if bias.dtype not in (a.dtype, torch.float32):
            raise DtypeError(f"matmul(): 'bias' has dtype {bias.dtype}; expected {a.dtype} or float32")
        if bias.device != a.device:
            raise DeviceError(f"matmul(): 'bias' is on {bias.device} but 'a' is on {a.device}")
    if activation not in ACTIVATIONS:
        raise InputError(f"matmul(): 'activation' must be one of {ACTIVATIONS}, got {activation!r}")


def _direct_ok(*tensors) -> bool:
    """Plain eager inference (no autograd, no tracing, no tensor subclass or functorch transform):
    the kernel can be launched without going through the custom op."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or (grad and t.requires_grad)):
            return False
    return True


def _eager_autograd_ok(*tensors) -> bool:
    """Eager training on plain tensors: autograd.Function is enough (torch.compile and functorch
    transforms go through the custom op)."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return False
    return all(t is None or type(t) is torch.Tensor for t in tensors)


def matmul(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor] = None,
           activation: Optional[str] = None) -> torch.Tensor:
    """``activation(a @ b + bias)`` with fp32 accumulation; see the module docstring.

    a: [..., K] (fp16/bf16/fp32), b: [K, N] (same dtype), bias: [N] or None,
    activation: None | "relu" | "gelu" | "silu". Returns [..., N] in a's dtype.
    Differentiable in a, b and bias."""
    _check(a, b, bias, activation)
    lead = a.shape[:-1]
    a2 = a if a.dim() == 2 else a.reshape(-1, a.shape[-1])
    if _direct_ok(a, b, bias):
        out = _run(a2, b, bias, activation)  # skips the custom op's dispatch (about 10 us)
    elif _eager_autograd_ok(a, b, bias):
        out = _MatmulFn.apply(a2, b, bias, activation)
    else:
        out = _matmul_op(a2, b, bias, activation)
    return out if a.dim() == 2 else out.reshape(*lead, b.shape[1])


# ---------------------------------------------------------------------------------------------
# Op contract (docs/CONTRACTS.md §1)
# ---------------------------------------------------------------------------------------------

def make_inputs(shape: tuple, dtype: torch.dtype, device) -> tuple:
    m, n, k = shape[:3]
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device) / math.sqrt(k)
    return a, b


def impl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return matmul(a, b)


def eager(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.matmul(a, b)


BASELINES = {"cublas": torch.matmul}


def reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.device.type == "cpu":
        return torch.matmul(a.double(), b.double()).float()
    return torch.matmul(a.float(), b.float())


def work(shape: tuple, dtype) -> float:
    m, n, k = shape[:3]
    return 2.0 * m * n * k


def backward_work(shape: tuple, dtype) -> float:
    m, n, k = shape[:3]
    return 4.0 * m * n * k
