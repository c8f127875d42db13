"""LayerNorm, forward and backward, written in helion_ops.dsl.

``layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5)`` matches
``torch.nn.functional.layer_norm``: any rank; the trailing ``normalized_shape`` dims are flattened
into rows of N (a view when possible, see ``helion_ops._oplib.as_rows``).

Kernels:
* ``layer_norm_fwd``: one row-reduction kernel, ``for tile_m in hl.tile(m): x[tile_m, :]``; mean, then
  the centred variance (two-pass, no E[x^2]-E[x]^2 cancellation), fp32 math, output in x's dtype;
  saves ``mean`` and ``rstd`` (fp32, [M]) for backward; where no gradient is wanted (``stats=False``) it
  neither allocates nor writes them. Persistent or looped per Config.
* ``layer_norm_bwd``: ``dx = (w*dy - (xhat * mean(xhat*w*dy) + mean(w*dy))) * rstd`` per row; dweight
  and dbias through per-program partial sums (no atomics): programs of ``rows`` rows (a registered
  block size) step through them ``sub`` rows at a time ([sub, N] tiles, so short rows still keep
  enough loads in flight), accumulate ``sum(dy * xhat)`` and ``sum(dy)`` and store them into one
  ``[programs, K, N]`` fp32 buffer (K = how many of weight and bias are given: row 0 dweight, then
  dbias); a second device loop sums its programs into one ``[K, N]`` result in x's dtype, whose rows
  (views) are dweight and dbias. Both launches come from one kernel call (replayed back to back), not a
  launch plus torch's ``sum(0)`` and cast, which cost two more dispatches of host time per backward.

The op layer (``helion_ops._oplib``) makes ``helion_ops::layer_norm_fwd`` / ``layer_norm_bwd`` custom ops
with fakes and autograd, and ``layer_norm_infer`` (y only) for calls that need no gradient
(``C.inference``); ``layer_norm_bwd`` returns ``(dx, dparams)`` with dparams that ``[K, N]`` tensor
(custom ops may not return two outputs that share a storage), and the autograd formula takes its rows.

Memory (tests/reliability/test_memory.py): the forward allocates y, plus ``mean`` and ``rstd`` ([M] fp32
each, saved for backward) when a gradient is wanted; backward allocates dx, one ``[K, N]`` tensor holding
dweight and dbias (K as above), plus the workspace of one ``[P, K, N]`` fp32 partial-sum buffer
(P = cdiv(M, rows per program), about 2 per SM).
"""
from __future__ import annotations

from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _oplib as C
from helion_ops.ops._rows import norm_bwd_config, row_config

NAME = "layer_norm"


# ---- kernels ------------------------------------------------------------------------------------

@helion.kernel(replay_host=True)
def layer_norm_fwd(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float,
                   stats: bool = True):
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    # statistics only where a backward will read them (inference allocates and writes neither)
    mean_out = torch.empty([m], dtype=torch.float32, device=x.device) if stats else None
    rstd_out = torch.empty([m], dtype=torch.float32, device=x.device) if stats else None
    for tile_m in hl.tile(m):
        xv = x[tile_m, :].to(torch.float32)
        mean = torch.sum(xv, dim=1) * (1.0 / n)
        xc = xv - mean[:, None]
        var = torch.sum(xc * xc, dim=1) * (1.0 / n)
        r = torch.rsqrt(var + eps)
        y = xc * r[:, None]
        # weight and bias are loaded after the reductions: loaded first (as rms_norm_fwd does), two more
        # row-length fp32 vectors stay live through them, which ran slower at N = 8192 (docs/decisions/norm-forwards.md)
        if weight is not None:
            y = y * weight[:].to(torch.float32)
        if bias is not None:
            y = y + bias[:].to(torch.float32)
        out[tile_m, :] = y.to(x.dtype)
        if stats:
            mean_out[tile_m] = mean
            rstd_out[tile_m] = r
    return out, mean_out, rstd_out


