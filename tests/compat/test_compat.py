"""Helion-style kernels (tests/compat/k_*.py) against torch references, in Triton's interpreter.

Inputs are fresh random tensors; configs are pinned per case (never autotuned here)."""
from __future__ import annotations

import pytest
import torch

from helion_ops.dsl import Config

from .cases import CASES, Case

TOL = {torch.float32: 2e-5, torch.float16: 2e-3}


def _params():
    for c in CASES:
        for dt in c.dtypes:
            for s in c.sizes:
                yield pytest.param(c, dt, s, id=f"{c.name}-{str(dt).replace('torch.', '')}-{s}")


def _flat(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _run(case: Case, args: tuple):
    k = case.kernel
    if case.config is None or not hasattr(k, "bind"):
        return k(*args)
    bound = k.bind(k.normalize_args(args, {}))
    return bound.run(bound.normalize(Config(**case.config)), *args)


@pytest.mark.parametrize("case,dtype,size", list(_params()))
def test_compat(case: Case, dtype: torch.dtype, size):
    torch.manual_seed(hash((case.name, size)) % 1000)
    args = case.make(dtype, size)
    got = _flat(_run(case, args))
    want = _flat(case.ref(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        if case.exact:
            assert torch.equal(g.to(w.dtype), w)
            continue
        err = (g.double() - w.double()).abs().max().item() if g.numel() else 0.0
        scale = max(w.double().abs().max().item() if w.numel() else 0.0, 1e-6)
        assert err / scale < TOL[dtype], f"rel err {err / scale:.3g}"
