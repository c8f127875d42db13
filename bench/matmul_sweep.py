"""A grid sweep of matmul configs per (M, N, K, layout) and kernel, written to configs/<arch>/matmul.json.

    python -m bench.matmul_sweep [--problems fwd,bwd] [--shapes MxNxK,...] [--kernels one_pass,split_k]
                                 [--budget 200] [--per-problem 30] [--max-candidates 30] [--out sweep.json] [--write]
    python -m bench.matmul_sweep --merge sweep.json ... --write    (write what a sweep measured)

Why a sweep beside bench.tune's autotuner: the matmul table needs an entry per operand layout
(forward NN, backward's dA = dZ @ B^T "NT" and dB = A^T @ dZ "TN"), and the few block shapes that
matter on Hopper are known (the Triton anchors, CUTLASS's tile list), so a short grid per problem
class finds them in seconds each where a generic search spends its budget elsewhere.

Kernels: ``one_pass`` (matmul_kernel) and ``split_k`` (matmul_split_k_kernel + its epilogue kernel,
timed together; its 16-row candidates are the GEMV path for M <= 16; only problems whose output has
under two waves of 128x128 tiles get split-K candidates). Each problem's candidates are compiled in
parallel on every CPU core first, then timed one by one against torch.matmul on the same (transposed)
views in the same process. The one-pass kernel's current config (table entry or chooser) is kept
unless a candidate beats it by NOISE; a split-K entry is written only where its best beats the
one-pass result by NOISE (or the table already had one: it gets the time measured now). The op then
runs, per tuned shape, whichever kernel's entry has the lower ms (_oplib.Route). Candidates whose
result differs from an fp32 reference by more than 2% of its max are rejected. ``--budget`` caps
the whole sweep (seconds, shared evenly among the problems). The problems are matmul.SHAPES (or
--shapes) and, for bwd, the dA and dB problems of each shape.

results/H100/sweeps/matmul_sweep_2026-11-26.json was measured by this tool's prototype (one-pass
grids only, shuffled and cut at 24-30 candidates per problem) and written into the table with --merge.
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import time

import torch

from bench.sweep import bench_us, run, table_args
from bench.tune import NOISE

KERNELS = {"one_pass": "matmul_kernel", "split_k": "matmul_split_k_kernel"}

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


def split_k_candidates(m: int, n: int, k: int, limit: int, seed: int = 0, sms: int = 132) -> list[dict]:
    """A shuffled split-K grid (empty when the output already has two waves of 128x128 tiles): 16-row
    GEMV tiles with a deep K block for M <= 16, MMA tiles above; 2 to 16 slices of at least 256."""
    cdiv = lambda x, y: -(-x // y)  # noqa: E731
    if cdiv(m, 128) * cdiv(n, 128) >= 2 * sms or k < 1024:
        return []
    grid = []
    if m <= 16:
        tiles = itertools.product([(16, bn, bk, 4, st) for bn in (32, 64, 128) for bk in (128, 256, 512)
                                   for st in (3, 4)], ("tensor_descriptor", "pointer"))
    else:
        tiles = itertools.product([(64, 64, 128, 4, 4), (64, 128, 64, 4, 4), (128, 128, 64, 8, 4), (128, 128, 64, 4, 3),
                                   (128, 256, 64, 8, 3)], ("tensor_descriptor",))
    for ((bm, bn, bk, w, st), ix), split in itertools.product(tiles, (2, 4, 8, 16)):
        if cdiv(m, bm) * cdiv(n, bn) * split <= 4 * sms and k // split >= max(256, bk):
            grid.append(dict(block_sizes=[bm, bn, bk], split_k=split, num_warps=w, num_stages=st, indexing=ix))
    random.Random(seed).shuffle(grid)
    return grid[:limit]


_POOL: list = []  # one compile pool for the whole sweep: starting 16 workers costs seconds


def _precompile(jobs: list, seconds: float) -> list[bool]:
    """Compile every (bound, Config) on all CPU cores within ``seconds`` (warms Triton's cache, so the
    timing loop's first launches are cheap); True where it built."""
    from helion_ops.dsl.autotune import Precompiler

    if not torch.cuda.is_available():  # the interpreter (CPU smoke tests): nothing to compile ahead
        return [True] * len(jobs)
    if not _POOL:
        _POOL.append(Precompiler(workers=os.cpu_count(), timeout=60.0))
        _POOL[0]._ensure_pool()  # workers started before the deadline's clock
    payloads, ok = {}, [False] * len(jobs)
    for i, (bound, cfg) in enumerate(jobs):
        try:
            payloads[i] = (bound.compile_specs(cfg), None)
        except Exception as e:
            print(f"  {cfg}: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}", flush=True)
    for i, err in _POOL[0].run(payloads, deadline=time.monotonic() + seconds).items():
        ok[i] = err is None
    return ok


def sweep_one(prob: tuple, per_problem: float, max_candidates: int, kernels=("one_pass", "split_k"),
              device: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> dict:
    from helion_ops._oplib import fit, num_sms
    from helion_ops.dsl import Config
    from helion_ops.ops import _gemm as GE, matmul as M

    t0 = time.time()
    m, n, k, ta, tb = prob
    a = torch.randn((k, m) if ta else (m, k), device=device, dtype=dtype)
    b = torch.randn((n, k) if tb else (k, n), device=device, dtype=dtype)
    av, bv = (a.T if ta else a), (b.T if tb else b)
    ref = av.float() @ bv.float()
    t_cublas = bench_us(lambda: torch.matmul(av, bv))
    if GE.worth_padding(m, n, k):  # tune what the op passes (_gemm.operands): unaligned rows padded
        a, b = GE.operands(av, bv, m, n, k)[:2]
    args = (a, b, None, None, ta, tb)
    one = M.matmul_kernel.bind(args)
    one_cur = M.config_for(args)
    out = torch.empty(m, n, device=device, dtype=dtype)
    sk = M.matmul_split_k_kernel.bind((a, b, ta, tb))
    reducers: dict = {}

    def run_one(cfg):
        one.config = cfg
        return one(*args)

    def run_sk(cfg):
        sk.config = cfg
        parts = sk(a, b, ta, tb)
        if parts.shape[0] not in reducers:
            red = M.matmul_split_k_reduce_kernel.bind((parts, None, None, out))
            red.config = fit(red, M.reduce_config(*parts.shape))
            reducers[parts.shape[0]] = red
        reducers[parts.shape[0]](parts, None, None, out)
        return out

    cands = [(one, run_one, one_cur)]
    if "one_pass" in kernels:
        cands += [(one, run_one, fit(one, Config(**{"l2_groupings": [8], **d}))) for d in candidates(m, n, k, max_candidates)]
    sk_cur = fit(sk, M._default_sk((a, b, ta, tb))) if M.split_factor(m, n, k, dtype) > 1 else None
    if "split_k" in kernels:
        grid = split_k_candidates(m, n, k, max_candidates, sms=num_sms())
        cands += [(sk, run_sk, fit(sk, Config(**{"l2_groupings": [1], **d}))) for d in grid]
    if sk_cur is not None:
        cands.insert(1, (sk, run_sk, sk_cur))
    cands = list({(id(bd), c): (bd, fn, c) for bd, fn, c in cands}.values())
    built = _precompile([(bd, c) for bd, _, c in cands], max(5.0, 0.5 * per_problem))
    best = {}  # kernel name -> (us, Config)
    t_one_cur = None
    for i, ((bd, fn, cfg), ok) in enumerate(zip(cands, built)):
        if (not ok and i > 0) or (best and time.time() - t0 > per_problem):
            continue  # failed or unfinished compiles (the current config always runs), or out of time
        try:
            err = ((fn(cfg).float() - ref).abs().max() / ref.abs().max()).item()
            if err > 2e-2:
                print(f"  rejected {cfg}: off the reference by {err:.1e} of its max", flush=True)
                continue
            t = bench_us(lambda: fn(cfg))
        except Exception as e:  # out of shared memory, registers...: not a candidate
            print(f"  {cfg}: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}", flush=True)
            continue
        name = bd.kernel.name
        if t_one_cur is None and bd is one and cfg == one_cur:
            t_one_cur = t
        print(f"  {name} {t:.1f} us {cfg.get('block_sizes')} split {cfg.get('split_k', '-')}", flush=True)
        if name not in best or t < best[name][0]:
            best[name] = (t, cfg)
    t_cur = t_one_cur if t_one_cur is not None else float("inf")
    if "matmul_kernel" in best and best["matmul_kernel"][0] >= t_cur * (1 - NOISE):
        best["matmul_kernel"] = (t_cur, one_cur)  # not clearly faster: keep the current config
    layout = M.LAYOUTS[(ta, tb)] or "NN"
    res = dict(m=m, n=n, k=k, ta=ta, tb=tb, cublas_us=t_cublas, current_us=t_cur, tried=len(cands),
               kernels={name: dict(us=t, config=c.to_dict()) for name, (t, c) in best.items()})
    said = ", ".join(f"{name} {t:.1f} us ({t_cublas / t:.2f}x)" for name, (t, _) in best.items())
    print(f"{m}x{n}x{k} {layout}: cuBLAS {t_cublas:.1f} us, one-pass current {t_cur:.1f} us; best {said} "
          f"({len(cands)} candidates, {time.time() - t0:.0f} s)", flush=True)
    return res


def entries(results: list[dict]) -> list[dict]:
    """Table entries: each problem's one-pass result (its config and the time measured now), and its
    split-K result where that beats one pass by NOISE or the table already has a split-K entry."""
    from helion_ops import pretuned
    from helion_ops.ops import matmul as M

    out = []
    for r in results:
        variant = M.LAYOUTS[(bool(r["ta"]), bool(r["tb"]))]
        key = {"dtype": "bfloat16", "shape": [r["m"], r["n"], r["k"]], **({"variant": variant} if variant else {})}
        kern = r.get("kernels") or {"matmul_kernel": dict(us=r["best_us"], config=r["config"])}  # older sweeps
        one = kern.get("matmul_kernel")
        for name, v in kern.items():
            if name == "matmul_split_k_kernel" and one is not None and v["us"] >= one["us"] * (1 - NOISE) \
                    and pretuned.exact_ms("matmul", name, "bfloat16", key["shape"], arch="sm90", variant=variant) is None:
                continue
            e = {"kernel": name, "key": key, "config": v["config"], "ms": v["us"] / 1e3}
            if r.get("cublas_us"):
                e["cublas_ms"] = r["cublas_us"] / 1e3
            out.append(e)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default="fwd,bwd")
    ap.add_argument("--shapes", default=None, help="MxNxK,... (default: matmul.SHAPES)")
    ap.add_argument("--kernels", default="one_pass,split_k", help=f"comma-separated, of {sorted(KERNELS)}")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole sweep, shared among problems")
    ap.add_argument("--per-problem", type=float, default=30.0, help="seconds of candidates per problem")
    ap.add_argument("--max-candidates", type=int, default=30, help="per kernel and problem")
    table_args(ap, "configs/<arch>/matmul.json")
    args = ap.parse_args(argv)
    kernels = args.kernels.split(",")
    if set(kernels) - set(KERNELS):
        ap.error(f"--kernels: unknown {sorted(set(kernels) - set(KERNELS))}; choose from {sorted(KERNELS)}")
    from bench.specs import matmul as spec
    from helion_ops import pretuned

    def sweep(keep) -> None:
        shapes = spec.SHAPES if args.shapes is None else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
        probs = problems(shapes, args.problems.split(","))
        t_end = None if args.budget is None else time.time() + args.budget
        for i, prob in enumerate(probs):
            per = args.per_problem
            if t_end is not None:
                per = min(per, (t_end - time.time()) / (len(probs) - i))
                if per <= 0:
                    print(f"budget spent: {len(probs) - i} problems left out", flush=True)
                    return
            keep(sweep_one(prob, per, args.max_candidates, kernels))
        for pool in _POOL:
            pool.close()

    def write(results: list, meta: dict, arch: str) -> None:
        meta = {**meta, "method": "python -m bench.tune (autotune) for the first entries; python -m bench.matmul_sweep "
                                  "(grid per problem class, layout and kernel, kept unless 2% faster) for the entries "
                                  "it measured"}
        p = pretuned.write_entries("matmul", arch, entries(results), meta)
        print(f"{len(results)} problems -> {p}")

    return run(args, "matmul_sweep", sweep, write)


if __name__ == "__main__":
    sys.exit(main())
