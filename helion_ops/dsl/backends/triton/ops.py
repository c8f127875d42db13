"""Triton backend: the code of each IR op declared in ``opdefs.OPS`` (``EMIT``: op name -> f(emitter, value), the
Triton expression; prefix statements go out through ``em.line`` first), with the tables it reads."""
from __future__ import annotations

import textwrap
from typing import Callable

import torch

from ... import exc, ir as I
from ...types import tl_dtype

# torch's maximum/minimum/amax/relu/clamp propagate NaN; Triton's defaults return the other operand.
NAN = ", propagate_nan=tl.PropagateNan.ALL"

# NaN-propagating combines for float max/min reductions (returning their operands' type: Triton's bf16 max is fp32).
NAN_REDUCE_HELPERS = {op: f"@triton.jit\ndef _hl_{op}_nan(a, b):\n    return tl.{fn}(a, b{NAN}).to(a.dtype)\n\n\n"
                      for op, fn in (("max", "maximum"), ("min", "minimum"))}

UNARY_CODE = {
    **{f: f"tl.{f}({{0}})" for f in "exp exp2 log log2 sqrt rsqrt sigmoid abs sin cos erf floor ceil".split()},
    "tanh": "(2 * tl.sigmoid(2 * {0}) - 1)", "relu": "tl.maximum({0}, 0)", "neg": "(-{0})",
    "log1p": "tl.log(1 + {0})", "expm1": "(tl.exp({0}) - 1)",
    "reciprocal": "(1 / {0})", "square": "({0} * {0})", "not": "({0} == 0)", "invert": "(~{0})",
    "silu": "({0} * tl.sigmoid({0}))", "gelu": "({0} * 0.5 * (1 + tl.erf({0} * 0.7071067811865476)))",
    "gelu_tanh": "({0} * tl.sigmoid(1.5957691216057308 * ({0} + 0.044715 * {0} * {0} * {0})))",
    "softplus": "tl.where({0} > 20, {0}, tl.log(1 + tl.exp(tl.minimum({0}, 20))))",
    "isnan": "({0} != {0})", "isinf": "(tl.abs({0}) == float('inf'))",
    "trunc": "tl.where({0} < 0, tl.ceil({0}), tl.floor({0}))",
    # torch.sign is (x > 0) - (x < 0), ints and floats alike (so NaN gives 0, as torch's does).
    "sign": "(({0} > 0).to({0}.dtype) - ({0} < 0).to({0}.dtype))",
    # torch.round rounds half to even: x - floor(x) is exact, so the tie test is too.
    "round": "(tl.floor({0}) + (({0} - tl.floor({0}) > 0.5) | (({0} - tl.floor({0}) == 0.5) & "
             "(tl.floor({0}) - 2 * tl.floor(tl.floor({0}) * 0.5) != 0))).to({0}.dtype))",
}
# Float forms that differ: relu(nan) and softplus(nan) are nan in torch.
UNARY_FLOAT_CODE = {"relu": "tl.maximum({0}, 0" + NAN + ")",
                    "softplus": "tl.where({0} > 20, {0}, tl.log(1 + tl.exp(tl.minimum({0}, 20" + NAN + "))))"}
REDUCE_FN = {"sum": "tl.sum", "max": "tl.max", "min": "tl.min"}
NEUTRAL = {"sum": "0", "max": "float('-inf')", "min": "float('inf')"}
INT_NEUTRAL = {"sum": "0", "max": "-2147483648", "min": "2147483647"}

def _lit(x, floating: bool = False) -> str:
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return f"float('{x}')"
    if floating and isinstance(x, int) and not isinstance(x, bool):
        return repr(float(x))  # an int literal would make Triton compute in int32 (2 ** y)
    return repr(x)

def _binary(em, v: I.Value) -> str:
    x, y, o = em.name_of(v.args[0]), em.name_of(v.args[1]), v.attrs["op"]
    if o in ("maximum", "minimum"):
        return f"tl.{o}({x}, {y}{NAN if v.type.dtype.is_floating_point else ''})"
    if o == "**":
        return em.pow(x, y, v)
    if o == "fmod":  # torch.fmod truncates like C, which is Triton's own % for ints and floats
        return f"({x} % {y})"
    if o in ("//", "%"):
        return em.floor_divmod(o, x, y, v)
    return f"({x} {o} {y})"

