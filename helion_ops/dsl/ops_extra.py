"""Device ops beyond the core set: reductions (hl.reduce / associative_scan combine functions become ``@triton.jit``
helpers, ``DeviceIR.helpers``), scans, argmax, Philox randoms, inline Triton and PTX, views, split/join, stack/cat."""
from __future__ import annotations

import ast
import math
import operator
import sys
import textwrap
import types
import zlib
from typing import Any

import torch
from torch._higher_order_ops import associative_scan as _torch_scan

from . import exc, indexing as IX, language as hl, ops as O
from .ir import Value
from .opdefs import rule
from .types import ONE, BlockT, Dim, TensorRef, TileVar

def _axis(lw, v: Value, dim: Any, node: ast.AST) -> int:
    if not isinstance(dim, int) or not -v.type.ndim <= dim < v.type.ndim:
        raise lw.err(exc.ShapeMismatch, f"dim {dim!r} out of range for {v.type}", node)
    return dim % v.type.ndim

def _reduced(dims: tuple, axis: int, keep: bool) -> tuple:
    return dims[:axis] + ((ONE,) if keep else ()) + dims[axis + 1:]

def reduce(lw, kind: str, v: Any, dim: Any, keepdim: bool, node: ast.AST, correction: float = 1,
           dtype: torch.dtype | None = None) -> Any:
    """torch's reductions: ``dtype`` (torch's argument) casts the input first; without it integer and bool
    sums and products accumulate in int64, fp16/bf16 ones in fp32 (returned in the input's dtype)."""
    v = lw.as_value(v, node)
    dims = range(v.type.ndim) if dim is None else dim if isinstance(dim, (tuple, list)) else [dim]
    axes = sorted(_axis(lw, v, d, node) for d in dims)
    if dtype is not None or kind in ("sum", "prod") and not v.type.dtype.is_floating_point:
        v = O.cast(lw, v, dtype or torch.int64, node)  # (int32 would overflow where torch's int64 does not)
    if kind in ("mean", "var", "std"):
        if any(v.type.dims[a].kind not in ("rdim", "one") for a in axes):
            raise lw.err(exc.NotSupported, "mean/var over a tile dim (partial tiles): reduce ':' dims or use sum", node)
        n = math.prod(lw.rdims[v.type.dims[a].id].extent for a in axes if v.type.dims[a].kind == "rdim")
        v = v if v.type.dtype.is_floating_point else O.cast(lw, v, torch.float32, node)
        if kind == "mean":
            return O.binary(lw, "*", reduce(lw, "sum", v, axes, keepdim, node), 1.0 / n, node)
        d = O.binary(lw, "-", v, reduce(lw, "mean", v, axes, True, node), node)
        ss = reduce(lw, "sum", O.binary(lw, "*", d, d, node), axes, keepdim, node)
        var = O.binary(lw, "/", ss, float(max(n - correction, 0)) or float("nan"), node)
        return O.unary(lw, "sqrt", var, node) if kind == "std" else var
    if kind in ("all", "any"):
        v = O.cast(lw, v if v.type.dtype == torch.bool else O.binary(lw, "!=", v, 0, node), torch.int32, node)
        return O.binary(lw, "!=", reduce(lw, "min" if kind == "all" else "max", v, axes, keepdim, node), 0, node)
    in_dtype = v.type.dtype
    half = in_dtype in (torch.float16, torch.bfloat16) and kind in ("sum", "prod")
    if half or in_dtype == torch.bool:  # accumulate in fp32, as torch does; max/min of bools in int32
        v = O.cast(lw, v, torch.float32 if half else torch.int32, node)
    for a in reversed(axes):
        d = v.type.dims[a]
        m = IX.jagged_lanes(lw, v.type.dims, node, only=d.id) if d.kind == "tile" and d.id in lw.jagged else None
        if m is not None:  # lanes past a row's own length hold no data: the identity (max's is the lowest value)
            dt = v.type.dtype
            lo, hi = (-math.inf, math.inf) if dt.is_floating_point else (torch.iinfo(dt).min, torch.iinfo(dt).max)
            v = O.where(lw, m, v, int(kind == "prod") if kind in ("sum", "prod") else lo if kind == "max" else hi, node)
        if kind == "prod":  # Triton has no product reduction: tl.reduce with a multiply, masked lanes 1
            v = reduce_fn(lw, node, "reduce", _mul, v, a, 1, keepdim)
        else:
            v = lw.emit("reduce", [v], BlockT(_reduced(v.type.dims, a, keepdim), v.type.dtype), node, op=kind, axis=a,
                        keepdim=keepdim, rdim=v.type.dims[a])
    return O.cast(lw, v, in_dtype, node) if half else v

