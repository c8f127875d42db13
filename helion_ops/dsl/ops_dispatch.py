"""Dispatch of device-code calls and methods to their lowering rules (``opdefs.rule``), and the rules mapping torch's
functions and block methods onto the handlers in ops.py and ops_extra.py."""
from __future__ import annotations

import ast
import builtins
import collections
import math
from typing import Any

import torch
import torch.nn.functional as F

from . import exc, language as hl, ops as O, ops_extra as X
from .ir import Value
from .opdefs import CALLS, DECLINE, METHODS, rule
from .types import BlockT, TensorRef, TileVar

def method(lw, base: Any, name: str, args: list, kwargs: dict, node: ast.AST) -> Any:
    if isinstance(base, TensorRef) and not name.startswith("new_"):
        a = base.arg
        known = {"size": torch.Size(a.sizes), "stride": tuple(a.strides), "dim": a.ndim, "ndimension": a.ndim,
                 "numel": math.prod(a.sizes)}
        if name not in known:
            raise lw.err(exc.NotSupported, f"host tensor method .{name}() in device code", node)
        return known[name][args[0]] if args and name in ("size", "stride") else known[name]
    base = O.attribute(lw, base, "index", node) if isinstance(base, TileVar) else base
    fn = METHODS.get(name)
    if fn is None:
        hint = "; a loaded element is already a device scalar: drop .item()" if name == "item" else ""
        raise lw.err(exc.NotSupported, f"method .{name}() is not supported on device blocks{hint}", node)
    return fn(lw, node, name, base, *args, **kwargs)

def call(lw, fn: Any, args: list, kwargs: dict, node: ast.AST) -> Any:
    impl = CALLS.get(fn) if type(fn).__hash__ else None  # (an unhashable callable has no rule)
    r = impl(lw, node, fn.__name__, *args, **kwargs) if impl else DECLINE
    if r is not DECLINE:
        return r
    host = not any(isinstance(a, Value) for a in args)
    if host and (fn in (int, float, len, abs, range, tuple, list) or getattr(fn, "__module__", None) == "math"):
        return fn(*args, **kwargs)  # host values: plain Python
    if fn is float and args and isinstance(args[0], Value):
        return O.cast(lw, args[0], torch.float32, node)
    if fn in (hl.tile, hl.grid):
        raise lw.err(exc.NotSupported, f"hl.{fn.__name__} outside a for statement", node)
    if getattr(fn, "_hl_device", None):
        raise lw.err(exc.NotSupported, f"hl.{fn._hl_device} is not supported by helion_ops.dsl yet", node)
    name, mod = getattr(fn, "__qualname__", None) or repr(fn), getattr(fn, "__module__", "") or ""
    hint = {builtins.print: "; use hl.device_print(prefix, *values)",
            torch.tensor: "; use a Python number or hl.full(shape, value, dtype)"}.get(fn, "")
    raise lw.err(exc.NotSupported, f"unsupported function {mod + '.' if mod else ''}{name} in device code{hint}", node)

# Rules: rule(lw, node, name, *args, **kwargs) with a torch-like signature; a method's block is its first argument,
# so a torch function and its method share one rule. Unused torch keywords (device=, out=, ...) are ignored.
_CASTS = {"float": torch.float32, "half": torch.float16, "bfloat16": torch.bfloat16, "double": torch.float64,
          "int": torch.int32, "long": torch.int64, "bool": torch.bool}
_UNARY = ("exp exp2 log log2 sqrt rsqrt sigmoid tanh relu abs neg sin cos erf floor ceil log1p expm1 reciprocal "
          "square logical_not isnan isinf trunc sign round").split()
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "remainder": "%", "eq": "==", "ne": "!=",
           "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "logical_and": "&", "logical_or": "|", "bitwise_and": "&",
           "bitwise_or": "|", "bitwise_xor": "^", **{n: n for n in ("maximum", "minimum", "fmod")}}
_REDUCE = {"amax": "max", "amin": "min", **{n: n for n in ("sum", "mean", "var", "std", "prod", "all", "any")}}

rule("to")(lambda lw, node, name, v, dtype=None, *_, **__: v if dtype is None or isinstance(dtype, torch.device)
           else O.cast(lw, v, dtype, node))
rule(*_CASTS)(lambda lw, node, name, v, **_: O.cast(lw, v, _CASTS[name], node))
rule("type_as")(lambda lw, node, name, v, other: O.cast(lw, v, other.type.dtype, node))
rule(*[getattr(torch, n) for n in _UNARY], *_UNARY, F.relu, F.silu, F.sigmoid, F.tanh, F.softplus)(
    lambda lw, node, name, x, **_: O.unary(lw, name, x, node))
