"""Softmax over a dimension, forward and backward, written in helion_ops.dsl.

``softmax(x, dim=-1)`` matches ``torch.nn.functional.softmax``: any rank; the reduced dim is moved last
(``movedim``), the tensor is viewed as [M, N] rows (a copy only when the last dim is strided, see
``helion_ops._oplib.as_rows``), one row-reduction kernel runs, and the result is moved back.

Kernels (one source each; the Config chooses the variant):
* ``softmax_fwd``: ``for tile_m in hl.tile(m): x[tile_m, :]``; max, exp, sum in fp32, stored in x's dtype.
  Persistent (whole rows in registers, one read of x) when ``reduction_loops=[None]``; looped over chunks
  of the row when ``reduction_loops=[chunk]`` (three passes over the row: max, sum, output).
* ``softmax_fwd_online``: for rows too long for registers (next_pow2(N) > ``ONLINE_ABOVE``): an online
  softmax over column tiles, two passes (running max and rescaled sum; output) instead of the looped
  kernel's three (results/<GPU>/softmax.md, docs/decisions/softmax-long-rows.md).
  The running max is taken as 0 while every column so far is -inf (a masked prefix), so a first tile
  of -inf does not make ``exp(-inf - -inf)`` NaN. As ``torch.softmax``: -inf columns give 0; a row of
  all -inf, or one holding NaN or +inf, gives NaN.
* ``softmax_bwd``: ``dx = y * (dy - sum(dy * y))``, same structure.
* ``softmax_bwd_looped``: the backward for the same long rows, as two explicit loops over column tiles
  (``sum(y * dy)``, then dx).

Long rows take their second pass last tile first (``range_reverses``): with every SM streaming its own
256 KB row, only the most recently read part of a row is still in L2 when the second pass begins.

The op layer (``helion_ops._oplib``) makes ``helion_ops::softmax_fwd`` / ``softmax_bwd`` custom ops with
fakes and autograd, so ``torch.compile(fullgraph=True)`` sees no graph break.

Memory (tests/reliability/test_memory.py): the output only, forward and backward; autograd saves the
output (and references x). No workspace. A copy of x only when its reduced dim is strided (``as_rows``).
"""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _oplib as C
from helion_ops.ops._rows import row_config

NAME = "softmax"


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
    return row_config(*shape)


# Rows longer than this (next power of two) do not fit in registers: they run the two-pass online kernel.
ONLINE_ABOVE = 32768


def _long_rows(n: int, loads_per_pass: int) -> helion.Config:
    """The two long-row kernels' default: 16K-column tiles, 16 warps; the first pass keeps the row in L2
    (evict_last), the second releases it (evict_first) and runs last tile first, so it starts on the
    tiles most likely still there (device probes: docs/decisions/softmax-long-rows.md)."""
    return helion.Config(block_sizes=[min(16384, C.next_pow2(n)), 1], num_warps=16, num_stages=1,
                         load_eviction_policies=["last"] * loads_per_pass + ["first"] * loads_per_pass,
                         range_reverses=[False, True])


def _default_online(shape: tuple) -> helion.Config:
    return _long_rows(shape[1], 1)  # x in each pass


def _default_bwd_looped(shape: tuple) -> helion.Config:
    return _long_rows(shape[1], 2)  # y and dy in each pass


def _eager_fwd(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(C.acc(x), dim=-1).to(x.dtype)


def _eager_bwd(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    yf, gf = C.acc(y), C.acc(dy)
    return (yf * (gf - (yf * gf).sum(-1, keepdim=True))).to(y.dtype)


def _kern(kernel, default, eager):
    return C.Kern(NAME, kernel, lambda a: default(tuple(a[0].shape)), eager=eager)


_fwd, _fwd_online = _kern(softmax_fwd, _default, _eager_fwd), _kern(softmax_fwd_online, _default_online, _eager_fwd)
_bwd, _bwd_looped = _kern(softmax_bwd, _default, _eager_bwd), _kern(softmax_bwd_looped, _default_bwd_looped, _eager_bwd)


@C.op("softmax_bwd", eager=_eager_bwd)
def softmax_bwd_op(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Gradient of row softmax: y * (dy - sum(dy * y, -1))."""
    dy = C.grad_rows(dy, y)
    return (_bwd_looped if C.next_pow2(y.shape[1]) > ONLINE_ABOVE else _bwd)(y, dy)


def _backward(inputs, saved, needs, dy):
    return (softmax_bwd_op(saved[0], dy),)


@C.op("softmax_fwd", eager=_eager_fwd, backward=_backward, save_outputs=(0,))
def softmax_fwd_op(x: torch.Tensor) -> torch.Tensor:
    """Row softmax of a 2-D [M, N] tensor (unit stride along N)."""
    return (_fwd_online if C.next_pow2(x.shape[1]) > ONLINE_ABOVE else _fwd)(x)


# ---- public API ---------------------------------------------------------------------------------

def _check(x, dim, dtype) -> None:
    C.check_input(NAME, x)
    if dtype is not None and dtype not in C.FLOAT_DTYPES:
        raise C.DtypeError(f"{NAME}(): argument 'dtype' is {dtype!r}; expected None, torch.float32, "
                           f"torch.float16 or torch.bfloat16")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise C.ArgumentTypeError(f"{NAME}(): argument 'dim' must be an int, got {type(dim).__name__}")
    nd = max(x.dim(), 1)
    if not -nd <= dim < nd:
        raise C.ShapeError(f"{NAME}(): argument 'dim' = {dim} is out of range for a {x.dim()}-D input "
                           f"(expected {-nd} <= dim < {nd})")


@C.public
def softmax(x: torch.Tensor, dim: int = -1, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Softmax of ``x`` along ``dim`` (like ``torch.nn.functional.softmax``).

    fp32, fp16 and bf16 inputs; fp32 math; the result has ``x``'s dtype (or ``dtype``, to which ``x`` is
    cast first, as in torch). Differentiable (to any order); works under ``torch.compile(fullgraph=True)``,
    ``torch.func`` and on meta tensors.
    """
    _check(x, dim, dtype)
    if dtype is not None:
        x = x.to(dtype)
    if x.dim() == 0:
        return softmax(x.reshape(1), 0).reshape(())
    nd, dim = x.dim(), int(dim) % x.dim()
    xt = x if dim == nd - 1 else x.movedim(dim, -1)
    x2 = C.as_rows(xt, xt.shape[-1])
    y2 = softmax_fwd_op(x2)
    y = y2 if x2 is xt else C.unview(y2, xt.shape)
    return y if dim == nd - 1 else y.movedim(-1, dim)