def _mul(a, b):  # the combine function of product reductions
    return a * b

def subscript_value(lw, v: Value, sl: ast.expr, node: ast.AST) -> Value:
    items = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
    bounded = [k for k, it in enumerate(items) if isinstance(it, ast.Slice) and (it.lower or it.upper or it.step)]
    if bounded:  # one half (see cat)
        bad = lw.err(exc.NotSupported, "a block can be sliced only into one half of a power-of-two ':' dim "
                     "(x[:, :h] or x[:, h:], other indices ':'); index the host tensor instead (x[tile, a:b])", node)
        if len(bounded) != 1 or not all(isinstance(it, ast.Slice) for it in items) or len(items) > v.type.ndim:
            raise bad
        axis, it = bounded[0], items[bounded[0]]
        d = v.type.dims[axis]
        extent = lw.rdims[d.id].extent if d.kind == "rdim" else 0
        lo, hi = (lw.expr(e) if e is not None else None for e in (it.lower, it.upper))
        if extent < 2 or extent & (extent - 1) or it.step is not None or not all(
                b is None or isinstance(b, int) for b in (lo, hi)):
            raise bad
        lo, hi, _ = slice(lo, hi).indices(extent)
        h, n = extent // 2, v.type.ndim
        if (lo, hi) not in ((0, h), (h, extent)):
            raise bad
        x = _last_dims(lw, _move(lw, v, axis, n - 1, node), [2, h], node)  # [..., 2, h]
        halves = [_move(lw, half, n - 1, axis, node) for half in split(lw, _move(lw, x, n, n - 1, node), node)]
        return halves[0 if lo == 0 else 1]  # (split of [..., h, 2])
    src, i = v.type.dims, 0
    out: list[tuple[Dim, bool]] = []  # (dim, True: an axis of v, False: a new size-1 axis)
    rest = len(src) - sum(not (isinstance(x, ast.Constant) and x.value in (None, Ellipsis)) for x in items)
    for it in [y for x in items for y in ([ast.Slice()] * rest if getattr(x, "value", None) is Ellipsis else [x])]:
        if isinstance(it, ast.Slice):
            if i >= len(src):
                raise lw.err(exc.ShapeMismatch, f"too many ':' indices for a block of {len(src)} dims ({v.type})", node)
            out.append((src[i], True))
            i += 1
        elif isinstance(it, ast.Constant) and it.value is None:
            out.append((ONE, False))
        else:  # Triton has no gather or slice of register blocks
            raise lw.err(exc.NotSupported, "blocks can be indexed only with ':', None and '...'; index the host "
                         "tensor instead (x[tile, a:b]) or use hl.split / torch.where", node)
    out += [(d, True) for d in src[i:]]
    return lw.emit("view", [v], BlockT(tuple(d for d, _ in out), v.type.dtype), node, axes=tuple(a for _, a in out))

_BUILTIN_COMBINE = {torch.max: "max", torch.maximum: "max", torch.amax: "max", torch.min: "min",
                    torch.minimum: "min", torch.amin: "min", torch.add: "sum", operator.add: "sum",
                    torch.sum: "sum"}

rule(hl.tile_index, hl.tile_begin, hl.tile_end, hl.tile_block_size, hl.tile_id)(
    lambda lw, node, name, tile: O.attribute(lw, tile, name[len("tile_"):], node))

