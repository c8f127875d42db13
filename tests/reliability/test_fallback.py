"""Production fallback: a kernel that fails to compile or launch makes the op run its eager PyTorch
version with one FallbackWarning naming the op and the reason; HELION_OPS_STRICT=1 raises LaunchError;
bad input and CUDA OOM are never fallback cases.

Failures are injected at the DSL runtime's per-device-loop launch (``BoundKernel.launch``, which also
compiles on first use) and at its compile step (``BoundKernel._compile``), with the exceptions a GPU
raises: Triton's ``OutOfResources`` (shared memory), a driver ``RuntimeError`` (no kernel image for the
arch), a ``CompilationError``-like error.
"""
from __future__ import annotations

import warnings

import pytest
import torch

import helion_ops
from helion_ops import _oplib as C
from helion_ops.dsl import runtime
from helion_ops.errors import FallbackWarning, InputError, LaunchError

from ._util import MODS, OPS, check_against_reference

DTYPE = torch.float32


def _oor():
    from triton.runtime.errors import OutOfResources
    return OutOfResources(262144, 232448, "shared memory")


INJECT = {
    "out_of_resources": (_oor, "OutOfResources"),
    "unsupported_arch": (lambda: RuntimeError("CUDA error: no kernel image is available for execution on "
                                              "the device"), "no kernel image"),
}


@pytest.fixture(autouse=True)
def _clean():
    C.reset_fallbacks()
    yield
    C.reset_fallbacks()


class Broken:
    """Replaces BoundKernel.launch (or _compile) with one that raises, counting calls."""

    def __init__(self, monkeypatch, make_err, where: str = "launch") -> None:
        self.calls = 0
        self.make_err = make_err

        orig = getattr(runtime.BoundKernel, where)
        # Replayed calls skip BoundKernel.launch: run the host code so every launch meets the fault.
        monkeypatch.setattr(runtime, "REPLAY", False)

        def boom(bound_self, i, names_or_locals, *rest):
            ctx = rest[-1] if rest else None
            if getattr(ctx, "mode", "launch") != "launch":  # config-space dry runs never compile
                return orig(bound_self, i, names_or_locals, *rest)
            self.calls += 1
            raise self.make_err()

        monkeypatch.setattr(runtime.BoundKernel, where, boom)


def _inputs(mod, k: int = 1):
    torch.manual_seed(0)
    return mod.make_inputs(mod.SMALL_SHAPES[k % len(mod.SMALL_SHAPES)], DTYPE, "cpu")


@pytest.mark.parametrize("inject", sorted(INJECT))
@pytest.mark.parametrize("op", OPS)
def test_falls_back_with_one_warning(op, inject, monkeypatch):
    monkeypatch.setenv("HELION_OPS_STRICT", "0")
    mod = MODS[op]
    make_err, reason = INJECT[inject]
    broken = Broken(monkeypatch, make_err)
    inputs = _inputs(mod)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        check_against_reference(mod, inputs, DTYPE)  # forward and backward, against the fp64 reference
    fb = [w for w in rec if issubclass(w.category, FallbackWarning)]
    assert len(fb) == 1, [str(w.message) for w in fb]
    msg = str(fb[0].message)
    assert f"helion_ops.{op}" in msg and reason in msg, msg
    assert broken.calls >= 1
    # Later calls of the same signature go straight to eager: no new warning, no retried launch.
    n = broken.calls
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        check_against_reference(mod, inputs, DTYPE)
    assert not [w for w in rec if issubclass(w.category, FallbackWarning)]
    assert broken.calls == n


@pytest.mark.parametrize("op", OPS)
def test_compile_failure_falls_back(op, monkeypatch):
    """A failure in the compile step (fresh specialisation: the shape is not used elsewhere)."""
    monkeypatch.setenv("HELION_OPS_STRICT", "0")
    mod = MODS[op]
    broken = Broken(monkeypatch, lambda: RuntimeError("PassManager::run failed"), where="_compile")
    shape = {"softmax": (3, 29), "layer_norm": (3, 29), "rms_norm": (3, 29), "matmul": (3, 29, 31),
             "grouped_gemm": (2, 7, 29, 31), "attention": (1, 1, 5, 64, True, 1, 7)}[op]
    torch.manual_seed(1)
    inputs = mod.make_inputs(shape, DTYPE, "cpu")
    with pytest.warns(FallbackWarning, match=rf"helion_ops\.{op}: .*PassManager::run failed"):
        check_against_reference(mod, inputs, DTYPE, backward=False)
    assert broken.calls >= 1


@pytest.mark.parametrize("op", OPS)
def test_strict_raises_launch_error(op, monkeypatch):
    monkeypatch.setenv("HELION_OPS_STRICT", "1")
    mod = MODS[op]
    Broken(monkeypatch, _oor)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # no fallback, no warning
        with pytest.raises(LaunchError, match=rf"{op}\(\).*OutOfResources.*HELION_OPS_STRICT") as ei:
            with torch.no_grad():
                mod.impl(*_inputs(mod))
    from triton.runtime.errors import OutOfResources
    assert isinstance(ei.value.__cause__, OutOfResources)
    assert isinstance(ei.value, RuntimeError)  # LaunchError is a RuntimeError too


@pytest.mark.parametrize("op", OPS)
def test_bad_input_inside_launch_is_not_a_fallback(op, monkeypatch):
    """An InputError raised by the runtime (e.g. mixed devices found at launch) propagates, strict or not."""
    monkeypatch.setenv("HELION_OPS_STRICT", "0")
    mod = MODS[op]
    Broken(monkeypatch, lambda: InputError("kernel(): argument 'x' is on cuda:1 but 'y' is on cuda:0"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        with pytest.raises(InputError, match="argument 'x'"):
            with torch.no_grad():
                mod.impl(*_inputs(mod))


def test_out_of_memory_is_not_a_fallback(monkeypatch):
    monkeypatch.setenv("HELION_OPS_STRICT", "0")
    Broken(monkeypatch, lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        with pytest.raises(torch.cuda.OutOfMemoryError):
            helion_ops.softmax(torch.randn(3, 9))


def test_one_warning_per_op_and_reason_across_shapes(monkeypatch):
    monkeypatch.setenv("HELION_OPS_STRICT", "0")
    Broken(monkeypatch, _oor)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for n in (5, 6, 7):
            x = torch.randn(2, n)
            torch.testing.assert_close(helion_ops.softmax(x), torch.softmax(x, -1))
        helion_ops.rms_norm(torch.randn(2, 5), (5,))
    msgs = [str(w.message) for w in rec if issubclass(w.category, FallbackWarning)]
    assert len(msgs) == 2 and "helion_ops.softmax" in msgs[0] and "helion_ops.rms_norm" in msgs[1], msgs


def test_reset_tries_the_kernel_again(monkeypatch):
    """After reset_fallbacks() (or a process restart) a repaired kernel runs again: the fallback is per
    process, not persisted."""
    monkeypatch.setenv("HELION_OPS_STRICT", "0")
    x = torch.randn(4, 11)
    with monkeypatch.context() as m:
        broken = Broken(m, _oor)
        with pytest.warns(FallbackWarning):
            helion_ops.softmax(x)
        assert broken.calls == 1
    C.reset_fallbacks()
    calls = []
    orig = runtime.BoundKernel.launch
    monkeypatch.setattr(runtime.BoundKernel, "launch", lambda self, *a: (calls.append(1), orig(self, *a))[1])
    torch.testing.assert_close(helion_ops.softmax(x), torch.softmax(x, -1))
    assert calls  # the kernel ran, not eager
