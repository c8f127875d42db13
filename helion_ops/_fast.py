"""The op layer's fast path: a call's host work, observed once per specialization, replayed after.

An op call's host path in Python (argument checks, layout, the custom-op/autograd routing, the
config lookup of each kernel) costs more than the launch it ends in. For a given specialization
(every tensor argument's dtype, shape, strides and device; every other argument's value) that
path always does the same thing, so :func:`memoize` runs it once under observation and keeps a
*recipe*: the layout helpers it called (``_oplib.as_rows``, ``unview``, ...: :func:`step`) and the
kernels it launched (the bound kernel each :class:`~helion_ops._oplib.Kern` had cached), each with
its arguments as expressions of the call's arguments, as a generated Python function. Later calls
with the same specialization run that function: no checks, no routing, no lookups.

Under autograd the same holds one level down. Each op's autograd entry for a specialization is a
:class:`GradSpec`: an ``autograd.Function`` of its own whose forward replays the launches the op's
forward made the first time, and whose backward replays, per incoming gradient (dtype, strides), the
steps and launches the op's backward made the first time with such a gradient. A public call under
grad replays its steps and calls those entries; the ordinary path takes them too where nothing blocks
the fast path (so a public call that keeps the ordinary path, ``grouped_gemm``'s, still replays its
backward). The backward itself keeps the ordinary path when its gradient must be differentiable
(``create_graph=True``: grad mode is on in the backward).

What is observed must be all the call did. A ``TorchDispatchMode`` watches the observed call: any
ATen op outside a recorded step, op or kernel (a tensor made or changed by other code, a value read
back to the host, as ``grouped_gemm``'s offsets check or varlen attention's lengths do) and the
specialization keeps the ordinary path. So does one whose kernel arguments are not all derived from
the call's (a tensor from elsewhere), and one whose kernel fell back to eager or ran under an override.
A call whose choices read its pointers' 16-byte alignment (:func:`alignment_read`: a GEMM pads
unaligned operand rows) gets a recipe that first compares each tensor argument's alignment with the
observed call's; a call aligned otherwise takes the ordinary path.

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
import re
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
MISS = object()  # what a recipe returns for a call whose pointer alignment differs from the observed call's
_local = threading.local()
_lock = threading.Lock()
observing = 0  # observations running now (all threads): the one test the hooks make on the ordinary path
epoch = 0  # how many times clear() ran


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
    interp = None  # read once a call, and only for a tensor not on CUDA
    for a in args:
        t = type(a)
        if t is _Tensor or t is _Parameter:
            if not a.is_cuda:
                if interp is None:
                    interp = _interpreting()
                if not interp:  # the checks refuse it (or meta: shapes only)
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
    calls each op's autograd entry for the specialization (:class:`GradSpec`), past the checks and layout."""
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
                out = run(flat)
            except Exception:  # a launch failed: the ordinary path decides (fallback or error)
                recipes.pop(k, None)
            else:
                if out is not MISS:
                    return out
        return fn(*args, **kwargs)

    call.recipes = recipes  # type: ignore[attr-defined]
    return call


def _observe(fn: Callable, recipes: dict, k: tuple, flat: tuple, args: tuple, kwargs: dict) -> Any:
    grad = _grad() and any(isinstance(a, _Tensor) and a.requires_grad for a in flat)
    out, run = observed(flat, lambda: fn(*args, **kwargs), ops=grad)
    if len(recipes) < LIMIT:
        recipes[k] = run
    return out


def observed(inputs: tuple, fn: Callable, ops: bool = False) -> tuple[Any, Optional[Callable]]:
    """``fn()`` run as an observed call whose arguments are ``inputs``: (its result, the recipe, a
    function of a tuple like ``inputs``, or None where it is not replayable). ``ops``: record op calls
    (see :func:`memoize`). Nests: an observation already running in this thread (an op's forward
    observed inside its public call) goes on after this one."""
    global observing
    obs = Observer(inputs, ops)
    outer = getattr(_local, "obs", None)
    _local.obs = obs
    with _lock:
        observing += 1
    try:
        with _Watch(obs):
            out = fn()
    finally:
        with _lock:
            observing -= 1
        _local.obs = outer
    return out, obs.recipe(out)


