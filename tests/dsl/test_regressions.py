"""Regression tests for DSL fixes made by op authors (one test per fix, named after the bug)."""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl


@helion.kernel()
def _row_partials(x: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    rows = hl.register_block_size(m)
    part = torch.empty([hl.cdiv(m, rows), n], dtype=torch.float32, device=x.device)
    for tile_m in hl.tile(m, block_size=rows):
        acc = hl.zeros([n], dtype=torch.float32)
        for i in hl.grid(tile_m.begin, tile_m.end):
            acc = acc + x[i, :].to(torch.float32)
        part[tile_m.id, :] = acc
    return part


def test_nested_grid_adds_no_block_size():
    """A nested ``hl.grid(begin, end)`` loop has no block size: the config space must hold only the
    registered block (it used to get a spurious second entry, so a 1-entry block_sizes failed to
    validate)."""
    x = torch.randn(7, 17)
    b = _row_partials.bind((x,))
    assert len(b.config_space.default()["block_sizes"]) == 1
    cfg = b.config_space.normalize(helion.Config(block_sizes=[4]))
    part = b.run(cfg, x)
    assert part.shape == (2, 17)
    torch.testing.assert_close(part.sum(0), x.sum(0), rtol=1e-5, atol=1e-5)
