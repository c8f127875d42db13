"""RMSNorm, forward and backward, written in helion_ops.dsl.

``rms_norm(x, normalized_shape, weight=None, eps=None)`` matches ``torch.nn.functional.rms_norm``:
any rank; the trailing ``normalized_shape`` dims are flattened into rows of N (a view when possible,
see ``helion_ops._oplib.as_rows``); ``eps=None`` means ``torch.finfo(x.dtype).eps``.

Kernels:
* ``rms_norm_fwd``: one row-reduction kernel, ``for tile_m in hl.tile(m): x[tile_m, :]``; fp32 math,
  output in x's dtype; saves ``rstd`` (fp32, [M]) for backward (``stats=False``, where no gradient is
  wanted: neither allocated nor written). Persistent or looped per Config (``reduction_loops``).
* ``rms_norm_bwd``: ``dx = (w*dy - xhat * mean(xhat * w*dy)) * rstd`` per row, and dweight through
  per-program partial sums (no atomics, as Liger and quack do): programs of ``rows`` rows (a
  registered block size) step through them ``sub`` rows at a time ([sub, N] tiles, so short rows
  still keep enough loads in flight) and accumulate ``sum(dy * xhat)`` into one row of a
  [programs, N] fp32 buffer each; a second device loop sums those rows into dweight in x's dtype.
  Both launches come from one kernel call, so a backward is two launches replayed back to back
  instead of a launch plus torch's ``sum(0)`` and cast (two more dispatches of host time).

The op layer (``helion_ops._oplib``) makes ``helion_ops::rms_norm_fwd`` / ``rms_norm_bwd`` custom ops
with fakes and autograd, and ``rms_norm_infer`` (y only) for calls that need no gradient (``C.inference``).

Memory (tests/reliability/test_memory.py): the forward allocates y, plus ``rstd`` ([M] fp32, saved for
backward) when a gradient is wanted; backward allocates dx, dweight plus a ``[P, N]`` fp32 partial-sum
workspace (P = cdiv(M, rows per program), about 2 per SM).
"""
from __future__ import annotations

from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _oplib as C
from helion_ops.ops._rows import norm_bwd_config, row_config

NAME = "rms_norm"


# ---- kernels ------------------------------------------------------------------------------------

@helion.kernel(replay_host=True)
def rms_norm_fwd(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float, stats: bool = True):
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    # rstd only where a backward will read it (inference allocates and writes none)
    rstd = torch.empty([m], dtype=torch.float32, device=x.device) if stats else None
    for tile_m in hl.tile(m):
        # weight is loaded before the row's reduction so its latency overlaps x's load instead of
        # following the reduction (H100 probes: docs/decisions/norm-forwards.md)
        w = weight[:].to(torch.float32) if weight is not None else None
        xv = x[tile_m, :].to(torch.float32)
        r = torch.rsqrt(torch.sum(xv * xv, dim=1) * (1.0 / n) + eps)
        y = xv * r[:, None]
        if weight is not None:
            y = y * w
        out[tile_m, :] = y.to(x.dtype)
        if stats:
            rstd[tile_m] = r
    return out, rstd


@helion.kernel(replay_host=True)
def rms_norm_bwd(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor], rstd: torch.Tensor):
    m, n = x.size()
    rows = hl.register_block_size(m)          # rows per program (one partial-sum row each)
    sub = hl.register_block_size(m)           # rows per inner step (a [sub, n] tile in registers)
    dx = torch.empty([m, n], dtype=x.dtype, device=x.device)
    dwp = torch.empty([hl.cdiv(m, rows), n], dtype=torch.float32, device=x.device) if weight is not None else None
    for tile_m in hl.tile(m, block_size=rows):
        if weight is not None:
            w = weight[:].to(torch.float32)
            dw_acc = torch.zeros_like(w)
        for tile_r in hl.tile(tile_m.begin, tile_m.end, block_size=sub):
            xv = x[tile_r, :].to(torch.float32)
            g = dy[tile_r, :].to(torch.float32)
            r = rstd[tile_r]
            xhat = xv * r[:, None]
            if weight is not None:
                wg = g * w
                dw_acc = dw_acc + torch.sum(g * xhat, dim=0)
            else:
                wg = g
            c = torch.sum(xhat * wg, dim=1) * (1.0 / n)
            dx[tile_r, :] = ((wg - xhat * c[:, None]) * r[:, None]).to(x.dtype)
        if weight is not None:
            dwp[tile_m.id, :] = dw_acc
    dw = None
    if weight is not None:
        dw = torch.empty([n], dtype=x.dtype, device=x.device)
        for tile_n in hl.tile(n):  # the partial sums' column sums: [programs, tile_n] per program
            dw[tile_n] = torch.sum(dwp[:, tile_n], dim=0).to(x.dtype)
    return dx, dw


def _default_fwd(shape: tuple) -> helion.Config:
    return row_config(*shape)


