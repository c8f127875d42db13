"""helion_ops: a benchmark-driven kernel library on a compact Helion-compatible DSL.

Public ops (each present once its module in ``helion_ops/ops/`` imports):
``softmax``, ``layer_norm``, ``rms_norm``, ``matmul``, ``attention``, ``grouped_gemm``; plus the
language (``helion_ops.dsl``) and drop-in modules (``helion_ops.nn``).

Both spellings work for every op::

    import helion_ops.softmax            from helion_ops import softmax
    helion_ops.softmax(x)                softmax(x)

Mechanism: ``helion_ops.<op>`` is the op's public *function* (so ``help()``, tab completion and
``torch.compile`` see a plain Python function), and ``sys.modules["helion_ops.<op>"]`` is set to the
op's module ``helion_ops.ops.<op>``, so the ``import helion_ops.<op>`` statement finds it; that
statement then binds ``helion_ops``, whose attribute ``<op>`` is the function. Op modules are imported
here one by one: one that is missing or fails to import is skipped (see ``import_errors()``) and never
breaks ``import helion_ops``.
"""
from __future__ import annotations

import importlib
import sys
from importlib import metadata as _metadata
from typing import Any

from . import dsl

try:
    __version__ = _metadata.version("helion_ops")  # pyproject.toml's version, as installed
except _metadata.PackageNotFoundError:  # a source tree on sys.path that pip never installed
    __version__ = "0+unknown"

OPS = ("softmax", "layer_norm", "rms_norm", "matmul", "attention", "grouped_gemm")

__all__ = ["dsl", "nn"]
_IMPORT_ERRORS: dict[str, str] = {}


def _expose(name: str) -> None:
    try:
        mod = importlib.import_module(f"{__name__}.ops.{name}")
        fn = getattr(mod, name, None)
        if not callable(fn):
            raise AttributeError(f"helion_ops.ops.{name} defines no public function {name}()")
    except Exception as e:  # a missing or broken op must not break the package
        _IMPORT_ERRORS[name] = f"{type(e).__name__}: {e}"
        return
    sys.modules[f"{__name__}.{name}"] = mod
    globals()[name] = fn
    __all__.append(name)


for _name in OPS:
    _expose(_name)
del _name

from . import nn  # noqa: E402  (uses the ops above)


def import_errors() -> dict[str, str]:
    """Ops that are not exposed, with the reason (import error or missing function)."""
    return dict(_IMPORT_ERRORS)


def __getattr__(name: str) -> Any:
    if name in _IMPORT_ERRORS:
        raise AttributeError(f"helion_ops.{name} is not available: {_IMPORT_ERRORS[name]}")
    raise AttributeError(f"module 'helion_ops' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
