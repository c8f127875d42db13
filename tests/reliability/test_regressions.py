"""Failures found by the property tests (tests/reliability/test_properties.py), shrunk and kept.

Out-of-bounds writes are detected with guarded allocations: every ``torch.empty`` in the kernel's host code
returns a view of a larger buffer whose tail holds a canary value; a kernel that stores past its outputs
changes the canary (instead of silently corrupting the heap, which crashed the interpreter process).
"""
from __future__ import annotations

import contextlib
import types

import pytest
import torch

from helion_ops.dsl import Config
from helion_ops.ops import layer_norm as L, rms_norm as R

CANARY = 1234.5
PAD = 4096


@contextlib.contextmanager
def guarded_outputs(bound):
    """Inside the block, ``torch.empty`` in ``bound``'s host code allocates canary-padded buffers;
    yields a function returning True when every canary is intact."""
    allocs = []

    def empty(shape, dtype=None, device=None, **kw):
        n = 1
        for d in shape:
            n *= int(d)
        buf = torch.full([n + PAD], CANARY, dtype=dtype, device=device)
        if buf.device.type != "meta":  # not the dry run that collects the kernel's facts
            allocs.append((buf, n))
        return buf[:n].view(list(shape))

    bound._host_fn()
    glb = bound.pk._host_globals
    old = glb["torch"]
    proxy = types.ModuleType("torch")
    proxy.__dict__.update(torch.__dict__)
    proxy.empty = empty
    glb["torch"] = proxy
    try:
        yield lambda: all(bool((buf[n:] == CANARY).all()) for buf, n in allocs)
    finally:
        glb["torch"] = old


def _norm_args(m, n):
    torch.manual_seed(0)
    x, dy, w = torch.randn(m, n), torch.randn(m, n), torch.randn(n)
    rstd = torch.rand(m) + 0.5
    return x, dy, w, rstd


def test_guard_detects_out_of_bounds_and_passes_in_bounds():
    """The detector itself: the persistent-row config stays in bounds."""
    x, dy, w, rstd = _norm_args(4, 48)
    bound = R.rms_norm_bwd.bind((dy, x, w, rstd))
    with guarded_outputs(bound) as intact:
        dx, _ = bound.run(Config(block_sizes=[4, 1, 16], num_warps=4, num_stages=1, reduction_loops=[None, None]),
                          dy, x, w, rstd)
    assert intact()
    ref = R._eager_bwd(dy, x, w, rstd)[0]
    torch.testing.assert_close(dx, ref, rtol=1e-5, atol=1e-5)


# A norm backward kernel (full-row weight load outside the inner row loop) with reduction_loops=[chunk],
# chunk dividing N (N not a power of two): the reduction stays whole-row (not rollable) and lost its
# column mask, so dx and dw were written out of bounds. Shrunk from test_properties::test_rms_norm
# (m=38, n=288, fp16, transposed, affine, seed=192369354).
@pytest.mark.parametrize("kernel", ["rms_norm_bwd", "layer_norm_bwd"])
def test_norm_bwd_looped_reduction_in_bounds(kernel):
    x, dy, w, rstd = _norm_args(4, 48)
    if kernel == "rms_norm_bwd":
        k, args = R.rms_norm_bwd, (dy, x, w, rstd)
    else:
        k, args = L.layer_norm_bwd, (dy, x, w, w, rstd, rstd)
    bound = k.bind(args)
    with guarded_outputs(bound) as intact:
        bound.run(Config(block_sizes=[4, 1, 16], num_warps=4, num_stages=1, reduction_loops=[16, None]), *args)
    assert intact(), f"{kernel}: stores past the end of its outputs"