def _powi(em, v: I.Value) -> str:
    x, e = em.name_of(v.args[0]), v.attrs["exponent"]
    if e == 0.5:
        return f"tl.sqrt({x})"
    if e == 0:
        return f"tl.full({em.shape(v.type)}, 1, {tl_dtype(v.type.dtype)})"
    prod = " * ".join([x] * abs(e))
    return f"(1 / ({prod}))" if e < 0 else f"({prod})"

def _unary(em, v: I.Value) -> str:
    o = v.attrs["op"]
    code = UNARY_FLOAT_CODE.get(o) if v.type.dtype.is_floating_point else None
    return (code or UNARY_CODE[o]).format(em.name_of(v.args[0]))

def _full(em, v: I.Value) -> str:
    val = v.args[0]
    if isinstance(val, I.Value):
        return f"tl.full({em.shape(v.type)}, 0, {tl_dtype(v.type.dtype)}) + {em.name_of(val)}"
    lit = _lit(val, v.type.dtype.is_floating_point) if not isinstance(val, bool) else repr(int(val))
    return f"tl.full({em.shape(v.type)}, {lit}, {tl_dtype(v.type.dtype)})"

def _arange(em, v: I.Value) -> str:
    if "block" in v.attrs:  # lanes of a registered block size (its id)
        return f"tl.arange(0, {em.d.blocks[v.attrs['block']]})"
    return f"({v.args[0]} + {v.attrs['rdim'].index})" if v.args[0] else v.attrs["rdim"].index

def _reshape(em, v: I.Value) -> str:
    x = v.args[0]
    if not x.type.dims and v.type.dims:  # a scalar to [1, ...]: tl.reshape wants a block
        op = "|" if v.type.dtype == torch.bool else "+"  # (bool blocks have no +)
        return f"(tl.zeros({em.shape(v.type)}, {tl_dtype(v.type.dtype)}) {op} {em.name_of(x)})"
    return f"tl.reshape({em.name_of(x)}, {em.shape(v.type)})"

def _argmax(em, v: I.Value) -> str:
    x, axis, keep, kind = v.args[0], v.attrs["axis"], v.attrs["keepdim"], "min" if v.attrs["is_min"] else "max"
    inp = em.masked(x, axis, (NEUTRAL if x.type.dtype.is_floating_point else INT_NEUTRAL)[kind], False)
    fn = f"tl.arg{kind}"
    if not x.type.dtype.is_floating_point:
        return f"{fn}({inp}, {axis}, keep_dims={keep})"
    # torch takes NaN as the extreme (its first NaN wins, as its max/min propagate NaN); Triton's
    # argmax/argmin compare with max.f32 and skip NaN on the GPU: the first NaN's index where a row has one
    vals, nan = em.fresh("arg_in"), em.fresh("arg_nan")
    em.line(f"{vals} = {inp}", f"{nan} = ({vals} != {vals}).to(tl.int32)")
    return (f"tl.where(tl.max({nan}, {axis}, keep_dims={keep}) > 0, tl.argmax({nan}, {axis}, keep_dims={keep}), "
            f"{fn}({vals}, {axis}, keep_dims={keep}))")

def _combine(em, v: I.Value) -> str:
    axis, reduce = v.attrs["axis"], v.attrs["kind"] == "reduce"
    ins = ([em.masked(x, axis, em.name_of(o) if isinstance(o, I.Value) else _lit(o), False)
            for x, o in zip(v.args, v.attrs["other"])] if reduce else [em.name_of(x) for x in v.args])
    tup = f"({', '.join(ins)},)" if v.attrs["multi"] else ins[0]
    return (f"tl.reduce({tup}, {axis}, {v.attrs['fn']}, keep_dims={v.attrs['keepdim']})" if reduce else
            f"tl.associative_scan({tup}, {axis}, {v.attrs['fn']}, reverse={v.attrs['reverse']})")

def _scan(em, v: I.Value) -> str:
    op, axis, rev, x = v.attrs["op"], v.attrs["axis"], v.attrs.get("reverse", False), v.args[0]
    # forward scans never read the masked tail into valid lanes; reverse scans do
    inp = em.masked(x, axis, "1" if op == "prod" else "0", False) if rev else em.name_of(x)
    return f"tl.cum{op}({inp}, axis={axis}" + (", reverse=True)" if rev else ")")

