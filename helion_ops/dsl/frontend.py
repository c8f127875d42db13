"""Frontend: parse a kernel, number its block-size ids in source order, and make the host function (plain Python
where each top-level ``hl.tile``/``hl.grid`` loop, a device loop, becomes ``__hl_launch__(i, locals())``)."""
from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any, Callable

from . import exc, language as hl

@dataclass
class DeviceLoop:
    index: int
    node: ast.For
    reads: list[str]                 # free names the loop reads (host locals or globals)
    assigned: set[str]

@dataclass
class ParsedKernel:
    fn: Callable
    name: str
    file: str
    lines: list[str]                 # source lines of the file (for locs)
    tree: ast.FunctionDef
    globals: dict[str, Any]
    source_hash: str
    loops: list[DeviceLoop] = field(default_factory=list)
    blocks: list[exc.Loc] = field(default_factory=list)  # where each block-size id is declared
    tile_block_ids: dict[int, list] = field(default_factory=dict)  # id(hl.tile Call) -> per-dim block id | None
    registered: dict[str, int] = field(default_factory=dict)  # host name bound to hl.register_block_size -> id
    extra_blocks: dict = field(default_factory=dict)
    host_fn: Any = None              # the rewritten host function (_rewrite_host)
    _host_globals: dict = field(default_factory=dict)
    def loc(self, node: ast.AST) -> exc.Loc:
        line = getattr(node, "lineno", 0)
        return exc.Loc(self.file, line, self.lines[line - 1] if 0 < line <= len(self.lines) else "")
    def new_block(self, node: ast.AST) -> int:
        self.blocks.append(self.loc(node))
        return len(self.blocks) - 1
    def extra_block_id(self, call: ast.Call, k: int) -> int:
        """A block id for dim k of an hl.tile whose rank is only known at run time."""
        if (id(call), k) not in self.extra_blocks:
            self.extra_blocks[id(call), k] = self.new_block(call)
        return self.extra_blocks[id(call), k]
    def resolve(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.globals[node.id] if node.id in self.globals else getattr(builtins, node.id, None)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return getattr(base, node.attr, None) if base is not None else None
        return None

def parse(fn: Callable) -> ParsedKernel:
    """Parse ``fn`` and prepare its host function. Errors point at fn's file and line."""
    file = inspect.getsourcefile(fn) or "<unknown>"
    src_lines, first = inspect.getsourcelines(fn)
    src = textwrap.dedent("".join(src_lines))
    tree = ast.parse(src)
    ast.increment_lineno(tree, first - 1)
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        raise exc.NotSupported("@kernel must decorate a plain function", exc.Loc(file, first))
    fdef.decorator_list = []
    try:
        with open(file) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = [""] * (first - 1) + src.splitlines()
    glb = dict(fn.__globals__)
    glb.update(zip(fn.__code__.co_freevars, [cell.cell_contents for cell in fn.__closure__ or ()]))
    pk = ParsedKernel(fn, fn.__name__, file, lines, fdef, glb, hashlib.sha256(src.encode()).hexdigest()[:16])
    _find_loops(pk, fdef.body)
    if not pk.loops:
        raise exc.CompileError(f"kernel {pk.name} has no hl.tile/hl.grid loop", pk.loc(fdef))
    _number_blocks(pk)
    _check_host_reads(pk)
    pk.host_fn = _rewrite_host(pk)
    return pk

def _find_loops(pk: ParsedKernel, stmts: list[ast.stmt]) -> None:
    for s in stmts:
        if isinstance(s, ast.For) and isinstance(s.iter, ast.Call) and pk.resolve(s.iter.func) in (hl.tile, hl.grid):
            names = [n for n in ast.walk(s) if isinstance(n, ast.Name)]
            assigned = {n.id for n in names if isinstance(n.ctx, (ast.Store, ast.Del))}
            reads = {n.id for n in names if isinstance(n.ctx, ast.Load)}
            pk.loops.append(DeviceLoop(len(pk.loops), s, sorted(reads - assigned), assigned))
        elif isinstance(s, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.ExceptHandler)):
            for f in ("body", "orelse", "finalbody", "handlers"):
                _find_loops(pk, getattr(s, f, []))

