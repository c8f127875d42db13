"""Named IR passes, run in ``PIPELINE`` order on a lowered device loop under one Config. The IR is shared by every
Config of a specialization: each pass (IR, Config, Layout) -> IR writes what the Config decides into the active Plan."""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from . import exc, ir as I
from .config import NOT_REVERSIBLE, Config
from .lower import block_size, config_block
from .opdefs import OPS
from .types import next_pow2

@dataclass(frozen=True)
class Layout:
    """Where a device loop's entries start in the Config's per-load, -inner-loop and -reduction lists, and the size of
    a block id the Config leaves out."""
    load: int = 0
    loop: int = 0
    rdim: int = 0
    default_block: Callable[[int], int] = lambda bid: 64

def apply_config(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """Size every tile, reduction and registered block under ``cfg``; roll a reduction given a chunk under its row."""
    d.load_base, d.loop_base = at.load, at.loop
    for t in d.tiles.values():
        t.block = t.fixed if t.fixed is not None else block_size(cfg, t.block_id, t.static_len)
    rl = cfg.get("reduction_loops") or []
    for r in d.rdims.values():
        chunk = rl[at.rdim + r.id] if at.rdim + r.id < len(rl) else None
        r.rolled = chunk is not None and chunk < next_pow2(r.extent)
        r.block = int(chunk) if r.rolled else next_pow2(r.extent)
    d.blocks = {bid: config_block(cfg, bid) or at.default_block(bid) for bid in d.block_ids}
    return d

def decide_masks(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """A dim gets a mask only where its block may not divide its extent, device-valued bounds included (causal flash
    attention's ``hl.tile(0, min(tile_m.begin, s_k))``: masks there cost selects on the softmax's critical path)."""
    for t in d.tiles.values():  # n: its length, else what divides both bounds; an hl.grid index is never out
        n = t.static_len if t.static_len is not None else math.gcd(multiple_of(t.begin), multiple_of(t.end))
        t.masked = not t.is_grid and n % t.block != 0
    for r in d.rdims.values():
        r.masked = r.extent % r.block != 0 or r.extent == 0
    return d

def multiple_of(v: Any) -> int:
    """The largest m known to divide the device int ``v`` (0: ``v`` is 0; 1: nothing known), through constants, tile
    begins and ends, +, -, *, min and max."""
    if isinstance(v, str):
        return abs(int(v)) if v.lstrip("-").isdigit() else 1
    if not isinstance(v, I.Value):
        return abs(v) if isinstance(v, int) and not isinstance(v, bool) else 1
    a = v.args
    if v.op == "const" and not isinstance(a[0], str) or v.op == "cast" and not v.type.dtype.is_floating_point:
        return multiple_of(a[0])  # a constant's number, an integer cast's operand
    if v.op == "tile_attr" and v.attrs["attr"] in ("begin", "end") and not a[0].is_grid:
        m = math.gcd(multiple_of(a[0].begin), a[0].block)  # begin + i * block
        return m if v.attrs["attr"] == "begin" else math.gcd(m, multiple_of(a[0].end))  # min(offset + block, end)
    if v.op == "binary" and v.attrs["op"] in ("+", "-", "minimum", "maximum", "*"):
        x, y = multiple_of(a[0]), multiple_of(a[1])
        return x * y if v.attrs["op"] == "*" else math.gcd(x, y)
    return 1

def _rdims(v: I.Value) -> set[int]: return {x.id for x in v.type.dims if x.kind == "rdim"}

def decide_rolled(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """Keep a reduction dim rolled (looped in chunks) only where codegen can split the dataflow: its values live in
    the top-level body, are not loop-carried, not matmul operands, not scanned, and no value has two rolled dims."""
    if not any(r.rolled for r in d.rdims.values()):
        return d
    top_lets, top = {id(s.value) for s in d.body if isinstance(s, I.Let)}, {id(s) for s in d.body}
    bad: set[int] = set()
    for v in I.all_values(d.body):
        rd, op = _rdims(v), OPS[v.op]
        if len(rd) > 1 or rd and (not op.chunkable or (id(v) not in top_lets and not op.constant)):
            bad |= rd
        if v.op == "dot":
            bad = bad.union(*map(_rdims, v.inputs()))
    for s in I.walk(d.body):
        if isinstance(s, I.Store) and s.atomic:
            bad |= _rdims(s.value)
        if isinstance(s, I.Store) and id(s) not in top:  # inside a loop or branch
            bad.update(v.id for kind, v in s.index.entries if kind == "rdim")
    for r in d.rdims.values():
        r.rollable = r.id not in bad
        if r.rolled and not r.rollable:
            r.rolled, r.block = False, next_pow2(r.extent)
            r.masked = r.extent % r.block != 0 or r.extent == 0  # the chunk may have divided it; the whole row may not
    return d

def assign_indexing(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    want = cfg.get("indexing", "pointer") == "tensor_descriptor"
    for s in I.walk(d.body):
        if isinstance(s, I.Store) and not s.atomic:
            s.index.descriptor = want and _descriptor_ok(s.index)  # type: ignore[attr-defined]
        elif isinstance(s, I.Let) and s.value.op == "load":
            s.value.args[0].descriptor = want and _descriptor_ok(s.value.args[0])
    return d

def _descriptor_ok(idx: I.Index) -> bool:
    """TMA needs the last stride 1, other strides 16-byte aligned (``TensorArg.descriptor_ok``), 16 bytes or more in the
    last block dim, and no partial tile unless its loop spans the tensor dim (it clips at the tensor's bounds)."""
    t = idx.tensor
    if not t.descriptor_ok or idx.extra_mask is not None or t.ndim > 5:
        return False
    for dim, (kind, v) in enumerate(idx.entries):
        if kind == "block" or kind == "rdim" and v.rolled or kind == "tile" and (v.is_grid or v.masked and not (
                str(v.begin) == "0" and str(v.end) == str(t.sizes[dim]))):
            return False
    kind, v = idx.entries[-1]  # descriptor_ok: not 0-d
    return (1 if kind == "scalar" else v.block) * t.dtype.itemsize >= 16

def reversible(loop: I.For) -> bool:
    """Whether a loop computes the same with its tiles last to first: nothing carried, no atomics or effects, and a
    tensor it writes read only where the same iteration writes it (same tiles, whole dims or scalars: no gather)."""
    stores = [s for s in I.walk(loop.body) if isinstance(s, I.Store)]
    if loop.carried or any(s.atomic for s in stores):
        return False
    for v in I.all_values(loop.body):
        if OPS[v.op].flag("effects", v):
            return False
        idx = v.args[0] if v.op == "load" else None  # Values in its entries compare by identity
        if idx is not None and any(s.index.tensor.name == idx.tensor.name and (s.index.entries != idx.entries or any(
                kind == "block" for kind, _ in idx.entries)) for s in stores):
            return False
    return True

def decide_reverses(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """Mark the loops ``range_reverses`` turns around (a row re-read in a second pass, longer than an SM's share of L2,
    finds its last tiles still there); an order-dependent loop is refused at its line."""
    revs = cfg.get("range_reverses") or []
    for s in I.walk(d.body):
        if isinstance(s, I.For):
            k = d.loop_base + s.loop_id
            s.reverse = 0 <= k < len(revs) and bool(revs[k])
            if s.reverse and not reversible(s):
                raise exc.NotSupported(f"range_reverses: {NOT_REVERSIBLE}", s.loc)
    return d

PIPELINE: list[Callable[[I.DeviceIR, Config, Layout], I.DeviceIR]] = [
    apply_config, decide_masks, decide_rolled, assign_indexing, decide_reverses]

def run(d: I.DeviceIR, cfg: Config, at: Layout = Layout(), dump: str | None = None) -> I.DeviceIR:
    """Every pass in order under the active Plan, the verifier after each. ``dump`` (default ``$HELION_OPS_DUMP_IR``):
    the passes (comma-separated; ``lower``: as lowered; ``all``) after which the IR goes to stderr."""
    want = set((os.environ.get("HELION_OPS_DUMP_IR", "") if dump is None else dump).split(","))
    if want & {"all", "lower"}:
        print(f"# after lower\n{I.format_ir(d, plan=False)}", file=sys.stderr)
    for p in PIPELINE:
        d = I.verify(p(d, cfg, at))
        if want & {"all", p.__name__}:
            print(f"# after {p.__name__}\n{I.format_ir(d)}", file=sys.stderr)
    return d
