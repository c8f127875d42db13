"""The device ops, declared once: what device code may call (``CALLS``, ``METHODS``: function or method -> lowering
rule) and every IR op (``OPS``, with the flags passes and backends read). An op's type rule is the handler that emits
it (ops.py, ops_extra.py); its code is one entry per backend (``backends/triton/ops.py``: ``EMIT``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

Flag = Union[bool, Callable[[Any], bool]]  # a flag, or a function of the Value when it depends on attrs

@dataclass(frozen=True)
class OpDef:
    name: str
    doc: str
    constant: bool = False      # a literal or a kernel parameter: the same wherever it is read
    inline: Flag = False        # codegen writes it where it is used instead of naming it
    chunkable: bool = True      # with a rolled reduction dim, recomputable chunk by chunk (passes.decide_rolled)
    effects: Flag = False       # its result or effect depends on the order it runs in (passes.reversible)
    def flag(self, name: str, v: Any) -> bool: return f(v) if callable(f := getattr(self, name)) else f

OPS: dict[str, OpDef] = {d.name: d for d in [
    OpDef("const", "a Python number", constant=True, inline=True),
    OpDef("param", "a scalar kernel argument", constant=True, inline=True),
    OpDef("tile_attr", "a tile's index, begin, end or id", inline=lambda v: v.attrs["attr"] in ("index", "begin")),
    OpDef("inline_triton", "a Triton snippet or @triton.jit call", chunkable=False, effects=True),
    OpDef("inline_asm", "inline PTX, elementwise", chunkable=False, effects=lambda v: not v.attrs["is_pure"]),
    OpDef("load", "a block read from a tensor (structured Index)"), OpDef("cast", "a dtype conversion"),
    OpDef("binary", "an arithmetic, comparison or logical operator"), OpDef("where", "an elementwise select"),
    OpDef("powi", "x ** n for a small integer (or 0.5) constant n"), OpDef("unary", "an elementwise math function"),
    OpDef("reduce", "sum / max / min over one dim (persistent or rolled)"), OpDef("full", "a block of one value"),
    OpDef("arange", "lanes of a reduction dim or a registered block size"),
    OpDef("view", "indexing a block with ':' and None (attrs axes: True an axis kept, False a new one)"),
    OpDef("broadcast_to", "an explicit broadcast"),
    *(OpDef(name, doc, chunkable=False) for name, doc in [
        ("phi", "a loop-carried or merged value"), ("atomic_result", "the old values an atomic update returns"),
        ("dot", "a matrix product with fp32 (or int32) accumulation"), ("permute", "a transpose"),
        ("reshape", "a reshape that keeps the lanes"), ("argmax", "argmax / argmin over one dim"),
        ("combine", "hl.reduce / associative_scan with a combine function"), ("scan", "cumsum / cumprod"),
        ("getitem", "one value of a tuple result"), ("rand", "Philox uniform or normal numbers"),
        ("rand4x", "four Philox uniform blocks"), ("split", "the two halves of a last dim of 2"),
        ("join", "two blocks stacked on a new last dim"),
        ("gather", "a block's values picked along one dim by an index block")]),
]}

# Function objects and method names -> rule(lw, node, name, *args, **kwargs), a method's block first; the first
# registration of a key wins. A rule may return DECLINE to leave the call to ops_dispatch's generic handling.
CALLS: dict[Any, Callable[..., Any]] = {}
METHODS: dict[str, Callable[..., Any]] = {}
DECLINE = object()

def rule(*keys: Any) -> Callable:
    def deco(fn: Callable) -> Callable:
        for k in keys:
            (METHODS if isinstance(k, str) else CALLS).setdefault(k, fn)
        return fn
    return deco
