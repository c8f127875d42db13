"""LayerNorm, forward and backward, written in helion_ops.dsl.

``layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5)`` matches
``torch.nn.functional.layer_norm``: any rank; the trailing ``normalized_shape`` dims are flattened
into rows of N (a view when possible, see ``helion_ops._common``).

Kernels:
* ``layer_norm_fwd``: one row-reduction kernel, ``for tile_m in hl.tile(m): x[tile_m, :]``; mean, then
  the centred variance (two-pass, no E[x^2]-E[x]^2 cancellation), fp32 math, output in x's dtype;
  saves ``mean`` and ``rstd`` (fp32, [M]) for backward. Persistent or looped per Config.
* ``layer_norm_bwd``: ``dx = (w*dy - (xhat * mean(xhat*w*dy) + mean(w*dy))) * rstd`` per row; dweight
  and dbias through per-program partial sums (no atomics): programs of ``rows`` rows (a registered
  block size) step through them ``sub`` rows at a time ([sub, N] tiles, so short rows still keep
  enough loads in flight), accumulate ``sum(dy * xhat)`` and ``sum(dy)`` and store them into one
  ``[programs, K, N]`` fp32 buffer (K = how many of weight and bias are given: row 0 dweight, then
  dbias); a second device loop sums its programs into one ``[K, N]`` result in x's dtype, whose rows
  (views) are dweight and dbias. Both launches come from one kernel call (replayed back to back), not a
  launch plus torch's ``sum(0)`` and cast, which cost two more dispatches of host time per backward.

Custom ops ``helion_ops::layer_norm_fwd`` / ``layer_norm_bwd`` carry fake implementations and autograd;
``layer_norm_bwd`` returns ``(dx, dparams)`` with dparams that ``[K, N]`` tensor (custom ops may not
return two outputs that share a storage), and its autograd formula takes the rows.

Memory (tests/reliability/test_memory.py): forward allocates y plus ``mean`` and ``rstd`` ([M] fp32 each,
saved for backward); backward allocates dx, one ``[K, N]`` tensor holding dweight and dbias (K as
above), plus the workspace of one ``[P, K, N]`` fp32 partial-sum buffer (P = cdiv(M, rows per
program), about 2 per SM).
"""
from __future__ import annotations

from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _common as C

NAME = "layer_norm"
METRIC = "GB/s"
SHAPES = [(m, n) for m in (4096, 16384, 32768) for n in (1000, 4096, 5120, 8192)] + [(4096, 4097)]
SMALL_SHAPES = [(3, 1), (5, 17), (4, 1000), (2, 4097)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_INPUTS = (0, 1, 2)
BASELINES: dict = {}


# ---- kernels ------------------------------------------------------------------------------------

@helion.kernel(replay_host=True)
def layer_norm_fwd(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float):
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    mean_out = torch.empty([m], dtype=torch.float32, device=x.device)
    rstd_out = torch.empty([m], dtype=torch.float32, device=x.device)
    for tile_m in hl.tile(m):
        xv = x[tile_m, :].to(torch.float32)
        mean = torch.sum(xv, dim=1) * (1.0 / n)
        xc = xv - mean[:, None]
        var = torch.sum(xc * xc, dim=1) * (1.0 / n)
        r = torch.rsqrt(var + eps)
        y = xc * r[:, None]
        # weight and bias are loaded after the reductions: loaded first (as rms_norm_fwd does), two more
        # row-length fp32 vectors stay live through them, and at N = 8192 with 8 warps the kernel ran 8%
        # slower (H100 probe, fp16 and bf16), with no gain elsewhere
        if weight is not None:
            y = y * weight[:].to(torch.float32)
        if bias is not None:
            y = y + bias[:].to(torch.float32)
        out[tile_m, :] = y.to(x.dtype)
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
    m, n = shape
    return C.row_config(m, n)


def _default_bwd(shape: tuple) -> helion.Config:
    return C.norm_bwd_config(*shape)


def _default_bwd_no_params(shape: tuple) -> helion.Config:
    return C.norm_bwd_config(*shape, partials=False)


def _eager_fwd(x, weight, bias, eps):
    """``layer_norm_fwd``'s outputs with PyTorch (fp32 math): the fallback when the kernel cannot run."""
    xf = x.float()
    mean = xf.mean(-1)
    xc = xf - mean[:, None]
    rstd = torch.rsqrt((xc * xc).mean(-1) + eps)
    y = xc * rstd[:, None]
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype), mean, rstd


