"""Dispatch of methods and calls in device code to the handlers in ops.py and ops_extra.py."""
from __future__ import annotations

import ast
import builtins
import collections
import math
from typing import Any

import torch
import torch.nn.functional as F

from . import exc, language as hl
from . import ops as O
from . import ops_extra as X
from .ir import Value
from .opdefs import CALLS, DECLINE, METHODS, calls, methods
from .types import TensorRef, TileVar

def _dim_kw(args: list, kwargs: dict, pos: int = 0, default: Any = None) -> Any:
    if "dim" in kwargs:
        return kwargs["dim"]
    if "axis" in kwargs:
        return kwargs["axis"]
    return args[pos] if len(args) > pos else default

def method(lw, base: Any, name: str, args: list, kwargs: dict, node: ast.AST) -> Any:
    if isinstance(base, TensorRef):
        a = base.arg
        if name == "size":
            return torch.Size(a.sizes) if not args else a.sizes[args[0]]
        if name == "stride":
            return tuple(a.strides) if not args else a.strides[args[0]]
        if name in ("dim", "ndimension"):
            return a.ndim
        if name == "numel":
            return math.prod(a.sizes)
        if name in ("new_zeros", "new_ones", "new_full", "new_empty"):  # a block of the host tensor's dtype
            return _new_block(lw, a.dtype, name, args, kwargs, node)
        raise lw.err(exc.NotSupported, f"host tensor method .{name}() in device code", node)
    if isinstance(base, TileVar):
        base = O.attribute(lw, base, "index", node)
    rule = METHODS.get(name)
    if rule is None:
        hint = "; a loaded element is already a device scalar: drop .item()" if name == "item" else ""
        raise lw.err(exc.NotSupported, f"method .{name}() is not supported on device blocks{hint}", node)
    return rule(lw, base, name, args, kwargs, node)

# Methods of device blocks: rule(lw, block, name, args, kwargs, node), one per method or group of spellings
# (ops_extra.py registers its own first: it is imported first).
_rule = methods

@_rule("to")
def _to(lw, v, name, args, kwargs, node):
    dtype = kwargs.get("dtype", args[0] if args else None)
    return v if isinstance(dtype, torch.device) or dtype is None else O.cast(lw, v, dtype, node)

_CASTS = {"float": torch.float32, "half": torch.float16, "bfloat16": torch.bfloat16, "double": torch.float64,
          "int": torch.int32, "long": torch.int64, "bool": torch.bool}
_rule(*_CASTS)(lambda lw, v, name, args, kwargs, node: O.cast(lw, v, _CASTS[name], node))
_rule("type_as")(lambda lw, v, name, args, kwargs, node: O.cast(lw, v, args[0].type.dtype, node))
_rule(*O.METHOD_UNARY)(lambda lw, v, name, args, kwargs, node: O.unary(lw, name, v, node))
_rule(*O.METHOD_BINARY)(lambda lw, v, name, args, kwargs, node: O.binary(lw, O.METHOD_BINARY[name], v, args[0], node))
_rule(*O.METHOD_REDUCE)(lambda lw, v, name, args, kwargs, node:
                        _reduce_call(lw, O.METHOD_REDUCE[name], v, args, kwargs, node))

@_rule("max", "min")
def _max_min(lw, v, name, args, kwargs, node):
    if args and isinstance(args[0], Value):  # x.max(y): elementwise
        return O.binary(lw, "maximum" if name == "max" else "minimum", v, args[0], node)
    return _reduce_call(lw, name, v, args, kwargs, node, values_only=False)

_rule("count_nonzero")(lambda lw, v, name, args, kwargs, node:
                       X.reduce(lw, "sum", O.binary(lw, "!=", v, 0, node), _dim_kw(args, kwargs), False, node))
_rule("nansum")(lambda lw, v, name, args, kwargs, node: _reduce_call(
    lw, "sum", O.where(lw, O.unary(lw, "isnan", v, node), 0, v, node), args, kwargs, node))
