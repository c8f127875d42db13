"""Triton backend, the body: DeviceIR + Plan + Config -> Triton source (one @triton.jit per device loop). Values are
emitted where the source defines them (``Let``), except those with a rolled reduction dim: emitted lazily in the chunk
loop that needs them, recomputing (reloading) row-shaped inputs per pass. Statements carry ``# src[file:line]``."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from ... import exc, ir as I
from ...config import Config
from ...target import Target
from ...types import SIGNATURE_DTYPE, BlockT, Dim, RDimInfo, TileInfo, tl_dtype
from ...opdefs import OPS
from .ops import EMIT, INT_NEUTRAL, NAN, NEUTRAL, REDUCE_FN

@dataclass
class Generated:
    fn_name: str
    source: str
    params: list[tuple[str, Any, Any]]   # (param name, kind, source): tensor|scalar, or makes the arg from it
    signature: dict[str, str]
    grid: tuple[int, int, int] | str     # literal grid, or Python code over params
    num_warps: int
    num_stages: int
    uses_descriptors: bool = False
    interpreter_cannot: Any = None       # Loc of an op Triton's interpreter cannot run (inline PTX), else None

class Emitter:
    def __init__(self, d: I.DeviceIR, cfg: Config, pk_file: str, target: Target) -> None:
        self.d, self.cfg, self.file, self.target = d, cfg, os.path.basename(pk_file), target
        self.lines, self.ind, self.last_src = [], 1, None      # output, its indent, the last # src line
        self.scopes: list[dict[int, str]] = [{}]                # value id -> its name or inline expression
        self.used: dict[str, int] = {}                          # name base -> last suffix taken
        self.descs, self.desc_lines = {}, []                    # (tensor, block) -> TMA descriptor, its setup
        self.idx64 = any(t.index64 for t in d.inputs.tensors)
        self.nan_helpers: set[str] = set()  # "max" / "min": NaN-propagating reductions used
    def line(self, *ss: str) -> None: self.lines += ["    " * self.ind + s for s in ss]
    def src(self, loc: exc.Loc | None) -> None:
        if loc is not None and loc.line != self.last_src:
            self.last_src = loc.line
            self.line(f"# src[{self.file}:{loc.line}]: {loc.text.strip()}")
    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in (hint or "v")) or "v"
        if base[0].isdigit() or base in ("tl", "triton"):
            base = "v_" + base
        n = self.used[base] = self.used.get(base, -1) + 1
        return f"{base}_{n}"
    def lookup(self, v: I.Value) -> str | None:
        return next((sc[v.id] for sc in reversed(self.scopes) if v.id in sc), None)
    def params(self) -> tuple[list[tuple[str, str, Any]], dict[str, str]]:
        ts, ss = self.d.inputs.tensors, self.d.inputs.scalars
        return ([(t.name, "tensor", t.host) for t in ts] + [(s.name, "scalar", s.name) for s in ss],
                {t.name: "*" + SIGNATURE_DTYPE[t.dtype] for t in ts} | {s.name: SIGNATURE_DTYPE[s.dtype] for s in ss})
    def dim_info(self, d: Dim) -> TileInfo | RDimInfo | None:
        return self.d.tiles[d.id] if d.kind == "tile" else self.d.rdims[d.id] if d.kind == "rdim" else None
    def dim_size(self, d: Dim) -> int:
        info = self.dim_info(d)
        return info.block if info is not None else self.d.blocks[d.id] if d.kind == "block" else 1
    def shape(self, t: BlockT) -> str: return "[" + ", ".join(str(self.dim_size(d)) for d in t.dims) + "]"
    def dim_mask(self, d: Dim) -> str | None:
        return info.mask if (info := self.dim_info(d)) is not None and info.masked else None
    @staticmethod
    def bcast(name: str, axis: int, ndim: int) -> str:
        return name if ndim <= 1 else f"{name}[{', '.join(':' if i == axis else 'None' for i in range(ndim))}]"
    def name_of(self, v: I.Value) -> str: return self.lookup(v) or self.define(v)
    def define(self, v: I.Value) -> str:
        expr, inline = self.expr(v), OPS[v.op].flag("inline", v)
        name = expr if inline else self.fresh(v.hint or v.op)
        if not inline:
            self.src(v.loc)
            self.line(f"{name} = {expr}")
        self.scopes[-1][v.id] = name
        return name
    def expr(self, v: I.Value) -> str:
        """The Triton expression of ``v`` (statements it needs first go out through ``line``)."""
        if v.op not in EMIT:  # phi, atomic_result: named where they are defined (every other op has code)
            raise exc.CompileError(f"internal: {v.op} value used before definition", v.loc)
        return EMIT[v.op](self, v)
    def pow(self, x: str, y: str, v: I.Value) -> str:
        """torch.pow on floats: |x| ** y, negated for x < 0 and an odd integral y, NaN for x < 0 and a fractional y."""
        r, yi = self.fresh("pow"), self.fresh("integral")
        self.line(f"{r} = tl.exp2({y} * tl.log2(tl.abs({x})))", f"{yi} = {y} == tl.floor({y})")
        odd = f"({yi} & (tl.floor({y} * 0.5) * 2 != {y}))"
        neg = f"tl.where({yi}, tl.where({odd}, -{r}, {r}), float('nan'))"
        return f"tl.where({y} == 0, 1.0, tl.where({x} < 0, {neg}, {r}))"
    def floor_divmod(self, o: str, x: str, y: str, v: I.Value) -> str:
        """torch's // and % round toward -inf; Triton's (like C) truncate toward 0."""
        if v.type.dtype.is_floating_point:
            return f"tl.floor({x} / {y})" if o == "//" else f"({x} - {y} * tl.floor({x} / {y}))"
        if all(_nonneg(a) for a in v.args):
            return f"({x} {o} {y})"
        if o == "//":
            return f"(({x} // {y}) - ((({x} % {y}) != 0) & (({x} < 0) != ({y} < 0))).to({tl_dtype(v.type.dtype)}))"
        r = self.fresh("rem")
        self.line(f"{r} = {x} % {y}")
        return f"tl.where(({r} != 0) & (({r} < 0) != ({y} < 0)), {r} + {y}, {r})"
    def tile_attr(self, t: TileInfo, attr: str) -> str:
        if attr == "end":
            return f"tl.minimum({t.offset} + {t.block}, {self.bound(t.end)})"
        index = t.offset if t.is_grid else t.indices
        return {"index": index, "begin": t.offset, "id": f"({t.offset} // {t.block})"}[attr]
    def bound(self, b: Any) -> str: return self.name_of(b) if isinstance(b, I.Value) else str(b)
    def pointer_parts(self, idx: I.Index, ndim: int) -> tuple[str, str | None]:
        t, terms, masks, axis_of, pos = idx.tensor, [], [], {}, 0
        for o in idx.out:   # the first result axis of each indexed dim
            if o is None:
                pos += 1
            elif o in idx.joint[1:]:  # indexes jointly with the first: the same axes
                axis_of[o] = axis_of[idx.joint[0]]
            else:
                axis_of[o] = pos
                pos += idx.entries[o][1].type.ndim if idx.entries[o][0] == "block" else 1
        # a tensor whose offsets may pass 2**31 (index64: sizes and strides are in the launch key) widens every index
        wide = (lambda x: f"{x}.to(tl.int64)") if t.index64 else (lambda x: x)
        for dim, (kind, val) in enumerate(idx.entries):
            ax, stride = axis_of.get(dim), t.stride_code(dim)
            if kind == "tile" and val.is_grid:
                term = wide(val.offset)
            elif kind in ("tile", "rdim"):
                term = wide(self.bcast(val.indices if kind == "tile" else val.index, ax, ndim))
                if val.masked:
                    masks.append(self.bcast(val.mask, ax, ndim))
            elif kind == "scalar":
                if (term := self.name_of(val) if isinstance(val, I.Value) else str(val)) == "0":
                    continue
                term = wide(term) if isinstance(val, I.Value) else term
            else:  # block gather
                n, k = self.name_of(val), val.type.ndim
                if ndim > k:
                    n = f"{n}[{', '.join(['None'] * ax + [':'] * k + ['None'] * (ndim - ax - k))}]"
                term = wide(n)
                masks += [self.bcast(m, ax + j, ndim) for j, dd in enumerate(val.type.dims) if (m := self.dim_mask(dd))]
                if val.attrs.get("index_bound") is not None:  # a device-started slice: stop at the dim's end
                    masks.append(f"({n} < {val.attrs['index_bound']})")
            terms.append(term if stride == "1" else f"{term} * {stride}")
        if idx.extra_mask is not None:
            masks.append(self.name_of(idx.extra_mask))
        off = " + ".join(terms) or "0"
        lanes = [idx.entries[o] for o in idx.out if o is not None]
        if ndim and None in idx.out and all(k == "scalar" or (k == "tile" and x.is_grid) for k, x in lanes):
            # one-lane axes only (x[i, None]): a [1, ...] pointer block, not a scalar (Triton 3.9 refuses x[None] then)
            off = f"tl.zeros({[1] * ndim}, tl.int32) + ({off})"
        return f"{t.name} + ({off})", " & ".join(masks) or None
    def load(self, idx: I.Index, v: I.Value) -> str:
        if idx.descriptor:
            return self.desc_access(idx, v.type, None)
        ptr, mask = self.pointer_parts(idx, v.type.ndim)
        pol = self.cfg.get("load_eviction_policies") or []
        lid = self.d.load_base + v.attrs["load_id"] if "load_id" in v.attrs else -1
        ev = f", eviction_policy='evict_{pol[lid]}'" if 0 <= lid < len(pol) and pol[lid] else ""
        return f"tl.load({ptr}, {mask}, other=0{ev})" if mask else f"tl.load({ptr}{ev})"
    def desc_access(self, idx: I.Index, rtype: BlockT, value: str | None) -> str:
        t, block = idx.tensor, [val.block if kind in ("tile", "rdim") else 1 for kind, val in idx.entries]
        offs = [val.offset if kind == "tile" else "0" if kind == "rdim" else self.bound(val)
                for kind, val in idx.entries]
        dn = self.descs.get((t.name, tuple(block)))
        if dn is None:
            dn = self.descs[(t.name, tuple(block))] = f"{t.name}_desc_{len(self.descs)}"
            shape, strides = (", ".join(f(i) for i in range(t.ndim)) for f in (t.size_code, t.stride_code))
            self.desc_lines.append(f"{dn} = tl.make_tensor_descriptor({t.name}, shape=[{shape}], strides=[{strides}], "
                                   f"block_shape={block})")
        rshape = [self.dim_size(d) for d in rtype.dims]
        if value is None:
            out = f"{dn}.load([{', '.join(offs)}])"
            return out if rshape == block else f"tl.reshape({out}, {rshape})"
        full = f"tl.broadcast_to({value}, {rshape})"
        return f"{dn}.store([{', '.join(offs)}], {full if rshape == block else f'tl.reshape({full}, {block})'})"
    def store(self, s: I.Store) -> None:
        idx, k, dims = s.index, s.value.type.ndim, s.index.dims()
        val = self.name_of(s.value)
        if s.value.type.dtype != idx.tensor.dtype:
            val = f"{val}.to({tl_dtype(idx.tensor.dtype)})"
        self.src(s.loc)
        if idx.descriptor and not s.atomic:
            return self.line(self.desc_access(idx, BlockT(dims, idx.tensor.dtype), val))
        ptr, mask = self.pointer_parts(idx, len(dims))
        if 0 < k < len(dims):
            val = f"{val}[{', '.join(['None'] * (len(dims) - k) + [':'] * k)}]"
        if not s.atomic:
            return self.line(f"tl.store({ptr}, {val}{', ' + mask if mask else ''})")
        if s.atomic == "cas" and mask:  # tl.atomic_cas has no mask: out-of-range lanes would write
            raise exc.NotSupported("hl.atomic_cas on a masked (partial) tile; pick block sizes that divide", s.loc)
        res = self.fresh(f"old_{s.atomic}")
        args = f"{self.name_of(s.compare)}, {val}" if s.atomic == "cas" else f"{val}{', mask=' + mask if mask else ''}"
        self.line(f"{res} = tl.atomic_{s.atomic}({ptr}, {args}, sem={s.sem!r})")
        if s.result is not None:
            self.scopes[-1][s.result.id] = res
    def masked(self, x: I.Value, axis: int, fill: str, exempt: bool) -> str:
        """``x`` with the lanes that dim ``axis``'s mask drops set to ``fill`` (unless ``exempt``: they are)."""
        name, m, n = self.name_of(x), self.dim_mask(x.type.dims[axis]), x.type.ndim
        return name if m is None or exempt else f"tl.where({self.bcast(m, axis % n, n)}, {name}, {fill})"
    def reduce(self, v: I.Value) -> str:
        x, op, axis, keep, rd = v.args[0], v.attrs["op"], v.attrs["axis"], v.attrs["keepdim"], v.attrs["rdim"]
        dt = x.type.dtype
        # masked lanes take the op's neutral element (a sum's loaded lanes already are 0)
        fill, exempt = (NEUTRAL if dt.is_floating_point else INT_NEUTRAL)[op], op == "sum" and x.op == "load"
        if rd.kind != "rdim" or not self.d.rdims[rd.id].rolled:
            return self.reduce_call(op, dt, self.masked(x, axis, fill, exempt), axis, keep)
        # Rolled: half-precision chunks accumulate in fp32 (as torch and the persistent tl.sum do), and every
        # update is cast back: the masked select promotes bf16 to fp32, and a loop-carried value keeps its type.
        acc = self.fresh(f"{v.hint or op}_acc")
        half = dt in (torch.float16, torch.bfloat16)
        acc_dt = "tl.float32" if half else tl_dtype(dt)
        self.src(v.loc)
        self.line(f"{acc} = tl.full({self.shape(x.type)}, {fill}, {acc_dt})")
        with self.chunk_loop(self.d.rdims[rd.id]):
            inp, nan = self.masked(x, axis, fill, exempt), NAN if dt.is_floating_point else ""
            comb = f"{acc} + {inp}" if op == "sum" else f"tl.{op}imum({acc}, {inp}{nan})"   # tl.maximum, tl.minimum
            self.line(f"{acc} = ({comb}).to({acc_dt})")
        out = self.reduce_call(op, dt, acc, axis, keep)
        return f"{out}.to({tl_dtype(dt)})" if half else out
    def reduce_call(self, op: str, dtype: torch.dtype, inp: str, axis: int, keep: bool) -> str:
        """Triton's tl.max/tl.min drop NaN on the GPU (PTX max.f32); torch's amax/amin propagate it, so
        float max/min reduce with max.NaN/min.NaN (``tl.reduce`` with a helper: the same shuffle tree)."""
        if op in ("max", "min") and dtype.is_floating_point:
            self.nan_helpers.add(op)
            return f"tl.reduce({inp}, {axis}, _hl_{op}_nan, keep_dims={keep})"
        return f"{REDUCE_FN[op]}({inp}, {axis}, keep_dims={keep})"
    @contextlib.contextmanager
    def nest(self, header: str):
        self.line(header)
        self.ind += 1
        self.scopes.append({})
        yield
        self.scopes.pop()
        self.ind -= 1
        self.last_src = None
    @contextlib.contextmanager
    def chunk_loop(self, r: RDimInfo):
        with self.nest(f"for {r.offset} in tl.range(0, {r.extent}, {r.block}):"):
            self.arange(r.index, f"{r.offset} + ", r.block, r.mask if r.masked else None, r.extent)
            yield
    def arange(self, name: str, start: str, n: int, mask: str | None, end: Any) -> None:
        self.line(f"{name} = {start}tl.arange(0, {n})")
        if mask:
            self.line(f"{mask} = {name} < {self.bound(end)}")
    def tile_lines(self, t: TileInfo) -> None:
        self.arange(t.indices, f"{t.offset} + ", t.block, t.mask if t.masked else None, t.end)
    def dot(self, v: I.Value) -> str:
        a, b = v.args[0], v.args[1]
        an, bn = self.dot_operand(a, -1), self.dot_operand(b, -2)
        fp32 = a.type.dtype == torch.float32
        if self.target.interpreter and torch.bfloat16 in (a.type.dtype, b.type.dtype):
            # Triton's interpreter multiplies bf16 bit patterns as if they were numbers (1e8-1e10 results):
            # there, a bf16 dot runs on fp32 copies of its operands, which is exact for bf16 inputs.
            an, bn, fp32 = f"{an}.to(tl.float32)", f"{bn}.to(tl.float32)", True
        prec = ", input_precision='ieee'" if fp32 else ""
        if len(v.args) > 2:
            out = "" if v.type.dtype.is_floating_point else f", out_dtype={tl_dtype(v.type.dtype)}"
            return f"tl.dot({an}, {bn}, {self.name_of(v.args[2])}{prec}{out})"
        return f"tl.dot({an}, {bn}{prec}, out_dtype={tl_dtype(v.type.dtype)})"
    def dot_operand(self, x: I.Value, axis: int) -> str:
        """Masked contraction lanes must be zero; loads (other=0, TMA zero fill) and their transposes and casts are."""
        src = x
        while src.op in ("permute", "cast"):
            src = src.args[0]
        return self.masked(x, axis, "0", src.op == "load")
    def rolled_dim(self, dims: tuple[Dim, ...]) -> RDimInfo | None:
        return next((self.d.rdims[d.id] for d in dims if d.kind == "rdim" and self.d.rdims[d.id].rolled), None)
    def stmts(self, body: list[I.Stmt]) -> None:
        i = 0
        while i < len(body):
            s = body[i]
            i += 1
            if isinstance(s, I.Let):
                if self.lookup(s.value) is None and self.rolled_dim(s.value.type.dims) is None:
                    self.define(s.value)
            elif isinstance(s, I.Store) and (r := self.rolled_dim(s.index.dims())) is not None:
                # the stores over this rolled dim that follow share one chunk loop (rolled Lets between: lazily in it)
                group = [s]
                for nxt in body[i:]:
                    if isinstance(nxt, I.Store) and self.rolled_dim(nxt.index.dims()) is r:
                        group.append(nxt)
                    elif not (isinstance(nxt, I.Let) and self.rolled_dim(nxt.value.type.dims) is not None):
                        break
                    i += 1
                self.src(s.loc)
                with self.chunk_loop(r):
                    for g in group:
                        self.store(g)
            elif isinstance(s, I.Store):
                self.store(s)
            else:
                {I.For: self.for_loop, I.While: self.while_loop, I.If: self.if_stmt}[type(s)](s)
    def carry(self, s: "I.For | I.While | I.If") -> list[str]:
        self.src(s.loc)
        names = []
        for phi, init, *_ in s.merges if isinstance(s, I.If) else s.carried:
            names.append(self.fresh(phi.hint))
            self.line(f"{names[-1]} = {self.name_of(init)}")
            self.scopes[-1][phi.id] = names[-1]
        return names
    def for_loop(self, s: I.For) -> None:
        names = self.carry(s)
        with contextlib.ExitStack() as nests:
            for k, t in enumerate(s.tiles):
                knobs = range_knobs(self.cfg, self.d.loop_base + s.loop_id) if k == 0 else ""
                begin, end = self.bound(t.begin), self.bound(t.end)
                step = 1 if t.is_grid else t.block
                if s.reverse:
                    trips = _trips(begin, end, step)
                    nests.enter_context(self.nest(f"for {t.offset}_r in tl.range(0, {trips}{knobs}):"))
                    start = "" if begin == "0" else f"{_paren(begin)} + "
                    self.line(f"{t.offset} = {start}({trips} - 1 - {t.offset}_r) * {step}")
                else:
                    nests.enter_context(self.nest(
                        f"for {t.offset} in tl.range({begin}, {end}{'' if t.is_grid else f', {step}'}{knobs}):"))
                if not t.is_grid:
                    self.tile_lines(t)
            self.loop_body(s, names)
    def loop_body(self, s: "I.For | I.While", names: list[str]) -> None:
        self.stmts(s.body)
        for (_, _, final), n in zip(s.carried, names):
            self.line(f"{n} = {self.name_of(final)}")
    def while_loop(self, s: I.While) -> None:
        names = self.carry(s)
        with self.nest(f"while {self.name_of(s.cond)}:"):
            self.loop_body(s, names)
    def if_stmt(self, s: I.If) -> None:
        names = self.carry(s)
        for k, body in enumerate((s.then, s.orelse)):
            with self.nest("else:" if k else f"if {self.name_of(s.cond)}:"):
                self.line("pass")
                self.stmts(body)
                for quad, n in zip(s.merges, names):
                    self.line(f"{n} = {self.name_of(quad[2 + k])}")

