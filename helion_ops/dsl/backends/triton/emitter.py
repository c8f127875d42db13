"""Triton backend, the body: DeviceIR + Plan + Config -> Triton source text (one @triton.jit per device loop).

Values are emitted where the source defines them (``Let``), except values with
a rolled reduction dim: those are emitted lazily inside the chunk loop of the
reduction or store that needs them, recomputing (reloading) row-shaped inputs
per pass. Each statement group carries ``# src[file:line]``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ... import exc, ir as I
from ...config import Config
from ...target import Target
from ...types import BlockT, Dim, RDimInfo, TileInfo, tl_dtype
from ...opdefs import OPS
from .ops import EMIT, INT_NEUTRAL, NAN, NEUTRAL, REDUCE_FN
from .strategies import range_knobs

@dataclass
class Generated:
    """Generated source of one device loop and how to launch it."""

    fn_name: str
    source: str
    params: list[tuple[str, str, Any]]   # (param name, kind, source): kind in tensor|scalar
    signature: dict[str, str]
    grid: tuple[int, int, int] | str     # literal grid, or Python code over params
    num_warps: int
    num_stages: int
    uses_descriptors: bool = False
    interpreter_cannot: Any = None       # Loc of an op Triton's interpreter cannot run (inline PTX), else None

class Emitter:
    def __init__(self, d: I.DeviceIR, cfg: Config, pk_file: str, target: Target) -> None:
        self.d, self.cfg, self.file, self.target = d, cfg, os.path.basename(pk_file), target
        self.lines: list[str] = []
        self.ind = 1
        self.scopes: list[dict[int, str]] = [{}]
        self.used: dict[str, int] = {}
        self.last_src: int | None = None
        self.descs: dict[tuple, str] = {}
        self.desc_lines: list[str] = []
        self.idx64 = any(t.index64 for t in d.inputs.tensors)
        self.nan_helpers: set[str] = set()  # "max" / "min": NaN-propagating reductions used

    # ---- text -----------------------------------------------------------------------------
    def line(self, s: str) -> None:
        self.lines.append("    " * self.ind + s)

    def src(self, loc: exc.Loc | None) -> None:
        if loc is not None and loc.line != self.last_src:
            self.last_src = loc.line
            self.line(f"# src[{self.file}:{loc.line}]: {loc.text.strip()}")

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in (hint or "v")) or "v"
        if base[0].isdigit() or base in ("tl", "triton"):
            base = "v_" + base
        n = self.used.get(base, 0)
        self.used[base] = n + 1
        return f"{base}_{n}"

    def lookup(self, v: I.Value) -> str | None:
        for sc in reversed(self.scopes):
            if v.id in sc:
                return sc[v.id]
        return None

    # ---- dims -----------------------------------------------------------------------------
    def dim_size(self, d: Dim) -> int:
        if d.kind == "tile":
            return self.d.tiles[d.id].block
        if d.kind == "rdim":
            return self.d.rdims[d.id].block
        if d.kind == "block":
            return self.d.blocks[d.id]
        return 1

    def shape(self, t: BlockT) -> str:
        return "[" + ", ".join(str(self.dim_size(d)) for d in t.dims) + "]"

    def dim_mask(self, d: Dim) -> str | None:
        if d.kind == "tile":
            t = self.d.tiles[d.id]
            return t.mask if t.masked else None
        if d.kind == "rdim":
            r = self.d.rdims[d.id]
            return r.mask if r.masked else None
        return None

    @staticmethod
    def bcast(name: str, axis: int, ndim: int) -> str:
        if ndim <= 1:
            return name
        return f"{name}[{', '.join(':' if i == axis else 'None' for i in range(ndim))}]"

    # ---- values ---------------------------------------------------------------------------
    def name_of(self, v: I.Value) -> str:
        n = self.lookup(v)
        if n is not None:
            return n
        return self.define(v)

    def define(self, v: I.Value) -> str:
        expr = self.expr(v)
        if OPS[v.op].flag("inline", v):
            self.scopes[-1][v.id] = expr
            return expr
        name = self.fresh(v.hint or v.op)
        self.src(v.loc)
        self.line(f"{name} = {expr}")
        self.scopes[-1][v.id] = name
        return name

    def expr(self, v: I.Value) -> str:
        """The Triton expression of ``v`` (statements it needs first go out through ``line``)."""
        fn = EMIT.get(v.op)
        if fn is None:
            if v.op in ("phi", "atomic_result"):
                raise exc.CompileError(f"internal: {v.op} value used before definition", v.loc)
            raise exc.CompileError(f"internal: no Triton code for op {v.op}", v.loc)
        return fn(self, v)

    def pow(self, x: str, y: str, v: I.Value) -> str:
        """torch.pow for float operands: |x| ** y via exp2/log2, negated for a negative base and an odd
        integral exponent, NaN for a negative base and a fractional one, 1 for a zero exponent."""
        r, yi = self.fresh("pow"), self.fresh("integral")
        self.line(f"{r} = tl.exp2({y} * tl.log2(tl.abs({x})))")
        self.line(f"{yi} = {y} == tl.floor({y})")
        odd = f"({yi} & (tl.floor({y} * 0.5) * 2 != {y}))"
        neg = f"tl.where({yi}, tl.where({odd}, -{r}, {r}), float('nan'))"
        return f"tl.where({y} == 0, 1.0, tl.where({x} < 0, {neg}, {r}))"

    def floor_divmod(self, o: str, x: str, y: str, v: I.Value) -> str:
        """torch's // and % round toward -inf; Triton's (like C) truncate toward 0."""
        a, b = v.args
        if v.type.dtype.is_floating_point:
            return f"tl.floor({x} / {y})" if o == "//" else f"({x} - {y} * tl.floor({x} / {y}))"
        if _nonneg(a) and _nonneg(b):
            return f"({x} {o} {y})"
        if o == "//":
            return f"(({x} // {y}) - ((({x} % {y}) != 0) & (({x} < 0) != ({y} < 0))).to({tl_dtype(v.type.dtype)}))"
        r = self.fresh("rem")
        self.line(f"{r} = {x} % {y}")
        return f"tl.where(({r} != 0) & (({r} < 0) != ({y} < 0)), {r} + {y}, {r})"

    def tile_attr(self, t: TileInfo, attr: str) -> str:
        if attr == "index":
            return t.indices if not t.is_grid else t.offset
        if attr == "begin":
            return t.offset
        if attr == "end":
            return f"tl.minimum({t.offset} + {t.block}, {self.bound(t.end)})"
        if attr == "id":
            return f"({t.offset} // {t.block})"
        raise exc.CompileError(f"internal: tile attr {attr}")

    def bound(self, b: Any) -> str:
        return self.name_of(b) if isinstance(b, I.Value) else str(b)

    # ---- memory ---------------------------------------------------------------------------
    def pointer_parts(self, idx: I.Index, ndim: int) -> tuple[str, str | None]:
        t = idx.tensor
        terms, masks = [], []
        axis_of = {}
        pos = 0
        for o in idx.out:
            if o is None:
                pos += 1
                continue
            kind, val = idx.entries[o]
            if o in idx.joint[1:]:  # indexes jointly with the first: the same axes
                axis_of[o] = axis_of[idx.joint[0]]
                continue
            axis_of[o] = pos
            pos += val.type.ndim if kind == "block" else 1
        # A tensor whose offsets may pass 2**31 (TensorArg.index64, from its sizes and strides,
        # which are part of the launch key) gets every index widened before it is scaled.
        wide = (lambda x: f"{x}.to(tl.int64)") if t.index64 else (lambda x: x)
        for dim, (kind, val) in enumerate(idx.entries):
            stride = t.stride_code(dim)
            mul = "" if stride == "1" else f" * {stride}"
            if kind == "tile":
                if val.is_grid:
                    terms.append(f"{wide(val.offset)}{mul}")
                    continue
                ax = axis_of[dim]
                terms.append(f"{wide(self.bcast(val.indices, ax, ndim))}{mul}")
                if val.masked:
                    masks.append(self.bcast(val.mask, ax, ndim))
            elif kind == "rdim":
                ax = axis_of[dim]
                terms.append(f"{wide(self.bcast(val.index, ax, ndim))}{mul}")
                if val.masked:
                    masks.append(self.bcast(val.mask, ax, ndim))
            elif kind == "scalar":
                s = self.name_of(val) if isinstance(val, I.Value) else str(val)
                if s != "0":
                    terms.append(f"{wide(s) if isinstance(val, I.Value) else s}{mul}")
            else:  # block gather
                ax, k = axis_of[dim], val.type.ndim
                n = self.name_of(val)
                if ndim > k:
                    n = f"{n}[{', '.join(['None'] * ax + [':'] * k + ['None'] * (ndim - ax - k))}]"
                terms.append(f"{wide(n)}{mul}")
                for j, dd in enumerate(val.type.dims):
                    m = self.dim_mask(dd)
                    if m:
                        masks.append(self.bcast(m, ax + j, ndim))
                if val.attrs.get("index_bound") is not None:  # a device-started slice: stop at the dim's end
                    masks.append(f"({n} < {val.attrs['index_bound']})")
        if idx.extra_mask is not None:
            masks.append(self.name_of(idx.extra_mask))
        off = " + ".join(terms) if terms else "0"
        if ndim and any(o is None for o in idx.out) and not any(
                idx.entries[o][0] != "scalar" and not (idx.entries[o][0] == "tile" and idx.entries[o][1].is_grid)
                for o in idx.out if o is not None):
            # only one-lane axes (w[:] with one element, x[i, None]): a [1, ...] pointer block, not a
            # scalar, so the value has the rank its type says (Triton 3.9 refuses x[None] on a scalar)
            off = f"tl.zeros({[1] * ndim}, tl.int32) + ({off})"
        return f"{t.name} + ({off})", (" & ".join(masks) if masks else None)

    def load(self, idx: I.Index, v: I.Value) -> str:
        if idx.descriptor:
            return self.desc_access(idx, v.type, None)
        ptr, mask = self.pointer_parts(idx, v.type.ndim)
        pol = (self.cfg.get("load_eviction_policies") or [])
        lid = self.d.load_base + v.attrs["load_id"] if "load_id" in v.attrs else -1
        ev = pol[lid] if 0 <= lid < len(pol) and pol[lid] else ""
        extra = f", eviction_policy='evict_{ev}'" if ev else ""
        if mask:
            return f"tl.load({ptr}, {mask}, other=0{extra})"
        return f"tl.load({ptr}{extra})"

    def desc_access(self, idx: I.Index, rtype: BlockT, value: str | None) -> str:
        t = idx.tensor
        block = []
        offs = []
        for kind, val in idx.entries:
            if kind == "tile":
                block.append(val.block)
                offs.append(val.offset)
            elif kind == "rdim":
                block.append(val.block)
                offs.append("0")
            else:
                block.append(1)
                offs.append(self.name_of(val) if isinstance(val, I.Value) else str(val))
        key = (t.name, tuple(block))
        if key not in self.descs:
            dn = f"{t.name}_desc_{len(self.descs)}"
            self.descs[key] = dn
            shape = ", ".join(t.size_code(i) for i in range(t.ndim))
            strides = ", ".join(t.stride_code(i) for i in range(t.ndim))
            self.desc_lines.append(f"{dn} = tl.make_tensor_descriptor({t.name}, shape=[{shape}], "
                                   f"strides=[{strides}], block_shape={block})")
        dn = self.descs[key]
        rshape = [self.dim_size(d) for d in rtype.dims]
        if value is None:
            out = f"{dn}.load([{', '.join(offs)}])"
            return out if rshape == block else f"tl.reshape({out}, {rshape})"
        full = f"tl.broadcast_to({value}, {rshape})"
        if rshape != block:
            full = f"tl.reshape({full}, {block})"
        return f"{dn}.store([{', '.join(offs)}], {full})"

    def store(self, s: I.Store) -> None:
        idx = s.index
        dims = idx.dims()
        val = self.name_of(s.value)
        if s.value.type.dtype != idx.tensor.dtype:
            val = f"{val}.to({tl_dtype(idx.tensor.dtype)})"
        self.src(s.loc)
        if idx.descriptor and not s.atomic:
            self.line(self.desc_access(idx, BlockT(dims, idx.tensor.dtype), val))
            return
        ptr, mask = self.pointer_parts(idx, len(dims))
        if len(s.value.type.dims) < len(dims) and len(s.value.type.dims) > 0:
            k = len(dims) - len(s.value.type.dims)
            val = f"{val}[{', '.join(['None'] * k + [':'] * len(s.value.type.dims))}]"
        m = f", {mask}" if mask else ""
        if s.atomic:
            res = self.fresh(f"old_{s.atomic}")
            if s.atomic == "cas":  # tl.atomic_cas has no mask: out-of-range lanes would write
                if mask:
                    raise exc.NotSupported("hl.atomic_cas on a masked (partial) tile; pick block sizes that divide", s.loc)
                self.line(f"{res} = tl.atomic_cas({ptr}, {self.name_of(s.compare)}, {val}, sem={s.sem!r})")
            else:
                self.line(f"{res} = tl.atomic_{s.atomic}({ptr}, {val}{', mask=' + mask if mask else ''}, sem={s.sem!r})")
            if s.result is not None:
                self.scopes[-1][s.result.id] = res
            return
        self.line(f"tl.store({ptr}, {val}{m})")

    # ---- reductions -----------------------------------------------------------------------
    def masked_input(self, x: I.Value, axis: int, op: str) -> str:
        """Before reducing over a masked dim, fill masked lanes with the op's neutral element."""
        name = self.name_of(x)
        m = self.dim_mask(x.type.dims[axis])
        if m is None or (op == "sum" and x.op == "load"):
            return name
        neutral = (NEUTRAL if x.type.dtype.is_floating_point else INT_NEUTRAL)[op]
        return f"tl.where({self.bcast(m, axis, x.type.ndim)}, {name}, {neutral})"

    def reduce(self, v: I.Value) -> str:
        x = v.args[0]
        op, axis, keep = v.attrs["op"], v.attrs["axis"], v.attrs["keepdim"]
        rd: Dim = v.attrs["rdim"]
        if rd.kind == "rdim" and self.d.rdims[rd.id].rolled:
            return self.rolled_reduce(v, self.d.rdims[rd.id])
        inp = self.masked_input(x, axis, op)
        return self.reduce_call(op, x.type.dtype, inp, axis, keep)

    def reduce_call(self, op: str, dtype: torch.dtype, inp: str, axis: int, keep: bool) -> str:
        """Triton's tl.max/tl.min drop NaN on the GPU (PTX max.f32); torch's amax/amin propagate it, so
        float max/min reduce with max.NaN/min.NaN (``tl.reduce`` with a helper: the same shuffle tree)."""
        if op in ("max", "min") and dtype.is_floating_point:
            self.nan_helpers.add(op)
            return f"tl.reduce({inp}, {axis}, _hl_{op}_nan, keep_dims={keep})"
        return f"{REDUCE_FN[op]}({inp}, {axis}, keep_dims={keep})"

    def rolled_reduce(self, v: I.Value, r: RDimInfo) -> str:
        x = v.args[0]
        op, axis, keep = v.attrs["op"], v.attrs["axis"], v.attrs["keepdim"]
        acc = self.fresh(f"{v.hint or op}_acc")
        neutral = (NEUTRAL if x.type.dtype.is_floating_point else INT_NEUTRAL)[op]
        # Half-precision chunks accumulate in fp32 (as torch and the persistent tl.sum do), and
        # every update is cast back: the masked select promotes bf16 to fp32, and a loop-carried
        # value must keep its type.
        half = x.type.dtype in (torch.float16, torch.bfloat16)
        acc_dt = "tl.float32" if half else tl_dtype(x.type.dtype)
        self.src(v.loc)
        self.line(f"{acc} = tl.full({self.shape(x.type)}, {neutral}, {acc_dt})")
        self.open_chunk_loop(r)
        inp = self.masked_input(x, axis, op)
        nan = NAN if x.type.dtype.is_floating_point else ""
        comb = {"sum": f"{acc} + {inp}", "max": f"tl.maximum({acc}, {inp}{nan})",
                "min": f"tl.minimum({acc}, {inp}{nan})"}[op]
        self.line(f"{acc} = ({comb}).to({acc_dt})")
        self.close_chunk_loop()
        out = self.reduce_call(op, x.type.dtype, acc, axis, keep)
        return f"{out}.to({tl_dtype(x.type.dtype)})" if half else out

    def open_chunk_loop(self, r: RDimInfo) -> None:
        self.line(f"for {r.offset} in tl.range(0, {r.extent}, {r.block}):")
        self.ind += 1
        self.scopes.append({})
        self.line(f"{r.index} = {r.offset} + tl.arange(0, {r.block})")
        if r.masked:
            self.line(f"{r.mask} = {r.index} < {r.extent}")

    def close_chunk_loop(self) -> None:
        self.scopes.pop()
        self.ind -= 1
        self.last_src = None

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
        """Masked contraction lanes must be zero; loads already are (other=0, or TMA zero fill),
        and so are transposes and casts of loads."""
        name = self.name_of(x)
        m = self.dim_mask(x.type.dims[axis])
        src = x
        while src.op in ("permute", "cast"):
            src = src.args[0]
        if m is None or src.op == "load":
            return name
        return f"tl.where({self.bcast(m, axis % x.type.ndim, x.type.ndim)}, {name}, 0)"

    # ---- statements -----------------------------------------------------------------------
    def rolled_dim(self, t: BlockT) -> RDimInfo | None:
        for d in t.dims:
            if d.kind == "rdim" and self.d.rdims[d.id].rolled:
                return self.d.rdims[d.id]
        return None

    def stmts(self, body: list[I.Stmt]) -> None:
        i = 0
        while i < len(body):
            s = body[i]
            if isinstance(s, I.Let):
                if self.lookup(s.value) is None and self.rolled_dim(s.value.type) is None:
                    self.define(s.value)
            elif isinstance(s, I.Store):
                r = self.rolled_dim(BlockT(s.index.dims(), s.value.type.dtype))
                if r is not None:
                    group = [s]
                    j = i + 1
                    while j < len(body) and isinstance(body[j], (I.Store, I.Let)):
                        if isinstance(body[j], I.Store):
                            if self.rolled_dim(BlockT(body[j].index.dims(), torch.float32)) is not r:
                                break
                            group.append(body[j])
                        elif self.rolled_dim(body[j].value.type) is None:
                            break
                        j += 1
                    self.src(s.loc)
                    self.open_chunk_loop(r)
                    for g in group:
                        self.store(g)
                    self.close_chunk_loop()
                    i = j
                    continue
                self.store(s)
            elif isinstance(s, I.For):
                self.for_loop(s)
            elif isinstance(s, I.While):
                self.while_loop(s)
            elif isinstance(s, I.If):
                self.if_stmt(s)
            i += 1

    def carried_init(self, phi: I.Value, init: I.Value) -> str:
        name = self.fresh(phi.hint)
        self.line(f"{name} = {self.name_of(init)}")
        self.scopes[-1][phi.id] = name
        return name

    def for_loop(self, s: I.For) -> None:
        self.src(s.loc)
        names = [self.carried_init(phi, init) for phi, init, _ in s.carried]
        for k, t in enumerate(s.tiles):
            knobs = range_knobs(self.cfg, self.d.loop_base + s.loop_id) if k == 0 else ""
            begin, end = self.bound(t.begin), self.bound(t.end)
            step = 1 if t.is_grid else t.block
            if s.reverse:
                # the same tiles, last first: offset = begin + (trips - 1 - r) * step
                trips = _trips(begin, end, step)
                self.line(f"for {t.offset}_r in tl.range(0, {trips}{knobs}):")
                self.ind += 1
                start = "" if begin == "0" else f"{_paren(begin)} + "
                self.line(f"{t.offset} = {start}({trips} - 1 - {t.offset}_r) * {step}")
            else:
                self.line(f"for {t.offset} in tl.range({begin}, {end}{'' if t.is_grid else f', {step}'}{knobs}):")
                self.ind += 1
            if not t.is_grid:
                self.line(f"{t.indices} = {t.offset} + tl.arange(0, {t.block})")
                if t.masked:
                    self.line(f"{t.mask} = {t.indices} < {end}")
        self.loop_body(s, names)
        self.ind -= len(s.tiles)
        self.last_src = None

    def loop_body(self, s: "I.For | I.While", names: list[str]) -> None:
        """A loop's body in its own scope, then each carried value's next-iteration assignment."""
        self.scopes.append({})
        self.stmts(s.body)
        for (_, _, final), n in zip(s.carried, names):
            self.line(f"{n} = {self.name_of(final)}")
        self.scopes.pop()

    def while_loop(self, s: I.While) -> None:
        self.src(s.loc)
        names = [self.carried_init(phi, init) for phi, init, _ in s.carried]
        self.line(f"while {self.name_of(s.cond)}:")
        self.ind += 1
        self.loop_body(s, names)
        self.ind -= 1
        self.last_src = None

    def if_stmt(self, s: I.If) -> None:
        self.src(s.loc)
        names = [self.carried_init(m, init) for m, init, _, _ in s.merges]
        self.line(f"if {self.name_of(s.cond)}:")
        for body, pos in ((s.then, 2), (s.orelse, 3)):
            if body is s.orelse:
                self.line("else:")
            self.ind += 1
            self.scopes.append({})
            self.line("pass")
            self.stmts(body)
            for quad, n in zip(s.merges, names):
                self.line(f"{n} = {self.name_of(quad[pos])}")
            self.scopes.pop()
            self.ind -= 1
        self.last_src = None

def _trips(begin: str, end: str, step: int) -> str:
    """Iterations of ``tl.range(begin, end, step)``, as a literal when both bounds are."""
    if begin.lstrip("-").isdigit() and end.lstrip("-").isdigit():
        return str(max(0, -(-(int(end) - int(begin)) // step)))
    span = _paren(end) if begin == "0" else f"{_paren(end)} - {_paren(begin)}"
    return f"tl.cdiv({span}, {step})" if step > 1 else f"({span})"

def _paren(e: str) -> str:
    return e if e.isidentifier() or e.lstrip("-").isdigit() else f"({e})"

def _nonneg(v: I.Value) -> bool:
    """Values known to be >= 0: non-negative constants, tile indices and offsets, aranges."""
    if v.op == "const":
        return isinstance(v.args[0], (int, float)) and v.args[0] >= 0
    if v.op in ("tile_attr", "arange"):
        return True
    if v.op == "binary" and v.attrs["op"] in ("+", "*", "//", "%"):
        return all(_nonneg(a) for a in v.args)
    return v.op == "cast" and _nonneg(v.args[0])