_rule("softmax", "log_softmax")(lambda lw, v, name, args, kwargs, node: X.softmax(
    lw, v, _dim_kw(args, kwargs), node, log=name == "log_softmax", dtype=kwargs.get("dtype")))

@_rule("clamp", "clip", "clamp_min", "clamp_max")
def _clamp_method(lw, v, name, args, kwargs, node):
    lo = kwargs.get("min", args[0] if args and name != "clamp_max" else None)
    hi = kwargs.get("max", args[1] if len(args) > 1 else (args[0] if name == "clamp_max" and args else None))
    return _clamp(lw, v, lo, hi, node)

_rule("permute")(lambda lw, v, name, args, kwargs, node: O.permute(
    lw, v, list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args), node))

@_rule("transpose", "swapaxes")
def _transpose(lw, v, name, args, kwargs, node):
    perm = list(range(v.type.ndim))
    i, j = args[0] % v.type.ndim, args[1] % v.type.ndim
    perm[i], perm[j] = perm[j], perm[i]
    return O.permute(lw, v, perm, node)

_rule("t")(lambda lw, v, name, args, kwargs, node: O.permute(lw, v, [1, 0], node))
_rule("reshape", "view")(lambda lw, v, name, args, kwargs, node: O.reshape(lw, v, args, node))
_rule("unsqueeze")(lambda lw, v, name, args, kwargs, node: O.unsqueeze(lw, v, _dim_kw(args, kwargs), node))
_rule("squeeze")(lambda lw, v, name, args, kwargs, node: O.squeeze(lw, v, _dim_kw(args, kwargs), node))

@_rule("expand", "broadcast_to")
def _expand(lw, v, name, args, kwargs, node):
    shape = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    return O.expand(lw, v, O.shape_dims(lw, [s for s in shape if s != -1], node) if -1 not in shape
                    else v.type.dims, node)

_rule("expand_as")(lambda lw, v, name, args, kwargs, node: O.expand(lw, v, args[0].type.dims, node))
_rule("contiguous", "clone", "detach")(lambda lw, v, name, args, kwargs, node: v)

def _new_block(lw, dtype, name, args, kwargs, node):
    value = {"new_zeros": 0, "new_ones": 1, "new_empty": 0}.get(name, args[1] if len(args) > 1 else kwargs.get("fill_value"))
    return O.full(lw, args[0], value, kwargs.get("dtype", dtype), node)

_rule("new_zeros", "new_ones", "new_full", "new_empty")(
    lambda lw, v, name, args, kwargs, node: _new_block(lw, v.type.dtype, name, args, kwargs, node))

_rule("where")(lambda lw, v, name, args, kwargs, node: O.where(lw, args[0], v, args[1], node))
_rule("isnan", "isinf", "isfinite")(lambda lw, v, name, args, kwargs, node: _fp_class(lw, name, v, node))
_rule("masked_fill")(lambda lw, v, name, args, kwargs, node: O.where(lw, args[0], args[1], v, node))

@_rule("size")
def _size(lw, v, name, args, kwargs, node):
    sizes = tuple(O.dim_size(lw, d) for d in v.type.dims)
    return sizes if not args else sizes[args[0]]

_rule("dim", "ndimension")(lambda lw, v, name, args, kwargs, node: v.type.ndim)
_rule("matmul", "mm", "bmm", "__matmul__")(lambda lw, v, name, args, kwargs, node:
                                           O.dot(lw, v, args[0], None, node, torch_semantics=True))

def _fp_class(lw, name: str, v: Any, node: ast.AST) -> Value:
    """torch.isnan / isinf / isfinite from comparisons (NaN is the only value unequal to itself)."""
    v = lw.as_value(v, node)
    if not v.type.dtype.is_floating_point:  # integers are always finite
        return O.binary(lw, "==" if name == "isfinite" else "!=", v, v, node)
    if name == "isnan":
        return O.binary(lw, "!=", v, v, node)
    big = O.binary(lw, "==", O.unary(lw, "abs", v, node), float("inf"), node)
    if name == "isinf":
        return big
    return O.binary(lw, "&", O.binary(lw, "==", v, v, node), O.unary(lw, "not", big, node), node)

