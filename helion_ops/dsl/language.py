"""The ``hl`` namespace: Helion's language, as helion_ops.dsl understands it.

Device functions (``tile``, ``zeros``, ``dot``...) are markers: the compiler
recognises them by identity inside ``hl.tile`` loops and never calls them.
Calling one from host code raises a clear error. Host functions
(``register_block_size``, ``register_tunable``, ``specialize``) run on the
host and read the active Config through the runtime.
"""
from __future__ import annotations

from typing import Any

from . import exc

__all__ = [
    "tile", "grid", "zeros", "full", "arange", "dot", "load", "store", "atomic_add",
    "atomic_max", "atomic_min", "register_block_size", "register_tunable", "specialize",
    "constexpr", "cdiv", "next_power_of_2", "Tile", "reduce", "cumsum", "associative_scan",
    "rand", "inline_triton",
]


class constexpr:
    """Annotation marking a kernel argument as a compile-time constant: ``eps: hl.constexpr``."""


class Tile:
    """Type of an ``hl.tile`` loop variable (for annotations only)."""


def _device_only(name: str, doc: str):
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise exc.NotSupported(
            f"hl.{name}() is only valid inside an hl.tile/hl.grid loop of a @kernel function"
        )

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = doc
    fn._hl_device = name  # type: ignore[attr-defined]
    return fn


tile = _device_only("tile", "hl.tile(end) / hl.tile(begin, end) / hl.tile([m, n], block_size=...): iterate over tiles.")
grid = _device_only("grid", "hl.grid(n) / hl.grid([m, n]): iterate over scalar indices.")
zeros = _device_only("zeros", "hl.zeros(shape, dtype=torch.float32): a block of zeros.")
full = _device_only("full", "hl.full(shape, value, dtype=torch.float32): a block filled with value.")
arange = _device_only("arange", "hl.arange(end) / hl.arange(begin, end): an int32 block of indices.")
dot = _device_only("dot", "hl.dot(a, b, acc=None, out_dtype=None): matrix product on tiles, fp32 accumulation.")
load = _device_only("load", "hl.load(tensor, index, extra_mask=None): explicit load.")
store = _device_only("store", "hl.store(tensor, index, value, extra_mask=None): explicit store.")
atomic_add = _device_only("atomic_add", "hl.atomic_add(tensor, index, value): atomic add; returns the old value.")
atomic_max = _device_only("atomic_max", "hl.atomic_max(tensor, index, value).")
atomic_min = _device_only("atomic_min", "hl.atomic_min(tensor, index, value).")
reduce = _device_only("reduce", "hl.reduce(combine_fn, x, dim): reduction with a custom combine function.")
cumsum = _device_only("cumsum", "hl.cumsum(x, dim): inclusive prefix sum.")
associative_scan = _device_only("associative_scan", "hl.associative_scan(combine_fn, x, dim).")
rand = _device_only("rand", "hl.rand(shape, seed): uniform [0, 1) Philox random numbers.")
inline_triton = _device_only("inline_triton", "hl.inline_triton(source, args, output_like): escape hatch.")


def register_block_size(min_or_max: int, max_or_none: int | None = None) -> int:
    """Register a tunable block size (host code). Returns its value in the active Config.

    ``hl.register_block_size(n)`` bounds it by ``n``; ``(lo, hi)`` gives both bounds.
    """
    from .runtime import current_run

    return current_run().next_registered_block()


def register_tunable(name: str, fragment: Any) -> Any:
    """Register a user tunable (host code). Returns its value in the active Config."""
    from .runtime import current_run

    return current_run().tunable(name, fragment)


def specialize(value: Any) -> Any:
    """Mark a host value (typically a size) as a compile-time constant of the device code."""
    return value


def cdiv(a: int, b: int) -> int:
    """Ceiling division."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


