"""Softmax over a dimension, forward and backward, written in helion_ops.dsl.

``softmax(x, dim=-1)`` matches ``torch.nn.functional.softmax``: any rank; the reduced dim is moved last
(``movedim``), the tensor is viewed as [M, N] rows (a copy only when the last dim is strided, see
``helion_ops._common``), one row-reduction kernel runs, and the result is moved back.

Kernels (one source each; the Config chooses the variant):
* ``softmax_fwd``: ``for tile_m in hl.tile(m): x[tile_m, :]``; max, exp, sum in fp32, stored in x's dtype.
  Persistent (whole rows in registers, one read of x) when ``reduction_loops=[None]``; looped over chunks
  of the row when ``reduction_loops=[chunk]`` (three passes over the row: max, sum, output).
* ``softmax_fwd_online``: for rows too long for registers (next_pow2(N) > ``ONLINE_ABOVE``): an online
  softmax over column tiles, two passes (running max and rescaled sum; output). On the H100 it beat
  the three-pass looped kernel at N=128256 (2.15 vs 1.49 TB/s, bf16, counting one read and one write;
  2.31 TB/s in the harness once its second pass ran reversed, see below).
  The running max is taken as 0 while every column so far is -inf (a masked prefix), so a first tile
  of -inf does not make ``exp(-inf - -inf)`` NaN. As ``torch.softmax``: -inf columns give 0; a row of
  all -inf, or one holding NaN or +inf, gives NaN.
* ``softmax_bwd``: ``dx = y * (dy - sum(dy * y))``, same structure.
* ``softmax_bwd_looped``: the backward for the same long rows, as two explicit loops over column tiles
  (``sum(y * dy)``, then dx).

Long rows take their second pass last tile first (``range_reverses``): with every SM streaming its own
256 KB row, only the most recently read part of a row is still in L2 when the second pass begins.

Both are ``torch.library`` custom ops (``helion_ops::softmax_fwd`` / ``softmax_bwd``) with fake
implementations and autograd, so ``torch.compile(fullgraph=True)`` sees no graph break.

Memory (tests/reliability/test_memory.py): the output only, forward and backward; autograd saves the
output. No workspace. A copy of x only when its reduced dim is strided (``_common.as_rows``).
"""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _common as C

NAME = "softmax"
METRIC = "GB/s"
# Llama-like (M, N), each input <= 1 GiB in bf16; N=1000 and 4097 are the awkward (non power of two) rows.
SHAPES = [(m, n) for m in (4096, 16384, 32768) for n in (1000, 4096, 5120, 8192, 32000, 128256)
          if m * n * 2 <= 2**30] + [(4096, 4097)]
