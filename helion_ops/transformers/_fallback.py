"""Run-time fallbacks of a patched model, counted per (component, reason) and warned about once.

A patched forward that meets a case helion_ops does not support (a mask, dropout, a head dim, a
device) runs PyTorch's path for that call and records it here. The first call of each (component,
reason) warns with :class:`helion_ops.errors.FallbackWarning`; later ones only count, so a training
loop does not print a line per step. Under ``torch.compile`` nothing is counted (a Python side effect
would break the graph); the compiled graph takes the same decision at trace time.
"""
from __future__ import annotations

import collections
import threading
import warnings

import torch

from .._oplib import interpret_mode
from ..errors import FallbackWarning

_COUNTS: collections.Counter = collections.Counter()
_LOCK = threading.Lock()


def record(component: str, reason: str) -> None:
    if torch.compiler.is_compiling():
        return
    with _LOCK:
        first = (component, reason) not in _COUNTS
        _COUNTS[(component, reason)] += 1
    if first:
        warnings.warn(f"helion_ops.transformers: {component} ran PyTorch's path because {reason}; later calls "
                      f"like it are counted, not warned (helion_ops.transformers.fallbacks())",
                      FallbackWarning, stacklevel=3)


def fallbacks() -> dict[tuple[str, str], int]:
    """{(component, reason): calls} of every fallback since import (or :func:`reset_fallbacks`)."""
    with _LOCK:
        return dict(_COUNTS)


def reset_fallbacks() -> None:
    with _LOCK:
        _COUNTS.clear()


def device_reason(t: torch.Tensor) -> str | None:
    """Why helion_ops cannot run on ``t``'s device (None when it can): CUDA tensors, or CPU tensors
    under Triton's interpreter (TRITON_INTERPRET=1), as the ops' own device check."""
    dev = t.device.type
    if dev == "cuda" and not interpret_mode():
        return None
    if dev == "cpu" and interpret_mode():
        return None
    if dev == "cpu":
        return "the tensors are on CPU (helion_ops runs on CUDA, or on CPU under TRITON_INTERPRET=1)"
    return f"the tensors are on {dev}, which helion_ops does not run on"
