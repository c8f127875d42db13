"""RMSNorm, forward and backward, written in helion_ops.dsl.

``rms_norm(x, normalized_shape, weight=None, eps=None)`` matches ``torch.nn.functional.rms_norm``:
any rank; the trailing ``normalized_shape`` dims are flattened into rows of N (a view when possible,
see ``helion_ops._common``); ``eps=None`` means ``torch.finfo(x.dtype).eps``.

Kernels:
* ``rms_norm_fwd``: one row-reduction kernel, ``for tile_m in hl.tile(m): x[tile_m, :]``; fp32 math,
  output in x's dtype; saves ``rstd`` (fp32, [M]) for backward. Persistent or looped per Config
  (``reduction_loops``).
* ``rms_norm_bwd``: ``dx = (w*dy - xhat * mean(xhat * w*dy)) * rstd`` per row, and dweight through
  per-program partial sums (no atomics, as Liger and quack do): programs of ``rows`` rows (a
  registered block size) step through them ``sub`` rows at a time ([sub, N] tiles, so short rows
  still keep enough loads in flight) and accumulate ``sum(dy * xhat)`` into one row of a
  [programs, N] fp32 buffer each; a second device loop sums those rows into dweight in x's dtype.
  Both launches come from one kernel call, so a backward is two launches replayed back to back
  instead of a launch plus torch's ``sum(0)`` and cast (two more dispatches, 11-16 us of host time per
  backward on the H100 machine, while the GPU waits after a small kernel).

Custom ops ``helion_ops::rms_norm_fwd`` / ``rms_norm_bwd`` carry fake implementations and autograd.

Memory (tests/reliability/test_memory.py): forward allocates y plus ``rstd`` ([M] fp32, saved for
backward); backward allocates dx, dweight plus a ``[P, N]`` fp32 partial-sum workspace (P = cdiv(M, rows
per program), about 2 per SM).
"""
from __future__ import annotations

from typing import Optional

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _common as C

NAME = "rms_norm"
METRIC = "GB/s"
SHAPES = [(m, n) for m in (4096, 16384, 32768) for n in (1000, 4096, 5120, 8192)] + [(4096, 4097)]
SMALL_SHAPES = [(3, 1), (5, 17), (4, 1000), (2, 4097)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_INPUTS = (0, 1)
BASELINES: dict = {}


# ---- kernels ------------------------------------------------------------------------------------

@helion.kernel(replay_host=True)
def rms_norm_fwd(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float):
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    rstd = torch.empty([m], dtype=torch.float32, device=x.device)
    for tile_m in hl.tile(m):
        # weight is loaded before the row's reduction so its latency overlaps x's load instead of
        # following the reduction (H100 probes: 7-8% at 4096x4097, neutral elsewhere; docs/decisions/norm-forwards.md)
        w = weight[:].to(torch.float32) if weight is not None else None
        xv = x[tile_m, :].to(torch.float32)
        r = torch.rsqrt(torch.sum(xv * xv, dim=1) * (1.0 / n) + eps)
        y = xv * r[:, None]
        if weight is not None:
            y = y * w
        out[tile_m, :] = y.to(x.dtype)
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
    m, n = shape
    return C.row_config(m, n)


def _default_bwd(shape: tuple) -> helion.Config:
    return C.norm_bwd_config(*shape)


def _default_bwd_no_weight(shape: tuple) -> helion.Config:
    return C.norm_bwd_config(*shape, partials=False)


def _eager_fwd(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float):
    """``rms_norm_fwd``'s outputs with PyTorch (fp32 math): the fallback when the kernel cannot run."""
    xf = x.float()
    rstd = torch.rsqrt(xf.pow(2).mean(-1) + eps)
    y = xf * rstd[:, None]
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype), rstd


def _eager_bwd(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor], rstd: torch.Tensor):
    """``rms_norm_bwd``'s outputs with PyTorch (dweight in x's dtype, None without weight)."""
    g, xhat = dy.float(), x.float() * rstd[:, None]
    wg = g * weight.float() if weight is not None else g
    c = (xhat * wg).mean(-1, keepdim=True)
    dx = ((wg - xhat * c) * rstd[:, None]).to(x.dtype)
    return dx, ((g * xhat).sum(0).to(x.dtype) if weight is not None else None)


# Both kernels use their table at its own shapes only: a nearby entry's rows per program (and, in the
# backward, per step) suit that entry's M and N. Served elsewhere, such entries ran 1.03-1.23x slower
# than the default forward on 8 of 14 untabled shapes, and 1.09-2.05x slower than the default
# backward on 9 of 10 (H100 probes, see docs/decisions/pretuned-lookup.md).
_fwd = C.Launcher(NAME, rms_norm_fwd, _default_fwd, eager=_eager_fwd, exact=(0, 1))
_bwd = C.Launcher(NAME, rms_norm_bwd, _default_bwd, key_shape=lambda a: tuple(a[1].shape), eager=_eager_bwd,
                  exact=(0, 1))
# Without weight the kernel has no partial-sum loop (one reduction dim fewer, its column block
# unused), so the shipped table's entries do not fit it and this default applies.
_bwd_no_weight = C.Launcher(NAME, rms_norm_bwd, _default_bwd_no_weight, key_shape=lambda a: tuple(a[1].shape),
                            eager=_eager_bwd)


