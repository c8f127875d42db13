"""helion_ops.softmax: forward and backward vs a float64 torch reference, in the interpreter on CPU."""
from __future__ import annotations

import pytest
import torch

from helion_ops import _oplib as C
from helion_ops.dsl import Config, exc
from tests.conftest import DEVICE  # cuda on a GPU machine, else cpu (interpreter)
from helion_ops.ops import softmax as S
from bench.specs import softmax as S_spec

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
COLS = [1, 17, 1000, 4097]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    if ref.numel() == 0:
        return 0.0
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()


def run_and_check(x: torch.Tensor, dim: int = -1, dtype=None) -> None:
    """Forward and backward of softmax(x, dim) against float64 torch; x keeps its layout."""
    dtype = dtype or x.dtype
    x = x.detach().requires_grad_()
    y = S.softmax(x, dim)
    assert y.dtype == dtype and y.shape == x.shape
    dy = torch.randn(y.shape, dtype=torch.float64).to(device=DEVICE, dtype=dtype)
    y.backward(dy)
    xr = x.detach().double().requires_grad_()
    yr = torch.softmax(xr, dim)
    yr.backward(dy.double())
    assert rel_err(y, yr) < TOL[dtype], ("fwd", rel_err(y, yr))
    assert x.grad.dtype == dtype
    assert rel_err(x.grad, xr.grad) < TOL[dtype], ("bwd", rel_err(x.grad, xr.grad))