@helion.kernel(replay_host=True)
def layer_norm_bwd(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                   bias: Optional[torch.Tensor], mean: torch.Tensor, rstd: torch.Tensor):
    # ``bias`` is only a flag (and the shape of the dbias accumulator): its values are not needed.
    m, n = x.size()
    rows = hl.register_block_size(m)          # rows per program (one partial-sum row each)
    sub = hl.register_block_size(m)           # rows per inner step (a [sub, n] tile in registers)
    dx = torch.empty([m, n], dtype=x.dtype, device=x.device)
    k = (weight is not None) + (bias is not None)  # rows of dwb: dweight (if weight), then dbias (if bias)
    dwbp = torch.empty([hl.cdiv(m, rows), k, n], dtype=torch.float32, device=x.device) if k else None
    for tile_m in hl.tile(m, block_size=rows):
        if weight is not None:
            w = weight[:].to(torch.float32)
            dw_acc = torch.zeros_like(w)
        if bias is not None:
            db_acc = torch.zeros_like(bias[:], dtype=torch.float32)
        for tile_r in hl.tile(tile_m.begin, tile_m.end, block_size=sub):
            xv = x[tile_r, :].to(torch.float32)
            g = dy[tile_r, :].to(torch.float32)
            r = rstd[tile_r]
            xhat = (xv - mean[tile_r][:, None]) * r[:, None]
            if weight is not None:
                wg = g * w
                dw_acc = dw_acc + torch.sum(g * xhat, dim=0)
            else:
                wg = g
            if bias is not None:
                db_acc = db_acc + torch.sum(g, dim=0)
            c1 = torch.sum(xhat * wg, dim=1) * (1.0 / n)
            c2 = torch.sum(wg, dim=1) * (1.0 / n)
            dx[tile_r, :] = ((wg - (xhat * c1[:, None] + c2[:, None])) * r[:, None]).to(x.dtype)
        if weight is not None:
            dwbp[tile_m.id, 0, :] = dw_acc
        if bias is not None:
            dwbp[tile_m.id, k - 1, :] = db_acc
    dwb = None
    if k:
        dwb = torch.empty([k, n], dtype=x.dtype, device=x.device)
        for tile_n in hl.tile(n):  # the partial sums' column sums: [programs, tile_n] per program
            if weight is not None:
                dwb[0, tile_n] = torch.sum(dwbp[:, 0, tile_n], dim=0).to(x.dtype)
            if bias is not None:
                dwb[k - 1, tile_n] = torch.sum(dwbp[:, k - 1, tile_n], dim=0).to(x.dtype)
    return dx, dwb


def _default_fwd(shape: tuple) -> helion.Config:
    return row_config(*shape)


def _default_bwd(shape: tuple) -> helion.Config:
    return norm_bwd_config(*shape)


def _default_bwd_no_params(shape: tuple) -> helion.Config:
    return norm_bwd_config(*shape, partials=False)


def _eager_kernel(x, weight, bias, eps, stats):
    y, mean, rstd = _eager_fwd(x, weight, bias, eps)
    return (y, mean, rstd) if stats else (y, None, None)


def _eager_fwd(x, weight, bias, eps):
    xf = C.acc(x)
    mean = xf.mean(-1)
    xc = xf - mean[:, None]
    rstd = torch.rsqrt((xc * xc).mean(-1) + eps)
    y = xc * rstd[:, None]
    if weight is not None:
        y = y * C.acc(weight)
    if bias is not None:
        y = y + C.acc(bias)
    return y.to(x.dtype), mean, rstd


def _eager_bwd(dy, x, weight, bias, mean, rstd):
    """dx and the [K, N] dweight/dbias rows in x's dtype (None if K = 0)."""
    g = C.acc(dy)
    xhat = (C.acc(x) - mean[:, None]) * rstd[:, None]
    wg = g * C.acc(weight) if weight is not None else g
    c1 = (xhat * wg).mean(-1, keepdim=True)
    c2 = wg.mean(-1, keepdim=True)
    dx = ((wg - (xhat * c1 + c2)) * rstd[:, None]).to(x.dtype)
    parts = ([(g * xhat).sum(0)] if weight is not None else []) + ([g.sum(0)] if bias is not None else [])
    return dx, (torch.stack(parts).to(x.dtype) if parts else None)


