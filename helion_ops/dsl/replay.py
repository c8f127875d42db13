"""Launch replay: repeat calls of a kernel without running its host code.

A kernel's host code runs on every call: sizes, allocations, ``hl.register_block_size``, then one
launch per device loop through the launch-key lookup. On the H100 machine's CPU that is ~20-30 us
per call, which is longer than the GPU work of a small GEMM or norm and is what leaves small
backward passes host-bound. A kernel declared with ``@kernel(replay_host=True)`` promises that its
host code depends only on what the specialization key fixes (argument dtypes, shapes, strides, and
int, bool and str values; a float argument may feed the device loops but must not steer the host
code) and allocates only with ``torch.empty*`` (uninitialised memory). For such a
kernel the first call under a Config is recorded: each launch's compiled binary and where every
launch value came from (an argument, a view of one, a fresh allocation, or a constant), and the
same for the return value. Later calls whose tensor arguments have the same 16-byte alignment
rebuild the values from that recipe and call the binaries directly.

Recording refuses (the kernel keeps running its host code) when a value cannot be rebuilt that way:
a float that is neither an argument nor a hoisted expression free of float locals (``1.0 / n`` is
kept; ``alpha * 2.0`` or a host local computed from ``alpha`` may change with the argument), a function
inlined into device code that closes over values, a list or other object, a tensor sharing a fresh
allocation with another, a kernel called from the host code.
The arguments' 16-byte alignment is checked on every replay (it picks the binary); a mismatch runs
the host code as usual.
"""
from __future__ import annotations

import types
from typing import Any

import torch

_CONST = {int, bool, str, type(None), types.ModuleType, torch.dtype, torch.Size, torch.device}

class NotReplayable(Exception):
    """A recorded value that a replay could not rebuild."""

class Recorder:
    """Turns the values of one recorded run into expressions over the new call's ``args``."""

    def __init__(self, args: tuple) -> None:
        self.args = args
        self.arg_storage = {a.untyped_storage().data_ptr(): j for j, a in enumerate(args)
                            if isinstance(a, torch.Tensor) and a.numel()}
        self.consts: dict[str, Any] = {}
        self.lines: list[str] = []              # tensor constructions, in first-use order
        self.tensors: dict[tuple, str] = {}    # recipe -> local name
        self.fresh: set[int] = set()           # storages of the fresh tensors seen

    def const(self, v: Any) -> str:
        name = f"c{len(self.consts)}"
        self.consts[name] = v
        return name

    def expr(self, v: Any, fixed: bool = False) -> str:
        """Python source that rebuilds ``v`` from ``args`` (and the recorded constants). ``fixed``: the
        value is known not to depend on a float argument."""
        t = type(v)
        if t in _CONST or (fixed and t is float):  # ints, bools, None: fixed by the specialization key
            return self.const(v)
        if t is types.FunctionType:  # inlined into the device code; the key holds its code
            if v.__closure__:  # what it closes over reaches the launch as values of its own
                raise NotReplayable(f"function {v.__name__} closes over values")
            return self.const(v)
        for j, a in enumerate(self.args):
            if v is a:
                return f"args[{j}]"
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if t in (tuple, list):
            inner = "".join(f"{self.expr(x)}, " for x in v)
            return f"({inner})" if t is tuple else f"[{inner}]"
        raise NotReplayable(f"{t.__name__} value")

    def tensor(self, v: torch.Tensor) -> str:
        shape, stride, dtype, off = tuple(v.shape), tuple(v.stride()), v.dtype, v.storage_offset()
        ptr = v.untyped_storage().data_ptr()
        j = self.arg_storage.get(ptr)
        if j is not None:  # a view of argument j: same storage, offset relative to the argument's
            if dtype != self.args[j].dtype:
                raise NotReplayable("a view of an argument with another dtype")
            key = ("view", j, shape, stride, off - self.args[j].storage_offset())
        else:
            key = ("fresh", ptr, shape, stride, dtype, off)
        name = self.tensors.get(key)
        if name is not None:  # the same tensor again (an output passed to two launches, or returned)
            return name
        if j is not None:
            src = f"args[{j}].as_strided({shape}, {stride}, args[{j}].storage_offset() + {key[4]})"
        else:
            whole = off == 0 and _span(shape, stride) * v.element_size() == v.untyped_storage().nbytes()
            if not whole or ptr in self.fresh:
                raise NotReplayable("a fresh tensor that is part of a larger allocation")
            self.fresh.add(ptr)
            src = f"empty_strided({shape}, {stride}, dtype={self.const(dtype)}, device={self.const(v.device)})"
        name = self.tensors[key] = f"t{len(self.tensors)}"
        self.lines.append(f"{name} = {src}")
        return name

class Replay:
    """The recipe of one recorded host run, as a generated function of the new call's args."""

    __slots__ = ("run", "source")

    def __init__(self, args: tuple, trace: list, ret: Any) -> None:
        rec = Recorder(args)
        calls = [f"{rec.const(c)}.launch([{', '.join(rec.expr(v, f) for v, f in zip(values, fixed))}])"
                 for c, values, fixed in trace]
        result = rec.expr(ret)
        tensor_args = [j for j, a in enumerate(args) if isinstance(a, torch.Tensor)]
        align = tuple(args[j].data_ptr() & 15 for j in tensor_args)
        check = " or ".join(f"args[{j}].data_ptr() & 15 != {al}" for j, al in zip(tensor_args, align)) or "False"
        body = [f"if {check}:", "    return MISS", *rec.lines, *calls, f"return {result}"]
        self.source = "def replay(args):\n" + "".join(f"    {ln}\n" for ln in body)
        glb = {"MISS": MISS, "empty_strided": torch.empty_strided, **rec.consts}
        exec(compile(self.source, "<helion_ops replay>", "exec"), glb)
        self.run = glb["replay"]
        self.run.source = self.source  # type: ignore[attr-defined]  (what a replay does, for debugging)

MISS = object()  # what Replay.run returns when the arguments' alignment differs from the recording

def _span(shape: tuple, stride: tuple) -> int:
    return 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0
