"""Per-Config decisions about a lowered device loop, kept off the IR.

Lowering produces one IR per specialization, whatever the Config. What the Config decides about it
(a tile's block size and mask, whether a reduction loops over chunks, which accesses use TMA
descriptors, which loops run reversed) is written by the per-Config passes into a Plan, a mapping
active for one codegen (``planning()``), and read back through ``planned`` attributes. So one IR
serves every Config of an autotuning run, and two threads generating code for two Configs never
see each other's decisions.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

_NONE = object()
_PLAN: contextvars.ContextVar = contextvars.ContextVar("helion_ops_plan", default=None)

class planned:
    """An IR attribute decided per Config: read and written in the active Plan."""

    def __init__(self, default: Any = _NONE) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        plan = _PLAN.get()
        if plan is None:
            raise RuntimeError(f"internal: {type(obj).__name__}.{self.name} depends on the Config and was read "
                               "outside a Plan (lowering must not read it)")
        v = plan.get((id(obj), self.name), _NONE)
        if v is _NONE:
            if self.default is _NONE:
                raise RuntimeError(f"internal: {type(obj).__name__}.{self.name} was read before a pass set it")
            return self.default
        return v

    def __set__(self, obj: Any, value: Any) -> None:
        plan = _PLAN.get()
        if plan is None:
            raise RuntimeError(f"internal: {type(obj).__name__}.{self.name} set outside a Plan")
        plan[(id(obj), self.name)] = value

def current_plan() -> dict | None:
    """The active Plan, or None outside codegen."""
    return _PLAN.get()

@contextlib.contextmanager
def planning() -> Iterator[dict]:
    """Make a fresh Plan active for the passes and the codegen of one (IR, Config)."""
    tok = _PLAN.set({})
    try:
        yield _PLAN.get()
    finally:
        _PLAN.reset(tok)