def _clamp(lw, v: Value, lo: Any, hi: Any, node: ast.AST) -> Value:
    if lo is not None:
        v = O.binary(lw, "maximum", v, lo, node)
    if hi is not None:
        v = O.binary(lw, "minimum", v, hi, node)
    return v

def _reduce_call(lw, kind: str, v: Any, args: list, kwargs: dict, node: ast.AST, values_only: bool = True) -> Any:
    dim = _dim_kw(args, kwargs)
    keepdim = kwargs.get("keepdim", args[1] if len(args) > 1 and isinstance(args[1], bool) else False)
    correction = kwargs.get("correction", 0 if kwargs.get("unbiased", True) is False else 1)
    if not values_only:
        if dim is None:
            return X.reduce(lw, kind, v, None, False, node)
        values = X.reduce(lw, kind, v, dim, keepdim, node)
        return _MinMax(values, X.argmax(lw, v, dim, keepdim, node, kind == "min"))  # (values, indices), as torch
    dtype = kwargs.get("dtype")
    if dtype is not None and kind not in ("sum", "prod", "mean"):
        raise lw.err(exc.NotSupported, f"dtype= of a {kind} reduction (torch takes it for sum, prod and mean)",
                     node)
    return X.reduce(lw, kind, v, dim, keepdim, node, correction=correction, dtype=dtype)

_MinMax = collections.namedtuple("_MinMax", ["values", "indices"])

def _fp32(lw, x: Value, node: ast.AST) -> Value:
    """fp16/bf16 ``x`` in fp32 (a reduction's accumulation type, as torch's); other dtypes as they are."""
    return O.cast(lw, x, torch.float32, node) if x.type.dtype in (torch.float16, torch.bfloat16) else x

def _vector_norm(lw, args: list, kwargs: dict, node: ast.AST, pname: str) -> Any:
    """torch.norm / linalg.vector_norm over ``dim`` for p = 2 (default) or 1, as int literals (a float such
    as inf reaches device code as a runtime argument, so it cannot pick the code); fp16/bf16 in fp32."""
    x = lw.as_value(args[0], node)
    p = kwargs.get(pname, args[1] if len(args) > 1 else 2)
    dim = kwargs.get("dim", args[2] if len(args) > 2 else None)
    keep = kwargs.get("keepdim", args[3] if len(args) > 3 else False)
    if isinstance(p, Value) or p not in (1, 2, "fro"):
        raise lw.err(exc.NotSupported, f"a vector norm in device code takes {pname}=1 or 2 as an int literal; "
                     "for inf use x.abs().amax(dim)", node)
    xf = _fp32(lw, x, node)
    if p == 1:
        r = X.reduce(lw, "sum", O.unary(lw, "abs", xf, node), dim, keep, node)
    else:
        r = O.unary(lw, "sqrt", X.reduce(lw, "sum", O.binary(lw, "*", xf, xf, node), dim, keep, node), node)
    return O.cast(lw, r, x.type.dtype, node)

