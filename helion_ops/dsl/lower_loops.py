"""Loop-carried values and ``while`` loops in device code (part of lower.py's stage, kept apart for size).

A name assigned in a loop body carries its value into the next iteration. ``carry`` decides which
names are carried: those that held a device value before the loop, and those that held a Python
number and are read in the loop (``acc = 0.0`` then ``acc = acc + ...``): such a number becomes a
scalar device value first, because folding it as a constant would compute every iteration from
the value before the loop (found wrong, silently, for ``for`` loops before this existed).

Triton compiles ``while cond:`` with a scalar condition, re-evaluated before each iteration. The loop
becomes an ``ir.While`` whose condition is itself loop-carried: evaluated once from the values on
entry (before the loop) and again from the values at the end of each iteration (the body's tail),
so the generated loop reads ``while cond_carried:``. Names assigned in the body that already held a
device value are carried as in ``for`` loops; names first bound in the body stay local to it.
``break`` and ``while ... else`` are refused (Triton has no structured break).
"""
from __future__ import annotations

import ast
from typing import Any

from . import exc
from .ir import Value, While
from .types import BlockT


def lower_while(lw: Any, s: ast.While) -> None:
    from .lower import _walk_no_loops, without_continue
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
    before = dict(lw.env)
    loc = lw.pk.loc(s)
    cond_phi = Value("phi", [], cond0.type, loc, "cond")
    for n, (phi, _) in phis.items():
        lw.env[n] = phi
    saved, lw.stmts = lw.stmts, []
    for b in without_continue(s.body):
        lw.stmt(b)
    carried = [(phi, init, final(lw, n, phi, s)) for n, (phi, init) in phis.items()]
    cond1 = _condition(lw, s)  # from the values at the end of this iteration, in the body's tail
    if not isinstance(cond1, Value) or cond1.type.dtype != cond0.type.dtype:
        cond1 = lw.coerce(cond1, cond0.type, s)
    carried.append((cond_phi, cond0, cond1))
    body, lw.stmts = lw.stmts, saved
    lw.env = {k: (phis[k][0] if k in phis else v) for k, v in before.items()}
    lw.stmts.append(While(cond_phi, body, carried, loc))


def carry(lw: Any, loop: ast.AST, body: list[ast.stmt]) -> dict[str, tuple[Value, Value]]:
    """{name: (phi, init)} for the names ``loop`` carries (see the module doc). Python numbers that
    are carried are made device scalars here, before the loop."""
    assigned = {n.id for b in body for n in ast.walk(b) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    read = {n.id for n in ast.walk(loop) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    loc = lw.pk.loc(loop)
    out = {}
    for n in sorted(assigned):
        v = lw.env.get(n)
        if isinstance(v, (int, float)) and n in read:
            v = lw.env[n] = lw.as_value(v, loop)
        if isinstance(v, Value):
            out[n] = (Value("phi", [], v.type, loc, n), v)
    return out


def final(lw: Any, name: str, phi: Value, node: ast.AST) -> Value:
    """The value ``name`` carries into the next iteration, in the phi's type (cast in the body's tail)."""
    v = lw.env.get(name)
    try:
        return lw.coerce(v, phi.type, node)
    except exc.ShapeMismatch:
        got = v.type if isinstance(v, Value) else type(v).__name__
        raise lw.err(exc.ShapeMismatch, f"'{name}' changes shape in the loop ({phi.type} -> {got}): a loop-carried "
                     "value keeps its shape; start it with that shape (e.g. hl.zeros([tile, ...]))", node) from None


def _condition(lw: Any, s: ast.While) -> Any:
    """The loop condition as a scalar device value (or a host constant)."""
    cond = lw.expr(s.test)
    if not isinstance(cond, Value):
        return bool(cond)
    if cond.type.dims and all(lw.lanes(d) == 1 for d in cond.type.dims):  # flag[t] with a tile of 1
        cond = lw.emit("reshape", [cond], BlockT((), cond.type.dtype), s)
    if cond.type.dims:
        raise lw.err(exc.NotSupported, "a while condition must be a scalar (reduce a block with .any() or .all())", s)
    return cond