def clear() -> None:
    """Forget every recipe (the kernels' cached choices changed)."""
    global epoch
    for recipes in MEMOS:
        recipes.clear()
    epoch += 1  # GradSpecs still held by a graph forget their backward recipes


def observer() -> Optional["Observer"]:
    """The observer recording this thread's call, if any, and not inside a recorded step."""
    obs = getattr(_local, "obs", None)
    return obs if obs is not None and not obs.paused else None


def alignment_read() -> None:
    """The observed call made a choice by a pointer's 16-byte alignment, which its specialization does not
    fix: its recipe replays only calls whose tensor arguments are aligned as the observed call's were."""
    if observing:
        obs = observer()
        if obs is not None:
            obs.aligned = True


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
        self.aligned = False  # a choice read a pointer's alignment (alignment_read)

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
            return _Recipe(self.inputs, self.events, out, self.aligned).run
        except _NotDerived:
            return None
        finally:
            self.inputs, self.events = (), []


class _NotDerived(Exception):
    pass


class _Recipe:
    """The generated function ``run(a)`` of the call's flat arguments ``a`` (``aligned``: it returns ``MISS``
    unless each tensor argument's address is, modulo 16, the observed call's)."""

    __slots__ = ("names", "consts", "run", "source")

    def __init__(self, inputs: tuple, events: list, out: Any, aligned: bool = False) -> None:
        self.names: dict[int, str] = {}
        self.consts: dict[str, Any] = {}
        for j, a in enumerate(inputs):
            if isinstance(a, _Tensor) or type(a) is float:
                if id(a) in self.names:  # one object in two places: which one a step read is unknown
                    raise _NotDerived
                self.names[id(a)] = f"a[{j}]"
        lines = []
        for i, (fn, args, res) in enumerate(events):
            step = fn in STEPS
            same = next((a for a in args if a is res), None) if step else None
            if same is not None:  # a layout step that kept its argument: it does for the whole specialization
                continue
            lines.append((i, step, f"s{i} = {self.const(fn)}({''.join(self.expr(v) + ', ' for v in args)})"))
            if isinstance(res, _Tensor):
                self.names[id(res)] = f"s{i}"
            elif type(res) is tuple:
                for j, r in enumerate(res):
                    if isinstance(r, _Tensor):
                        self.names.setdefault(id(r), f"s{i}[{j}]")
        lines = [ln for _, _, ln in self._live(lines, f"return {self.expr(out)}")]
        if aligned and any(isinstance(a, _Tensor) for a in inputs):
            guard = " or ".join(f"a[{j}].data_ptr() & 15 != {a.data_ptr() & 15}" for j, a in enumerate(inputs)
                                if isinstance(a, _Tensor))
            lines = [f"if {guard}:", "    return MISS", *lines]
            self.consts["MISS"] = MISS
        self.source = "def run(a):\n" + "".join(f"    {ln}\n" for ln in lines)
        glb = dict(self.consts)
        exec(compile(self.source, "<helion_ops fast path>", "exec"), glb)
        self.run = glb["run"]
        self.run.source = self.source  # type: ignore[attr-defined]  (what the fast path does, for debugging)

    @staticmethod
    def _live(lines: list, ret: str) -> list:
        """``lines`` and ``ret`` without the steps whose result nothing after them reads (a placeholder for a
        gradient the caller drops): a step is pure, a launch is kept whatever it returns."""
        kept = [(-1, False, ret)]
        for i, step, text in reversed(lines):
            if not step or any(re.search(rf"\bs{i}\b", t) for _, _, t in kept):
                kept.append((i, step, text))
        return kept[::-1]

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


# ---- autograd -----------------------------------------------------------------------------------

SLOT = object()  # in a GradSpec's template: where a saved tensor input goes back
C_APPLY = torch._C._FunctionBase.__dict__["apply"]  # autograd.Function.apply without its Python wrapper


