"""Gluon backend: a lowered device loop + Plan + Config -> a warp-specialized ``@gluon.jit`` kernel (sm_90). A
one-warp producer issues with TMA the loads that only feed ``hl.dot`` (an inner tile loop's into 2-slot rings);
``gluon_consumers`` warpgroups run the rest as the Triton backend's code on Gluon's namesakes, every 2-D value in one
wgmma layout ``L``, 1-D values in its row or column slice (docs/ARCHITECTURE.md; API: bench/gluon_attention.py)."""
from __future__ import annotations

import functools
import math

import torch

from ... import exc, ir as I
from ...config import Config
from ...target import Target
from ...types import SIGNATURE_DTYPE, tl_dtype
from ..triton.emitter import Emitter, Generated
from ..triton.kernel import program_ids
from ..triton.ops import NAN_REDUCE_HELPERS, NEUTRAL
from . import overlap

PRELUDE = """import types

import triton.language as _tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                              warpgroup_mma_wait)

# The Triton backend's op code (tl.where, tl.exp2, tl.sum, ...) runs on Gluon's namesakes.
tl = types.ModuleType("tl")
tl.__dict__.update({k: v for k, v in vars(gl).items() if not k.startswith("__")})
tl.PropagateNan = _tl.PropagateNan


"""
NUM_BUF = 2             # ring slots per pipelined load: the next block loads while this one computes
PRODUCER_REGS, CONSUMER_REGS = 24, 240   # setmaxnreg budgets (the probe's): the producer only issues TMA
OPS = {"phi", "const", "param", "tile_attr", "load", "binary", "unary", "cast", "where", "reduce", "dot", "full",
       "arange", "view", "permute"}
F32 = torch.float32
_SLICE = {0: "COL", 1: "ROW"}   # SliceLayout(1, L): one value per row; SliceLayout(0, L): per column

def _refuse(what: str, loc) -> exc.NotSupported:
    return exc.NotSupported(f"the Gluon backend (Config backend='gluon') does not cover {what}; use "
                            f"backend='triton' for this kernel", loc)

class Smem:
    """A load served from shared memory (TMA descriptor, buffer, barriers); a row tile's is split per consumer."""
    def __init__(self, v: I.Value, ring: bool, em: "GluonEmitter") -> None:
        self.v, self.idx, self.ring, self.name = v, v.args[0], ring, ""
        self.block = [x.block if kind in ("tile", "rdim") else 1 for kind, x in self.idx.entries]
        self.rows = next((i for i, (kind, x) in enumerate(self.idx.entries) if kind == "tile" and x is em.row), None)
        self.split = self.rows is not None
        if self.split:
            self.block[self.rows] //= em.nc
        self.nbytes = math.prod(self.block) * self.idx.tensor.dtype.itemsize * (em.nc if self.split else 1)

