"""The op layer: from a small declarative definition per op, everything around its kernels.

An op file (``helion_ops/ops/<op>.py``) holds its DSL kernels and declares, with this module:

* :class:`Kern`: one DSL kernel as an op launches it: its analytic default Config, which shape
  dims select a pretuned entry, and its eager (PyTorch) fallback. ``Kern(...)(*args)`` runs it.
* :func:`op`: a forward (or backward) function over already-validated tensors, written as calls of
  Kerns, with its eager math. From it come the ``torch.library`` custom op ``helion_ops::<name>`` (for
  torch.compile), its fake (meta) implementation, the meta-tensor path (shapes only, no launch) and,
  when the definition has a backward, the autograd formula (``register_autograd`` with
  ``setup_context``, and the same formula as a ``torch.autograd.Function`` for eager training, so
  ``torch.func.grad`` and ``vmap`` work).

What an op file keeps to itself: argument checks (the ``check_*`` helpers here name the argument
and raise :mod:`helion_ops.errors` types), the public function, and the kernels.

Configs: one policy (:meth:`Kern.choose`) for every kernel of every op: a test override
(:func:`use_config`), else a Config pinned on the DSL kernel, else the pretuned entry for the GPU
arch (the exact shape, then the nearest power-of-two bucket, except on the dims an op lists as
``exact``), else the op's analytic default; whichever wins is fitted into the bound kernel's
ConfigSpace (block sizes clamped, knobs it lacks dropped). A pretuned entry that no longer fits
gives way to the default. Chosen once per argument signature; the cache lives here, never on
DSL objects. The op layer binds kernels on meta copies of the arguments, so no DSL object keeps a
call's tensors alive (that kept first-call inputs in memory, and inside a CUDA-graph pool).

Gradients: the first-order backward runs the op's backward kernels. When the gradient must itself
be differentiable (``create_graph=True``, ``torch.func`` transforms), the backward is recomputed
through the op's eager definition under autograd, so second and higher derivatives are exact
(those of the eager math) and never silently detached.

Fallback: a kernel that fails to compile or launch (unsupported arch, out of resources, a Triton
or driver error) makes the op run its eager version with one :class:`FallbackWarning` per
(op, reason); bad input and CUDA out-of-memory propagate; ``HELION_OPS_STRICT=1`` raises
:class:`LaunchError`. The failed signature is remembered, so later calls go straight to eager.
A Kern may name a second choice first (``Kern(fallback=...)``: attention's Triton Config when its
Gluon one fails): that runs instead, with the same warning (none when the backend refused the call,
``NotSupported``: a refusal is a choice, not a failure), and eager only if it fails too.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from . import _fast
from .dsl import runtime as _runtime
from .dsl.config import Config
from .dsl.runtime import recording, spec_key
from .dsl.exc import NotSupported
from .errors import (ArgumentTypeError, DeviceError, DtypeError, FallbackWarning, InputError, LaunchError,
                     ShapeError)

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# ---- shared helpers -----------------------------------------------------------------------------

def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def inference(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether a call on ``tensors`` needs no backward: grad mode off or nothing requiring grad, and no
    torch.func transform (whose wrappers take the op's autograd entry). An op may then skip what only its
    backward reads (saved statistics)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    return not torch._C._are_functorch_transforms_active()


def interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _interpreting() -> bool:
    """Whether this process's kernels run in Triton's interpreter, as the DSL fixed it once for the
    process (``runtime.target()``, cached: no environment read)."""
    return _runtime.target().interpreter


def num_sms() -> int:
    from .dsl.runtime import num_sms as _n
    try:
        return _n()
    except Exception:  # pragma: no cover  (no driver: the H100's count)
        return 132


def acc(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the eager twins' accumulation dtype: fp32, or fp64 for fp64 tensors (gradient checks)."""
    return t if t.dtype == torch.float64 else t.float()


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# ---- argument checks: attribute checks only (no tensor ops, no allocations) ---------------------

