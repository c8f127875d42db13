"""helion_ops.rms_norm: forward and backward vs a float64 torch reference, in the interpreter on CPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import helion_ops
from helion_ops import _oplib as C
from helion_ops.dsl import Config, exc
from tests.conftest import DEVICE  # cuda on a GPU machine, else cpu (interpreter)
from helion_ops.ops import rms_norm as R
from bench.specs import rms_norm as R_spec

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
COLS = [1, 17, 1000, 4097]


def rel_err(out, ref, floor: float = 1e-30) -> float:
    if ref.numel() == 0:
        return 0.0
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(floor)).item()


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=torch.float64).to(device=DEVICE, dtype=dtype)


def run_and_check(x, weight=None, ns=None, eps=1e-5):
    """rms_norm forward, dx and dweight against float64 torch; x and weight keep their layout."""
    dtype = x.dtype
    ns = ns or (x.shape[-1],)
    x = x.detach().requires_grad_()
    w = weight.detach().requires_grad_() if weight is not None else None
    y = R.rms_norm(x, ns, w, eps)
    assert y.dtype == dtype and y.shape == x.shape
    dy = rand(*y.shape, dtype=dtype)
    y.backward(dy)
    xr = x.detach().double().requires_grad_()
    wr = w.detach().double().requires_grad_() if w is not None else None
    yr = F.rms_norm(xr, ns, wr, eps)
    yr.backward(dy.double())
    tol = TOL[dtype]
    assert rel_err(y, yr) < tol, ("y", rel_err(y, yr))
    # With a single normalised element, dx = w*dy*eps/(x^2+eps)^1.5 is the difference of two terms of
    # size |w*dy*rstd| (ill-conditioned; torch's own fp32 result is off by ~1e-3 of |dx|): measure the
    # error against the size of those terms.
    floor = 1e-30
    if torch.Size(ns).numel() == 1:
        rstd = torch.rsqrt(xr.detach().pow(2) + eps)
        floor = (dy.double().abs() * rstd * (wr.detach().abs() if wr is not None else 1)).max().item()
    assert rel_err(x.grad, xr.grad, floor) < tol, ("dx", rel_err(x.grad, xr.grad, floor))
    if w is not None:
        assert w.grad.dtype == dtype
        assert rel_err(w.grad, wr.grad) < tol, ("dw", rel_err(w.grad, wr.grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", COLS)
@pytest.mark.parametrize("with_weight", [True, False])
def test_rows(n, dtype, with_weight):
    w = rand(n, dtype=dtype) if with_weight else None
    run_and_check(rand(6, n, dtype=dtype), w)


@pytest.mark.parametrize("n", [17, 1000, 4097])
def test_looped_forward_and_multirow_backward(n):
    """Forward with reduction_loops (chunks); backward with several rows per program, two per inner
    step (partial sums over a partial last program and a partial last step)."""
    chunk = min(256, C.next_pow2(n) // 2)
    fwd = Config(block_sizes=[2], reduction_loops=[chunk], num_warps=4, num_stages=1)
    bwd = Config(block_sizes=[4, 2, 16], reduction_loops=[None, None], num_warps=4, num_stages=1)
    x, w = rand(7, n), rand(n)
    with C.use_config("rms_norm_fwd", fwd), C.use_config("rms_norm_bwd", bwd):
        assert "for roffset" in R._fwd.bound(x, w, 1e-5).to_triton_code(fwd)
        run_and_check(x, w)
        run_and_check(x.half(), w.half())
    # without weight the partial-sum loop does not run: one reduction dim fewer, its block unused (1)
    nw = bwd.replace(block_sizes=[4, 2, 1], reduction_loops=[None])
    with C.use_config("rms_norm_fwd", fwd), C.use_config("rms_norm_bwd", nw):
        run_and_check(x, None)


@pytest.mark.parametrize("rows,cols", [(4, 16), (1, 64), (8, 1)])
def test_weight_grad_sums_the_partials_on_device(rows, cols):
    """dweight is the second device loop's column sums of the [programs, N] partials: several
    programs (a partial last one), partial and whole column blocks, in x's dtype."""
    x, w, dy = rand(7, 33, dtype=torch.float16), rand(33, dtype=torch.float16), rand(7, 33, dtype=torch.float16)
    rstd = torch.rsqrt(x.float().pow(2).mean(-1) + 1e-5)
    cfg = Config(block_sizes=[rows, 1, cols], reduction_loops=[None, None], num_warps=4, num_stages=1)
    with C.use_config("rms_norm_bwd", cfg):
        code = R._bwd.bound(dy, x, w, rstd).to_triton_code(cfg)
        dx, dw = R._bwd(dy, x, w, rstd)
    assert code.count("@triton.jit") == 2
    ref = (dy.double() * x.double() * rstd.double()[:, None]).sum(0)
    assert dw.shape == (33,) and dw.dtype == torch.float16
    assert rel_err(dw, ref) < TOL[torch.float16]


