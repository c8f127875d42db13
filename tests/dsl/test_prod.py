"""Product reductions (torch.prod, Tensor.prod) in device code: tl.reduce with a multiply, masked lanes 1,
half precision accumulated in fp32; against torch in fp64 on odd sizes and a non-contiguous view."""
import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl


@helion.kernel(config=helion.Config(block_sizes=[1]))
def row_prod(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.size(0), dtype=x.dtype, device=x.device)
    for t in hl.tile(x.size(0)):
        out[t] = torch.prod(x[t, :], dim=1)
    return out


@helion.kernel(config=helion.Config(block_sizes=[4]))
def col_prod_keepdim(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(1, x.size(1), dtype=x.dtype, device=x.device)
    for t in hl.tile(x.size(1)):
        out[:, t] = x[:, t].prod(0, keepdim=True)
    return out


def _near_one(*shape, dtype, device):
    # Values near 1 keep a product of 1000 terms finite; the sign flips make a dropped lane visible.
    x = 1 + 0.01 * torch.randn(*shape, dtype=torch.float64)
    x[..., ::7] *= -1
    return x.to(dtype).to(device)


@pytest.mark.parametrize("n", [1, 17, 1000, 4097])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_row_prod(n, dtype, device):
    x = _near_one(5, n, dtype=dtype, device=device)
    ref = x.double().prod(1)
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(row_prod(x).double(), ref, rtol=tol, atol=tol)


def test_col_prod_keepdim_on_a_view(device):
    x = _near_one(13, 60, dtype=torch.float32, device=device)[:, ::3]
    torch.testing.assert_close(col_prod_keepdim(x).double(), x.double().prod(0, keepdim=True), rtol=1e-5, atol=1e-5)
