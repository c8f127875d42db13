"""int64 indexing: switched on by the tensors' sizes/strides (part of the launch key), never by hand.

Meta tensors stand in for >2**31-element inputs: only the generated code is inspected."""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import Config


@helion.kernel()
def double(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for tm, tn in hl.tile(x.size()):
        out[tm, tn] = x[tm, tn] * 2
    return out


@helion.kernel()
def gather_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    out = torch.empty([idx.size(0), table.size(1)], dtype=table.dtype, device=table.device)
    for ti, td in hl.tile([idx.size(0), table.size(1)]):
        out[ti, td] = table[idx[ti], td]
    return out


CFG = Config(block_sizes=[4, 128])


def _code(kernel, *args) -> str:
    return kernel.bind(args).to_triton_code(CFG)


def test_normal_sizes_use_int32_offsets():
    code = _code(double, torch.empty(64, 1000, device="meta"))
    assert "int64" not in code


def test_huge_tensor_uses_int64_offsets():
    big = torch.empty_strided((4, 2**30 + 3), (2**30 + 3, 1), device="meta")  # > 2**32 elements
    code = _code(double, big)
    assert "tl.program_id(0).to(tl.int64)" in code
    # each index is widened before it is multiplied by a stride, not after the sum
    assert "indices_0[:, None].to(tl.int64) * 1073741827" in code


def test_strided_view_with_large_offsets_uses_int64():
    # few elements, but the last one sits past 2**31 in memory
    x = torch.empty_strided((3, 5), (2**30, 1), device="meta")
    code = double.bind((x,)).to_triton_code(Config(block_sizes=[4, 8]))
    assert ".to(tl.int64) * 1073741824" in code


def test_gather_index_widened_for_huge_table():
    table = torch.empty(2**22, 1024, device="meta")  # 2**32 elements
    idx = torch.empty(16, dtype=torch.int32, device="meta")
    code = _code(gather_rows, table, idx)
    assert ".to(tl.int64) * 1024" in code
    small = _code(gather_rows, torch.empty(100, 1024, device="meta"), idx)
    assert "int64" not in small