def _number_blocks(pk: ParsedKernel) -> None:
    """Give block ids in source order: registered blocks, then each tile dim without a fixed size."""
    targets = {id(n.value): n.targets[0].id for n in ast.walk(pk.tree)
               if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}
    for call in sorted((n for n in ast.walk(pk.tree) if isinstance(n, ast.Call)),
                       key=lambda n: (n.lineno, n.col_offset)):
        f = pk.resolve(call.func)
        if f is hl.register_block_size:
            call._hl_block_id = pk.new_block(call)  # type: ignore[attr-defined]
            if id(call) in targets:
                pk.registered[targets[id(call)]] = call._hl_block_id  # type: ignore[attr-defined]
        elif f in (hl.tile, hl.jagged_tile):
            last = call.args[-1] if call.args else None
            ndims = len(last.elts) if isinstance(last, (ast.List, ast.Tuple)) else 1
            bs = next((k.value for k in call.keywords if k.arg == "block_size"), None)
            # a new id per dim left to the Config, else a registered block's id, or None (a fixed size)
            pk.tile_block_ids[id(call)] = [
                pk.new_block(call) if b is None or isinstance(b, ast.Constant) and b.value is None
                else pk.registered.get(b.id) if isinstance(b, ast.Name) else None
                for b in (bs.elts if isinstance(bs, (ast.List, ast.Tuple)) else [bs] * ndims)]

def _check_host_reads(pk: ParsedKernel) -> None:
    """A value assigned inside a device loop cannot flow back to host code, nor may a device loop rebind a name
    bound before it on the host (which would silently keep the old value)."""
    inside = {id(n) for lp in pk.loops for n in ast.walk(lp.node)}
    host_nodes = [n for n in ast.walk(pk.tree) if id(n) not in inside]
    stored = [n for n in host_nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    host = {n.id for n in stored} | {n.arg for n in host_nodes if isinstance(n, ast.arg)}
    fa = pk.tree.args
    params = {a.arg for a in fa.posonlyargs + fa.args + fa.kwonlyargs + [fa.vararg, fa.kwarg] if a is not None}
    for lp in pk.loops:
        before = params | {n.id for n in stored if n.lineno < lp.node.lineno}
        targets = {n.id for n in ast.walk(lp.node.target) if isinstance(n, ast.Name)}
        for n in (n for s in lp.node.body for n in _device_stores(s)):
            if n.id in before and n.id not in targets:
                raise exc.CannotModifyHostVariableOnDevice(
                    f"'{n.id}' is a host variable (bound before this device loop); a device loop cannot assign "
                    f"it: use a new name, or store into a tensor (out[tile] = v)", pk.loc(n))
        leaked = lp.assigned - host
        for n in host_nodes:
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in leaked \
                    and n.lineno > lp.node.end_lineno:
                raise exc.HostAssignInDevice(
                    f"'{n.id}' is assigned inside a device loop and read by host code; only stores "
                    f"into tensors (out[...] = v) leave a device loop", pk.loc(n))

def _device_stores(node: ast.AST) -> list[ast.Name]:
    """Names a device loop statement binds (comprehension variables have their own scope)."""
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)):
        return []
    own = [node] if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) else []
    return own + [n for c in ast.iter_child_nodes(node) for n in _device_stores(c)]

class _HostRewriter(ast.NodeTransformer):
    """Device loops become launches; hl.register_block_size(...) reads the run's block size."""
    def __init__(self, pk: ParsedKernel) -> None: self.loop_ids = {id(lp.node): lp.index for lp in pk.loops}
    def visit_For(self, node: ast.For) -> ast.AST:
        if id(node) in self.loop_ids:
            return _relocate(ast.parse(f"__hl_launch__({self.loop_ids[id(node)]}, locals())").body[0], node)
        return self.generic_visit(node)
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not hasattr(node, "_hl_block_id"):
            return node
        new = ast.parse(f"__hl_rt__().block_size({node._hl_block_id})", mode="eval").body
        new.args += node.args
        new.keywords = node.keywords
        return _relocate(new, node)

def _relocate(new: ast.AST, old: ast.AST) -> ast.AST:
    for n in ast.walk(new):
        if "lineno" in n._attributes:
            ast.copy_location(n, old)
    return new

def _rewrite_host(pk: ParsedKernel) -> Callable:
    """The host function, run under hl._RUN. Only its code object is kept: annotations never run."""
    fdef = _HostRewriter(pk).visit(pk.tree)
    code = compile(ast.fix_missing_locations(ast.Module(body=[fdef], type_ignores=[])), pk.file, "exec")
    code = next(c for c in code.co_consts if inspect.iscode(c) and c.co_name == pk.name)
    glb = pk._host_globals = dict(pk.globals, __hl_launch__=lambda i, loc: hl._RUN.get().launch(i, loc),
                                  __hl_rt__=hl.current_run)
    fn = types.FunctionType(code, glb, pk.name, pk.fn.__defaults__)
    fn.__kwdefaults__ = pk.fn.__kwdefaults__
    return fn
