"""Lowering: abstract interpretation of a device loop's AST into typed IR.

Runs once per specialization (the device loop's launch key), for every Config:
tunable block sizes and reduction chunks stay symbols (ids) that passes.apply_config
sizes per Config. Host values arrive concrete (tensors, ints, floats); every expression is given a ``BlockT`` and shape rules are
checked here, so a mismatch is a user error at the source line, never a
Triton error. Torch calls are mapped by ``ops.py``.
"""
from __future__ import annotations

import ast
import types
from typing import Any

import torch

from . import exc, indexing as IX, language as hl, ops as O, ops_dispatch as D, ops_extra as X
from .config import Config
from .frontend import DeviceLoop, ParsedKernel
from .ir import DeviceIR, For, If, Index, Let, Stmt, Store, Value
from .lower_loops import bind, carry, final, lower_while, merge_branches, without_continue
from .types import (BlockSizeInt, BlockT, Dim, LaunchInputs, RDimInfo, ScalarArg, TensorArg, TensorRef, TileInfo,
                    TileVar, broadcast_dims, next_pow2, promote, same_dims)

_MISSING = object()

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
           ast.RShift: ">>", ast.MatMult: "@"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}

class Lowerer:
    def __init__(self, pk: ParsedKernel, loop: DeviceLoop, inputs: dict[str, Any],
                 hoisted: dict[int, str], config: Config, kernel_name: str) -> None:
        self.pk, self.loop, self.inputs, self.hoisted, self.config = pk, loop, inputs, hoisted, config
        self.env: dict[str, Any] = {}
        self.stmts: list[Stmt] = []
        self.tiles: dict[int, TileInfo] = {}
        self.rdims: dict[int, RDimInfo] = {}
        self.block_ids: set[int] = set()  # block ids used as Dim("block", id)
        self.deps: dict[int, Any] = {}  # block id -> Config value this lowering read (see note_block)
        self.helpers: list[tuple] = []  # combine functions: (name, params, body stmts, results)
        self.inline_free: dict[str, str] | None = None  # set while inlining a helper: free name -> hoisted id
        self.tensors: dict[str, TensorArg] = {}
        self.scalars: dict[str, ScalarArg] = {}
        self.n_loops = 0
        self.n_loads = 0
        self.n_stores = 0
        self.jagged: dict[int, Value] = {}  # hl.jagged_tile id -> its per-lane ends
        self.grid_steps: dict[int, tuple] = {}  # hl.grid(b, e, step) dim's tile id -> (b, step)
        self.has_dot = False
        self.name = kernel_name
        self.loc = pk.loc(loop.node)

    # ---- entry ------------------------------------------------------------------------------
    def lower(self) -> DeviceIR:
        node = self.loop.node
        tiles = self.header(node, top=True)
        self.bind_target(node.target, tiles)
        for s in without_continue(node.body):
            self.stmt(s)
        if node.orelse:
            raise exc.NotSupported("for/else on a device loop", self.pk.loc(node))
        inputs = LaunchInputs(list(self.tensors.values()), list(self.scalars.values()))
        return DeviceIR(self.name, inputs, [t.info for t in tiles], self.tiles, self.rdims, self.stmts,
                        self.n_loops, self.n_loads, self.has_dot, self.block_ids, self.helpers, deps=self.deps)

    # ---- helpers ----------------------------------------------------------------------------
    def emit(self, opcode: str, args: list[Any], type: BlockT, node: ast.AST | None = None,
             hint: str = "", **attrs: Any) -> Value:
        v = Value(opcode, args, type, self.pk.loc(node) if node is not None else self.loc, hint, **attrs)
        self.stmts.append(Let(v, v.loc))
        return v

    def err(self, cls: type, msg: str, node: ast.AST) -> Exception:
        return cls(msg, self.pk.loc(node))

    def lanes(self, d: Dim) -> int:
        """Lanes of one block dim under the lowering's Config (a read noted in ``deps``)."""
        if d.kind == "tile":
            return self.tile_block(self.tiles[d.id])
        if d.kind == "rdim":
            return next_pow2(self.rdims[d.id].extent)  # 1 only for a one-element dim, whatever the Config
        if d.kind == "block":
            self.note_block(d.bid)
            return self.block_value(d.bid)
        return 1

    # Lowering is shared by every Config of a specialization: a tunable block size is a symbol (its id)
    # in the IR, given a size by passes.apply_config. Where lowering itself must know the size (a
    # reshape that merges a tile, a registered block size used as a number), it reads the size of the
    # Config it lowers under and notes the read; the runtime reuses this IR only for Configs that give
    # the noted block ids the same sizes.
    def note_block(self, bid: int) -> None:
        self.deps[bid] = config_block(self.config, bid)

    def block_value(self, bid: int, extent: Any = None) -> int:
        """A tunable block's size under the lowering's Config (not noted: the caller decides)."""
        bs = self.config.get("block_sizes") or []
        if bid < len(bs):
            return int(bs[bid])
        return max(1, min(64, next_pow2(extent))) if isinstance(extent, int) else 64

    def tile_block(self, t: TileInfo, note: bool = True) -> int:
        if t.fixed is not None:
            return t.fixed
        if note:
            self.note_block(t.block_id)
        return self.block_value(t.block_id, t.static_len)

    def block_int(self, bid: int, value: int) -> BlockSizeInt:
        """A block size as device code sees it: an int that notes its Config dependency when used as one."""
        self.block_ids.add(bid)
        # the note is the IR's own deps dict and this Config's size, not the Lowerer: the cached IR must not
        # keep the lowering's inputs (the first launch's tensors) alive
        return BlockSizeInt(value, bid, (self.deps, config_block(self.config, bid)))

    def rdim_for(self, extent: Any, node: ast.AST) -> RDimInfo:
        if not isinstance(extent, int):
            raise self.err(exc.NotSupported, "a full (':') dim needs a size known at compile time", node)
        for r in self.rdims.values():
            if r.extent == extent:
                return r
        r = RDimInfo(len(self.rdims), int(extent))
        self.rdims[r.id] = r
        return r

    def fixed_block(self, fixed: Any, node: ast.AST) -> int:
        if not isinstance(fixed, int) or fixed <= 0 or fixed & (fixed - 1):
            raise self.err(exc.CompileError, f"block_size must be a power of two int, got {fixed!r}", node)
        return int(fixed)

    def tensor(self, name: str, t: torch.Tensor) -> TensorRef:
        if name not in self.tensors:
            pname = name if name.isidentifier() else f"t{len(self.tensors)}"
            es = t.element_size()
            desc = t.dim() >= 1 and t.stride(-1) == 1 and all((s * es) % 16 == 0 for s in t.stride()[:-1]) \
                and t.data_ptr() % 16 == 0
            big = t.numel() >= 2**31 or (t.storage_offset() + sum((s - 1) * st for s, st in zip(t.shape, t.stride()))) >= 2**31
            self.tensors[name] = TensorArg(pname, name, t.dtype, tuple(t.shape), tuple(t.stride()), True, big, desc)
        return TensorRef(self.tensors[name])

    def scalar_param(self, name: str, value: Any) -> Value:
        dtype = torch.float32 if isinstance(value, float) else (torch.int64 if abs(value) >= 2**31 else torch.int32)
        if name not in self.scalars:
            self.scalars[name] = ScalarArg(name, dtype)
        return Value("param", [name], BlockT((), dtype), self.loc, name)

    def host_value(self, name: str, value: Any, node: ast.AST) -> Any:
        if type(value) is hl.constexpr:  # small = hl.constexpr(bs < 64) in host code: its value
            value = value.value
        if isinstance(value, torch.Tensor):
            return self.tensor(name, value)
        if isinstance(value, float):
            return self.scalar_param(name, value)
        return value  # ints (static), bools, dtypes, modules, functions...

    # ---- statements -------------------------------------------------------------------------
    def stmt(self, s: ast.stmt) -> None:
        m = getattr(self, f"stmt_{type(s).__name__}", None)
        if m is None:
            hint = {"FunctionDef": "; define the function outside the kernel (calls to it are inlined)",
                    "Import": "; import at module level", "ImportFrom": "; import at module level"}
            raise self.err(exc.NotSupported, f"'{type(s).__name__}' statements are not supported inside a device loop"
                           + hint.get(type(s).__name__, ""), s)
        m(s)

    def stmt_Expr(self, s: ast.Expr) -> None:
        if isinstance(s.value, ast.Constant):
            return  # docstring / comment string
        self.expr(s.value)

    def stmt_Pass(self, s: ast.Pass) -> None:
        pass

    def stmt_Assign(self, s: ast.Assign) -> None:
        val = self.expr(s.value)
        for t in s.targets:
            self.assign(t, val, s)

    def stmt_AnnAssign(self, s: ast.AnnAssign) -> None:
        if s.value is not None:
            self.assign(s.target, self.expr(s.value), s)

    def stmt_AugAssign(self, s: ast.AugAssign) -> None:
        load = ast.copy_location(ast.BinOp(_as_load(s.target), s.op, s.value), s)
        self.assign(s.target, self.expr(load), s)

    def assign(self, target: ast.expr, val: Any, node: ast.AST) -> None:
        if isinstance(target, ast.Name):
            if isinstance(val, Value) and not val.hint:
                val.hint = target.id
            self.env[target.id] = val
        elif isinstance(target, (ast.Tuple, ast.List)):
            vals = list(val) if isinstance(val, (tuple, list)) else None
            if vals is None or len(vals) != len(target.elts):
                raise self.err(exc.NotSupported, "tuple unpacking needs a tuple of the same length", node)
            for t, v in zip(target.elts, vals):
                self.assign(t, v, node)
        elif isinstance(target, ast.Subscript):
            base = self.expr(target.value)
            if isinstance(base, (list, tuple)) and isinstance(target.value, ast.Name):  # accs[i] = v: a new list
                i = self.expr(target.slice)
                if not isinstance(i, int) or not -len(base) <= i < len(base):
                    raise self.err(exc.NotSupported, "a list in device code is indexed by a constant in range", node)
                new = list(base)
                new[i] = val
                return self.assign(target.value, new, node)
            if not isinstance(base, TensorRef):
                raise self.err(exc.NotSupported, "only host tensors can be stored into (out[tile] = value)", node)
            self.store(base, self.index(base, target.slice, node), val, node)
        else:
            raise self.err(exc.NotSupported, f"assignment to {type(target).__name__}", node)

    def store(self, ref: TensorRef, idx: Index, val: Any, node: ast.AST, atomic: str | None = None,
              sem: str = "relaxed", compare: Any = None) -> Value | None:
        idx = IX.jagged_masked(self, IX.broadcast_unit_dims(self, idx, node, store=True), node)
        v = self.as_value(val, node, ref.arg.dtype)
        out_dims = idx.dims()
        try:
            broadcast_dims(out_dims, v.type.dims, None)
        except exc.ShapeMismatch:
            raise self.err(exc.ShapeMismatch, f"cannot store a value of shape {list(v.type.dims)} into "
                           f"{ref.arg.host}[...] of shape {list(out_dims)}", node) from None
        if len(v.type.dims) > len(out_dims):
            raise self.err(exc.ShapeMismatch, f"value has more dims ({v.type}) than the stored slice {list(out_dims)}", node)
        result = Value("atomic_result", [], BlockT(out_dims, ref.arg.dtype), self.pk.loc(node)) if atomic else None
        cmp = self.as_value(compare, node, ref.arg.dtype) if compare is not None else None
        self.stmts.append(Store(idx, v, self.pk.loc(node), atomic, result, sem, cmp))
        self.n_stores += 1
        return result

    def stmt_If(self, s: ast.If) -> None:
        cond = self.expr(s.test)
        if not isinstance(cond, Value):
            for b in (s.body if cond else s.orelse):
                self.stmt(b)
            return
        if cond.type.dims and all(self.lanes(d) == 1 for d in cond.type.dims):  # flag[t] with a tile of 1
            cond = self.emit("reshape", [cond], BlockT((), cond.type.dtype), s)
        if cond.type.dims:
            raise self.err(exc.NotSupported, "an if condition must be a scalar; use torch.where for blocks", s)
        before = dict(self.env)
        saved = self.stmts
        self.stmts = []
        for b in s.body:
            self.stmt(b)
        then_stmts, then_env = self.stmts, self.env
        self.stmts, self.env = [], dict(before)
        for b in s.orelse:
            self.stmt(b)
        else_stmts, else_env = self.stmts, self.env
        self.stmts, self.env = saved, dict(before)
        merges = merge_branches(self, s, before, (then_env, then_stmts), (else_env, else_stmts))
        self.stmts.append(If(cond, then_stmts, else_stmts, merges, self.pk.loc(s)))

    def stmt_While(self, s: ast.While) -> None:
        lower_while(self, s)

    def coerce(self, v: Any, t: BlockT, node: ast.AST) -> Value:
        v = self.as_value(v, node, t.dtype)
        if v.type.dtype != t.dtype:
            v = self.emit("cast", [v], v.type.with_dtype(t.dtype), node)
        if not same_dims(v.type.dims, t.dims):
            raise self.err(exc.ShapeMismatch, f"variable changes shape: {t} -> {v.type}", node)
        return v

    def stmt_For(self, s: ast.For) -> None:
        f = self.pk.resolve(s.iter.func) if isinstance(s.iter, ast.Call) else None
        if f is range or f is hl.static_range or (isinstance(s.iter, ast.Call) and isinstance(s.iter.func, ast.Name)
                          and s.iter.func.id in ("range", "static_range")):
            args = [self.expr(a) for a in s.iter.args]
            if not all(isinstance(a, int) for a in args):
                raise self.err(exc.NotSupported, "range() in device code needs constant bounds (it is unrolled)", s)
            for i in range(*args):
                self.assign(s.target, i, s)
                for b in s.body:
                    self.stmt(b)
            return
        if f not in (hl.tile, hl.grid, hl.jagged_tile):
            raise self.err(exc.NotSupported, "device loops iterate over hl.tile(...), hl.grid(...), "
                           "hl.jagged_tile(...) or range(const)", s)
        tiles = self.header(s, top=False)
        loop_id = self.n_loops
        self.n_loops += 1
        phis = carry(self, s, s.body)
        before = dict(self.env)
        bind(self.env, phis)
        saved = self.stmts
        self.stmts = []
        self.bind_target(s.target, tiles)
        for b in without_continue(s.body):
            self.stmt(b)
        body = self.stmts
        self.stmts = saved
        carried = []
        for n, (phi, init) in phis.items():
            body_tail: list[Stmt] = []
            saved2, self.stmts = self.stmts, body_tail
            final_v = final(self, n, phi.type, s)
            self.stmts = saved2
            body.extend(body_tail)
            carried.append((phi, init, final_v))
        # names first bound inside the loop stay local to it
        self.env = bind(dict(before), phis)
        self.stmts.append(For([t.info for t in tiles], body, carried, loop_id, self.pk.loc(s)))

    # ---- loop headers -----------------------------------------------------------------------
    def header(self, s: ast.For, top: bool) -> list[TileVar]:
        call = s.iter
        f = self.pk.resolve(call.func)
        is_grid = f is hl.grid
        kw = {k.arg: k.value for k in call.keywords}
        vals = [self.expr(a) for a in call.args]
        parent = None
        if f is hl.jagged_tile:  # up to the largest per-lane end; loads and stores get `index < parent`
            parent = vals[0] if len(vals) == 1 else None
            if not isinstance(parent, Value) or not parent.type.dims or parent.type.dtype.is_floating_point:
                raise self.err(exc.NotSupported, "hl.jagged_tile(parent) takes one integer block of per-lane ends "
                               "whose dims are enclosing tiles", s)
            vals = [D.method(self, parent, "amax", [], {}, s)]
        if any(isinstance(v, TileVar) for x in vals for v in (x if isinstance(x, (tuple, list)) else [x])):
            raise self.err(exc.TileOfTile, "hl.tile/hl.grid of a tile: iterate over its range instead, "
                           "hl.tile(t.begin, t.end)", s)
        seq = (tuple, list, torch.Size)
        steps = vals.pop() if is_grid and len(vals) == 3 else self.expr(kw["step"]) if is_grid and "step" in kw else 1
        if len(vals) == 1 and isinstance(vals[0], seq):
            ends = [(0, e) for e in vals[0]]
        elif len(vals) == 2 and all(isinstance(v, seq) for v in vals):
            ends = list(zip(vals[0], vals[1]))
        elif len(vals) == 1:
            ends = [(0, vals[0])]
        elif len(vals) == 2:
            ends = [(vals[0], vals[1])]
        else:
            raise self.err(exc.NotSupported, "hl.tile/hl.grid take (end), (begin, end) or lists of them", s)
        steps = list(steps) if isinstance(steps, seq) else [steps] * len(ends)
        if len(steps) != len(ends) or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in steps):
            raise self.err(exc.NotSupported, "hl.grid steps are positive ints, one per dim", s)
        affine = {}  # dim -> (begin, step): hl.grid(b, e, step) runs 0..cdiv(e - b, step), index b + i * step
        for k, ((b, e), st) in enumerate(zip(ends, steps)):
            if st != 1:
                affine[k] = (b, st)
                n = O.binary(self, "-", O.binary(self, "+", e, st - 1, s), b, s)
                ends[k] = (0, O.binary(self, "//", n, st, s))
        ids = list(self.pk.tile_block_ids.get(id(call), []))
        for k in range(len(ids), len(ends) if not is_grid else 0):  # hl.tile(x.size()): rank known at run time
            ids.append(self.pk.extra_block_id(call, k))
        bs_node = kw.get("block_size")
        per = bs_node.elts if isinstance(bs_node, (ast.List, ast.Tuple)) else [bs_node] * len(ends)
        one = {}  # a single block_size expression is evaluated once
        out = []
        for k, (b, e) in enumerate(ends):
            begin, end = b, e
            static_len = end - begin if isinstance(begin, int) and isinstance(end, int) else None
            bid = None if is_grid else (ids[k] if k < len(ids) else None)
            if is_grid:
                fixed = 1
            elif bid is None:  # a fixed size (a registered one has an id and is never evaluated here)
                node_k = per[k] if k < len(per) else None
                if id(node_k) not in one:
                    one[id(node_k)] = self.expr(node_k) if node_k is not None else None
                fixed = self.fixed_block(one[id(node_k)], s)
            else:
                fixed = None
            info = TileInfo(len(self.tiles), bid, fixed, self.code_of(begin, s), self.code_of(end, s),
                            static_len, top, is_grid)
            self.tiles[info.id] = info
            out.append(TileVar(info))
            if parent is not None:
                self.jagged[info.id] = parent
            if k in affine:
                self.grid_steps[info.id] = affine[k]
        return out

    def code_of(self, v: Any, node: ast.AST) -> "str | Value":
        """A loop bound: literal code for ints and params, or a device int Value."""
        if isinstance(v, bool):
            raise self.err(exc.CompileError, "loop bounds must be ints", node)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, Value) and not v.type.dims and not v.type.dtype.is_floating_point:
            return v.args[0] if v.op == "param" else v
        raise self.err(exc.CompileError, f"loop bounds must be ints or device ints, got {type(v).__name__}", node)

    def bind_target(self, target: ast.expr, tiles: list[TileVar]) -> None:
        vals: list[Any] = [self.grid_index(t, target) if t.info.is_grid else t for t in tiles]
        if isinstance(target, ast.Name):
            self.env[target.id] = vals[0] if len(vals) == 1 else tuple(vals)
            for k, t in enumerate(tiles):
                t.info.name = target.id if len(vals) == 1 else f"{target.id}{k}"
        elif isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == len(vals):
            for t, v, tv in zip(target.elts, vals, tiles):
                if not isinstance(t, ast.Name):
                    raise self.err(exc.NotSupported, "loop targets must be names", target)
                self.env[t.id] = v
                tv.info.name = t.id
        else:
            raise self.err(exc.NotSupported, "loop target does not match the number of tile dims", target)

    def grid_index(self, t: TileVar, node: ast.AST) -> Value:
        i = Value("tile_attr", [t.info], BlockT((), torch.int32), self.loc, t.info.name or "i", attr="begin")
        if t.info.id not in self.grid_steps:
            return i
        begin, step = self.grid_steps[t.info.id]
        return O.binary(self, "+", O.binary(self, "*", i, step, node), begin, node)

    # ---- expressions ------------------------------------------------------------------------
    def expr(self, node: ast.expr) -> Any:
        hid = self.hoisted.get(id(node))
        if hid is not None:
            return self.host_value(hid, self.inputs[hid], node)
        m = getattr(self, f"expr_{type(node).__name__}", None)
        if m is None:
            raise self.err(exc.NotSupported, f"'{type(node).__name__}' expressions are not supported in device code", node)
        return m(node)

    def expr_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def expr_Name(self, node: ast.Name) -> Any:
        if node.id in self.env:
            return self.env[node.id]
        if self.inline_free is not None:  # inside an inlined helper: its own globals and closure
            if node.id in self.inline_free:
                hid = self.inline_free[node.id]
                return self.host_value(hid, self.inputs[hid], node)
            val = self.pk.globals.get(node.id, _MISSING)
            if isinstance(val, torch.Tensor):
                raise self.err(exc.NotSupported, f"'{node.id}': a module-level tensor is read by a helper called "
                               "by name from the kernel; one called from another helper (or through an expression) "
                               "takes it as an argument", node)
            if val is not _MISSING:
                return self.host_value(node.id, val, node)
        elif node.id in self.inputs:
            val = self.inputs[node.id]
            if node.id in self.pk.registered and isinstance(val, int) and not isinstance(val, bool):
                return self.block_int(self.pk.registered[node.id], val)
            return self.host_value(node.id, val, node)
        if node.id in self.pk.globals:
            return self.host_value(node.id, self.pk.globals[node.id], node)
        import builtins
        if hasattr(builtins, node.id):
            return getattr(builtins, node.id)
        raise self.err(exc.CompileError, f"name '{node.id}' is not defined", node)

    def expr_Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self.expr(e) for e in node.elts)

    expr_List = expr_Tuple

    def expr_ListComp(self, node: ast.ListComp) -> list:
        """``[elt for name in range(const) | a host list/tuple if const-cond]``, unrolled at compile time."""
        gen = node.generators[0] if len(node.generators) == 1 else None
        if gen is None or not isinstance(gen.target, ast.Name) or gen.is_async:
            raise self.err(exc.NotSupported, "list comprehensions in device code take one 'for name in ...'", node)
        it = gen.iter
        f = self.pk.resolve(it.func) if isinstance(it, ast.Call) else None
        if f in (range, hl.static_range):
            bounds = [self.expr(a) for a in it.args]
            items = range(*bounds) if all(isinstance(b, int) for b in bounds) else None
        else:
            items = self.expr(it)
        if not isinstance(items, (range, list, tuple)):
            raise self.err(exc.NotSupported, "a device-code list comprehension iterates over range(const) or a "
                           "list/tuple known at compile time", node)
        name, had, old = gen.target.id, gen.target.id in self.env, self.env.get(gen.target.id)
        out = []
        try:
            for item in items:
                self.env[name] = item
                conds = [self.expr(c) for c in gen.ifs]
                if any(isinstance(c, Value) for c in conds):
                    raise self.err(exc.NotSupported, "a list comprehension's if must be known at compile time", node)
                if all(conds):
                    out.append(self.expr(node.elt))
        finally:
            if had:
                self.env[name] = old
            else:
                self.env.pop(name, None)
        return out

    def expr_Dict(self, node: ast.Dict) -> dict:
        """A dict of str keys (named arguments of hl.inline_triton / hl.triton_kernel)."""
        if not all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
            raise self.err(exc.NotSupported, "dicts in device code need str literal keys", node)
        return {k.value: self.expr(v) for k, v in zip(node.keys, node.values)}

    def expr_Attribute(self, node: ast.Attribute) -> Any:
        base = self.expr(node.value)
        return O.attribute(self, base, node.attr, node)

    def expr_Subscript(self, node: ast.Subscript) -> Any:
        base = self.expr(node.value)
        if isinstance(base, TensorRef):
            return self.load(base, self.index(base, node.slice, node), node)
        if isinstance(base, Value):
            return X.subscript_value(self, base, node.slice, node)
        if isinstance(base, (tuple, list, torch.Size)):
            return base[self.expr(node.slice)]
        raise self.err(exc.NotSupported, f"cannot index a {type(base).__name__} in device code", node)

    def expr_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        return O.binary(self, op, self.expr(node.left), self.expr(node.right), node)

    def expr_UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.expr(node.operand)
        name = {ast.USub: "neg", ast.UAdd: "pos", ast.Not: "not", ast.Invert: "invert"}[type(node.op)]
        return O.unary(self, name, v, node)

    def expr_Compare(self, node: ast.Compare) -> Any:
        left = self.expr(node.left)
        out = None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.expr(right_node)
            if type(op) in (ast.Is, ast.IsNot):
                if isinstance(left, Value) or isinstance(right, Value):
                    raise self.err(exc.NotSupported, "'is' on device values", node)
                r = (left is right) if isinstance(op, ast.Is) else (left is not right)
            else:
                r = O.binary(self, _CMPOPS[type(op)], left, right, node)
            out = r if out is None else O.binary(self, "&", out, r, node)
            left = right
        return out

    def expr_BoolOp(self, node: ast.BoolOp) -> Any:
        vals = [self.expr(v) for v in node.values]
        op = "&" if isinstance(node.op, ast.And) else "|"
        if not any(isinstance(v, Value) for v in vals):
            return all(vals) if op == "&" else any(vals)
        out = vals[0]
        for v in vals[1:]:
            out = O.binary(self, op, out, v, node)
        return out

    def expr_IfExp(self, node: ast.IfExp) -> Any:
        c = self.expr(node.test)
        if not isinstance(c, Value):
            return self.expr(node.body) if c else self.expr(node.orelse)
        return O.where(self, c, self.expr(node.body), self.expr(node.orelse), node)

    def expr_Call(self, node: ast.Call) -> Any:
        args = [self.expr(a) for a in node.args if not isinstance(a, ast.Starred)]
        for a in node.args:
            if isinstance(a, ast.Starred):
                star = self.expr(a.value)
                args.extend(star)
        kwargs = {k.arg: self.expr(k.value) for k in node.keywords if k.arg}
        if isinstance(node.func, ast.Attribute):
            base = self.expr(node.func.value)
            if isinstance(base, (Value, TileVar, TensorRef)):
                return D.method(self, base, node.func.attr, args, kwargs, node)
            fn = getattr(base, node.func.attr, None)
        else:
            fn = self.expr(node.func)
        if fn is None:
            raise self.err(exc.NotSupported, f"unknown function {ast.unparse(node.func)}", node)
        from . import inline
        host_name = node.func.id if isinstance(node.func, ast.Name) else None
        mod = (getattr(fn, "__module__", "") or "") if isinstance(fn, types.FunctionType) else None
        if mod is not None and not getattr(fn, "_hl_device", None) \
                and not mod.startswith(("torch", "triton", "helion_ops.dsl")):
            return inline.call(self, fn, args, kwargs, node, host_name)
        if mod is None or not mod.startswith("torch"):
            return D.call(self, fn, args, kwargs, node)
        try:
            return D.call(self, fn, args, kwargs, node)
        except exc.NotSupported as unmapped:
            # A plain Python function torch happens to define (flex_attention's _identity score_mod):
            # inline it like a user helper; if that fails too, the mapping error is the clearer one.
            mark = (len(self.stmts), self.n_loads, self.n_stores)
            try:
                return inline.call(self, fn, args, kwargs, node, host_name)
            except exc.HelionOpsError:
                del self.stmts[mark[0]:]
                self.n_loads, self.n_stores = mark[1], mark[2]
                raise unmapped from None

    # ---- memory -----------------------------------------------------------------------------
    # -- indexing (indexing.py) -----------------------------------------------------------------
    def index(self, ref: TensorRef, sl: ast.expr, node: ast.AST, extra_mask: Any = None) -> Index:
        return IX.index(self, ref, sl, node, extra_mask)

    def make_index(self, ref: TensorRef, vals: list, node: ast.AST, extra_mask: Any = None) -> Index:
        return IX.make_index(self, ref, vals, node, extra_mask)

    def load(self, ref: TensorRef, idx: Index, node: ast.AST) -> Value:
        idx = IX.jagged_masked(self, IX.broadcast_unit_dims(self, idx, node, store=False), node)
        v = self.emit("load", [idx], BlockT(idx.dims(), ref.arg.dtype), node,
                      load_id=self.n_loads)
        self.n_loads += 1
        return v

    def scalar_of(self, v: Any, node: ast.AST) -> Any:
        """A 0-d host tensor used as a value (``lim = torch.tensor(0.5)`` made on the host): its element."""
        if isinstance(v, TensorRef) and v.arg.ndim == 0:
            return self.load(v, self.make_index(v, [], node), node)
        return v

    def as_value(self, v: Any, node: ast.AST, dtype: torch.dtype | None = None) -> Value:
        v = self.scalar_of(v, node)
        if isinstance(v, Value):
            return v
        if isinstance(v, TileVar):
            return O.attribute(self, v, "index", node)
        if isinstance(v, BlockSizeInt):  # a block size used as a number: this IR holds for its size only
            v = v.value()
        if isinstance(v, (bool, int, float)):
            dt = dtype or (torch.bool if isinstance(v, bool) else torch.int32 if isinstance(v, int) else torch.float32)
            return Value("const", [v], BlockT((), dt), self.pk.loc(node))
        raise self.err(exc.CompileError, f"expected a device value, got {type(v).__name__}", node)

    def result_dtype(self, a: Any, b: Any) -> torch.dtype:
        pa = a.type.dtype if isinstance(a, Value) else a
        pb = b.type.dtype if isinstance(b, Value) else b
        return promote(pa, pb)

def _as_load(t: ast.expr) -> ast.expr:
    """The load form of an assignment target (for ``x += v``)."""
    t2 = ast.parse(ast.unparse(t), mode="eval").body
    for n in ast.walk(t2):
        if hasattr(n, "lineno"):
            n.lineno, n.end_lineno = t.lineno, t.lineno
    return t2

def config_block(config: Config, bid: int) -> int | None:
    """The size ``config`` gives block id ``bid`` (None: not given; the default then depends only on
    the specialization)."""
    bs = config.get("block_sizes") or []
    return int(bs[bid]) if bid < len(bs) else None

def lower(pk: ParsedKernel, loop: DeviceLoop, inputs: dict[str, Any], hoisted: dict[int, str],
          config: Config, name: str) -> DeviceIR:
    """Lower device loop ``loop`` with concrete host ``inputs``: the IR holds for every Config that
    agrees with ``config`` on the block sizes listed in its ``deps`` (usually none)."""
    return Lowerer(pk, loop, inputs, hoisted, config, name).lower()