# Both kernels use their table at its own shapes only (exact): a nearby entry's rows per program suit
# that entry's M and N, and served elsewhere such entries ran slower than the default (docs/decisions/pretuned-lookup.md).
_fwd = C.Kern(NAME, layer_norm_fwd, lambda a: _default_fwd(tuple(a[0].shape)), eager=_eager_kernel, exact=(0, 1))
_bwd = C.Kern(NAME, layer_norm_bwd, lambda a: _default_bwd(tuple(a[1].shape)), eager=_eager_bwd, exact=(0, 1),
              key=lambda a: tuple(a[1].shape))
# Without weight and bias the kernel has no partial-sum loop, so the table's entries do not fit it.
_bwd_no_params = C.Kern(NAME, layer_norm_bwd, lambda a: _default_bwd_no_params(tuple(a[1].shape)),
                        eager=_eager_bwd, key=lambda a: tuple(a[1].shape))


def _fake_bwd(dy, x, weight, bias, mean, rstd):
    k = (weight is not None) + (bias is not None)
    return torch.empty_like(x), x.new_empty([k, x.shape[1]])


@C.op("layer_norm_bwd", fake=_fake_bwd)
def layer_norm_bwd_op(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                      bias: Optional[torch.Tensor], mean: torch.Tensor,
                      rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dparams): dparams is [K, N] in x's dtype, K = how many of weight and bias are given, rows
    dweight (if weight) then dbias (if bias)."""
    dy = C.grad_rows(dy, x)
    if weight is None and bias is None:
        return _bwd_no_params(dy, x, None, None, mean, rstd)[0], C.placeholder(x, (0, x.shape[1]))
    return _bwd(dy, x, weight, bias, mean, rstd)


def _backward(inputs, saved, needs, dy, _dmean, _drstd):
    x, weight, bias, _eps = inputs
    dx, dparams = layer_norm_bwd_op(dy, x, weight, bias, *saved)
    return (dx, C.row(dparams, 0) if weight is not None and needs[1] else None,
            C.row(dparams, -1) if bias is not None and needs[2] else None, None)


@C.op("layer_norm_fwd", eager=_eager_fwd, backward=_backward, save_outputs=(1, 2))
def layer_norm_fwd_op(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                      eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LayerNorm of [M, N] rows; returns (y, mean[M], rstd[M]), the statistics in fp32."""
    return _fwd(x, weight, bias, eps, True)


@C.op("layer_norm_infer", eager=lambda x, weight, bias, eps: _eager_fwd(x, weight, bias, eps)[0])
def layer_norm_infer_op(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                        eps: float) -> torch.Tensor:
    """LayerNorm of [M, N] rows where no gradient is wanted: y only, no statistics."""
    return _fwd(x, weight, bias, eps, False)[0]


# ---- public API ---------------------------------------------------------------------------------

def _check(x, normalized_shape, weight, bias, eps) -> tuple[int, float]:
    """(N, eps as a float) of valid arguments."""
    C.check_input(NAME, x)
    ns, n = C.normalized_size(NAME, x, normalized_shape)
    C.check_param(NAME, "weight", weight, x, ns)
    C.check_param(NAME, "bias", bias, x, ns)
    return n, eps if type(eps) is float else C.check_float(NAME, "eps", eps)


@C.public
def layer_norm(x: torch.Tensor, normalized_shape, weight: Optional[torch.Tensor] = None,
               bias: Optional[torch.Tensor] = None, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the trailing ``normalized_shape`` dims (like ``torch.nn.functional.layer_norm``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` (biased variance), fp32 math, output in x's
    dtype. ``weight``/``bias`` must have shape ``normalized_shape`` and x's dtype. Differentiable (x,
    weight, bias, to any order); works under ``torch.compile(fullgraph=True)``, ``torch.func`` and on
    meta tensors.
    """
    n, eps = _check(x, normalized_shape, weight, bias, eps)
    x2 = C.as_rows(x, n)
    w, b = C.as_vector(weight, n), C.as_vector(bias, n)
    y2 = layer_norm_infer_op(x2, w, b, eps) if C.inference(x, weight, bias) else layer_norm_fwd_op(x2, w, b, eps)[0]
    return y2 if x2 is x else C.unview(y2, x.shape)
