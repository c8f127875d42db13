"""Abstract values of device code: block shapes as symbolic dims, dtypes, tiles.

A block's dims stay in lockstep with the Triton tensor that codegen emits:
dim i of a ``BlockT`` is axis i of the generated tensor. A dim is
- a tile dim (``Dim("tile", k)``): tile instance k, ``BLOCK`` lanes;
- a reduction dim (``Dim("rdim", r)``): a full ``:`` dim of static extent,
  persistent (one block of next_pow2(extent)) or rolled (looped in chunks);
- ``ONE``: size 1, from ``None``, an int index or ``keepdim``;
- a block dim (``Dim("block", b)``): ``hl.zeros([tile, block_size_n])`` with a
  registered block size b. It has the lanes of every tile dim whose block id
  is b, and broadcasts with them (the tile dim wins: it carries the mask).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import exc
from .plan import planned
from .fragments import next_pow2  # noqa: F401 (one definition, used by lowering and passes)

@dataclass(frozen=True)
class Dim:
    kind: str  # "tile" | "rdim" | "one" | "block"
    id: int = -1
    bid: int | None = field(default=None, compare=False)  # block-size id of a tile/block dim

    def __repr__(self) -> str:
        return "1" if self.kind == "one" else f"{self.kind[0]}{self.id}"

ONE = Dim("one")

@dataclass(frozen=True)
class BlockT:
    """Type of a device value: dims and dtype. ``dims == ()`` is a scalar."""

    dims: tuple[Dim, ...]
    dtype: torch.dtype

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def with_dtype(self, dtype: torch.dtype) -> "BlockT":
        return BlockT(self.dims, dtype)

    def __repr__(self) -> str:
        return f"{str(self.dtype).replace('torch.', '')}[{', '.join(map(repr, self.dims))}]"

@dataclass
class TileInfo:
    """One tile loop variable (a dim of the loop header), top-level or inner."""

    id: int                     # tile instance id (Dim("tile", id))
    block_id: int | None        # config block_sizes index; None when fixed
    fixed: int | None           # the block size when it is fixed (hl.grid: 1, block_size=16), else None
    begin: Any                  # first index: code ("0", a param name) or a device int Value
    end: Any                    # exclusive end: code or a device int Value
    static_len: int | None      # end - begin when known at compile time
    top: bool                   # part of the launch grid
    is_grid: bool = False       # hl.grid: scalar index, block 1
    name: str = ""              # user's loop variable name (for readable code)
    block = planned()           # block size under the Config (passes.apply_config)
    masked = planned(True)      # whether its lanes need a mask (passes.decide_masks)

    @property
    def offset(self) -> str:
        return f"offset_{self.id}"

    @property
    def indices(self) -> str:
        return f"indices_{self.id}"

    @property
    def mask(self) -> str:
        return f"mask_{self.id}"

@dataclass
class RDimInfo:
    """A full (``:``) dim of static extent; persistent or rolled, as the Config says."""

    id: int
    extent: int
    rollable: bool = True       # codegen can loop over it in chunks (passes.decide_rolled)
    block = planned()           # next_pow2(extent) when persistent, the chunk when rolled
    rolled = planned(False)
    masked = planned(True)

    @property
    def index(self) -> str:
        return f"rindex_{self.id}"

    @property
    def mask(self) -> str:
        return f"rmask_{self.id}"

    @property
    def offset(self) -> str:
        return f"roffset_{self.id}"

@dataclass
class TensorArg:
    """A host tensor the device loop reads or writes."""

    name: str                   # kernel parameter name
    host: str                   # host expression it came from (for messages)
    dtype: torch.dtype
    sizes: tuple[int, ...]      # concrete sizes at bind time
    strides: tuple[int, ...]
    static: bool                # sizes/strides baked into the code
    index64: bool = False
    descriptor_ok: bool = False  # TMA-eligible: last stride 1, others 16-byte aligned

    @property
    def ndim(self) -> int:
        return len(self.sizes)

    def size_code(self, d: int) -> str:
        return str(self.sizes[d]) if self.static else f"{self.name}_size_{d}"

    def stride_code(self, d: int) -> str:
        if self.strides[d] == 1 or self.static:
            return str(self.strides[d])
        return f"{self.name}_stride_{d}"

@dataclass
class ScalarArg:
    """A host scalar the device loop reads: a runtime parameter."""

    name: str
    dtype: torch.dtype

@dataclass
class LaunchInputs:
    """What the device loop needs from the host, in kernel-parameter order."""

    tensors: list[TensorArg] = field(default_factory=list)
    scalars: list[ScalarArg] = field(default_factory=list)

# ---- lowering-time host objects ----------------------------------------------

@dataclass
class TileVar:
    """A tile loop variable (one dim of an hl.tile header)."""

    info: TileInfo

@dataclass
class TensorRef:
    arg: TensorArg

class BlockSizeInt(int):
    """A tunable block size read in device code: an int that also names its block id, so
    ``hl.zeros([tile_m, block_size_n])`` gets a dim that matches ``tile_n``'s lanes. Used as a number
    (arithmetic, comparisons, a constant) it records its size in ``note = (deps, size)``: the lowered IR
    then holds only for Configs that give this block that size."""

    bid: int

    def __new__(cls, value: int, bid: int, note: Any = None) -> "BlockSizeInt":
        self = super().__new__(cls, value)
        self.bid = bid
        self.note = note
        return self

    def value(self) -> int:
        """The number (noting the dependency)."""
        if self.note is not None:
            deps, size = self.note
            deps[self.bid] = size
        return int.__int__(self)

def _noting(name: str) -> Any:
    op = getattr(int, name)

    def f(self: BlockSizeInt, *args: Any) -> Any:
        return op(self.value(), *[a.value() if isinstance(a, BlockSizeInt) else a for a in args])
    f.__name__ = name
    return f

for _n in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__floordiv__", "__rfloordiv__",
           "__truediv__", "__rtruediv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__lshift__", "__rlshift__",
           "__rshift__", "__rrshift__", "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__",
           "__neg__", "__pos__", "__abs__", "__invert__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
           "__bool__", "__int__", "__index__", "__float__", "__str__", "__repr__", "__format__", "__round__",
           "__trunc__", "__floor__", "__ceil__", "__divmod__", "__rdivmod__"):
    setattr(BlockSizeInt, _n, _noting(_n))
BlockSizeInt.__hash__ = int.__hash__  # type: ignore[method-assign]

# ---- dtypes -----------------------------------------------------------------

TRITON_DTYPE = {
    torch.float32: "tl.float32", torch.float16: "tl.float16", torch.bfloat16: "tl.bfloat16",
    torch.float64: "tl.float64", torch.int8: "tl.int8", torch.int16: "tl.int16",
    torch.int32: "tl.int32", torch.int64: "tl.int64", torch.uint8: "tl.uint8",
    torch.bool: "tl.int1", torch.float8_e4m3fn: "tl.float8e4nv", torch.float8_e5m2: "tl.float8e5",
}

SIGNATURE_DTYPE = {
    torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
    torch.int8: "i8", torch.int16: "i16", torch.int32: "i32", torch.int64: "i64",
    torch.uint8: "u8", torch.bool: "i1", torch.float8_e4m3fn: "fp8e4nv", torch.float8_e5m2: "fp8e5",
}

def tl_dtype(dtype: torch.dtype) -> str:
    try:
        return TRITON_DTYPE[dtype]
    except KeyError:
        raise exc.NotSupported(f"dtype {dtype} is not supported in device code") from None

def is_float(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point

def promote(a: Any, b: Any) -> torch.dtype:
    """torch's result dtype for a binary op; a Python number is a weak scalar."""
    return torch.result_type(_proto(a), _proto(b))

