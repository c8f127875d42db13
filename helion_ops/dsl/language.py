"""The ``hl`` namespace. Device functions (``tile``, ``dot``...) are markers the compiler recognises by identity and
never calls (called from host code, one raises); host functions (``register_block_size``...) read the active Config
from the run in progress. A Helion name not provided here raises ``exc.NotSupportedName`` (an AttributeError)."""
from __future__ import annotations

import contextvars
from typing import Any

from . import exc

# The run of a kernel's host code in progress (a runtime.RunContext), which the runtime sets around each run.
_RUN: contextvars.ContextVar = contextvars.ContextVar("helion_ops_run", default=None)

def current_run() -> Any:
    ctx = _RUN.get()
    if ctx is None:
        raise exc.NotSupported("hl.register_block_size/register_tunable are only valid inside a @kernel's host code")
    return ctx

__all__ = ["tile", "grid", "jagged_tile", "zeros", "full", "arange", "dot", "load", "store", "atomic_add", "atomic_and",
           "atomic_or", "atomic_xor", "atomic_xchg", "atomic_cas", "atomic_max", "atomic_min", "register_block_size",
           "register_reduction_dim", "register_tunable", "specialize", "constexpr", "cdiv", "next_power_of_2", "Tile",
           "reduce", "cumsum", "cumprod", "associative_scan", "rand", "randint", "inline_triton", "triton_kernel",
           "inline_asm_elementwise", "rand4x", "tile_index", "tile_begin", "tile_end", "tile_block_size", "tile_id",
           "static_range", "barrier", "split", "join", "subscript", "device_print"]

class constexpr:
    """A compile-time constant argument: ``eps: hl.constexpr``, or ``k(x, hl.constexpr(3))`` at the call site."""
    __slots__ = ("value",)
    def __init__(self, value: Any = None) -> None: self.value = value

class Tile: """Type of an ``hl.tile`` loop variable (for annotations only)."""

def _device_only(name: str, doc: str):
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise exc.NotSupported(f"hl.{name}() is only valid inside an hl.tile/hl.grid loop of a @kernel function")
    fn.__name__ = fn.__qualname__ = fn._hl_device = name  # type: ignore[attr-defined]
    fn.__doc__ = doc
    return fn

tile = _device_only("tile", "hl.tile(end) / hl.tile(begin, end) / hl.tile([m, n], block_size=...): iterate over tiles.")
jagged_tile = _device_only("jagged_tile", "hl.jagged_tile(parent): an inner tile loop up to parent.amax(), "
                           "where every load and store is masked to index < parent for its lane.")
grid = _device_only("grid", "hl.grid(n) / hl.grid([m, n]): iterate over scalar indices.")
zeros = _device_only("zeros", "hl.zeros(shape, dtype=torch.float32): a block of zeros.")
full = _device_only("full", "hl.full(shape, value, dtype=torch.float32): a block filled with value.")
arange = _device_only("arange", "hl.arange(end) / hl.arange(begin, end): an int32 block of indices.")
dot = _device_only("dot", "hl.dot(a, b, acc=None, out_dtype=None): matrix product on tiles, fp32 accumulation.")
load = _device_only("load", "hl.load(tensor, index, extra_mask=None, eviction_policy=None): explicit load.")
store = _device_only("store", "hl.store(tensor, index, value, extra_mask=None): explicit store.")
atomic_cas = _device_only("atomic_cas", "hl.atomic_cas(target, index, expected, value, sem='relaxed').")
for _name in ("atomic_add", "atomic_and", "atomic_or", "atomic_xor", "atomic_xchg", "atomic_max", "atomic_min"):
    globals()[_name] = _device_only(_name, f"hl.{_name}(target, index, value, sem='relaxed'): returns the old value.")