def _eager_bwd(dy, x, weight, bias, mean, rstd):
    """``layer_norm_bwd``'s outputs with PyTorch: dx and [K, N] dweight/dbias in x's dtype (None if K = 0)."""
    g = dy.float()
    xhat = (x.float() - mean[:, None]) * rstd[:, None]
    wg = g * weight.float() if weight is not None else g
    c1 = (xhat * wg).mean(-1, keepdim=True)
    c2 = wg.mean(-1, keepdim=True)
    dx = ((wg - (xhat * c1 + c2)) * rstd[:, None]).to(x.dtype)
    parts = ([(g * xhat).sum(0)] if weight is not None else []) + ([g.sum(0)] if bias is not None else [])
    return dx, (torch.stack(parts).to(x.dtype) if parts else None)


# Both kernels use their table at its own shapes only: a nearby entry's rows per program (and, in the
# backward, per step) suit that entry's M and N. Served elsewhere, such entries ran 1.03-1.23x slower
# than the default forward on 8 of 14 untabled shapes, and 1.09-2.05x slower than the default
# backward on 9 of 10 (H100 probes, see docs/decisions/pretuned-lookup.md).
_fwd = C.Launcher(NAME, layer_norm_fwd, _default_fwd, eager=_eager_fwd, exact=(0, 1))
_bwd = C.Launcher(NAME, layer_norm_bwd, _default_bwd, key_shape=lambda a: tuple(a[1].shape), eager=_eager_bwd,
                  exact=(0, 1))
# Without weight and bias the kernel has no partial-sum loop (one reduction dim fewer, its column block
# unused), so the shipped table's entries do not fit it and this default applies.
_bwd_no_params = C.Launcher(NAME, layer_norm_bwd, _default_bwd_no_params, key_shape=lambda a: tuple(a[1].shape),
                            eager=_eager_bwd)


def _rows_fwd(x2, w, b, eps):
    m = x2.shape[0]
    if x2.numel() == 0:
        stats = torch.empty([m], dtype=torch.float32, device=x2.device)
        return torch.empty(x2.shape, dtype=x2.dtype, device=x2.device), stats, stats.clone()
    return _fwd(x2, w, b, eps)


# ---- torch.library ops --------------------------------------------------------------------------

@torch.library.custom_op("helion_ops::layer_norm_fwd", mutates_args=())
def layer_norm_fwd_op(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                      eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LayerNorm of [M, N] rows; returns (y, mean[M], rstd[M]), the statistics in fp32."""
    C.check_device(NAME, "input", x)
    return _rows_fwd(x, weight, bias, eps)


@layer_norm_fwd_op.register_fake
def _(x, weight, bias, eps):
    m = x.shape[0]
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty([m], dtype=torch.float32, device=x.device),
            torch.empty([m], dtype=torch.float32, device=x.device))


@torch.library.custom_op("helion_ops::layer_norm_bwd", mutates_args=())
def layer_norm_bwd_op(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                      bias: Optional[torch.Tensor], mean: torch.Tensor,
                      rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dparams): dparams is [K, N] in x's dtype, K = how many of weight and bias are given, rows
    dweight (if weight) then dbias (if bias)."""
    return _rows_bwd(dy, x, weight, bias, mean, rstd)


def _rows_bwd(dy, x, weight, bias, mean, rstd):
    C.check_device(NAME, "grad_output", dy)
    m, n = x.shape
    k = (weight is not None) + (bias is not None)
    if x.numel() == 0:
        dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        return dx, torch.zeros([k, n], dtype=x.dtype, device=x.device)
    if not k:
        return _bwd_no_params(C.as_rows(dy, n), x, None, None, mean, rstd)[0], x.new_empty([0, n])
    return _bwd(C.as_rows(dy, n), x, weight, bias, mean, rstd)


def _param_grads(dparams, weight, bias, need) -> tuple:
    """(dweight, dbias): rows (views) of ``_rows_bwd``'s dparams; None where not given or not needed."""
    return (dparams[0] if weight is not None and need[1] else None,
            dparams[-1] if bias is not None and need[2] else None)


@layer_norm_bwd_op.register_fake
def _(dy, x, weight, bias, mean, rstd):
    k = (weight is not None) + (bias is not None)
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty([k, x.shape[1]], dtype=x.dtype, device=x.device))


