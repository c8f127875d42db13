"""Per-Config decisions about a lowered device loop, kept off the IR: the passes write what a Config decides (block
sizes, masks, rolled reductions, TMA descriptors, reversed loops) into a Plan, a mapping active for one codegen
(``planning()``), read back through ``planned`` attributes. So one IR serves every Config of an autotuning run,
and two threads generating code for two Configs never see each other's decisions."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

_NONE = object()
_PLAN: contextvars.ContextVar = contextvars.ContextVar("helion_ops_plan", default=None)
current_plan = _PLAN.get  # the active Plan, or None outside codegen

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
        v = plan.get((id(obj), self.name), self.default)
        if v is _NONE:
            raise RuntimeError(f"internal: {type(obj).__name__}.{self.name} was read before a pass set it")
        return v
    def __set__(self, obj: Any, value: Any) -> None:
        plan = _PLAN.get()
        if plan is None:
            raise RuntimeError(f"internal: {type(obj).__name__}.{self.name} set outside a Plan")
        plan[(id(obj), self.name)] = value

@contextlib.contextmanager
def planning() -> Iterator[dict]:
    """Make a fresh Plan active for the passes and the codegen of one (IR, Config)."""
    tok = _PLAN.set({})
    try:
        yield _PLAN.get()
    finally:
        _PLAN.reset(tok)