class GluonEmitter(Emitter):
    def __init__(self, d: I.DeviceIR, cfg: Config, file: str, target: Target) -> None:
        super().__init__(d, cfg, file, target)
        self.nc = int(cfg.get("gluon_consumers", 2))
        self.row = next((t for t in d.grid if not t.is_grid), None)
        if self.row is None:
            raise _refuse("a launch grid without a tile of rows (hl.tile over the first grid dim)", None)
        if self.row.block < 64 * self.nc:
            # a consumer warpgroup's wgmma covers 64 rows: a shorter row block (a short extent clamps it)
            # grows to that under this Plan, its extra rows masked (TMA zero-fills them, stores skip them)
            self.row.block, self.row.masked = 64 * self.nc, True
        self.smem: dict[int, Smem] = {}
        self.pending: dict[int, tuple[str, str]] = {}  # value id -> (its wait, its shared-memory ref)
        self.lay1d: dict[str, int] = {}     # tile index and mask names -> their SliceLayout dim
        self.dots: list[I.Value] = []         # gluon_mma_ahead (see define): the dots of the loop being emitted,
        self.lazy: dict[int, tuple] = {}      # those issued, not waited for, in issue order -> (deps, A in regs, dot)
        self.partition()
    def is_row(self, d) -> bool: return d.kind == "tile" and d.id == self.row.id
    def partition(self) -> None:
        """Check the subset and pick the loads the producer serves (see the module notes)."""
        users: dict[int, list[I.Value]] = {}
        for v in I.all_values(self.d.body):
            if v.op not in OPS:
                raise _refuse(f"the op {v.op!r}", v.loc)
            if v.op == "load":
                v.args[0].descriptor = False   # pointer loads in registers; TMA is the producer's
            for a in v.inputs():
                users.setdefault(a.id, []).append(v)
        if any(r.rolled for r in self.d.rdims.values()):
            raise _refuse("a reduction rolled into chunks (reduction_loops)", None)
        # an outer hl.grid loop (attention dK/dV's over a GQA group) may hold tile loops; the loops go no deeper
        top = {id(s) for s in self.d.body}   # statements by identity (dataclasses compare by value)
        grids = {id(s) for s in self.d.body if isinstance(s, I.For) and s.tiles[0].is_grid}
        for s in I.walk(self.d.body):
            loop = isinstance(s, I.For)
            bad = ("a device-side while loop or if statement" if isinstance(s, (I.While, I.If)) else
                   f"atomic_{s.atomic}" if isinstance(s, I.Store) and s.atomic else
                   "an hl.grid loop inside a loop" if loop and s.tiles[0].is_grid and id(s) not in grids else
                   "an inner loop over several tiles" if loop and len(s.tiles) != 1 else
                   "an inner loop run last to first (range_reverses)" if loop and s.reverse else
                   "nested inner loops" if loop and id(s) not in grids
                   and any(isinstance(x, I.For) for x in I.walk(s.body)) else None)
            if bad:
                raise _refuse(bad, s.loc)
            if isinstance(s, I.Store):
                s.index.descriptor = False
        for v in I.all_values(self.d.body):
            # each consumer holds its own rows: nothing may combine rows of the block
            if self.nc > 1 and ((v.op == "reduce" and self.is_row(v.args[0].type.dims[v.attrs["axis"]]))
                                or (v.op == "dot" and self.is_row(v.args[0].type.dims[-1]))):
                raise _refuse(f"{'a reduction' if v.op == 'reduce' else 'an hl.dot contracting'} over the row "
                              f"tile with gluon_consumers=2 (each consumer holds half of its rows)", v.loc)
            for a in v.args[:2] if v.op == "dot" else []:
                if a.type.dtype not in (torch.float16, torch.bfloat16):
                    raise _refuse(f"hl.dot on {a.type.dtype} operands (wgmma takes fp16/bf16)", v.loc)
        def dot_only(v: I.Value, left: bool = False) -> bool:
            """Used only as an hl.dot operand (only as the left one: ``left``), directly or transposed."""
            us = users.get(v.id, [])
            return bool(us) and all((u.op == "dot" and v not in u.args[2:] and (u.args[0] is v) != (u.args[1] is v)
                                     and (u.args[0] is v or not left)) or (u.op == "permute" and dot_only(u, left))
                                    for u in us)
        def tma_ok(v: I.Value, tile) -> bool:
            idx = v.args[0]
            kinds, (last, x) = [k for k, _ in idx.entries], idx.entries[-1]
            return (idx.tensor.descriptor_ok and idx.tensor.dtype.itemsize == 2 and idx.extra_mask is None
                    and "block" not in kinds and ("tile", tile) in idx.entries and v.type.ndim == 2
                    and list(idx.out) == [i for i, k in enumerate(kinds) if k != "scalar"]
                    # a tile of the row block is split between the consumers: only a left operand may be
                    and dot_only(v, left=("tile", self.row) in idx.entries)
                    and (last != "tile" or x.block * idx.tensor.dtype.itemsize >= 16))   # TMA rows: 16 bytes at least
        names: dict[tuple, str] = {}   # in a grid loop, only its tile loops' loads (the rest load anew, in registers)
        flat = [x for s in self.d.body for x in (s.body if id(s) in grids else [s])]
        for s in [x for x in flat if id(x) in top or isinstance(x, I.For)]:
            ring, seen = isinstance(s, I.For), {}
            for v in [x.value for x in (s.body if ring else [s]) if isinstance(x, I.Let)]:
                if v.op == "load" and tma_ok(v, s.tiles[0] if ring else self.row):
                    m = self.smem[v.id] = Smem(v, ring, self)
                    # the loops of one kernel (causal attention's two) share a ring per tensor and block
                    t = m.idx.tensor.name
                    seen[t] = seen.get(t, -1) + 1
                    key = (t, tuple(m.block), ring, m.split, seen[t] if ring else len(names))
                    m.name = names.setdefault(key, f"{t}_{'ring' if ring else 'tile'}{len(names)}")
        if not any(m.ring for m in self.smem.values()):
            raise _refuse("a kernel without an inner tile loop whose hl.dot operands it can load with TMA "
                          "(16-bit tensors, last stride 1)", self.d.body[0].loc if self.d.body else None)
        for v in I.all_values(self.d.body):
            if v.op == "dot" and not self.in_smem(v.args[1]):
                raise _refuse("an hl.dot whose right operand is not a tile loaded from memory "
                              "(wgmma reads it from shared memory)", v.loc)
    def dim_size(self, d) -> int: return super().dim_size(d) // (self.nc if self.is_row(d) else 1)
    def bcast(self, name: str, axis: int, ndim: int) -> str:
        if ndim > 1 and self.lay1d.get(name, 1 - axis) != 1 - axis:
            name = f"gl.convert_layout({name}, {_SLICE[1 - axis]})"
        return super().bcast(name, axis, ndim)
    def name_of(self, v: I.Value) -> str:
        if v.id in self.lazy and self.lookup(v) is None:   # a dot's wait where its value is first used (define)
            ids = list(self.lazy)   # wgmmas complete in issue order: ``later`` younger ones may stay in flight
            (deps, reg, _), later = self.lazy.pop(v.id), len(ids) - 1 - ids.index(v.id)
            out = self.fresh("mma_out")
            self.line(f"{out}{deps[deps.index(','):] if reg else ''} = warpgroup_mma_wait({later}, deps=({deps}))")
            self.scopes[-1][v.id] = out
            return out
        if v.id in self.pending and self.lookup(v) is None:
            wait, ref = self.pending[v.id]
            self.line(wait)
            self.scopes[0 if not self.smem[v.id].ring else -1][v.id] = ref
            return ref
        return super().name_of(v)
    def expr(self, v: I.Value) -> str:
        if v.op == "full" and v.type.dims:
            if v.type.ndim > 2:
                raise _refuse(f"a {v.type.ndim}-D value (2-D tiles only)", None)
            lay = "L" if v.type.ndim == 2 else _SLICE[int(self.is_row(v.type.dims[0]))]
            if isinstance(v.args[0], I.Value):
                return f"gl.full({self.shape(v.type)}, 0, {tl_dtype(v.type.dtype)}, {lay}) + {self.name_of(v.args[0])}"
            return super().expr(v)[:-1] + f", {lay})"
        if v.op == "arange":
            raise _refuse("hl.arange (tile indices cover the subset)", v.loc)
        if v.op == "view" and v.args[0].type.ndim == 1 and v.type.ndim == 2:
            x, want = v.args[0], 1 if v.attrs["axes"][0] else 0
            n = self.name_of(x)
            if int(self.is_row(x.type.dims[0])) != want:
                n = f"gl.convert_layout({n}, {_SLICE[want]})"
            return n + ("[:, None]" if want == 1 else "[None, :]")
        if v.op == "permute" and v.args[0].id in self.smem:
            return f"{self.name_of(v.args[0])}.permute((1, 0))"
        if v.op == "load" and v.id in self.smem:
            return self.name_of(v)
        return super().expr(v)
    def reduce(self, v: I.Value) -> str:
        """fp32 max/min(y * c), c a scalar: max/min(y) * c for 0 < c < inf (the same bits: rounding is monotone), so
        y * c's other use fuses into an FMA. Other c multiply in PTX, lest LLVM's PRE share it and split that FMA."""
        x, op, axis, keep = v.args[0], v.attrs["op"], v.attrs["axis"], v.attrs["keepdim"]
        y, c = sorted(x.args, key=lambda a: -a.type.ndim) if x.op == "binary" and x.attrs["op"] == "*" else (x, x)
        if op not in ("max", "min") or c.type.ndim or not y.type.ndim or {a.type.dtype for a in (x, y, c)} != {F32}:
            return super().reduce(v)
        r, cn, m, fill = self.fresh(v.hint or op), self.name_of(c), self.dim_mask(y.type.dims[axis]), NEUTRAL[op]
        prod = f'tl.inline_asm_elementwise("mul.rn.f32 $0, $1, $2;", "=r,r,r", [{self.name_of(y)}, {cn}], ' \
               'dtype=tl.float32, is_pure=True, pack=1)'
        prod = f"tl.where({self.bcast(m, axis % y.type.ndim, y.type.ndim)}, {prod}, {fill})" if m else prod
        fast = self.reduce_call(op, y.type.dtype, self.masked(y, axis, fill, False), axis, keep)
        self.line(f"if ({cn} > 0) & ({cn} < float('inf')):", f"    {r} = {fast} * {cn}",
                  "else:", f"    {r} = {self.reduce_call(op, y.type.dtype, prod, axis, keep)}")
        return r
    def mma(self, a: str, b: str, v: I.Value, reg: bool) -> str:
        """Issue dot ``v``'s wgmma (``reg``: left operand ``a`` in registers, laid out first); its wait's deps."""
        if reg:
            a, x = self.fresh("dot_a"), a
            self.line(f"{a} = gl.convert_layout({x}, gl.DotOperandLayout(operand_index=0, parent=L, k_width=2))")
        acc = self.name_of(v.args[2]) if v.args[2:] else f"gl.zeros({self.shape(v.type)}, gl.float32, L), use_acc=False"
        tok = self.fresh("mma")
        self.line(f"{tok} = warpgroup_mma({a}, {b}, {acc}, is_async=True)")
        return f"{tok}, {a}" if reg else f"{tok}, "
    def in_smem(self, x: I.Value) -> bool: return (x.args[0] if x.op == "permute" else x).id in self.smem
    def define(self, v: I.Value) -> str:
        """``gluon_mma_ahead``: a dot's wgmma is issued here, and with it the loop's first later dot whose operands are
        both tiles in shared memory, with no accumulator (attention's dP beside S, as FlashAttention-3's backward);
        each is waited for where its value is first used (``name_of``): the wgmmas run beside the code between."""
        if v.op != "dot" or not self.cfg.get("gluon_mma_ahead", False) or v not in self.dots:
            return super().define(v)   # a dot outside a loop is waited for at once
        later = self.dots[self.dots.index(v) + 1:] if v.id not in self.lazy else []
        w = next((w for w in later if len(w.args) == 2 and self.in_smem(w.args[0]) and self.in_smem(w.args[1])), None)
        for x in (v, w):
            if x is not None and x.id not in self.lazy and self.lookup(x) is None:
                reg = not self.in_smem(x.args[0])
                self.lazy[x.id] = (self.mma(self.dot_operand(x.args[0], -1) if reg else self.name_of(x.args[0]),
                                            self.name_of(x.args[1]), x, reg), reg, x)
        return ""
    def dot(self, v: I.Value, then=None) -> str:
        """``v``'s wgmma, waited for (fp32 out); ``then()`` runs between, its wgmma left in flight by the wait."""
        reg = not self.in_smem(a := v.args[0])
        deps = self.mma(self.dot_operand(a, -1) if reg else self.name_of(a), self.name_of(v.args[1]), v, reg)
        if then is not None:
            then()
        out, n = self.fresh("mma_out"), int(then is not None)
        self.line(f"{out}{deps[deps.index(','):] if reg else ''} = warpgroup_mma_wait({n}, deps=({deps}))")
        return out
    def rings_of(self, s: I.For) -> list[Smem]:
        return [m for m in self.smem.values() if m.ring and any(x is m.v for x in I.all_values(s.body))]
    def header(self, t) -> str:
        step = "" if t.is_grid else f", {t.block}"
        return f"for {t.offset} in range({self.bound(t.begin)}, {self.bound(t.end)}{step}):"
    def for_loop(self, s: I.For) -> None:
        t, rings = s.tiles[0], self.rings_of(s)
        if self.cfg.get("gluon_overlap", False) and rings and not t.is_grid and overlap.emit(self, s, rings):
            return
        names = self.carry(s)
        self.dots = [x.value for x in s.body if isinstance(x, I.Let) and x.value.op == "dot"]
        with self.nest(self.header(t)):
            if t.is_grid:   # its tile loops hand their ring slots back themselves
                return self.loop_body(s, names)
            self.tile_lines(t)
            if rings:
                self.ring_slot(rings)
            self.loop_body(s, names)
            for *_, x in list(self.lazy.values()): self.name_of(x)   # the slot is free once they are waited for
            if rings:   # every wgmma reading the slot was waited for: hand it back to the producer
                self.line(*[f"mbarrier.arrive({m.name}_empty.index(slot))" for m in rings], "ring_it += 1")
    def ring_slot(self, rings: list[Smem], it: str = "ring_it", p: str = "") -> None:
        """The ring slot ``{p}slot`` of block ``it``: each ring load waits for its fill where first used."""
        self.line(f"{p}slot = {it} % {NUM_BUF}", f"{p}phase = ({it} // {NUM_BUF}) & 1")
        for m in rings:
            self.pending[m.v.id] = (f"mbarrier.wait({m.name}_ready.index({p}slot), {p}phase)", self.ref(m, f"{p}slot"))
    def arange(self, name: str, start: str, n: int, mask: str | None, end) -> None:
        """In the row slice layout for the row tile's indices, else in the column one."""
        lay = int(name == self.row.indices)
        self.line(f"{name} = {start}gl.arange(0, {n}, layout={_SLICE[lay]})")
        self.lay1d[name] = lay
        if mask:
            self.line(f"{mask} = {name} < {self.bound(end)}")
            self.lay1d[mask] = lay
    def buf(self, m: Smem, slot: str | None, part) -> str:
        """A load's buffer: ring slots x parts (one per consumer when split)."""
        return m.name + (f".index({slot} * {self.nc} + {part})" if slot and m.split else f".index({slot})" if slot
                         else f".index({part})")
    def ref(self, m: Smem, slot: str | None) -> str:
        reshape = f".reshape({[b for b in m.block if b != 1]})" if len(m.block) != 2 else ""
        return self.buf(m, slot, "WG" if m.split else "0") + reshape
    def producer(self, body: list[I.Stmt]) -> None:
        """The producer's walk: the same loops, only the TMA issues (and the scalars they need)."""
        for s in body:
            if isinstance(s, I.Let) and s.value.id in self.smem:
                self.issue(self.smem[s.value.id], None)
            elif isinstance(s, I.For) and s.tiles[0].is_grid:
                with self.nest(self.header(s.tiles[0])):
                    self.producer(s.body)
            elif isinstance(s, I.For) and (rings := self.rings_of(s)):
                t = s.tiles[0]
                with self.nest(self.header(t)):
                    # a fresh mbarrier passes a wait on parity 1: the first NUM_BUF fills go ahead at once
                    self.line(f"slot = ring_it % {NUM_BUF}", f"phase = ((ring_it // {NUM_BUF}) & 1) ^ 1")
                    for m in rings:
                        self.line(f"mbarrier.wait({m.name}_empty.index(slot), phase)")
                        self.issue(m, "slot")
                    self.line("ring_it += 1")
    def issue(self, m: Smem, slot: str | None) -> None:
        bar = f"{m.name}_ready" + (f".index({slot})" if slot else "")
        self.line(f"mbarrier.expect({bar}, {m.nbytes})")
        for c in range(self.nc if m.split else 1):
            coords = [x.offset + (f" + {c * m.block[m.rows]}" if c and x is self.row else "") if kind == "tile"
                      else "0" if kind == "rdim" else self.bound(x) for kind, x in m.idx.entries]
            dst = self.buf(m, slot, c)
            self.line(f"tma.async_copy_global_to_shared({m.name}_desc, [{', '.join(coords)}], {bar}, {dst})")

