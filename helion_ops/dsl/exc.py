"""Error types; every compiler error carries the kernel source location. ``helion_ops.dsl.exc`` mirrors
``helion.exc``: the names users catch there exist here too."""
from __future__ import annotations

from typing import Any

class HelionOpsError(Exception): """Base class of every error raised by helion_ops."""

class InputError(HelionOpsError, ValueError): """A bad argument to a kernel or op (dtype, device, shape, stride)."""

class BaseError(HelionOpsError):
    """A compile-time error, pointing at the kernel source."""
    def __init__(self, msg: str, loc: "Loc | None" = None) -> None:
        self.msg, self.loc = msg, loc
        detail = f"\n    {loc.text.strip()}" if loc is not None and loc.text else ""
        super().__init__(f"{loc.file}:{loc.line}: {msg}{detail}" if loc is not None else msg)

class CompileError(BaseError): """Generic compile error."""

class NotSupported(BaseError): """A Python construct, op or Helion feature that helion_ops.dsl does not support."""

class TypeError_(BaseError): """Shape or dtype mismatch inside a device loop."""

class ShapeMismatch(TypeError_): """Two blocks whose dims do not broadcast."""

class HostAssignInDevice(BaseError): """A device loop assigned a variable that host code reads afterwards."""

class CannotModifyHostVariableOnDevice(HostAssignInDevice):
    """A device loop assigned a name that host code bound before the loop (Helion's error of that name):
    the assignment would not reach the host, so host code would keep the old value."""

class TileOfTile(CompileError): """``hl.tile(t)`` of a tile ``t`` (as Helion's): iterate over ``t``'s range instead."""

class LaunchError(HelionOpsError, RuntimeError): """A kernel failed to compile or launch on the device."""

class NotSupportedName(NotSupported, AttributeError):
    """A Helion API name (``hl.x``, ``helion.x``) that helion_ops.dsl does not provide; an AttributeError
    too, so ``getattr(hl, name, default)`` keeps working."""

class TensorOperationInWrapper(UserWarning): """Helion's warning on tensor math in host code (never raised here)."""

# Helion spellings: the error names Helion kernels and their callers catch or ignore.
NotAllowedOnDevice = NotInsideKernel = StatementNotSupported = UnsupportedPythonType = NotSupported
InvalidConfig = InvalidAPIUsage = ShapeSpecializingCall = CompileError
AutotuneError = TritonError = LaunchError
RankMismatch = ShapeMismatch
TypeInferenceError = TypeError_
CannotReadDeviceVariableOnHost = HostAssignInDevice

def missing_names(prefix: str, why: dict[str, str] | None = None) -> Any:
    """A module ``__getattr__`` for the Helion names not provided here: NotSupportedName (``why``: the reasons)."""
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        reason = f": {why.get(name, 'it is not implemented')}" if why is not None else ""
        raise NotSupportedName(f"{prefix}{name} is not supported by helion_ops.dsl{reason}")
    return __getattr__

def __getattr__(name: str) -> type:
    """Any other Helion error name: a NotSupported subclass, for ``except`` and ``ignore_warnings=[...]``."""
    if name.startswith("_") or not name[:1].isupper():
        raise AttributeError(name)
    globals()[name] = type(name, (NotSupported,), {"__doc__": f"Helion's exc.{name} (never raised by helion_ops.dsl)."})
    return globals()[name]

class Loc:
    __slots__ = ("file", "line", "text")
    def __init__(self, file: str, line: int, text: str = "") -> None: self.file, self.line, self.text = file, line, text
    def __repr__(self) -> str: return f"{self.file}:{self.line}"