reduce = _device_only("reduce", "hl.reduce(combine_fn, x, dim=None, other=0, keep_dims=False): custom reduction.")
cumsum = _device_only("cumsum", "hl.cumsum(x, dim, reverse=False): inclusive prefix sum.")
cumprod = _device_only("cumprod", "hl.cumprod(x, dim, reverse=False): inclusive prefix product.")
associative_scan = _device_only("associative_scan", "hl.associative_scan(combine_fn, x, dim, reverse=False).")
rand = _device_only("rand", "hl.rand(shape, seed): uniform [0, 1) Philox random numbers (float32).")
rand4x = _device_only("rand4x", "hl.rand4x(seed, offsets): four independent uniform [0, 1) float32 blocks of "
                      "offsets' shape from one Philox round (tl.rand4x).")
randint = _device_only("randint", "hl.randint(shape, low, high, seed): Philox random integers in [low, high).")
inline_triton = _device_only("inline_triton", "hl.inline_triton(source, args, output_like): an escape hatch to Triton.")
triton_kernel = _device_only(
    "triton_kernel", "hl.triton_kernel(triton_source_or_fn, args, output_like): call a @triton.jit function (a "
    "module-level one, imported by the generated code, or the source of one as a str) from device code.")
inline_asm_elementwise = _device_only(
    "inline_asm_elementwise", "hl.inline_asm_elementwise(asm, constraints, args, dtype, is_pure, pack): inline PTX "
    "applied elementwise to the broadcast args (tl.inline_asm_elementwise); dtype a tuple gives a tuple. CUDA only: "
    "Triton's interpreter cannot run it.")
for _attr in ("index", "begin", "end", "block_size", "id"):  # hl.tile_index ... hl.tile_id
    globals()[f"tile_{_attr}"] = _device_only(f"tile_{_attr}", f"hl.tile_{_attr}(tile): same as tile.{_attr}.")
split = _device_only("split", "hl.split(x): split the last dim (size 2) into two blocks.")
join = _device_only("join", "hl.join(a, b): stack two blocks along a new last dim of size 2.")
subscript = _device_only("subscript", "hl.subscript(x, index): index a block with ':' and None.")
device_print = _device_only("device_print", "hl.device_print(prefix, *values): print from device code.")

def static_range(*args: int) -> range:
    """hl.static_range([begin,] end[, step]): unrolled at compile time in device code; a plain range on the host."""
    return range(*args)

def barrier() -> None:
    """hl.barrier() (host code): a no-op here, each device loop is its own launch and a stream runs them in order."""

def register_block_size(min_or_max: int, max_or_none: int | None = None) -> int:
    """Register a tunable block size, bounded by ``n`` or ``(lo, hi)``: the frontend rewrites each call in a kernel's
    own host code; anywhere else (a helper function, outside a kernel) there is no block to give it."""
    raise exc.NotSupported("hl.register_block_size is only valid in a @kernel function's own host code")

def register_reduction_dim(size: int) -> int:
    """Returns ``size``: here any host int used as a block dim is a reduction dim (``reduction_loops`` tune it)."""
    return size

def register_tunable(name: str, fragment: Any) -> Any:
    """Register a user tunable (host code). Returns its value in the active Config."""
    return current_run().tunable(name, fragment)

def specialize(value: Any) -> Any:
    """Mark a host value (typically a size) as a compile-time constant of the device code."""
    return value

def cdiv(a: int, b: int) -> int: return -(-a // b)

def next_power_of_2(n: int) -> int: return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()

# Helion names that exist there but not here, with the reason (docs/COVERAGE.md lists them too).
UNSUPPORTED = {
    **dict.fromkeys(("signal", "wait"), "multi-GPU signalling is not implemented"),
    **dict.fromkeys(("StackTensor", "stacktensor_like"), "symmetric-memory stack tensors are not implemented"),
    **dict.fromkeys(("float4_e2m1fn_x2_to_float32", "load_float4_e2m1fn_x16_to_float16"),
                    "fp4 unpacking is not implemented (Helion's uses sm_100 PTX)"),
    "breakpoint": "device breakpoints are not implemented", "ProcessGroupName": "distributed kernels are out of scope",
    "dot_scaled": "microscaled (mx) dots are not implemented; dequantize and use hl.dot",
}

__getattr__ = exc.missing_names("hl.", UNSUPPORTED)