def _rows_fwd(x2: torch.Tensor, w: Optional[torch.Tensor], eps: float):
    m = x2.shape[0]
    if x2.numel() == 0:
        return (torch.empty(x2.shape, dtype=x2.dtype, device=x2.device),
                torch.empty([m], dtype=torch.float32, device=x2.device))
    return _fwd(x2, w, eps)


# ---- torch.library ops --------------------------------------------------------------------------

@torch.library.custom_op("helion_ops::rms_norm_fwd", mutates_args=())
def rms_norm_fwd_op(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm of [M, N] rows; returns (y, rstd[M] in fp32)."""
    C.check_device(NAME, "input", x)
    return _rows_fwd(x, weight, eps)


@rms_norm_fwd_op.register_fake
def _(x, weight, eps):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty([x.shape[0]], dtype=torch.float32, device=x.device))


@torch.library.custom_op("helion_ops::rms_norm_bwd", mutates_args=())
def rms_norm_bwd_op(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                    rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dweight); dweight is an empty tensor when weight is None."""
    return _rows_bwd(dy, x, weight, rstd)


def _rows_bwd(dy, x, weight, rstd):
    C.check_device(NAME, "grad_output", dy)
    m, n = x.shape
    if x.numel() == 0:
        dw = torch.zeros([n], dtype=x.dtype, device=x.device) if weight is not None else x.new_empty([0])
        return torch.empty(x.shape, dtype=x.dtype, device=x.device), dw
    if weight is None:
        return _bwd_no_weight(C.as_rows(dy, n), x, None, rstd)[0], x.new_empty([0])
    return _bwd(C.as_rows(dy, n), x, weight, rstd)


@rms_norm_bwd_op.register_fake
def _(dy, x, weight, rstd):
    dw = torch.empty([x.shape[1]] if weight is not None else [0], dtype=x.dtype, device=x.device)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device), dw


def _setup(ctx, inputs, output) -> None:
    x, weight, _eps = inputs
    ctx.save_for_backward(x, weight, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = rms_norm_bwd_op(dy.to(x.dtype), x, weight, rstd)
    return dx, (dw if weight is not None and ctx.needs_input_grad[1] else None), None


rms_norm_fwd_op.register_autograd(_backward, setup_context=_setup)


class _RMSNormFn(torch.autograd.Function):
    """Eager training: the custom ops' kernels without torch.library's per-call dispatch (about
    20 us forward and 35 us backward of host time, longer than the kernels on small inputs).
    torch.compile traces the custom ops instead."""

    @staticmethod
    def forward(ctx, x2, weight, eps):
        C.check_device(NAME, "input", x2)
        y, rstd = _rows_fwd(x2, weight, eps)
        ctx.save_for_backward(x2, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = _rows_bwd(dy.to(x.dtype), x, weight, rstd)
        return dx, (dw if weight is not None and ctx.needs_input_grad[1] else None), None


# ---- public API ---------------------------------------------------------------------------------

def rms_norm(x: torch.Tensor, normalized_shape, weight: Optional[torch.Tensor] = None,
             eps: Optional[float] = None) -> torch.Tensor:
    """RMSNorm over the trailing ``normalized_shape`` dims (like ``torch.nn.functional.rms_norm``).

    ``y = x / sqrt(mean(x**2) + eps) * weight``, fp32 math, output in x's dtype. ``weight`` must have
    shape ``normalized_shape`` and x's dtype. Differentiable (x and weight); works under
    ``torch.compile(fullgraph=True)``.
    """
    C.check_input(NAME, x)
    ns, n = C.normalized_size(NAME, x, normalized_shape)
    C.check_param(NAME, "weight", weight, x, ns)
    eps = float(torch.finfo(x.dtype).eps) if eps is None else C.check_float(NAME, "eps", eps)
    x2 = C.as_rows(x, n)
    w = C.as_vector(weight, n)
    if torch.compiler.is_compiling():
        y2, _ = rms_norm_fwd_op(x2, w, eps)
    elif x2.requires_grad or (w is not None and w.requires_grad):
        y2 = _RMSNormFn.apply(x2, w, eps)
    else:  # eager inference: skip the custom-op dispatch
        C.check_device(NAME, "input", x2)
        y2, _ = _rows_fwd(x2, w, eps)
    return y2 if x2 is x else y2.view(x.shape)


# ---- op contract (docs/CONTRACTS.md §1) ---------------------------------------------------------

def make_inputs(shape, dtype, device):
    """x (M, N) and weight (N,)."""
    m, n = shape[:2]
    x = torch.randn((m, n), dtype=dtype, device=device)
    w = (1.0 + 0.1 * torch.randn((n,), device=device)).to(dtype)
    return x, w


def impl(x, weight):
    return rms_norm(x, (x.shape[-1],), weight, 1e-6)


def eager(x, weight):
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, 1e-6)


def reference(x, weight):
    """fp64 RMSNorm, returned in fp32."""
    xd = x.double()
    y = xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.double()
    return y.float()


def _es(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def work(shape, dtype) -> float:
    """Read x and weight, write out."""
    m, n = shape[:2]
    return (2.0 * m * n + n) * _es(dtype)


def backward_work(shape, dtype) -> float:
    """Read x, dy, weight and rstd; write dx and dweight."""
    m, n = shape[:2]
    return (3.0 * m * n + 2 * n) * _es(dtype) + 4.0 * m
