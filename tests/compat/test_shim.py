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


def test_helion_config_spellings():
    """Config as Helion users write it: singular keys, nested block sizes, block_ptr indexing, and sizes
    outside our search caps, clamped or mapped to what they mean, with the same numbers."""
    import torch
    from helion_ops.dsl import Config
    from tests.dsl import kernels as K

    assert Config(block_size=32) == Config(block_sizes=[32])
    assert Config(reduction_loop=16).reduction_loops == [16]
    assert Config(block_sizes=[[32, 32], 16]).block_sizes == [32, 32, 16]
    assert Config(indexing="block_ptr").indexing == "pointer"
    assert Config(indexing=["tensor_descriptor", "tensor_descriptor"]).indexing == "tensor_descriptor"
    with pytest.raises(ValueError, match="both block_size= and block_sizes="):
        Config(block_size=16, block_sizes=[16])

    x = torch.randn(5, 1000)
    b = K.softmax.bind((x,))
    space = b.config_space
    cfg = space.normalize(Config(block_size=64, reduction_loop=4096))  # past the 5 rows; a whole 1000-row
    assert cfg.block_sizes == [space.spec.block_sizes[0].max] and cfg.reduction_loops == [None]
    assert space.normalize(Config(block_sizes=[2], reduction_loops=[4])).reduction_loops == [16]
    ref = torch.softmax(x.double(), 1).float()
    for c in (Config(block_size=64, reduction_loop=4096), Config(block_sizes=[[2]], reduction_loop=4),
              Config(block_size=1, indexing="block_ptr")):
        torch.testing.assert_close(b.run(space.normalize(c), x), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"Config.block_sizes: \[0\]: 3 is not"):
        space.normalize(Config(block_sizes=[3]))