def call(lw, fn: Any, args: list, kwargs: dict, node: ast.AST) -> Any:
    try:
        rule = CALLS.get(fn)
    except TypeError:  # an unhashable callable
        rule = None
    if rule is not None:
        r = rule(lw, fn, args, kwargs, node)
        if r is not DECLINE:
            return r
    if fn in (builtins.int, builtins.float, builtins.len, builtins.abs, builtins.range, builtins.tuple,
              builtins.list) and not any(isinstance(a, Value) for a in args):
        return fn(*args, **kwargs)  # host values: plain Python
    if fn is builtins.float and args and isinstance(args[0], Value):
        return O.cast(lw, args[0], torch.float32, node)
    if getattr(fn, "__module__", None) == "math" and not any(isinstance(a, Value) for a in args):
        return fn(*args)
    if fn in (hl.tile, hl.grid):
        raise lw.err(exc.NotSupported, f"hl.{fn.__name__} outside a for statement", node)
    if getattr(fn, "_hl_device", None):
        raise lw.err(exc.NotSupported, f"hl.{fn._hl_device} is not supported by helion_ops.dsl yet", node)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    mod = getattr(fn, "__module__", "") or ""
    hint = {builtins.print: "; use hl.device_print(prefix, *values)",
            torch.tensor: "; use a Python number or hl.full(shape, value, dtype)"}.get(fn, "")
    raise lw.err(exc.NotSupported, f"unsupported function {mod + '.' if mod else ''}{name} inside a device loop{hint}",
                 node)

# Functions called in device code: rule(lw, fn, args, kwargs, node), one per function or group; a rule may
# return DECLINE to let the generic handling above decide (builtins on host values). ops_extra.py registers
# its own first.
_fn = calls

_fn(*O.UNARY)(lambda lw, fn, args, kwargs, node: O.unary(lw, O.UNARY[fn], args[0], node))
_fn(F.gelu)(lambda lw, fn, args, kwargs, node: O.unary(
    lw, "gelu_tanh" if kwargs.get("approximate", "none") == "tanh" else "gelu", args[0], node))
_fn(*O.BINARY_FN)(lambda lw, fn, args, kwargs, node: O.binary(lw, O.BINARY_FN[fn], args[0], args[1], node))
_fn(*O.REDUCE)(lambda lw, fn, args, kwargs, node: _reduce_call(lw, O.REDUCE[fn], args[0], args[1:], kwargs, node))

@_fn(torch.max, torch.min)
def _torch_max_min(lw, fn, args, kwargs, node):
    if len(args) > 1 and isinstance(args[1], (Value, float)) and not isinstance(args[1], bool):
        return O.binary(lw, "maximum" if fn is torch.max else "minimum", args[0], args[1], node)
    return _reduce_call(lw, "max" if fn is torch.max else "min", args[0], args[1:], kwargs, node, values_only=False)

_fn(torch.where)(lambda lw, fn, args, kwargs, node: O.where(lw, args[0], args[1], args[2], node))
_fn(torch.norm, torch.linalg.vector_norm)(lambda lw, fn, args, kwargs, node: _vector_norm(  # p = 1 or 2
    lw, args, kwargs, node, "ord" if fn is torch.linalg.vector_norm else "p"))

@_fn(torch.logsumexp)
def _logsumexp(lw, fn, args, kwargs, node):
    """Max-shifted; a row whose max is -inf (all -inf) gives -inf, as torch."""
    x, dim = lw.as_value(args[0], node), _dim_kw(args[1:], kwargs)
    keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
    xf = _fp32(lw, x, node)
    m = X.reduce(lw, "max", xf, dim, True, node)
    m = O.where(lw, O.unary(lw, "isinf", m, node), 0.0, m, node)
    s = X.reduce(lw, "sum", O.unary(lw, "exp", O.binary(lw, "-", xf, m, node), node), dim, True, node)
    r = O.binary(lw, "+", O.unary(lw, "log", s, node), m, node)
    r = O.squeeze(lw, r, dim, node) if not keep else r
    return O.cast(lw, r, x.type.dtype, node)

_fn(torch.clamp, torch.clip)(lambda lw, fn, args, kwargs, node: _clamp(
    lw, lw.as_value(args[0], node), kwargs.get("min", args[1] if len(args) > 1 else None),
    kwargs.get("max", args[2] if len(args) > 2 else None), node))
_fn(torch.softmax, F.softmax, torch.log_softmax, F.log_softmax)(lambda lw, fn, args, kwargs, node: X.softmax(
    lw, args[0], _dim_kw(args, kwargs, 1), node, log=fn in (torch.log_softmax, F.log_softmax),
    dtype=kwargs.get("dtype")))

