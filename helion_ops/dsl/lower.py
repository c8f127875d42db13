"""Lowering: abstract interpretation of a device loop's AST into typed IR, once per specialization (block sizes stay
ids). Every expression gets a ``BlockT`` and shapes are checked here: a mismatch is a user error at its line."""
from __future__ import annotations

import ast
import builtins
import functools
import types
from typing import Any, Callable

import torch

from . import exc, indexing as IX, inline, language as hl, ops as O, ops_dispatch as D, ops_extra as X
from .config import Config
from .frontend import DeviceLoop, ParsedKernel
from .ir import DeviceIR, For, If, Index, Let, Store, Value, While
from .types import (BlockSizeInt, BlockT, LaunchInputs, RDimInfo, ScalarArg, TensorArg, TensorRef, TileInfo, TileVar,
                    broadcast_dims, next_pow2, promote, same_dims)

_MISSING = object()  # no binding (distinct from None, which a name may hold)
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
           ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_UNARY = {ast.USub: "neg", ast.UAdd: "pos", ast.Not: "not", ast.Invert: "invert"}

class Lowerer:
    def __init__(self, pk: ParsedKernel, loop: DeviceLoop, inputs: dict[str, Any],
                 hoisted: dict[int, str], config: Config, kernel_name: str) -> None:
        self.pk, self.inputs, self.hoisted, self.config = pk, inputs, hoisted, config
        self.name, self.loc = kernel_name, pk.loc(loop.node)
        self.env, self.stmts = {}, []  # name -> its binding; the statements being lowered
        self.tiles, self.rdims = {}, {}  # id -> TileInfo, RDimInfo
        self.tensors, self.scalars = {}, {}  # host name -> TensorArg, ScalarArg
        self.block_ids: set[int] = set()  # block ids used as Dim("block", id)
        self.deps: dict[int, Any] = {}  # block id -> Config value this lowering read (see block_int)
        self.helpers: list[tuple] = []  # combine functions: (name, params, body stmts, results)
        self.inline_free: dict[str, str] | None = None  # set while inlining a helper: free name -> hoisted id
        self.inline_depth = self.n_loops = self.n_loads = 0
        self.jagged, self.grid_steps = {}, {}  # hl.jagged_tile id -> per-lane ends; hl.grid step's tile -> (b, step)
    def emit(self, opcode: str, args: list[Any], type: BlockT, node: ast.AST | None = None, **attrs: Any) -> Value:
        v = Value(opcode, args, type, self.pk.loc(node) if node is not None else self.loc, **attrs)
        self.stmts.append(Let(v, v.loc))
        return v
    def err(self, cls: type, msg: str, node: ast.AST) -> Exception: return cls(msg, self.pk.loc(node))
    # One lowering serves every Config: where it must know a block size (a reshape merging a tile, a registered size
    # used as a number), it notes the read in ``deps``, and the IR is reused only for Configs giving the same size.
    def block_int(self, bid: int, value: int | None = None, extent: Any = None) -> BlockSizeInt:
        """Block ``bid``'s size (``value``, else the Config's) as an int that notes its Config dependency when used as
        one (in the IR's deps: the cached IR must not keep the Lowerer and the first launch's tensors alive)."""
        self.block_ids.add(bid)
        value = block_size(self.config, bid, extent) if value is None else value
        return BlockSizeInt(value, bid, (self.deps, config_block(self.config, bid)))
    def rdim_for(self, extent: Any, node: ast.AST) -> RDimInfo:
        if not isinstance(extent, int):
            raise self.err(exc.NotSupported, "a full (':') dim needs a size known at compile time", node)
        r = next((r for r in self.rdims.values() if r.extent == extent), None) or RDimInfo(len(self.rdims), int(extent))
        self.rdims[r.id] = r
        return r
    def tensor(self, name: str, t: torch.Tensor) -> TensorRef:
        if name not in self.tensors:
            desc = t.dim() >= 1 and t.stride(-1) == 1 and t.data_ptr() % 16 == 0 \
                and all(s * t.element_size() % 16 == 0 for s in t.stride()[:-1])
            last = t.storage_offset() + sum((s - 1) * st for s, st in zip(t.shape, t.stride()))
            self.tensors[name] = TensorArg(name if name.isidentifier() else f"t{len(self.tensors)}", name, t.dtype,
                                           tuple(t.shape), tuple(t.stride()), t.numel() >= 2**31 or last >= 2**31, desc)
        return TensorRef(self.tensors[name])
    def host_value(self, name: str, value: Any, node: ast.AST) -> Any:
        if type(value) is hl.constexpr:  # small = hl.constexpr(bs < 64) in host code: its value
            value = value.value
        if isinstance(value, torch.Tensor):
            return self.tensor(name, value)
        if isinstance(value, float):  # a scalar parameter of the launch
            self.scalars.setdefault(name, ScalarArg(name, torch.float32))
            return Value("param", [name], BlockT((), torch.float32), self.loc, name)
        return value  # ints (static), bools, dtypes, modules, functions...
    def stmt(self, s: ast.stmt) -> None:
        m = getattr(self, f"stmt_{type(s).__name__}", None)
        if m is None:
            hint = {"FunctionDef": "; define the function outside the kernel (calls to it are inlined)",
                    "Import": "; import at module level", "ImportFrom": "; import at module level"}
            raise self.err(exc.NotSupported, f"'{type(s).__name__}' statements are not supported inside a device loop"
                           + hint.get(type(s).__name__, ""), s)
        m(s)
    def stmt_Expr(self, s: ast.Expr) -> None:
        if not isinstance(s.value, ast.Constant):  # a docstring or comment string does nothing
            self.expr(s.value)
    def stmt_Pass(self, s: ast.Pass) -> None: pass
    def stmt_Assign(self, s: ast.Assign | ast.AnnAssign) -> None:
        if s.value is not None:  # `x: T` alone binds nothing
            val = self.expr(s.value)
            for t in s.targets if isinstance(s, ast.Assign) else [s.target]:
                self.assign(t, val, s)
    stmt_AnnAssign = stmt_Assign
    def stmt_AugAssign(self, s: ast.AugAssign) -> None:
        # the target read (its Store context does not matter to expr) with the same hoisted index values as the store
        self.assign(s.target, self.expr(ast.copy_location(ast.BinOp(s.target, s.op, s.value), s)), s)
    def assign(self, target: ast.expr, val: Any, node: ast.AST) -> None:
        if isinstance(target, ast.Name):
            if isinstance(val, Value) and not val.hint:
                val.hint = target.id
            self.env[target.id] = val
        elif isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(val, (tuple, list)) or len(val) != len(target.elts):
                raise self.err(exc.NotSupported, "tuple unpacking needs a tuple of the same length", node)
            for t, v in zip(target.elts, val):
                self.assign(t, v, node)
        elif isinstance(target, ast.Subscript):
            base = self.expr(target.value)
            if isinstance(base, (list, tuple)) and isinstance(target.value, ast.Name):  # accs[i] = v: a new list
                i = self.expr(target.slice)
                if not isinstance(i, int) or not -len(base) <= i < len(base):
                    raise self.err(exc.NotSupported, "a list in device code is indexed by a constant in range", node)
                return self.assign(target.value, [val if j == i % len(base) else x for j, x in enumerate(base)], node)
            if not isinstance(base, TensorRef):
                raise self.err(exc.NotSupported, "only host tensors can be stored into (out[tile] = value)", node)
            self.store(base, self.index(base, target.slice, node), val, node)
        else:
            raise self.err(exc.NotSupported, f"assignment to {type(target).__name__}", node)
    def store(self, ref: TensorRef, idx: Index, val: Any, node: ast.AST, atomic: str | None = None,
              sem: str = "relaxed", compare: Any = None) -> Value | None:
        idx = IX.access(self, idx, node, store=True)
        v = self.as_value(val, node, ref.arg.dtype)
        out_dims = idx.dims()
        try:  # the value broadcasts to the slice, with no more dims than it
            fits = len(broadcast_dims(out_dims, v.type.dims, None)) == len(out_dims)
        except exc.ShapeMismatch:
            fits = False
        if not fits:
            raise self.err(exc.ShapeMismatch, f"cannot store a value of shape {list(v.type.dims)} into "
                           f"{ref.arg.host}[...] of shape {list(out_dims)}", node)
        result = Value("atomic_result", [], BlockT(out_dims, ref.arg.dtype), self.pk.loc(node)) if atomic else None
        cmp = self.as_value(compare, node, ref.arg.dtype) if compare is not None else None
        self.stmts.append(Store(idx, v, self.pk.loc(node), atomic, result, sem, cmp))
        return result
    # Control flow: a Python number that changes in a loop or device ``if`` becomes a device scalar first: folding it
    # as a constant would silently compute every iteration from its first value.
    def condition(self, s: ast.If | ast.While, msg: str) -> Any:
        cond = self.expr(s.test)
        if not isinstance(cond, Value) or not cond.type.dims:
            return cond
        if not all(O.dim_size(self, d) <= 1 for d in cond.type.dims):  # flag[t] with a tile of 1 passes (noted)
            raise self.err(exc.NotSupported, msg, s)
        return self.emit("reshape", [cond], BlockT((), cond.type.dtype), s)
    def stmt_If(self, s: ast.If) -> None:
        """Names bound on both paths of an ``if`` on a device value merge: ``(merged, init, then, else)``."""
        cond = self.condition(s, "an if condition must be a scalar; use torch.where for blocks")
        if not isinstance(cond, Value):
            for b in (s.body if cond else s.orelse):
                self.stmt(b)
            return
        before, saved, branches = dict(self.env), self.stmts, []
        for body in (s.body, s.orelse):
            self.stmts, self.env = [], dict(before)
            for b in body:
                self.stmt(b)
            branches.append((self.env, self.stmts))
        self.stmts, self.env, merges = saved, dict(before), []
        (then_env, then), (else_env, orelse) = branches
        for name in sorted(set(then_env) | set(else_env)):
            tv, ev, bv = then_env.get(name, _MISSING), else_env.get(name, _MISSING), before.get(name, _MISSING)
            if (tv is bv and ev is bv) or _MISSING in (tv, ev):
                continue  # unchanged, or bound on one path only (local to it)
            numbers = all(isinstance(x, (Value, int, float)) for x in (tv, ev))
            if not numbers and tv is not ev:
                raise self.err(exc.NotSupported, f"'{name}' is bound to a {type(tv).__name__} and a "
                               f"{type(ev).__name__} on the two paths of an if on a device value; only device "
                               "values and numbers can differ between them", s)
            if not numbers or (not isinstance(tv, Value) and not isinstance(ev, Value) and type(tv) is type(ev)
                               and tv == ev):
                self.env[name] = tv  # the same object, or the same number, on both paths
                continue
            ref = next((x for x in (bv, tv, ev) if isinstance(x, Value)), None)
            t = ref.type if ref is not None else self.as_value(tv, s).type
            start = bv if isinstance(bv, (int, float)) else 0  # a number (or nothing) before: a full block or scalar
            init = bv if isinstance(bv, Value) else self.emit("full", [start], t, s) if t.dims else \
                self.as_value(start, s, t.dtype)
            vals = [self.final(name, t, s, v) for v, self.stmts in ((tv, then), (ev, orelse))]  # each in its branch
            self.stmts, self.env[name] = saved, Value("phi", [], t, self.pk.loc(s), name)
            merges.append((self.env[name], init, *vals))
        self.stmts.append(If(cond, then, orelse, merges, self.pk.loc(s)))
    def stmt_While(self, s: ast.While) -> None:
        """``while cond:``: the scalar condition is carried, evaluated on entry and again at each iteration's end."""
        if s.orelse:
            raise self.err(exc.NotSupported, "while ... else in device code", s)
        if _has(s.body, ast.Break):
            raise self.err(exc.NotSupported, "break in device code (Triton has no structured break); "
                           "fold the exit into the while condition", s)
        msg = "a while condition must be a scalar (reduce a block with .any() or .all())"
        cond0 = self.condition(s, msg)
        if not isinstance(cond0, Value):
            if cond0:
                raise self.err(exc.NotSupported, "a while loop whose condition is always true needs break, which "
                               "device code cannot use", s)
            return  # never entered
        phis, cond_phi = self.carry(s), Value("phi", [], cond0.type, self.pk.loc(s), "cond")
        def again() -> tuple:  # the condition from the values at the end of this iteration
            cond = self.condition(s, msg)
            return cond_phi, cond0, self.final("cond", cond0.type, s, cond if isinstance(cond, Value) else bool(cond))
        body, carried = self.loop_body(s, phis, last=again)
        self.stmts.append(While(cond_phi, body, carried, self.pk.loc(s)))
    def static_range(self, it: ast.expr) -> range | None:
        """``range(...)`` or ``hl.static_range(...)`` over constants, unrolled at compile time (else None)."""
        if not isinstance(it, ast.Call) or self.pk.resolve(it.func) not in (range, hl.static_range) \
                and getattr(it.func, "id", None) not in ("range", "static_range"):
            return None
        args = [self.expr(a) for a in it.args]
        if not all(isinstance(a, int) for a in args):
            raise self.err(exc.NotSupported, "range() in device code is unrolled: its bounds must be known at compile "
                           "time", it)
        return range(*args)
    def stmt_For(self, s: ast.For) -> None:
        if (items := self.static_range(s.iter)) is not None:
            for i in items:
                self.assign(s.target, i, s)
                for b in s.body:
                    self.stmt(b)
            return
        f = self.pk.resolve(s.iter.func) if isinstance(s.iter, ast.Call) else None
        if f not in (hl.tile, hl.grid, hl.jagged_tile):
            raise self.err(exc.NotSupported, "device loops iterate over hl.tile(...), hl.grid(...), "
                           "hl.jagged_tile(...) or range(const)", s)
        tiles = self.header(s, top=False)
        loop_id, self.n_loops = self.n_loops, self.n_loops + 1
        body, carried = self.loop_body(s, self.carry(s), lambda: self.bind_target(s.target, tiles))
        self.stmts.append(For([t.info for t in tiles], body, carried, loop_id, self.pk.loc(s)))
    def loop_body(self, s: ast.For | ast.While, phis: list, first: Callable = lambda: None,
                  last: Callable | None = None) -> tuple[list, list]:
        """(statements, carried triples) of loop ``s``'s body; ``first`` runs before it, ``last`` adds a triple."""
        before, saved, self.stmts = dict(self.env), self.stmts, []
        bind(self.env, phis)
        first()
        for b in without_continue(s.body):
            self.stmt(b)
        carried = [(phi, init, self.final(n, phi.type, s, i=i)) for n, i, phi, init in phis]
        if last is not None:
            carried.append(last())
        body, self.stmts = self.stmts, saved
        self.env = bind(before, phis)
        return body, carried
    def carry(self, loop: ast.For | ast.While) -> list[tuple[str, int | None, Value, Value]]:
        """(name, i, phi, init) for each name ``loop`` assigns that held a device value (element i of a list of them,
        else None) or a number it reads (made a device scalar)."""
        stores = [n for b in loop.body for n in ast.walk(b) if isinstance(getattr(n, "ctx", None), ast.Store)]
        assigned = {n.id for n in stores if isinstance(n, ast.Name)}
        assigned |= {n.value.id for n in stores if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)}
        read = {n.id for n in ast.walk(loop) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        loc, out = self.pk.loc(loop), []
        for n in sorted(assigned):
            v = self.env.get(n)
            if isinstance(v, (int, float)) and n in read:
                v = self.env[n] = self.as_value(v, loop)
            if isinstance(v, Value):
                out.append((n, None, Value("phi", [], v.type, loc, n), v))
            elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Value) for x in v):
                out += [(n, i, Value("phi", [], x.type, loc, f"{n}_{i}"), x) for i, x in enumerate(v)]
        return out
    def final(self, name: str, t: BlockT, node: ast.AST, v: Any = _MISSING, i: int | None = None) -> Value:
        """The value ``name`` (its element ``i``) carries out of a body (``v``, default its binding), cast to ``t``."""
        if v is _MISSING:
            v = self.env.get(name)
            if i is not None:
                v, name = v[i] if isinstance(v, (list, tuple)) and i < len(v) else None, f"{name}[{i}]"
        v = O.cast(self, self.as_value(v, node, t.dtype), t.dtype, node)
        if not same_dims(v.type.dims, t.dims):
            raise self.err(exc.ShapeMismatch, f"'{name}' changes shape in the loop ({t} -> {v.type}): a loop-carried "
                           "value keeps its shape; start it with that shape (e.g. hl.zeros([tile, ...]))", node)
        return v
    def header(self, s: ast.For, top: bool) -> list[TileVar]:
        call, f = s.iter, self.pk.resolve(s.iter.func)
        is_grid, kw = f is hl.grid, {k.arg: k.value for k in call.keywords}
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
        if len(vals) not in (1, 2):
            raise self.err(exc.NotSupported, "hl.tile/hl.grid take (end), (begin, end) or lists of them", s)
        if len(vals) == 1:
            vals = [[0] * len(vals[0]) if isinstance(vals[0], seq) else 0, vals[0]]
        ends = list(zip(*vals)) if all(isinstance(v, seq) for v in vals) else [tuple(vals)]
        steps = list(steps) if isinstance(steps, seq) else [steps] * len(ends)
        if len(steps) != len(ends) or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in steps):
            raise self.err(exc.NotSupported, "hl.grid steps are positive ints, one per dim", s)
        ids = self.pk.tile_block_ids.get(id(call), [])  # hl.tile(x.size()): more ids once its rank is known
        ids = ids + [self.pk.extra_block_id(call, k) for k in range(len(ids), 0 if is_grid else len(ends))]
        bs_node = kw.get("block_size")
        per = bs_node.elts if isinstance(bs_node, (ast.List, ast.Tuple)) else [bs_node] * len(ends)
        fixed_of: dict[ast.AST, Any] = {}  # block_size expression -> its value (one for all dims: evaluated once)
        out = []
        for k, ((begin, end), st) in enumerate(zip(ends, steps)):
            if st != 1:  # hl.grid(b, e, step) runs 0..cdiv(e - b, step), its index is b + i * step
                n = O.binary(self, "-", O.binary(self, "+", end, st - 1, s), begin, s)
                self.grid_steps[len(self.tiles)], begin, end = (begin, st), 0, O.binary(self, "//", n, st, s)
            bid, fixed = ids[k] if k < len(ids) else None, 1 if is_grid else None
            if not is_grid and bid is None:  # a fixed size (a registered one has an id and is never evaluated here)
                fixed = fixed_of[per[k]] = fixed_of.get(per[k]) or self.expr(per[k])
                if not isinstance(fixed, int) or fixed <= 0 or fixed & (fixed - 1):
                    raise self.err(exc.CompileError, f"block_size must be a power of two int, got {fixed!r}", s)
                fixed = int(fixed)
            info = TileInfo(len(self.tiles), bid, fixed, self.code_of(begin, s), self.code_of(end, s),
                            end - begin if isinstance(begin, int) and isinstance(end, int) else None, top, is_grid)
            self.tiles[info.id] = info
            out.append(TileVar(info))
            if parent is not None:
                self.jagged[info.id] = parent
        return out
    def code_of(self, v: Any, node: ast.AST) -> "str | Value":
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if isinstance(v, Value) and not v.type.dims and not v.type.dtype.is_floating_point:
            return v.args[0] if v.op == "param" else v
        raise self.err(exc.CompileError, f"loop bounds must be ints or device ints, got {type(v).__name__}", node)
    def bind_target(self, target: ast.expr, tiles: list[TileVar]) -> None:
        vals: list[Any] = [self.grid_index(t, target) if t.info.is_grid else t for t in tiles]
        if isinstance(target, ast.Name):
            self.env[target.id] = vals[0] if len(vals) == 1 else tuple(vals)
            names = [target.id] if len(vals) == 1 else [f"{target.id}{k}" for k in range(len(vals))]
        elif isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == len(vals):
            if not all(isinstance(t, ast.Name) for t in target.elts):
                raise self.err(exc.NotSupported, "loop targets must be names", target)
            names = [t.id for t in target.elts]
            self.env.update(zip(names, vals))
        else:
            raise self.err(exc.NotSupported, "loop target does not match the number of tile dims", target)
        for t, name in zip(tiles, names):
            t.info.name = name
    def grid_index(self, t: TileVar, node: ast.AST) -> Value:
        i = Value("tile_attr", [t.info], BlockT((), torch.int32), self.loc, t.info.name or "i", attr="begin")
        begin, step = self.grid_steps.get(t.info.id, (0, 1))
        return i if step == 1 else O.binary(self, "+", O.binary(self, "*", i, step, node), begin, node)
    def expr(self, node: ast.expr) -> Any:
        if (hid := self.hoisted.get(id(node))) is not None:
            return self.host_value(hid, self.inputs[hid], node)
        m = getattr(self, f"expr_{type(node).__name__}", None)
        if m is None:
            raise self.err(exc.NotSupported, f"'{type(node).__name__}' expressions are not supported in device code",
                           node)
        return m(node)
    def expr_Constant(self, node: ast.Constant) -> Any: return node.value
    def expr_Name(self, node: ast.Name) -> Any:
        name = node.id
        if name in self.env:
            return self.env[name]
        if self.inline_free is not None and name in self.inline_free:  # an inlined helper's closure or global
            return self.host_value(self.inline_free[name], self.inputs[self.inline_free[name]], node)
        if self.inline_free is None and name in self.inputs:
            val = self.inputs[name]
            if name in self.pk.registered and isinstance(val, int) and not isinstance(val, bool):
                return self.block_int(self.pk.registered[name], val)
            return self.host_value(name, val, node)
        if name in self.pk.globals:  # inside an inlined helper: its own globals
            if self.inline_free is not None and isinstance(self.pk.globals[name], torch.Tensor):
                raise self.err(exc.NotSupported, f"'{name}': a module-level tensor is read by a helper called "
                               "by name from the kernel; one called from another helper (or through an expression) "
                               "takes it as an argument", node)
            return self.host_value(name, self.pk.globals[name], node)
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise self.err(exc.CompileError, f"name '{name}' is not defined", node)
    def expr_Tuple(self, node: ast.Tuple) -> tuple: return tuple(self.expr(e) for e in node.elts)
    expr_List = expr_Tuple
    def expr_ListComp(self, node: ast.ListComp) -> list:
        """``[elt for name in range(const) | a host list/tuple if const-cond]``, unrolled at compile time."""
        gen = node.generators[0] if len(node.generators) == 1 else None
        if gen is None or not isinstance(gen.target, ast.Name) or gen.is_async:
            raise self.err(exc.NotSupported, "list comprehensions in device code take one 'for name in ...'", node)
        items = self.static_range(gen.iter)
        items = self.expr(gen.iter) if items is None else items
        if not isinstance(items, (range, list, tuple)):
            raise self.err(exc.NotSupported, "a device-code list comprehension iterates over range(const) or a "
                           "list/tuple known at compile time", node)
        outer, out, self.env = self.env, [], dict(self.env)  # the loop variable is the comprehension's own
        for item in items:
            self.env[gen.target.id] = item
            conds = [self.expr(c) for c in gen.ifs]
            if any(isinstance(c, Value) for c in conds):
                raise self.err(exc.NotSupported, "a list comprehension's if must be known at compile time", node)
            if all(conds):
                out.append(self.expr(node.elt))
        self.env = outer
        return out
    def expr_Dict(self, node: ast.Dict) -> dict:
        """A dict of str keys (named arguments of hl.inline_triton / hl.triton_kernel)."""
        if not all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
            raise self.err(exc.NotSupported, "dicts in device code need str literal keys", node)
        return {k.value: self.expr(v) for k, v in zip(node.keys, node.values)}
    def expr_Attribute(self, node: ast.Attribute) -> Any:
        return O.attribute(self, self.expr(node.value), node.attr, node)
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
        return O.binary(self, _BINOPS.get(type(node.op)), self.expr(node.left), self.expr(node.right), node)
    def expr_UnaryOp(self, node: ast.UnaryOp) -> Any:
        return O.unary(self, _UNARY[type(node.op)], self.expr(node.operand), node)
    def expr_Compare(self, node: ast.Compare) -> Any:
        left, out = self.expr(node.left), None
        for op, right_node in zip(node.ops, node.comparators):
            right, is_op = self.expr(right_node), isinstance(op, (ast.Is, ast.IsNot))
            if is_op and (isinstance(left, Value) or isinstance(right, Value)):
                raise self.err(exc.NotSupported, "'is' on device values", node)
            r = ((left is right) == isinstance(op, ast.Is) if is_op
                 else O.binary(self, _CMPOPS.get(type(op)), left, right, node))
            out, left = r if out is None else O.binary(self, "&", out, r, node), right
        return out
    def expr_BoolOp(self, node: ast.BoolOp) -> Any:
        vals = [self.expr(v) for v in node.values]
        op = "&" if isinstance(node.op, ast.And) else "|"
        if not any(isinstance(v, Value) for v in vals):
            return all(vals) if op == "&" else any(vals)
        return functools.reduce(lambda a, b: O.binary(self, op, a, b, node), vals)
    def expr_IfExp(self, node: ast.IfExp) -> Any:
        c = self.expr(node.test)
        if not isinstance(c, Value):
            return self.expr(node.body) if c else self.expr(node.orelse)
        return O.where(self, c, self.expr(node.body), self.expr(node.orelse), node)
    def expr_Call(self, node: ast.Call) -> Any:
        args = [self.expr(a) for a in node.args if not isinstance(a, ast.Starred)]
        args += [x for a in node.args if isinstance(a, ast.Starred) for x in self.expr(a.value)]
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
        host_name = node.func.id if isinstance(node.func, ast.Name) else None
        mod = (fn.__module__ or "") if isinstance(fn, types.FunctionType) else None
        if mod is not None and not getattr(fn, "_hl_device", None) \
                and not mod.startswith(("torch", "triton", "helion_ops.dsl")):
            return inline.call(self, fn, args, kwargs, node, host_name)
        try:
            return D.call(self, fn, args, kwargs, node)
        except exc.NotSupported as unmapped:
            if mod is None or not mod.startswith("torch"):
                raise
            # A plain Python function torch happens to define (flex_attention's _identity score_mod):
            # inline it like a user helper; if that fails too, the mapping error is the clearer one.
            n_stmts, n_loads = len(self.stmts), self.n_loads
            try:
                return inline.call(self, fn, args, kwargs, node, host_name)
            except exc.HelionOpsError:
                del self.stmts[n_stmts:]
                self.n_loads = n_loads
                raise unmapped from None
    index = IX.index
    make_index = IX.make_index
    def load(self, ref: TensorRef, idx: Index, node: ast.AST) -> Value:
        idx = IX.access(self, idx, node, store=False)
        self.n_loads += 1
        return self.emit("load", [idx], BlockT(idx.dims(), ref.arg.dtype), node, load_id=self.n_loads - 1)
    def scalar_of(self, v: Any, node: ast.AST) -> Any:
        """A 0-d host tensor used as a value (``lim = torch.tensor(0.5)`` made on the host): its element."""
        return self.load(v, self.make_index(v, [], node), node) if isinstance(v, TensorRef) and v.arg.ndim == 0 else v
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
        return promote(a.type.dtype if isinstance(a, Value) else a, b.type.dtype if isinstance(b, Value) else b)