rule(F.gelu)(lambda lw, node, name, x, approximate="none", **_: O.unary(
    lw, "gelu_tanh" if approximate == "tanh" else "gelu", x, node))
rule(*[getattr(torch, n) for n in _BINARY], *_BINARY)(
    lambda lw, node, name, a, b, **_: O.binary(lw, _BINARY[name], a, b, node))

_MinMax = collections.namedtuple("_MinMax", ["values", "indices"])
_ELEMENTWISE = {"max": "maximum", "min": "minimum"}

@rule(*[getattr(torch, n) for n in _REDUCE], *_REDUCE, torch.max, torch.min, "max", "min")
def _reduce(lw, node, name, x, dim=None, keepdim=False, *, axis=None, dtype=None, correction=None, unbiased=True,
            **_):
    if name in _ELEMENTWISE and isinstance(dim, (Value, float)) and not isinstance(dim, bool):  # torch.max(a, b)
        return O.binary(lw, _ELEMENTWISE[name], x, dim, node)
    kind, dim = _REDUCE.get(name, name), dim if axis is None else axis
    if dtype is not None and kind not in ("sum", "prod", "mean"):
        raise lw.err(exc.NotSupported, f"dtype= of a {kind} reduction (torch takes it for sum, prod and mean)", node)
    if name in _ELEMENTWISE and dim is not None:  # (values, indices), as torch
        return _MinMax(X.reduce(lw, name, x, dim, keepdim, node), X.argmax(lw, node, "arg" + name, x, dim, keepdim))
    correction = (0 if unbiased is False else 1) if correction is None else correction
    return X.reduce(lw, kind, x, dim, keepdim, node, correction=correction, dtype=dtype)

rule(torch.var_mean)(lambda lw, node, name, x, dim=None, **kw: (
    _reduce(lw, node, "var", x, dim, **kw), _reduce(lw, node, "mean", x, dim, kw.get("keepdim", False))))
rule("count_nonzero")(lambda lw, node, name, v, dim=None: X.reduce(lw, "sum", O.binary(lw, "!=", v, 0, node), dim,
                                                                   False, node))
rule("nansum")(lambda lw, node, name, v, *a, **kw: _reduce(
    lw, node, "sum", O.where(lw, O.unary(lw, "isnan", v, node), 0, v, node), *a, **kw))

@rule(torch.softmax, F.softmax, torch.log_softmax, F.log_softmax, "softmax", "log_softmax")
def _softmax(lw, node, name, v, dim=None, *_, dtype=None, **__):
    v = lw.as_value(v, node)
    x = O.cast(lw, v, torch.float32, node) if v.type.dtype != torch.float64 else v
    shifted = O.binary(lw, "-", x, X.reduce(lw, "max", x, dim, True, node), node)
    e = O.unary(lw, "exp", shifted, node)
    s = X.reduce(lw, "sum", e, dim, True, node)
    out = (O.binary(lw, "-", shifted, O.unary(lw, "log", s, node), node) if name == "log_softmax"
           else O.binary(lw, "/", e, s, node))
    return O.cast(lw, out, dtype or v.type.dtype, node)

@rule(torch.clamp, torch.clip, "clamp", "clip", "clamp_min", "clamp_max")
def _clamp(lw, node, name, v, min=None, max=None, **_):
    v = lw.as_value(v, node)
    lo, hi = (None, min if max is None else max) if name == "clamp_max" else (min, max)
    for op, bound in (("maximum", lo), ("minimum", hi)):
        v = v if bound is None else O.binary(lw, op, v, bound, node)
    return v

rule(torch.permute, "permute")(lambda lw, node, name, v, *perm: O.permute(lw, v, O.shape_list(perm), node))

@rule(torch.transpose, torch.swapaxes, "transpose", "swapaxes")
def _transpose(lw, node, name, v, i, j):
    perm, n = list(range(v.type.ndim)), v.type.ndim
    perm[i % n], perm[j % n] = j % n, i % n
    return O.permute(lw, v, perm, node)

rule("t")(lambda lw, node, name, v: O.permute(lw, v, [1, 0], node))
rule(torch.reshape, "reshape", "view")(lambda lw, node, name, v, *shape: O.reshape(lw, v, shape, node))
rule(torch.unsqueeze, "unsqueeze")(lambda lw, node, name, v, dim: O.unsqueeze(lw, v, dim, node))
rule(torch.squeeze, "squeeze")(lambda lw, node, name, v, dim=None: O.squeeze(lw, v, dim, node))

