"""Memory budget: no op allocates more than its output, its saved tensors and a documented workspace.

CPU (the interpreter): a ``TorchDispatchMode`` sees every aten op the op's host code runs (the DSL
kernels' ``torch.empty`` outputs included) and adds up the bytes of each *fresh* storage an op returns
(one that is not the storage of one of that op's tensor inputs: views, in-place ops and no-op ``.to``
are free). That sum of every allocation made during the call is an upper bound of the call's peak, so
checking it against

    outputs (results, or the grads of the backward) + saved-for-backward tensors that are not
    inputs/outputs + the op's documented workspace (``WORKSPACE`` below)

is stricter than a peak check. Exclusions, all explicit:

* Triton's interpreter runs kernels on numpy; the few torch calls it makes itself (0-byte
  ``new_empty`` + ``set_`` to alias argument storages) are skipped by ignoring dispatches made while an
  interpreter launch (``GridExecutor.__call__``) is on the stack (counted in ``excluded``).
* The ``helion_ops::*`` custom ops are entered (their Python implementation runs under the mode), so
  what they allocate is counted op by op, never as one opaque result.
* Each op runs once before measuring: the first call's one-time bind/compile (a few 4-byte scalars
  in the DSL's argument typing) is not per-call memory.
* Meta/fake tensors and 0-byte storages are not memory.

The GPU test (``-m gpu``) checks the same budget with ``torch.cuda.max_memory_allocated``, plus a small
allowance for the caching allocator's rounding and Triton's TMA descriptor scratch.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ._util import MODS, OP_MODS, OPS

F32 = 4

# ---------------------------------------------------------------------------------------------
# Documented workspace per op: bytes allocated beyond the outputs and the fresh saved tensors.
# (kind: "fwd" = inference forward, "train" = forward with grad, "bwd" = backward.)
#
# | op           | fwd (inference)        | train | bwd                                                        |
# |--------------|------------------------|-------|------------------------------------------------------------|
# | softmax      | 0                      | 0     | 0                                                          |
# | layer_norm   | 0 (no statistics)      | 0 (*) | dweight, dbias partials: one [P, 2, N] fp32 (+ its [2, N]  |
# |              |                        |       | fp32 sum when x is not fp32), P = cdiv(M, rows per program) |
# | rms_norm     | 0 (no statistics)      | 0 (*) | dweight partials [P, N] fp32 (+ [N] fp32 sum if not fp32)  |
# | matmul       | 0                      | 0     | 0 (dA, dB by the same kernel on transposed views)          |
# | grouped_gemm | 0                      | 0     | 0                                                          |
# | attention    | lse [B, H, S_q] fp32   | 0 (*) | delta [B, H, S_q] fp32 (no zero grad materialised for lse)  |
# (*) the statistics are saved for backward, so they are counted as saved tensors there.
# ---------------------------------------------------------------------------------------------

SHAPES = {
    "softmax": (37, 96),
    "layer_norm": (37, 96),
    "rms_norm": (37, 96),
    "matmul": (37, 48, 40),
    "grouped_gemm": (3, 37, 48, 40),
    "attention": (1, 4, 17, 64, True, 2, 23),  # GQA, causal, S_q != S_k
}
GPU_SHAPES = {
    "softmax": (4096, 4097),
    "layer_norm": (4096, 4097),
    "rms_norm": (4096, 4097),
    "matmul": (2048, 2048, 1024),
    "grouped_gemm": (8, 4096, 1024, 1024),
    "attention": (2, 16, 1024, 128, True, 4),
}
DTYPES = (torch.float32, torch.float16)


def _norm_programs(mod, x: torch.Tensor) -> int:
    """P of the norm backward: cdiv(M, rows), rows = the first block size of the Config it runs with."""
    m, n = x.shape
    stats = torch.empty(m, dtype=torch.float32, device=x.device)
    w = torch.empty(n, dtype=x.dtype, device=x.device)
    args = (x, x, w, w, stats, stats) if mod.NAME == "layer_norm" else (x, x, w, stats)
    rows = OP_MODS[mod.NAME]._bwd.config_for(*args).block_sizes[0]
    return -(-m // rows)


def workspace(name: str, kind: str, inputs: tuple) -> int:
    """The documented workspace (bytes) of one call; see the table above."""
    x = inputs[0]
    if kind == "train":
        return 0
    if name in ("layer_norm", "rms_norm"):
        m, n = x.shape
        stats = 2 if name == "layer_norm" else 1  # (mean, rstd) or rstd; [P, 2, N] or [P, N] partials
        if kind == "fwd":  # inference: no statistics (nothing will read them)
            return 0
        p = _norm_programs(MODS[name], x)
        return stats * (p * n * F32 + (n * F32 if x.dtype != torch.float32 else 0))
    if name == "attention":
        b, h, s_q, _ = x.shape
        return b * h * s_q * F32
    return 0


# ---------------------------------------------------------------------------------------------
# The counter
# ---------------------------------------------------------------------------------------------

class AllocCounter(TorchDispatchMode):
    """Sums the bytes of fresh storages returned by aten ops (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.allocs: list[tuple[str, tuple, torch.dtype, int]] = []
        self.excluded = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _INTERP_DEPTH[0] > 0:  # Triton's interpreter aliasing argument storages: not the op's
            self.excluded += 1
            return func(*args, **kwargs)
        if func.namespace == "helion_ops":  # run the custom op's body under this mode
            from torch._library.custom_ops import OPDEFS
            with self:
                return OPDEFS[func._schema.name]._init_fn(*args, **kwargs)
        out = func(*args, **kwargs)
        ins = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
               if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        seen = set()
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            if st.nbytes() and st.data_ptr() not in ins and st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                self.total += st.nbytes()
                self.allocs.append((str(func), tuple(t.shape), t.dtype, st.nbytes()))
        return out


_INTERP_DEPTH = [0]


@pytest.fixture(autouse=True)
def _skip_interpreter_calls(monkeypatch):
    """Mark dispatches made inside a Triton interpreter launch (excluded from the count)."""
    try:
        from triton.runtime.interpreter import GridExecutor
    except ImportError:  # pragma: no cover
        yield
        return
    orig = GridExecutor.__call__

    def call(self, *a, **k):
        _INTERP_DEPTH[0] += 1
        try:
            return orig(self, *a, **k)
        finally:
            _INTERP_DEPTH[0] -= 1

    monkeypatch.setattr(GridExecutor, "__call__", call)
    yield


def _bytes(ts) -> int:
    """Bytes of the distinct storages of ``ts``."""
    out = {}
    for t in ts:
        if isinstance(t, torch.Tensor) and t.numel():
            out[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(out.values())


def _storages(ts) -> set:
    return {t.untyped_storage().data_ptr() for t in ts if isinstance(t, torch.Tensor)}


def _forward_saving(mod, ginputs, saved: list):
    """The op's training forward; ``saved`` receives what autograd saves for backward."""
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):
        return mod.impl(*ginputs)


def _grad_inputs(mod, inputs):
    return tuple(t.detach().requires_grad_(i in mod.GRAD_INPUTS) if isinstance(t, torch.Tensor) else t
                 for i, t in enumerate(inputs))


def measure(name: str, dtype: torch.dtype, shape=None, device: str = "cpu") -> dict:
    """Counted bytes and budget of the forward (inference), forward (training) and backward call."""
    mod = MODS[name]
    torch.manual_seed(0)
    inputs = mod.make_inputs(shape or SHAPES[name], dtype, device)
    in_st = _storages(inputs)
    res = {}

    def count(fn):
        fn()  # warm-up: bind, compile, pick the Config
        with AllocCounter() as c:
            r = fn()
        return c, r

    with torch.no_grad():
        c, out = count(lambda: mod.impl(*inputs))
    res["fwd"] = (c.total, _bytes([out]) + workspace(name, "fwd", inputs), c.allocs)

    if mod.GRAD_INPUTS:
        ginputs = _grad_inputs(mod, inputs)
        saved: list = []
        c, out = count(lambda: _forward_saving(mod, ginputs, saved))
        fresh_saved = [t for t in saved if t.untyped_storage().data_ptr() not in in_st | _storages([out])]
        res["train"] = (c.total, _bytes([out]) + _bytes(fresh_saved) + workspace(name, "train", inputs), c.allocs)

        wrt = [ginputs[i] for i in mod.GRAD_INPUTS]
        gout = torch.randn_like(out)
        torch.autograd.grad(out, wrt, gout, retain_graph=True)  # warm-up
        with AllocCounter() as c:
            grads = torch.autograd.grad(out, wrt, gout, retain_graph=True)
        res["bwd"] = (c.total, _bytes(grads) + workspace(name, "bwd", inputs), c.allocs)
    return res


def _report(name, kind, got, budget, allocs) -> str:
    lines = "\n".join(f"    {f} {list(s)} {dt} {nb} B" for f, s, dt, nb in allocs)
    return f"{name} {kind}: allocated {got} B > budget {budget} B (output + saved + workspace):\n{lines}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", OPS)
