"""The core device ops' typing rules: each handler checks shapes and dtypes (errors at the source line) and emits IR
values. Half-precision math computes in fp32 and casts back, as torch does; no libdevice (the interpreter lacks it)."""
from __future__ import annotations

import ast
import functools
import math
import operator
from typing import Any, Callable

import torch

from . import exc
from .ir import Value
from .types import ONE, BlockSizeInt, BlockT, Dim, TensorRef, TileVar, broadcast_dims, same_dims, tile_dim

# unary ops whose fp16/bf16 inputs compute in fp32 (transcendentals)
FP32_MATH = {"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sigmoid", "tanh", "sin", "cos", "erf",
             "log1p", "expm1", "silu", "gelu", "gelu_tanh", "softplus", "reciprocal"}
BOOL_RESULT = {"not", "isnan", "isinf"}
CMP = {"<", "<=", ">", ">=", "==", "!="}
_PY_BIN: dict[str, Callable] = {op: getattr(operator, f) for op, f in zip(
    "+ - * / // % ** & | ^ << >> < <= > >= == !=".split(),
    "add sub mul truediv floordiv mod pow and_ or_ xor lshift rshift lt le gt ge eq ne".split())}
_PY_BIN.update(maximum=max, minimum=min, fmod=math.fmod)

def _is_num(x: Any) -> bool: return isinstance(x, (int, float))  # bools and BlockSizeInts are ints

def binary(lw, op: str, a: Any, b: Any, node: ast.AST) -> Any:
    if op == "@":
        return dot(lw, a, b, None, node, torch_semantics=True)
    a, b = (attribute(lw, x, "index", node) if isinstance(x, TileVar) else lw.scalar_of(x, node) for x in (a, b))
    if _is_num(a) and _is_num(b):
        return _PY_BIN[op](a, b)
    seq = (list, tuple)  # [hl.zeros(...)] * G: G names of one value (values are immutable); lists concatenate
    if (op == "*" and (isinstance(a, seq) and isinstance(b, int) or isinstance(b, seq) and isinstance(a, int))
            or op == "+" and isinstance(a, seq) and isinstance(b, seq)):
        return a * b if op == "*" else type(a)(a) + type(a)(b)
    if not (isinstance(a, Value) or _is_num(a)) or not (isinstance(b, Value) or _is_num(b)):
        ref = next((x for x in (a, b) if isinstance(x, TensorRef)), None)
        if ref is not None:
            raise lw.err(exc.NotSupported, f"'{ref.arg.host}' is a whole tensor: index it in device code "
                         f"(e.g. {ref.arg.host}[tile])", node)
        raise lw.err(exc.NotSupported, f"operator {op} on {type(a).__name__} and {type(b).__name__}", node)
    dtype = lw.result_dtype(a, b)
    dtype = torch.float32 if op == "/" and not dtype.is_floating_point else dtype
    if op in ("&", "|", "^", "<<", ">>") and dtype.is_floating_point:
        raise lw.err(exc.TypeError_, f"bitwise {op} on floating-point values", node)
    a, b = _align(lw, a, b, dtype, node)
    dims = broadcast_dims(a.type.dims, b.type.dims, lw.pk.loc(node))
    out_dtype = torch.bool if op in CMP else dtype
    if op == "**" and b.op == "const" and (b.args[0] == 0.5 or float(b.args[0]).is_integer() and
                                           (0 <= b.args[0] <= 16 or dtype.is_floating_point and b.args[0] >= -16)):
        e = b.args[0] if b.args[0] == 0.5 else int(b.args[0])
        return lw.emit("powi", [a], BlockT(dims, out_dtype), node, exponent=e)
    if op == "**" and not dtype.is_floating_point:
        raise lw.err(exc.NotSupported, "integer power needs a constant exponent in [0, 16] (or float operands)", node)
    return lw.emit("binary", [a, b], BlockT(dims, out_dtype), node, op=op)

