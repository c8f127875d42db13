"""Helion's ``helion.autotuner`` names that kernels use: the tunable fragments, as in
``hl.register_tunable("split_k", PowerOfTwoFragment(1, 256))``. The autotuner is ``helion_ops.dsl.autotune``."""
from __future__ import annotations

from . import exc
from .config import BoolFragment, EnumFragment, Fragment, IntegerFragment, PowerOfTwoFragment

__all__ = ["BoolFragment", "EnumFragment", "Fragment", "IntegerFragment", "PowerOfTwoFragment"]
__getattr__ = exc.missing_names("helion.autotuner.")
