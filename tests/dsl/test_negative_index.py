"""Negative integer indices count from the end (as in torch) in loads, stores and hl.load; an index out of
range is refused at compile time with the kernel's line (it used to read the neighbouring row: x[t, -1]
was x[t - 1, last])."""
import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc
from tests.dsl.source_kernels import kernel_from_source


@helion.kernel(autotune_effort="none")
def ends(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros([x.size(0), 3], dtype=x.dtype, device=x.device)
    for t in hl.tile(x.size(0)):
        out[t, -1] = x[t, -1]
        out[t, 0] = hl.load(x, [t, -x.size(1)])
        out[t, -2] = x[t, 1] - x[t, -2]
    return out


@pytest.mark.parametrize("rows,cols", [(1, 2), (17, 5), (1000, 17)])
def test_negative_indices(rows, cols, device):
    x = torch.randn(rows, 2 * cols, device=device)[:, ::2]  # a strided view
    want = torch.stack([x[:, 0], x[:, 1] - x[:, -2], x[:, -1]], dim=1)
    torch.testing.assert_close(ends(x), want)


def test_out_of_range_index_is_refused(tmp_path):
    k = kernel_from_source(
        tmp_path / "bad_index.py",
        "@helion.kernel(config=helion.Config(block_sizes=[16]))\n"
        "def k(x: torch.Tensor) -> torch.Tensor:\n"
        "    out = torch.empty(x.size(0), dtype=x.dtype)\n"
        "    for t in hl.tile(x.size(0)):\n"
        "        out[t] = x[t, -5]\n"
        "    return out\n")
    with pytest.raises(exc.ShapeMismatch, match="index -5 is out of bounds for dim 1") as info:
        k(torch.ones(16, 4))
    assert "bad_index.py:9" in str(info.value)
