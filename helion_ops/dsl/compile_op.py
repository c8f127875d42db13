"""torch.compile of user kernels: a traced kernel call is one custom op ``helion_ops_user::<kernel>_<n>`` per kernel
and argument kinds (tensors, ints, floats are its inputs; other values are baked in), CONTRACTS §4. Its fake runs
the host code on fake tensors, device loops skipped. Tensor arguments the kernel may write are declared mutated."""
from __future__ import annotations

import ast
import itertools
import weakref
from typing import Any, Callable

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from . import exc
from .language import _RUN, constexpr
from .lower import config_block

_OPS: dict = {}     # (kernel key, kinds) -> op name under torch.ops.helion_ops_user
_KERNELS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # kernel key -> Kernel
_SPECS: dict = {}   # op name -> (tuple?, per output: ("t", k) op output k, ("a", j) argument j, ("c", v))
_CHECKED: set = set()
_COUNT = itertools.count()
_RUNTIME = ("Tensor", "SymInt", "float")
_FRESH = {"empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like", "full_like", "new_empty",
          "new_zeros", "clone", "arange", "size", "stride", "numel", "dim", "shape", "dtype", "len", "cdiv"}

def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None

def _fresh(v: ast.AST) -> bool:
    f = v.func if isinstance(v, ast.Call) else v
    return isinstance(v, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp)) or \
        getattr(f, "attr", getattr(f, "id", None)) in _FRESH

def _writes(pk: Any) -> tuple[set[str], set[str]]:
    """(parameters the kernel may write, names device loops store into): subscript stores, hl.store and
    atomics, host in-place methods, ``+=`` and ``out=``, through any host name assigned from a parameter
    other than by allocation or arithmetic. Over-approximates: a needless mutation costs only a copy."""
    alias, host, stores = {}, set(), set()  # name -> names it may alias; names host code / device loops write
    for tree, dev in [(pk.tree, False)] + [(lp.node, True) for lp in pk.loops]:  # host code has launches for loops
        out = stores if dev else host
        for node in ast.walk(tree):
            pairs = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.NamedExpr)):
                v = node.iter if isinstance(node, ast.For) else node.value
                pairs = [(t, v) for t in getattr(node, "targets", [getattr(node, "target", None)])]
                if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and not dev:
                    host.add(node.target.id)
            elif isinstance(node, ast.Call):
                kind = getattr(pk.resolve(node.func), "_hl_device", "")
                if node.args and (kind == "store" or kind.startswith("atomic_")):
                    out.add(_root(node.args[0]))
                f = node.func
                if isinstance(f, ast.Attribute) and f.attr.endswith("_") and not f.attr.startswith("_") and not dev:
                    host.add(_root(f.value))
                host.update(_root(k.value) for k in node.keywords if k.arg == "out")
            while pairs:
                t, v = pairs.pop()
                if isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple) and len(t.elts) == len(v.elts):
                    pairs += zip(t.elts, v.elts)  # a, b = c, d
                    continue
                for s in ast.walk(t):
                    if isinstance(s, ast.Subscript) and isinstance(s.ctx, ast.Store):
                        out.add(_root(s))
                    elif isinstance(s, ast.Name) and not dev and v is not None and not _fresh(v):
                        alias.setdefault(s.id, set()).update(n.id for n in ast.walk(v) if isinstance(n, ast.Name))
    seen = host | stores
    while new := {m for n in seen for m in alias.get(n, ())} - seen:  # every name a written one may alias
        seen |= new
    a = pk.tree.args
    return {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs} & seen, stores

def _same(a: Any, b: Any) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and \
        StorageWeakRef(a.untyped_storage()).cdata == StorageWeakRef(b.untyped_storage()).cdata

class _FakeRun:
    """Host code's run context in a fake: the pinned Config's block sizes and tunables, else 32 and the
    fragment's default (the op checks once that the real outputs agree); launches only checked."""
    def __init__(self, kernel: Any, args: tuple, mutated: set[int], stores: set[str]) -> None:
        self.kernel, self.args, self.mutated, self.stores = kernel, args, mutated, stores
        self.config = kernel.configs[0] if kernel.configs else {}
    def block_size(self, bid: int, *bounds: Any) -> int: return config_block(self.config, bid) or 32
    def tunable(self, name: str, fragment: Any) -> Any:
        return self.config[name] if name in self.config else getattr(fragment, "default", lambda: fragment)()
    def launch(self, i: int, host_locals: dict) -> None:  # _writes missed no view of an argument
        for n in self.stores:
            if any(_same(host_locals.get(n), a) for j, a in enumerate(self.args) if j not in self.mutated):
                raise exc.NotSupported(f"{self.kernel.name}(): under torch.compile, the store into '{n}' writes an "
                                       f"argument through a view the kernel's code does not show")

def run_host(fn: Callable, ctx: Any, args: tuple) -> Any:
    tok = _RUN.set(ctx)
    try:
        return fn(*args)
    finally:
        _RUN.reset(tok)

def meta(args: tuple) -> tuple:
    return tuple(torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device="meta")
                 if isinstance(a, torch.Tensor) else a for a in args)