def _default_bwd(shape: tuple) -> helion.Config:
    return norm_bwd_config(*shape)


def _default_bwd_no_weight(shape: tuple) -> helion.Config:
    return norm_bwd_config(*shape, partials=False)


def _eager_kernel(x, weight, eps, stats):
    y, rstd = _eager_fwd(x, weight, eps)
    return y, (rstd if stats else None)


def _eager_fwd(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float):
    xf = C.acc(x)
    rstd = torch.rsqrt(xf.pow(2).mean(-1) + eps)
    y = xf * rstd[:, None]
    if weight is not None:
        y = y * C.acc(weight)
    return y.to(x.dtype), rstd


def _eager_bwd(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor], rstd: torch.Tensor):
    """(dx, dweight in x's dtype; None without weight)."""
    g, xhat = C.acc(dy), C.acc(x) * rstd[:, None]
    wg = g * C.acc(weight) if weight is not None else g
    c = (xhat * wg).mean(-1, keepdim=True)
    dx = ((wg - xhat * c) * rstd[:, None]).to(x.dtype)
    return dx, ((g * xhat).sum(0).to(x.dtype) if weight is not None else None)


# Both kernels use their table at its own shapes only (exact): a nearby entry's rows per program suit
# that entry's M and N, and served elsewhere such entries ran slower than the default (docs/decisions/pretuned-lookup.md).
_fwd = C.Kern(NAME, rms_norm_fwd, lambda a: _default_fwd(tuple(a[0].shape)), eager=_eager_kernel, exact=(0, 1))
_bwd = C.Kern(NAME, rms_norm_bwd, lambda a: _default_bwd(tuple(a[1].shape)), eager=_eager_bwd, exact=(0, 1),
              key=lambda a: tuple(a[1].shape))
# Without weight the kernel has no partial-sum loop, so the table's entries do not fit it.
_bwd_no_weight = C.Kern(NAME, rms_norm_bwd, lambda a: _default_bwd_no_weight(tuple(a[1].shape)), eager=_eager_bwd,
                        key=lambda a: tuple(a[1].shape))


def _fake_bwd(dy, x, weight, rstd):
    return torch.empty_like(x), x.new_empty([x.shape[1]] if weight is not None else [0])


@C.op("rms_norm_bwd", fake=_fake_bwd)
def rms_norm_bwd_op(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                    rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dweight); dweight is an empty tensor when weight is None."""
    dy = C.grad_rows(dy, x)
    if weight is None:
        return _bwd_no_weight(dy, x, None, rstd)[0], C.placeholder(x)
    return _bwd(dy, x, weight, rstd)


def _backward(inputs, saved, needs, dy, _drstd):
    x, weight, _eps = inputs
    dx, dw = rms_norm_bwd_op(dy, x, weight, saved[0])
    return dx, (dw if weight is not None and needs[1] else None), None


@C.op("rms_norm_fwd", eager=_eager_fwd, backward=_backward, save_outputs=(1,))
def rms_norm_fwd_op(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm of [M, N] rows; returns (y, rstd[M] in fp32)."""
    return _fwd(x, weight, eps, True)


@C.op("rms_norm_infer", eager=lambda x, weight, eps: _eager_fwd(x, weight, eps)[0])
def rms_norm_infer_op(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """RMSNorm of [M, N] rows where no gradient is wanted: y only, no rstd."""
    return _fwd(x, weight, eps, False)[0]


# ---- public API ---------------------------------------------------------------------------------

def _check(x, normalized_shape, weight, eps) -> tuple[int, float]:
    """(N, eps as a float) of valid arguments."""
    C.check_input(NAME, x)
    ns, n = C.normalized_size(NAME, x, normalized_shape)
    C.check_param(NAME, "weight", weight, x, ns)
    return n, float(torch.finfo(x.dtype).eps) if eps is None else C.check_float(NAME, "eps", eps)


@C.public
def rms_norm(x: torch.Tensor, normalized_shape, weight: Optional[torch.Tensor] = None,
             eps: Optional[float] = None) -> torch.Tensor:
    """RMSNorm over the trailing ``normalized_shape`` dims (like ``torch.nn.functional.rms_norm``).

    ``y = x / sqrt(mean(x**2) + eps) * weight``, fp32 math, output in x's dtype. ``weight`` must have
    shape ``normalized_shape`` and x's dtype. Differentiable (x and weight, to any order); works under
    ``torch.compile(fullgraph=True)``, ``torch.func`` and on meta tensors.
    """
    n, eps = _check(x, normalized_shape, weight, eps)
    x2 = C.as_rows(x, n)
    w = C.as_vector(weight, n)
    y2 = rms_norm_infer_op(x2, w, eps) if C.inference(x, weight) else rms_norm_fwd_op(x2, w, eps)[0]
    return y2 if x2 is x else C.unview(y2, x.shape)
