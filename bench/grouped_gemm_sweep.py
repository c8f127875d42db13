"""A grid sweep of the grouped GEMM kernels' configs over grouped_gemm.SHAPES.

    python -m bench.grouped_gemm_sweep --kernel fwd|dx|dw [--per-shape 45] [--shapes 0,4] [--start 50]
                                       [--out sweep.json] [--write]
    python -m bench.grouped_gemm_sweep --merge sweep.json ... --write   (write what a sweep measured)

Three problems per shape (G, M_total, N, K), each timed beside ``torch._grouped_mm`` on the same
operands in the same process:

- ``fwd``: ``out = x @ w[g]`` (``grouped_gemm_kernel``, w read as [K, N]);
- ``dx``: backward's ``dx = dy @ w[g]^T`` (the same kernel with ``trans_w``: w read transposed in
  place); its table entries carry ``"variant": "T"`` so it never borrows a forward config;
- ``dw``: backward's ``dw[g] = x_g^T @ dy_g`` (``grouped_gemm_dw_kernel``).

For each, the current config (the table's entry or the op's chooser) is timed, then a shuffled grid of
tiles, warps, stages, indexing and pid types until ``--per-shape`` seconds pass; a candidate is kept
only if 2% faster, and one whose result is off the eager reference by more than 2% of its max is
rejected. results/H100/sweeps/grouped_gemm_dw_sweep_2026-11-26.json is a dw run of this tool (then
named bench.grouped_gemm_dw_sweep, with the same dw grid); its winner became ``choose_dw_config``'s
default and the dw entries of configs/sm90/grouped_gemm.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import sys

import torch

from bench.sweep import bench_us, grid_search, run, table_args

KERNELS = ("fwd", "dx", "dw")
DW_TILES = ((64, 128, 128), (64, 128, 256), (64, 256, 128), (32, 128, 256), (128, 128, 128), (32, 256, 128),
            (64, 64, 256))  # (rows per step, K tile, N tile)
FWD_TILES = ((128, 256, 64), (128, 128, 64), (256, 128, 64), (128, 128, 128), (64, 256, 64))  # (BM, BN, BK)


def candidates(kernel: str = "dw", seed: int = 0) -> list[dict]:
    """The kernel's grid, shuffled with ``seed`` (a rerun sweeps the same order)."""
    grid = []
    if kernel == "dw":
        for bs, w, st, ix, pid, l2 in itertools.product(DW_TILES, (4, 8), (3, 4, 5), ("pointer", "tensor_descriptor"),
                                                        ("flat", "persistent_interleaved"), (8, 16)):
            if bs[1] * bs[2] >= 128 * 256 and w == 4:
                continue  # a 128x256 fp32 accumulator spills with 4 warps
            # group slowest, (K, N) tiles L2-grouped inside it (see grouped_gemm.choose_dw_config)
            grid.append(dict(block_sizes=list(bs), num_warps=w, num_stages=st, indexing=ix, pid_type=pid,
                             loop_orders=[[1, 2, 0]], l2_groupings=[l2]))
    else:
        for bs, w, st, ix, pid, l2 in itertools.product(FWD_TILES, (4, 8), (3, 4, 5), ("tensor_descriptor", "pointer"),
                                                        ("persistent_interleaved", "flat"), (8, 16)):
            big = bs[0] * bs[1] >= 128 * 256
            smem = (bs[0] + bs[1]) * bs[2] * 2 * st  # bf16 A and B tiles per stage
            if (big and w == 4) or (bs[0] * bs[1] <= 64 * 128 and w == 8) or smem > 200 * 1024:
                continue  # spills, too few rows per warp, or over the 227 KiB of shared memory
            grid.append(dict(block_sizes=list(bs), num_warps=w, num_stages=st, indexing=ix, pid_type=pid,
                             l2_groupings=[l2]))
    random.Random(seed).shuffle(grid)
    return grid