@_fn(torch.matmul, torch.mm, torch.bmm)
def _matmul(lw, fn, args, kwargs, node):
    # torch.bmm(a, b, out_dtype) / out_dtype=: accumulate and return in that dtype
    out_dtype = kwargs.get("out_dtype", args[2] if len(args) > 2 and isinstance(args[2], torch.dtype) else None)
    return O.dot(lw, args[0], args[1], None, node, torch_semantics=True, out_dtype=out_dtype)

@_fn(torch.addmm, torch.baddbmm)
def _addmm(lw, fn, args, kwargs, node):
    alpha, beta = kwargs.get("alpha", 1), kwargs.get("beta", 1)
    if alpha == 1 and beta == 1:
        return O.dot(lw, args[1], args[2], args[0], node)
    prod = O.binary(lw, "*", O.dot(lw, args[1], args[2], None, node), alpha, node)
    acc = O.binary(lw, "*", args[0], beta, node)
    return O.cast(lw, O.binary(lw, "+", acc, prod, node), lw.as_value(args[0], node).type.dtype, node)

_fn(hl.dot)(lambda lw, fn, args, kwargs, node: O.dot(
    lw, args[0], args[1], kwargs.get("acc", args[2] if len(args) > 2 else None), node, out_dtype=kwargs.get("out_dtype")))
_fn(hl.zeros)(lambda lw, fn, args, kwargs, node: O.full(
    lw, args[0], 0, kwargs.get("dtype", args[1] if len(args) > 1 else torch.float32), node))
_fn(hl.full)(lambda lw, fn, args, kwargs, node: O.full(
    lw, args[0], args[1], kwargs.get("dtype", args[2] if len(args) > 2 else torch.float32), node))
_fn(torch.zeros_like, torch.ones_like, torch.empty_like)(lambda lw, fn, args, kwargs, node: O.full_like(
    lw, args[0], 1 if fn is torch.ones_like else 0, kwargs.get("dtype"), node))
_fn(torch.full_like)(lambda lw, fn, args, kwargs, node: O.full_like(lw, args[0], args[1], kwargs.get("dtype"), node))

@_fn(torch.zeros, torch.ones, torch.full, torch.empty)
def _torch_full(lw, fn, args, kwargs, node):
    shape = args[0] if args and isinstance(args[0], (list, tuple)) else [a for a in args if not isinstance(a, float)]
    value = {torch.zeros: 0, torch.ones: 1, torch.empty: 0}.get(fn, args[1] if len(args) > 1 else kwargs.get("fill_value"))
    return O.full(lw, shape, value, kwargs.get("dtype", torch.float32), node)

_fn(hl.arange)(lambda lw, fn, args, kwargs, node: O.arange(lw, args, kwargs.get("dtype"), node))
_fn(hl.load)(lambda lw, fn, args, kwargs, node: _hl_load(lw, args, kwargs, node))
_fn(hl.store)(lambda lw, fn, args, kwargs, node: _hl_store(lw, args, kwargs, node, None))
_fn(hl.atomic_add, hl.atomic_max, hl.atomic_min, hl.atomic_and, hl.atomic_or, hl.atomic_xor, hl.atomic_xchg)(
    lambda lw, fn, args, kwargs, node: _hl_store(lw, args, kwargs, node, fn.__name__.split("_")[1]))

@_fn(hl.atomic_cas)
def _atomic_cas(lw, fn, args, kwargs, node):
    ref, index = args[0], args[1]
    expected = kwargs.get("expected", args[2] if len(args) > 2 else None)
    value = kwargs.get("value", args[3] if len(args) > 3 else None)
    idx = lw.make_index(ref, _index_vals(index), node)
    return lw.store(ref, idx, value, node, atomic="cas", sem=kwargs.get("sem", "relaxed"), compare=expected)

