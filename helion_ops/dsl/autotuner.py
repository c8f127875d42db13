"""Helion's ``helion.autotuner`` names that kernels use: the tunable fragments, as in
``hl.register_tunable("split_k", PowerOfTwoFragment(1, 256))``. The autotuner is ``helion_ops.dsl.autotune``."""
from __future__ import annotations

from typing import Any

from . import exc
from .config import BoolFragment, EnumFragment, Fragment, IntegerFragment, PowerOfTwoFragment

__all__ = ["BoolFragment", "EnumFragment", "Fragment", "IntegerFragment", "PowerOfTwoFragment"]

def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise exc.NotSupportedName(f"helion.autotuner.{name} is not supported by helion_ops.dsl")