def bind(env: dict, phis: list) -> dict:
    for name, i, phi, _ in phis:
        env[name] = phi if i is None else [phi if j == i else x for j, x in enumerate(env[name])]
    return env

def without_continue(body: list[ast.stmt]) -> list[ast.stmt]:
    """A loop body with its `continue`s turned into branches (Triton has no continue): the rest of the body goes into
    each branch of an `if` that falls through (not the one that continues); nested loops keep their own continues."""
    def rw(stmts: list[ast.stmt], tail: list[ast.stmt]) -> list[ast.stmt]:
        done: list[ast.stmt] = []
        for i, s in enumerate(stmts):
            if isinstance(s, ast.Continue):
                return done
            if isinstance(s, ast.If) and _has([s], ast.Continue):
                after = stmts[i + 1:] + tail
                new = ast.If(test=s.test, body=rw(s.body, after) or [ast.Pass()], orelse=rw(s.orelse, after))
                return done + [ast.copy_location(new, s)]
            done.append(s)
        return done + tail
    return rw(body, []) if _has(body, ast.Continue) else body

def _has(nodes: list[ast.AST], kind: type) -> bool:
    """Whether ``nodes`` hold a ``kind`` node outside nested loops (a break or continue of this loop)."""
    return any(isinstance(n, kind) or not isinstance(n, (ast.For, ast.While))
               and _has(list(ast.iter_child_nodes(n)), kind) for n in nodes)

