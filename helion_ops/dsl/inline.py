"""Calls to plain Python functions and lambdas inside device code are inlined.

The callee's AST is lowered in the caller's Lowerer with its own name scope:
parameters bound to the argument values, free names resolved in the callee's
globals and closure (tensors it closes over arrive as launcher values, see
``pipeline.hoist_plan``). Errors point at the callee's own file and line.
``return`` may appear at the end of the body or in branches on compile-time
constants; a return under a device-valued ``if`` is not supported.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import types
from typing import Any

import torch

from . import exc

CLOSURE_SLOTS = 4  # tensors a function argument may close over and use in device code
MAX_DEPTH = 32     # nested helper calls (each is inlined)
_FILES: dict[str, ast.Module] = {}
_FN_AST: dict[int, tuple] = {}

def function_ast(fn: types.FunctionType) -> tuple[ast.AST, str, list[str]]:
    """(FunctionDef or Lambda node, file, lines) of ``fn``, from its file's parse (cached)."""
    key = id(fn.__code__)
    hit = _FN_AST.get(key)
    if hit is not None and hit[0] is fn.__code__:
        return hit[1]
    code = fn.__code__
    file = inspect.getsourcefile(fn) or code.co_filename
    try:
        with open(file) as f:
            text = f.read()
    except OSError:
        raise exc.NotSupported(f"cannot read the source of {fn.__qualname__} to inline it into device code") from None
    tree = _FILES.get(file)
    if tree is None or getattr(tree, "_text", None) != text:
        tree = ast.parse(text)
        tree._text = text  # type: ignore[attr-defined]
        _FILES[file] = tree
    params = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    found = None
    for node in ast.walk(tree):
        if code.co_name == "<lambda>" and isinstance(node, ast.Lambda):
            if node.lineno == code.co_firstlineno and [a.arg for a in node.args.args + node.args.kwonlyargs] == params:
                found = node
                break
        elif isinstance(node, ast.FunctionDef) and node.name == code.co_name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if first == code.co_firstlineno or node.lineno == code.co_firstlineno:
                found = node
                break
    if found is None:
        raise exc.NotSupported(f"cannot find the source of {fn.__qualname__} to inline it into device code")
    out = (found, file, text.splitlines())
    _FN_AST[key] = (code, out)
    return out

def _closure_tensor_names(fn: types.FunctionType) -> list[str]:
    out = []
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            if isinstance(cell.cell_contents, torch.Tensor):
                out.append(var)
        except ValueError:
            pass
    return out

def closure_tensor(fn: Any, j: int) -> Any:
    """The j-th tensor ``fn`` closes over, or None (evaluated by the launcher on each call)."""
    if not isinstance(fn, types.FunctionType) or not fn.__closure__:
        return None
    names = _closure_tensor_names(fn)
    if j >= len(names):
        return None
    return fn.__closure__[fn.__code__.co_freevars.index(names[j])].cell_contents

class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value

def call(lw, fn: types.FunctionType, args: list, kwargs: dict, node: ast.AST, host_name: str | None = None) -> Any:
    """Inline ``fn(*args, **kwargs)`` into the device code being lowered by ``lw``. Helpers nest at most
    MAX_DEPTH deep: device code has no call stack, so a recursive helper is refused at the call."""
    depth = getattr(lw, "inline_depth", 0)
    if depth >= MAX_DEPTH:
        raise lw.err(exc.NotSupported, f"{fn.__qualname__}() calls helpers {MAX_DEPTH} deep: device helpers are "
                     "inlined, so recursion cannot be compiled; write it as a loop", node)
    lw.inline_depth = depth + 1
    try:
        return _call(lw, fn, args, kwargs, node, host_name)
    finally:
        lw.inline_depth = depth

def _call(lw, fn: types.FunctionType, args: list, kwargs: dict, node: ast.AST, host_name: str | None) -> Any:
    fnode, file, lines = function_ast(fn)
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise lw.err(exc.CompileError, f"{fn.__qualname__}(): {e}", node) from None
    bound.apply_defaults()
    env = dict(bound.arguments)
    glb = dict(fn.__globals__)
    if fn.__closure__:
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__):
            try:
                glb[var] = cell.cell_contents
            except ValueError:
                pass
    free = {var: lw.hoisted[("closure", host_name, j)] for j, var in enumerate(_closure_tensor_names(fn))
            if ("closure", host_name, j) in lw.hoisted}
    free.update({g: lw.hoisted[("global", host_name, g)] for g in fn.__code__.co_names
                 if ("global", host_name, g) in lw.hoisted and g not in env})
    saved = (lw.env, lw.pk, lw.inline_free)
    lw.env, lw.inline_free = env, free
    lw.pk = dataclasses.replace(lw.pk, globals=glb, file=file, lines=lines)
    try:
        if isinstance(fnode, ast.Lambda):
            return lw.expr(fnode.body)
        try:
            _run(lw, fnode.body)
        except _Return as r:
            return r.value
        return None
    finally:
        lw.env, lw.pk, lw.inline_free = saved

def _run(lw, body: list[ast.stmt]) -> None:
    from .ir import Value
    for s in body:
        if isinstance(s, ast.Return):
            raise _Return(lw.expr(s.value) if s.value is not None else None)
        if isinstance(s, ast.If) and _has_return(s):
            cond = lw.expr(s.test)
            if isinstance(cond, Value):
                raise lw.err(exc.NotSupported, "return under an if on a device value in an inlined function; "
                             "compute both results and use torch.where", s)
            _run(lw, s.body if cond else s.orelse)
            continue
        lw.stmt(s)

def _has_return(s: ast.AST) -> bool:
    return any(isinstance(n, ast.Return) for n in ast.walk(s))
