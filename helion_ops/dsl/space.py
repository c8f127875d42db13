"""From a bound kernel to its ConfigSpace (knobs, bounds, defaults), from facts of a dry run on meta tensors
that lowers each device loop once: extents, reductions, inner loops, loads and dots do not depend on blocks."""
from __future__ import annotations

import inspect
import math
import os
from contextlib import suppress

import torch
import triton.language as tl

from . import ir as I
from . import passes
from .config import BlockSpec, Config, ConfigSpace, SpaceSpec, _warps_for
from .types import next_pow2

def collect_facts(bound) -> dict:
    ctx = bound.dry_run(Config(block_sizes=[16] * len(bound.pk.blocks)), "facts")
    # hl.tile(x.size()) may have added ids during the run. extent None: some loop over this block has
    # bounds known only on the device (jagged rows).
    blocks = {i: {"extent": 1, "dot": False, "bounds": ctx.registered.get(i), "rblock": 1}
              for i in range(len(bound.pk.blocks))}
    rdims, per_loop, reversible, dot, uneven = [], [], [], False, False
    for d in ctx.irs:
        dots = [v for v in I.all_values(d.body) if v.op == "dot"]
        dot |= bool(dots)
        # Only the matrix dims need >= 16 (tensor-core tiles); a bmm's batch dim may be 1.
        dot_tiles = {x.id for v in dots for a in v.inputs()[:2] for x in a.type.dims[-2:] if x.kind == "tile"}
        rblock = max([next_pow2(r.extent) for r in d.rdims.values()] or [1])
        for t in (t for t in d.tiles.values() if t.block_id is not None):
            b = blocks[t.block_id]
            b["extent"] = None if t.static_len is None or b["extent"] is None else max(b["extent"], t.static_len)
            b["dot"] |= t.id in dot_tiles
            b["rblock"] = max(b["rblock"], rblock)  # the whole dims held beside this block's tiles
        rdims += [r.extent for r in sorted(d.rdims.values(), key=lambda r: r.id)]
        fors = [s for s in I.walk(d.body) if isinstance(s, I.For)]
        # an inner loop with bounds known only on the device (e.g. up to the diagonal): unequal programs
        uneven |= any(t.static_len is None for st in fors for t in st.tiles)
        # loop ids are per device loop here: shift them past earlier loops'
        reversible += [sum(p["loop"] for p in per_loop) + s.loop_id for s in fors if passes.reversible(s)]
        per_loop.append({"rdim": len(d.rdims), "loop": d.n_inner_loops, "load": d.n_loads})
    desc = hasattr(tl, "make_tensor_descriptor") and any(t.descriptor_ok for d in ctx.irs for t in d.inputs.tensors)
    return {"blocks": blocks, "rdims": rdims, "grid_loops": [len(d.grid) for d in ctx.irs],
            "inner_loops": sum(p["loop"] for p in per_loop), "loads": sum(p["load"] for p in per_loop),
            "descriptor": desc, "dot": dot, "per_loop": per_loop, "uneven_grid": uneven,
            "reversible": tuple(sorted(reversible)), "tunables": ctx.tunables}

def gluon_runs_on(device=None) -> bool:
    """The Gluon backend can run on this CUDA device: sm_90, and a Triton with Gluon's Hopper TMA module."""
    with suppress(ImportError):
        from triton.experimental.gluon.language.nvidia.hopper import tma
        return torch.cuda.get_device_capability(device) == (9, 0) and hasattr(tma, "make_tensor_descriptor")
    return False

def block_spec(f: dict, bid: int) -> BlockSpec:
    b = f["blocks"][bid]
    ext = next_pow2(b["extent"]) if b["extent"] is not None else 1024  # unknown on the host: the usual range
    if b["bounds"] is not None:
        lo, hi = b["bounds"]
        lo = next_pow2(lo) if isinstance(lo, int) and lo else (16 if b["dot"] else 1)
        hi = max(lo, next_pow2(hi) if isinstance(hi, int) and hi else 1024)
    elif b["dot"]:
        lo, hi = 16, max(16, min(ext, 256))
    else:
        # Rows beside a whole reduction dim: rows x row length <= 64K elements (256 KB of fp32 registers is past
        # what 16 warps hold), so the search never compiles candidates that can only spill.
        lo, hi = 1, max(1, min(ext, 4096, 65536 // b["rblock"]))
        if b["extent"] is not None:  # about 4K elements a program, a whole row per program for row reductions
            ntiles = max(1, sum(1 for x in f["blocks"].values() if x["bounds"] is None and not x["dot"]))
            per_tile = max(1, int((4096 // b["rblock"]) ** (1.0 / ntiles)))
            return BlockSpec(1, hi, max(1, min(hi, 1 << (per_tile.bit_length() - 1))))
    return BlockSpec(lo, hi, max(lo, min(hi, 64)))  # a mid-size tile

def default_block(bound, bid: int) -> int: return block_spec(bound.facts(), bid).default

def space_for(bound) -> ConfigSpace:
    f = bound.facts()
    warp_specialize = False
    with suppress(TypeError, ValueError):
        warp_specialize = "warp_specialize" in inspect.signature(tl.range.__init__).parameters
    space = ConfigSpace(SpaceSpec(
        block_sizes=[block_spec(f, i) for i in range(len(f["blocks"]))], reduction_extents=list(f["rdims"]),
        grid_loops=list(f["grid_loops"]), inner_loops=f["inner_loops"], loads=f["loads"],
        tensor_descriptor=f["descriptor"], tunables=dict(f["tunables"]), warp_specialize=warp_specialize,
        uneven_grid=f["uneven_grid"], reversible_loops=f["reversible"],  # Gluon: tried on Hopper, never interpreted
        gluon=f["dot"] and os.environ.get("TRITON_INTERPRET") != "1" and torch.cuda.is_available() and gluon_runs_on()))
    elems = math.prod(s.default for s in space.spec.block_sizes) * max([next_pow2(e) for e in f["rdims"]] or [1])
    space._default = space.default().replace(num_warps=4 if f["dot"] else min(16, _warps_for(elems)))
    return space

def offsets(bound, loop_index: int) -> dict[str, int]:
    """Where device loop ``loop_index``'s reductions, inner loops and loads start in the Config lists."""
    return {k: sum(p[k] for p in bound.facts()["per_loop"][:loop_index]) for k in ("rdim", "loop", "load")}
