"""Launch replay (``@kernel(replay_host=True)``, docs/decisions/launch-replay.md): the first call under a Config is
recorded (each launch's binary; each value as an argument, a view of one, a fresh allocation or a constant) and
replayed, host code skipped, on calls with the same 16-byte argument alignment. A value it cannot rebuild (a float
a float argument may steer, a closure, a list, a shared fresh allocation, a nested kernel call) makes it refuse."""
from __future__ import annotations

import types
from typing import Any, Callable

import torch

_CONST = {int, bool, str, type(None), types.ModuleType, torch.dtype, torch.Size, torch.device}
MISS = object()  # what a replay returns when the arguments' alignment differs from the recording

class NotReplayable(Exception): """A recorded value that a replay could not rebuild."""

def replay_of(args: tuple, trace: list, ret: Any) -> Callable:
    """The recorded host run (``trace``: (Compiled, values, fixed) per launch) as a generated function of the new
    call's args, each value an expression over them; its ``source`` attribute shows what it does."""
    arg_storage = {a.untyped_storage().data_ptr(): j for j, a in enumerate(args)
                   if isinstance(a, torch.Tensor) and a.numel()}
    if len(arg_storage) < sum(isinstance(a, torch.Tensor) and a.numel() > 0 for a in args):
        # one storage in two argument places: a value's place is ambiguous (a later call may pass two tensors)
        raise NotReplayable("two arguments share storage")
    consts: dict[str, Any] = {}
    lines: list[str] = []           # tensor constructions, in first-use order
    tensors: dict[tuple, str] = {}  # recipe -> local name
    fresh: set[int] = set()         # storages of the fresh tensors seen
    def const(v: Any) -> str:
        consts[name := f"c{len(consts)}"] = v
        return name
    def expr(v: Any, fixed: bool = False) -> str:
        """Source that rebuilds ``v``. ``fixed``: the value is known not to depend on a float argument."""
        t = type(v)
        if t in _CONST or (fixed and t is float):  # ints, bools, None: fixed by the specialization key
            return const(v)
        if t is types.FunctionType:  # inlined into the device code; the key holds its code
            if v.__closure__:  # what it closes over reaches the launch as values of its own
                raise NotReplayable(f"function {v.__name__} closes over values")
            return const(v)
        j = next((j for j, a in enumerate(args) if a is v), None)
        if j is not None:
            return f"args[{j}]"
        if isinstance(v, torch.Tensor):
            return tensor(v)
        if t in (tuple, list):
            inner = "".join(f"{expr(x)}, " for x in v)
            return f"({inner})" if t is tuple else f"[{inner}]"
        raise NotReplayable(f"{t.__name__} value")
    def tensor(v: torch.Tensor) -> str:
        shape, stride, dtype, off = tuple(v.shape), tuple(v.stride()), v.dtype, v.storage_offset()
        ptr = v.untyped_storage().data_ptr()
        j = arg_storage.get(ptr)  # a view of argument j: same storage, offset relative to the argument's
        if j is not None and dtype != args[j].dtype:
            raise NotReplayable("a view of an argument with another dtype")
        key = ("fresh", ptr, shape, stride, dtype, off) if j is None else \
            ("view", j, shape, stride, off - args[j].storage_offset())
        if key in tensors:  # the same tensor again (an output passed to two launches, or returned)
            return tensors[key]
        if j is not None:
            src = f"args[{j}].as_strided({shape}, {stride}, args[{j}].storage_offset() + {key[4]})"
        else:
            span = 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0
            if off or span * v.element_size() != v.untyped_storage().nbytes() or ptr in fresh:
                raise NotReplayable("a fresh tensor that is part of a larger allocation")
            fresh.add(ptr)
            src = f"empty_strided({shape}, {stride}, dtype={const(dtype)}, device={const(v.device)})"
        name = tensors[key] = f"t{len(tensors)}"
        lines.append(f"{name} = {src}")
        return name
    try:
        calls = [f"{const(c)}.launch([{', '.join(expr(v, f) for v, f in zip(values, fixed))}])"
                 for c, values, fixed in trace]
        result = expr(ret)
    finally:  # expr calls itself: a reference cycle that, left to the garbage collector, would keep the call's
        del expr, tensor  # tensors alive past it (a CUDA graph pool then finds a dead output it still counts)
    check = " or ".join(f"args[{j}].data_ptr() & 15 != {a.data_ptr() & 15}" for j, a in enumerate(args)
                        if isinstance(a, torch.Tensor)) or "False"
    body = [f"if {check}:", "    return MISS", *lines, *calls, f"return {result}"]
    source = "def replay(args):\n" + "".join(f"    {ln}\n" for ln in body)
    glb = {"MISS": MISS, "empty_strided": torch.empty_strided, **consts}
    exec(compile(source, "<helion_ops replay>", "exec"), glb)
    glb["replay"].source = source
    return glb["replay"]
