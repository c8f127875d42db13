"""Gluon backend: a lowered device loop + Plan + Config -> a warp-specialized ``@gluon.jit`` kernel (sm_90).

Partitions come from the loop structure (``partition``):

* **ring loads**: loads inside an inner tile loop that are indexed by that loop's tile, TMA-eligible
  (16-bit, last stride 1) and used only as ``hl.dot`` operands (K and V of attention, A and B of a matmul).
  A one-warp **producer** partition issues them with TMA into a 2-slot shared-memory ring per load
  (ready/empty mbarriers), running the same loops as the consumers.
* **grid loads**: loads before the inner loops of the same kind (attention's Q): the producer issues them once.
* everything else (math, reductions, pointer loads and stores) runs in **consumer** warpgroups:
  ``gluon_consumers`` = 2 splits the row block (the first grid tile) into two 4-warp partitions of half the
  rows each, sharing every ring slot (FlashAttention-3's two warpgroups); 1 keeps one 4-warp consumer.

Consumer code is the Triton backend's (``Emitter``, its op table ``EMIT``), run on Gluon's namesakes
(``tl`` in the generated module is ``gluon.language`` plus ``PropagateNan``) with explicit layouts: every
2-D value lives in one wgmma accumulator layout ``L``, 1-D values in its row or column slice. ``hl.dot``
becomes ``warpgroup_mma`` (left operand from shared memory or registers, right operand from shared
memory), waited for at once. The Gluon API used is the one the Triton 3.6 probe ran with
(bench/gluon_attention.py), so the code builds on Triton 3.6 and 3.7.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ... import exc, ir as I
from ...config import Config
from ...target import Target
from ...types import SIGNATURE_DTYPE, BlockT, tl_dtype
from ..triton.emitter import Emitter, Generated
from ..triton.kernel import _tile_count
from ..triton.ops import NAN_REDUCE_HELPERS
from ..triton.strategies import program_ids
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
_L = "L"                # names of the layouts in the consumer
_SLICE = {0: "COL", 1: "ROW"}   # SliceLayout(1, L): one value per row; SliceLayout(0, L): per column


def _refuse(what: str, loc) -> exc.NotSupported:
    return exc.NotSupported(f"the Gluon backend (Config backend='gluon') does not cover {what}; use "
                            f"backend='triton' for this kernel", loc)


class Smem:
    """A load served from shared memory: its TMA descriptor, buffer and barriers."""

    def __init__(self, v: I.Value, ring: bool, split: bool, em: "GluonEmitter") -> None:
        self.v, self.idx, self.ring, self.split = v, v.args[0], ring, split
        t = self.idx.tensor
        self.block = [em.full_dim(e) for e in self.idx.entries]
        self.rows = None
        if split:   # the row tile's block goes to the consumers in equal parts
            self.rows = next(i for i, (kind, x) in enumerate(self.idx.entries) if kind == "tile" and x is em.row)
            self.block[self.rows] //= em.nc
        self.nbytes = math.prod(self.block) * t.dtype.itemsize * (em.nc if split else 1)
        self.name = ""


class GluonEmitter(Emitter):
    NUM_BUF = NUM_BUF
    DOT_A = f"gl.DotOperandLayout(operand_index=0, parent={_L}, k_width=2)"

    def __init__(self, d: I.DeviceIR, cfg: Config, file: str, target: Target) -> None:
        super().__init__(d, cfg, file, target)
        self.nc = int(cfg.get("gluon_consumers", 2))
        tiles = [t for t in d.grid if not t.is_grid]
        self.row = tiles[0] if tiles else None
        if self.row is None:
            raise _refuse("a launch grid without a tile of rows (hl.tile over the first grid dim)", None)
        if self.row.block < 64 * self.nc:
            # a consumer warpgroup's wgmma covers 64 rows: a shorter row block (a short extent clamps it)
            # grows to that under this Plan, its extra rows masked (TMA zero-fills them, stores skip them)
            self.row.block, self.row.masked = 64 * self.nc, True
        self.smem: dict[int, Smem] = {}
        self.pending: dict[int, tuple[list[str], str]] = {}  # value id -> (wait lines, shared-memory ref)
        self.lay1d: dict[str, int] = {}     # tile index and mask names -> their SliceLayout dim
        self.overlap = bool(cfg.get("gluon_overlap", False))

    # ---- partitions ---------------------------------------------------------------------------
    def full_dim(self, e: tuple) -> int:
        kind, x = e
        return x.block if kind == "tile" else self.d.rdims[x.id].block if kind == "rdim" else 1

    def partition(self) -> None:
        """Check the subset and pick the loads the producer serves (see the module notes)."""
        users: dict[int, list[I.Value]] = {}
        for v in I.all_values(self.d.body):
            if v.op not in OPS:
                raise _refuse(f"the op {v.op!r}", v.loc)
            for a in v.inputs():
                users.setdefault(a.id, []).append(v)
        for r in self.d.rdims.values():
            if r.rolled:
                raise _refuse("a reduction rolled into chunks (reduction_loops)", None)
        for s in I.walk(self.d.body):
            if isinstance(s, (I.While, I.If)):
                raise _refuse("a device-side while loop or if statement", s.loc)
            if isinstance(s, I.Store) and s.atomic:
                raise _refuse(f"atomic_{s.atomic}", s.loc)
            if isinstance(s, I.For):
                if len(s.tiles) != 1 or s.tiles[0].is_grid or s.reverse:
                    what = "an inner hl.grid loop" if s.tiles[0].is_grid else "an inner loop over several tiles" \
                        if len(s.tiles) != 1 else "an inner loop run last to first (range_reverses)"
                    raise _refuse(what, s.loc)
                if any(isinstance(x, I.For) for x in I.walk(s.body)):
                    raise _refuse("nested inner loops", s.loc)
        rows = lambda d: d.kind == "tile" and d.id == self.row.id  # noqa: E731
        for v in I.all_values(self.d.body):
            # each consumer holds its own rows: nothing may combine rows of the block
            if self.nc > 1 and ((v.op == "reduce" and rows(v.args[0].type.dims[v.attrs["axis"]]))
                                or (v.op == "dot" and rows(v.args[0].type.dims[-1]))):
                raise _refuse(f"{'a reduction' if v.op == 'reduce' else 'an hl.dot contracting'} over the row "
                              f"tile with gluon_consumers=2 (each consumer holds half of its rows)", v.loc)
            if v.op == "dot":
                for a in v.args[:2]:
                    if a.type.dtype not in (torch.float16, torch.bfloat16):
                        raise _refuse(f"hl.dot on {a.type.dtype} operands (wgmma takes fp16/bf16)", v.loc)
                if not v.type.dtype.is_floating_point:
                    raise _refuse("an integer hl.dot", v.loc)

        def dot_only(v: I.Value, left: bool = False) -> bool:
            """Used only as an hl.dot operand (only as the left one: ``left``), directly or transposed."""
            us = users.get(v.id, [])
            return bool(us) and all((u.op == "dot" and u.args[0] is v and u.args[1] is not v and v not in u.args[2:])
                                    or (u.op == "dot" and u.args[1] is v and u.args[0] is not v and not left
                                        and v not in u.args[2:])
                                    or (u.op == "permute" and dot_only(u, left)) for u in us)

        def tma_ok(v: I.Value, tile) -> bool:
            idx = v.args[0]
            kinds = [k for k, _ in idx.entries]
            return (idx.tensor.descriptor_ok and idx.tensor.dtype.itemsize == 2 and idx.extra_mask is None
                    and "block" not in kinds and ("tile", tile) in [(k, x) for k, x in idx.entries]
                    and [o for o in idx.out if o is not None] == [i for i, k in enumerate(kinds) if k != "scalar"]
                    and None not in idx.out and v.type.ndim == 2
                    # a tile of the row block is split between the consumers: only a left operand may be
                    and dot_only(v, left=any(k == "tile" and x is self.row for k, x in idx.entries))
                    and all(x.block * idx.tensor.dtype.itemsize >= 16 for k, x in idx.entries if k == "tile"
                            and x is idx.entries[-1][1]))
        names: dict[tuple, str] = {}
        for s in self.d.body:
            vals = [s.value] if isinstance(s, I.Let) else []
            if isinstance(s, I.For):
                vals = [x.value for x in s.body if isinstance(x, I.Let)]
            seen: dict[str, int] = {}
            for v in vals:
                tile = s.tiles[0] if isinstance(s, I.For) else self.row
                if v.op == "load" and tma_ok(v, tile):
                    split = any(kd == "tile" and x is self.row for kd, x in v.args[0].entries)
                    m = self.smem[v.id] = Smem(v, isinstance(s, I.For), split, self)
                    # the loops of one kernel (causal attention's two) share a ring per tensor and block
                    t = m.idx.tensor.name
                    seen[t] = seen.get(t, -1) + 1
                    key = (t, tuple(m.block), m.ring, split, seen[t] if m.ring else len(names))
                    m.name = names.setdefault(key, f"{t}_{'ring' if m.ring else 'tile'}{len(names)}")
        if not any(m.ring for m in self.smem.values()):
            raise _refuse("a kernel without an inner tile loop whose hl.dot operands it can load with TMA "
                          "(16-bit tensors, last stride 1)", self.d.body[0].loc if self.d.body else None)
        for v in I.all_values(self.d.body):
            if v.op == "dot":
                b = v.args[1].args[0] if v.args[1].op == "permute" else v.args[1]
                if b.id not in self.smem:
                    raise _refuse("an hl.dot whose right operand is not a tile loaded from memory "
                                  "(wgmma reads it from shared memory)", v.loc)

    # ---- dims and layouts -------------------------------------------------------------------------
    def dim_size(self, d) -> int:
        n = super().dim_size(d)
        return n // self.nc if d.kind == "tile" and d.id == self.row.id else n

    def slice_of(self, v: I.Value) -> int:
        """The SliceLayout dim of a 1-D value: 1 (one value per row) along the row tile, else 0."""
        d = v.type.dims[0]
        return 1 if d.kind == "tile" and d.id == self.row.id else 0

    def layout(self, t: BlockT) -> str:
        if t.ndim == 1:
            d = t.dims[0]
            return _SLICE[1 if d.kind == "tile" and d.id == self.row.id else 0]
        if t.ndim != 2:
            raise _refuse(f"a {t.ndim}-D value (2-D tiles only)", None)
        return _L

    def bcast(self, name: str, axis: int, ndim: int) -> str:
        if ndim <= 1:
            return name
        want = 1 - axis
        if self.lay1d.get(name, want) != want:
            name = f"gl.convert_layout({name}, {_SLICE[want]})"
        return f"{name}[{', '.join(':' if i == axis else 'None' for i in range(ndim))}]"

    # ---- values ---------------------------------------------------------------------------------
    def name_of(self, v: I.Value) -> str:
        if v.id in self.pending and self.lookup(v) is None:
            waits, ref = self.pending[v.id]
            for w in waits:
                self.line(w)
            self.scopes[0 if not self.smem[v.id].ring else -1][v.id] = ref
            return ref
        return super().name_of(v)

    def expr(self, v: I.Value) -> str:
        op = v.op
        if op == "full":
            val = v.args[0]
            if not v.type.dims:
                return super().expr(v)
            lay = self.layout(v.type)
            if isinstance(val, I.Value):
                return f"gl.full({self.shape(v.type)}, 0, {tl_dtype(v.type.dtype)}, {lay}) + {self.name_of(val)}"
            return super().expr(v)[:-1] + f", {lay})"
        if op == "arange":
            raise _refuse("hl.arange (tile indices cover the subset)", v.loc)
        if op == "view" and v.args[0].type.ndim == 1 and v.type.ndim == 2:
            x = v.args[0]
            want = 1 if v.attrs["axes"][0] else 0
            n = self.name_of(x)
            if x.type.dims and self.slice_of(x) != want:
                n = f"gl.convert_layout({n}, {_SLICE[want]})"
            return n + ("[:, None]" if want == 1 else "[None, :]")
        if op == "permute" and v.args[0].id in self.smem:
            return f"{self.name_of(v.args[0])}.permute((1, 0))"
        if op == "load" and v.id in self.smem:
            return self.name_of(v)
        if op == "tile_attr" and v.args[0] is self.row and v.attrs["attr"] in ("begin", "end"):
            t = self.row   # loop bounds and scalars see the whole row block, shared by every consumer
            return t.offset if v.attrs["attr"] == "begin" else f"tl.minimum({t.offset} + {t.block}, {self.bound(t.end)})"
        return super().expr(v)

    def load(self, idx: I.Index, v: I.Value) -> str:
        idx.descriptor = False   # pointer loads in registers; TMA is the producer's
        return super().load(idx, v)

    def store(self, s: I.Store) -> None:
        s.index.descriptor = False
        super().store(s)

    def dot(self, v: I.Value) -> str:
        a, b = v.args[0], v.args[1]
        an, bn = self.name_of(a), self.name_of(b)
        src = a.args[0] if a.op == "permute" else a
        reg = src.id not in self.smem
        if reg:
            an = self.fresh("dot_a")
            self.line(f"{an} = gl.convert_layout({self.dot_operand(a, -1)}, {self.DOT_A})")
        shape = self.shape(v.type)
        if len(v.args) > 2:
            acc, use = self.name_of(v.args[2]), ""
            if v.args[2].type.dtype != torch.float32:
                acc = f"{acc}.to(tl.float32)"
        else:
            acc, use = f"gl.zeros({shape}, gl.float32, {_L})", ", use_acc=False"
        tok = self.fresh("mma")
        self.line(f"{tok} = warpgroup_mma({an}, {bn}, {acc}{use}, is_async=True)")
        out = self.fresh("mma_out")
        if reg:
            self.line(f"{out}, {an} = warpgroup_mma_wait(0, deps=({tok}, {an}))")
        else:
            self.line(f"{out} = warpgroup_mma_wait(0, deps=({tok}, ))")
        return out if v.type.dtype == torch.float32 else f"{out}.to({tl_dtype(v.type.dtype)})"

    # ---- statements -----------------------------------------------------------------------------
    def for_loop(self, s: I.For) -> None:
        t = s.tiles[0]
        rings = [m for m in self.smem.values() if m.ring and any(x is m.v for x in I.all_values(s.body))]
        p = overlap.plan(self, s, rings) if self.overlap and rings else None
        if p is not None:
            overlap.emit(self, s, rings, p)
            return
        self.src(s.loc)
        names = [self.carried_init(phi, init) for phi, init, _ in s.carried]
        self.line(f"for {t.offset} in range({self.bound(t.begin)}, {self.bound(t.end)}, {t.block}):")
        self.ind += 1
        self.tile_lines(t)
        if rings:
            self.line(f"slot = ring_it % {NUM_BUF}")
            self.line(f"phase = (ring_it // {NUM_BUF}) & 1")
            for m in rings:
                self.pending[m.v.id] = ([f"mbarrier.wait({m.name}_ready.index(slot), phase)"], self.ref(m, "slot"))
        self.loop_body(s, names)
        for m in rings:   # every wgmma reading the slot was waited for: hand it back to the producer
            self.line(f"mbarrier.arrive({m.name}_empty.index(slot))")
        if rings:
            self.line("ring_it += 1")
        self.ind -= 1
        self.last_src = None

    def tile_lines(self, t) -> None:
        """An inner loop tile's indices (one per column) and mask, at its offset."""
        self.line(f"{t.indices} = {t.offset} + gl.arange(0, {t.block}, layout=COL)")
        self.lay1d[t.indices] = 0
        if t.masked:
            self.line(f"{t.mask} = {t.indices} < {self.bound(t.end)}")
            self.lay1d[t.mask] = 0

    def ref(self, m: Smem, slot: str | None) -> str:
        """The consumer's view of a load's buffer: ring slots x parts (one per consumer when split)."""
        part = "WG" if m.split else "0"
        r = m.name + (f".index({slot} * {self.nc} + {part})" if slot and m.split else f".index({slot})" if slot
                      else f".index({part})")
        shape = [b for b in m.block if b != 1]
        return r + (f".reshape({shape})" if len(m.block) != 2 else "")

    def producer(self, body: list[I.Stmt]) -> None:
        """The producer's walk: the same loops, only the TMA issues (and the scalars they need)."""
        for s in body:
            if isinstance(s, I.Let) and s.value.id in self.smem:
                self.issue(self.smem[s.value.id], None)
            elif isinstance(s, I.For):
                rings = [m for m in self.smem.values() if m.ring and any(x is m.v for x in I.all_values(s.body))]
                if not rings:
                    continue
                t = s.tiles[0]
                self.line(f"for {t.offset} in range({self.bound(t.begin)}, {self.bound(t.end)}, {t.block}):")
                self.ind += 1
                self.scopes.append({})
                self.line(f"slot = ring_it % {NUM_BUF}")
                # a fresh mbarrier passes a wait on parity 1: the first NUM_BUF fills go ahead at once
                self.line(f"phase = ((ring_it // {NUM_BUF}) & 1) ^ 1")
                for m in rings:
                    self.line(f"mbarrier.wait({m.name}_empty.index(slot), phase)")
                    self.issue(m, "slot")
                self.line("ring_it += 1")
                self.scopes.pop()
                self.ind -= 1

    def issue(self, m: Smem, slot: str | None) -> None:
        bar = f"{m.name}_ready" + (f".index({slot})" if slot else "")
        buf = f"{m.name}.index({slot})"
        self.line(f"mbarrier.expect({bar}, {m.nbytes})")
        for c in range(self.nc if m.split else 1):
            coords = []
            for kind, x in m.idx.entries:
                if kind == "tile":
                    coords.append(x.offset + (f" + {c * m.block[m.rows]}" if c and x is self.row else ""))
                elif kind == "rdim":
                    coords.append("0")
                else:
                    coords.append(self.name_of(x) if isinstance(x, I.Value) else str(x))
            dst = f"{m.name}.index({slot} * {self.nc} + {c})" if slot and m.split else buf if slot else \
                f"{m.name}.index({c})"
            self.line(f"tma.async_copy_global_to_shared({m.name}_desc, [{', '.join(coords)}], {bar}, {dst})")