@rule(hl.randint)
def _randint(lw, node, name, shape, low=0, high=None, seed=None, **_):
    r = rand(lw, node, name, shape, seed)
    scaled = O.unary(lw, "floor", O.binary(lw, "*", r, O.binary(lw, "-", high, low, node), node), node)
    return O.binary(lw, "+", O.cast(lw, scaled, torch.int32, node), low, node)

@rule(hl.device_print)
def _device_print(lw, node, name, *args):
    if not args or not isinstance(args[0], str):
        raise lw.err(exc.NotSupported, "hl.device_print(prefix, *values) needs a string prefix first", node)
    source = f"tl.device_print({args[0]!r}" + "".join(f", {{{i}}}" for i in range(len(args) - 1)) + ")"
    return inline_triton(lw, node, name, source, list(args[1:]), None)

rule(hl.split)(lambda lw, node, name, x: split(lw, x, node))
rule(hl.join)(lambda lw, node, name, a, b: join(lw, a, b, node))
rule(torch.stack)(lambda lw, node, name, xs, dim=0, **_: stack(lw, xs, dim, node))
rule(torch.cat, torch.concat, torch.concatenate)(lambda lw, node, name, xs, dim=0, **_: cat(lw, xs, dim, node))
rule(torch.gather, "gather")(lambda lw, node, name, x, dim=None, index=None, **_: gather(lw, x, dim, index, node))

@rule(hl.subscript)
def _subscript(lw, node, name, *args):
    raise lw.err(exc.NotSupported, "hl.subscript: index the block directly (x[:, None])", node)

@rule(torch.argmax, torch.argmin, "argmax", "argmin")
def argmax(lw, node, name, x, dim=None, keepdim=False) -> Value:
    x, is_min = lw.as_value(x, node), name == "argmin"
    if dim is None:
        raise lw.err(exc.NotSupported, "argmax/argmin without dim (over a flattened block)", node)
    axis = _axis(lw, x, dim, node)
    d = x.type.dims[axis]
    r = lw.emit("argmax", [x], BlockT(_reduced(x.type.dims, axis, keepdim), torch.int32), node, axis=axis,
                keepdim=keepdim, is_min=is_min, rdim=d)
    if d.kind == "tile":  # Helion returns global indices along a tile dim
        r = O.binary(lw, "+", r, O.attribute(lw, TileVar(lw.tiles[d.id]), "begin", node), node)
    return O.cast(lw, r, torch.int64, node)

def _combine(lw, fn: Any, x: Any, dim: Any, node: ast.AST, kind: str, grouped: bool = False, **attrs: Any) -> Any:
    """hl.reduce / associative_scan with a Python ``fn(*lefts, *rights)`` (``grouped``: two tuples) as a jit helper."""
    from . import inline
    multi = isinstance(x, (tuple, list))
    vals = O.broadcast(lw, [lw.as_value(v, node) for v in (x if multi else [x])], node)
    axis, n, dtypes = _axis(lw, vals[0], dim, node), len(vals), [v.type.dtype for v in vals]
    name = f"{lw.name}_combine_{len(lw.helpers)}"
    params = [Value("param", [f"{side}{i}"], BlockT((), dt), lw.pk.loc(node), f"{side}{i}")
              for side in ("lhs", "rhs") for i, dt in enumerate(dtypes)]
    if not isinstance(fn, types.FunctionType) or fn.__module__ == "torch":
        raise lw.err(exc.NotSupported, f"combine function {fn!r}: pass a Python function or lambda", node)
    saved, lw.stmts = lw.stmts, []
    try:
        res = inline.call(lw, fn, [tuple(params[:n]), tuple(params[n:])] if grouped and n > 1 else params, {}, node)
        res = list(res) if isinstance(res, (tuple, list)) else [res]
        if len(res) != n:
            raise lw.err(exc.ShapeMismatch, f"combine function returns {len(res)} values, not {n}", node)
        res = [O.cast(lw, lw.as_value(r, node, dt), dt, node) for r, dt in zip(res, dtypes)]
        lw.helpers.append((name, [p.args[0] for p in params], lw.stmts, res))
    finally:
        lw.stmts = saved
    dims = _reduced(vals[0].type.dims, axis, attrs["keepdim"]) if kind == "reduce" else vals[0].type.dims
    v = lw.emit("combine", vals, BlockT(dims, vals[0].type.dtype), node, kind=kind, axis=axis, **attrs, fn=name,
                multi=multi, rdim=vals[0].type.dims[axis])
    return tuple(lw.emit("getitem", [v], BlockT(dims, u.type.dtype), node, index=i) for i, u in enumerate(vals)) \
        if multi else v

