"""Regression tests for DSL fixes made for the matmul / grouped GEMM ops (one test per fix)."""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl


@helion.kernel()
def _mm_at(a_t: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A^T @ B with A stored [K, M]: the left operand is a transposed load."""
    k, m = a_t.size()
    _, n = b.size()
    out = torch.empty([m, n], dtype=torch.float32, device=a_t.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = torch.addmm(acc, a_t[tile_k, tile_m].T, b[tile_k, tile_n])
        out[tile_m, tile_n] = acc
    return out


def test_transposed_load_dot_operand_has_no_where():
    """A dot operand that is a transpose (or cast) of a load already has zeros in its masked
    contraction lanes (other=0 / TMA zero fill): codegen used to wrap it in a ``tl.where`` on the
    K mask, which on GPU sits between the load and the dot and keeps Triton from pipelining the
    load into shared memory."""
    a_t = torch.randn(33, 17)  # K=33 is not a multiple of the K block: the K dim is masked
    b = torch.randn(33, 20)
    bound = _mm_at.bind((a_t, b))
    cfg = bound.config_space.normalize(helion.Config(block_sizes=[16, 32, 16]))
    code = bound.to_triton_code(cfg)
    assert "tl.trans(" in code and "mask_2" in code
    dot_lines = [line for line in code.splitlines() if "tl.dot(" in line]
    assert dot_lines and not any("tl.where" in line for line in dot_lines), dot_lines
    out = bound.run(cfg, a_t, b)
    torch.testing.assert_close(out, a_t.T @ b, rtol=1e-5, atol=1e-5)
