"""``helion.autotuner``: the fragments ``hl.register_tunable`` takes. The autotuner itself is ``dsl.autotune``."""
from __future__ import annotations

from . import exc
from .config import BoolFragment, EnumFragment, Fragment, IntegerFragment, PowerOfTwoFragment

__all__ = ["BoolFragment", "EnumFragment", "Fragment", "IntegerFragment", "PowerOfTwoFragment"]
__getattr__ = exc.missing_names("helion.autotuner.")