rule("expand", "broadcast_to")(lambda lw, node, name, v, *shape: O.expand(
    lw, v, v.type.dims if -1 in O.shape_list(shape) else O.shape_dims(lw, O.shape_list(shape), node), node))
rule("expand_as")(lambda lw, node, name, v, other: O.expand(lw, v, other.type.dims, node))
rule("contiguous", "clone", "detach")(lambda lw, node, name, v, *_, **__: v)

_FILL = {"zeros": 0, "ones": 1, "empty": 0}

@rule("new_zeros", "new_ones", "new_full", "new_empty")
def _new_block(lw, node, name, v, size, fill_value=None, *, dtype=None, **_):  # of v's (or a host tensor's) dtype
    like = v.arg.dtype if isinstance(v, TensorRef) else v.type.dtype
    return O.full(lw, size, _FILL.get(name[4:], fill_value), dtype or like, node)

rule("where")(lambda lw, node, name, v, cond, other: O.where(lw, cond, v, other, node))
rule(torch.where)(lambda lw, node, name, cond, a, b: O.where(lw, cond, a, b, node))
rule("masked_fill")(lambda lw, node, name, v, mask, value: O.where(lw, mask, value, v, node))

rule("size")(lambda lw, node, name, v, dim=None: O.attribute(lw, v, "shape", node)[slice(None) if dim is None else dim])
rule("dim", "ndimension")(lambda lw, node, name, v: v.type.ndim)
rule(torch.matmul, torch.mm, torch.bmm, "matmul", "mm", "bmm", "__matmul__")(  # out_dtype: accumulated and returned in
    lambda lw, node, name, a, b, out_dtype=None, **_: O.dot(lw, a, b, None, node, True, out_dtype))

@rule(torch.isfinite, "isfinite")
def _isfinite(lw, node, name, v):
    """From comparisons: NaN is the only value unequal to itself; integers are always finite."""
    v = lw.as_value(v, node)
    if not v.type.dtype.is_floating_point:
        return O.binary(lw, "==", v, v, node)
    big = O.binary(lw, "==", O.unary(lw, "abs", v, node), float("inf"), node)
    return O.binary(lw, "&", O.binary(lw, "==", v, v, node), O.unary(lw, "not", big, node), node)

def _fp32(lw, x: Value, node: ast.AST) -> Value:
    """fp16/bf16 ``x`` in fp32 (a reduction's accumulation type, as torch's); other dtypes as they are."""
    return O.cast(lw, x, torch.float32, node) if x.type.dtype in (torch.float16, torch.bfloat16) else x

@rule(torch.norm, torch.linalg.vector_norm)
def _vector_norm(lw, node, name, x, p=2, dim=None, keepdim=False, **kw):
    """p = 2 or 1 as int literals (a float such as inf is a runtime argument: it cannot pick the code)."""
    x, pname = lw.as_value(x, node), "p" if name == "norm" else "ord"
    p = kw.get(pname, p)
    if isinstance(p, Value) or p not in (1, 2, "fro"):
        raise lw.err(exc.NotSupported, f"a vector norm in device code takes {pname}=1 or 2 as an int literal; "
                     "for inf use x.abs().amax(dim)", node)
    xf = _fp32(lw, x, node)
    r = (X.reduce(lw, "sum", O.unary(lw, "abs", xf, node), dim, keepdim, node) if p == 1 else
         O.unary(lw, "sqrt", X.reduce(lw, "sum", O.binary(lw, "*", xf, xf, node), dim, keepdim, node), node))
    return O.cast(lw, r, x.type.dtype, node)

@rule(torch.logsumexp)
def _logsumexp(lw, node, name, x, dim, keepdim=False):
    """Max-shifted; a row whose max is -inf (all -inf) gives -inf, as torch."""
    xf = _fp32(lw, x := lw.as_value(x, node), node)
    m = X.reduce(lw, "max", xf, dim, True, node)
    m = O.where(lw, O.unary(lw, "isinf", m, node), 0.0, m, node)
    s = X.reduce(lw, "sum", O.unary(lw, "exp", O.binary(lw, "-", xf, m, node), node), dim, True, node)
    r = O.binary(lw, "+", O.unary(lw, "log", s, node), m, node)
    return O.cast(lw, r if keepdim else O.squeeze(lw, r, dim, node), x.type.dtype, node)

@rule(torch.addmm, torch.baddbmm)
def _addmm(lw, node, name, acc, a, b, *, beta=1, alpha=1, **_):
    if alpha == 1 and beta == 1:
        return O.dot(lw, a, b, acc, node)
    prod = O.binary(lw, "*", O.dot(lw, a, b, None, node), alpha, node)
    return O.cast(lw, O.binary(lw, "+", O.binary(lw, "*", acc, beta, node), prod, node),
                  lw.as_value(acc, node).type.dtype, node)