def _setup(ctx, inputs, output) -> None:
    x, weight, bias, _eps = inputs
    ctx.save_for_backward(x, weight, bias, output[1], output[2])  # bias: only its presence is used
    ctx.mark_non_differentiable(output[1], output[2])


def _backward(ctx, dy, _dmean, _drstd):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    dx, dparams = layer_norm_bwd_op(dy.to(x.dtype), x, weight, bias, mean, rstd)
    return (dx, *_param_grads(dparams, weight, bias, ctx.needs_input_grad), None)


layer_norm_fwd_op.register_autograd(_backward, setup_context=_setup)


class _LayerNormFn(torch.autograd.Function):
    """Eager training: the custom ops' kernels without torch.library's per-call dispatch (about
    20 us forward and 35 us backward of host time, longer than the kernels on small inputs).
    torch.compile traces the custom ops instead."""

    @staticmethod
    def forward(ctx, x2, weight, bias, eps):
        C.check_device(NAME, "input", x2)
        y, mean, rstd = _rows_fwd(x2, weight, bias, eps)
        ctx.save_for_backward(x2, weight, bias, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        dx, dparams = _rows_bwd(dy.to(x.dtype), x, weight, bias, mean, rstd)
        return (dx, *_param_grads(dparams, weight, bias, ctx.needs_input_grad), None)


# ---- public API ---------------------------------------------------------------------------------

def layer_norm(x: torch.Tensor, normalized_shape, weight: Optional[torch.Tensor] = None,
               bias: Optional[torch.Tensor] = None, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the trailing ``normalized_shape`` dims (like ``torch.nn.functional.layer_norm``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` (biased variance), fp32 math, output in x's
    dtype. ``weight``/``bias`` must have shape ``normalized_shape`` and x's dtype. Differentiable (x,
    weight, bias); works under ``torch.compile(fullgraph=True)``.
    """
    C.check_input(NAME, x)
    ns, n = C.normalized_size(NAME, x, normalized_shape)
    C.check_param(NAME, "weight", weight, x, ns)
    C.check_param(NAME, "bias", bias, x, ns)
    if type(eps) is not float:
        eps = C.check_float(NAME, "eps", eps)
    x2 = C.as_rows(x, n)
    w, b = C.as_vector(weight, n), C.as_vector(bias, n)
    grad = x2.requires_grad or (w is not None and w.requires_grad) or (b is not None and b.requires_grad)
    if torch.compiler.is_compiling():
        y2 = layer_norm_fwd_op(x2, w, b, float(eps))[0]
    elif grad:
        y2 = _LayerNormFn.apply(x2, w, b, float(eps))
    else:  # eager inference: skip the custom-op dispatch
        C.check_device(NAME, "input", x2)
        y2 = _rows_fwd(x2, w, b, float(eps))[0]
    return y2 if x2 is x else y2.view(x.shape)


# ---- op contract (docs/CONTRACTS.md §1) ---------------------------------------------------------

def make_inputs(shape, dtype, device):
    """x (M, N), weight (N,), bias (N,)."""
    m, n = shape[:2]
    x = torch.randn((m, n), dtype=dtype, device=device)
    w = (1.0 + 0.1 * torch.randn((n,), device=device)).to(dtype)
    b = (0.1 * torch.randn((n,), device=device)).to(dtype)
    return x, w, b


def impl(x, weight, bias):
    return layer_norm(x, (x.shape[-1],), weight, bias, 1e-5)


def eager(x, weight, bias):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, bias, 1e-5)


def reference(x, weight, bias):
    """fp64 LayerNorm, returned in fp32."""
    return torch.nn.functional.layer_norm(x.double(), (x.shape[-1],), weight.double(), bias.double(),
                                          1e-5).float()


def _es(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def work(shape, dtype) -> float:
    """Read x, weight and bias; write out."""
    m, n = shape[:2]
    return (2.0 * m * n + 2 * n) * _es(dtype)


def backward_work(shape, dtype) -> float:
    """Read x, dy, weight, mean and rstd; write dx, dweight and dbias."""
    m, n = shape[:2]
    return (3.0 * m * n + 3 * n) * _es(dtype) + 8.0 * m
