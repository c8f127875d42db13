"""A grid sweep of the grouped GEMM weight-gradient kernel's configs over grouped_gemm.SHAPES.

    python -m bench.grouped_gemm_dw_sweep [--per-shape 45] [--out sweep.json]

For each shape, ``grouped_gemm_dw_kernel`` (dw[g] = x_g^T @ dy_g) is timed on its current config
(the table's entry or ``choose_dw_config``) and on a shuffled grid of output tiles, warps, stages,
indexing and pid types, beside ``torch._grouped_mm``'s dw in the same process. A candidate whose
result is off the eager reference by more than 2% of its max is rejected. The measurements go to
``--out`` (results/H100/sweeps/grouped_gemm_dw_sweep_2026-11-26.json is one such run); the winner
of that run became ``choose_dw_config``'s default and the dw entries of configs/sm90/grouped_gemm.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import sys

import torch

TILES = ((64, 128, 128), (64, 128, 256), (64, 256, 128), (32, 128, 256), (128, 128, 128), (32, 256, 128),
         (64, 64, 256))  # (rows per step, K tile, N tile)


def candidates(seed: int = 0) -> list[dict]:
    grid = []
    for bs, w, st, ix, pid in itertools.product(TILES, (4, 8), (3, 4, 5), ("pointer", "tensor_descriptor"),
                                                ("flat", "persistent_interleaved")):
        if bs[1] * bs[2] >= 128 * 256 and w == 4:
            continue  # a 128x256 fp32 accumulator spills with 4 warps
        grid.append(dict(block_sizes=list(bs), num_warps=w, num_stages=st, indexing=ix, pid_type=pid))
    random.Random(seed).shuffle(grid)
    return grid


def sweep_shape(shape: tuple, per_shape: float) -> dict:
    from bench.matmul_sweep import bench_us, grid_search
    from helion_ops.ops import grouped_gemm as G

    g, m, n, k = shape
    x, _, offs = G.make_inputs(shape, torch.bfloat16, "cuda")
    dy = torch.randn(m, n, device="cuda", dtype=torch.bfloat16)
    args = (x, dy, offs)
    ref = G._eager_dw(x, dy, offs).float()
    t_vendor = bench_us(lambda: torch._grouped_mm(x.t(), dy, offs=offs))
    bound = G._configure(G.grouped_gemm_dw_kernel, args, [g, m, n, k], G.choose_dw_config)
    t_cur, best_t, best_cfg, tried = grid_search(bound, args, ref, candidates(), G._fit, per_shape)
    print(f"dw {shape}: grouped_mm {t_vendor:.0f} us, current {t_cur:.0f} us, best {best_t:.0f} us "
          f"({tried} tried) {json.dumps(best_cfg.to_dict())}", flush=True)
    return dict(shape=list(shape), grouped_mm_us=t_vendor, current_us=t_cur, best_us=best_t,
                config=best_cfg.to_dict())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-shape", type=float, default=45.0, help="seconds of candidates per shape")
    ap.add_argument("--out", default="grouped_gemm_dw_sweep.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.grouped_gemm_dw_sweep needs a CUDA GPU (nothing measured)")
        return 2
    from helion_ops.ops import grouped_gemm as G

    results = []
    for shape in G.SHAPES:
        results.append(sweep_shape(shape, args.per_shape))
        json.dump(results, open(args.out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