@rule(hl.reduce)
def reduce_fn(lw, node, name, fn, x, dim=None, other=0, keep_dims: bool = False) -> Any:
    multi = isinstance(x, (tuple, list))
    if not multi and fn in _BUILTIN_COMBINE:  # in the input's dtype, as tl.reduce (an int32 sum stays int32)
        kind, x = _BUILTIN_COMBINE[fn], lw.as_value(x, node)
        keep_dt = x.type.dtype if kind == "sum" and not x.type.dtype.is_floating_point else None
        return reduce(lw, kind, x, dim, keep_dims, node, dtype=keep_dt)
    if dim is None:
        raise lw.err(exc.NotSupported, "hl.reduce with a combine function needs dim=", node)
    others = list(other) if isinstance(other, (tuple, list)) else [other] * (len(x) if multi else 1)
    return _combine(lw, fn, x, dim, node, "reduce", keepdim=keep_dims, other=others)

@rule(hl.associative_scan)
def scan_fn(lw, node, name, fn, x, dim=None, reverse=False, grouped: bool = False) -> Any:
    if not isinstance(x, (tuple, list)) and _BUILTIN_COMBINE.get(fn) == "sum":
        return cumulative(lw, node, "cumsum", x, dim, reverse)
    return _combine(lw, fn, x, dim, node, "scan", grouped, reverse=reverse)

# torch's higher-order op: combine_fn(lefts, rights) takes tuples when xs is one
rule(_torch_scan)(lambda lw, node, name, fn, xs, dim=None, reverse=False, **_: scan_fn(
    lw, node, name, fn, xs, dim, reverse, grouped=True))

@rule(hl.cumsum, torch.cumsum, hl.cumprod, torch.cumprod)
def cumulative(lw, node, name, x, dim=None, reverse=False, *, dtype=None) -> Value:
    v = lw.as_value(x, node)
    axis = _axis(lw, v, dim, node)
    v = O.cast(lw, v, dtype or (torch.float32 if v.type.dtype in (torch.float16, torch.bfloat16) else
                                torch.int64 if not v.type.dtype.is_floating_point else v.type.dtype), node)
    return lw.emit("scan", [v], v.type, node, op=name[3:], axis=axis, rdim=v.type.dims[axis], reverse=bool(reverse))

# x.cumsum(dim, dtype): the method's second argument is torch's dtype, not hl's reverse
rule("cumsum", "cumprod")(lambda lw, node, name, x, dim=None, dtype=None: cumulative(lw, node, name, x, dim,
                                                                                   dtype=dtype))

def _seed(lw, seed: Any, what: str, node: ast.AST) -> Value:
    if seed is None or isinstance(seed, Value) and seed.type.dims:
        raise lw.err(exc.CompileError, f"hl.{what} needs seed=, a scalar", node)
    return lw.as_value(seed, node, torch.int32)

@rule(hl.rand)
def rand(lw, node, name, shape, seed=None, **_) -> Value:
    """Uniform [0, 1) float32 from Philox (tl.rand), one counter per element of the full index space."""
    return lw.emit("rand", [_seed(lw, seed, "rand", node)], BlockT(O.shape_dims(lw, shape, node), torch.float32), node)

@rule(hl.rand4x)
def rand4x(lw, node, name, seed=None, offsets=None) -> tuple:
    """Four uniform [0, 1) float32 blocks from one Philox round per offset of the caller's (tl.rand4x's streams)."""
    if offsets is None:
        raise lw.err(exc.CompileError, "hl.rand4x needs offsets", node)
    offs = lw.as_value(offsets, node)
    if offs.type.dtype.is_floating_point or offs.type.dtype == torch.bool:
        raise lw.err(exc.CompileError, f"hl.rand4x offsets must be integers, got {offs.type.dtype}", node)
    t = BlockT(offs.type.dims, torch.float32)
    v = lw.emit("rand4x", [_seed(lw, seed, "rand4x", node), offs], t, node)
    return tuple(lw.emit("getitem", [v], t, node, index=i) for i in range(4))

