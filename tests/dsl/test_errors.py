"""Errors name the kernel's file and line and say what is unsupported."""
from __future__ import annotations

import re

import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc
from tests.dsl.source_kernels import one_loop_kernel

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


def test_out_of_bounds_indexing_is_refused_with_the_line():
    """A tile longer than the dim it indexes, a store through a size-1 dim, a negative slice step: each is
    a clear error at the line, never an out-of-bounds access."""
    @helion.kernel()
    def overhang(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            out[t] = x[t] + y[t]
        return out

    @helion.kernel()
    def store_unit(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty([1, x.size(1)], dtype=x.dtype, device=x.device)
        for tm, tn in hl.tile(x.size()):
            out[tm, tn] = x[tm, tn]
        return out

    @helion.kernel()
    def strided(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty([x.size(0), 4], dtype=x.dtype, device=x.device)
        for t in hl.tile(x.size(0)):
            out[t, :] = x[t, 7::-2]
        return out

    cases = [(overhang, (torch.randn(20), torch.randn(9)), exc.ShapeMismatch, "x[t] + y[t]", "has size 9"),
             (store_unit, (torch.randn(6, 8),), exc.ShapeMismatch, "out[tm, tn] = x", "size 1"),
             (strided, (torch.randn(5, 8),), exc.NotSupported, "7::-2", "step")]
    for k, args, err, needle, why in cases:
        with pytest.raises(err) as e:
            k(*args)
        assert f"{HERE}:{line_of(k.fn, needle)}" in str(e.value) and why in str(e.value), str(e.value)


def test_nested_tensor_argument_is_refused():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty([4], device="cpu")
        for t in hl.tile(4):
            out[t] = 1.0
        return out

    nt = torch.nested.nested_tensor([torch.randn(3), torch.randn(5)], layout=torch.jagged)
    with pytest.raises(exc.InputError, match="argument 'x' is a nested"):
        k(nt)


def test_merging_a_partial_tile_is_refused():
    """Merging a tile into plain lanes drops its mask: only allowed when the tile divides its extent."""
    @helion.kernel(config=helion.Config(block_sizes=[16]))
    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = torch.empty([2 * a.size(0)], dtype=a.dtype, device=a.device)
        for t in hl.tile(a.size(0)):
            out[t.begin * 2 + hl.arange(32)] = hl.join(a[t], b[t]).reshape(32)
        return out

    with pytest.raises(exc.NotSupported, match="divide its extent") as e:
        k(torch.randn(24), torch.randn(24))
    assert f"{HERE}:{line_of(k.fn, 'reshape(32)')}" in str(e.value)


def test_function_arguments_are_separate_specialisations():
    """A function argument is inlined, so each function is its own kernel: a failed one must not be
    replayed for the next, and two working ones must not share code."""
    @helion.kernel(config=helion.Config(block_sizes=[16]))
    def k(x: torch.Tensor, fn) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            out[t] = fn(x[t])
        return out

    x = torch.randn(20)
    with pytest.raises(exc.NotSupported, match="bessel_j0"):
        k(x, lambda v: torch.special.bessel_j0(v))
    torch.testing.assert_close(k(x, lambda v: v * 2), x * 2)
    torch.testing.assert_close(k(x, lambda v: v + 1), x + 1)


def test_indexing_a_scalar_with_none_and_colon_is_located():
    @helion.kernel()
    def k(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for i in hl.grid(x.size(0)):
            n = lens[i]
            for t in hl.tile(x.size(1)):
                out[i, t] = torch.where(t.index < n[:, None], x[i, t], 0.0)
        return out

    with pytest.raises(exc.ShapeMismatch, match="too many ':'") as e:
        k(torch.randn(4, 8), torch.full((4,), 5))
    assert f"{HERE}:{line_of(k.fn, 'n[:, None]')}" in str(e.value)


@pytest.mark.parametrize("stmt,hint", [
    ("out[t] = x[t] + y", "'y' is a whole tensor: index it in device code"),
    ("print(x[t])", "use hl.device_print"),
    ("out[t] = x[t] + y[0].item()", "drop .item()"),
    ("out[t] = x[t] + torch.tensor(1.0)", "use a Python number or hl.full"),
    ("def f(a):\n            return a", "define the function outside the kernel"),
])
def test_common_mistakes_get_a_hint(tmp_path, stmt, hint):
    k = one_loop_kernel(tmp_path / "mistake.py", stmt, "x: torch.Tensor, y: torch.Tensor")
    with pytest.raises(exc.NotSupported, match=re.escape(hint)) as info:
        k(torch.randn(16), torch.randn(16))
    assert "mistake.py:9" in str(info.value)


def test_a_device_loop_cannot_rebind_a_host_variable():
    """Assigned before the loop and inside it: the host would keep the old value (it returned the
    uninitialised buffer / zeros); Helion raises CannotModifyHostVariableOnDevice, and so do we."""
    @helion.kernel()
    def rebinds_tensor(x: torch.Tensor) -> torch.Tensor:
        result = torch.empty_like(x)
        for tile in hl.tile(x.size(0)):
            result = x[tile] * 2
        return result

    @helion.kernel()
    def rebinds_number(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros([1], dtype=x.dtype, device=x.device)
        total = 0.0
        for tile in hl.tile(x.size(0)):
            total = x[tile].sum()
            out[0] = total
        return out

    for k, needle in ((rebinds_tensor, "result = x[tile] * 2"), (rebinds_number, "total = x[tile].sum()")):
        with pytest.raises(exc.CannotModifyHostVariableOnDevice) as e:
            k(torch.randn(8))
        assert f"{HERE}:{line_of(k.fn, needle)}" in str(e.value)
    assert issubclass(exc.CannotModifyHostVariableOnDevice, exc.HostAssignInDevice)


def test_a_tile_of_a_tile_raises_helions_error_at_its_line():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            for t2 in hl.tile(t):
                out[t2] = x[t2]
        return out

    with pytest.raises(exc.TileOfTile, match=r"t\.begin, t\.end") as e:
        k(torch.randn(8))
    assert f"{HERE}:{line_of(k.fn, 'hl.tile(t)')}" in str(e.value)


# ---- what stays refused from the language-breadth list (docs/COVERAGE.md), at the user's line ----------

def test_reshape_merging_padded_dims_is_refused():
    @helion.kernel(config=helion.Config(block_sizes=[4]))
    def k(x: torch.Tensor) -> torch.Tensor:
        s, h, d = x.shape
        out = torch.empty([s, h * d], dtype=x.dtype)
        for t in hl.tile(s):
            out[t, :] = x[t, :, :].reshape(t, h * d)
        return out

    with pytest.raises(exc.NotSupported, match="reshape") as e:
        k(torch.randn(5, 3, 8))
    assert f"{HERE}:{line_of(k.fn, '.reshape(t, h * d)')}" in str(e.value)


def test_list_element_assignment_needs_a_constant_index():
    @helion.kernel(config=helion.Config(block_sizes=[4]))
    def k(x: torch.Tensor, i: int) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            accs = [x[t], x[t]]
            accs[5] = x[t]
            out[t] = accs[0]
        return out

    with pytest.raises(exc.NotSupported, match="constant in range") as e:
        k(torch.randn(5), 0)
    assert f"{HERE}:{line_of(k.fn, 'accs[5] = x[t]')}" in str(e.value)


def test_grid_step_must_be_positive():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for i in hl.grid(0, x.size(0), 0):
            out[i] = x[i]
        return out

    with pytest.raises(exc.NotSupported, match="positive ints") as e:
        k(torch.randn(5))
    assert f"{HERE}:{line_of(k.fn, 'hl.grid(0, x.size(0), 0)')}" in str(e.value)


def _register_in_helper(n: int) -> int:
    return hl.register_block_size(n)


@helion.kernel(config=helion.Config(block_sizes=[16]))
def _block_size_from_helper(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    block = _register_in_helper(x.size(0))
    for t in hl.tile(x.size(0), block_size=block):
        out[t] = x[t] + 1
    return out


def test_register_block_size_outside_the_kernels_own_host_code():
    """The frontend rewrites hl.register_block_size where the kernel's host code calls it; a call from a
    helper function (or outside any kernel) is refused by name, not an AttributeError."""
    with pytest.raises(exc.NotSupported, match="register_block_size is only valid in a @kernel"):
        _block_size_from_helper(torch.randn(32))
    with pytest.raises(exc.NotSupported, match="register_block_size is only valid in a @kernel"):
        hl.register_block_size(64)