def _align(lw, a: Any, b: Any, dtype: torch.dtype, node: ast.AST) -> tuple[Value, Value]:
    def conv(v: Any) -> Value:
        v = lw.as_value(v, node, dtype if _is_num(v) else None)
        return Value("const", v.args, v.type.with_dtype(dtype), v.loc) if v.op == "const" else cast(lw, v, dtype, node)
    a, b = conv(a), conv(b)
    n = max(a.type.ndim, b.type.ndim)
    return expand_rank(lw, a, n, node), expand_rank(lw, b, n, node)

def expand_rank(lw, v: Value, n: int, node: ast.AST) -> Value:
    if v.type.ndim >= n or not v.type.dims:
        return v
    k = n - v.type.ndim
    return lw.emit("view", [v], BlockT((ONE,) * k + v.type.dims, v.type.dtype), node,
                   axes=(False,) * k + (True,) * v.type.ndim)

def unary(lw, name: str, v: Any, node: ast.AST) -> Any:
    v = attribute(lw, v, "index", node) if isinstance(v, TileVar) else v
    if _is_num(v):
        py = {"neg": lambda x: -x, "pos": lambda x: x, "not": lambda x: not x, "abs": abs,
              "invert": lambda x: ~x, "exp": math.exp, "log": math.log, "sqrt": math.sqrt}
        if name in py:
            return py[name](v)
        v = lw.as_value(v, node, torch.float32)
    if name == "pos":
        return v
    name = "not" if name == "logical_not" else name
    dtype = v.type.dtype
    if name in FP32_MATH and (dtype in (torch.float16, torch.bfloat16) or not dtype.is_floating_point):
        up = cast(lw, v, torch.float32, node)  # integers give fp32; halves compute in it and cast back, as torch
        r = lw.emit("unary", [up], up.type, node, op=name)
        return cast(lw, r, dtype, node) if dtype.is_floating_point else r
    return lw.emit("unary", [v], v.type.with_dtype(torch.bool if name in BOOL_RESULT else dtype), node, op=name)

def where(lw, c: Any, a: Any, b: Any, node: ast.AST) -> Value:
    c = lw.as_value(c, node)
    c = c if c.type.dtype == torch.bool else binary(lw, "!=", c, 0, node)
    a, b = _align(lw, a, b, lw.result_dtype(a, b), node)
    n = max(c.type.ndim, a.type.ndim)
    c, a, b = (expand_rank(lw, x, n, node) for x in (c, a, b))
    return lw.emit("where", [c, a, b], BlockT(bcast_dims(lw, (c, a, b), node), a.type.dtype), node)

def bcast_dims(lw, vals: Any, node: ast.AST) -> tuple[Dim, ...]:
    return functools.reduce(lambda dims, v: broadcast_dims(dims, v.type.dims, lw.pk.loc(node)), vals, ())

def broadcast(lw, vals: list[Value], node: ast.AST) -> list[Value]:
    n = max(v.type.ndim for v in vals)
    vals = [expand_rank(lw, v, n, node) for v in vals]
    dims = bcast_dims(lw, vals, node)
    return [expand(lw, v, dims, node) if v.type.dims != dims else v for v in vals]

def cast(lw, v: Any, dtype: torch.dtype, node: ast.AST) -> Any:
    if not isinstance(dtype, torch.dtype):
        raise lw.err(exc.TypeError_, f".to() expects a torch.dtype, got {dtype!r}", node)
    v = lw.as_value(v, node)
    return v if v.type.dtype == dtype else lw.emit("cast", [v], v.type.with_dtype(dtype), node)

