"""The op layer's fast path: a call's host work, observed once per specialization, replayed after.

An op call's host path in Python (argument checks, layout, the custom-op/autograd routing, the
config lookup of each kernel) costs more than the launch it ends in. For a given specialization
(every tensor argument's dtype, shape, strides and device; every other argument's value) that
path always does the same thing, so :func:`memoize` runs it once under observation and keeps a
*recipe*: the layout helpers it called (``_oplib.as_rows``, ``unview``, ...: :func:`step`) and the
kernels it launched (the bound kernel each :class:`~helion_ops._oplib.Kern` had cached), each with
its arguments as expressions of the call's arguments, as a generated Python function. Later calls
with the same specialization run that function: no checks, no routing, no lookups.

What is observed must be all the call did. A ``TorchDispatchMode`` watches the observed call: any
ATen op outside a recorded step, op or kernel (a tensor made or changed by other code, a value read
back to the host, as ``grouped_gemm``'s offsets check or varlen attention's lengths do) and the
specialization keeps the ordinary path. So does one whose kernel arguments are not all derived from
the call's (a tensor from elsewhere), one that read a pointer's alignment (:func:`give_up`), and one
whose kernel fell back to eager or ran under an override.

When the fast path is never taken (the ordinary path runs, as before):
* ``torch.compile`` tracing (``torch.compiler.is_compiling()``): the custom op must appear;
* ``torch.jit`` tracing, any ``__torch_function__`` mode, any ``__torch_dispatch__`` mode;
* a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``, ``functionalize``);
* a tensor argument of a subclass (``Parameter`` aside) or a non-strided layout;
* a ``use_config`` override or ``eager_kernels()`` (tests), a device the checks would refuse.
``reset_caches`` / ``reset_fallbacks`` and a kernel's fallback forget every recipe.
"""
from __future__ import annotations

import functools
import math
import os
import threading
from typing import Any, Callable, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

OVERRIDES: dict = {}  # _oplib.use_config's overrides (the same dict): while any is set, no fast path
MEMOS: list = []
STEPS: set = set()  # the raw functions of the recorded steps
LIMIT = 512  # recipes per memoized function: beyond it, new specializations keep the ordinary path

_Tensor, _Parameter = torch.Tensor, torch.nn.Parameter
_strided = torch.strided
_compiling = torch.compiler.is_compiling
_functorch = torch._C._are_functorch_transforms_active
_tf_mode = torch._C._is_torch_function_mode_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_tracing = torch._C._get_tracing_state
_grad = torch.is_grad_enabled
_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_BY_VALUE = {int, bool, str, type(None), torch.dtype}
_CONSTS = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.Size)
_MISSING = object()
_local = threading.local()
_lock = threading.Lock()
observing = 0  # threads observing a call now: the one test the hooks make on the ordinary path


def blocked() -> bool:
    """Whether a call must take the ordinary path whatever its arguments (see the module docstring)."""
    return _compiling() or bool(OVERRIDES) or _functorch() or _tf_mode() or _dispatch_modes() > 0 \
        or _tracing() is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def key(args: tuple, grad: bool) -> Optional[tuple]:
    """The specialization of ``args``, or None where it must take the ordinary path (a tensor subclass,
    a CPU or meta tensor outside the interpreter, an argument of another kind). Under grad mode
    (``grad``) whether each tensor requires grad is part of it."""
    k = []
    for a in args:
        t = type(a)
        if t is _Tensor or t is _Parameter:
            if not a.is_cuda and not _interpreting():  # the checks refuse it (or meta: shapes only)
                return None
            if grad and a.requires_grad and _wrapped(a):  # leaked from a torch.func transform: unwrapped
                return None                               # by Function.apply (the ordinary path)
            if a.layout is not _strided:
                return None
            k.append((a.dtype, a.shape, a.stride(), a.device, grad and a.requires_grad))
        elif t is float:
            k.append((a, math.copysign(1.0, a)))  # -0.0 is not 0.0
        elif t in _BY_VALUE:
            k.append((t, a))
        elif (t is tuple or t is list) and all(type(v) is int for v in a):
            k.append((t, tuple(a)))
        else:
            return None
    return tuple(k)


def memoize(fn: Callable) -> Callable:
    """``fn`` (an op's public function) with a recipe per specialization. A call whose tensors need a
    graph (grad mode, an input requiring grad) records the ops it calls, not their kernels: its recipe
    calls each op as the ordinary path does (autograd, its formula), past the checks and layout."""
    recipes: dict = {}
    MEMOS.append(recipes)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if blocked():
            return fn(*args, **kwargs)
        flat = args + tuple(kwargs.values()) if kwargs else args
        try:
            k = key(flat, _grad())
        except RuntimeError:  # stride() of a sparse or nested tensor
            k = None
        if k is None:
            return fn(*args, **kwargs)
        if kwargs:
            k = (k, tuple(kwargs))
        run = recipes.get(k, _MISSING)
        if run is _MISSING:
            return _observe(fn, recipes, k, flat, args, kwargs)
        if run is not None:
            try:
                return run(flat)
            except Exception:  # a launch failed: the ordinary path decides (fallback or error)
                recipes.pop(k, None)
        return fn(*args, **kwargs)

    call.recipes = recipes  # type: ignore[attr-defined]
    return call