def test_allocations_within_budget(name, dtype):
    res = measure(name, dtype)
    assert set(res) == ({"fwd", "train", "bwd"} if MODS[name].GRAD_INPUTS else {"fwd"})
    for kind, (got, budget, allocs) in res.items():
        assert got > 0, (name, kind, "nothing counted: the counter is not seeing the op")
        assert got <= budget, _report(name, kind, got, budget, allocs)


@pytest.mark.parametrize("where", ["host", "kernel_output"])
def test_budget_catches_an_extra_copy(monkeypatch, where):
    """Plant check: one extra full-size copy in an op's host path must break the budget."""
    from helion_ops import _oplib as C
    mod = MODS["rms_norm"]
    if where == "host":  # as_rows copies its input (as a strided last dim would)
        orig = C.as_rows
        monkeypatch.setattr(C, "as_rows", lambda x, n: orig(x, n).clone())
    else:  # the forward's output is copied once more before it is returned
        orig_fwd = OP_MODS["rms_norm"]._fwd
        monkeypatch.setattr(OP_MODS["rms_norm"], "_fwd",
                            lambda *a: tuple(None if t is None else t.clone() for t in orig_fwd(*a)))
    res = measure("rms_norm", torch.float16)
    over = [k for k, (got, budget, _) in res.items() if got > budget]
    assert "fwd" in over, res


