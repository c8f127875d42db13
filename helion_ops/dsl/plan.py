"""Per-Config decisions about a lowered device loop, kept off the IR in a Plan active for one codegen (``planning()``)
and read through ``planned`` attributes: one IR serves every Config, and two threads never see each other's."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

_NONE = object()
_PLAN: contextvars.ContextVar = contextvars.ContextVar("helion_ops_plan", default=None)
current_plan = _PLAN.get  # the active Plan, or None outside codegen

class planned:
    """An IR attribute decided per Config: read and written in the active Plan."""
    def __init__(self, default: Any = _NONE) -> None: self.default = default
    def __set_name__(self, owner: type, name: str) -> None: self.name = name
    def plan(self, obj: Any) -> dict:
        if (plan := _PLAN.get()) is None:
            raise RuntimeError(f"internal: {type(obj).__name__}.{self.name} depends on the Config and was used outside "
                               "a Plan (lowering must not use it)")
        return plan
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        if (v := self.plan(obj).get((id(obj), self.name), self.default)) is _NONE:
            raise RuntimeError(f"internal: {type(obj).__name__}.{self.name} was read before a pass set it")
        return v
    def __set__(self, obj: Any, value: Any) -> None: self.plan(obj)[(id(obj), self.name)] = value

@contextlib.contextmanager
def scoped(var: contextvars.ContextVar, value: Any) -> Iterator[Any]:
    tok = var.set(value)
    try:
        yield value
    finally:
        var.reset(tok)

def planning() -> Any: return scoped(_PLAN, {})  # a fresh Plan for the passes and codegen of one (IR, Config)
