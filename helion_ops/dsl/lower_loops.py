"""Control flow on device values (part of lower.py's stage): loop-carried values, ``while`` and ``if`` merges.

A name assigned in a loop body carries its value into the next iteration (``carry``); after an ``if`` on a
device scalar, a name bound on both paths is merged (``merge_branches``). A Python number that changes on
device is made a device scalar first: folding it as a constant would silently compute with its first value.
"""
from __future__ import annotations

import ast
from typing import Any, Callable

from . import exc
from .ir import Value, While
from .types import BlockT

_MISSING = object()  # no binding (distinct from None, which a name may hold)

def lower_while(lw: Any, s: ast.While) -> None:
    """``while cond:`` with a scalar condition that is itself loop-carried: evaluated from the values on entry
    and again at the end of each iteration, so the generated loop reads ``while cond_carried:``."""
    if s.orelse:
        raise lw.err(exc.NotSupported, "while ... else in device code", s)
    if any(isinstance(n, ast.Break) for b in s.body for n in _walk_no_loops(b)):
        raise lw.err(exc.NotSupported, "break in device code (Triton has no structured break); "
                     "fold the exit into the while condition", s)
    cond0 = _condition(lw, s)
    if not isinstance(cond0, Value):
        if cond0:
            raise lw.err(exc.NotSupported, "a while loop whose condition is always true needs break, which "
                         "device code cannot use", s)
        return  # never entered
    phis = carry(lw, s, s.body)
    cond_phi = Value("phi", [], cond0.type, lw.pk.loc(s), "cond")

    def last() -> tuple:  # the condition again, from the values at the end of this iteration
        return cond_phi, cond0, lw.coerce(_condition(lw, s), cond0.type, s)
    body, carried = lower_body(lw, s, phis, last=last)
    lw.stmts.append(While(cond_phi, body, carried, lw.pk.loc(s)))

def lower_body(lw: Any, s: ast.For | ast.While, phis: dict, first: Callable = lambda: None,
               last: Callable | None = None) -> tuple[list, list]:
    """(statements, carried triples) of loop ``s``'s body, lowered with the carried names bound to their
    phis; ``first`` runs before the body, ``last`` adds a triple at its end. Names first bound in the body
    stay local to it."""
    before = dict(lw.env)
    bind(lw.env, phis)
    saved, lw.stmts = lw.stmts, []
    first()
    for b in without_continue(s.body):
        lw.stmt(b)
    carried = [(phi, init, final(lw, n, phi.type, s)) for n, (phi, init) in phis.items()]
    if last is not None:
        carried.append(last())
    body, lw.stmts = lw.stmts, saved
    lw.env = bind(before, phis)
    return body, carried

def carry(lw: Any, loop: ast.AST, body: list[ast.stmt]) -> dict[str, tuple[Value, Value]]:
    """{name: (phi, init)} for the names ``loop`` carries: those assigned in it that held a device value before
    it, or a Python number it reads (made a device scalar here). A list of device values (``accs[i] = ...``)
    is carried element by element, under the names ``accs[0]``, ``accs[1]``, ..."""
    stores = [n for b in body for n in ast.walk(b) if isinstance(getattr(n, "ctx", None), ast.Store)]
    assigned = {n.id for n in stores if isinstance(n, ast.Name)}
    assigned |= {n.value.id for n in stores if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)}
    read = {n.id for n in ast.walk(loop) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    loc = lw.pk.loc(loop)
    out = {}
    for n in sorted(assigned):
        v = lw.env.get(n)
        if isinstance(v, (int, float)) and n in read:
            v = lw.env[n] = lw.as_value(v, loop)
        if isinstance(v, Value):
            out[n] = (Value("phi", [], v.type, loc, n), v)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Value) for x in v):
            out.update({f"{n}[{i}]": (Value("phi", [], x.type, loc, f"{n}_{i}"), x) for i, x in enumerate(v)})
    return out

def bind(env: dict, phis: dict) -> dict:
    """``env`` with each carried name (or list element, ``accs[1]``) bound to its phi."""
    for key, (phi, _) in phis.items():
        name, _, i = key[:-1].partition("[") if key.endswith("]") else (key, "", "")
        if i:
            env[name] = [phi if j == int(i) else x for j, x in enumerate(env[name])]
        else:
            env[key] = phi
    return env

