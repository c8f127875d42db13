"""The compiler's stages in order (``runtime.BoundKernel`` caches each product): ``frontend.parse`` per kernel;
``hoist_plan`` per device loop (the host values it reads); ``lower`` per specialization of a loop, for every
Config (typed DeviceIR); ``passes.PIPELINE`` and ``backends.<name>.generate`` per Config and Target (``generate``)."""
from __future__ import annotations

import ast
import types
from typing import Any

import torch

from . import language as hl, lower as lower_mod, passes
from .backends import BACKENDS
from .frontend import DeviceLoop, ParsedKernel
from .inline import CLOSURE_SLOTS
from .plan import planning
from .target import Target

LOWERINGS = [0]  # device loops lowered in this process (a test counts them)
_RANDOM_FNS = (torch.rand_like, torch.rand, torch.randn_like, torch.randn)

def lower(pk: ParsedKernel, index: int, inputs: dict, hoisted: dict, config: Any):
    LOWERINGS[0] += 1
    return lower_mod.lower(pk, pk.loops[index], inputs, hoisted, config, f"_{pk.name}_kernel{index}")

def generate(pk: ParsedKernel, ir: Any, index: int, config: Any, target: Target, layout: passes.Layout,
             backend: str = "triton") -> Any:
    """The per-Config passes and a backend's codegen of one lowered device loop, under a fresh Plan."""
    ordinal = sum(1 for a in (lp.node.iter.args for lp in pk.loops[:index])  # earlier loops of 2+ dims
                  if a and isinstance(a[-1], (ast.List, ast.Tuple)) and len(a[-1].elts) >= 2)
    with planning():
        passes.run(ir, config, layout)
        return BACKENDS[backend].generate(ir, config, target, pk.file, ir.name, ordinal, index)

def hoist_plan(pk: ParsedKernel, loop: DeviceLoop, host_locals: dict) -> tuple:
    """Which host values a device loop needs: names it reads, and maximal host-only subexpressions (``x.size(0)``,
    ``n * 2``) evaluated per call. Returns (names, code objects, hoisted ids, {id(ast node) or key: hoisted id},
    gather): ``gather`` evaluates every name and hoisted expression into one tuple (one ``eval`` per launch)."""
    device_names = set(loop.assigned) | {n.id for n in ast.walk(loop.node.target) if isinstance(n, ast.Name)}
    glb = pk.globals
    names = [n for n in loop.reads if n in host_locals or n in glb]
    codes, ids, mapping, exprs = [], [], {}, []  # exprs: the hoisted expressions, in the order of codes
    def hoist(key: Any, node: ast.expr, code: Any = None) -> None:
        codes.append(code or compile(ast.Expression(body=node), pk.file, "eval"))
        exprs.append(node)
        ids.append(f"_h{len(ids)}")
        mapping[key] = ids[-1]
    def host_only(node: ast.AST) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in device_names or \
                    isinstance(n, (ast.Lambda, ast.NamedExpr, ast.Yield, ast.Await)):
                return False
            if isinstance(n, ast.Call):
                f = pk.resolve(n.func)
                if getattr(f, "_hl_device", None) or f in (hl.register_block_size, hl.register_tunable):
                    return False
        return True
    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.BinOp, ast.Call, ast.Attribute, ast.Subscript, ast.UnaryOp, ast.Compare,
                             ast.BoolOp)) and not isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)) \
                and host_only(node):  # a store target (out[0, :] = ...) is never a value to hoist
            code = compile(ast.Expression(body=node), pk.file, "eval")
            try:
                val = eval(code, {**glb, "__builtins__": __builtins__}, host_locals)
            except Exception:
                val = None
            if isinstance(val, (int, float)) or isinstance(val, (tuple, torch.Size)) and \
                    all(isinstance(x, int) for x in val):
                hoist(id(node), node, code)
                return
        for c in ast.iter_child_nodes(node):
            visit(c)
    for s in [loop.node.iter, *loop.node.body]:
        visit(s)
    # torch.rand* in device code draw a fresh seed per launch from torch's generator: a 1-element tensor (no recompile).
    if any(isinstance(n, ast.Call) and pk.resolve(n.func) in _RANDOM_FNS for s in loop.node.body for n in ast.walk(s)):
        dev = next((n for n in names if isinstance(host_locals.get(n, glb.get(n)), torch.Tensor)), None)
        where = f", device={dev}.device" if dev else ""
        hoist(("seed",), ast.parse(f"__import__('torch').randint(0, 2**31 - 1, (1,){where})", mode="eval").body)
    # Tensors a function argument (an epilogue lambda) closes over reach the device loop as launcher values:
    # CLOSURE_SLOTS per function-valued name, filled per call (the function may change); helpers' global tensors too.
    for n in names:
        fn = host_locals.get(n, glb.get(n))
        if isinstance(fn, types.FunctionType):
            srcs = {("closure", n, j): f"__import__('helion_ops.dsl.inline', fromlist=['_']).closure_tensor({n}, {j})"
                    for j in range(CLOSURE_SLOTS)}
            srcs.update({("global", n, g): f"{n}.__globals__[{g!r}]" for g in fn.__code__.co_names
                         if isinstance(fn.__globals__.get(g), torch.Tensor)})
            for key, src in srcs.items():
                hoist(key, ast.parse(src, mode="eval").body)
    gather = ast.Expression(body=ast.Tuple(elts=[ast.Name(id=n, ctx=ast.Load()) for n in names] + exprs,
                                           ctx=ast.Load()))
    return names, codes, ids, mapping, compile(ast.fix_missing_locations(gather), pk.file, "eval")
