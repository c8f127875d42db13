"""A user's @kernel inside torch.compile: one custom op per kernel call, no graph break (compile_op.py).

On CPU the kernels run in Triton's interpreter; graphs run through aot_eager (functionalization and
AOTAutograd, as Inductor sees them) and once through Inductor. The gpu test runs Inductor on CUDA."""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import compile_op, exc
from tests.conftest import DEVICE  # cuda on a GPU machine, else cpu (interpreter)

# torch's own compile path calls its deprecated torch.jit.script_method (torch 2.13); not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@helion.kernel()
def add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile in hl.tile(out.size()):
        out[tile] = x[tile] + y[tile]
    return out


@helion.kernel()
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty_like(x)
    for tile_m in hl.tile(m):
        x_tile = x[tile_m, :].to(torch.float32)
        inv_rms = torch.rsqrt(torch.mean(x_tile * x_tile, dim=-1) + eps)
        out[tile_m, :] = (x_tile * inv_rms[:, None] * weight[:].to(torch.float32)).to(out.dtype)
    return out


@helion.kernel()
def axpb(x: torch.Tensor, a: float, b: int, flip: bool) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile in hl.tile(x.size()):
        v = x[tile] * a + b
        out[tile] = -v if flip else v
    return out


@helion.kernel()
def row_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = x.size()
    mean = torch.empty([m], dtype=torch.float32, device=x.device)
    amax = torch.empty([m], dtype=torch.float32, device=x.device)
    for tile_m in hl.tile(m):
        v = x[tile_m, :].to(torch.float32)
        mean[tile_m] = torch.mean(v, dim=-1)
        amax[tile_m] = torch.amax(v, dim=-1)
    return mean, amax


@helion.kernel()
def add_into(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    flat, xf, yf = out.view(-1), x.reshape(-1), y.reshape(-1)  # a store into a view of `out` writes `out`
    for tile in hl.tile(flat.size(0)):
        flat[tile] = xf[tile] + yf[tile]
    return out


@helion.kernel()
def mul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile in hl.tile(out.size()):
        out[tile] = x[tile] * y[tile]
    return out


class Mul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return mul(x, y)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return mul(g, y), mul(g, x)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _no_breaks(f, *args) -> None:
    e = torch._dynamo.explain(f)(*args)
    assert e.graph_break_count == 0 and e.graph_count == 1, e.break_reasons
    assert "helion_ops_user" in e.graphs[0].print_readable(print_output=False)


def _compiled(f, **kw):
    return torch.compile(f, fullgraph=True, backend="aot_eager", **kw)


def test_elementwise_no_graph_break():
    x = torch.randn(17, 1000, device=DEVICE)
    y = torch.randn(1000, 17, device=DEVICE).t()  # a non-contiguous view

    def f(x, y):
        return add(x, y) * 2

    _no_breaks(f, x, y)
    torch.testing.assert_close(_compiled(f)(x, y), (x + y) * 2)


def test_reduction_with_scalar_argument():
    x, w = torch.randn(17, 33, device=DEVICE), torch.randn(33, device=DEVICE)

    def f(x, w):
        return rms_norm(x, w, 1e-3) + 1

    _no_breaks(f, x, w)
    ref = (x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-3) * w.double() + 1).float()
    torch.testing.assert_close(_compiled(f)(x, w), ref)


def test_scalar_int_bool_arguments_and_kwargs():
    x = torch.randn(1, 1000, device=DEVICE)

    def f(x, a):
        return axpb(x, a, b=3, flip=True)

    _no_breaks(f, x, 0.5)
    torch.testing.assert_close(_compiled(f)(x, 0.25), -(x * 0.25 + 3))


def test_tuple_output():
    x = torch.randn(17, 1000, device=DEVICE)

    def f(x):
        mean, amax = row_stats(x)
        return mean - amax

    _no_breaks(f, x)
    torch.testing.assert_close(_compiled(f)(x), x.mean(-1) - x.amax(-1))