def test_default_configs():
    assert list(R._default_fwd((4096, 4096))["reduction_loops"]) == [None]
    assert R._default_fwd((4096, 8192))["num_warps"] == 8
    # [rows per program, rows per step, columns per program of the partials' sum (~8K partials each)]
    assert list(R._default_bwd((4096, 4096))["block_sizes"]) == [16, 1, 32]   # 4096 rows / (2 * 132 SMs)
    assert list(R._default_bwd((32768, 8192))["block_sizes"]) == [256, 1, 64]  # long rows: 1 program per SM
    assert R._default_bwd((32768, 8192))["num_warps"] == 16
    assert list(R._default_bwd((32768, 4096))["block_sizes"]) == [128, 1, 32]
    assert list(R._default_bwd((16384, 1000))["block_sizes"]) == [64, 4, 32]  # short rows: 4 per step
    assert list(R._default_bwd_no_weight((16384, 1000))["reduction_loops"]) == [None]


def test_3d_and_multidim_normalized_shape():
    run_and_check(rand(2, 3, 17), rand(17))
    run_and_check(rand(2, 3, 5), rand(3, 5), ns=(3, 5))


def test_non_contiguous_views():
    run_and_check(rand(33, 6).t(), rand(33))           # last dim strided: one copy
    run_and_check(rand(6, 40)[:, 2:19], rand(17))      # row-strided: in place
    run_and_check(rand(4, 3, 17).transpose(0, 1), rand(17))
    run_and_check(rand(6, 17), rand(34)[::2])          # strided weight


def test_eps_default_and_empty():
    x, w = rand(3, 17), rand(17)
    y = R.rms_norm(x, (17,), w)
    torch.testing.assert_close(y, F.rms_norm(x, (17,), w), rtol=1e-5, atol=1e-6)
    x = torch.empty(0, 17, device=DEVICE, requires_grad=True)
    w = rand(17).requires_grad_()
    y = R.rms_norm(x, (17,), w)
    y.sum().backward()
    assert y.shape == (0, 17) and x.grad.shape == (0, 17)
    assert torch.equal(w.grad, torch.zeros(17, device=DEVICE))


def test_bad_inputs(monkeypatch):
    x = rand(3, 17)
    with pytest.raises(exc.InputError, match="'normalized_shape'"):
        R.rms_norm(x, (16,))
    with pytest.raises(exc.InputError, match="'normalized_shape'"):
        R.rms_norm(x, (2, 3, 17))
    with pytest.raises(exc.InputError, match="'weight'.*dtype"):
        R.rms_norm(x, (17,), rand(17).half())
    with pytest.raises(exc.InputError, match="'weight'.*shape"):
        R.rms_norm(x, (17,), rand(16))
    with pytest.raises(exc.InputError, match="'input'"):
        R.rms_norm(torch.ones(3, 17, dtype=torch.int32), (17,))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(exc.InputError, match="'input' is a CPU tensor"):
        R.rms_norm(x.cpu(), (17,))


def test_nn_module_matches_torch_state_dict():
    ref = torch.nn.RMSNorm(17, eps=1e-6, device=DEVICE)
    with torch.no_grad():
        ref.weight.copy_(rand(17))
    ours = helion_ops.nn.RMSNorm(17, eps=1e-6, device=DEVICE)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    ours.load_state_dict(ref.state_dict())
    x = rand(2, 3, 17)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert list(helion_ops.nn.RMSNorm(17, elementwise_affine=False).state_dict()) == []
    ours.half()  # the module casts fp32 params to the input dtype; here both are fp16
    assert ours(x.half()).dtype == torch.float16


def test_contract():
    for shape in R_spec.SMALL_SHAPES:
        inputs = R_spec.make_inputs(shape, torch.float32, DEVICE)
        assert rel_err(R_spec.impl(*inputs), R_spec.reference(*inputs)) < R_spec.TOLERANCE[torch.float32]
        assert rel_err(R_spec.eager(*inputs), R_spec.reference(*inputs)) < R_spec.TOLERANCE[torch.float32]
    assert R_spec.GRAD_INPUTS == (0, 1)
    assert R_spec.backward_work((4096, 4096), torch.bfloat16) > R_spec.work((4096, 4096), torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("n", COLS + [8192])
def test_bf16_gpu(n, device):
    x = torch.randn(64, n, device=device, dtype=torch.bfloat16).requires_grad_()
    w = (1 + 0.1 * torch.randn(n, device=device)).to(torch.bfloat16).requires_grad_()
    y = R.rms_norm(x, (n,), w, 1e-6)
    dy = torch.randn_like(y)
    y.backward(dy)
    xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    yr = F.rms_norm(xr, (n,), wr, 1e-6)
    yr.backward(dy.double())
    assert rel_err(y, yr) < TOL[torch.bfloat16]
    assert rel_err(x.grad, xr.grad, 1e-3) < TOL[torch.bfloat16]
    assert rel_err(w.grad, wr.grad) < TOL[torch.bfloat16]