@rule(torch.rand_like, torch.randn_like, torch.rand, torch.randn)
def torch_random(lw, node, name, *args, dtype=None, **_):
    """torch.rand_like(x) / torch.rand(shape) inside a device loop: Philox with a per-launch seed."""
    hid = lw.hoisted.get(("seed",))
    seed_ref = lw.host_value(hid, lw.inputs[hid], node) if hid is not None else None
    if not isinstance(seed_ref, TensorRef):
        raise lw.err(exc.NotSupported, f"torch.{name} here; use hl.rand(shape, seed=...)", node)
    seed = lw.load(seed_ref, lw.make_index(seed_ref, [(object(), 0)], node), node)
    like = (lw.as_value(args[0], node).type if name.endswith("_like")
            else BlockT(O.shape_dims(lw, O.shape_list(args), node), torch.float32))
    r = lw.emit("rand", [seed], BlockT(like.dims, torch.float32), node, normal=name.startswith("randn"))
    return O.cast(lw, r, dtype or like.dtype, node)

@rule(hl.inline_triton)
def inline_triton(lw, node, name, triton_source=None, args=(), output_like=None) -> Any:
    if not isinstance(triton_source, str):
        raise lw.err(exc.CompileError, "hl.inline_triton: the source must be a str", node)
    named = isinstance(args, dict)
    items = list(args.items()) if named else list(enumerate(args))
    kinds, vals = [], []
    for _, a in items:
        kind = ("tensor" if isinstance(a, TensorRef) else "value" if isinstance(a, (Value, TileVar))
                else "lit" if isinstance(a, (int, float, bool, str)) else None)
        if kind is None:
            raise lw.err(exc.NotSupported, f"hl.inline_triton argument of type {type(a).__name__}", node)
        kinds.append(kind)
        vals.append(a.arg.name if kind == "tensor" else lw.as_value(a, node) if kind == "value" else a)
    multi = isinstance(output_like, (tuple, list))
    outs = [lw.as_value(o, node) for o in (output_like if multi else [] if output_like is None else [output_like])]
    v = lw.emit("inline_triton", [x for x in vals if isinstance(x, Value)], outs[0].type if outs else
                BlockT((), torch.int32), node, source=triton_source, keys=[k for k, _ in items], kinds=kinds, lits=vals,
                named=named, effect=output_like is None)
    if output_like is None:
        return None
    return tuple(lw.emit("getitem", [v], o.type, node, index=i) for i, o in enumerate(outs)) if multi else v

