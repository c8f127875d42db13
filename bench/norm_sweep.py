"""A short grid around the norms' current configs, written to configs/<arch>/<op>.json.

    python -m bench.norm_sweep [--mode bwd|fwd] [--op rms_norm,layer_norm] [--shapes all|MxN;...]
                               [--out sweep.json] [--write]
    python -m bench.norm_sweep --merge sweep.json ... --write

Why beside bench.tune: the knobs that matter here sit in a large space with many configs that do not
compile, and a timed search rarely reaches them. For each shape the op's kernel is recorded from one
real call (``bench.tune.record``), then timed on its current config and on a small grid around it:

* ``bwd``: software pipelining of the inner row loop (``range_num_stages`` in {0, 2, 3}: the next
  rows' loads issued while this row reduces), num_warps in {8, 16} and half the rows per program;
  for rows under 4096 also 4 warps and twice the rows per inner step.
* ``fwd``: num_warps halved and doubled, with and without ``evict_last`` hints, and for rows over 4096
  looped chunks (two passes over x, the second from L2, as torch.compile's kernel does; at N = 5120
  that avoids holding 8192 masked lanes). torch.compile's kernel for the same shape is timed beside
  it, so the sweep says where it stands.

A candidate must match the current config's outputs (``autotune.compare``) and be 2% faster to be kept
(1% for the forwards, whose timings at copy speed repeat within 0.5%).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import torch

from bench import catalog

from bench.sweep import NOISE, bench_us, run, search, table_args

FWD_NOISE = 0.01


def candidates(current: dict, n: int = 4096) -> list[dict]:
    """Backward: variations of ``current`` (a Config dict) over the knobs above (current itself is timed
    apart). Rows shorter than 4096 (``n``) also try 4 warps and twice the rows per inner step: a short
    row leaves a [sub, n] step with little to load, and the shipped N = 1000 entries differed there
    between the two norms (4 warps x 4 rows against 8 x 8), with layer_norm at half rms_norm's GB/s."""
    rows, sub, *cols = current["block_sizes"]  # cols: the partial-sum loop's column block, kept
    short = n < 4096
    warps_grid = (4, 8, 16) if short else (8, 16)
    subs = sorted({sub, min(rows, 2 * sub)}) if short else (sub,)
    out = []
    for stages, warps, r, s in itertools.product((0, 2, 3), warps_grid, (rows, max(sub, rows // 2)), subs):
        d = dict(current, num_warps=warps, block_sizes=[r, min(s, r), *cols], range_num_stages=[stages])
        if d not in out:
            out.append(d)
    return out


def fwd_candidates(current: dict, n: int) -> list[dict]:
    """Forward: ``current`` with no eviction hints and with every load ``evict_last``, each at half and
    twice its num_warps; for rows longer than 4096, looped chunks of 2048 and 4096 (8 and 16 warps,
    loads ``evict_last``: the second pass rereads x from L2, as torch.compile's kernel does); and
    ``current`` with TMA loads and stores, on a persistent grid whose row loop Triton pipelines 2 or 3
    deep (the next rows' loads in flight while this one reduces, as quack's norms do), and both. Where
    rows are not 16-byte aligned there is no TMA knob: those candidates fail to normalize and are skipped."""
    w = current["num_warps"]
    loads = len(current.get("load_eviction_policies") or [])
    out = []
    for warps, pol in itertools.product(sorted({max(1, w // 2), w, min(32, w * 2)}), ("", "last")):
        out.append(dict(current, num_warps=warps, load_eviction_policies=[pol] * loads))
    if n > 4096:
        for chunk, warps in itertools.product((2048, 4096), (8, 16)):
            out.append(dict(current, block_sizes=[1], num_warps=warps, reduction_loops=[chunk],
                            load_eviction_policies=["last"] * loads))
    for extra in ({"indexing": "tensor_descriptor"},
                  {"pid_type": "persistent_interleaved", "num_stages": 2},
                  {"pid_type": "persistent_interleaved", "num_stages": 3},
                  {"pid_type": "persistent_interleaved", "num_stages": 2, "indexing": "tensor_descriptor"}):
        out.append(dict(current, **extra))
    return [d for i, d in enumerate(out) if d not in out[:i]]


def _compile_us(mod, shape: tuple) -> float:
    """torch.compile of the op's eager function on the same shape (bf16), for comparison only."""
    from bench.baselines import make_fn

    inputs = mod.make_inputs(shape, torch.bfloat16, "cuda")
    fn = make_fn(mod, "compile")  # as the harness builds it: a static-shape graph per shape
    fn(*inputs)
    return bench_us(lambda: fn(*inputs))


def sweep_shape(op: str, shape: tuple, mode: str = "bwd") -> dict | None:
    from bench.tune import record
    from helion_ops.dsl import Config
    from helion_ops.dsl.autotune.bench import compare

    mod = catalog.load(op)
    rec = [r for r in record(mod, shape, torch.bfloat16, mode) if r[0] == f"{op}_{mode}"]
    if not rec:
        return None
    kname, (_, key, _), bound, current, args = rec[0]
    ref = bound.run(current, *args)
    t_cur = bench_us(lambda: bound.run(current, *args))
    cur, n = current.to_dict(), shape[-1]
    grid = fwd_candidates(cur, n) if mode == "fwd" else candidates(cur, n)
    # Forwards run at copy speed, where what is left against torch.compile is 1-2%; their medians
    # repeat within 0.5% on the H100 (three interleaved repeats of each), so 1% separates them there.
    best_t, best, _ = search(current, t_cur, grid, lambda d: bound.normalize(Config(**d)),
                             lambda cfg: bound.run(cfg, *args), lambda out: compare(out, ref),
                             noise=FWD_NOISE if mode == "fwd" else NOISE)
    knobs = ("block_sizes", "num_warps") + (("load_eviction_policies", "reduction_loops") if mode == "fwd"
                                            else ("range_num_stages",))
    extra = {}
    if mode == "fwd":
        extra["compile_us"] = _compile_us(mod, shape)
    print(f"{op} {mode} {shape}: current {t_cur:.1f} us, kept {best_t:.1f} us ({t_cur / best_t:.2f}x)"
          + (f", torch.compile {extra['compile_us']:.1f} us" if extra else "")
          + f" {json.dumps({k: best.to_dict()[k] for k in knobs})}", flush=True)
    return dict(op=op, mode=mode, kernel=kname, shape=list(shape), key=key, current_us=t_cur, best_us=best_t,
                config=best.to_dict(), **extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="bwd", choices=["bwd", "fwd"])
    ap.add_argument("--op", default="rms_norm,layer_norm")
    ap.add_argument("--shapes", default="all", help="'all' (the op's SHAPES) or 'MxN;MxN'")
    table_args(ap, "configs/<arch>/<op>.json")
    args = ap.parse_args(argv)
    from bench.tune import pick_shapes
    from helion_ops import pretuned

    def sweep(keep) -> None:
        for op in args.op.split(","):
            mod = catalog.load(op)
            for shape in pick_shapes(mod.SHAPES, args.shapes):
                r = sweep_shape(op, tuple(shape), args.mode)
                if r is not None:
                    keep(r)

    def write(results: list, meta: dict, arch: str) -> None:
        for op in dict.fromkeys(r["op"] for r in results):
            ents = [{"kernel": r["kernel"], "key": {"dtype": "bfloat16", "shape": r["key"]}, "config": r["config"],
                     "ms": r["best_us"] / 1e3} for r in results if r["op"] == op]
            modes = {r.get("mode", "bwd") for r in results if r["op"] == op}
            p = pretuned.write_entries(op, arch, ents, {**meta, "method": _method(op, arch, modes)})
            print(f"{len(ents)} entries -> {p}")

    return run(args, "norm_sweep", sweep, write)


NOTES = {"bwd": "bwd entries it measured: python -m bench.norm_sweep --mode bwd (pipelining grid, kept unless 2% faster)",
         "fwd": "fwd entries it measured: python -m bench.norm_sweep --mode fwd (warps, eviction hints and looped "
                "chunks, kept unless 1% faster)"}


def _method(op: str, arch: str, modes) -> str:
    """The table's "method" line, with a note for each sweep mode that wrote entries into it."""
    from helion_ops import pretuned
    try:
        method = json.loads(pretuned.config_path(op, arch).read_text()).get("method", "")
    except (OSError, ValueError):
        method = ""
    for mode in sorted(modes):
        if NOTES[mode] not in method:
            method = f"{method}; {NOTES[mode]}" if method else NOTES[mode]
    return method


if __name__ == "__main__":
    sys.exit(main())