rule(hl.dot)(lambda lw, node, name, a, b, acc=None, out_dtype=None: O.dot(lw, a, b, acc, node, out_dtype=out_dtype))
rule(hl.zeros)(lambda lw, node, name, shape, dtype=torch.float32, **_: O.full(lw, shape, 0, dtype, node))
rule(hl.full)(lambda lw, node, name, shape, value, dtype=torch.float32, **_: O.full(lw, shape, value, dtype, node))

@rule(torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like)
def _full_like(lw, node, name, x, value=None, dtype=None, **_):
    x = lw.as_value(x, node)
    return lw.emit("full", [_FILL.get(name[:-5], value)], BlockT(x.type.dims, dtype or x.type.dtype), node)

@rule(torch.zeros, torch.ones, torch.full, torch.empty)
def _torch_full(lw, node, name, *args, dtype=torch.float32, fill_value=None, **_):
    shape = args[0] if args and isinstance(args[0], (list, tuple)) else [a for a in args if not isinstance(a, float)]
    return O.full(lw, shape, _FILL.get(name, args[1] if len(args) > 1 else fill_value), dtype, node)

def _index(lw, ref: Any, index: Any, node: ast.AST, extra_mask: Any = None) -> Any:
    items = list(index) if isinstance(index, (list, tuple)) else [index]
    return lw.make_index(ref, [(None, slice(None)) if it is slice(None) or it == slice(None) else (object(), it)
                               for it in items], node, extra_mask)

rule(hl.arange)(lambda lw, node, name, *args, dtype=None, **_: O.arange(lw, list(args), dtype, node))
rule(hl.load)(lambda lw, node, name, ref, index, extra_mask=None, **_: lw.load(
    ref, _index(lw, ref, index, node, extra_mask), node))
rule(hl.store)(lambda lw, node, name, ref, index, value, extra_mask=None: lw.store(
    ref, _index(lw, ref, index, node, extra_mask), value, node))
rule(hl.atomic_add, hl.atomic_max, hl.atomic_min, hl.atomic_and, hl.atomic_or, hl.atomic_xor, hl.atomic_xchg)(
    lambda lw, node, name, ref, index, value, sem="relaxed": lw.store(
        ref, _index(lw, ref, index, node), value, node, atomic=name.split("_")[1], sem=sem))
rule(hl.atomic_cas)(lambda lw, node, name, ref, index, expected=None, value=None, sem="relaxed": lw.store(
    ref, _index(lw, ref, index, node), value, node, atomic="cas", sem=sem, compare=expected))
rule(hl.cdiv)(lambda lw, node, name, a, b: O.binary(
    lw, "//", O.binary(lw, "+", a, O.binary(lw, "-", b, 1, node), node), b, node))
rule(hl.specialize)(lambda lw, node, name, x: x)

@rule(hl.constexpr)
def _constexpr(lw, node, name, *args):
    """if hl.constexpr(bs < 64): a host value, decided per specialization."""
    if len(args) != 1 or isinstance(args[0], Value):
        raise lw.err(exc.NotSupported, "hl.constexpr(value) in device code takes one value known on the host "
                     "(sizes, block sizes, flags); a device value cannot decide code at compile time", node)
    return args[0].value if type(args[0]) is hl.constexpr else args[0]

rule(builtins.slice)(lambda lw, node, name, *args: slice(*args))  # a whole dim in hl.store / hl.atomic_* indices
rule(builtins.abs)(lambda lw, node, name, *args: O.unary(lw, "abs", args[0], node)
                   if args and isinstance(args[0], Value) else DECLINE)

@rule(torch.lerp)
def _lerp(lw, node, name, a, b, w):
    """torch's two-sided form: exact at both ends."""
    d = O.binary(lw, "-", b, a, node)
    lo = O.binary(lw, "+", a, O.binary(lw, "*", w, d, node), node)
    hi = O.binary(lw, "-", b, O.binary(lw, "*", d, O.binary(lw, "-", 1, w, node), node), node)
    return O.where(lw, O.binary(lw, "<", w, 0.5, node), lo, hi, node)

rule(torch.hypot)(lambda lw, node, name, a, b: O.unary(lw, "sqrt", O.binary(
    lw, "+", O.binary(lw, "*", a, a, node), O.binary(lw, "*", b, b, node), node), node))
rule(builtins.min, builtins.max)(lambda lw, node, name, *args, **_: O.binary(
    lw, _ELEMENTWISE[name], args[0], args[1], node) if len(args) == 2 else DECLINE)
