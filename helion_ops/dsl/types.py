"""Abstract values of device code. Dim i of a ``BlockT`` is axis i of the emitted Triton tensor: a tile dim (tile
instance k, ``BLOCK`` lanes), a reduction dim (a full ``:`` dim of static extent, persistent or rolled), ``ONE``
(size 1: ``None``, an int index, ``keepdim``) or a block dim (``hl.zeros([tile, block_size_n])`` with registered
block size b: the lanes of every tile dim of block id b)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import exc
from .fragments import next_pow2  # noqa: F401 (one definition, used by lowering and passes)
from .plan import planned

@dataclass(frozen=True)
class Dim:
    kind: str  # "tile" | "rdim" | "one" | "block"
    id: int = -1
    bid: int | None = field(default=None, compare=False)  # block-size id of a tile/block dim
    def __repr__(self) -> str: return "1" if self.kind == "one" else f"{self.kind[0]}{self.id}"

ONE = Dim("one")

@dataclass(frozen=True)
class BlockT:
    """Type of a device value: dims and dtype. ``dims == ()`` is a scalar."""
    dims: tuple[Dim, ...]
    dtype: torch.dtype
    ndim = property(lambda self: len(self.dims))
    def with_dtype(self, dtype: torch.dtype) -> "BlockT": return BlockT(self.dims, dtype)
    def __repr__(self) -> str: return f"{str(self.dtype).replace('torch.', '')}[{', '.join(map(repr, self.dims))}]"

@dataclass
class TileInfo:
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
    offset = property(lambda self: f"offset_{self.id}")
    indices = property(lambda self: f"indices_{self.id}")
    mask = property(lambda self: f"mask_{self.id}")

@dataclass
class RDimInfo:
    """A full (``:``) dim of static extent; persistent or rolled, as the Config says."""
    id: int
    extent: int
    rollable: bool = True       # codegen can loop over it in chunks (passes.decide_rolled)
    block = planned()           # next_pow2(extent) when persistent, the chunk when rolled
    rolled = planned(False)
    masked = planned(True)
    index = property(lambda self: f"rindex_{self.id}")
    mask = property(lambda self: f"rmask_{self.id}")
    offset = property(lambda self: f"roffset_{self.id}")

@dataclass
class TensorArg:
    name: str                   # kernel parameter name
    host: str                   # host expression it came from (for messages)
    dtype: torch.dtype
    sizes: tuple[int, ...]      # concrete sizes at bind time
    strides: tuple[int, ...]
    index64: bool = False
    descriptor_ok: bool = False  # TMA-eligible: last stride 1, others 16-byte aligned
    ndim = property(lambda self: len(self.sizes))
    def size_code(self, d: int) -> str: return str(self.sizes[d])  # sizes and strides are baked into the code
    def stride_code(self, d: int) -> str: return str(self.strides[d])

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

@dataclass
class TileVar:
    """A tile loop variable (one dim of an hl.tile header), as lowering holds it."""
    info: TileInfo

@dataclass
class TensorRef:
    arg: TensorArg

class BlockSizeInt(int):
    """A tunable block size read in device code: an int that also names its block id, so ``hl.zeros([tile_m,
    block_size_n])`` gets a dim that matches ``tile_n``'s lanes. Used as a number (arithmetic, comparisons, a
    constant) it records its size in ``note = (deps, size)``: the lowered IR then holds only for that size."""
    def __new__(cls, value: int, bid: int, note: Any = None) -> "BlockSizeInt":
        self = super().__new__(cls, value)
        self.bid, self.note = bid, note
        return self
    def value(self) -> int:
        if self.note is not None:
            self.note[0][self.bid] = self.note[1]
        return int.__int__(self)

def _noting(name: str) -> Any:
    op = getattr(int, name)
    return lambda self, *args: op(self.value(), *[a.value() if isinstance(a, BlockSizeInt) else a for a in args])

# Every use as a number notes the dependency (int's hash stays: a dict key is not a use of the size).
for _n in ("add radd sub rsub mul rmul floordiv rfloordiv truediv rtruediv mod rmod pow rpow lshift rlshift rshift "
           "rrshift and rand or ror xor rxor neg pos abs invert lt le gt ge eq ne bool int index float str repr "
           "format round trunc floor ceil divmod rdivmod").split():
    setattr(BlockSizeInt, f"__{_n}__", _noting(f"__{_n}__"))

# torch dtype -> (Triton's dtype, its name in a kernel signature)
_DTYPES = {torch.float32: ("tl.float32", "fp32"), torch.float16: ("tl.float16", "fp16"),
           torch.bfloat16: ("tl.bfloat16", "bf16"), torch.float64: ("tl.float64", "fp64"),
           torch.int8: ("tl.int8", "i8"), torch.int16: ("tl.int16", "i16"), torch.int32: ("tl.int32", "i32"),
           torch.int64: ("tl.int64", "i64"), torch.uint8: ("tl.uint8", "u8"), torch.bool: ("tl.int1", "i1"),
           torch.float8_e4m3fn: ("tl.float8e4nv", "fp8e4nv"), torch.float8_e5m2: ("tl.float8e5", "fp8e5")}
SIGNATURE_DTYPE = {d: sig for d, (_, sig) in _DTYPES.items()}

def tl_dtype(dtype: torch.dtype) -> str:
    if dtype not in _DTYPES:
        raise exc.NotSupported(f"dtype {dtype} is not supported in device code")
    return _DTYPES[dtype][0]

def promote(a: Any, b: Any) -> torch.dtype:
    """torch's result dtype for a binary op; a Python number is a weak scalar."""
    return torch.result_type(*(torch.empty((1,), dtype=x) if isinstance(x, torch.dtype) else x for x in (a, b)))

def broadcast_dims(a: tuple[Dim, ...], b: tuple[Dim, ...], loc: exc.Loc | None) -> tuple[Dim, ...]:
    """Right-aligned broadcast of two dim tuples (torch rules, dims compared by identity); of a tile dim and a
    block dim of its lanes, the tile dim wins (it carries the mask)."""
    n = max(len(a), len(b))
    a, b = (ONE,) * (n - len(a)) + a, (ONE,) * (n - len(b)) + b
    for x, y in zip(a, b):
        if not (ONE in (x, y) or same_lanes(x, y)):
            raise exc.ShapeMismatch(f"shapes do not broadcast: {list(a)} vs {list(b)} (dim {x} vs {y})", loc)
    return tuple(y if x == ONE or (y != ONE and x.kind == "block") else x for x, y in zip(a, b))

def same_lanes(x: Dim, y: Dim) -> bool:
    """Two dims that are the same block of lanes: equal, or a tile and a block dim of one block id."""
    return x == y or (x.bid is not None and x.bid == y.bid and "block" in (x.kind, y.kind))

def same_dims(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> bool:
    return len(a) == len(b) and all(same_lanes(x, y) for x, y in zip(a, b))

def tile_dim(t: "TileInfo") -> Dim: return Dim("tile", t.id, t.block_id)