def test_mutated_output_argument():
    x, y = torch.randn(17, 5, device=DEVICE), torch.randn(17, 5, device=DEVICE)
    op = compile_op._op_for(add_into.op_key, ("Tensor", "Tensor", "Tensor"))
    schema = str(getattr(torch.ops.helion_ops_user, op).default._schema)
    assert "Tensor(a2!) a2" in schema and "Tensor(a0!)" not in schema and "Tensor(a1!)" not in schema

    def f(x, y, out):
        r = add_into(x, y, out)
        return r * 2, out + 1  # reads after the write must see it

    out = torch.zeros(17, 5, device=DEVICE)
    _no_breaks(f, x, y, out.clone())
    r, after = _compiled(f)(x, y, out)
    torch.testing.assert_close(out, x + y)  # the caller's tensor is written, as in eager
    torch.testing.assert_close(r, (x + y) * 2)
    torch.testing.assert_close(after, x + y + 1)


def test_backward_through_user_autograd_function():
    x = torch.randn(17, 33, device=DEVICE, requires_grad=True)
    y = torch.randn(17, 33, device=DEVICE, requires_grad=True)

    def f(x, y):
        return (Mul.apply(x, y) * torch.arange(33, device=x.device)).sum()

    _no_breaks(f, x, y)
    _compiled(f)(x, y).backward()
    gx, gy = x.grad, y.grad
    x.grad = y.grad = None
    (x * y * torch.arange(33, device=DEVICE)).sum().backward()
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(gy, y.grad)


@pytest.mark.parametrize("dynamic", [False, None])
def test_recompile_on_new_shape(dynamic):
    cnt = CompileCounterWithBackend("aot_eager")
    f = torch.compile(lambda x, y: add(x, y), fullgraph=True, backend=cnt, dynamic=dynamic)
    for shape in [(17, 5), (1000, 3), (33, 2)]:
        x, y = torch.randn(shape, device=DEVICE), torch.randn(shape, device=DEVICE)
        torch.testing.assert_close(f(x, y), x + y)
    # static shapes compile per shape; automatic dynamic makes the second graph symbolic and reuses it
    assert cnt.frame_count == (3 if dynamic is False else 2)


def test_writes_found_through_aliases():
    assert compile_op._writes(add_into.parsed)[0] == {"out"}
    assert compile_op._writes(add.parsed)[0] == set()
    assert compile_op._writes(row_stats.parsed)[0] == set()


@helion.kernel()
def partial_sums(x: torch.Tensor) -> torch.Tensor:
    (n,) = x.size()
    bs = hl.register_block_size(n)
    out = torch.empty([hl.cdiv(n, bs)], dtype=x.dtype, device=x.device)
    for tile in hl.tile(n, block_size=bs):
        out[tile.id] = torch.sum(x[tile])
    return out


def test_output_shape_from_block_size_is_refused_not_wrong():
    x = torch.randn(1000, device=DEVICE)
    with pytest.raises(exc.NotSupported, match="block sizes"):
        _compiled(lambda x: partial_sums(x))(x)


def test_inductor():
    x, y = torch.randn(17, 33, device=DEVICE), torch.randn(17, 33, device=DEVICE)
    f = torch.compile(lambda x, y: add(x.sin(), y) * 2, fullgraph=True)
    torch.testing.assert_close(f(x, y), (x.sin() + y) * 2)


def test_default_argument_and_chained_kernels():
    """A kernel called without its defaulted argument (rms_norm's eps), fed by another kernel: Dynamo
    must read the defaults as constants (it failed on an inspect.Signature and on `type(a) is ...`)."""
    x, y, w = torch.randn(17, 100, device=DEVICE), torch.randn(17, 100, device=DEVICE), torch.randn(100, device=DEVICE)
    f = torch.compile(lambda x, y, w: rms_norm(add(x, y), w) * 2, fullgraph=True, backend="aot_eager")
    s = x + y
    torch.testing.assert_close(f(x, y, w), s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-5) * w * 2,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_compiled_on_cuda():
    x, y = torch.randn(4097, 1000, device="cuda"), torch.randn(4097, 1000, device="cuda")
    w = torch.randn(1000, device="cuda")
    f = torch.compile(lambda x, y, w: rms_norm(add(x, y), w) * 2, fullgraph=True)
    s = x + y
    torch.testing.assert_close(f(x, y, w), s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-5) * w * 2,
                               rtol=1e-4, atol=1e-4)