RANGE_KNOBS = (("range_num_stages", "num_stages"), ("range_unroll_factors", "loop_unroll_factor"),
               ("range_warp_specializes", "warp_specialize"), ("range_flattens", "flatten"))

def range_knobs(cfg: Config, loop_id: int) -> str:
    """``, num_stages=3, ...``: the ``tl.range`` arguments the Config sets for inner loop ``loop_id``."""
    vals = [(arg, cfg.get(knob) or []) for knob, arg in RANGE_KNOBS]
    out = [f"{arg}={v[loop_id]!r}" for arg, v in vals if loop_id < len(v) and v[loop_id] not in (None, 0, False)]
    return (", " + ", ".join(out)) if out else ""

def _trips(begin: str, end: str, step: int) -> str:
    """Iterations of ``tl.range(begin, end, step)``, as a literal when both bounds are."""
    if begin.lstrip("-").isdigit() and end.lstrip("-").isdigit():
        return str(max(0, -(-(int(end) - int(begin)) // step)))
    span = _paren(end) if begin == "0" else f"{_paren(end)} - {_paren(begin)}"
    return f"tl.cdiv({span}, {step})" if step > 1 else f"({span})"

def _paren(e: str) -> str: return e if e.isidentifier() or e.lstrip("-").isdigit() else f"({e})"

def _nonneg(v: I.Value) -> bool:
    """Values known to be >= 0: non-negative constants, tile indices and offsets, aranges."""
    return (v.op == "const" and isinstance(v.args[0], (int, float)) and v.args[0] >= 0) \
        or v.op in ("tile_attr", "arange") or (v.op == "cast" and _nonneg(v.args[0])) \
        or (v.op == "binary" and v.attrs["op"] in ("+", "*", "//", "%") and all(_nonneg(a) for a in v.args))
