"""The autotuner: search (search.py) x measurement (bench.py) x disk cache (cache.py), tied together by
``autotune(bound, args, effort, seeds=pretuned_configs, cache_key=(source_hash, spec_key))``."""
from __future__ import annotations

import math
import random
import warnings
from contextlib import suppress
from dataclasses import replace
from typing import Any, Callable, Optional, Protocol, Sequence

from ..config import Config, heuristic_configs, unique_configs
from .bench import Benchmarker, Precompiler, Progress, compare  # noqa: F401 (the package's API)
from .cache import AutotuneCache, atomic_write_json, environment, source_hash  # noqa: F401
from .search import (EFFORT_ENV, EFFORTS, Effort, Evaluator, differential_evolution, pattern_search,  # noqa: F401
                     resolve_effort, search)

class Tunable(Protocol):
    """What the tuner needs of a kernel (runtime.BoundKernel has it): space, source and compile specs, a checked run."""
    name: str
    config_space: Any
    def default_config(self) -> Config: ...
    def to_triton_code(self, config: Config) -> str: ...
    def compile_specs(self, config: Config) -> list[dict]: ...
    def run(self, config: Config, *args: Any) -> Any: ...

def args_key(args: Sequence[Any]) -> tuple:
    """A fallback specialization key: dtype/shape/stride/device of tensor args, repr of the rest."""
    import torch
    return tuple((str(a.dtype), tuple(a.shape), tuple(a.stride()), a.device.type) if isinstance(a, torch.Tensor)
                 else repr(a) for a in args)

def autotune(bound: Tunable, args: Sequence[Any], effort: Any = "quick", *, progress: bool = True,
             reference: Optional[Callable[..., Any]] = None, seeds: Sequence[Any] = (), compile_timeout: float = 60.0,
             candidates: Optional[Sequence[Any]] = None, cache: Any = None, cache_key: Optional[tuple] = None,
             objective: Optional[Callable[[Config], float]] = None, rng: Optional[random.Random] = None,
             time_limit: Optional[float] = None, workers: Optional[int] = None) -> Config:
    """A fast, correct, complete Config for ``bound`` on ``args``; if all fail, the default (or first candidate).
    - ``effort``: see ``resolve_effort``; "none": the first valid seed (else the default), unmeasured. ``seeds``:
      pretuned configs (quick ranks by distance to them), with the default and ``heuristic_configs``.
    - ``candidates``: time exactly these, no search, no disk cache (a failed run is never cached either). ``cache``:
      an AutotuneCache, None for the default one, False for none; ``cache_key=(kernel_source_hash, spec_key)``.
    - ``objective``: replaces the Benchmarker; ``reference(*args)``: the expected outputs (else the default's)."""
    prof = resolve_effort(effort, time_limit)
    space = bound.config_space
    default = space.normalize(bound.default_config())
    store = key = None
    if candidates is not None:
        cands = unique_configs(space, candidates)
        if len(cands) <= 1:
            return cands[0] if cands else default
        if prof.name == "none":  # measuring is the point here: use quick's timing
            prof = replace(EFFORTS["quick"], time_limit=prof.time_limit)
        fallback, drive = cands[0], lambda ev: ev.evaluate(cands)
    else:
        all_seeds = unique_configs(space, [*seeds, default])
        if prof.name == "none":
            return all_seeds[0]
        store = None if cache is False else (cache if cache is not None else AutotuneCache())
        if store is not None:
            key = store.key(*(cache_key or (source_hash(bound.to_triton_code(default)), args_key(args))))
            if (hit := store.get(key)) is not None:
                with suppress(ValueError):  # a ValueError: the space changed under the same key, retune
                    return space.normalize(hit)
        all_seeds += heuristic_configs(space.spec)
        fallback, drive = default, lambda ev: search(space, ev.objective, prof, seeds=all_seeds, rng=rng, evaluator=ev)
    prog = Progress(progress, desc=getattr(bound, "name", None) or "autotune")
    if prof.time_limit is not None:  # one hung compile must not eat a quick run's whole wall-clock cap
        compile_timeout = min(compile_timeout, max(5.0, 0.4 * prof.time_limit))
    bench = objective if objective is not None else Benchmarker(
        bound, args, reps=prof.reps, reference=reference, compile_timeout=compile_timeout, workers=workers,
        progress=prog)
    ev = Evaluator(bench, max_evals=prof.max_evals or None, time_limit=prof.time_limit, progress=prog)
    if isinstance(bench, Benchmarker):
        bench.deadline = ev.deadline  # lets a slow compile batch stop at the cap
        if bench.precompiler is not None:
            bench.precompiler.warm()  # the workers start while the reference runs and code is generated
    try:
        drive(ev)
        best, best_t = ev.best()
        if best is not None and math.isfinite(best_t) and hasattr(bench, "confirm"):
            best, best_t = bench.confirm(ev.history, k=prof.confirm_top)
    except BaseException:
        prog.close()
        raise
    finally:
        if hasattr(bench, "close"):
            bench.close()
    if best is None or not math.isfinite(best_t):
        prog.close(f"no candidate succeeded out of {len(ev.history)}; using {fallback!r}")
        return fallback
    prog.close(f"best {best_t * 1e3:.4f} ms after {len(ev.history)} candidates ({prof.name}): {best!r}")
    if store is not None:
        try:
            store.put(key, best, time_s=best_t, evaluated=len(ev.history), effort=prof.name)
        except OSError as e:  # an unwritable cache must not lose a finished search
            warnings.warn(f"helion_ops: could not save the tuned config to the autotune cache ({e}); "
                          "it is used for this process only", RuntimeWarning, 2)
    return best