def config_block(config: Config, bid: int) -> int | None:
    """The size ``config`` gives block id ``bid`` (None: not given, the default depends only on the specialization)."""
    bs = config.get("block_sizes") or []
    return int(bs[bid]) if bid < len(bs) else None

def block_size(config: Config, bid: int, extent: Any = None) -> int:
    """``config``'s size for block ``bid``, else (left out) up to 64, from the extent when known."""
    size = config_block(config, bid)
    return size if size is not None else min(64, next_pow2(extent)) if isinstance(extent, int) else 64

def lower(pk: ParsedKernel, loop: DeviceLoop, inputs: dict[str, Any], hoisted: dict[int, str],
          config: Config, name: str) -> DeviceIR:
    """Lower ``loop`` with concrete host ``inputs``: the IR holds for each Config agreeing on the sizes in ``deps``."""
    lw, node = Lowerer(pk, loop, inputs, hoisted, config, name), loop.node
    tiles = lw.header(node, top=True)
    lw.bind_target(node.target, tiles)
    for s in without_continue(node.body):
        lw.stmt(s)
    if node.orelse:
        raise exc.NotSupported("for/else on a device loop", pk.loc(node))
    return DeviceIR(name, LaunchInputs(list(lw.tensors.values()), list(lw.scalars.values())), [t.info for t in tiles],
                    lw.tiles, lw.rdims, lw.stmts, lw.n_loops, lw.n_loads, lw.block_ids, lw.helpers, lw.deps)
