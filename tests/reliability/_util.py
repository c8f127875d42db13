"""Shared helpers of the reliability tests: the catalog, reference checks through the bench harness."""
from __future__ import annotations

import importlib

import torch

from bench import case, metrics
from helion_ops import _oplib as C

OPS = ("softmax", "layer_norm", "rms_norm", "matmul", "grouped_gemm", "attention")
MODS = {name: importlib.import_module(f"bench.specs.{name}") for name in OPS}  # the benchmark specs
OP_MODS = {name: importlib.import_module(f"helion_ops.ops.{name}") for name in OPS}  # kernels, op layer


def check_against_reference(mod, inputs: tuple, dtype: torch.dtype, fn=None, backward: bool = True) -> dict:
    """Run ``fn`` (default ``mod.impl``) forward (and backward when the op has GRAD_INPUTS) on ``inputs``
    and compare with ``mod.reference`` (fp32/fp64). Returns {"fwd": err, "bwd": err}; asserts both pass."""
    fn = fn or mod.impl
    tol = mod.TOLERANCE[dtype]
    errs = {}
    exp, _ = case.reference(mod, inputs, "fwd", dtype)
    with torch.no_grad():
        out = fn(*inputs)
    errs["fwd"] = metrics.rel_error(out, exp)
    assert metrics.passes(errs["fwd"], tol), (mod.NAME, "fwd", errs["fwd"], tol)
    idx = case.grad_indices(mod, inputs)
    if backward and idx:
        exp, gouts = case.reference(mod, inputs, "bwd", dtype)
        grads, _, _ = case.prepare(fn, inputs, "bwd", idx, gouts)
        errs["bwd"] = metrics.rel_error(grads, exp)
        assert metrics.passes(errs["bwd"], tol), (mod.NAME, "bwd", errs["bwd"], tol)
    return errs


def reset() -> None:
    C.reset_fallbacks()