def problem(kernel: str, shape: tuple):
    """(kernel object, args, table shape, chooser, fp32 reference, vendor call) of one problem."""
    from bench.specs import grouped_gemm as spec
    from helion_ops.ops import grouped_gemm as G

    g, m, n, k = shape
    x, w, offs = spec.make_inputs(shape, torch.bfloat16, "cuda")
    if kernel == "fwd":
        return (G.grouped_gemm_kernel, (x, w, offs, False), [g, m, n, k], G.choose_config,
                G._eager_fwd(x, w, offs).float(), lambda: torch._grouped_mm(x, w, offs=offs))
    dy = torch.randn(m, n, device="cuda", dtype=torch.bfloat16)
    if kernel == "dx":
        wt = w.transpose(1, 2)  # [G, N, K] view of w's storage: dx = dy @ w[g]^T
        return (G.grouped_gemm_kernel, (dy, w, offs, True), [g, m, k, n], G.choose_config,
                G._eager_fwd(dy, wt, offs).float(), lambda: torch._grouped_mm(dy, wt, offs=offs))
    return (G.grouped_gemm_dw_kernel, (x, dy, offs), [g, m, n, k], G.choose_dw_config,
            G._eager_dw(x, dy, offs).float(), lambda: torch._grouped_mm(x.t(), dy, offs=offs))


def sweep_shape(kernel: str, shape: tuple, per_shape: float, start: int = 0) -> dict:
    from helion_ops._oplib import fit
    from helion_ops.ops import grouped_gemm as G

    kern, args, key, chooser, ref, vendor = problem(kernel, shape)
    t_vendor = bench_us(vendor)
    bound = kern.bind(args)
    bound.config = (G._dw if kernel == "dw" else G._fwd).config_for(*args)  # the op layer's choice
    t_cur, best_t, best_cfg, tried = grid_search(bound, args, ref, candidates(kernel)[start:], fit,
                                                 per_shape)
    print(f"{kernel} {shape}: grouped_mm {t_vendor:.0f} us, current {t_cur:.0f} us ({t_vendor / t_cur:.2f}x), "
          f"kept {best_t:.0f} us ({t_vendor / best_t:.2f}x) after {tried} candidates {json.dumps(best_cfg.to_dict())}",
          flush=True)
    return dict(kernel=kernel, shape=list(shape), key=key, grouped_mm_us=t_vendor, current_us=t_cur,
                best_us=best_t, config=best_cfg.to_dict())


def entries(results: list[dict]) -> list[dict]:
    """Table entries of a sweep's results (a dw-only result without "kernel"/"key" is a dw run)."""
    out = []
    for r in results:
        kernel = r.get("kernel", "dw")
        key = {"dtype": "bfloat16", "shape": r.get("key", r["shape"])}
        if kernel == "dx":
            key["variant"] = "T"
        out.append({"kernel": "grouped_gemm_dw_kernel" if kernel == "dw" else "grouped_gemm_kernel",
                    "key": key, "config": r["config"], "ms": r["best_us"] / 1e3})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", default="fwd", help="comma-separated: fwd, dx, dw")
    ap.add_argument("--per-shape", type=float, default=45.0, help="seconds of candidates per shape")
    ap.add_argument("--shapes", default=None, help="indices into grouped_gemm.SHAPES (default: all)")
    ap.add_argument("--start", type=int, default=0,
                    help="skip the grid's first candidates (a follow-up run over the rest of the same grid)")
    table_args(ap, "configs/<arch>/grouped_gemm.json")
    args = ap.parse_args(argv)
    kernels = args.kernel.split(",")
    if any(k not in KERNELS for k in kernels):
        ap.error(f"--kernel: choose from {', '.join(KERNELS)}")
    from bench.specs import grouped_gemm as spec
    from helion_ops import pretuned

    picked = [spec.SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else spec.SHAPES

    def sweep(keep) -> None:
        for kernel in kernels:
            for shape in picked:
                keep(sweep_shape(kernel, shape, args.per_shape, args.start))

    def write(results: list, meta: dict, arch: str) -> None:
        meta = {**meta, "method": "python -m bench.tune --effort quick for the first entries; python -m "
                                  "bench.grouped_gemm_sweep (grid per kernel, kept unless 2% faster) for the entries it measured"}
        p = pretuned.write_entries("grouped_gemm", arch, entries(results), meta)
        print(f"{len(results)} entries -> {p}")

    return run(args, "grouped_gemm_sweep", sweep, write)


if __name__ == "__main__":
    sys.exit(main())