def final(lw: Any, name: str, t: BlockT, node: ast.AST, v: Any = _MISSING) -> Value:
    """The value ``name`` carries out of a body (``v``, default its current binding) in the carried
    type ``t``; a cast is appended to ``lw.stmts``."""
    if v is _MISSING:
        base, _, i = name[:-1].partition("[") if name.endswith("]") else (name, "", "")
        v = lw.env.get(base)
        if i:
            v = v[int(i)] if isinstance(v, (list, tuple)) and int(i) < len(v) else None
    try:
        return lw.coerce(v, t, node)
    except exc.ShapeMismatch:
        got = v.type if isinstance(v, Value) else type(v).__name__
        raise lw.err(exc.ShapeMismatch, f"'{name}' changes shape in the loop ({t} -> {got}): a loop-carried "
                     "value keeps its shape; start it with that shape (e.g. hl.zeros([tile, ...]))", node) from None

def _condition(lw: Any, s: ast.While) -> Any:
    cond = lw.condition(s, "a while condition must be a scalar (reduce a block with .any() or .all())")
    return cond if isinstance(cond, Value) else bool(cond)

def merge_branches(lw: Any, s: ast.If, before: dict, then: tuple, orelse: tuple) -> list:
    """The ``(merged, init, then value, else value)`` merges of an ``if``, binding each merged name in
    ``lw.env``: names that held a device value before, numbers (``s = 0.0`` then ``if c: s = 1.0``) and names
    first bound in both branches. ``then``/``orelse`` are (env, stmts) of each branch; a value's cast to the
    merged type is appended to its own branch's statements (it may read values only that branch defines)."""
    (then_env, then_stmts), (else_env, else_stmts) = then, orelse
    merges = []
    for name in sorted(set(then_env) | set(else_env)):
        tv, ev, bv = then_env.get(name, _MISSING), else_env.get(name, _MISSING), before.get(name, _MISSING)
        if (tv is bv and ev is bv) or _MISSING in (tv, ev):
            continue  # unchanged, or bound on one path only (local to it)
        if not all(isinstance(x, (Value, int, float)) for x in (tv, ev)):
            if tv is ev:
                lw.env[name] = tv
                continue
            raise lw.err(exc.NotSupported, f"'{name}' is bound to a {type(tv).__name__} and a {type(ev).__name__} "
                         "on the two paths of an if on a device value; only device values and numbers can "
                         "differ between them", s)
        if not isinstance(tv, Value) and not isinstance(ev, Value) and type(tv) is type(ev) and tv == ev:
            lw.env[name] = tv  # the same number on both paths
            continue
        ref = next((x for x in (bv, tv, ev) if isinstance(x, Value)), None)
        t = ref.type if ref is not None else lw.as_value(tv, s).type
        if isinstance(bv, Value):
            init = bv
        elif t.dims:  # a number (or nothing) before, a block on some path: start from a full block
            init = lw.emit("full", [bv if isinstance(bv, (int, float)) else 0], t, s)
        else:
            init = lw.as_value(bv if isinstance(bv, (int, float)) else 0, s, t.dtype)
        vals = []
        for v, stmts in ((tv, then_stmts), (ev, else_stmts)):
            saved, lw.stmts = lw.stmts, stmts
            try:
                vals.append(final(lw, name, t, s, v))
            finally:
                lw.stmts = saved
        merged = Value("phi", [], t, lw.pk.loc(s), name)
        merges.append((merged, init, vals[0], vals[1]))
        lw.env[name] = merged
    return merges

def without_continue(body: list[ast.stmt]) -> list[ast.stmt]:
    """A loop body with its `continue`s turned into branches (Triton has no continue): an `if` whose
    branch continues gets the rest of the body, after it, in its other branch. Code after the `if` is
    copied into each branch that falls through; nested loops keep their own continues."""
    def has(stmts: list[ast.stmt]) -> bool:
        return any(isinstance(n, ast.Continue) for s in stmts for n in _walk_no_loops(s))

    def rw(stmts: list[ast.stmt], tail: list[ast.stmt]) -> list[ast.stmt]:
        done: list[ast.stmt] = []
        for i, s in enumerate(stmts):
            if isinstance(s, ast.Continue):
                return done
            if isinstance(s, ast.If) and has([s]):
                after = stmts[i + 1:] + tail
                new = ast.If(test=s.test, body=rw(s.body, after) or [ast.Pass()], orelse=rw(s.orelse, after))
                return done + [ast.copy_location(new, s)]
            done.append(s)
        return done + tail

    return rw(body, []) if has(body) else body

def _walk_no_loops(node: ast.AST):
    yield node
    if not isinstance(node, (ast.For, ast.While)):
        for c in ast.iter_child_nodes(node):
            yield from _walk_no_loops(c)
