"""torch.cat / torch.stack of 2, 4 and 8 computed blocks in device code (pairs of hl.join, concatenated in
halves), against torch on odd row counts and a strided view; other counts are refused at their line."""
import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc
from tests.dsl.source_kernels import kernel_from_source


@helion.kernel(autotune_effort="none")
def cat4(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty([x.size(0), 4 * x.size(1)], dtype=x.dtype, device=x.device)
    for t in hl.tile(x.size(0)):
        v = x[t, :]
        out[t, :] = torch.cat([v, v * 2, v + 1, -v], dim=1)
    return out


@helion.kernel(autotune_effort="none")
def stack4_and_8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s4 = torch.empty([x.size(0), 4, x.size(1)], dtype=x.dtype, device=x.device)
    s8 = torch.empty([x.size(0), x.size(1), 8], dtype=x.dtype, device=x.device)
    for t in hl.tile(x.size(0)):
        v = x[t, :]
        s4[t, :, :] = torch.stack([v, v * 2, v + 1, -v], dim=1)
        s8[t, :, :] = torch.stack([v * k for k in range(8)], dim=-1)
    return s4, s8


@pytest.mark.parametrize("rows", [1, 17, 100])
def test_cat_of_four(rows, device):
    x = torch.randn(rows, 16, device=device)
    torch.testing.assert_close(cat4(x), torch.cat([x, x * 2, x + 1, -x], dim=1))


@pytest.mark.parametrize("rows", [1, 17])
def test_stack_of_four_and_eight_on_a_view(rows, device):
    x = torch.randn(rows, 64, device=device)[:, ::2]
    s4, s8 = stack4_and_8(x)
    torch.testing.assert_close(s4, torch.stack([x, x * 2, x + 1, -x], dim=1))
    torch.testing.assert_close(s8, torch.stack([x * k for k in range(8)], dim=-1))


def test_three_blocks_are_refused(tmp_path):
    k = kernel_from_source(
        tmp_path / "bad_cat.py",
        "@helion.kernel(config=helion.Config(block_sizes=[16]))\n"
        "def k(x: torch.Tensor) -> torch.Tensor:\n"
        "    out = torch.empty([x.size(0), 3 * x.size(1)], dtype=x.dtype)\n"
        "    for t in hl.tile(x.size(0)):\n"
        "        v = x[t, :]\n"
        "        out[t, :] = torch.cat([v, v, v], dim=1)\n"
        "    return out\n")
    with pytest.raises(exc.NotSupported, match="2, 4, 8") as info:
        k.bind((torch.ones(16, 16),)).to_triton_code(helion.Config(block_sizes=[16]))
    assert "bad_cat.py:10" in str(info.value)


def test_list_comprehension_needs_compile_time_items(tmp_path):
    k = kernel_from_source(
        tmp_path / "bad_comp.py",
        "@helion.kernel(config=helion.Config(block_sizes=[16]))\n"
        "def k(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:\n"
        "    out = torch.empty_like(x)\n"
        "    for t in hl.tile(x.size(0)):\n"
        "        v = x[t, :]\n"
        "        out[t, :] = torch.stack([v for i in range(n[0])], dim=1).sum(1)\n"
        "    return out\n")
    with pytest.raises(exc.NotSupported, match="known at compile time") as info:
        k.bind((torch.ones(16, 16), torch.ones(1, dtype=torch.int32))).to_triton_code(
            helion.Config(block_sizes=[16]))
    assert "bad_comp.py:10" in str(info.value)
