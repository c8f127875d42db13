"""The autotuner: search (search.py) x measurement (bench.py) x disk cache
(cache.py), tied together by ``autotune``.

Typical use from the runtime::

    cfg = autotune(bound, args, kernel.autotune_effort,
                   seeds=pretuned_configs, cache_key=(source_hash, spec_key))
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Optional, Sequence

from ..config import Config, heuristic_configs
from .bench import Benchmarker, Precompiler, compare
from .cache import AutotuneCache, atomic_write_json, environment, source_hash
from .progress import Progress, progress_enabled
from .search import (EFFORT_ENV, EFFORTS, Effort, Evaluator, differential_evolution, pattern_search,
                     resolve_effort, search)

__all__ = [
    "autotune", "search", "differential_evolution", "pattern_search", "resolve_effort", "Effort", "EFFORTS",
    "EFFORT_ENV", "Evaluator", "Benchmarker", "Precompiler", "compare", "AutotuneCache", "atomic_write_json",
    "environment", "source_hash", "Progress", "progress_enabled", "args_key",
]


def args_key(args: Sequence[Any]) -> tuple:
    """A fallback specialization key: dtype/shape/stride/device of tensor
    args, repr of the rest."""
    import torch
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append((str(a.dtype), tuple(a.shape), tuple(a.stride()), a.device.type))
        else:
            out.append(repr(a))
    return tuple(out)


def autotune(bound: Any, args: Sequence[Any], effort: Any = "quick", *,
             reference: Optional[Callable[..., Any]] = None, progress: bool = True,
             seeds: Sequence[Any] = (), cache: Any = None, cache_key: Optional[tuple] = None,
             objective: Optional[Callable[[Config], float]] = None, rng: Optional[random.Random] = None,
             time_limit: Optional[float] = None, compile_timeout: float = 60.0,
             workers: Optional[int] = None) -> Config:
    """Find a fast, correct Config for ``bound`` on ``args``.

    - ``effort``: "none" | "quick" | "full" (or an Effort);
      ``$HELION_AUTOTUNE_EFFORT`` overrides it. "none" returns the first
      valid seed, else the default config, without measuring anything.
    - ``seeds``: configs to start from (pretuned entries, user ``configs=``);
      the default and ``heuristic_configs`` are added.
    - ``cache``: an AutotuneCache, None for the default one, False for none.
      ``cache_key=(kernel_source_hash, specialization_key)``; without it the
      key hashes the default config's generated code and ``args_key(args)``.
    - ``objective``: replaces the Benchmarker (tests, custom timing).
    - ``reference``: expected outputs come from ``reference(*args)`` instead
      of the default config.
    Returns a complete Config (``bound.config_space.normalize``d). A run
    where every candidate failed returns the default and caches nothing.
    """
    prof = resolve_effort(effort, time_limit)
    space = bound.config_space
    default = space.normalize(bound.default_config())
    all_seeds = [*seeds, default]
    if prof.name == "none":
        return search(space, lambda c: math.nan, prof, seeds=all_seeds)[0]
    store = None if cache is False else (cache if cache is not None else AutotuneCache())
    key = None
    if store is not None:
        if cache_key is None:
            cache_key = (source_hash(bound.to_triton_code(default)), args_key(args))
        key = store.key(*cache_key)
        hit = store.get(key)
        if hit is not None:
            try:
                return space.normalize(hit)
            except ValueError:
                pass  # the space changed under the same key: retune
    all_seeds += heuristic_configs(space.spec)
    prog = Progress(progress, desc=getattr(bound, "name", None) or "autotune")
    if prof.time_limit is not None:
        # One hung compile must not eat a quick run's whole wall-clock cap.
        compile_timeout = min(compile_timeout, max(5.0, 0.6 * prof.time_limit))
    bench = objective if objective is not None else Benchmarker(
        bound, args, reps=prof.reps, reference=reference, compile_timeout=compile_timeout,
        workers=workers, progress=prog)
    try:
        best, best_t, history = search(space, bench, prof, seeds=all_seeds, rng=rng, progress=prog)
        if best is not None and math.isfinite(best_t) and hasattr(bench, "confirm"):
            best, best_t = bench.confirm(history, k=prof.confirm_top)
    except BaseException:
        prog.close()
        raise
    finally:
        if hasattr(bench, "close"):
            bench.close()
    if best is None or not math.isfinite(best_t):
        prog.close(f"no candidate succeeded out of {len(history)}; using the default config")
        return default
    prog.close(f"best {best_t * 1e3:.4f} ms after {len(history)} candidates ({prof.name}): {best!r}")
    if store is not None and key is not None:
        store.put(key, best, time_s=best_t, evaluated=len(history), effort=prof.name)
    return best
