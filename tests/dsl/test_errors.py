"""Errors name the kernel's file and line and say what is unsupported."""
from __future__ import annotations

import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc

HERE = __file__.rsplit("/", 1)[1]


def line_of(fn, needle: str) -> int:
    import inspect
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, l in enumerate(lines) if needle in l)


def test_try_inside_tile_loop():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for tile in hl.tile(x.size(0)):
            try:
                out[tile] = x[tile]
            except Exception:
                pass
        return out

    with pytest.raises(exc.NotSupported) as e:
        k(torch.randn(8))
    assert f"{HERE}:{line_of(k.fn, 'try:')}" in str(e.value)
    assert "Try" in str(e.value)


def test_unknown_torch_op():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for tile in hl.tile(x.size(0)):
            out[tile] = torch.special.bessel_j0(x[tile])
        return out

    with pytest.raises(exc.NotSupported) as e:
        k(torch.randn(8))
    assert f"{HERE}:{line_of(k.fn, 'bessel_j0')}" in str(e.value)
    assert "bessel_j0" in str(e.value)


def test_shape_mismatch_points_at_line():
    @helion.kernel()
    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for tm, tn in hl.tile([x.size(0), x.size(1)]):
            out[tm, tn] = x[tm, tn] + y[tm]
        return out

    with pytest.raises(exc.ShapeMismatch) as e:
        k(torch.randn(8, 4), torch.randn(8))
    assert f"{HERE}:{line_of(k.fn, 'y[tm]')}" in str(e.value)


def test_device_variable_read_by_host():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for tile in hl.tile(x.size(0)):
            v = x[tile]
            out[tile] = v
        return v

    with pytest.raises(exc.HostAssignInDevice) as e:
        k(torch.randn(8))
    assert "'v'" in str(e.value)


def test_device_only_function_on_host():
    with pytest.raises(exc.NotSupported, match="only valid inside"):
        hl.zeros([4])


def test_cuda_tensor_under_interpreter_or_cpu_without(monkeypatch):
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for tile in hl.tile(x.size(0)):
            out[tile] = x[tile]
        return out

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(exc.InputError, match="argument 'x' is a CPU tensor"):
        k(torch.randn(8))


def test_bad_arguments():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for tile in hl.tile(x.size(0)):
            out[tile] = x[tile]
        return out

    with pytest.raises(exc.InputError):
        k(torch.randn(8), torch.randn(8))
