"""Helion's kernel language compiled to Triton: ``dsl``, ``dsl.language`` and ``dsl.autotuner`` stand for ``helion``,
``helion.language`` and ``helion.autotuner``; a Helion name not provided raises ``exc.NotSupportedName``."""
from __future__ import annotations

import functools
from typing import Any, Callable

from . import autotuner, exc, language  # noqa: F401 (helion.autotuner)
from .config import Config
from .language import cdiv, next_power_of_2
from .runtime import BoundKernel, Kernel

__all__ = ["kernel", "jit", "Config", "Kernel", "BoundKernel", "Settings", "exc", "language", "cdiv",
           "next_power_of_2"]

def kernel(fn: Callable | None = None, *, config: Any = None, configs: Any = None,
           static_shapes: bool = True, autotune_effort: str = "none", **settings: Any) -> Any:
    """Decorate a Helion-language function: ``@kernel``, ``@kernel()`` or ``@kernel(config=Config(...))``.
    ``autotune_effort``: "none" (pretuned or default config), "quick" or "full" (``$HELION_AUTOTUNE_EFFORT`` wins).
    Other Helion settings are kept on the Kernel; ``static_shapes=False`` still specialises on shapes.
    ``replay_host=True`` (ours): the host code depends only on the arguments' dtypes, shapes, strides and non-tensor
    values (floats passed through) and allocates only with ``torch.empty*``, so repeat calls replay its launches."""
    wrap = functools.partial(Kernel, config=config, configs=configs, static_shapes=static_shapes,
                             autotune_effort=autotune_effort, **settings)
    return wrap(fn) if fn is not None else wrap

jit = kernel

class Settings(dict): """Helion's ``helion.Settings``: the keyword settings of ``@kernel`` as a mapping."""

__getattr__ = exc.missing_names("helion.")