def generate(d: I.DeviceIR, cfg: Config, target: Target, file: str, fn_name: str, grid_ordinal: int,
             loop_index: int = 0) -> Generated:
    if target.interpreter:
        raise exc.NotSupported("Config backend='gluon' needs an sm_90 GPU: Triton's interpreter cannot run Gluon")
    if target.arch != 90:
        raise exc.NotSupported(f"Config backend='gluon' targets sm_90 (Hopper); this target is sm_{target.arch}")
    em = GluonEmitter(d, cfg, file, target)
    grid, offsets, prologue, decode = program_ids(em, loop_index, grid_ordinal)
    if prologue:
        raise _refuse(f"pid_type={cfg.get('pid_type')!r} (persistent programs)", None)
    ncols = [em.dim_size(x) for v in I.all_values(d.body) if v.type.ndim == 2 for x in v.type.dims[1:]]
    n_instr = min([c for c in ncols if c >= 8] or [8])
    if n_instr % 8 or n_instr > 256:
        raise _refuse(f"a tile of {n_instr} columns (wgmma takes 8 to 256, a multiple of 8)", None)
    em.line(*decode, *offsets, "ring_it = 0")   # the producer first: its scalars in their own scope
    em.producer(d.body)
    prod, r, sub = em.lines, em.row, em.row.block // em.nc
    em.lines, em.scopes, em.used, em.last_src = [], [{}], {}, None
    em.line(*decode, *offsets)
    em.arange(r.indices, f"{r.offset} + WG * {sub} + ", sub, r.mask if r.masked else None, r.end)
    for t in d.grid:
        if t is not r and not t.is_grid:
            em.tile_lines(t)
    for rd in d.rdims.values():
        em.arange(rd.index, "", rd.block, rd.mask if rd.masked else None, rd.extent)
    em.line("ring_it = 0")
    for m in em.smem.values():
        if not m.ring:
            em.pending[m.v.id] = (f"mbarrier.wait({m.name}_ready, 0)", em.ref(m, None))
    em.stmts(d.body)
    from triton.experimental.gluon import language as gl, nvidia   # host side: TMA descriptors and their layouts
    params, sig = em.params()
    shared, setup = [], []
    for m in {m.name: m for m in em.smem.values()}.values():
        dt = tl_dtype(m.idx.tensor.dtype).replace("tl.", "gl.")
        lay = gl.NVMMASharedLayout.get_default_for(m.block, getattr(gl, dt[3:]))
        bars = {f"{m.name}_ready": 1, f"{m.name}_empty": em.nc} if m.ring else {f"{m.name}_ready": 1}
        nbuf = (NUM_BUF if m.ring else 1) * (em.nc if m.split else 1)   # ring slots x consumer parts
        make = functools.partial(nvidia.hopper.TensorDescriptor.from_tensor, block_shape=m.block, layout=lay)
        params.append((f"{m.name}_desc", make, m.idx.tensor.host))   # host-made: device code would fence per program
        sig[f"{m.name}_desc"] = f"tensordesc<{SIGNATURE_DTYPE[m.idx.tensor.dtype]}{m.block},{lay!r}>"
        setup.append(f"{m.name} = gl.allocate_shared_memory({dt}, {[nbuf] + m.block}, {m.name}_desc.layout)")
        for b, count in bars.items():   # a ring's empty barrier takes an arrive from each consumer
            setup.append(f"{b} = gl.allocate_shared_memory(gl.int64, {[NUM_BUF, 1] if m.ring else [1]}, "
                         "mbarrier.MBarrierLayout())")
            setup += ([f"for i in gl.static_range({NUM_BUF}):", f"    mbarrier.init({b}.index(i), count={count})"]
                      if m.ring else [f"mbarrier.init({b}, count=1)"])
        shared += [m.name, *bars]
    args = ", ".join([p[0] for p in params] + shared)
    parts = [f"({fn_name}_consumer, ({args}, {c}))" for c in range(em.nc)] + [f"({fn_name}_producer, ({args}))"]
    regs = [CONSUMER_REGS] * (em.nc - 1) + [PRODUCER_REGS]
    out = ["@gluon.jit", f"def {fn_name}_consumer({args}, WG: gl.constexpr):",
           f"    L: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], "
           f"instr_shape=[16, {n_instr}, 16])",
           "    ROW: gl.constexpr = gl.SliceLayout(1, L)", "    COL: gl.constexpr = gl.SliceLayout(0, L)"]
    out += em.lines + ["", "", "@gluon.jit", f"def {fn_name}_producer({args}):"] + prod
    out += ["", "", "@gluon.jit", f"def {fn_name}({', '.join(p[0] for p in params)}):"]
    out += ["    " + x for x in setup + ["fence_async_shared()"]]
    out.append(f"    gl.warp_specialize([{', '.join(parts)}], {[4] * (em.nc - 1) + [1]}, {regs})")
    helpers = "".join(NAN_REDUCE_HELPERS[op].replace("@triton.jit", "@gluon.jit") for op in sorted(em.nan_helpers))
    return Generated(fn_name, PRELUDE + helpers + "\n".join(out) + "\n", params, sig, grid, 4, 1, False, None)