def dot(lw, a: Any, b: Any, acc: Any, node: ast.AST, torch_semantics: bool = False,
        out_dtype: torch.dtype | None = None) -> Value:
    a, b = lw.as_value(a, node), lw.as_value(b, node)
    if torch_semantics and sorted((a.type.ndim, b.type.ndim)) == [2, 3]:  # torch.matmul broadcasts the 2-D side
        if a.type.ndim == 2:
            a = expand(lw, unsqueeze(lw, a, 0, node), b.type.dims[:1] + a.type.dims, node)
        else:
            b = expand(lw, unsqueeze(lw, b, 0, node), a.type.dims[:1] + b.type.dims, node)
    if a.type.ndim < 2 or b.type.ndim < 2 or a.type.ndim != b.type.ndim:
        raise lw.err(exc.ShapeMismatch, f"matmul needs two 2-D (or equal-rank 3-D) blocks: {a.type}, {b.type}", node)
    if a.type.dims[-1] != b.type.dims[-2]:
        raise lw.err(exc.ShapeMismatch, f"matmul contraction dims differ: {a.type} @ {b.type}", node)
    dims = broadcast_dims(a.type.dims[:-2], b.type.dims[:-2], lw.pk.loc(node)) + (a.type.dims[-2], b.type.dims[-1])
    common = torch.promote_types(a.type.dtype, b.type.dtype)
    a, b = cast(lw, a, common, node), cast(lw, b, common, node)
    in_dtype, acc_dtype = a.type.dtype, torch.float32 if a.type.dtype.is_floating_point else torch.int32
    if acc is not None:
        acc = lw.as_value(acc, node)
        if not same_dims(acc.type.dims, dims):
            raise lw.err(exc.ShapeMismatch, f"accumulator shape {acc.type} does not match product {list(dims)}", node)
        r = lw.emit("dot", [a, b, cast(lw, acc, acc_dtype, node)], BlockT(dims, acc_dtype), node)
        return cast(lw, r, acc.type.dtype, node)
    r = lw.emit("dot", [a, b], BlockT(dims, acc_dtype), node)
    return cast(lw, r, out_dtype or (in_dtype if torch_semantics else acc_dtype), node)

def shape_list(shape: tuple) -> list:
    """``f(2, 3)`` or ``f((2, 3))``: the shape as a list."""
    return list(shape[0]) if len(shape) == 1 and isinstance(shape[0], (list, tuple)) else list(shape)

def shape_dims(lw, shape: Any, node: ast.AST) -> tuple[Dim, ...]:
    return tuple(_dim(lw, s, node) for s in ([shape] if isinstance(shape, (int, TileVar)) else shape))

def _dim(lw, s: Any, node: ast.AST) -> Dim:
    if isinstance(s, BlockSizeInt):
        return Dim("block", s.bid, s.bid)
    if isinstance(s, TileVar):
        return tile_dim(s.info)
    if isinstance(s, int) and not isinstance(s, bool):
        return ONE if s == 1 else Dim("rdim", lw.rdim_for(s, node).id)
    raise lw.err(exc.NotSupported, f"block shapes are made of tiles and ints, got {type(s).__name__}", node)

def full(lw, shape: Any, value: Any, dtype: torch.dtype | None, node: ast.AST) -> Value:
    dtype = dtype or (torch.int32 if isinstance(value, int) else torch.float32)
    value = cast(lw, value, dtype, node) if isinstance(value, Value) else value
    return lw.emit("full", [value], BlockT(shape_dims(lw, shape, node), dtype), node)

def arange(lw, args: list, dtype: Any, node: ast.AST) -> Value:
    begin, end = (0, args[0]) if len(args) == 1 else (args[0], args[1])
    if isinstance(end, BlockSizeInt) and begin == 0:
        # hl.arange(tile.block_size): that block size's lanes, lining up with the tile's dim (which masks them)
        v = lw.emit("arange", [0], BlockT((Dim("block", end.bid, end.bid),), torch.int32), node, block=end.bid)
    elif not isinstance(begin, int) or not isinstance(end, int):
        raise lw.err(exc.NotSupported, "hl.arange needs compile-time bounds", node)
    else:
        r = lw.rdim_for(end - begin, node)
        v = lw.emit("arange", [begin], BlockT((Dim("rdim", r.id),), torch.int32), node, rdim=r)
    return cast(lw, v, dtype, node) if dtype is not None else v

