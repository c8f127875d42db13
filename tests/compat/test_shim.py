"""The Helion-compatible surface: names that exist, settings that are accepted, and a clear
error (not a stray AttributeError deep inside) for the names that are not supported."""
from __future__ import annotations

import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc
from helion_ops.dsl.autotuner import EnumFragment, IntegerFragment, PowerOfTwoFragment


def test_public_names():
    for name in ("kernel", "jit", "Config", "Kernel", "exc", "language", "cdiv", "next_power_of_2", "Settings"):
        assert hasattr(helion, name)
    for name in ("tile", "grid", "zeros", "full", "arange", "dot", "load", "store", "atomic_add", "atomic_cas",
                 "register_block_size", "register_tunable", "specialize", "constexpr", "reduce", "cumsum",
                 "associative_scan", "rand", "inline_triton", "tile_index", "static_range", "barrier", "split",
                 "join"):
        assert hasattr(hl, name), name
    assert PowerOfTwoFragment(1, 64).default() and IntegerFragment(1, 4).default() and EnumFragment([1, 2])


def test_exc_names_for_catching_and_ignoring():
    assert issubclass(exc.TensorOperationInWrapper, Warning)
    assert issubclass(exc.NotInsideKernel, exc.BaseError)
    assert issubclass(exc.SomeFutureHelionError, exc.NotSupported)


def test_unsupported_names_say_so():
    with pytest.raises(AttributeError, match="hl.vtile is not supported by helion_ops.dsl"):
        hl.vtile  # noqa: B018
    with pytest.raises(exc.NotSupportedName, match="helion.RefMode is not supported by helion_ops.dsl"):
        helion.RefMode  # noqa: B018
    assert getattr(hl, "no_such_thing", None) is None


def test_kernel_settings_accepted():
    @helion.kernel(static_shapes=False, autotune_effort="none", ignore_warnings=[exc.TensorOperationInWrapper],
                   use_default_config=True)
    def add1(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0), block_size=None):
            out[t] = x[t] + 1
        return out

    x = torch.randn(19)
    torch.testing.assert_close(add1(x), x + 1)

    @helion.kernel
    def twice(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            out[t] = x[t] * 2
        return out

    torch.testing.assert_close(twice(x), x * 2)


def test_device_function_on_host_is_clear():
    with pytest.raises(exc.NotSupported, match="only valid inside an hl.tile"):
        hl.zeros([4])