def _observe(fn: Callable, recipes: dict, k: tuple, flat: tuple, args: tuple, kwargs: dict) -> Any:
    global observing
    obs = Observer(flat, ops=_grad() and any(isinstance(a, _Tensor) and a.requires_grad for a in flat))
    _local.obs = obs
    with _lock:
        observing += 1
    try:
        with _Watch(obs):
            out = fn(*args, **kwargs)
    finally:
        with _lock:
            observing -= 1
        _local.obs = None
    if len(recipes) < LIMIT:
        recipes[k] = obs.recipe(out)
    return out


def clear() -> None:
    """Forget every recipe (the kernels' cached choices changed)."""
    for recipes in MEMOS:
        recipes.clear()


def observer() -> Optional["Observer"]:
    """The observer recording this thread's call, if any, and not inside a recorded step."""
    obs = getattr(_local, "obs", None)
    return obs if obs is not None and not obs.paused else None


def give_up() -> None:
    """The observed call made a choice its specialization does not fix (a pointer's alignment): no recipe."""
    if observing:
        obs = observer()
        if obs is not None:
            obs.bad = True


def step(fn: Callable) -> Callable:
    """``fn`` (a pure layout helper of tensors and constants) as a step an observed call records. Its
    choices may read tensor metadata only (dtype, shape, strides), never values or pointers: so one
    that returned its argument itself does so for every call of the specialization (the recipe drops it)."""
    def recorded(*args: Any) -> Any:
        if observing:
            obs = observer()
            if obs is not None:
                return obs.call(fn, args)
        return fn(*args)
    recorded.__name__, recorded.__doc__, recorded.__wrapped__ = fn.__name__, fn.__doc__, fn
    STEPS.add(fn)
    return recorded


class _Watch(TorchDispatchMode):
    """Notes an ATen op that runs in the observed call outside its recorded steps and kernels."""

    def __init__(self, obs: "Observer") -> None:
        super().__init__()
        self.obs = obs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.obs.paused:
            self.obs.bad = True
        return func(*args, **(kwargs or {}))


class Observer:
    """What one call did: its steps and kernel launches, in order, with their arguments and results."""

    def __init__(self, inputs: tuple, ops: bool = False) -> None:
        self.inputs = inputs
        self.ops = ops  # record op calls (which build the graph), not the launches inside them
        self.events: list = []
        self.paused = 0
        self.bad = False

    def call(self, fn: Callable, args: tuple, replay: Optional[Callable] = None) -> Any:
        """Run ``fn(*args)`` as one recorded step; the recipe calls ``replay`` (default ``fn``)."""
        self.paused += 1
        try:
            out = fn(*args)
        finally:
            self.paused -= 1
        self.events.append((replay or fn, args, out))
        return out

    def launch(self, run: Callable, args: tuple, out: Any) -> None:
        """A kernel launch that ran ``run`` (the Kern's cached choice) on ``args``; None: not replayable."""
        if run is None:
            self.bad = True
        else:
            self.events.append((run, args, out))

    def recipe(self, out: Any) -> Optional[Callable]:
        if self.bad:
            return None
        try:
            return _Recipe(self.inputs, self.events, out).run
        except _NotDerived:
            return None
        finally:
            self.inputs, self.events = (), []


class _NotDerived(Exception):
    pass


class _Recipe:
    """The generated function ``run(a)`` of the call's flat arguments ``a``."""

    __slots__ = ("names", "consts", "run", "source")

    def __init__(self, inputs: tuple, events: list, out: Any) -> None:
        self.names: dict[int, str] = {}
        self.consts: dict[str, Any] = {}
        for j, a in enumerate(inputs):
            if isinstance(a, _Tensor) or type(a) is float:
                if id(a) in self.names:  # one object in two places: which one a step read is unknown
                    raise _NotDerived
                self.names[id(a)] = f"a[{j}]"
        lines = []
        for i, (fn, args, res) in enumerate(events):
            same = next((a for a in args if a is res), None) if fn in STEPS else None
            if same is not None:  # a layout step that kept its argument: it does for the whole specialization
                continue
            lines.append(f"s{i} = {self.const(fn)}({''.join(self.expr(v) + ', ' for v in args)})")
            if isinstance(res, _Tensor):
                self.names[id(res)] = f"s{i}"
            elif type(res) is tuple:
                for j, r in enumerate(res):
                    if isinstance(r, _Tensor):
                        self.names.setdefault(id(r), f"s{i}[{j}]")
        lines.append(f"return {self.expr(out)}")
        self.source = "def run(a):\n" + "".join(f"    {ln}\n" for ln in lines)
        glb = dict(self.consts)
        exec(compile(self.source, "<helion_ops fast path>", "exec"), glb)
        self.run = glb["run"]
        self.run.source = self.source  # type: ignore[attr-defined]  (what the fast path does, for debugging)

    def const(self, v: Any) -> str:
        name = f"c{len(self.consts)}"
        self.consts[name] = v
        return name

    def expr(self, v: Any) -> str:
        name = self.names.get(id(v))
        if name is not None:
            return name
        if isinstance(v, _Tensor):
            raise _NotDerived  # a tensor from outside the call and its recorded steps
        if type(v) in (tuple, list):
            inner = "".join(self.expr(x) + ", " for x in v)
            return f"({inner})" if type(v) is tuple else f"[{inner}]"
        if isinstance(v, _CONSTS):  # fixed by the specialization
            return self.const(v)
        raise _NotDerived
