"""A small typed IR of one device loop: a graph of pure values (loads included) and a statement tree that gives order
and effects: ``Let`` defines a value where the source does, ``Store`` writes a tensor, ``For``, ``While`` and ``If``
carry loop and branch variables explicitly as ``(phi, init, final)`` triples."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from . import exc
from .plan import current_plan, planned
from .types import ONE, BlockT, Dim, LaunchInputs, RDimInfo, TensorArg, TileInfo, same_dims, tile_dim

_ids = itertools.count()

class Value:
    __slots__ = ("op", "args", "attrs", "type", "loc", "hint", "id")
    def __init__(self, opcode: str, args: list[Any], type: BlockT, loc: exc.Loc | None,
                 hint: str = "", **attrs: Any) -> None:
        self.op, self.args, self.type, self.loc, self.hint, self.attrs = opcode, args, type, loc, hint, attrs
        self.id = next(_ids)
    def inputs(self) -> list["Value"]:
        return ([a for a in self.args if isinstance(a, Value)]
                + [v for a in self.args if isinstance(a, Index) for v in a.values()])
    def __repr__(self) -> str: return f"%{self.id}:{self.op}:{self.type}"

@dataclass
class Index:
    """How a tensor is indexed: per tensor dim ``("tile", TileInfo)``, ``("rdim", RDimInfo)``, ``("scalar", Value|int|
    str)`` or ``("block", Value)`` (a gather); ``out``: per result axis its tensor dim, or None (a size-1 axis)."""
    tensor: TensorArg
    entries: list[tuple[str, Any]]
    out: list[int | None]
    extra_mask: "Value | None" = None
    joint: tuple = ()               # tensor dims of integer blocks that index together (one broadcast shape)
    descriptor = planned(False)     # through a TMA descriptor under this Config (passes.assign_indexing)
    def dims(self) -> tuple[Dim, ...]:
        """The dims of the block this index reads or writes, in result order."""
        dims: list[Dim] = []
        for o in self.out:
            kind, v = ("one", None) if o is None else self.entries[o]
            if kind == "block" and (o not in self.joint or o == self.joint[0]):
                dims.extend(v.type.dims)  # joint gathers: their one broadcast shape, once
            elif kind in ("one", "tile", "rdim"):
                dims.append(ONE if kind == "one" else tile_dim(v) if kind == "tile" else Dim("rdim", v.id))
        return tuple(dims)
    def values(self) -> list[Value]:
        return [v for _, v in [*self.entries, ("mask", self.extra_mask)] if isinstance(v, Value)]

@dataclass
class Let:
    value: Value
    loc: exc.Loc | None = None

@dataclass
class Store:
    index: Index
    value: Value
    loc: exc.Loc | None = None
    atomic: str | None = None       # "add" | "max" | "min" | "xchg" | "cas" | None
    result: Value | None = None     # atomic's old value
    sem: str = "relaxed"            # atomic memory order
    compare: Value | None = None    # atomic_cas's expected value

@dataclass
class For:
    tiles: list[TileInfo]
    body: list[Stmt]
    carried: list[tuple[Value, Value, Value]] = field(default_factory=list)  # (phi, init, final)
    loop_id: int = -1               # index into range_* config lists
    loc: exc.Loc | None = None
    reverse = planned(False)        # tiles last to first under this Config (passes.decide_reverses)

@dataclass
class While:
    cond: Value                     # a loop-carried scalar: its (phi, init, final) is the last of carried
    body: list[Stmt]
    carried: list[tuple[Value, Value, Value]] = field(default_factory=list)  # (phi, init, final)
    loc: exc.Loc | None = None

@dataclass
class If:
    cond: Value
    then: list[Stmt]
    orelse: list[Stmt]
    merges: list[tuple[Value, Value, Value, Value]] = field(default_factory=list)  # (merged, init, then, else)
    loc: exc.Loc | None = None

Stmt = Let | Store | For | While | If  # every statement has a loc

@dataclass
class DeviceIR:
    name: str
    inputs: LaunchInputs
    grid: list[TileInfo]
    tiles: dict[int, TileInfo]
    rdims: dict[int, RDimInfo]
    body: list[Stmt]
    n_inner_loops: int = 0
    n_loads: int = 0
    block_ids: set[int] = field(default_factory=set)     # block ids used as Dim("block", id)
    helpers: list[tuple] = field(default_factory=list)     # jit (name, params, body, results) | ("raw", name, text)
    deps: dict[int, Any] = field(default_factory=dict)     # block id -> Config size lowering read (Lowerer.block_int)
    blocks = planned()              # block id -> size under this Config, for Dim("block", id)
    load_base = planned(0)          # where this loop's loads, inner loops and reductions start in the
    loop_base = planned(0)          # Config's per-load and per-inner-loop lists (the earlier loops' counts)

def walk(stmts: list[Stmt]):
    for s in stmts:
        yield s
        yield from walk(s.then + s.orelse if isinstance(s, If) else getattr(s, "body", ()))

def all_values(stmts: list[Stmt]):
    seen, stack = set(), []
    for s in walk(stmts):  # each statement's own values (a Store's compare may be None), then their inputs
        stack += ([s.value] if isinstance(s, Let) else [s.value, *s.index.values(), s.compare] if isinstance(s, Store)
                  else [s.cond, *(v for quad in s.merges for v in quad)] if isinstance(s, If)
                  else [v for trip in s.carried for v in trip])
    while stack:
        v = stack.pop()
        if v is not None and v.id not in seen:
            seen.add(v.id)
            yield v
            stack.extend(v.inputs())

def verify(ir: DeviceIR) -> DeviceIR:
    """Check structural invariants (inside a Plan: every tile got a power-of-two block)."""
    for s in walk(ir.body):
        for phi, _, final in getattr(s, "carried", ()):
            if not same_dims(phi.type.dims, final.type.dims):
                raise exc.ShapeMismatch(f"a loop-carried value changes shape: {phi.type} -> {final.type}", s.loc)
    if current_plan() is not None:
        for t in ir.tiles.values():
            if t.block < 1 or t.block & (t.block - 1):
                raise exc.CompileError(f"internal: tile {t.name or t.id} got block {t.block}, not a power of two")
    return ir

def format_ir(ir: DeviceIR, plan: bool | None = None) -> str:
    """The IR as text (HELION_OPS_DUMP_IR, explain); with ``plan`` (default: inside a Plan), the Config's decisions."""
    names: dict[int, str] = {}
    plan = current_plan() is not None if plan is None else plan
    def val(a: Any) -> str:
        if isinstance(a, Value):
            return names.setdefault(a.id, f"%{len(names)}")
        if isinstance(a, Index):
            extra = f" if {val(a.extra_mask)}" if a.extra_mask is not None else ""
            tma = " (tma)" if plan and a.descriptor else ""
            return f"{a.tensor.name}[{', '.join(val(e) for _, e in a.entries)}]{extra}{tma}"
        return f"t{a.id}" if isinstance(a, TileInfo) else f"r{a.id}" if isinstance(a, RDimInfo) else repr(a)
    lines = [f"device loop {ir.name}: " + ", ".join(f"{t.name}: {str(t.dtype)[6:]}{list(t.sizes)}"
                                                     for t in ir.inputs.tensors)]
    for t in ir.tiles.values():
        size = f"block {t.block}" + (", masked" if t.masked else "") if plan else \
            (f"block {t.fixed}" if t.fixed is not None else f"block_sizes[{t.block_id}]")
        lines.append(f"  t{t.id} {t.name or ''}: {'grid' if t.top else 'loop'} {val(t.begin)}..{val(t.end)}, {size}")
    for r in ir.rdims.values():
        how = ((f", rolled in {r.block}" if r.rolled else f", whole ({r.block})") + (", masked" if r.masked else "")
               if plan else "" if r.rollable else ", not rollable")
        lines.append(f"  r{r.id}: extent {r.extent}{how}")
    def block(stmts: list, ind: str) -> None:
        for s in stmts:
            if isinstance(s, Let):
                v = s.value
                args = ", ".join(val(a) for a in v.args)  # before val(v): operands are numbered first
                shown = ", ".join(f"{k}={x!r}" for k, x in v.attrs.items() if not isinstance(x, (RDimInfo, TileInfo)))
                lines.append(f"{ind}{val(v)} = {v.op}({args}){f' {{{shown}}}' if shown else ''} : {v.type}")
            elif isinstance(s, Store):
                lines.append(f"{ind}{f'atomic_{s.atomic}' if s.atomic else 'store'} {val(s.index)} <- {val(s.value)}")
            elif isinstance(s, (For, While)):
                rev = " reversed" if isinstance(s, For) and plan and s.reverse else ""
                lines.append(f"{ind}while {val(s.cond)}" if isinstance(s, While) else
                             f"{ind}for {', '.join(f't{t.id}' for t in s.tiles)}{rev}  # inner loop {s.loop_id}")
                lines.extend(f"{ind}  {val(phi)} = carried({val(init)}) : {phi.type}" for phi, init, _ in s.carried)
                block(s.body, ind + "  ")
                lines.extend(f"{ind}  yield {val(phi)} <- {val(fin)}" for phi, _, fin in s.carried)
            elif isinstance(s, If):
                lines.append(f"{ind}if {val(s.cond)}")
                block(s.then, ind + "  ")
                if s.orelse:
                    lines.append(f"{ind}else")
                    block(s.orelse, ind + "  ")
                lines.extend(f"{ind}{val(m)} = merge({val(a)}, {val(b)}) : {m.type}" for m, _, a, b in s.merges)
    block(ir.body, "  ")
    return "\n".join(lines) + "\n"