@rule(hl.triton_kernel)
def triton_kernel(lw, node, name, triton_source_or_fn=None, args=None, output_like=None) -> Any:
    """Call a ``@triton.jit`` function: a module-level one is imported by the generated module (its calls resolve in
    its own module); a str is the source of one function definition, defined once in the generated module."""
    src_or_fn = triton_source_or_fn
    if src_or_fn is None or not isinstance(args, (dict, list, tuple)):
        raise lw.err(exc.NotSupported, "hl.triton_kernel(triton_source_or_fn, args, output_like), args a list, tuple "
                     "or dict", node)
    if isinstance(src_or_fn, str):  # one function definition, made a @triton.jit one
        try:
            tree = ast.parse(textwrap.dedent(src_or_fn))
        except SyntaxError as e:
            raise lw.err(exc.CompileError, f"hl.triton_kernel: the source does not parse: {e}", node) from None
        fd = tree.body[0] if len(tree.body) == 1 else None
        if not isinstance(fd, ast.FunctionDef):
            raise lw.err(exc.NotSupported, "hl.triton_kernel: the source must be one function definition", node)
        if not any(ast.unparse(d).split("(")[0] in ("triton.jit", "jit") for d in fd.decorator_list):
            fd.decorator_list.insert(0, ast.parse("triton.jit", mode="eval").body)
        fname = fd.name = f"_tk_{fd.name}_{zlib.crc32(src_or_fn.encode()):08x}"
        text = ast.unparse(tree) + "\n\n\n"
    elif isinstance(getattr(src_or_fn, "fn", None), types.FunctionType):  # @triton.jit (or its interpreter twin)
        mod, attr = src_or_fn.fn.__module__, src_or_fn.fn.__name__
        if mod is None or getattr(sys.modules.get(mod), attr, None) is not src_or_fn:
            raise lw.err(exc.NotSupported, f"hl.triton_kernel: {attr} must be a module-level @triton.jit function "
                         "(the generated code imports it), or pass its source as a str", node)
        fname = f"_tk_{attr}_{zlib.crc32(mod.encode()):08x}"
        text = f"from {mod} import {attr} as {fname}\n\n\n"
    else:
        raise lw.err(exc.NotSupported, "hl.triton_kernel expects a @triton.jit function or the source of one as a "
                     f"str, got {type(src_or_fn).__name__}", node)
    if ("raw", fname, text) not in lw.helpers:
        lw.helpers.append(("raw", fname, text))
    params = [f"{k}={{{k}}}" for k in args] if isinstance(args, dict) else [f"{{{i}}}" for i in range(len(args))]
    return inline_triton(lw, node, name, f"{fname}({', '.join(params)})", args, output_like)

@rule(hl.inline_asm_elementwise)
def inline_asm(lw, node, name, asm=None, constraints=None, args=None, dtype=None, is_pure=None, pack=None, **_) -> Any:
    """``tl.inline_asm_elementwise`` over the broadcast of ``args``: one output per dtype (a tuple for a tuple)."""
    given = dict(asm=asm, constraints=constraints, args=args, dtype=dtype, is_pure=is_pure, pack=pack)
    if missing := [n for n, x in given.items() if x is None]:
        raise lw.err(exc.NotSupported, f"hl.inline_asm_elementwise needs {', '.join(missing)}", node)
    dtypes = list(dtype) if isinstance(dtype, (list, tuple)) else [dtype]
    for bad, what in (
            (not (isinstance(asm, str) and isinstance(constraints, str)), "asm and constraints must be str literals"),
            (not isinstance(args, (list, tuple)) or not args, "args must be a non-empty list of device values"),
            (not (isinstance(is_pure, bool) and isinstance(pack, int) and pack >= 1),
             "is_pure must be a bool and pack an int >= 1"),
            (not dtypes or not all(isinstance(d, torch.dtype) for d in dtypes),
             "dtype must be a torch.dtype or a tuple of them")):
        if bad:
            raise lw.err(exc.NotSupported, f"hl.inline_asm_elementwise: {what}", node)
    vals = [lw.as_value(a, node) for a in args]
    outs = [BlockT(O.bcast_dims(lw, vals, node), d) for d in dtypes]
    v = lw.emit("inline_asm", vals, outs[0], node, asm=asm, constraints=constraints, dtypes=dtypes,
                is_pure=is_pure, pack=pack)
    multi = isinstance(dtype, (list, tuple))
    return tuple(lw.emit("getitem", [v], t, node, index=i) for i, t in enumerate(outs)) if multi else v

def split(lw, x: Any, node: ast.AST) -> tuple[Value, Value]:
    x = lw.as_value(x, node)
    if not x.type.dims or x.type.dims[-1].kind != "rdim" or lw.rdims[x.type.dims[-1].id].extent != 2:
        raise lw.err(exc.ShapeMismatch, f"hl.split needs a last dim of size 2, got {x.type}", node)
    t = BlockT(x.type.dims[:-1], x.type.dtype)
    v = lw.emit("split", [x], t, node)
    return lw.emit("getitem", [v], t, node, index=0), lw.emit("getitem", [v], t, node, index=1)

def join(lw, a: Any, b: Any, node: ast.AST) -> Value:
    a, b = O.broadcast(lw, O._align(lw, a, b, lw.result_dtype(a, b), node), node)
    return lw.emit("join", [a, b], BlockT(a.type.dims + (Dim("rdim", lw.rdim_for(2, node).id),), a.type.dtype), node)