_fn(torch.isnan, torch.isinf, torch.isfinite)(lambda lw, fn, args, kwargs, node: _fp_class(lw, fn.__name__, args[0], node))
_fn(torch.permute)(lambda lw, fn, args, kwargs, node: O.permute(lw, args[0], list(args[1]), node))
_fn(torch.transpose)(lambda lw, fn, args, kwargs, node: method(lw, args[0], "transpose", args[1:], kwargs, node))
_fn(torch.reshape)(lambda lw, fn, args, kwargs, node: O.reshape(lw, args[0], [args[1]], node))
_fn(torch.unsqueeze)(lambda lw, fn, args, kwargs, node: O.unsqueeze(lw, args[0], args[1], node))
_fn(torch.squeeze)(lambda lw, fn, args, kwargs, node: O.squeeze(lw, args[0], args[1] if len(args) > 1 else None, node))
_fn(hl.cdiv)(lambda lw, fn, args, kwargs, node: O.binary(
    lw, "//", O.binary(lw, "+", args[0], O.binary(lw, "-", args[1], 1, node), node), args[1], node))
_fn(hl.specialize)(lambda lw, fn, args, kwargs, node: args[0])

@_fn(hl.constexpr)
def _constexpr(lw, fn, args, kwargs, node):
    """if hl.constexpr(bs < 64): a host value, decided per specialization."""
    if len(args) != 1 or isinstance(args[0], Value):
        raise lw.err(exc.NotSupported, "hl.constexpr(value) in device code takes one value known on the host "
                     "(sizes, block sizes, flags); a device value cannot decide code at compile time", node)
    return args[0].value if type(args[0]) is hl.constexpr else args[0]

_fn(builtins.abs)(lambda lw, fn, args, kwargs, node: O.unary(lw, "abs", args[0], node)
                  if args and isinstance(args[0], Value) else DECLINE)

@_fn(torch.lerp)
def _lerp(lw, fn, args, kwargs, node):
    """torch's two-sided form: exact at both ends."""
    a, b, w = args[0], args[1], args[2]
    d = O.binary(lw, "-", b, a, node)
    lo = O.binary(lw, "+", a, O.binary(lw, "*", w, d, node), node)
    hi = O.binary(lw, "-", b, O.binary(lw, "*", d, O.binary(lw, "-", 1, w, node), node), node)
    return O.where(lw, O.binary(lw, "<", w, 0.5, node), lo, hi, node)

_fn(torch.hypot)(lambda lw, fn, args, kwargs, node: O.unary(lw, "sqrt", O.binary(
    lw, "+", O.binary(lw, "*", args[0], args[0], node), O.binary(lw, "*", args[1], args[1], node), node), node))
_fn(builtins.min, builtins.max)(lambda lw, fn, args, kwargs, node: O.binary(
    lw, "minimum" if fn is builtins.min else "maximum", args[0], args[1], node) if len(args) == 2 else DECLINE)

def _hl_load(lw, args: list, kwargs: dict, node: ast.AST) -> Value:
    ref, index = args[0], args[1]
    idx = lw.make_index(ref, _index_vals(index), node, kwargs.get("extra_mask", args[2] if len(args) > 2 else None))
    return lw.load(ref, idx, node)

def _hl_store(lw, args: list, kwargs: dict, node: ast.AST, atomic: str | None) -> Any:
    ref, index, value = args[0], args[1], args[2]
    if atomic:  # hl.atomic_*(target, index, value, sem="relaxed")
        idx = lw.make_index(ref, _index_vals(index), node)
        return lw.store(ref, idx, value, node, atomic=atomic, sem=kwargs.get("sem", args[3] if len(args) > 3 else "relaxed"))
    idx = lw.make_index(ref, _index_vals(index), node, kwargs.get("extra_mask", args[3] if len(args) > 3 else None))
    return lw.store(ref, idx, value, node)

def _index_vals(index: Any) -> list:
    items = list(index) if isinstance(index, (list, tuple)) else [index]
    return [(None, slice(None)) if it is slice(None) or it == slice(None) else (object(), it) for it in items]
