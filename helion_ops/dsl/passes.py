"""Named IR passes, run in ``PIPELINE`` order. Each takes and returns a DeviceIR."""
from __future__ import annotations

from typing import Callable

from . import ir as I
from .config import Config



def decide_masks(d: I.DeviceIR, cfg: Config) -> I.DeviceIR:
    """A dim gets a mask only where its block may not divide its extent."""
    for t in d.tiles.values():
        if t.is_grid:
            t.masked = False  # one program / iteration per index: never out of range
        else:
            t.masked = t.static_len is None or t.static_len % t.block != 0
    for r in d.rdims.values():
        r.masked = r.extent % r.block != 0
    return d


def decide_rolled(d: I.DeviceIR, cfg: Config) -> I.DeviceIR:
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
        if rd and (v.op in ("phi", "dot", "scan", "permute", "reshape", "atomic_result", "argmax", "combine",
                            "getitem", "rand", "inline_triton", "split", "join")
                   or (id(v) not in top_lets and v.op not in ("const", "param"))):
            bad.update(rd)
        if v.op == "dot":
            for a in v.inputs():
                bad.update(x.id for x in a.type.dims if x.kind == "rdim")
    for s in I.walk(d.body):
        if isinstance(s, I.Store) and s.atomic:
            bad.update(x.id for x in s.value.type.dims if x.kind == "rdim")
        if isinstance(s, (I.For, I.If)):
            for inner in I.walk(s.then + s.orelse if isinstance(s, I.If) else s.body):
                if isinstance(inner, I.Store):
                    bad.update(e[1].id for e in inner.index.entries if e[0] == "rdim")
    for r in d.rdims.values():
        r.rollable = r.id not in bad
        if r.rolled and not r.rollable:
            r.rolled = False
            r.block = 1 if r.extent <= 1 else 1 << (r.extent - 1).bit_length()
            # The chunk may have divided the extent; the whole-row block (next pow2) may not.
            r.masked = r.extent % r.block != 0
    return d


def assign_indexing(d: I.DeviceIR, cfg: Config) -> I.DeviceIR:
    """Mark loads/stores that may use TMA tensor descriptors (Hopper+).

    A descriptor needs the last stride to be 1, other strides 16-byte aligned,
    at least 16 bytes in the last block dim, and tiles that span the whole tensor
    dim (TMA clips at the tensor's bounds, not at a tile's own end)."""
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
            if v.is_grid or str(v.begin) != "0" or str(v.end) != str(t.sizes[dim]):
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


PIPELINE: list[Callable[[I.DeviceIR, Config], I.DeviceIR]] = [
    decide_masks,
    decide_rolled,
    assign_indexing,
]


def run(d: I.DeviceIR, cfg: Config) -> I.DeviceIR:
    for p in PIPELINE:
        d = p(d, cfg)
    return I.verify(d)