SMALL_SHAPES = [(3, 1), (5, 17), (4, 1000), (2, 4097)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_INPUTS = (0,)
BASELINES: dict = {}


# ---- kernels ------------------------------------------------------------------------------------

@helion.kernel(replay_host=True)
def softmax_fwd(x: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m in hl.tile(m):
        row = x[tile_m, :].to(torch.float32)
        amax = torch.amax(row, dim=1, keepdim=True)
        e = torch.exp(row - amax)
        denom = torch.sum(e, dim=1, keepdim=True)
        out[tile_m, :] = (e * (1.0 / denom)).to(x.dtype)
    return out


@helion.kernel(replay_host=True)
def softmax_fwd_online(x: torch.Tensor) -> torch.Tensor:
    """Two passes over long rows (running max and rescaled sum, then the output) instead of three."""
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    block_n = hl.register_block_size(n)
    for tile_m in hl.tile(m):
        mi = hl.full([tile_m], float("-inf"), dtype=torch.float32)
        di = hl.zeros([tile_m], dtype=torch.float32)
        for tile_n in hl.tile(n, block_size=block_n):
            v = x[tile_m, tile_n].to(torch.float32)
            m_new = torch.maximum(mi, torch.amax(v, dim=1))
            # While every column so far is -inf, rescale against 0, not -inf: exp(-inf - -inf) is NaN,
            # exp(-inf - 0) the wanted 0. A row that stays all -inf still ends NaN, as torch's.
            m_ref = torch.where(m_new == float("-inf"), 0.0, m_new)
            di = di * torch.exp(mi - m_ref) + torch.sum(torch.exp(v - m_ref[:, None]), dim=1)
            mi = m_new
        inv = 1.0 / di
        for tile_n in hl.tile(n, block_size=block_n):
            v = x[tile_m, tile_n].to(torch.float32)
            out[tile_m, tile_n] = (torch.exp(v - mi[:, None]) * inv[:, None]).to(x.dtype)
    return out


@helion.kernel(replay_host=True)
def softmax_bwd_looped(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Rows too long for registers: ``sum(y * dy)`` over column tiles, then dx over them again."""
    m, n = y.size()
    dx = torch.empty([m, n], dtype=y.dtype, device=y.device)
    block_n = hl.register_block_size(n)
    for tile_m in hl.tile(m):
        acc = hl.zeros([tile_m, block_n], dtype=torch.float32)
        for tile_n in hl.tile(n, block_size=block_n):
            acc = acc + y[tile_m, tile_n].to(torch.float32) * dy[tile_m, tile_n].to(torch.float32)
        dot = torch.sum(acc, dim=1, keepdim=True)
        for tile_n in hl.tile(n, block_size=block_n):
            g = dy[tile_m, tile_n].to(torch.float32)
            dx[tile_m, tile_n] = (y[tile_m, tile_n].to(torch.float32) * (g - dot)).to(y.dtype)
    return dx


@helion.kernel(replay_host=True)
def softmax_bwd(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    m, n = y.size()
    dx = torch.empty([m, n], dtype=y.dtype, device=y.device)
    for tile_m in hl.tile(m):
        yv = y[tile_m, :].to(torch.float32)
        g = dy[tile_m, :].to(torch.float32)
        dot = torch.sum(yv * g, dim=1, keepdim=True)
        dx[tile_m, :] = (yv * (g - dot)).to(y.dtype)
    return dx


def _default(shape: tuple) -> helion.Config:
    m, n = shape
    return C.row_config(m, n)


# Rows longer than this (next power of two) do not fit in registers: they run the two-pass online kernel.
ONLINE_ABOVE = 32768


def _long_rows(n: int, loads_per_pass: int) -> helion.Config:
    """The two long-row kernels' default: 16K-column tiles, 16 warps; the first pass keeps the row in L2
    (evict_last), the second releases it (evict_first) and runs last tile first, so it starts on the
    tiles most likely still there. H100, bf16, N=128256 (probes: docs/decisions/softmax-long-rows.md): forward 908 us,
    against 979 without the reversal and 998 reversed without the hints (an earlier probe: 2.15 TB/s
    with the hints, 1.96 without, 1.49 for the looped three-pass kernel); backward 1478 us, against 1590
    without the reversal and 1750 for the chunked ``softmax_bwd`` (reduction_loops=[8192])."""
    return helion.Config(block_sizes=[min(16384, C.next_pow2(n)), 1], num_warps=16, num_stages=1,
                         load_eviction_policies=["last"] * loads_per_pass + ["first"] * loads_per_pass,
                         range_reverses=[False, True])


def _default_online(shape: tuple) -> helion.Config:
    return _long_rows(shape[1], 1)  # x in each pass


def _default_bwd_looped(shape: tuple) -> helion.Config:
    return _long_rows(shape[1], 2)  # y and dy in each pass


def _eager_fwd(x: torch.Tensor) -> torch.Tensor:
    """The kernels' result with PyTorch (fp32 math): the fallback when a kernel cannot compile or launch."""
    return torch.softmax(x.float(), dim=-1).to(x.dtype)


def _eager_bwd(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    yf, gf = y.float(), dy.float()
    return (yf * (gf - (yf * gf).sum(-1, keepdim=True))).to(y.dtype)


_fwd = C.Launcher(NAME, softmax_fwd, _default, eager=_eager_fwd)
_fwd_online = C.Launcher(NAME, softmax_fwd_online, _default_online, eager=_eager_fwd)
_bwd = C.Launcher(NAME, softmax_bwd, _default, eager=_eager_bwd)
_bwd_looped = C.Launcher(NAME, softmax_bwd_looped, _default_bwd_looped, eager=_eager_bwd)


def _rows_fwd(x2: torch.Tensor) -> torch.Tensor:
    if x2.numel() == 0:
        return torch.empty(x2.shape, dtype=x2.dtype, device=x2.device)
    if C.next_pow2(x2.shape[1]) > ONLINE_ABOVE:
        return _fwd_online(x2)
    return _fwd(x2)


# ---- torch.library ops --------------------------------------------------------------------------

@torch.library.custom_op("helion_ops::softmax_fwd", mutates_args=())
def softmax_fwd_op(x: torch.Tensor) -> torch.Tensor:
    """Row softmax of a 2-D [M, N] tensor (unit stride along N)."""
    C.check_device(NAME, "input", x)
    return _rows_fwd(x)


@softmax_fwd_op.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@torch.library.custom_op("helion_ops::softmax_bwd", mutates_args=())
def softmax_bwd_op(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Gradient of row softmax: y * (dy - sum(dy * y, -1))."""
    return _rows_bwd(y, dy)


def _rows_bwd(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    C.check_device(NAME, "grad_output", dy)
    if y.numel() == 0:
        return torch.empty(y.shape, dtype=y.dtype, device=y.device)
    dy = C.as_rows(dy, y.shape[1])
    if C.next_pow2(y.shape[1]) > ONLINE_ABOVE:
        return _bwd_looped(y, dy)
    return _bwd(y, dy)


@softmax_bwd_op.register_fake
def _(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    return torch.empty(y.shape, dtype=y.dtype, device=y.device)


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(output)


def _backward(ctx, dy: torch.Tensor) -> torch.Tensor:
    (y,) = ctx.saved_tensors
    return softmax_bwd_op(y, dy.to(y.dtype))


softmax_fwd_op.register_autograd(_backward, setup_context=_setup)


class _SoftmaxFn(torch.autograd.Function):
    """Eager training: the same kernels as the custom ops, without torch.library's per-call
    dispatch (about 20 us forward and 35 us backward of host time, which is longer than the
    kernels on small inputs). torch.compile traces the custom ops instead."""

    @staticmethod
    def forward(ctx, x2: torch.Tensor) -> torch.Tensor:
        C.check_device(NAME, "input", x2)
        y = _rows_fwd(x2)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return _rows_bwd(y, dy.to(y.dtype))


# ---- public API ---------------------------------------------------------------------------------

def softmax(x: torch.Tensor, dim: int = -1, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Softmax of ``x`` along ``dim`` (like ``torch.nn.functional.softmax``).

    fp32, fp16 and bf16 inputs; fp32 math; the result has ``x``'s dtype (or ``dtype``, to which ``x`` is
    cast first, as in torch). Differentiable; works under ``torch.compile(fullgraph=True)``.
    """
    C.check_input(NAME, x)
    if dtype is not None:
        if dtype not in C.FLOAT_DTYPES:
            raise C.DtypeError(f"{NAME}(): argument 'dtype' is {dtype!r}; expected None, torch.float32, "
                               f"torch.float16 or torch.bfloat16")
        x = x.to(dtype)
    nd = x.dim()
    if type(dim) is not int:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise C.ArgumentTypeError(f"{NAME}(): argument 'dim' must be an int, got {type(dim).__name__}")
        dim = int(dim)
    if nd == 0:
        if dim not in (0, -1):
            raise C.ShapeError(f"{NAME}(): argument 'dim' = {dim} is out of range for a 0-D input "
                               f"(expected -1 or 0)")
        return softmax(x.reshape(1), 0).reshape(())
    if not -nd <= dim < nd:
        raise C.ShapeError(f"{NAME}(): argument 'dim' = {dim} is out of range for a {nd}-D input "
                           f"(expected {-nd} <= dim < {nd})")
    dim %= nd
    xt = x if dim == nd - 1 else x.movedim(dim, -1)
    n = xt.shape[-1]
    x2 = C.as_rows(xt, n)
    if torch.compiler.is_compiling():
        y2 = softmax_fwd_op(x2)
    elif x2.requires_grad:
        y2 = _SoftmaxFn.apply(x2)
    else:  # eager inference: skip the custom-op dispatch
        C.check_device(NAME, "input", x2)
        y2 = _rows_fwd(x2)
    y = y2 if x2 is xt else y2.view(xt.shape)
    return y if dim == nd - 1 else y.movedim(-1, dim)


# ---- op contract (docs/CONTRACTS.md §1) ---------------------------------------------------------

def make_inputs(shape, dtype, device):
    """One random (M, N) matrix."""
    return (torch.randn(shape, dtype=dtype, device=device),)


def impl(x):
    return softmax(x, dim=-1)


def eager(x):
    return torch.softmax(x, dim=-1)


def reference(x):
    """fp64 softmax, returned in fp32."""
    return torch.softmax(x.double(), dim=-1).float()


def _es(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def work(shape, dtype) -> float:
    """One read of x and one write of out."""
    m, n = shape[:2]
    return 2.0 * m * n * _es(dtype)


def backward_work(shape, dtype) -> float:
    """Read y and dy, write dx."""
    m, n = shape[:2]
    return 3.0 * m * n * _es(dtype)
