"""Analytic default Configs shared by the row-reduction ops (softmax, rms_norm, layer_norm).

The numbers behind these rules come from the H100 sweeps (``bench.norm_sweep``; results/H100/ and
docs/decisions/norm-forwards.md, norm-backwards.md); the pretuned tables override them on the shapes they cover.
"""
from __future__ import annotations

from helion_ops._oplib import next_pow2, num_sms
from helion_ops.dsl import Config


def row_config(m: int, n: int, *, loop_above: int = 32768, chunk: int = 8192) -> Config:
    """Default of a row kernel ``for tile_m in hl.tile(m): x[tile_m, :]``.

    Persistent (the whole row in registers) up to next_pow2(n) = ``loop_above``, where it beat chunked
    loops; num_warps grows with the row (4 up to 2K, 8 up to 8K, 16 above) and short rows take several
    rows per program, so each program moves ~4K elements. Longer rows loop over ``chunk`` columns."""
    p = next_pow2(n)
    if p <= loop_above:
        warps = 4 if p <= 2048 else 8 if p <= 8192 else 16
        bm = max(1, min(16, 4096 // p, next_pow2(m)))
        return Config(block_sizes=[bm], reduction_loops=[None], num_warps=warps, num_stages=1)
    return Config(block_sizes=[1], reduction_loops=[min(chunk, p // 2)], num_warps=16, num_stages=1)


def rows_per_program(m: int, programs_per_sm: int = 2) -> int:
    """Rows each program of a partial-sum backward handles (a power of two): about
    ``programs_per_sm`` programs per SM, so the [programs, N] fp32 partials stay small."""
    target = max(1, num_sms() * programs_per_sm)
    return max(1, min(next_pow2(-(-m // target)), 1 << 20))


def norm_bwd_config(m: int, n: int, partials: bool = True) -> Config:
    """Default of the partial-sum norm backward kernels: ``block_sizes=[rows, sub, cols]``
    (``partials=False``: no weight or bias, so no partial sums and ``cols`` unused).

    About two programs per SM up to 4K columns and one above; one row per inner step from 4K columns
    (several for short rows: ~4K elements a step); 8 warps at 4K columns, 16 above; the row loop
    software-pipelined three deep (``range_num_stages``: the next rows' loads in flight while this
    row reduces). ``cols``: the column block of the loop that sums the [programs, N] partials, about
    8K of them per program."""
    p = next_pow2(n)
    warps = 4 if p <= 2048 else 8 if p <= 4096 else 16
    rows = rows_per_program(m, programs_per_sm=2 if p <= 4096 else 1)
    sub = max(1, min(rows, 4096 // p))
    cols = max(1, min(p, 4096, 8192 // next_pow2(-(-m // rows)))) if partials else 1
    return Config(block_sizes=[rows, sub, cols], reduction_loops=[None, None] if partials else [None],
                  num_warps=warps, num_stages=1, range_num_stages=[3])
