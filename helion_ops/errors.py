"""Public error and warning types of helion_ops.

Every error helion_ops raises derives from :class:`HelionOpsError`. Errors about a caller's
arguments derive from :class:`InputError` (a ``ValueError``) and name the offending argument and
what was expected; each also subclasses the builtin a torch user would catch for the same mistake::

    HelionOpsError
    ├── InputError (ValueError)            bad argument: the base of the four below
    │   ├── ArgumentTypeError (TypeError)  not a tensor / not an int / not a bool ...
    │   ├── DtypeError (TypeError)         unsupported or mismatched dtype
    │   ├── DeviceError                    CPU tensor without the interpreter, mixed devices
    │   ├── ShapeError                     rank, shape agreement, dim out of range
    │   └── IndexOverflowError (OverflowError)  sizes past what the kernel can index
    ├── LaunchError (RuntimeError)         a kernel failed to compile or launch (strict mode)
    └── (compiler errors of helion_ops.dsl.exc: CompileError, NotSupported, ...)

Bad input always raises. A kernel that fails to compile or launch (unsupported arch, out of
resources) makes the op fall back to its eager PyTorch reference with one :class:`FallbackWarning`,
unless ``HELION_OPS_STRICT=1``, where it raises :class:`LaunchError` (see ``helion_ops._oplib``).
"""
from __future__ import annotations

from .dsl.exc import BaseError, CompileError, HelionOpsError, InputError, LaunchError, NotSupported

__all__ = ["HelionOpsError", "InputError", "ArgumentTypeError", "DtypeError", "DeviceError", "ShapeError",
           "IndexOverflowError", "LaunchError", "FallbackWarning", "BaseError", "CompileError", "NotSupported"]


class ArgumentTypeError(InputError, TypeError):
    """An argument of the wrong Python type (e.g. a list where a tensor is expected)."""


class DtypeError(InputError, TypeError):
    """A tensor dtype the op does not support, or dtypes that must match and do not."""


class DeviceError(InputError):
    """A tensor on an unsupported device, or tensors on different devices."""


class ShapeError(InputError):
    """A wrong rank, shapes that do not agree, or a dim out of range."""


class IndexOverflowError(InputError, OverflowError):
    """A size beyond what the kernel can address (e.g. more than 2**31 - 1 rows where that is the limit)."""


class FallbackWarning(UserWarning):
    """An op ran its eager PyTorch fallback because its kernel failed to compile or launch."""
