"""A short grid around the norm backwards' current configs, written to configs/<arch>/<op>.json.

    python -m bench.norm_bwd_sweep [--op rms_norm,layer_norm] [--shapes all|MxN;...] [--out sweep.json] [--write]
    python -m bench.norm_bwd_sweep --merge sweep.json ... --write

Why beside bench.tune: the knob that matters here, software pipelining of the inner row loop
(``range_num_stages``: the next rows' loads issued while this row reduces), sits in a large space
with many configs that do not compile, and a timed search rarely reaches it. For each shape the
backward kernel is recorded from one real backward (``bench.tune.record``), then timed on its current
config and on that config with range_num_stages in {0, 2, 3}, num_warps in {8, 16} and half the rows
per program. A candidate must match the current config's outputs (``autotune.compare``: dx and the
weight gradients) and be 2% faster to be kept.
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys

import torch

from bench.sweep import bench_us, run, search, table_args


def candidates(current: dict) -> list[dict]:
    """Variations of ``current`` (a Config dict) over the knobs above (current itself is timed apart)."""
    rows, sub, *cols = current["block_sizes"]  # cols: the partial-sum loop's column block, kept
    out = []
    for stages, warps, r in itertools.product((0, 2, 3), (8, 16), (rows, max(sub, rows // 2))):
        d = dict(current, num_warps=warps, block_sizes=[r, sub, *cols], range_num_stages=[stages])
        if d not in out:
            out.append(d)
    return out


def sweep_shape(op: str, shape: tuple) -> dict | None:
    from bench.tune import record
    from helion_ops.dsl import Config
    from helion_ops.dsl.autotune.bench import compare

    mod = importlib.import_module(f"helion_ops.ops.{op}")
    rec = [r for r in record(mod, shape, torch.bfloat16, "bwd") if r[0] == f"{op}_bwd"]
    if not rec:
        return None
    kname, (_, key, _), bound, current, args = rec[0]
    ref = bound.run(current, *args)
    t_cur = bench_us(lambda: bound.run(current, *args))
    best_t, best, _ = search(current, t_cur, candidates(current.to_dict()), lambda d: bound.normalize(Config(**d)),
                             lambda cfg: bound.run(cfg, *args), lambda out: compare(out, ref))
    print(f"{op} bwd {shape}: current {t_cur:.1f} us, kept {best_t:.1f} us ({t_cur / best_t:.2f}x) "
          f"{json.dumps({k: best.to_dict()[k] for k in ('block_sizes', 'num_warps', 'range_num_stages')})}", flush=True)
    return dict(op=op, kernel=kname, shape=list(shape), key=key, current_us=t_cur, best_us=best_t,
                config=best.to_dict())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", default="rms_norm,layer_norm")
    ap.add_argument("--shapes", default="all", help="'all' (the op's SHAPES) or 'MxN;MxN'")
    table_args(ap, "configs/<arch>/<op>.json")
    args = ap.parse_args(argv)
    from bench.tune import pick_shapes
    from helion_ops.dsl import pretuned

    def sweep(keep) -> None:
        for op in args.op.split(","):
            mod = importlib.import_module(f"helion_ops.ops.{op}")
            for shape in pick_shapes(mod.SHAPES, args.shapes):
                r = sweep_shape(op, tuple(shape))
                if r is not None:
                    keep(r)

    def write(results: list, meta: dict, arch: str) -> None:
        for op in dict.fromkeys(r["op"] for r in results):
            ents = [{"kernel": r["kernel"], "key": {"dtype": "bfloat16", "shape": r["key"]}, "config": r["config"],
                     "ms": r["best_us"] / 1e3} for r in results if r["op"] == op]
            p = pretuned.write_entries(op, arch, ents, {**meta, "method": _method(op, arch)})
            print(f"{len(ents)} entries -> {p}")

    return run(args, "norm_bwd_sweep", sweep, write)


def _method(op: str, arch: str) -> str:
    from helion_ops.dsl import pretuned
    try:
        old = json.loads(pretuned.config_path(op, arch).read_text()).get("method", "")
    except (OSError, ValueError):
        old = ""
    note = "bwd entries it measured: python -m bench.norm_bwd_sweep (pipelining grid, kept unless 2% faster)"
    return old if note in old else (f"{old}; {note}" if old else note)


if __name__ == "__main__":
    sys.exit(main())