def test_counter_ignores_views_inplace_and_interpreter():
    x = torch.randn(16, 16)
    with AllocCounter() as c:
        x.view(256)
        x.t()
        x.add_(1)
        x.to(torch.float32)
        x[1:3]
    assert c.total == 0
    with AllocCounter() as c:
        x.clone()
        x.to(torch.float16)
        x.t().contiguous()
    assert c.total == 16 * 16 * (4 + 2 + 4)


# ---------------------------------------------------------------------------------------------
# GPU: peak memory
# ---------------------------------------------------------------------------------------------

# Caching-allocator rounding (512 B blocks) and the TMA descriptor scratch Triton asks the ops'
# allocator for (a few KiB): small next to any full-size tensor of GPU_SHAPES.
GPU_SLACK = 4 << 20


@pytest.mark.gpu
@pytest.mark.parametrize("name", OPS)
def test_peak_memory_within_budget_gpu(name):
    mod = MODS[name]
    dtype = torch.bfloat16
    torch.manual_seed(0)
    inputs = mod.make_inputs(GPU_SHAPES[name], dtype, "cuda")
    in_st = _storages(inputs)

    def peak(fn):
        fn()  # warm-up
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        r = fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, r

    with torch.no_grad():
        got, out = peak(lambda: mod.impl(*inputs))
    budget = _bytes([out]) + workspace(name, "fwd", inputs)
    assert got <= budget + GPU_SLACK, (name, "fwd", got, budget)
    del out

    if not mod.GRAD_INPUTS:
        return
    ginputs = _grad_inputs(mod, inputs)
    saved: list = []
    got, out = peak(lambda: _forward_saving(mod, ginputs, saved))
    fresh = [t for t in saved if t.untyped_storage().data_ptr() not in in_st | _storages([out])]
    budget = _bytes([out]) + _bytes(fresh) + workspace(name, "train", inputs)
    assert got <= budget + GPU_SLACK, (name, "train", got, budget)

    wrt = [ginputs[i] for i in mod.GRAD_INPUTS]
    gout = torch.randn_like(out)
    got, grads = peak(lambda: torch.autograd.grad(out, wrt, gout, retain_graph=True))
    budget = _bytes(grads) + workspace(name, "bwd", inputs)
    assert got <= budget + GPU_SLACK, (name, "bwd", got, budget)
    assert math.isfinite(float(grads[0].float().abs().max()))
