"""The implementations timed for one op: ours, eager, torch.compile, vendor, Helion."""
from __future__ import annotations

from types import ModuleType
from typing import Callable

OURS = "helion_ops"
BUILTIN = ("eager", "compile", "helion")


def helion_available() -> bool:
    """Whether upstream Helion imports (an optional baseline)."""
    try:
        import helion
    except Exception:  # absent, or broken against this torch/triton
        return False
    return helion is not None


def impl_names(mod: ModuleType, requested: list[str] | None) -> tuple[list[str], list[str]]:
    """Which impls to run for mod, ours first; plus notes on requested ones skipped.

    requested=None means every baseline: eager, compile, all of mod.BASELINES, helion.
    Names that don't apply to this op (e.g. "cudnn" for softmax) are dropped quietly.
    """
    wanted = requested if requested is not None else ["eager", "compile", *mod.BASELINES, "helion"]
    names, notes = [OURS], []
    for name in wanted:
        if name in names or name == OURS:
            continue
        if name == "helion":
            if not hasattr(mod, "helion_kernel"):
                continue
            if not helion_available():
                notes.append(f"{mod.NAME}: helion baseline skipped (`import helion` fails)")
                continue
            names.append(name)
        elif name in ("eager", "compile") or name in mod.BASELINES:
            names.append(name)
    return names, notes


def make_fn(mod: ModuleType, name: str, mode: str = "fwd") -> Callable:
    """A fresh callable for impl `name` of mod.

    "compile" gets a new torch.compile(mod.eager, dynamic=False) after resetting
    dynamo: each (shape, dtype) then gets its own static-shape graph, never a
    dynamic-shape recompile or a fallback after the recompile limit.
    """
    if name == OURS:
        return mod.impl
    if name == "eager":
        return mod.eager
    if name == "helion":
        return mod.helion_kernel
    if name == "compile":
        import torch

        torch._dynamo.reset()
        if mode == "bwd":
            # The harness calls backward repeatedly on one graph (retain_graph=True),
            # which donated buffers forbid; donation only saves memory.
            import torch._functorch.config as fconfig

            fconfig.donated_buffer = False
        return torch.compile(mod.eager, dynamic=False)
    return mod.BASELINES[name]
