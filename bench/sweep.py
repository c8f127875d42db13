"""What the grid sweeps share (bench.matmul_sweep, bench.grouped_gemm_sweep, bench.norm_sweep):
timing, the search loop over a candidate grid, and the command line that either sweeps on a GPU or
merges earlier sweep JSONs, then optionally writes the kept configs into configs/<arch>/<op>.json."""
from __future__ import annotations

import argparse
import datetime
import json
import time
from typing import Callable

import torch

from bench.tune import NOISE  # a candidate is kept only when this much faster than the current config


def bench_us(fn) -> float:
    """Median microseconds of fn (do_bench, which clears L2 before each call)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")) * 1e3


def search(current, t_cur: float, grid: list[dict], make: Callable, run_cfg: Callable, check: Callable,
           seconds: float = float("inf"), noise: float = NOISE) -> tuple:
    """The sweeps' loop: for each candidate dict ``d`` of ``grid`` (until ``seconds`` pass), ``cfg = make(d)``
    and ``out = run_cfg(cfg)``; ``check(out)`` says why a wrong result is rejected (None: right), and a
    candidate that fails to build or run is skipped. The current config (timed at ``t_cur``) stays best
    unless a candidate beats it by more than ``noise`` (NOISE). Each candidate's time is printed.
    Returns (best us, best Config, candidates timed)."""
    best_t, best_cfg, tried, t0 = t_cur, current, 0, time.time()
    for d in grid:
        if time.time() - t0 > seconds:
            break
        try:
            cfg = make(d)
            why = check(run_cfg(cfg))
            if why is not None:
                print(f"  rejected {d}: {why}", flush=True)
                continue
            t = bench_us(lambda: run_cfg(cfg))
            tried += 1
            print(f"  {t:.1f} us {_changes(current, d)}", flush=True)
        except Exception as e:  # out of shared memory, registers...: not a candidate
            print(f"  {d}: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}", flush=True)
            continue
        if t < best_t:
            best_t, best_cfg = t, cfg
    if best_t >= t_cur * (1 - noise):
        best_t, best_cfg = t_cur, current
    return best_t, best_cfg, tried


def _changes(current, d: dict) -> dict:
    """What candidate ``d`` sets differently from ``current`` (a Config), for the sweep's log."""
    cur = current.to_dict() if hasattr(current, "to_dict") else dict(current)
    return {k: v for k, v in d.items() if cur.get(k) != v}


def grid_search(bound, args: tuple, ref: torch.Tensor, grid: list[dict], fit, seconds: float):
    """``search`` over a GEMM kernel's grid: ``fit(bound, Config)`` makes a candidate valid (L2 grouping 8
    unless it says otherwise), a result off ``ref`` by more than 2% of its max is wrong. Returns
    (current us, best us, best Config, timed)."""
    from helion_ops.dsl import Config

    bound(*args)
    t_cur = bench_us(lambda: bound(*args))
    current = bound.config

    def run_cfg(cfg):
        bound.config = cfg
        return bound(*args)

    def check(out):
        err = ((out.float() - ref).abs().max() / ref.abs().max()).item()
        return f"off the reference by {err:.1e} of its max" if err > 2e-2 else None

    best_t, best_cfg, tried = search(current, t_cur, grid, lambda d: fit(bound, Config(**{"l2_groupings": [8], **d})),
                                     run_cfg, check, seconds)
    return t_cur, best_t, best_cfg, tried


def table_args(ap: argparse.ArgumentParser, table: str) -> None:
    """The options every sweep has: --out, --merge, --write (into ``table``), --arch, --meta."""
    ap.add_argument("--out", default=None, help="write the measurements here (JSON)")
    ap.add_argument("--merge", nargs="*", default=None, help="sweep JSON files to write instead of sweeping")
    ap.add_argument("--write", action="store_true", help=f"merge the kept configs into {table}")
    ap.add_argument("--arch", default=None, help="default: this GPU's (e.g. sm90); sm90 for --merge on CPU")
    ap.add_argument("--meta", default=None, help="JSON of gpu/torch/triton/date for --merge (default: this machine)")


def run(args: argparse.Namespace, tool: str, sweep: Callable[[Callable[[dict], None]], None],
        write: Callable[[list, dict, str], None]) -> int:
    """Measure (``sweep(keep)`` calls ``keep(result)`` per result; --out is rewritten after each, so a
    cut run keeps what it measured) or read --merge files; then with --write, ``write(results, meta,
    arch)``. Returns the exit code: 2 when a sweep needs a GPU this machine lacks."""
    from helion_ops import pretuned

    if args.merge is not None:
        results = [r for f in args.merge for r in json.load(open(f))]
        meta = json.loads(args.meta) if args.meta else {}
    else:
        if not torch.cuda.is_available():
            print(f"bench.{tool} needs a CUDA GPU (nothing measured)")
            return 2
        import triton
        results = []

        def keep(r: dict) -> None:
            results.append(r)
            if args.out:
                json.dump(results, open(args.out, "w"), indent=1)

        sweep(keep)
        meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    if args.write:
        arch = args.arch or pretuned.current_arch() or "sm90"
        write(results, {**meta, "date": meta.get("date") or datetime.date.today().isoformat()}, arch)
    return 0