def _proto(x: Any) -> Any:
    if isinstance(x, torch.dtype):
        return torch.empty((1,), dtype=x)
    return x  # Python number: weak

def broadcast_dims(a: tuple[Dim, ...], b: tuple[Dim, ...], loc: exc.Loc | None) -> tuple[Dim, ...]:
    """Right-aligned broadcast of two dim tuples (torch rules, dims compared by identity)."""
    n = max(len(a), len(b))
    a = (ONE,) * (n - len(a)) + a
    b = (ONE,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == y or y == ONE:
            out.append(x)
        elif x == ONE:
            out.append(y)
        elif same_lanes(x, y):
            out.append(y if x.kind == "block" else x)
        else:
            raise exc.ShapeMismatch(f"shapes do not broadcast: {list(a)} vs {list(b)} (dim {x} vs {y})", loc)
    return tuple(out)

def same_lanes(x: Dim, y: Dim) -> bool:
    """Two dims that are the same block of lanes: equal, or a tile and a block dim of one block id."""
    return x == y or (x.bid is not None and x.bid == y.bid and "block" in (x.kind, y.kind))

def same_dims(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> bool:
    return len(a) == len(b) and all(same_lanes(x, y) for x, y in zip(a, b))

def tile_dim(t: "TileInfo") -> Dim:
    return Dim("tile", t.id, t.block_id)
