"""helion_ops.layer_norm: forward and backward vs a float64 torch reference, in the interpreter on CPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import helion_ops
from helion_ops import _oplib as C
from helion_ops.dsl import Config, exc
from tests.conftest import DEVICE  # cuda on a GPU machine, else cpu (interpreter)
from helion_ops.ops import layer_norm as L
from bench.specs import layer_norm as L_spec

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
COLS = [1, 17, 1000, 4097]


def rel_err(out, ref, floor: float = 1e-30) -> float:
    if ref.numel() == 0:
        return 0.0
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(floor)).item()


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=torch.float64).to(device=DEVICE, dtype=dtype)


def run_and_check(x, weight=None, bias=None, ns=None, eps=1e-5):
    """layer_norm forward, dx, dweight and dbias against float64 torch; inputs keep their layout."""
    dtype = x.dtype
    ns = ns or (x.shape[-1],)
    x = x.detach().requires_grad_()
    w = weight.detach().requires_grad_() if weight is not None else None
    b = bias.detach().requires_grad_() if bias is not None else None
    y = L.layer_norm(x, ns, w, b, eps)
    assert y.dtype == dtype and y.shape == x.shape
    dy = rand(*y.shape, dtype=dtype)
    y.backward(dy)
    xr = x.detach().double().requires_grad_()
    wr = w.detach().double().requires_grad_() if w is not None else None
    br = b.detach().double().requires_grad_() if b is not None else None
    yr = F.layer_norm(xr, ns, wr, br, eps)
    yr.backward(dy.double())
    tol = TOL[dtype]
    # N = 1: y = bias, dx = 0 and dweight = 0 exactly (ours), fp64 torch gives ~1e-15: absolute floor
    floor = 1e-6 if torch.Size(ns).numel() == 1 else 1e-30
    assert rel_err(y, yr, floor) < tol, ("y", rel_err(y, yr, floor))
    assert rel_err(x.grad, xr.grad, floor) < tol, ("dx", rel_err(x.grad, xr.grad, floor))
    if w is not None:
        assert w.grad.dtype == dtype
        assert rel_err(w.grad, wr.grad, floor) < tol, ("dw", rel_err(w.grad, wr.grad, floor))
    if b is not None:
        assert b.grad.dtype == dtype
        assert rel_err(b.grad, br.grad) < tol, ("db", rel_err(b.grad, br.grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
@pytest.mark.parametrize("affine", ["wb", "w", "b", ""])
def test_rows(n, dtype, affine):
    w = rand(n, dtype=dtype) if "w" in affine else None
    b = rand(n, dtype=dtype) if "b" in affine else None
    run_and_check(3 + rand(6, n, dtype=dtype), w, b)  # offset mean: centring matters


@pytest.mark.parametrize("n", [17, 1000, 4097])
def test_looped_forward_and_multirow_backward(n):
    """Forward with reduction_loops (chunks); backward with several rows per program, two per inner
    step (partial sums over a partial last program and a partial last step)."""
    chunk = min(256, C.next_pow2(n) // 2)
    fwd = Config(block_sizes=[2], reduction_loops=[chunk], num_warps=4, num_stages=1)
    bwd = Config(block_sizes=[4, 2, 16], reduction_loops=[None, None], num_warps=4, num_stages=1)
    x, w, b = rand(7, n), rand(n), rand(n)
    with C.use_config("layer_norm_fwd", fwd), C.use_config("layer_norm_bwd", bwd):
        assert "for roffset" in L._fwd.bound(x, w, b, 1e-5).to_triton_code(fwd)
        run_and_check(x, w, b)
        run_and_check(x.half(), w.half(), b.half())
        run_and_check(x, None, b)
    # without weight and bias the partial-sum loop does not run: one reduction dim fewer, block unused
    nw = bwd.replace(block_sizes=[4, 2, 1], reduction_loops=[None])
    with C.use_config("layer_norm_fwd", fwd), C.use_config("layer_norm_bwd", nw):
        run_and_check(x, None, None)


@pytest.mark.parametrize("rows,cols", [(4, 16), (1, 64), (8, 1)])
@pytest.mark.parametrize("affine", ["wb", "w", "b", ""])
def test_param_grads_sum_the_partials_on_device(affine, rows, cols):
    """dweight and dbias ([K, N] in x's dtype: dweight, then dbias, of those given) are the second
    device loop's column sums of the [P, K, N] partials: several programs (a partial last one),
    partial and whole column blocks."""
    x, dy = rand(7, 33, dtype=torch.float16), rand(7, 33, dtype=torch.float16)
    w = rand(33, dtype=torch.float16) if "w" in affine else None
    b = rand(33, dtype=torch.float16) if "b" in affine else None
    xd = x.double()
    mean, rstd = xd.mean(-1), torch.rsqrt(xd.var(-1, unbiased=False) + 1e-5)
    cfg = Config(block_sizes=[rows, 1, cols if affine else 1], reduction_loops=[None, None] if affine else [None],
                 num_warps=4, num_stages=1)
    with C.use_config("layer_norm_bwd", cfg):
        dx, dwb = L._bwd(dy, x, w, b, mean.float(), rstd.float())
    if not affine:
        assert dwb is None
        return
    xhat = (xd - mean[:, None]) * rstd[:, None]
    ref = ([(dy.double() * xhat).sum(0)] if w is not None else []) + ([dy.double().sum(0)] if b is not None else [])
    assert dwb.shape == (len(affine), 33) and dwb.dtype == torch.float16
    for got, want in zip(dwb, ref):
        assert rel_err(got, want) < TOL[torch.float16]


def test_default_configs():
    assert list(L._default_fwd((4096, 4096))["reduction_loops"]) == [None]
    assert L._default_fwd((4096, 8192))["num_warps"] == 8
    assert list(L._default_bwd((4096, 4096))["block_sizes"]) == [16, 1, 32]   # 4096 rows / (2 * 132 SMs)
    assert list(L._default_bwd((32768, 8192))["block_sizes"]) == [256, 1, 64]  # long rows: 1 program per SM
    assert list(L._default_bwd_no_params((32768, 8192))["reduction_loops"]) == [None]
    assert L._default_bwd((32768, 8192))["num_warps"] == 16


def test_3d_and_multidim_normalized_shape():
    run_and_check(rand(2, 3, 17), rand(17), rand(17))
    run_and_check(rand(2, 3, 5), rand(3, 5), rand(3, 5), ns=(3, 5))


def test_non_contiguous_views():
    run_and_check(rand(33, 6).t(), rand(33), rand(33))       # last dim strided: one copy
    run_and_check(rand(6, 40)[:, 2:19], rand(17), rand(17))  # row-strided: in place
    run_and_check(rand(4, 3, 17).transpose(0, 1), None, rand(17))
    run_and_check(rand(6, 17), rand(34)[::2], rand(51)[::3])  # strided weight and bias


def test_empty():
    x = torch.empty(0, 17, device=DEVICE, requires_grad=True)
    w, b = rand(17).requires_grad_(), rand(17).requires_grad_()
    y = L.layer_norm(x, (17,), w, b)
    y.sum().backward()
    assert y.shape == (0, 17) and x.grad.shape == (0, 17)
    assert torch.equal(w.grad, torch.zeros(17, device=DEVICE)) and torch.equal(b.grad, torch.zeros(17, device=DEVICE))


def test_bad_inputs(monkeypatch):
    x = rand(3, 17)
    with pytest.raises(exc.InputError, match="'normalized_shape'"):
        L.layer_norm(x, (16,))
    with pytest.raises(exc.InputError, match="'normalized_shape'"):
        L.layer_norm(x, [])
    with pytest.raises(exc.InputError, match="'weight'.*dtype"):
        L.layer_norm(x, (17,), rand(17).half())
    with pytest.raises(exc.InputError, match="'bias'.*dtype"):
        L.layer_norm(x, (17,), rand(17), rand(17, dtype=torch.float16))
    with pytest.raises(exc.InputError, match="'bias'.*shape"):
        L.layer_norm(x, (17,), None, rand(18))
    with pytest.raises(exc.InputError, match="'input'"):
        L.layer_norm(torch.ones(3, 17, dtype=torch.int64), (17,))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(exc.InputError, match="'input' is a CPU tensor"):
        L.layer_norm(x.cpu(), (17,))


def test_nn_module_matches_torch_state_dict():
    ref = torch.nn.LayerNorm(17, eps=1e-6, device=DEVICE)
    with torch.no_grad():
        ref.weight.copy_(rand(17))
        ref.bias.copy_(rand(17))
    ours = helion_ops.nn.LayerNorm(17, eps=1e-6, device=DEVICE)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    ours.load_state_dict(ref.state_dict())
    x = rand(2, 3, 17)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert list(helion_ops.nn.LayerNorm(17, bias=False).state_dict()) == ["weight"]
    assert list(helion_ops.nn.LayerNorm(17, elementwise_affine=False).state_dict()) == []
    assert ours(x.half()).dtype == torch.float16  # fp32 params cast to the input dtype


def test_contract():
    for shape in L_spec.SMALL_SHAPES:
        inputs = L_spec.make_inputs(shape, torch.float32, DEVICE)
        floor = 1e-6 if shape[1] == 1 else 1e-30
        assert rel_err(L_spec.impl(*inputs), L_spec.reference(*inputs), floor) < L_spec.TOLERANCE[torch.float32]
        assert rel_err(L_spec.eager(*inputs), L_spec.reference(*inputs), floor) < L_spec.TOLERANCE[torch.float32]
    assert L_spec.GRAD_INPUTS == (0, 1, 2)
    assert L_spec.backward_work((4096, 4096), torch.bfloat16) > L_spec.work((4096, 4096), torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("n", COLS + [8192])
def test_bf16_gpu(n, device):
    x = torch.randn(64, n, device=device, dtype=torch.bfloat16).requires_grad_()
    w = (1 + 0.1 * torch.randn(n, device=device)).to(torch.bfloat16).requires_grad_()
    b = (0.1 * torch.randn(n, device=device)).to(torch.bfloat16).requires_grad_()
    y = L.layer_norm(x, (n,), w, b)
    dy = torch.randn_like(y)
    y.backward(dy)
    xr, wr, br = (t.detach().double().requires_grad_() for t in (x, w, b))
    yr = F.layer_norm(xr, (n,), wr, br)
    yr.backward(dy.double())
    floor = 1e-3
    assert rel_err(y, yr, floor) < TOL[torch.bfloat16]
    assert rel_err(x.grad, xr.grad, floor) < TOL[torch.bfloat16]
    assert rel_err(w.grad, wr.grad, floor) < TOL[torch.bfloat16]
    assert rel_err(b.grad, br.grad, floor) < TOL[torch.bfloat16]