def generate(d: I.DeviceIR, cfg: Config, target: Target, file: str, fn_name: str, grid_ordinal: int,
             loop_index: int = 0) -> Generated:
    """The warp-specialized Gluon kernel of device loop ``d`` under ``cfg`` (see the module notes)."""
    if target.interpreter:
        raise exc.NotSupported("Config backend='gluon' needs an sm_90 GPU: Triton's interpreter cannot run Gluon")
    if target.arch != 90:
        raise exc.NotSupported(f"Config backend='gluon' targets sm_90 (Hopper); this target is sm_{target.arch}")
    em = GluonEmitter(d, cfg, file, target)
    em.partition()
    counts = [max(_tile_count(t), 0) for t in d.grid]
    pids = program_ids(cfg, counts, target.num_sms, loop_index, grid_ordinal, em.idx64)
    if pids.indent != 1:
        raise _refuse(f"pid_type={cfg.get('pid_type')!r} (persistent programs)", None)
    ncols = [em.dim_size(x) for v in I.all_values(d.body) if v.type.ndim == 2 for x in v.type.dims[1:]]
    n_instr = min([c for c in ncols if c >= 8] or [8])
    if n_instr % 8 or n_instr > 256:
        raise _refuse(f"a tile of {n_instr} columns (wgmma takes 8 to 256, a multiple of 8)", None)

    def head(role: str) -> list[str]:
        out = []
        for k, t in enumerate(d.grid):
            b = em.bound(t.begin)
            start = "" if b == "0" else f"{b} + "
            out.append(f"{t.offset} = {start}pid_{k}" + ("" if t.is_grid else f" * {t.block}"))
        return pids.decode + out

    # producer first: its scalars go into their own scope
    em.ind = 1
    for s in head("producer"):
        em.line(s)
    em.line("ring_it = 0")
    em.producer(d.body)
    prod = em.lines
    em.lines, em.scopes, em.used, em.last_src = [], [{}], {}, None
    em.ind = 1
    r = em.row
    sub = r.block // em.nc
    for s in head("consumer"):
        em.line(s)
    em.line(f"{r.indices} = {r.offset} + WG * {sub} + gl.arange(0, {sub}, layout=ROW)")
    em.lay1d[r.indices] = 1
    if r.masked:
        em.line(f"{r.mask} = {r.indices} < {em.bound(r.end)}")
        em.lay1d[r.mask] = 1
    for t in d.grid:
        if t is not r and not t.is_grid:
            em.line(f"{t.indices} = {t.offset} + gl.arange(0, {t.block}, layout=COL)")
            em.lay1d[t.indices] = 0
            if t.masked:
                em.line(f"{t.mask} = {t.indices} < {em.bound(t.end)}")
                em.lay1d[t.mask] = 0
    for rd in d.rdims.values():
        em.line(f"{rd.index} = gl.arange(0, {rd.block}, layout=COL)")
        em.lay1d[rd.index] = 0
        if rd.masked:
            em.line(f"{rd.mask} = {rd.index} < {rd.extent}")
            em.lay1d[rd.mask] = 0
    em.line("ring_it = 0")
    for m in em.smem.values():
        if not m.ring:
            em.pending[m.v.id] = ([f"mbarrier.wait({m.name}_ready, 0)"], em.ref(m, None))
    em.stmts(d.body)
    cons = em.lines

    params = [(t.name, "tensor", t.host) for t in d.inputs.tensors] + \
             [(s.name, "scalar", s.name) for s in d.inputs.scalars]
    sig = {t.name: "*" + SIGNATURE_DTYPE[t.dtype] for t in d.inputs.tensors}
    sig.update({s.name: SIGNATURE_DTYPE[s.dtype] for s in d.inputs.scalars})
    pnames = [p[0] for p in params]
    shared = []
    setup = []
    for m in {m.name: m for m in em.smem.values()}.values():
        t = m.idx.tensor
        rank = t.ndim
        lay = f"gl.NVMMASharedLayout.get_default_for({m.block}, {tl_dtype(t.dtype).replace('tl.', 'gl.')})"
        shape = ", ".join(t.size_code(i) for i in range(rank))
        strides = ", ".join(t.stride_code(i) for i in range(rank))
        setup.append(f"{m.name}_desc = tma.make_tensor_descriptor({t.name}, shape=[{shape}], strides=[{strides}], "
                     f"block_shape={m.block}, layout={lay})")
        lead = [(NUM_BUF if m.ring else 1) * (em.nc if m.split else 1)]
        setup.append(f"{m.name} = gl.allocate_shared_memory({tl_dtype(t.dtype).replace('tl.', 'gl.')}, "
                     f"{lead + m.block}, {m.name}_desc.layout)")
        bars = [f"{m.name}_ready", f"{m.name}_empty"] if m.ring else [f"{m.name}_ready"]
        for b in bars:
            n = f"[{NUM_BUF}, 1]" if m.ring else "[1]"
            setup.append(f"{b} = gl.allocate_shared_memory(gl.int64, {n}, mbarrier.MBarrierLayout())")
            if m.ring:
                cnt = em.nc if b.endswith("empty") else 1
                setup += [f"for i in gl.static_range({NUM_BUF}):", f"    mbarrier.init({b}.index(i), count={cnt})"]
            else:
                setup.append(f"mbarrier.init({b}, count=1)")
        shared += [f"{m.name}_desc", m.name] + bars
    setup.append("fence_async_shared()")
    args = ", ".join(pnames + shared)
    layouts = [f"{_L}: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], "
               f"instr_shape=[16, {n_instr}, 16])",
               f"ROW: gl.constexpr = gl.SliceLayout(1, {_L})", f"COL: gl.constexpr = gl.SliceLayout(0, {_L})"]
    parts = [f"({fn_name}_consumer, ({args}, {c}))" for c in range(em.nc)] + [f"({fn_name}_producer, ({args}))"]
    regs = [CONSUMER_REGS] * (em.nc - 1) + [PRODUCER_REGS]
    out = ["@gluon.jit", f"def {fn_name}_consumer({args}, WG: gl.constexpr):"]
    out += ["    " + x for x in layouts] + cons + ["", "", "@gluon.jit", f"def {fn_name}_producer({args}):"] + prod
    out += ["", "", "@gluon.jit", f"def {fn_name}({', '.join(pnames)}):"]
    out += ["    " + x for x in setup]
    out.append(f"    gl.warp_specialize([{', '.join(parts)}], {[4] * (em.nc - 1) + [1]}, {regs})")
    helpers = "".join(NAN_REDUCE_HELPERS[op].replace("@triton.jit", "@gluon.jit") for op in sorted(em.nan_helpers))
    return Generated(fn_name, PRELUDE + helpers + "\n".join(out) + "\n", params, sig, pids.grid, 4, 1, True, None)
