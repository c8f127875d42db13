"""Frontend: parse a kernel's source, split host code from device loops.

Each top-level ``for ... in hl.tile(...)`` / ``hl.grid(...)`` statement (one
not nested in another device loop) is a device loop. The host function is
rewritten so each device loop becomes ``__hl_launch__(i, locals())`` and is
then run as ordinary Python: allocations, sizes and asserts just work, and the
launcher sees real values. Block-size ids are numbered here, statically, in
source order: Config.block_sizes is indexed by them.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
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
class BlockDecl:
    """A tunable block size: from hl.register_block_size or an hl.tile dim."""

    id: int
    loc: exc.Loc
    registered: bool
    bounds: tuple[ast.expr | None, ast.expr | None] = (None, None)  # (min, max) expressions when registered

@dataclass
class ParsedKernel:
    fn: Callable
    name: str
    file: str
    lines: list[str]                 # source lines of the file (for locs)
    tree: ast.FunctionDef
    loops: list[DeviceLoop]
    blocks: list[BlockDecl]
    tile_block_ids: dict[int, list]  # id(hl.tile Call node) -> per-dim block id | None
    host_code: Any                   # code object of the rewritten host function
    globals: dict[str, Any]
    extra_blocks: dict = field(default_factory=dict)
    registered: dict[str, int] = field(default_factory=dict)  # host name bound to hl.register_block_size -> id
    source_hash: str = ""

    def loc(self, node: ast.AST) -> exc.Loc:
        line = getattr(node, "lineno", 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return exc.Loc(self.file, line, text)

    def extra_block_id(self, call: ast.Call, k: int) -> int:
        """A block id for dim k of an hl.tile whose rank is only known at run time."""
        key = (id(call), k)
        if key not in self.extra_blocks:
            self.extra_blocks[key] = len(self.blocks)
            self.blocks.append(BlockDecl(len(self.blocks), self.loc(call), False))
        return self.extra_blocks[key]

    def resolve(self, node: ast.AST) -> Any:
        """The object a Name/Attribute chain refers to in the kernel's globals, or None."""
        return resolve(node, self.globals)