def _split(name: str, out: Any, args: tuple) -> tuple[list, list]:
    """(spec, the op's outputs): fresh tensors, else an empty placeholder (for an argument, a constant)."""
    spec, ts = [], []
    for o in (out if isinstance(out, tuple) else (out,)):
        j = next((j for j, a in enumerate(args) if a is o), None)
        k = next((k for k, t in enumerate(ts) if t is o), None)
        if isinstance(o, (torch.SymInt, torch.SymFloat, torch.SymBool)) or j is None and any(_same(o, a) for a in args):
            raise exc.NotSupported(f"{name}(): under torch.compile a kernel returns fresh tensors, its arguments "
                                   "or constants (not a view of an argument, nor a value of a symbolic size)")
        spec.append(("a", j) if j is not None else ("t", k if k is not None else len(ts))
                    if isinstance(o, torch.Tensor) else ("c", o))
        new = isinstance(o, torch.Tensor) and j is None and k is None
        ts.append(o if new else next(a for a in args if isinstance(a, torch.Tensor)).new_empty(0))
    return spec, ts

def register(kernel: Any) -> str:
    """A string key naming ``kernel``: torch 2.11's Dynamo refuses the Kernel itself in assume_constant_result."""
    _KERNELS[key := f"{kernel.name}#{next(_COUNT)}"] = kernel
    return key

@torch._dynamo.assume_constant_result
def _op_for(key: str, kinds: tuple) -> str:
    if (key, kinds) in _OPS:
        return _OPS[key, kinds]
    kernel = _KERNELS[key]
    written, stores = _writes(kernel.parsed)
    names = list(kernel.signature.parameters)
    mutated = {j for j, k in enumerate(kinds) if k == "Tensor" and names[j] in written}
    # The op's output count is fixed: the longest `return a, b, ...` (a mutating op cannot return a list).
    n = max([len(r.value.elts) if isinstance(r.value, ast.Tuple) else 1
             for r in ast.walk(kernel.parsed.tree) if isinstance(r, ast.Return)] or [1])
    name = f"{kernel.name}_{next(_COUNT)}"
    def run(flat: tuple, fake: bool) -> Any:
        it = iter(flat)
        args = tuple(next(it) if k in _RUNTIME else k[1] for k in kinds)
        out = run_host(kernel.parsed.host_fn, _FakeRun(kernel, args, mutated, stores), args) if fake else kernel(*args)
        if (len(out) if isinstance(out, tuple) else 1) != n:
            raise exc.NotSupported(f"{kernel.name}(): under torch.compile a kernel returns a value or a tuple "
                                   f"written out (return a, b), of one length on every path")
        spec, ts = _split(kernel.name, out, args)
        key = (name, tuple((a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else
                           float if isinstance(a, float) else a for a in args))
        if fake:
            _SPECS[name] = (isinstance(out, tuple), tuple(spec))
        elif key not in _CHECKED:  # block sizes the fake could not know must not change the outputs
            m = meta(args)
            want = _split(kernel.name, run_host(kernel.parsed.host_fn, _FakeRun(kernel, m, mutated, stores), m), m)[1]
            if [(t.shape, t.stride(), t.dtype) for t in want] != [(t.shape, t.stride(), t.dtype) for t in ts]:
                raise exc.NotSupported(f"{kernel.name}(): under torch.compile a kernel's output shapes may not "
                                       "depend on block sizes it chooses; pin a config (@kernel(config=...))")
            _CHECKED.add(key)
        return ts[0] if n == 1 else tuple(ts)
    schema = ", ".join(f"Tensor(a{j}!) a{j}" if j in mutated else f"{k} a{j}"
                       for j, k in enumerate(kinds) if k in _RUNTIME)
    op = torch.library.custom_op(f"helion_ops_user::{name}", lambda *f: run(f, False),
                                 mutates_args=[f"a{j}" for j in sorted(mutated)],
                                 schema=f"({schema}) -> " + ("Tensor" if n == 1 else f"({', '.join(['Tensor'] * n)})"))
    op.register_fake(lambda *f: run(f, True))
    _OPS[key, kinds] = name
    return name

@torch._dynamo.assume_constant_result
def _spec(name: str) -> tuple: return _SPECS[name]

def call(kernel: Any, args: tuple, kwargs: dict) -> Any:
    """``kernel(*args, **kwargs)`` as traced by torch.compile: one call of its op."""
    # kernel.param_defaults: a plain tuple Dynamo reads as a constant (an inspect.Signature it cannot)
    args = list(args) + [kwargs[n] if n in kwargs else d for n, d in kernel.param_defaults[len(args):]]
    args = [a.value if isinstance(a, constexpr) else a for a in args]
    kinds = tuple("Tensor" if isinstance(a, torch.Tensor) else "float" if isinstance(a, (float, torch.SymFloat))
                  else "SymInt" if isinstance(a, (int, torch.SymInt)) and not isinstance(a, bool) else ("c", a)
                  for a in args)
    name = _op_for(kernel.op_key, kinds)
    res = getattr(torch.ops.helion_ops_user, name).default(*[a for a, k in zip(args, kinds) if k in _RUNTIME])
    tup, spec = _spec(name)
    res = res if len(spec) > 1 else (res,)
    out = tuple(res[v] if k == "t" else args[v] if k == "a" else v for k, v in spec)
    return out if tup else out[0]
