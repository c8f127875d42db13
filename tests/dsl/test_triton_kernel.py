"""hl.triton_kernel: a module-level @triton.jit function (imported by the generated code, its own calls
resolved in its module) or the source of one, called from device code with positional or keyword args,
one or two outputs; numerics in the interpreter against torch, the sm_90 build, and clear refusals."""
import pytest
import torch
import triton
import triton.language as tl  # noqa: F401  (Triton needs tl visible in a module of jit functions)

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc
from tests.dsl.source_kernels import kernel_from_source


@triton.jit
def _scale(v, s):
    return v * s


@triton.jit
def axpy(a, x, y):
    return _scale(x, a) + y  # a call into this module's globals


@triton.jit
def sum_and_diff(x, y):
    return x + y, x - y


AXPY_SRC = """
def axpy_src(a, x, y):
    return a * x + y
"""


@helion.kernel(config=helion.Config(block_sizes=[32]))
def use_axpy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for t in hl.tile(x.size(0)):
        out[t] = hl.triton_kernel(axpy, [2.0, x[t], y[t]], output_like=x[t])
    return out


@helion.kernel(config=helion.Config(block_sizes=[32]))
def use_source_and_keywords(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for t in hl.tile(x.size(0)):
        out[t] = hl.triton_kernel(AXPY_SRC, {"a": 3.0, "x": x[t], "y": y[t]}, output_like=x[t])
    return out


@helion.kernel(config=helion.Config(block_sizes=[16, 32]))
def use_two_outputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s, d = torch.empty_like(x), torch.empty_like(x)
    for tm, tn in hl.tile(x.size()):
        xv, yv = x[tm, tn], y[tm, tn]
        s[tm, tn], d[tm, tn] = hl.triton_kernel(sum_and_diff, [xv, yv], output_like=(xv, yv))
    return s, d


@pytest.mark.parametrize("n", [17, 1000, 4097])
def test_imported_function_calls_its_module(n, device):
    x, y = torch.randn(n, device=device), torch.randn(n, device=device)
    torch.testing.assert_close(use_axpy(x, y), 2.0 * x + y)


def test_source_string_with_keyword_args(device):
    x, y = torch.randn(100, device=device), torch.randn(100, device=device)
    torch.testing.assert_close(use_source_and_keywords(x, y), 3.0 * x + y)


def test_two_outputs_on_a_noncontiguous_view(device):
    x = torch.randn(40, 140, device=device)[:, ::2]
    y = torch.randn(40, 70, device=device)
    s, d = use_two_outputs(x, y)
    torch.testing.assert_close(s, x + y)
    torch.testing.assert_close(d, x - y)


def test_generated_code_and_sm90_build():
    x = torch.randn(100, dtype=torch.float16)
    b = use_axpy.bind((x, x))
    code = b.to_triton_code(b.config)
    assert f"from {__name__} import axpy as _tk_axpy_" in code
    assert b.compile_for_target(b.config, ("cuda", 90, 32))


def test_nested_function_is_refused_at_the_line(tmp_path):
    make = kernel_from_source(
        tmp_path / "bad_tk.py",
        "import triton\n"
        "def make():\n"
        "    @triton.jit\n"
        "    def local(v):\n"
        "        return v\n\n"
        "    @helion.kernel(config=helion.Config(block_sizes=[32]))\n"
        "    def k(x: torch.Tensor) -> torch.Tensor:\n"
        "        out = torch.empty_like(x)\n"
        "        for t in hl.tile(x.size(0)):\n"
        "            out[t] = hl.triton_kernel(local, [x[t]], output_like=x[t])\n"
        "        return out\n"
        "    return k\n", "make")
    with pytest.raises(exc.NotSupported, match="must be a module-level") as info:
        make().bind((torch.randn(8),)).to_triton_code(helion.Config(block_sizes=[32]))
    assert "bad_tk.py:15" in str(info.value)


@pytest.mark.gpu
def test_on_gpu():
    """The compiled path (a JITFunction imported into the generated module, not the interpreter's twin)."""
    x, y = torch.randn(4097, device="cuda"), torch.randn(4097, device="cuda")
    torch.testing.assert_close(use_axpy(x, y), 2.0 * x + y)
    torch.testing.assert_close(use_source_and_keywords(x, y), 3.0 * x + y)
    a, b = torch.randn(40, 70, device="cuda"), torch.randn(40, 70, device="cuda")
    s, d = use_two_outputs(a, b)
    torch.testing.assert_close(s, a + b)
    torch.testing.assert_close(d, a - b)
