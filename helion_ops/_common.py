"""Shared infrastructure of the catalog ops (softmax, layer_norm, rms_norm, ...).

Input handling
--------------
* ``check_*`` validate public arguments and raise a subclass of
  :class:`helion_ops.errors.InputError` (``DtypeError``, ``DeviceError``, ``ShapeError``...)
  naming the offending argument and what was expected. They are attribute checks only: no tensor
  ops, no allocations.
* :func:`as_rows` flattens an input of any rank to ``[M, N]`` rows (N = the
  normalised trailing size) with ``x.reshape(-1, N)``, which is a view, not a
  copy, whenever the layout allows it (contiguous inputs, row-sliced views,
  leading-dim permutations that keep the rows dense...). The DSL kernels are
  stride-aware in the row dimension (strides are compile-time constants of
  each specialisation), so a view whose rows are not packed, e.g.
  ``x[:, :N]`` of a wider tensor, runs in place. Only when the reduced
  (last) dimension is not unit-stride, e.g. a transposed view, is the input
  made contiguous, once, with ``.contiguous()``: the kernels need coalesced
  rows to run at bandwidth, and a copy costs less than a strided read.

Configs
-------
:func:`pick_config` returns the Config a kernel runs with: a test/benchmark
override (:func:`use_config`), else the pretuned entry for the GPU arch
(``helion_ops.dsl.pretuned.lookup``, nearest power-of-two bucket, or the exact
shape where a :class:`Launcher` says ``exact``), else the op's own shape-based
default. :class:`Launcher` caches the bound kernel and its Config per argument
signature, so a repeated call costs a dict lookup plus the DSL's launch.

Fallback
--------
When a kernel fails to compile or launch (unsupported arch, out of shared memory or registers, a
Triton or driver error), :func:`kernel_failed` decides: bad input (``InputError``) and CUDA
out-of-memory always propagate; with ``HELION_OPS_STRICT=1`` a :class:`LaunchError` is raised;
otherwise one :class:`FallbackWarning` per (op, reason) is issued and the caller runs the op's eager
PyTorch version. The failed specialisation is remembered (the Launcher cache entry, or the bound
kernel's ``_op_config_chosen`` set to :data:`EAGER`), so later calls go straight to eager without
retrying the compile. :func:`reset_fallbacks` forgets all that (tests).
"""
from __future__ import annotations

import contextlib
import math
import os
import warnings
from typing import Any, Callable, Iterator, Sequence

import torch

from .dsl import exc
from .dsl.config import Config
from .dsl.runtime import spec_key
from .errors import (ArgumentTypeError, DeviceError, DtypeError, FallbackWarning, IndexOverflowError,
                     InputError, LaunchError, ShapeError)

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


# ---- validation ---------------------------------------------------------------------------------

def interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_tensor(op: str, name: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise ArgumentTypeError(f"{op}(): argument '{name}' must be a torch.Tensor, got {type(t).__name__}")


def check_dtype(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise DtypeError(f"{op}(): argument '{name}' has dtype {t.dtype}; supported dtypes are "
                         f"torch.float32, torch.float16 and torch.bfloat16")


def check_device(op: str, name: str, t: torch.Tensor) -> None:
    """CUDA tensors normally; CPU tensors only under the Triton interpreter (TRITON_INTERPRET=1)."""
    dev = t.device.type
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


def check_same_device(op: str, ref_name: str, ref: torch.Tensor, name: str, t: torch.Tensor) -> None:
    if t.device != ref.device:
        raise DeviceError(f"{op}(): argument '{name}' is on {t.device} but '{ref_name}' is on {ref.device}; "
                          f"all tensors must be on one device")


def check_input(op: str, x: Any, name: str = "input") -> None:
    """The main input: a floating-point tensor (device checked where the kernel runs)."""
    check_tensor(op, name, x)
    check_dtype(op, name, x)


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
            raise ArgumentTypeError(f"{op}(): argument 'normalized_shape' must be an int or a sequence of ints, "
                             f"got {normalized_shape!r}") from None
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in ns):
        raise ArgumentTypeError(f"{op}(): argument 'normalized_shape' must be an int or a sequence of ints, "
                                f"got {normalized_shape!r}")
    if not ns or x.dim() < len(ns) or tuple(x.shape[x.dim() - len(ns):]) != ns:
        raise ShapeError(f"{op}(): argument 'normalized_shape' {list(ns)} does not match the trailing "
                         f"dims of input of shape {list(x.shape)}")
    return ns, math.prod(ns)


def check_param(op: str, name: str, p: Any, x: torch.Tensor, ns: tuple[int, ...]) -> None:
    """An optional affine parameter (weight/bias): shape == normalized_shape, same dtype and device as x."""
    if p is None:
        return
    check_tensor(op, name, p)
    if tuple(p.shape) != tuple(ns):
        raise ShapeError(f"{op}(): argument '{name}' has shape {list(p.shape)}; expected normalized_shape "
                         f"{list(ns)}")
    if p.dtype != x.dtype:
        raise DtypeError(f"{op}(): argument '{name}' has dtype {p.dtype} but input has dtype {x.dtype}; "
                         f"they must match")
    check_same_device(op, "input", x, name, p)


def check_float(op: str, name: str, v: Any) -> float:
    """A Python number argument (eps, scale), as float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgumentTypeError(f"{op}(): argument '{name}' must be a float, got {type(v).__name__}")
    return float(v)


# ---- fallback -----------------------------------------------------------------------------------

EAGER = "eager"  # value of ``bound._op_config_chosen`` once a specialisation fell back to eager


class UseEager(Exception):
    """Internal: this specialisation already fell back to eager (no new warning)."""


def strict() -> bool:
    """``HELION_OPS_STRICT=1``: a kernel that fails to compile or launch raises instead of falling back."""
    return os.environ.get("HELION_OPS_STRICT", "0") not in ("", "0")


_WARNED: set = set()
_FELL_BACK: list = []  # (object, attribute or cache key) to undo in reset_fallbacks()


def _reason(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


def kernel_failed(op: str, kernel: str, err: BaseException, bound: Any = None) -> None:
    """Called from an ``except`` around a kernel's bind/compile/launch; returns when the caller should run
    its eager fallback, else raises.

    Bad input (:class:`InputError`) and CUDA out-of-memory propagate unchanged (they are not fallback
    cases); with ``HELION_OPS_STRICT=1`` a :class:`LaunchError` naming the op and the reason is raised
    from ``err``; otherwise one :class:`FallbackWarning` per (op, reason) is issued, and ``bound`` (if
    given) is marked so its later calls go straight to eager.
    """
    if isinstance(err, UseEager):
        return
    if isinstance(err, InputError) or isinstance(err, torch.cuda.OutOfMemoryError) or \
            getattr(err, "_helion_ops_strict", False):  # bad input, OOM, or decided by an inner call
        raise err
    reason = _reason(err)
    if strict():
        le = LaunchError(f"{op}(): kernel '{kernel}' failed to compile or launch ({reason}); "
                         f"HELION_OPS_STRICT=1 disables the eager fallback")
        le._helion_ops_strict = True
        raise le from err
    if bound is not None:
        bound._op_config_chosen = EAGER
        _FELL_BACK.append((bound, None))
    if (op, reason) not in _WARNED:
        _WARNED.add((op, reason))
        warnings.warn(FallbackWarning(f"helion_ops.{op}: kernel '{kernel}' failed to compile or launch "
                                      f"({reason}); running the eager PyTorch fallback instead "
                                      f"(set HELION_OPS_STRICT=1 to raise)"), stacklevel=3)


def reset_fallbacks() -> None:
    """Forget every fallback decision and warning (kernels are tried again on the next call)."""
    for obj, key in _FELL_BACK:
        if key is None:
            if getattr(obj, "_op_config_chosen", None) == EAGER:
                obj._op_config_chosen = False
        else:
            obj._cache.pop(key, None)
    _FELL_BACK.clear()
    _WARNED.clear()


class _EagerEntry:
    """A Launcher cache entry standing in for a bound kernel that failed: calls the eager version."""
    __slots__ = ("fn",)

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


# ---- layout -------------------------------------------------------------------------------------

def as_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` as ``[M, n]`` rows: a view when possible; contiguous (one copy) when the last dim is strided."""
    if x.dim() == 2 and (n <= 1 or x.stride(1) == 1):
        return x  # already rows (fast path: no reshape)
    x2 = x.reshape(-1, n) if n > 0 else x.reshape(-1, 0)
    if n > 1 and x2.stride(1) != 1:
        x2 = x2.contiguous()
    return x2


def as_vector(p: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """A weight/bias as a unit-stride vector of length n."""
    if p is None or (p.dim() == 1 and (n <= 1 or p.stride(0) == 1)):
        return p
    v = p.reshape(n)
    return v if v.stride(0) == 1 or n <= 1 else v.contiguous()


# ---- configs ------------------------------------------------------------------------------------

_OVERRIDES: dict[str, Any] = {}


@contextlib.contextmanager
def use_config(kernel: str, config: "Config | dict | Callable[[Sequence[int]], Config]") -> Iterator[None]:
    """Force ``kernel`` (by name) to run with ``config`` (or ``config(shape)``) inside the block.

    For tests and benchmarks: e.g. ``with use_config("softmax_fwd", Config(reduction_loops=[256]))``.
    """
    old = _OVERRIDES.get(kernel, _MISSING)
    _OVERRIDES[kernel] = config
    try:
        yield
    finally:
        if old is _MISSING:
            _OVERRIDES.pop(kernel, None)
        else:
            _OVERRIDES[kernel] = old


_MISSING = object()


def _kernel_name(kernel: Any) -> str:
    return kernel if isinstance(kernel, str) else getattr(kernel, "name", None) or kernel.__name__


def pick_config(op: str, kernel: Any, dtype: torch.dtype, shape: Sequence[int],
                default: "Config | Callable[[], Config]", exact: Sequence[int] = ()) -> Config:
    """The Config for one call: override, else pretuned (nearest bucket), else ``default``.

    ``kernel`` is a Kernel or its name; ``default`` a Config or a no-argument callable. The pretuned
    table (``helion_ops.dsl.pretuned``) is optional: when it is missing, broken or has no entry (always
    the case on CPU), the default is used. ``exact``: the shape dims a table entry must match (see
    ``pretuned.lookup``); with every dim listed, only the tuned shapes themselves use the table.
    """
    name = _kernel_name(kernel)
    ov = _OVERRIDES.get(name)
    if ov is not None:
        cfg = ov(tuple(shape)) if callable(ov) and not isinstance(ov, (Config, dict)) else ov
        return cfg if isinstance(cfg, Config) else Config(**cfg)
    cfg = None
    try:
        from .dsl import pretuned
        cfg = pretuned.lookup(op, name, dtype, list(shape), exact=exact)
    except Exception:  # ImportError while pretuned.py is absent; a broken table must not break the op
        cfg = None
    if cfg is not None:
        return cfg
    return default() if callable(default) and not isinstance(default, Config) else default


def row_config(m: int, n: int, *, block_m: int | None = None, loop_above: int = 32768,
               chunk: int | None = None, num_stages: int = 1) -> Config:
    """Default Config of a row-reduction kernel ``for tile_m in hl.tile(m): x[tile_m, :]``.

    Persistent (the whole row in registers) for next_pow2(n) <= ``loop_above`` (32K: on the H100 a
    persistent 32K-lane row with 16 warps ran at 2.8-2.9 TB/s in bf16 where chunked loops gave 1.8-2.1),
    with num_warps growing with the row: 4 up to 2K, 8 up to 8K, 16 above; several rows per program for
    short rows, so each program moves ~4K elements. Larger rows loop over chunks of ``chunk`` (8192)
    with 16 warps.
    """
    p = next_pow2(n)
    if p <= loop_above:
        warps = 4 if p <= 2048 else 8 if p <= 8192 else 16
        bm = block_m if block_m is not None else max(1, min(16, 4096 // p))
        return Config(block_sizes=[max(1, min(bm, next_pow2(m)))], reduction_loops=[None], num_warps=warps, num_stages=num_stages)
    c = chunk or 8192
    return Config(block_sizes=[block_m or 1], reduction_loops=[min(c, p // 2)], num_warps=16,
                  num_stages=num_stages)


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def num_sms() -> int:
    from .dsl.runtime import num_sms as _n
    return _n()


def rows_per_program(m: int, programs_per_sm: int = 2) -> int:
    """Rows each program of a partial-sum backward handles (a power of two): about
    ``programs_per_sm`` programs per SM, so the [programs, N] fp32 partials stay small."""
    target = max(1, num_sms() * programs_per_sm)
    return max(1, min(next_pow2(-(-m // target)), 1 << 20))


def norm_bwd_config(m: int, n: int, partials: bool = True) -> Config:
    """Default Config of the partial-sum norm backward kernels: ``block_sizes=[rows, sub, cols]``
    (``partials=False``: no weight or bias, so no partial sums to reduce and ``cols`` is unused).

    From the H100 sweep (bf16, M >= 16K): about two programs per SM up to 4K columns and one above,
    one row per inner step from 4K columns (several for short rows: ~4K elements a step), 8 warps at
    4K columns and 16 above. The row loop is software-pipelined three deep (``range_num_stages``: the
    next rows' loads in flight while this row reduces), which ``bench.norm_sweep --mode bwd`` kept on
    10 of the 12 H100 shapes with N >= 4096 (1.07-1.29x; neutral on the other two); for shorter rows
    an H100 probe on shapes outside the table (N = 512-2048, M = 8K-64K, both norms) measured it
    1.08-1.25x faster on 9 of 10. ``cols`` is the column block of the second loop, which sums the
    [programs, N] partials: about 8K of them per program. The shipped sm90 table overrides this on
    its own shapes only (the norm backwards look entries up by exact shape: see their Launchers).
    """
    p = next_pow2(n)
    warps = 4 if p <= 2048 else 8 if p <= 4096 else 16
    rows = rows_per_program(m, programs_per_sm=2 if p <= 4096 else 1)
    sub = max(1, min(rows, 4096 // p))
    # The column block exists in either case (blocks come from the kernel's source) but is unused
    # without partials; the partials' row dim is then no second reduction.
    cols = max(1, min(p, 4096, 8192 // next_pow2(-(-m // rows)))) if partials else 1
    return Config(block_sizes=[rows, sub, cols], reduction_loops=[None, None] if partials else [None],
                  num_warps=warps, num_stages=1, range_num_stages=[3])


def clamp_blocks(bound: Any, cfg: Config) -> Config:
    """``cfg`` with each block size clamped into the bound kernel's range for it (the range comes from
    a dry run with 16-wide blocks, so an op's default, computed from the real shape, may overshoot)."""
    blocks = cfg.get("block_sizes")
    specs = bound.config_space.spec.block_sizes
    if not blocks or len(blocks) != len(specs):
        return cfg  # normalize() will say what is wrong
    fitted = [max(s.min, min(s.max, int(v))) for v, s in zip(blocks, specs)]
    return cfg if fitted == list(blocks) else cfg.replace(block_sizes=fitted)


class Launcher:
    """Runs a DSL kernel with a per-signature cached (BoundKernel, Config).

    ``default(shape)`` gives the op's default Config for the ``key_shape`` of the args; ``key_shape(args)``
    says which dims select the config (e.g. ``[M, N]``). Overrides (:func:`use_config`) bypass the cache.
    ``eager(*args)`` computes the kernel's outputs with PyTorch: the fallback when the kernel fails to
    compile or launch (see :func:`kernel_failed`); the failed signature then maps to it in the cache.
    ``exact``: the key dims a pretuned entry must match (:func:`pick_config`).
    """

    def __init__(self, op: str, kernel: Any, default: Callable[[tuple], Config],
                 key_shape: Callable[[tuple], tuple] | None = None, eager: Callable | None = None,
                 exact: Sequence[int] = ()) -> None:
        self.op, self.kernel, self.default, self.eager, self.exact = op, kernel, default, eager, tuple(exact)
        self.key_shape = key_shape or (lambda args: tuple(args[0].shape))
        self.name = _kernel_name(kernel)
        self._cache: dict[tuple, tuple] = {}

    def entry(self, args: tuple) -> tuple:
        key = spec_key(args)
        hit = self._cache.get(key)
        if hit is not None and self.name not in _OVERRIDES:
            return hit
        bound = self.kernel.bind(args)
        shape = self.key_shape(args)
        dtype = args[0].dtype
        dflt = clamp_blocks(bound, self.default(shape))
        cfg = pick_config(self.op, self.name, dtype, shape, dflt, self.exact)
        try:
            cfg = bound.config_space.normalize(cfg)
        except Exception:
            if self.name in _OVERRIDES:
                raise  # a test asked for this config: say why it is invalid
            cfg = bound.config_space.normalize(dflt)  # a stale pretuned entry: use the default
        hit = (bound, cfg)
        if self.name not in _OVERRIDES:
            bound.config = cfg
            self._cache[key] = hit
        return hit

    def __call__(self, *args: Any) -> Any:
        try:
            if not _OVERRIDES:
                bound = self._cache.get(spec_key(args))
                if bound is not None:
                    return bound[0](*args)  # runs bound.config (= the cached Config), reusing its run context
            bound, cfg = self.entry(args)
            return bound.run(cfg, *args)
        except Exception as e:
            return self._failed(e, args)

    def _failed(self, err: Exception, args: tuple) -> Any:
        key = spec_key(args)
        hit = self._cache.get(key)
        if self.eager is None or (hit is not None and isinstance(hit[0], _EagerEntry)):
            raise err  # no fallback, or the fallback itself failed
        kernel_failed(self.op, self.name, err)
        if self.name not in _OVERRIDES:
            self._cache[key] = (_EagerEntry(self.eager), None)
            _FELL_BACK.append((self, key))
        return self.eager(*args)

    def config_for(self, *args: Any) -> Config:
        """The Config a call with ``args`` runs with (for tests and the bench)."""
        return self.entry(args)[1]
