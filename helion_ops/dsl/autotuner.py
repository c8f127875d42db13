"""Helion's ``helion.autotuner`` names that kernels use: the tunable fragments.

``hl.register_tunable("split_k", PowerOfTwoFragment(1, 256))`` adds a knob to the
kernel's config space; the autotuner itself lives in ``helion_ops.dsl.autotune``.
"""
from __future__ import annotations

from typing import Any

from . import exc
from .config import BoolFragment, EnumFragment, Fragment, IntegerFragment, PowerOfTwoFragment

__all__ = ["BoolFragment", "EnumFragment", "Fragment", "IntegerFragment", "PowerOfTwoFragment"]

def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise exc.NotSupportedName(f"helion.autotuner.{name} is not supported by helion_ops.dsl")