def rand(*shape, dtype=torch.float32) -> torch.Tensor:
    return (2 * torch.randn(*shape, dtype=torch.float64)).to(device=DEVICE, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
def test_rows(n, dtype):
    run_and_check(rand(5, n, dtype=dtype))


@pytest.mark.parametrize("n", [17, 1000, 4097])
def test_looped_config(n):
    """The same kernels with reduction_loops (chunks of the row) instead of whole rows in registers."""
    chunk = min(256, C.next_pow2(n) // 2)
    cfg = Config(block_sizes=[2], reduction_loops=[chunk], num_warps=4, num_stages=1)
    x = rand(3, n)
    with C.use_config("softmax_fwd", cfg), C.use_config("softmax_bwd", cfg):
        assert list(S._fwd.config_for(x)["reduction_loops"]) == [chunk]
        code = S._fwd.bound(x,).to_triton_code(cfg)
        assert "for roffset" in code  # looped
        run_and_check(x)
        run_and_check(x.half())


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("n", [17, 1000, 4097])
def test_online_kernel_for_long_rows(n, reverse, monkeypatch):
    """Rows above ONLINE_ABOVE run the two-pass online forward and the two-loop backward over column
    tiles (partial last tile), with their second pass in either order."""
    monkeypatch.setattr(S, "ONLINE_ABOVE", 8)
    run_and_check(rand(3, n))  # the default configs (second pass reversed)
    cfg = Config(block_sizes=[min(256, C.next_pow2(n)), 2], num_warps=4, num_stages=1,
                 range_reverses=[False, reverse])
    with C.use_config("softmax_fwd_online", cfg), C.use_config("softmax_bwd_looped", cfg):
        x = rand(3, n)
        assert S._fwd_online.config_for(x)["block_sizes"][0] == min(256, C.next_pow2(n))
        code = S._bwd_looped.bound(x, x).to_triton_code(cfg)
        assert ("_r in tl.range" in code) == reverse
        run_and_check(rand(3, n))
        run_and_check(rand(3, n, dtype=torch.float16))


def test_long_row_defaults_reverse_the_second_pass():
    for cfg in (S._default_online((4096, 128256)), S._default_bwd_looped((4096, 128256))):
        assert list(cfg["range_reverses"]) == [False, True] and cfg["block_sizes"][0] == 16384


def test_default_configs_by_shape():
    """Persistent whole rows up to 16K columns, looped beyond; warps grow with the row."""
    assert list(S._default((4096, 1000))["reduction_loops"]) == [None]
    assert S._default((4096, 1000))["num_warps"] == 4
    assert S._default((4096, 8192))["num_warps"] == 8
    assert S._default((4096, 16384))["num_warps"] == 16
    assert list(S._default((4096, 32000))["reduction_loops"]) == [None]  # 32K lanes still persistent
    big = S._default((4096, 128256))
    assert big["reduction_loops"][0] is not None and big["num_warps"] == 16
    assert C.next_pow2(128256) > S.ONLINE_ABOVE >= 32768  # long rows: online kernel
    assert list(S._default((3, 1000))["block_sizes"]) == [4]  # never more rows per program than M


def test_persistent_multi_row_config():
    cfg = Config(block_sizes=[4], reduction_loops=[None], num_warps=4, num_stages=1)
    with C.use_config("softmax_fwd", cfg), C.use_config("softmax_bwd", cfg):
        run_and_check(rand(7, 33))  # 7 rows in programs of 4: a partial last tile


@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_3d_and_dims(dim):
    run_and_check(rand(3, 4, 17), dim=dim)


def test_non_contiguous_views():
    base = rand(40, 9)
    run_and_check(base.t())                        # transposed: last dim strided -> one copy
    wide = rand(6, 40)
    run_and_check(wide[:, 3:20])                   # row-strided slice: runs in place
    run_and_check(rand(4, 6, 17).transpose(0, 1))  # leading dims permuted
    run_and_check(rand(12, 17)[::2])               # every other row


def test_row_slice_is_not_copied():
    wide = rand(6, 40)
    v = wide[:, 3:20]
    assert C.as_rows(v, 17).data_ptr() == v.data_ptr()
    assert C.as_rows(rand(3, 4, 17), 17).is_contiguous()


def test_empty_and_scalar():
    x = torch.empty(0, 7, device=DEVICE)
    y = S.softmax(x)
    assert y.shape == (0, 7)
    x = torch.empty(0, 7, device=DEVICE, requires_grad=True)
    S.softmax(x).sum().backward()
    assert x.grad.shape == (0, 7)
    assert S.softmax(torch.tensor(3.0, device=DEVICE)).item() == 1.0
    run_and_check(rand(4, 1))  # N = 1: all ones, zero gradient


def test_dtype_argument():
    x = rand(3, 17)
    y = S.softmax(x.half(), dtype=torch.float32)
    assert y.dtype == torch.float32
    assert rel_err(y, torch.softmax(x.half().double(), -1)) < 1e-5


def test_bad_inputs(monkeypatch):
    with pytest.raises(exc.InputError, match="'input'"):
        S.softmax(torch.arange(6).reshape(2, 3))
    with pytest.raises(exc.InputError, match="'input'"):
        S.softmax(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(exc.InputError, match="'dim'"):
        S.softmax(torch.randn(2, 3), dim=2)
    with pytest.raises(exc.InputError, match="'input'"):
        S.softmax([1.0, 2.0])
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(exc.InputError, match="'input' is a CPU tensor"):
        S.softmax(torch.randn(2, 3))


def test_contract():
    for shape in S_spec.SHAPES:
        assert S_spec.work(shape, torch.bfloat16) <= 2 * 2**30 + 1  # inputs <= 1 GiB in bf16
    assert any(n == 1000 for _, n in S_spec.SHAPES) and any(n == 128256 for _, n in S_spec.SHAPES)
    for shape in S_spec.SMALL_SHAPES:
        (x,) = S_spec.make_inputs(shape, torch.float32, DEVICE)
        assert rel_err(S_spec.impl(x), S_spec.reference(x)) < S_spec.TOLERANCE[torch.float32]
        assert rel_err(S_spec.eager(x), S_spec.reference(x)) < S_spec.TOLERANCE[torch.float32]


def test_eager_fast_path_matches_custom_op():
    x = rand(3, 17)
    torch.testing.assert_close(S.softmax(x), torch.ops.helion_ops.softmax_fwd(x), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("n", COLS + [32000, 128256])
def test_bf16_gpu(n, device):
    x = torch.randn(64, n, device=device, dtype=torch.bfloat16).requires_grad_()
    y = S.softmax(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    xr = x.detach().double().requires_grad_()
    yr = torch.softmax(xr, -1)
    yr.backward(dy.double())
    assert rel_err(y, yr) < TOL[torch.bfloat16]
    assert rel_err(x.grad, xr.grad) < TOL[torch.bfloat16]