def check_tensor(op: str, name: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise ArgumentTypeError(f"{op}(): argument '{name}' must be a torch.Tensor, got {type(t).__name__}")


def check_dtype(op: str, name: str, t: torch.Tensor, dtypes: Sequence[torch.dtype] = FLOAT_DTYPES) -> None:
    if t.dtype not in dtypes and not (t.dtype == torch.float64 and _EAGER_ONLY):
        names = ", ".join(str(d) for d in dtypes)
        raise DtypeError(f"{op}(): argument '{name}' has dtype {t.dtype}; supported dtypes are {names}")


def check_device(op: str, name: str, t: torch.Tensor) -> None:
    """CUDA tensors normally; CPU tensors only under the Triton interpreter (TRITON_INTERPRET=1);
    meta tensors always (shapes only)."""
    if t.is_cuda and not _interpreting():  # the hot path: no environment read (~1 us a call)
        return
    dev = t.device.type
    if dev == "cuda" and not interpret_mode():
        return
    if dev == "meta":
        return
    interp = interpret_mode()
    if dev == "cpu" and not interp:
        raise DeviceError(f"{op}(): argument '{name}' is a CPU tensor; helion_ops runs on CUDA tensors "
                          f"(or on CPU tensors under the Triton interpreter, TRITON_INTERPRET=1)")
    if dev == "cuda" and interp:
        raise DeviceError(f"{op}(): argument '{name}' is a CUDA tensor but TRITON_INTERPRET=1 runs on CPU tensors")
    if dev not in ("cpu", "cuda"):
        raise DeviceError(f"{op}(): argument '{name}' is on device '{t.device}', which helion_ops does not support")


def check_same(op: str, ref_name: str, ref: torch.Tensor, name: str, t: torch.Tensor, dtype: bool = True) -> None:
    """``t`` on ``ref``'s device (and, with ``dtype``, of its dtype)."""
    if t.device != ref.device:
        raise DeviceError(f"{op}(): argument '{name}' is on {t.device} but '{ref_name}' is on {ref.device}; "
                          f"all tensors must be on one device")
    if dtype and t.dtype != ref.dtype:
        raise DtypeError(f"{op}(): argument '{name}' has dtype {t.dtype} but '{ref_name}' has dtype {ref.dtype}; "
                         f"they must match")


def check_input(op: str, x: Any, name: str = "input") -> None:
    """The main input: a floating-point tensor on a supported device."""
    check_tensor(op, name, x)
    check_dtype(op, name, x)
    check_device(op, name, x)


def normalized_size(op: str, x: torch.Tensor, normalized_shape: Any) -> tuple[tuple[int, ...], int]:
    """Validate ``normalized_shape`` against ``x``'s trailing dims; returns (shape tuple, N = its numel)."""
    if type(normalized_shape) in (tuple, list) and len(normalized_shape) == 1 and x.dim() >= 1:
        n = normalized_shape[0]  # fast path: one trailing dim
        if type(n) is int and n == x.shape[-1]:
            return (n,), n
    if isinstance(normalized_shape, int) and not isinstance(normalized_shape, bool):
        ns = (normalized_shape,)
    else:
        try:
            ns = tuple(normalized_shape)
        except TypeError:
            ns = None
    if ns is None or not all(isinstance(d, int) and not isinstance(d, bool) for d in ns):
        raise ArgumentTypeError(f"{op}(): argument 'normalized_shape' must be an int or a sequence of ints, "
                                f"got {normalized_shape!r}")
    if not ns or x.dim() < len(ns) or tuple(x.shape[x.dim() - len(ns):]) != ns:
        raise ShapeError(f"{op}(): argument 'normalized_shape' {list(ns)} does not match the trailing "
                         f"dims of input of shape {list(x.shape)}")
    return ns, math.prod(ns)


def check_param(op: str, name: str, p: Any, x: torch.Tensor, ns: tuple[int, ...]) -> None:
    """An optional affine parameter (weight/bias): shape == normalized_shape, x's dtype and device."""
    if p is None:
        return
    check_tensor(op, name, p)
    if tuple(p.shape) != tuple(ns):
        raise ShapeError(f"{op}(): argument '{name}' has shape {list(p.shape)}; expected normalized_shape "
                         f"{list(ns)}")
    check_same(op, "input", x, name, p)


def check_float(op: str, name: str, v: Any) -> float:
    """A Python number argument (eps, scale), as float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgumentTypeError(f"{op}(): argument '{name}' must be a float, got {type(v).__name__}")
    return float(v)


# ---- layout -------------------------------------------------------------------------------------

@_fast.step
def as_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` as ``[M, n]`` rows: a view when the layout allows (the kernels are stride-aware along
    rows); one contiguous copy only when the reduced (last) dim is strided, since the kernels need
    coalesced rows to run at bandwidth and a copy costs less than a strided read."""
    if x.dim() == 2 and (n <= 1 or x.stride(1) == 1):
        return x
    x2 = x.reshape(-1, n) if n > 0 else x.reshape(-1, 0)
    if n > 1 and x2.stride(1) != 1:
        x2 = x2.contiguous()
    return x2


@_fast.step
def unview(y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``y.view(shape)`` for an output the op just allocated, as a tensor that is not a view (what torch's
    own ops return after reshaping a result, ``aten._unsafe_view``): an in-place op on a view goes around
    the backward hooks of the module that returned it, which FSDP2 needs (it warns on such outputs)."""
    return torch.ops.aten._unsafe_view(y, shape)


@_fast.step
def grad_rows(dy: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An incoming gradient as ``like``'s [M, N] rows in its dtype (``as_rows``); ``.to`` only when the
    dtype differs (a no-op ``.to`` still costs a dispatch)."""
    return as_rows(dy if dy.dtype == like.dtype else dy.to(like.dtype), like.shape[1])


@_fast.step
def as_vector(p: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
    """A weight/bias as a unit-stride vector of length n."""
    if p is None or (p.dim() == 1 and (n <= 1 or p.stride(0) == 1)):
        return p
    v = p.reshape(n)
    return v if v.stride(0) == 1 or n <= 1 else v.contiguous()


@_fast.step
def placeholder(like: torch.Tensor, shape: Sequence[int] = (0,)) -> torch.Tensor:
    """An empty tensor in the place of an output nobody asked for (a custom op returns tensors, not None)."""
    return like.new_empty(shape)


@_fast.step
def empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A fresh output for a kernel that writes into its argument (matmul's split-K epilogue)."""
    return torch.empty(shape, dtype=dtype, device=device)


@_fast.step
def transpose(t: torch.Tensor, d0: int, d1: int) -> torch.Tensor:
    """``t.transpose(d0, d1)``: an operand read in its stored layout (GEMMs)."""
    return t.transpose(d0, d1)


@_fast.step
def row(t: torch.Tensor, i: int) -> torch.Tensor:
    """``t[i]``: a row (view) of a tensor that holds several results (layer_norm's dweight and dbias)."""
    return t[i]


@_fast.step
def unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


# ---- fallback -----------------------------------------------------------------------------------

def strict() -> bool:
    """``HELION_OPS_STRICT=1``: a kernel that fails to compile or launch raises instead of falling back."""
    return os.environ.get("HELION_OPS_STRICT", "0") not in ("", "0")


_WARNED: set = set()
_KERNS: list["Kern"] = []
_ROUTES: list["Route"] = []


def _reason(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def kernel_failed(op: str, kernel: str, err: BaseException, instead: str = "the eager PyTorch fallback") -> None:
    """Returns when the caller should run ``instead`` (its eager fallback), else raises (bad input, OOM, strict)."""
    if isinstance(err, (InputError, torch.cuda.OutOfMemoryError)) or getattr(err, "_helion_ops_strict", False):
        raise err
    reason = _reason(err)
    if strict():
        le = LaunchError(f"{op}(): kernel '{kernel}' failed to compile or launch ({reason}); "
                         f"HELION_OPS_STRICT=1 disables the fallback to {instead}")
        le._helion_ops_strict = True
        raise le from err
    if (op, reason) not in _WARNED:
        _WARNED.add((op, reason))
        warnings.warn(FallbackWarning(f"helion_ops.{op}: kernel '{kernel}' failed to compile or launch "
                                      f"({reason}); running {instead} instead "
                                      f"(set HELION_OPS_STRICT=1 to raise)"), stacklevel=4)


def reset_caches() -> None:
    """Forget every choice of every op's kernels (Configs and fallbacks): the next call chooses again."""
    for k in [*_KERNS, *_ROUTES]:
        k._cache.clear()
    _fast.clear()
    _WARNED.clear()


def reset_fallbacks() -> None:
    """Forget every fallback decision and warning (kernels are tried again on the next call)."""
    for k in _KERNS:
        for key in [key for key, v in k._cache.items() if type(v) is _Eager]:
            k._cache.pop(key, None)
    _fast.clear()
    _WARNED.clear()


class _Eager:
    """A cache entry standing in for a kernel that failed on this signature: runs the eager version."""
    __slots__ = ("fn",)

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


# ---- configs ------------------------------------------------------------------------------------

_OVERRIDES: dict[str, Any] = _fast.OVERRIDES  # while one is set, no fast path (_fast.blocked)
# The config choices being recorded by record_choices(), or None.
_CHOICES: contextvars.ContextVar = contextvars.ContextVar("helion_ops_choices", default=None)


def record_choices() -> Any:
    """Within the block, each config choice an op makes appends (kernel name, (op, key shape, variant)): the
    pretuned key it looked up (bench.tune pairs them with ``helion_ops.dsl.runtime.record_launches()``)."""
    return recording(_CHOICES)
_MISSING = object()


@contextlib.contextmanager
def use_config(kernel: str, config: "Config | dict | Callable[[tuple], Config]") -> Iterator[None]:
    """Force ``kernel`` (by name) to run with ``config`` (or ``config(key shape)``, None there meaning
    the usual policy) inside the block (tests and benchmarks), e.g.
    ``with use_config("softmax_fwd", Config(reduction_loops=[256]))``."""
    old = _OVERRIDES.get(kernel, _MISSING)
    _OVERRIDES[kernel] = config
    try:
        yield
    finally:
        if old is _MISSING:
            _OVERRIDES.pop(kernel, None)
        else:
            _OVERRIDES[kernel] = old


EAGER = "eager"  # use_config(kernel, EAGER): run the kernel's eager twin (gradient checks in fp64)


_EAGER_ONLY: list = []


@contextlib.contextmanager
def eager_kernels() -> Iterator[None]:
    """Every kernel of every op runs its eager twin inside the block, and the ops accept float64 (the
    twins compute in the input's precision; the kernels accumulate in fp32, so fp64 is refused
    elsewhere): the op layer's whole path (checks, custom ops, autograd, backward ops) with exact math,
    for ``gradcheck`` / ``gradgradcheck``."""
    with contextlib.ExitStack() as stack:
        for name in {k.name for k in _KERNS}:
            stack.enter_context(use_config(name, EAGER))
        _EAGER_ONLY.append(True)
        try:
            yield
        finally:
            _EAGER_ONLY.pop()


def fit(bound: Any, cfg: "Config | dict") -> Config:
    """``cfg`` fitted into the bound kernel's ConfigSpace: block sizes clamped into their ranges (the
    ranges come from a dry run, so a default computed from the real shape may overshoot), standard
    knobs the kernel lacks dropped, the rest filled and validated (an unknown name raises)."""
    space = bound.config_space
    d = dict(cfg.to_dict() if isinstance(cfg, Config) else cfg)
    specs = space.spec.block_sizes
    blocks = d.get("block_sizes")
    if blocks and len(blocks) == len(specs):
        d["block_sizes"] = [max(s.min, min(s.max, int(v))) for v, s in zip(blocks, specs)]
    if d.get("range_warp_specializes") and not getattr(space.spec, "warp_specialize", True):
        del d["range_warp_specializes"]
    return space.normalize(Config(**d))


def _meta(args: tuple) -> tuple:
    return tuple(torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device="meta")
                 if isinstance(a, torch.Tensor) else a for a in args)


class Kern:
    """A DSL kernel as an op launches it.

    ``default(args)``: the op's analytic Config for these arguments. ``key(args)``: the shape dims that
    select a pretuned entry (default: the first argument's shape); ``exact``: those of them an entry
    must match exactly (all of them: only the tuned shapes use the table); ``variant(args)``: a layout
    the shape does not show (matmul's transposes); ``adjust(cfg, args)``: a last op-specific touch to
    whichever Config won. ``eager(*args)``: the kernel's outputs in PyTorch, the fallback (also run,
    without a launch, when a tensor argument is empty). ``fallback(cfg, args)``: the Config to run
    when ``cfg`` fails to compile or launch, or None for the eager version (see the module docstring).
    """

    def __init__(self, op: str, kernel: Any, default: Callable[[tuple], Any], *, eager: Callable,
                 key: Optional[Callable[[tuple], Sequence[int]]] = None, exact: Sequence[int] = (),
                 variant: Optional[Callable[[tuple], Optional[str]]] = None,
                 adjust: Optional[Callable[[Config, tuple], Config]] = None,
                 fallback: Optional[Callable[[Config, tuple], Optional[Config]]] = None) -> None:
        self.op, self.kernel, self.name = op, kernel, kernel.name
        self.fallback = fallback
        self.default, self.eager, self.exact = default, eager, tuple(exact)
        self.key = key or (lambda args: tuple(args[0].shape))
        self.variant, self.adjust = variant, adjust
        self._cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        _KERNS.append(self)

    # -- the one config policy --------------------------------------------------------------------
    def choose(self, bound: Any, args: tuple) -> Config:
        """The Config a call with ``args`` runs with (see the module docstring)."""
        ov = _OVERRIDES.get(self.name)
        if ov is not None:
            cfg = ov(tuple(self.key(args))) if callable(ov) and not isinstance(ov, (Config, dict)) else ov
            if cfg is not None:
                return bound.config_space.normalize(cfg)  # a test asked for it: say why it is invalid
        if self.kernel.configs:  # pinned on the kernel (tests, a user's tuning)
            return fit(bound, self.kernel.configs[0])
        adj = self.adjust or (lambda c, a: c)
        cfg = None
        key = [int(d) for d in self.key(args)]
        variant = self.variant(args) if self.variant else None
        log = _CHOICES.get()
        if log is not None:
            log.append((self.name, (self.op, key, variant)))
        try:
            from . import pretuned
            cfg = pretuned.lookup(self.op, self.name, args[0].dtype, key, variant=variant, exact=self.exact)
        except Exception:  # no table, or a broken one: it must not break the op
            cfg = None
        if cfg is not None:
            try:
                return fit(bound, adj(cfg, args))
            except Exception:
                pass  # a stale entry: the default
        return fit(bound, adj(Config(**dict(self.default(args))), args))

    def bound(self, *args: Any) -> Any:
        """The bound kernel for ``args`` (bound on meta copies: it keeps no tensor of the call)."""
        return self.kernel.bind(_meta(args))

    def config_for(self, *args: Any) -> Config:
        """The Config a call with ``args`` runs with (tests, the bench)."""
        return self.choose(self.bound(*args), args)

    # -- launching --------------------------------------------------------------------------------
    def __call__(self, *args: Any) -> Any:
        if _fast.observing and _fast.observer() is not None:
            return self._observed(args)
        run = self._cache.get(spec_key(args)) if not _OVERRIDES else None
        if run is None:
            run = self._first(args)
        try:
            return run(*args)
        except Exception as e:
            if type(run) is _Eager:
                raise  # the fallback itself failed: that is the caller's error
            return self._failed(e, args)

    def _observed(self, args: tuple) -> Any:
        """A launch in a call the fast path observes (_fast): its recipe calls the choice made here."""
        obs = _fast.observer()
        obs.paused += 1
        try:
            run = self._cache.get(spec_key(args)) if not _OVERRIDES else None
            if run is None:
                run = self._first(args)
            try:
                out = run(*args)
            except Exception as e:
                if type(run) is _Eager:
                    raise
                out = self._failed(e, args)
        finally:
            obs.paused -= 1
        obs.launch(run if self._cache.get(spec_key(args)) is run else None, args, out)
        return out

    def _first(self, args: tuple) -> Callable:
        if _OVERRIDES.get(self.name) == EAGER:
            return _Eager(self.eager)
        for a in args:
            if type(a) is torch.Tensor and a.numel() == 0:
                return _Eager(self.eager)  # nothing to launch
        try:
            bound = self.bound(*args)
            cfg = self.choose(bound, args)
        except Exception as e:
            if self.name in _OVERRIDES:
                raise
            kernel_failed(self.op, self.name, e)
            return self._remember(args, _Eager(self.eager))
        if self.name in _OVERRIDES:
            return lambda *a: bound.run(cfg, *a)
        with self._lock:
            bound.config = cfg
        return self._remember(args, bound)

    def _second(self, args: tuple) -> Optional[tuple]:
        """(bound kernel, Config) of the op's second choice after its cached choice failed on ``args``."""
        run = self._cache.get(spec_key(args))
        if self.fallback is None or self.name in _OVERRIDES or not isinstance(run, _runtime.BoundKernel):
            return None
        try:
            cfg = self.fallback(run.config, args)
            cfg = None if cfg is None else fit(run, cfg)
            return None if cfg is None or cfg == run.config else (run, cfg)
        except Exception:  # a broken second choice: the eager version
            return None

    def _remember(self, args: tuple, run: Callable) -> Callable:
        with self._lock:
            return self._cache.setdefault(spec_key(args), run)

    def _failed(self, err: Exception, args: tuple) -> Any:
        second = self._second(args)
        if second is not None:
            bound, cfg = second
            if not isinstance(err, NotSupported):  # raises under HELION_OPS_STRICT=1
                kernel_failed(self.op, self.name, err, instead=f"its {cfg.get('backend', 'triton')} Config")
            with self._lock:
                bound.config = cfg
                self._cache[spec_key(args)] = bound
            _fast.clear()  # recipes calling the failed choice
            try:
                return bound(*args)
            except Exception as e:
                return self._failed(e, args)  # the second choice failed too: eager (no third choice)
        kernel_failed(self.op, self.name, err)  # raises unless the eager version should run
        if self.name not in _OVERRIDES:
            with self._lock:
                self._cache[spec_key(args)] = _Eager(self.eager)
            _fast.clear()  # recipes calling the failed kernel
        return self.eager(*args)


class Route:
    """Which of an op's alternative kernels runs a call (matmul: one pass or split-K), by the same policy
    as Configs: a ``use_config`` override of an alternative forces it; else, among the alternatives
    with a pretuned entry for exactly this shape (and layout), the one with the lowest measured ms
    (a sweep that measured both writes both); else ``heuristic(args)``, the op's index. Chosen once
    per ``key(args)`` (default: the argument signature; cleared with the Configs by ``reset_caches``),
    which must hold everything the tables and the heuristic read (it runs on every call)."""

    def __init__(self, kerns: Sequence["Kern"], heuristic: Callable[[tuple], int],
                 key: Callable[[tuple], Any] = spec_key) -> None:
        self.kerns, self.heuristic, self.key = list(kerns), heuristic, key
        self._cache: dict[tuple, int] = {}
        _ROUTES.append(self)

    def __call__(self, args: tuple, alt_args: Callable[[], Sequence[tuple]]) -> int:
        """The index of the kernel to run; ``args`` key the cache, ``alt_args()`` gives the arguments
        each alternative would get (only computed on a cache miss)."""
        key = self.key(args)
        hit = None if _OVERRIDES else self._cache.get(key)
        if hit is not None:
            return hit
        for i, k in enumerate(self.kerns):
            if _OVERRIDES.get(k.name) not in (None, EAGER):
                return i
        ms = []
        for i, (k, a) in enumerate(zip(self.kerns, alt_args())):
            try:
                from . import pretuned
                t = pretuned.exact_ms(k.op, k.name, a[0].dtype, [int(d) for d in k.key(a)],
                                      variant=k.variant(a) if k.variant else None)
            except Exception:  # a broken table must not break the op
                t = None
            if t is not None:
                ms.append((t, i))
        choice = min(ms)[1] if ms else self.heuristic(args)
        self._cache[key] = choice
        return choice


# ---- ops ----------------------------------------------------------------------------------------

_SLOT = _fast.SLOT  # where a saved tensor input goes back
_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_tracing = torch._C._get_tracing_state
_Parameter = torch.nn.Parameter


def _dead_wrapper(args: tuple) -> bool:
    """Whether a tensor argument is a functorch wrapper outside its transform (kept from torch.func.grad)."""
    for a in args:
        if isinstance(a, torch.Tensor) and _wrapped(a):
            return True
    return False


def _is_tensor(a: Any) -> bool:
    return isinstance(a, torch.Tensor)


def _tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


class Op:
    """One op from its definition (see :func:`op`). Calling it runs the forward: through the custom op
    while torch.compile traces, through the autograd formula when a gradient is wanted, else directly
    (eager inference: no dispatcher, no autograd node)."""

    def __init__(self, name: str, forward: Callable, *, eager: Optional[Callable] = None, fake: Optional[Callable] = None,
                 backward: Optional[Callable] = None, save_outputs: Sequence[int] = ()) -> None:
        self.name, self.forward, self.eager = name, forward, eager
        self.fake = fake or (lambda *a: eager(*a))
        self.backward, self.save_outputs = backward, tuple(save_outputs)
        schema = torch.library.infer_schema(forward, mutates_args=())
        self.n_out = schema.split("->")[1].count("Tensor")
        self.custom = torch.library.custom_op(f"helion_ops::{name}", self.impl, mutates_args=(), schema=schema)
        self.custom.register_fake(self.fake)
        self.Function = self.EagerFunction = None
        if backward is not None:
            self.custom.register_autograd(self._backward, setup_context=self._setup)
            # torch.func needs a separate setup_context (and a vmap rule) ...
            self.Function = type(f"{name}_function", (torch.autograd.Function,), {
                "forward": staticmethod(self.impl), "setup_context": staticmethod(self._setup),
                "backward": staticmethod(self._backward), "vmap": staticmethod(self._vmap)})
            # ... which makes every apply() bind its arguments through inspect.signature (tens of us of
            # host time); plain eager training takes the same formula in the one-step form, applied
            # through the C entry point (Function.apply's Python wrapper only serves torch.func, which
            # takes self.Function), and its backward node calls _backward without the generic lookup.
            eager_fn = type(f"{name}_eager_function", (torch.autograd.Function,), {
                "forward": staticmethod(self._forward_with_ctx), "backward": staticmethod(self._backward)})
            eager_fn._backward_cls.apply = lambda node, *grads: self._backward(node, *grads)
            self.EagerFunction = eager_fn
            self._apply = _fast.C_APPLY.__get__(None, eager_fn)
            # Its fast form: one GradSpec (autograd.Function) per argument specialization, which replays
            # the forward's and the backward's launches (helion_ops/_fast.py).
            self._specs: dict = {}
            _fast.MEMOS.append(self._specs)

    def _forward_with_ctx(self, ctx: Any, *args: Any) -> Any:
        out = self.impl(*args)
        self._setup(ctx, args, out)
        return out

    def impl(self, *args: Any) -> Any:
        """The forward on validated inputs: shapes only on meta tensors, else the kernels."""
        if args[0].is_meta:
            return self.fake(*args)
        return self.forward(*args)

    def __call__(self, *args: Any) -> Any:
        # The hot path of every call: attribute and type tests only, no allocation.
        if _fast.observing:  # a public call observed under grad: its recipe calls the op (this path)
            obs = _fast.observer()
            if obs is not None and obs.ops:
                direct = self._direct(args)
                spec = self._spec(args) if direct is self._apply else None
                return obs.call(spec.apply, args) if spec is not None else obs.call(self, args, direct)
        if torch.compiler.is_compiling() or _tracing() is not None:  # the graph must hold the custom op
            return self.custom(*args)
        fn = self.Function
        if fn is not None and torch._C._are_functorch_transforms_active():
            return fn.apply(*args)
        grad = fn is not None and torch.is_grad_enabled()
        for a in args:
            t = type(a)
            if t is torch.Tensor or t is _Parameter:
                if grad and a.requires_grad:
                    # A tensor leaked out of a torch.func transform ("dead wrapper") needs Function.apply's
                    # unwrapping; everything else takes the C entry point, its specialization's if it can.
                    if _dead_wrapper(args):
                        return self.EagerFunction.apply(*args)
                    spec = None if _fast.blocked() else self._spec(args)
                    return (self._apply if spec is None else spec.apply)(*args)
            elif isinstance(a, torch.Tensor):
                return self.custom(*args)  # a tensor subclass: let it dispatch
        return self.impl(*args)

    def _direct(self, args: tuple) -> Callable:
        """What ``__call__`` runs for ``args`` outside torch.compile, tracing, transforms and modes (the
        recipe of a public call observed under grad calls it): the autograd formula's C entry point,
        the forward itself, or, for a tensor subclass, this whole path."""
        grad = self.Function is not None and torch.is_grad_enabled()
        for a in args:
            t = type(a)
            if t is torch.Tensor or t is _Parameter:
                if grad and a.requires_grad:
                    return self._apply
            elif isinstance(a, torch.Tensor):
                return self
        return self.impl

    # -- autograd ---------------------------------------------------------------------------------
    def _spec(self, args: tuple) -> Optional[_fast.GradSpec]:
        """The GradSpec of ``args``' specialization (made on its first call), or None: the ordinary entry."""
        k = _fast.key(args, True)
        if k is None:
            return None
        spec = self._specs.get(k)
        if spec is None and len(self._specs) < _fast.LIMIT:
            spec = self._specs.setdefault(k, _fast.GradSpec(self, args))
        return spec

    def _setup(self, ctx: Any, inputs: tuple, output: Any) -> None:
        tensors, template = [], []
        for a in inputs:
            if isinstance(a, torch.Tensor):
                tensors.append(a)
                template.append(_SLOT)
            else:
                template.append(a)
        ctx.n_in = len(tensors)
        ctx.template = template
        if self.n_out == 1:
            ctx.save_for_backward(*tensors, *((output,) if self.save_outputs else ()))
            return
        ctx.save_for_backward(*tensors, *(output[i] for i in self.save_outputs))
        # The outputs after the first are statistics: no gradient flows to them, none is materialised.
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)

    def _backward(self, ctx: Any, *grads: Any) -> tuple:
        saved = ctx.saved_tensors
        n = ctx.n_in
        inputs = list(ctx.template)
        j = 0
        for i, a in enumerate(inputs):
            if a is _SLOT:
                inputs[i] = saved[j]
                j += 1
        if grads[0] is None:  # the output was not used (only its statistics)
            return (None,) * len(inputs)
        if torch.is_grad_enabled():  # create_graph=True or torch.func: a differentiable gradient
            return self._graph_backward(inputs, grads[:1], ctx.needs_input_grad)
        return tuple(self.backward(inputs, saved[n:], ctx.needs_input_grad, *grads))

    def _graph_backward(self, inputs: tuple, grads: tuple, needs: Sequence[bool]) -> tuple:
        """The gradient through the eager definition under autograd (see the module docstring)."""
        wrt = [i for i, a in enumerate(inputs) if needs[i] and _is_tensor(a)]
        outs = _tuple(self.eager(*inputs))
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        got = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wrt], [g for _, g in pairs],
                                  create_graph=True, allow_unused=True) if pairs and wrt else [None] * len(wrt)
        res: list = [None] * len(inputs)
        for i, g in zip(wrt, got):
            res[i] = torch.zeros_like(inputs[i]) if g is None else g
        return tuple(res)

    def _vmap(self, info: Any, in_dims: tuple, *args: Any) -> tuple:
        """vmap: the op once per batch element, stacked (correct for every op; not fast)."""
        outs = [_tuple(self.Function.apply(*[a.select(d, i) if d is not None else a for a, d in zip(args, in_dims)]))
                for i in range(info.batch_size)]
        stacked = tuple(torch.stack(col) for col in zip(*outs))
        return (stacked[0], 0) if self.n_out == 1 else (stacked, (0,) * len(stacked))


def public(fn: Callable) -> Callable:
    """Decorator of an op's public function: after its first call with a specialization (argument
    dtypes, shapes, strides, devices and values), later ones replay what it did there, its checks,
    layout and routing skipped (helion_ops/_fast.py says when, and when not)."""
    return _fast.memoize(fn)


def op(name: str, *, eager: Optional[Callable] = None, fake: Optional[Callable] = None, backward: Optional[Callable] = None,
       save_outputs: Sequence[int] = ()) -> Callable[[Callable], Op]:
    """Decorator: the :class:`Op` ``helion_ops::<name>`` whose forward is the decorated function.

    The function takes validated tensors (and ints, floats, bools, strings), is annotated (the custom
    op's schema comes from its annotations) and calls Kerns. ``eager``: the same outputs in PyTorch,
    differentiable: the fake (meta) implementation unless ``fake`` is given, and, for an op with a
    backward, the definition its higher-order gradients differentiate. One of the two is required.
    ``backward(inputs, saved_outputs, needs_input_grad, *grads)``: one gradient per input (None where
    not needed), from the backward's own Ops; ``save_outputs``: the outputs it needs (the tensor
    inputs are always saved). The first output is the differentiable one; any others are statistics
    (saved for the backward, no gradient)."""
    def wrap(fn: Callable) -> Op:
        return Op(name, fn, eager=eager, fake=fake, backward=backward, save_outputs=save_outputs)
    return wrap