class GradSpec:
    """One op's autograd entry for one specialization of its arguments (``key(args, True)``): an
    ``autograd.Function`` of its own, whose forward replays the launches the op's forward made on its
    first call and whose backward replays, per incoming gradient's dtype and strides, the launches the
    op's backward made on its first call with them. What the ordinary entry (``Op._apply``) works out
    per call is fixed here once: which arguments are tensors to save, which outputs are statistics.

    Either half keeps the ordinary path where it cannot replay (an ATen op outside steps and kernels,
    a pointer's alignment read, an argument not derived from the call's); the backward also whenever
    the gradient must itself be differentiable (grad mode on: ``create_graph=True``), a transform, mode
    or override is active (:func:`blocked`), or the gradient is a subclass or not strided. A replay that
    raises is dropped and the call takes the ordinary path (fallbacks, errors). ``apply(*args)`` is the
    entry; ``op`` is the :class:`helion_ops._oplib.Op`."""

    def __init__(self, op: Any, args: tuple) -> None:
        self.op = op
        self.template = tuple(SLOT if isinstance(a, _Tensor) else a for a in args)
        self.tensors = tuple(i for i, a in enumerate(args) if isinstance(a, _Tensor))
        self.multi = op.n_out > 1
        self.fwd: Optional[Callable] = None  # the forward's recipe once observed (else the op's forward)
        self.bwd: dict = {}  # (gradient dtype, strides) -> the backward's recipe, or None: ordinary
        self.epoch = epoch
        fn = type(f"{op.name}_spec_function", (torch.autograd.Function,), {
            "forward": staticmethod(self.forward), "backward": staticmethod(self.backward)})
        fn._backward_cls.apply = lambda node, *grads: self.backward(node, *grads)  # no generic lookup
        self.apply = C_APPLY.__get__(None, fn)

    def forward(self, ctx: Any, *args: Any) -> Any:
        run = self.fwd
        if run is None:
            out, run = observed(args, lambda: self.op.impl(*args))
            self.fwd = run or (lambda a: self.op.impl(*a))
        else:
            try:
                out = run(args)
            except Exception:  # a launch failed: the ordinary forward decides (fallback or error)
                self.fwd = None
                out = self.op.impl(*args)
            else:
                if out is MISS:  # aligned otherwise than the observed call
                    out = self.op.impl(*args)
        saved = [args[i] for i in self.tensors]
        if not self.multi:
            ctx.save_for_backward(*saved, *((out,) if self.op.save_outputs else ()))
            return out
        ctx.save_for_backward(*saved, *(out[i] for i in self.op.save_outputs))
        # The outputs after the first are statistics: no gradient flows to them, none is materialised.
        ctx.mark_non_differentiable(*out[1:])
        ctx.set_materialize_grads(False)
        return out

    def backward(self, ctx: Any, *grads: Any) -> tuple:
        saved = ctx.saved_tensors
        g = grads[0]
        if g is None:  # the output was not used (only its statistics)
            return (None,) * len(self.template)
        if type(g) is _Tensor and g.layout is _strided and not _grad() and not blocked():
            if self.epoch != epoch:  # clear() ran: recipes may call kernels that failed since
                self.bwd.clear()
                self.epoch = epoch
            k = (g.dtype, g.stride())
            run = self.bwd.get(k, _MISSING)
            flat = saved + grads
            if run is _MISSING:
                out, run = observed(flat, lambda: self._backward(saved, ctx.needs_input_grad, grads))
                if len(self.bwd) < LIMIT:
                    self.bwd[k] = run
                return out
            if run is not None:
                try:
                    out = run(flat)
                except Exception:
                    self.bwd.pop(k, None)
                else:
                    if out is not MISS:
                        return out
        return self._backward(saved, ctx.needs_input_grad, grads)

    def _backward(self, saved: tuple, needs: tuple, grads: tuple) -> tuple:
        """The ordinary backward: the op's backward, or its differentiable form under grad mode."""
        it = iter(saved)
        inputs = [next(it) if a is SLOT else a for a in self.template]
        if _grad():
            return self.op._graph_backward(inputs, grads[:1], needs)
        return tuple(self.op.backward(inputs, saved[len(self.tensors):], needs, *grads))