def resolve(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        return getattr(builtins, node.id, None)
    if isinstance(node, ast.Attribute):
        base = resolve(node.value, env)
        return getattr(base, node.attr, None) if base is not None else None
    return None

def parse(fn: Callable) -> ParsedKernel:
    """Parse ``fn`` and prepare its host function. Errors point at fn's file and line."""
    import hashlib

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
    if fn.__closure__:
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
            glb[name] = cell.cell_contents
    pk = ParsedKernel(fn, fn.__name__, file, lines, fdef, [], [], {}, None, glb)
    pk.source_hash = hashlib.sha256(src.encode()).hexdigest()[:16]
    _find_loops(pk)
    _number_blocks(pk)
    _check_host_reads(pk)
    pk.host_code = _rewrite_host(pk)
    return pk

def is_device_loop(pk: ParsedKernel, node: ast.AST) -> bool:
    return (isinstance(node, ast.For) and isinstance(node.iter, ast.Call)
            and pk.resolve(node.iter.func) in (hl.tile, hl.grid))

def _find_loops(pk: ParsedKernel) -> None:
    def visit(stmts: list[ast.stmt]) -> None:
        for s in stmts:
            if is_device_loop(pk, s):
                assigned = _assigned_names(s)
                reads = sorted(_read_names(s) - assigned)
                pk.loops.append(DeviceLoop(len(pk.loops), s, reads, assigned))
            elif isinstance(s, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
                for fld in ("body", "orelse", "finalbody"):
                    visit(getattr(s, fld, []) or [])
                for h in getattr(s, "handlers", []) or []:
                    visit(h.body)
    visit(pk.tree.body)
    if not pk.loops:
        raise exc.CompileError(f"kernel {pk.name} has no hl.tile/hl.grid loop", pk.loc(pk.tree))

def _assigned_names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
    return out

def _read_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}

def _number_blocks(pk: ParsedKernel) -> None:
    """Give block ids in source order: registered blocks, then each tile dim without a fixed size."""
    registered: dict[str, int] = {}
    nodes = sorted((n for n in ast.walk(pk.tree) if isinstance(n, ast.Call)),
                   key=lambda n: (n.lineno, n.col_offset))
    for call in nodes:
        f = pk.resolve(call.func)
        if f is hl.register_block_size:
            bid = len(pk.blocks)
            lo, hi = (call.args + [None, None])[:2]
            bounds = (lo, hi) if hi is not None else (None, lo)
            pk.blocks.append(BlockDecl(bid, pk.loc(call), True, bounds))
            call._hl_block_id = bid  # type: ignore[attr-defined]
            parent_targets = _assign_target_of(pk.tree, call)
            if parent_targets:
                registered[parent_targets] = bid
        elif f in (hl.tile, hl.jagged_tile):
            ndims = len(call.args[-1].elts) if call.args and isinstance(call.args[-1], (ast.List, ast.Tuple)) else 1
            bs = next((k.value for k in call.keywords if k.arg == "block_size"), None)
            per = bs.elts if isinstance(bs, (ast.List, ast.Tuple)) else [bs] * ndims
            ids: list[int | None] = []
            for b in per:
                if b is None or (isinstance(b, ast.Constant) and b.value is None):
                    ids.append(len(pk.blocks))
                    pk.blocks.append(BlockDecl(len(pk.blocks), pk.loc(call), False))
                elif isinstance(b, ast.Name) and b.id in registered:
                    ids.append(registered[b.id])
                else:
                    ids.append(None)  # fixed: evaluated as an expression
            pk.tile_block_ids[id(call)] = ids
    pk.registered = registered

def _assign_target_of(tree: ast.AST, call: ast.Call) -> str | None:
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and n.value is call and len(n.targets) == 1 \
                and isinstance(n.targets[0], ast.Name):
            return n.targets[0].id
    return None

def _check_host_reads(pk: ParsedKernel) -> None:
    """Device loops and host variables: a value assigned inside a device loop cannot flow back to host
    code, and a device loop may not rebind a name host code bound before it (the host would silently
    keep the old value; Helion raises CannotModifyHostVariableOnDevice)."""
    loop_nodes = {id(lp.node) for lp in pk.loops}
    host = _host_assigned(pk.tree, loop_nodes)
    for lp in pk.loops:
        fa = pk.tree.args
        params = fa.posonlyargs + fa.args + fa.kwonlyargs + [x for x in (fa.vararg, fa.kwarg) if x is not None]
        before = {a.arg for a in params} | {
            n.id for n in ast.walk(pk.tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            and n.lineno < lp.node.lineno and not _inside_any(pk, n, loop_nodes)}
        targets = {n.id for n in ast.walk(lp.node.target) if isinstance(n, ast.Name)}
        for n in _device_stores(lp.node):
            if n.id in before and n.id not in targets:
                raise exc.CannotModifyHostVariableOnDevice(
                    f"'{n.id}' is a host variable (bound before this device loop); a device loop cannot assign "
                    f"it: use a new name, or store into a tensor (out[tile] = v)", pk.loc(n))
        leaked = lp.assigned - host
        for n in ast.walk(pk.tree):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in leaked \
                    and not _inside_any(pk, n, loop_nodes) and n.lineno > lp.node.end_lineno:
                raise exc.HostAssignInDevice(
                    f"'{n.id}' is assigned inside a device loop and read by host code; only stores "
                    f"into tensors (out[...] = v) leave a device loop", pk.loc(n))

def _device_stores(loop: ast.For) -> list[ast.Name]:
    """Names a device loop body binds (comprehension variables have their own scope)."""
    out: list[ast.Name] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.append(node)
        for c in ast.iter_child_nodes(node):
            visit(c)
    for s in loop.body:
        visit(s)
    return out

def _host_assigned(tree: ast.AST, loop_nodes: set[int]) -> set[str]:
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if id(node) in loop_nodes:
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        if isinstance(node, ast.arg):
            out.add(node.arg)
        for c in ast.iter_child_nodes(node):
            visit(c)
    visit(tree)
    return out

def _inside_any(pk: ParsedKernel, target: ast.AST, loop_nodes: set[int]) -> bool:
    for lp in pk.loops:
        for n in ast.walk(lp.node):
            if n is target:
                return True
    return False

class _HostRewriter(ast.NodeTransformer):
    def __init__(self, pk: ParsedKernel) -> None:
        self.pk = pk
        self.loop_ids = {id(lp.node): lp.index for lp in pk.loops}

    def visit_For(self, node: ast.For) -> ast.AST:
        if id(node) in self.loop_ids:
            call = ast.parse(f"__hl_launch__({self.loop_ids[id(node)]}, locals())").body[0]
            return _relocate(call, node)
        self.generic_visit(node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if hasattr(node, "_hl_block_id"):
            new = ast.parse(f"__hl_rt__().block_size({node._hl_block_id})").body[0].value
            new.args += node.args
            new.keywords = node.keywords
            return _relocate(new, node)
        return node

def _relocate(new: ast.AST, old: ast.AST) -> ast.AST:
    for n in ast.walk(new):
        if "lineno" in n._attributes:
            ast.copy_location(n, old)
    return new

def _rewrite_host(pk: ParsedKernel) -> Any:
    fdef = _HostRewriter(pk).visit(pk.tree)
    fdef.args = _strip_annotations(fdef.args)
    fdef.returns = None
    mod = ast.Module(body=[fdef], type_ignores=[])
    ast.fix_missing_locations(mod)
    code = compile(mod, pk.file, "exec")
    return next(c for c in code.co_consts if inspect.iscode(c) and c.co_name == pk.name)

def _strip_annotations(args: ast.arguments) -> ast.arguments:
    for a in args.args + args.kwonlyargs + args.posonlyargs:
        a.annotation = None
    return args
