"""Shared infrastructure of the catalog ops (softmax, layer_norm, rms_norm, ...).

Input handling
--------------
* ``check_*`` validate public arguments and raise
  :class:`helion_ops.dsl.exc.InputError` naming the offending argument.
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
(``helion_ops.dsl.pretuned.lookup``, nearest power-of-two bucket), else the
op's own shape-based default. :class:`Launcher` caches the bound kernel and
its Config per argument signature, so a repeated call costs a dict lookup
plus the DSL's launch.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Callable, Iterator, Sequence

import torch

from .dsl import exc
from .dsl.config import Config
from .dsl.runtime import spec_key

InputError = exc.InputError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


# ---- validation ---------------------------------------------------------------------------------

def interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_tensor(op: str, name: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{op}(): argument '{name}' must be a torch.Tensor, got {type(t).__name__}")


def check_dtype(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise InputError(f"{op}(): argument '{name}' has dtype {t.dtype}; supported dtypes are "
                         f"torch.float32, torch.float16 and torch.bfloat16")


def check_device(op: str, name: str, t: torch.Tensor) -> None:
    """CUDA tensors normally; CPU tensors only under the Triton interpreter (TRITON_INTERPRET=1)."""
    dev = t.device.type
    if dev == "meta":
        return
    interp = interpret_mode()
    if dev == "cpu" and not interp:
        raise InputError(f"{op}(): argument '{name}' is a CPU tensor; helion_ops runs on CUDA tensors "
                         f"(or on CPU tensors under the Triton interpreter, TRITON_INTERPRET=1)")
    if dev == "cuda" and interp:
        raise InputError(f"{op}(): argument '{name}' is a CUDA tensor but TRITON_INTERPRET=1 runs on CPU tensors")
    if dev not in ("cpu", "cuda"):
        raise InputError(f"{op}(): argument '{name}' is on device '{t.device}', which helion_ops does not support")


def check_same_device(op: str, ref_name: str, ref: torch.Tensor, name: str, t: torch.Tensor) -> None:
    if t.device != ref.device:
        raise InputError(f"{op}(): argument '{name}' is on {t.device} but '{ref_name}' is on {ref.device}")


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
            raise InputError(f"{op}(): argument 'normalized_shape' must be an int or a sequence of ints, "
                             f"got {normalized_shape!r}") from None
    if not ns or not all(isinstance(d, int) and not isinstance(d, bool) for d in ns) or \
            x.dim() < len(ns) or tuple(x.shape[x.dim() - len(ns):]) != ns:
        raise InputError(f"{op}(): argument 'normalized_shape' {list(ns)} does not match the trailing "
                         f"dims of input of shape {list(x.shape)}")
    return ns, math.prod(ns)


def check_param(op: str, name: str, p: Any, x: torch.Tensor, ns: tuple[int, ...]) -> None:
    """An optional affine parameter (weight/bias): shape == normalized_shape, same dtype and device as x."""
    if p is None:
        return
    check_tensor(op, name, p)
    if tuple(p.shape) != tuple(ns):
        raise InputError(f"{op}(): argument '{name}' has shape {list(p.shape)}; expected normalized_shape "
                         f"{list(ns)}")
    if p.dtype != x.dtype:
        raise InputError(f"{op}(): argument '{name}' has dtype {p.dtype} but input has dtype {x.dtype}; "
                         f"they must match")
    check_same_device(op, "input", x, name, p)


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
                default: "Config | Callable[[], Config]") -> Config:
    """The Config for one call: override, else pretuned (nearest bucket), else ``default``.

    ``kernel`` is a Kernel or its name; ``default`` a Config or a no-argument callable. The pretuned
    table (``helion_ops.dsl.pretuned``) is optional: when it is missing, broken or has no entry (always
    the case on CPU), the default is used.
    """
    name = _kernel_name(kernel)
    ov = _OVERRIDES.get(name)
    if ov is not None:
        cfg = ov(tuple(shape)) if callable(ov) and not isinstance(ov, (Config, dict)) else ov
        return cfg if isinstance(cfg, Config) else Config(**cfg)
    cfg = None
    try:
        from .dsl import pretuned
        cfg = pretuned.lookup(op, name, dtype, list(shape))
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


def norm_bwd_config(m: int, n: int) -> Config:
    """Default Config of the partial-sum norm backward kernels (``block_sizes=[rows, sub]``).

    From the H100 sweep (bf16, M >= 16K): about two programs per SM up to 4K columns and one above,
    one row per inner step from 4K columns (several for short rows: ~4K elements a step), 8 warps at
    4K columns and 16 above. The shipped sm90 table overrides this on its shapes.
    """
    p = next_pow2(n)
    warps = 4 if p <= 2048 else 8 if p <= 4096 else 16
    rows = rows_per_program(m, programs_per_sm=2 if p <= 4096 else 1)
    sub = max(1, min(rows, 4096 // p))
    return Config(block_sizes=[rows, sub], reduction_loops=[None], num_warps=warps, num_stages=1)


class Launcher:
    """Runs a DSL kernel with a per-signature cached (BoundKernel, Config).

    ``default(shape)`` gives the op's default Config for the ``key_shape`` of the args; ``key_shape(args)``
    says which dims select the config (e.g. ``[M, N]``). Overrides (:func:`use_config`) bypass the cache.
    """

    def __init__(self, op: str, kernel: Any, default: Callable[[tuple], Config],
                 key_shape: Callable[[tuple], tuple] | None = None) -> None:
        self.op, self.kernel, self.default = op, kernel, default
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
        dflt = self.default(shape)
        cfg = pick_config(self.op, self.name, dtype, shape, dflt)
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
        if not _OVERRIDES:
            bound = self._cache.get(spec_key(args))
            if bound is not None:
                return bound[0](*args)  # runs bound.config (= the cached Config), reusing its run context
        bound, cfg = self.entry(args)
        return bound.run(cfg, *args)

    def config_for(self, *args: Any) -> Config:
        """The Config a call with ``args`` runs with (for tests and the bench)."""
        return self.entry(args)[1]
