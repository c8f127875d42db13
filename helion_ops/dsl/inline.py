"""Calls to plain Python functions and lambdas in device code are inlined: parameters bound to the argument values,
free names resolved in the callee's globals and closure (its tensors arrive as launcher values), errors at its lines."""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import types
from typing import Any

import torch

from . import exc
from .ir import Value

CLOSURE_SLOTS = 4  # tensors a function argument may close over and use in device code
MAX_DEPTH = 32     # nested helper calls (each is inlined)
_parse = functools.lru_cache(maxsize=None)(ast.parse)  # one parse per source text (an edited file parses anew)
_FN_AST: dict[int, tuple] = {}
_FELL_THROUGH = object()

def function_ast(fn: types.FunctionType) -> tuple[ast.AST, str, list[str]]:
    """(FunctionDef or Lambda node, file, lines) of ``fn``, from its file's parse (cached)."""
    code = fn.__code__
    if (hit := _FN_AST.get(id(code))) is not None and hit[0] is code:
        return hit[1]
    file = inspect.getsourcefile(fn) or code.co_filename
    try:
        with open(file) as f:
            text = f.read()
    except OSError:
        raise exc.NotSupported(f"cannot read the source of {fn.__qualname__} to inline it into device code") from None
    params = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    def is_fn(node: ast.AST) -> bool:
        if code.co_name == "<lambda>":
            return isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno \
                and [a.arg for a in node.args.args + node.args.kwonlyargs] == params
        return isinstance(node, ast.FunctionDef) and node.name == code.co_name and code.co_firstlineno in \
            (node.lineno, min([node.lineno] + [d.lineno for d in node.decorator_list]))
    found = next((node for node in ast.walk(_parse(text)) if is_fn(node)), None)
    if found is None:
        raise exc.NotSupported(f"cannot find the source of {fn.__qualname__} to inline it into device code")
    _FN_AST[id(code)] = (code, (found, file, text.splitlines()))
    return _FN_AST[id(code)][1]

def _cells(fn: types.FunctionType) -> dict[str, Any]:
    out = {}
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            out[var] = cell.cell_contents
        except ValueError:  # an empty cell (the closure is evaluated per launch: no context manager)
            pass
    return out

def closure_tensor(fn: Any, j: int) -> Any:
    """The j-th tensor ``fn`` closes over, or None (evaluated by the launcher on each call)."""
    if not isinstance(fn, types.FunctionType) or not fn.__closure__:
        return None
    tensors = [x for x in _cells(fn).values() if isinstance(x, torch.Tensor)]
    return tensors[j] if j < len(tensors) else None

def call(lw, fn: types.FunctionType, args: list, kwargs: dict, node: ast.AST, host_name: str | None = None) -> Any:
    """Inline ``fn(*args, **kwargs)`` into ``lw``'s device code; at most MAX_DEPTH deep (device code has no stack)."""
    if lw.inline_depth >= MAX_DEPTH:
        raise lw.err(exc.NotSupported, f"{fn.__qualname__}() calls helpers {MAX_DEPTH} deep: device helpers are "
                     "inlined, so recursion cannot be compiled; write it as a loop", node)
    fnode, file, lines = function_ast(fn)
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise lw.err(exc.CompileError, f"{fn.__qualname__}(): {e}", node) from None
    bound.apply_defaults()
    cells = _cells(fn)
    tensors = [var for var, x in cells.items() if isinstance(x, torch.Tensor)]
    free = {var: lw.hoisted[key] for j, var in enumerate(tensors) if (key := ("closure", host_name, j)) in lw.hoisted}
    free.update({g: lw.hoisted[("global", host_name, g)] for g in fn.__code__.co_names
                 if ("global", host_name, g) in lw.hoisted and g not in bound.arguments})
    saved = (lw.env, lw.pk, lw.inline_free, lw.inline_depth)
    lw.env, lw.inline_free, lw.inline_depth = dict(bound.arguments), free, lw.inline_depth + 1
    lw.pk = dataclasses.replace(lw.pk, globals={**fn.__globals__, **cells}, file=file, lines=lines)
    try:
        out = lw.expr(fnode.body) if isinstance(fnode, ast.Lambda) else _run(lw, fnode.body)
        return None if out is _FELL_THROUGH else out
    finally:
        lw.env, lw.pk, lw.inline_free, lw.inline_depth = saved

def _run(lw, body: list[ast.stmt]) -> Any:
    """Lower an inlined body up to the ``return`` it reaches (under constant ``if``s): its value, else _FELL_THROUGH."""
    for s in body:
        if isinstance(s, ast.Return):
            return lw.expr(s.value) if s.value is not None else None
        if isinstance(s, ast.If) and any(isinstance(n, ast.Return) for n in ast.walk(s)):
            cond = lw.expr(s.test)
            if isinstance(cond, Value):
                raise lw.err(exc.NotSupported, "return under an if on a device value in an inlined function; "
                             "compute both results and use torch.where", s)
            out = _run(lw, s.body if cond else s.orelse)
            if out is not _FELL_THROUGH:
                return out
        else:
            lw.stmt(s)
    return _FELL_THROUGH