def gather(lw, x: Any, dim: int, index: Any, node: ast.AST) -> Value:
    x, index = lw.as_value(x, node), lw.as_value(index, node)
    nd = x.type.ndim
    d = dim % nd if isinstance(dim, int) and nd else dim
    if (not isinstance(d, int) or index.type.ndim != nd or index.type.dtype.is_floating_point
            or any(a != b for i, (a, b) in enumerate(zip(x.type.dims, index.type.dims)) if i != d)):
        raise lw.err(exc.ShapeMismatch, f"torch.gather in device code takes an integer index block of the input's "
                     f"dims except along dim (input {x.type}, index {index.type}, dim {dim})", node)
    return lw.emit("gather", [x, index], BlockT(index.type.dims, x.type.dtype), node, axis=d)

def _pow2_count(xs: Any) -> bool:
    return isinstance(xs, (list, tuple)) and len(xs) >= 2 and not len(xs) & (len(xs) - 1)

def stack(lw, xs: Any, dim: int, node: ast.AST) -> Value:
    """``torch.stack(xs, dim)`` of 2, 4, 8... blocks: ``hl.join`` of each pair (a new last dim, moved to ``dim``)."""
    if not _pow2_count(xs):
        raise lw.err(exc.NotSupported, "torch.stack of 2, 4, 8... blocks (a power of two: pairs of hl.join); "
                     "store other counts separately", node)
    if len(xs) > 2:
        return cat(lw, [stack(lw, xs[i:i + 2], dim, node) for i in range(0, len(xs), 2)], dim, node)
    v = join(lw, xs[0], xs[1], node)
    return _move(lw, v, v.type.ndim - 1, _axis(lw, v, dim, node), node)

def cat(lw, xs: Any, dim: int, node: ast.AST) -> Value:
    """``torch.cat(xs, dim)`` of 2, 4, 8... blocks of one shape along a power-of-two ':' dim (rotate-half RoPE, gated
    activations): Triton cannot slice or concatenate a register block, but such a dim reshaped to [2, h] splits into
    halves and join glues them back; more than two are joined in halves (every dim stays a power of two)."""
    bad = lw.err(exc.NotSupported, "torch.cat of 2, 4, 8... blocks of one shape along a power-of-two ':' dim "
                 "only; store the parts into slices of the output instead", node)
    if not _pow2_count(xs):
        raise bad
    if len(xs) > 2:
        return cat(lw, [cat(lw, xs[:len(xs) // 2], dim, node), cat(lw, xs[len(xs) // 2:], dim, node)], dim, node)
    a, b = O._align(lw, xs[0], xs[1], lw.result_dtype(xs[0], xs[1]), node)
    n = a.type.ndim
    if a.type.dims != b.type.dims or not isinstance(dim, int) or not -n <= dim < n:
        raise bad
    axis = dim % n
    h = lw.rdims[a.type.dims[axis].id].extent if a.type.dims[axis].kind == "rdim" else 0
    if h < 1 or h & (h - 1):
        raise bad
    j = join(lw, _move(lw, a, axis, n - 1, node), _move(lw, b, axis, n - 1, node), node)  # [..., h, 2]
    j = _move(lw, j, n, n - 1, node)                                                      # [..., 2, h]
    return _move(lw, _last_dims(lw, j, [2 * h], node), n - 1, axis, node)

def _move(lw, v: Value, src: int, dst: int, node: ast.AST) -> Value:
    perm = [i for i in range(v.type.ndim) if i != src]
    perm.insert(dst, src)
    return O.permute(lw, v, perm, node)

def _last_dims(lw, v: Value, extents: list[int], node: ast.AST) -> Value:
    """Reshape only v's trailing ':' dims ([E] -> [2, E/2], [2, h] -> [2h]): the others keep their lanes."""
    k = 2 if len(extents) == 1 else 1
    return lw.emit("reshape", [v], BlockT(v.type.dims[:-k] + O.shape_dims(lw, extents, node), v.type.dtype), node)
