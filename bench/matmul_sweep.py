"""A grid sweep of matmul configs per (M, N, K, layout), written to configs/<arch>/matmul.json.

    python -m bench.matmul_sweep [--problems fwd,bwd] [--shapes MxNxK,...] [--per-problem 30] [--max-candidates 30]
                                 [--out sweep.json] [--write]
    python -m bench.matmul_sweep --merge sweep.json ... --write    (write what a sweep measured)

Why a sweep beside bench.tune's autotuner: the matmul table needs an entry per operand layout
(forward NN, backward's dA = dZ @ B^T "NT" and dB = A^T @ dZ "TN"), and the few block shapes that
matter on Hopper are known (the Triton anchors, CUTLASS's tile list), so a short grid per problem
class finds them in seconds each where a generic search spends its budget elsewhere.

Each problem is timed against torch.matmul on the same (transposed) views in the same process; the
current config (the table's entry or the chooser) is kept unless a candidate beats it. Candidates
whose result differs from an fp32 reference by more than 2% of its max are rejected. The problems
are matmul.SHAPES and, for bwd, the dA and dB problems of each shape.

results/H100/sweeps/matmul_sweep_2026-11-26.json was measured by this tool's prototype (the same
grids, shuffled in another order and cut at 24-30 candidates per problem, plus split-K candidates,
which never won) and written into the table with --merge.
"""
from __future__ import annotations

import argparse
import itertools
import random
import sys

import torch

from bench.sweep import bench_us, grid_search, run, table_args

def problems(shapes, modes) -> list[tuple]:
    """(m, n, k, trans_a, trans_b) for each shape's forward and/or backward GEMMs, deduplicated."""
    out = []
    for m, n, k in shapes:
        if "fwd" in modes:
            out.append((m, n, k, False, False))
        if "bwd" in modes:
            out += [(m, k, n, False, True), (k, n, m, True, False)]  # dA = dZ @ B^T, dB = A^T @ dZ
    return list(dict.fromkeys(out))


def candidates(m: int, n: int, k: int, limit: int, seed: int = 0) -> list[dict]:
    """A shuffled grid for the problem's class: decode (M <= 16), skinny (M <= 256), large."""
    grid = []
    if m <= 16:
        for bn, bk, st, ix in itertools.product((32, 64, 128), (128, 256, 512), (3, 4), ("pointer", "tensor_descriptor")):
            grid.append(dict(block_sizes=[16, bn, bk], num_warps=4, num_stages=st, indexing=ix))
    elif m <= 256 or n <= 256 or k <= 256:
        for bm, bn, bk, st, w, ix in itertools.product((64, 128), (64, 128), (16, 64, 128), (3, 4), (4, 8),
                                                       ("pointer", "tensor_descriptor")):
            if bm * bn * bk <= 128 * 128 * 128 and (bk > 16 or k <= 256):
                grid.append(dict(block_sizes=[bm, bn, bk], num_warps=w, num_stages=st, indexing=ix))
    else:
        for (bm, bn), bk, st, w, ix, pid in itertools.product(((128, 128), (128, 64), (64, 128), (128, 256)), (64, 128),
                                                              (3, 4), (4, 8), ("pointer", "tensor_descriptor"),
                                                              ("flat", "persistent_interleaved")):
            big, small = bm * bn >= 128 * 256, bm * bn <= 128 * 64
            if (big and (bk > 64 or w == 4 or st > 3)) or (small and w == 8):
                continue  # out of shared memory / registers, or too few warps for the tile
            grid.append(dict(block_sizes=[bm, bn, bk], num_warps=w, num_stages=st, indexing=ix, pid_type=pid))
    random.Random(seed).shuffle(grid)
    return grid[:limit]


def sweep_one(prob: tuple, per_problem: float, max_candidates: int) -> dict:
    from helion_ops._oplib import fit
    from helion_ops.ops import _gemm as GE, matmul as M

    m, n, k, ta, tb = prob
    a = torch.randn((k, m) if ta else (m, k), device="cuda", dtype=torch.bfloat16)
    b = torch.randn((n, k) if tb else (k, n), device="cuda", dtype=torch.bfloat16)
    av, bv = (a.T if ta else a), (b.T if tb else b)
    ref = av.float() @ bv.float()
    t_cublas = bench_us(lambda: torch.matmul(av, bv))
    if GE.worth_padding(m, n, k):  # tune what the op passes (_gemm.operands): unaligned rows padded
        a, b = GE.operands(av, bv, m, n, k)[:2]
    args = (a, b, None, None, ta, tb)
    bound = M.matmul_kernel.bind(args)
    bound.config = M.config_for(args)
    t_cur, best_t, best_cfg, tried = grid_search(bound, args, ref, candidates(m, n, k, max_candidates), fit,
                                                 per_problem)
    layout = M.LAYOUTS[(ta, tb)] or "NN"
    print(f"{m}x{n}x{k} {layout}: cuBLAS {t_cublas:.1f} us, current {t_cur:.1f} us ({t_cublas / t_cur:.2f}x), "
          f"kept {best_t:.1f} us ({t_cublas / best_t:.2f}x) after {tried} candidates", flush=True)
    return dict(m=m, n=n, k=k, ta=ta, tb=tb, cublas_us=t_cublas, current_us=t_cur, best_us=best_t,
                config=best_cfg.to_dict())


def entries(results: list[dict]) -> list[dict]:
    from helion_ops.ops import matmul as M

    out = []
    for r in results:
        variant = M.LAYOUTS[(bool(r["ta"]), bool(r["tb"]))]
        out.append({"kernel": "matmul_kernel",
                    "key": {"dtype": "bfloat16", "shape": [r["m"], r["n"], r["k"]], **({"variant": variant} if variant else {})},
                    "config": r["config"], "ms": r["best_us"] / 1e3})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default="fwd,bwd")
    ap.add_argument("--shapes", default=None, help="MxNxK,... (default: matmul.SHAPES)")
    ap.add_argument("--per-problem", type=float, default=30.0, help="seconds of candidates per problem")
    ap.add_argument("--max-candidates", type=int, default=30)
    table_args(ap, "configs/<arch>/matmul.json")
    args = ap.parse_args(argv)
    from bench.specs import matmul as spec
    from helion_ops import pretuned

    def sweep(keep) -> None:
        shapes = spec.SHAPES if args.shapes is None else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
        for prob in problems(shapes, args.problems.split(",")):
            keep(sweep_one(prob, args.per_problem, args.max_candidates))

    def write(results: list, meta: dict, arch: str) -> None:
        meta = {**meta, "method": "python -m bench.tune (autotune) for the first entries; python -m bench.matmul_sweep "
                                  "(grid per problem class and layout, kept unless 2% faster) for the entries it measured"}
        p = pretuned.write_entries("matmul", arch, entries(results), meta)
        print(f"{len(results)} entries -> {p}")

    return run(args, "matmul_sweep", sweep, write)


if __name__ == "__main__":
    sys.exit(main())
