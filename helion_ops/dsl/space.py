"""From a bound kernel to its ConfigSpace (knobs, bounds, defaults), from facts of a dry run on meta tensors
that lowers each device loop once: extents, reductions, inner loops, loads and dots do not depend on blocks."""
from __future__ import annotations

import inspect
import math
import os

import triton.language as tl

from . import ir as I
from . import passes
from .config import BlockSpec, Config, ConfigSpace, SpaceSpec
from .types import next_pow2

def collect_facts(bound) -> dict:
    ctx = bound.dry_run(Config(block_sizes=[16] * len(bound.pk.blocks)), "facts")
    # hl.tile(x.size()) may have added ids during the run. extent None: some loop over this block has
    # bounds known only on the device (jagged rows).
    blocks = {i: {"extent": 1, "dot": False, "bounds": None, "rblock": 1} for i in range(len(bound.pk.blocks))}
    for bid, bounds in getattr(ctx, "registered", {}).items():
        blocks[bid]["bounds"] = bounds
    rdims, grid_loops, inner, loads, desc, dot, uneven = [], [], 0, 0, False, False, False
    per_loop, reversible = [], []
    for d in ctx.irs:
        dot_tiles = set()
        for v in I.all_values(d.body):
            if v.op == "dot":
                for a in v.inputs()[:2]:
                    # Only the matrix dims need >= 16 (tensor-core tiles); a bmm's batch dim may be 1.
                    dot_tiles.update(x.id for x in a.type.dims[-2:] if x.kind == "tile")
                dot = True
        rblock = max([next_pow2(r.extent) for r in d.rdims.values()] or [1])
        for t in d.tiles.values():
            if t.block_id is not None:
                b = blocks[t.block_id]
                b["extent"] = None if t.static_len is None or b["extent"] is None else max(b["extent"], t.static_len)
                b["dot"] |= t.id in dot_tiles
                b["rblock"] = max(b["rblock"], rblock)  # the whole dims held beside this block's tiles
        per_loop.append({"rdims": len(d.rdims), "loops": d.n_inner_loops, "loads": d.n_loads})
        rdims += [r.extent for r in sorted(d.rdims.values(), key=lambda r: r.id)]
        grid_loops.append(len(d.grid))
        fors = [s for s in I.walk(d.body) if isinstance(s, I.For)]
        # an inner loop with bounds known only on the device (e.g. up to the diagonal): unequal programs
        uneven |= any(t.static_len is None for st in fors for t in st.tiles)
        # ids are per device loop here (offsets() gives 0 while collecting): shift them past earlier loops'
        reversible += [inner + s.loop_id for s in fors if passes.reversible(s)]
        inner += d.n_inner_loops
        loads += d.n_loads
        desc |= any(t.descriptor_ok for t in d.inputs.tensors) and hasattr(tl, "make_tensor_descriptor")
    return {"blocks": blocks, "rdims": rdims, "grid_loops": grid_loops, "inner_loops": inner,
            "loads": loads, "descriptor": desc, "dot": dot, "per_loop": per_loop, "uneven_grid": uneven,
            "reversible": tuple(sorted(reversible)), "tunables": getattr(ctx, "tunables", {})}

def _gluon_searchable() -> bool:
    """The tuner tries the Gluon backend (sm_90 only) on a Hopper GPU, never under Triton's interpreter."""
    import torch
    if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available():
        return False
    try:
        from triton.experimental.gluon.language.nvidia.hopper import tma
    except ImportError:
        return False
    return torch.cuda.get_device_capability() == (9, 0) and hasattr(tma, "make_tensor_descriptor")

def block_spec(f: dict, bid: int) -> BlockSpec:
    b = f["blocks"][bid]
    if b["bounds"] is not None:
        lo, hi = b["bounds"]
        lo = next_pow2(lo) if isinstance(lo, int) and lo else (16 if b["dot"] else 1)
        hi = max(lo, next_pow2(hi) if isinstance(hi, int) and hi else 1024)
        return BlockSpec(lo, hi, max(lo, min(hi, 64)))
    # A device-side extent is unknown here: allow the usual range, default to a mid-size tile.
    ext = next_pow2(b["extent"]) if b["extent"] is not None else 1024
    if b["dot"]:
        hi = max(16, min(ext, 256))
        return BlockSpec(16, hi, min(hi, 64))
    # Rows held next to a whole reduction dim of the same device loop: keep rows x row length within
    # 64K elements (256 KB of fp32 registers per program is already past what 16 warps hold), so the
    # search never spends its budget compiling candidates that can only spill.
    hi = max(1, min(ext, 4096, 65536 // b["rblock"]))
    if b["extent"] is None:
        return BlockSpec(1, hi, min(hi, 64))
    # about 4K elements a program, a whole row per program for row reductions
    ntiles = max(1, sum(1 for x in f["blocks"].values() if x["bounds"] is None and not x["dot"]))
    per_tile = max(1, int((4096 // b["rblock"]) ** (1.0 / ntiles)))
    return BlockSpec(1, hi, max(1, min(hi, 1 << (per_tile.bit_length() - 1))))

def default_block(bound, bid: int) -> int:
    return block_spec(bound.facts(), bid).default

def space_for(bound) -> ConfigSpace:
    f = bound.facts()
    try:
        warp_specialize = "warp_specialize" in inspect.signature(tl.range.__init__).parameters
    except (TypeError, ValueError):
        warp_specialize = False
    space = ConfigSpace(SpaceSpec(
        block_sizes=[block_spec(f, i) for i in range(len(f["blocks"]))], reduction_extents=list(f["rdims"]),
        grid_loops=list(f["grid_loops"]), inner_loops=f["inner_loops"], loads=f["loads"],
        tensor_descriptor=bool(f["descriptor"]), tunables=dict(f["tunables"]), warp_specialize=warp_specialize,
        uneven_grid=f["uneven_grid"], reversible_loops=f["reversible"], gluon=bool(f["dot"]) and _gluon_searchable()))
    blocks = [s.default for s in space.spec.block_sizes]
    elems = math.prod(blocks) * max([next_pow2(e) for e in f["rdims"]] or [1]) if not f["dot"] else 0
    warps = 4 if f["dot"] else max(1, min(16, next_pow2(max(1, elems // 512))))
    space._default = space.default().replace(num_warps=warps, **({"block_sizes": blocks} if blocks else {}))
    return space

def offsets(bound, loop_index: int) -> dict[str, int]:
    """Where device loop ``loop_index``'s reductions, inner loops and loads start in the Config lists."""
    if loop_index == 0 or getattr(bound, "_collecting", False):
        return {"rdim": 0, "loop": 0, "load": 0}
    per = bound.facts()["per_loop"][:loop_index]
    return {k: sum(p[v] for p in per) for k, v in (("rdim", "rdims"), ("loop", "loops"), ("load", "loads"))}