def _rand(em, v: I.Value) -> str:
    """Philox counter = the element's linear index in the full (unpadded) index space."""
    dims, offs = v.type.dims, "0"
    for k, d in enumerate(dims):
        if d.kind == "tile":
            t = em.d.tiles[d.id]
            if t.static_len is None:
                raise exc.NotSupported("hl.rand over a tile whose extent is not known at compile time", v.loc)
            term, ext = (t.offset if t.is_grid else em.bcast(t.indices, k, len(dims))), t.static_len
        elif d.kind == "rdim":
            term, ext = em.bcast(em.d.rdims[d.id].index, k, len(dims)), em.d.rdims[d.id].extent
        else:
            continue
        offs = term if offs == "0" else f"({offs}) * {ext} + {term}"
    shape = em.shape(v.type)
    offs = (f"tl.zeros({shape}, tl.int32)" if offs == "0" or all(d.kind == "one" for d in dims)
            else f"tl.broadcast_to({offs}, {shape})")
    return f"tl.{'randn' if v.attrs.get('normal') else 'rand'}({em.name_of(v.args[0])}, {offs})"

def _inline_triton(em, v: I.Value) -> str:
    it = iter(v.args)
    subs = [em.name_of(next(it)) if k == "value" else str(val) for k, val in zip(v.attrs["kinds"], v.attrs["lits"])]
    src = textwrap.dedent(v.attrs["source"]).strip()
    try:
        text = src.format(**dict(zip(v.attrs["keys"], subs))) if v.attrs["named"] else src.format(*subs)
    except (IndexError, KeyError, ValueError) as e:
        raise exc.CompileError(f"hl.inline_triton: cannot format the source: {e}", v.loc) from None
    *body, last = text.splitlines()
    em.src(v.loc)
    em.line(*body)
    if v.attrs.get("effect"):
        em.line(last.strip())
        return "None"
    return f"({last.strip()})"

def _inline_asm(em, v: I.Value) -> str:
    # Each argument is broadcast to the output's shape first: the op itself takes same-shape blocks.
    args = [em.name_of(a) if a.type.dims == v.type.dims else f"tl.broadcast_to({em.name_of(a)}, {em.shape(v.type)})"
            for a in v.args]
    dts = [tl_dtype(d) for d in v.attrs["dtypes"]]
    dt = dts[0] if len(dts) == 1 else "(" + ", ".join(dts) + ",)"
    return (f"tl.inline_asm_elementwise({v.attrs['asm']!r}, {v.attrs['constraints']!r}, [{', '.join(args)}], "
            f"dtype={dt}, is_pure={v.attrs['is_pure']}, pack={v.attrs['pack']})")

def _call(fn: str) -> Callable[..., str]:  # the op as fn(operands...)
    return lambda em, v: f"{fn}({', '.join(em.name_of(a) for a in v.args)})"

EMIT: dict[str, Callable[..., str]] = {
    "const": lambda em, v: _lit(v.args[0], v.type.dtype.is_floating_point), "param": lambda em, v: v.args[0],
    "tile_attr": lambda em, v: em.tile_attr(v.args[0], v.attrs["attr"]), "load": lambda em, v: em.load(v.args[0], v),
    "binary": _binary, "powi": _powi, "unary": _unary, "full": _full, "arange": _arange, "reshape": _reshape,
    "cast": lambda em, v: f"{em.name_of(v.args[0])}.to({tl_dtype(v.type.dtype)})", "where": _call("tl.where"),
    "reduce": lambda em, v: em.reduce(v), "dot": lambda em, v: em.dot(v),
    "view": lambda em, v: em.name_of(v.args[0]) + "[" + ", ".join(":" if a else "None" for a in v.attrs["axes"]) + "]",
    "permute": lambda em, v: (f"tl.trans({em.name_of(v.args[0])})" if v.attrs["perm"] == [1, 0]
                              else f"tl.permute({em.name_of(v.args[0])}, {v.attrs['perm']})"),
    "broadcast_to": lambda em, v: f"tl.broadcast_to({em.name_of(v.args[0])}, {em.shape(v.type)})",
    "argmax": _argmax, "combine": _combine, "scan": _scan, "rand": _rand, "rand4x": _call("tl.rand4x"),
    "getitem": lambda em, v: f"{em.name_of(v.args[0])}[{v.attrs['index']}]",
    "inline_triton": _inline_triton, "inline_asm": _inline_asm, "split": _call("tl.split"), "join": _call("tl.join"),
    "gather": lambda em, v: f"tl.gather({em.name_of(v.args[0])}, {em.name_of(v.args[1])}, {v.attrs['axis']})",
}