def permute(lw, v: Value, perm: list[int], node: ast.AST) -> Value:
    perm = [p % v.type.ndim for p in perm]
    if sorted(perm) != list(range(v.type.ndim)):
        raise lw.err(exc.ShapeMismatch, f"bad permutation {perm} for {v.type}", node)
    if perm == list(range(v.type.ndim)):
        return v
    return lw.emit("permute", [v], BlockT(tuple(v.type.dims[p] for p in perm), v.type.dtype), node, perm=perm)

def reshape(lw, v: Value, shape: Any, node: ast.AST) -> Value:
    """``x.reshape(...)`` / ``x.view(...)``: tile and block dims stay, in order; between them, full (':') dims may be
    split or merged when their extents are powers of two (no padding lanes to mix in); size-1 dims come and go."""
    shape, v = shape_list(shape), lw.as_value(v, node)
    new, infer = [], None
    for s in shape:
        # tile.block_size names that tile's dim when the block has it (x.view(tile.block_size, 1))
        same = [d for d in v.type.dims if d.kind == "tile" and d.bid == s.bid and d not in new] \
            if isinstance(s, BlockSizeInt) else []
        if same:
            new.append(same[0])
        elif isinstance(s, (TileVar, BlockSizeInt)) or isinstance(s, int) and not isinstance(s, bool) and s >= 1:
            new.append(_dim(lw, s, node))
        elif s == -1 and infer is None:
            infer = len(new)
            new.append(Dim("infer"))
        else:
            raise lw.err(exc.NotSupported, f"reshape to {shape}", node)
    bad = lw.err(exc.NotSupported, f"reshape that merges or splits tile dims or padded ':' dims "
                 f"({v.type} -> {shape})", node)
    non_one = [d for d in v.type.dims if d != ONE]
    if infer is not None and len(non_one) == 1 and all(d.kind in ("one", "infer") for d in new):
        new[infer] = non_one[0]  # x[tile].view(-1, 1): the one dim that is not 1 keeps its identity
        infer = None
    # a tile dim merged into others becomes plain lanes (int4 unpacking: join(lo, hi) of [tile_k, n] reshaped to
    # [2 * block_k, n]) when the tile never has a partial block, whose mask the merge would lose
    flat = list(v.type.dims)
    for i, d in enumerate(flat):
        if d.kind == "tile" and d not in new:
            t, block = lw.tiles[d.id], int(dim_size(lw, d))
            if t.is_grid or t.static_len is None or t.static_len % block or block & (block - 1):
                raise lw.err(exc.NotSupported, f"reshape merges tile '{t.name or 'tile'}' (block {block}) into other "
                             f"dims, which needs the tile to divide its extent ({t.static_len or 'unknown'}): the "
                             f"merged lanes would lose its mask", node)
            flat[i] = Dim("rdim", lw.rdim_for(block, node).id)
    if tuple(flat) != v.type.dims:
        v = lw.emit("reshape", [v], BlockT(tuple(flat), v.type.dtype), node)
    src_groups, dst_groups = _groups(lw, v.type.dims), _groups(lw, tuple(new))
    if infer is not None:
        if len(src_groups) != len(dst_groups):
            raise bad
        # -1 takes whatever the full dims of its group must multiply to
        for (_, sn), (dk, dn) in zip(src_groups, dst_groups):
            if not isinstance(dk, Dim) and infer in dk and sn % dn == 0:
                new[infer] = _dim(lw, sn // dn, node)
        dst_groups = _groups(lw, tuple(new))
    if ([k for k, _ in src_groups if isinstance(k, Dim)] != [k for k, _ in dst_groups if isinstance(k, Dim)]
            or any(sn != dn for (_, sn), (_, dn) in zip(src_groups, dst_groups))):
        raise bad
    dims = tuple(new)
    if dims == v.type.dims:
        return v
    padded = any(d.kind == "rdim" and lw.rdims[d.id].extent & (lw.rdims[d.id].extent - 1) for d in v.type.dims + dims)
    if padded and [d for d in v.type.dims if d != ONE] != [d for d in dims if d != ONE]:
        raise bad
    return lw.emit("reshape", [v], BlockT(dims, v.type.dtype), node)

def _groups(lw, dims: tuple[Dim, ...]) -> list:
    """Dims as [(tile/block dim, 1) | (indices of a run of full dims, product of extents)]; size-1 dims left out."""
    out: list = []
    for i, d in enumerate(dims):
        if d.kind in ("tile", "block"):
            out.append((d, 1))
        elif d.kind in ("rdim", "infer"):
            n = lw.rdims[d.id].extent if d.kind == "rdim" else 1
            if out and not isinstance(out[-1][0], Dim):  # the run goes on
                out[-1] = (out[-1][0] + (i,), out[-1][1] * n)
            else:
                out.append(((i,), n))
    return out

def squeeze(lw, v: Value, dim: Any, node: ast.AST) -> Value:
    axes = [i for i, d in enumerate(v.type.dims) if d == ONE] if dim is None else [dim % v.type.ndim]
    new = tuple(d for i, d in enumerate(v.type.dims) if i not in axes or d != ONE)
    return lw.emit("reshape", [v], BlockT(new, v.type.dtype), node)

def unsqueeze(lw, v: Value, dim: int, node: ast.AST) -> Value:
    k = dim % (v.type.ndim + 1)
    return lw.emit("reshape", [v], BlockT(v.type.dims[:k] + (ONE,) + v.type.dims[k:], v.type.dtype), node)

def expand(lw, v: Value, dims: tuple[Dim, ...], node: ast.AST) -> Value:
    out = broadcast_dims(v.type.dims, dims, lw.pk.loc(node))
    v = expand_rank(lw, v, len(out), node)
    return lw.emit("broadcast_to", [v], BlockT(out, v.type.dtype), node)

_DEVICE = torch.device("cpu")  # x.device in device code: only passed on (device=, .to()), where it is ignored

def attribute(lw, base: Any, attr: str, node: ast.AST) -> Any:
    if isinstance(base, TileVar):
        t = base.info
        if attr in ("index", "begin", "end", "id"):
            lanes, hint = ((tile_dim(t),), t.name) if attr == "index" else ((), f"{t.name}_{attr}")
            return Value("tile_attr", [t], BlockT(lanes, torch.int32), lw.pk.loc(node), hint, attr=attr)
        if attr == "block_size":
            return t.fixed if t.block_id is None else lw.block_int(t.block_id, extent=t.static_len)
        raise lw.err(exc.NotSupported, f"tile attribute .{attr} (use .index, .begin, .end, .block_size, .id)", node)
    if isinstance(base, (TensorRef, Value)):
        host, t = (True, base.arg) if isinstance(base, TensorRef) else (False, base.type)
        if attr in ("dtype", "ndim", "device"):
            return _DEVICE if attr == "device" else getattr(t, attr)
        if attr == "shape":
            return torch.Size(t.sizes) if host else tuple(dim_size(lw, d) for d in t.dims)
        if attr == "T" and not host:
            return permute(lw, base, list(range(t.ndim))[::-1], node)
        raise lw.err(exc.NotSupported, f"host tensor attribute .{attr} in device code" if host
                     else f"block attribute .{attr}", node)
    try:
        return getattr(base, attr)
    except AttributeError:
        raise lw.err(exc.NotSupported, f"{type(base).__name__} has no attribute {attr}", node) from None

def dim_size(lw, d: Any) -> int:
    """A tile's block size (a BlockSizeInt that notes its use), a ':' dim's extent, or 1."""
    if d.kind in ("one", "rdim"):
        return 1 if d.kind == "one" else lw.rdims[d.id].extent
    if d.kind == "tile" and d.bid is None:
        return lw.tiles[d.id].fixed
    return lw.block_int(d.bid, extent=lw.tiles[d.id].static_len if d.kind == "tile" else None)
