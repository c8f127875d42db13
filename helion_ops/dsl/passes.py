"""Named IR passes, run in ``PIPELINE`` order on a lowered device loop under one Config.

The lowered IR is shared by every Config of a specialization; these passes write what the Config
decides (block sizes, masks, rolled reductions, descriptors, reversed loops) into the active Plan
(``plan.py``), never into the IR itself. Each takes (IR, Config, Layout) and returns the IR;
``run`` verifies it at the end."""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from . import exc
from . import ir as I
from .config import NOT_REVERSIBLE, Config
from .opdefs import OPS

from .types import next_pow2

@dataclass(frozen=True)
class Layout:
    """Where one device loop's entries start in the Config's per-load, per-inner-loop and
    per-reduction lists (the counts of the kernel's earlier loops), and the default size of a block
    id the Config leaves out."""

    load: int = 0
    loop: int = 0
    rdim: int = 0
    default_block: Callable[[int], int] = lambda bid: 64

def apply_config(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """Size every tile, reduction and registered block under ``cfg``: a tile's block from
    ``block_sizes`` (fixed tiles keep theirs), a reduction rolled in chunks where ``reduction_loops``
    gives one smaller than the whole row."""
    d.load_base, d.loop_base = at.load, at.loop
    bs = cfg.get("block_sizes") or []
    for t in d.tiles.values():
        if t.fixed is not None:
            t.block = t.fixed
        elif t.block_id < len(bs):
            t.block = int(bs[t.block_id])
        else:
            t.block = max(1, min(64, next_pow2(t.static_len))) if t.static_len is not None else 64
    rl = cfg.get("reduction_loops") or []
    for r in d.rdims.values():
        k = at.rdim + r.id
        chunk = rl[k] if k < len(rl) else None
        r.rolled = chunk is not None and chunk < next_pow2(r.extent)
        r.block = int(chunk) if r.rolled else next_pow2(r.extent)
    d.blocks = {bid: int(bs[bid]) if bid < len(bs) else at.default_block(bid) for bid in d.block_ids}
    return d

def decide_masks(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """A dim gets a mask only where its block may not divide its extent. A loop with device-valued
    bounds is unmasked when both bounds are provably multiples of its block: causal attention's
    ``hl.tile(0, min(tile_m.begin, s_k))`` with block_m % block_n == 0 and s_k % block_n == 0. In
    flash attention's inner loop the masks are three selects over the [BM, BN] score tile per step,
    on the softmax path that bounds its speed, and they keep every K/V load predicated."""
    for t in d.tiles.values():
        if t.is_grid:
            t.masked = False  # one program / iteration per index: never out of range
        elif t.static_len is not None:
            t.masked = t.static_len % t.block != 0
        else:
            t.masked = math.gcd(multiple_of(t.begin), multiple_of(t.end)) % t.block != 0
    for r in d.rdims.values():
        r.masked = r.extent % r.block != 0 or r.extent == 0
    return d

def multiple_of(v: Any) -> int:
    """The largest m known to divide the device int ``v`` (0: ``v`` is 0, a multiple of anything;
    1: nothing known). Follows constants, tile begins and ends, +, -, *, min and max."""
    if isinstance(v, str):
        return abs(int(v)) if v.lstrip("-").isdigit() else 1
    if isinstance(v, bool) or not isinstance(v, (int, I.Value)):
        return 1
    if isinstance(v, int):
        return abs(v)
    if v.op == "const":
        c = v.args[0]
        return abs(c) if isinstance(c, int) and not isinstance(c, bool) else 1
    if v.op == "cast" and not v.type.dtype.is_floating_point:
        return multiple_of(v.args[0])
    if v.op == "tile_attr" and v.attrs["attr"] in ("begin", "end"):
        t = v.args[0]
        if t.is_grid:
            return 1
        m = math.gcd(multiple_of(t.begin), t.block)  # begin + i * block
        return m if v.attrs["attr"] == "begin" else math.gcd(m, multiple_of(t.end))  # min(offset + block, end)
    if v.op == "binary":
        op, (a, b) = v.attrs["op"], v.args
        if op in ("+", "-", "minimum", "maximum"):
            return math.gcd(multiple_of(a), multiple_of(b))
        if op == "*":
            return multiple_of(a) * multiple_of(b)
    return 1

def decide_rolled(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """Keep a reduction dim rolled (looped in chunks) only where codegen can split the dataflow:
    its values live in the top-level body, are not loop-carried, not matmul operands, not scanned,
    and no value has two rolled dims."""
    if not any(r.rolled for r in d.rdims.values()):
        return d
    top_lets = {id(s.value) for s in d.body if isinstance(s, I.Let)}
    bad: set[int] = set()
    for v in I.all_values(d.body):
        rd = [x.id for x in v.type.dims if x.kind == "rdim"]
        if len(set(rd)) > 1:
            bad.update(rd)
        op = OPS[v.op]
        if rd and (not op.chunkable or (id(v) not in top_lets and not op.constant)):
            bad.update(rd)
        if v.op == "dot":
            for a in v.inputs():
                bad.update(x.id for x in a.type.dims if x.kind == "rdim")
    for s in I.walk(d.body):
        if isinstance(s, I.Store) and s.atomic:
            bad.update(x.id for x in s.value.type.dims if x.kind == "rdim")
        if isinstance(s, (I.For, I.While, I.If)):
            for inner in I.walk(s.then + s.orelse if isinstance(s, I.If) else s.body):
                if isinstance(inner, I.Store):
                    bad.update(e[1].id for e in inner.index.entries if e[0] == "rdim")
    for r in d.rdims.values():
        r.rollable = r.id not in bad
        if r.rolled and not r.rollable:
            r.rolled = False
            r.block = 1 if r.extent <= 1 else 1 << (r.extent - 1).bit_length()
            # The chunk may have divided the extent; the whole-row block (next pow2) may not.
            r.masked = r.extent % r.block != 0 or r.extent == 0
    return d

def assign_indexing(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """Mark loads/stores that may use TMA tensor descriptors (Hopper+).

    A descriptor needs the last stride to be 1, other strides 16-byte aligned,
    at least 16 bytes in the last block dim, and tiles that span the whole tensor
    dim or are never partial (TMA clips at the tensor's bounds, not at a tile's own end)."""
    want = cfg.get("indexing", "pointer")
    for s in I.walk(d.body):
        idx = None
        if isinstance(s, I.Store) and not s.atomic:
            idx = s.index
        elif isinstance(s, I.Let) and s.value.op == "load":
            idx = s.value.args[0]
        if idx is None:
            continue
        idx.descriptor = want == "tensor_descriptor" and _descriptor_ok(d, idx)  # type: ignore[attr-defined]
    return d

def _descriptor_ok(d: I.DeviceIR, idx: I.Index) -> bool:
    t = idx.tensor
    if not t.descriptor_ok or idx.extra_mask is not None or t.ndim > 5:
        return False
    last_block = 1
    for dim, (kind, v) in enumerate(idx.entries):
        if kind == "block":
            return False
        if kind == "tile":
            # TMA clips a box at the tensor's bounds, not at the loop's end: a partial tile is only
            # safe where the loop spans the whole dim; an unmasked tile never is partial.
            spans = str(v.begin) == "0" and str(v.end) == str(t.sizes[dim])
            if v.is_grid or (v.masked and not spans):
                return False
            b = v.block
        elif kind == "rdim":
            if v.rolled:
                return False
            b = v.block
        else:
            b = 1
        if dim == t.ndim - 1:
            last_block = b
    return last_block * t.dtype.itemsize >= 16

def reversible(loop: I.For) -> bool:
    """Whether a device loop may take its tiles last to first (``Config.range_reverses``) without
    changing what it computes: no iteration can see another's effects. Nothing is carried from one
    iteration to the next; a tensor it writes is read in it only where the same iteration writes it
    (``x[t] = x[t] * 2``); it makes no atomic updates (their old values depend on order) and calls no
    Triton code or impure asm (effects unknown)."""
    if loop.carried:
        return False
    written: dict[str, list] = {}
    for s in I.walk(loop.body):
        if isinstance(s, I.Store):
            if s.atomic:
                return False
            written.setdefault(s.index.tensor.name, []).append(s.index.entries)
    for v in I.all_values(loop.body):
        if OPS[v.op].flag("effects", v):
            return False
        if v.op == "load" and v.args[0].tensor.name in written:
            if any(not _same_place(v.args[0].entries, w) for w in written[v.args[0].tensor.name]):
                return False
    return True

def _same_place(a: list, b: list) -> bool:
    """Two indexings of one tensor that address the same elements in every iteration: the same tiles,
    whole dims or scalars (a gather's index block could point anywhere)."""
    return len(a) == len(b) and all(
        ka == kb and ka != "block" and (va is vb or (not isinstance(va, I.Value) and va == vb))
        for (ka, va), (kb, vb) in zip(a, b))

def decide_reverses(d: I.DeviceIR, cfg: Config, at: Layout) -> I.DeviceIR:
    """Mark the device loops that ``range_reverses`` turns around. A long row re-read in a second
    pass (softmax over a 128K vocabulary: 256 KB a row in bf16, more than an SM's share of L2 once
    every SM streams its own row) finds its most recently read tiles still in L2 when it starts
    from the end. A loop whose result could depend on its order is refused, at its source line."""
    revs = cfg.get("range_reverses") or []
    for s in I.walk(d.body):
        if isinstance(s, I.For):
            k = d.loop_base + s.loop_id
            s.reverse = 0 <= k < len(revs) and bool(revs[k])
            if s.reverse and not reversible(s):
                raise exc.NotSupported(f"range_reverses: {NOT_REVERSIBLE}", s.loc)
    return d

PIPELINE: list[Callable[[I.DeviceIR, Config, Layout], I.DeviceIR]] = [
    apply_config,
    decide_masks,
    decide_rolled,
    assign_indexing,
    decide_reverses,
]

def run(d: I.DeviceIR, cfg: Config, at: Layout = Layout(), dump: str | None = None) -> I.DeviceIR:
    """Every pass in order under the active Plan (``plan.planning()``), the verifier after each.
    ``dump`` (default: ``$HELION_OPS_DUMP_IR``) names passes, comma-separated, or ``all``, after which
    the IR is printed to stderr (``lower`` for the IR as lowered)."""
    dump = os.environ.get("HELION_OPS_DUMP_IR", "") if dump is None else dump
    want = set(dump.split(",")) if dump else set()
    if want & {"all", "lower"}:
        print(f"# after lower\n{I.format_ir(d, plan=False)}", file=sys.stderr)
    for p in PIPELINE:
        d = I.verify(p(d, cfg, at))
        if want & {"all", p.__name__}:
            print(f"# after {p.__name__}\n{I.format_ir(d)}", file=sys.stderr)
    return d


