"""Acceptance kernels (issue 2) run in the interpreter and match torch in float64."""
from __future__ import annotations

import pytest
import torch

from helion_ops.dsl import Config

from . import kernels as K

TOL = {torch.float32: 1e-5, torch.float16: 2e-3}
COLS = [1, 17, 1000, 4097]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()


def check(out, ref, dtype):
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < TOL[dtype], rel_err(out, ref)


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
def test_add_broadcast(n, dtype):
    x, y = rand(3, n, dtype=dtype), rand(n, dtype=dtype)
    check(K.add(x, y), x.double() + y.double(), dtype)
    check(K.add_bias(x, y), x.double() + y.double(), dtype)


def test_add_transposed_input():
    x = rand(33, 5).t()  # non-contiguous view
    y = rand(5, 33)
    check(K.add(x, y), x.double() + y.double(), torch.float32)


@pytest.mark.parametrize("kernel", ["softmax", "softmax_decomposed"])
@pytest.mark.parametrize("loop", [None, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
def test_softmax_persistent_and_looped(kernel, loop, dtype, n):
    x = rand(3, n, dtype=dtype)
    k = K.KERNELS[kernel]
    b = k.bind((x,))
    out = b.run(b.config.replace(reduction_loops=[loop], block_sizes=[2]), x)
    check(out, torch.softmax(x.double(), -1), dtype)


def test_softmax_looped_code_has_chunk_loops():
    x = rand(4, 1000)
    b = K.softmax.bind((x,))
    code = b.to_triton_code(b.config.replace(reduction_loops=[128]))
    assert code.count("for roffset_0 in tl.range(0, 1000, 128)") == 3  # max, sum, store passes
    assert "for roffset" not in b.to_triton_code(b.config.replace(reduction_loops=[None]))


def test_softmax_transposed_input():
    x = rand(1000, 5).t()
    check(K.softmax(x), torch.softmax(x.double(), -1), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
def test_softmax_two_pass(n, dtype):
    x = rand(5, n, dtype=dtype)
    b = K.softmax_two_pass.bind((x,))
    out = b.run(Config(block_sizes=[2, 256]), x)
    check(out, torch.softmax(x.double(), -1), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
def test_rms_norm(n, dtype):
    x, w = rand(3, n, dtype=dtype), rand(n, dtype=dtype)
    ref = torch.nn.functional.rms_norm(x.double(), (n,), w.double(), 1e-5)
    check(K.rms_norm(x, w, 1e-5), ref, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
@pytest.mark.parametrize("loop", [None, 512])
def test_layer_norm(n, dtype, loop):
    x, w, bias = rand(3, n, dtype=dtype), rand(n, dtype=dtype), rand(n, dtype=dtype)
    ref = torch.nn.functional.layer_norm(x.double(), (n,), w.double(), bias.double(), 1e-5)
    b = K.layer_norm.bind((x, w, bias, 1e-5))
    out = b.run(b.config.replace(reduction_loops=[loop]), x, w, bias, 1e-5)
    check(out, ref, dtype)


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("n", [17, 1000, 4097])
@pytest.mark.parametrize("looped", [False, True])
def test_row_var(n, correction, looped):
    """torch.var inside a tile loop (whole row or chunked), against float64."""
    x = 3 + rand(5, n)  # offset mean: a naive E[x^2] - E[x]^2 would lose digits
    b = K.row_var.bind((x, correction))
    cfg = b.normalize(b.config.replace(reduction_loops=[(16 if n < 512 else 256) if looped else None]))
    assert ("for roffset" in b.to_triton_code(cfg)) == looped
    out = b.run(cfg, x, correction)
    check(out, x.double().var(-1, correction=correction), torch.float32)


def test_layer_norm_transposed_input():
    x = rand(17, 3).t()
    w, bias = rand(17), rand(17)
    ref = torch.nn.functional.layer_norm(x.double(), (17,), w.double(), bias.double(), 1e-5)
    check(K.layer_norm(x, w, bias), ref, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("mnk", [(1, 65, 33), (17, 65, 33), (130, 17, 1000), (33, 1, 17)])
def test_matmul(mnk, dtype):
    m, n, k = mnk
    x, y = rand(m, k, dtype=dtype), rand(k, n, dtype=dtype)
    b = K.matmul.bind((x, y))
    out = b.run(b.config.replace(block_sizes=[16, 16, 16]), x, y)
    check(out, x.double() @ y.double(), dtype)


def test_matmul_transposed_and_configs():
    x, y = rand(33, 70).t(), rand(40, 33).t()  # [70, 33] @ [33, 40], both non-contiguous
    b = K.matmul.bind((x, y))
    ref = x.double() @ y.double()
    for cfg in [Config(block_sizes=[32, 16, 16], l2_groupings=[4], loop_orders=[[1, 0]]),
                Config(block_sizes=[16, 32, 16], pid_type="persistent_interleaved"),
                Config(block_sizes=[16, 16, 32], pid_type="persistent_blocked", num_stages=4),
                Config(block_sizes=[16, 16, 16], pid_type="xyz")]:
        check(b.run(b.normalize(cfg), x, y), ref, torch.float32)


def test_matmul_tensor_descriptor():
    x, y = rand(64, 32), rand(32, 48)
    b = K.matmul.bind((x, y))
    cfg = b.config.replace(block_sizes=[32, 16, 16], indexing="tensor_descriptor")
    assert "make_tensor_descriptor" in b.to_triton_code(cfg)
    check(b.run(cfg, x, y), x.double() @ y.double(), torch.float32)


@pytest.mark.parametrize("n", COLS)
def test_row_sum(n):
    x = rand(5, n)
    check(K.row_sum(x), x.double().sum(-1), torch.float32)
    b = K.row_sum.bind((x,))
    check(b.run(b.config.replace(reduction_loops=[16]), x), x.double().sum(-1), torch.float32)


@pytest.mark.parametrize("n", COLS)
def test_grid_kernel(n):
    x, y = rand(4, n), rand(4, n)
    check(K.grid_scale_add(x, y, 0.5), x.double() * 0.5 + y.double(), torch.float32)


def test_second_call_does_not_regenerate(monkeypatch):
    from helion_ops.dsl import pipeline
    x = rand(3, 17)
    K.softmax(x)
    calls = []
    monkeypatch.setattr(pipeline, "generate", lambda *a, **k: calls.append(a))
    K.softmax(rand(3, 17))
    assert calls == []
