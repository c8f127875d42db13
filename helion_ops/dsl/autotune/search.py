"""Searches over a ConfigSpace for an ``objective(config) -> seconds`` (inf: failed; one with ``evaluate_batch``
gets whole rounds to precompile in parallel), each returning (best config, its time, [(config, time)] in order)."""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, replace
from itertools import count
from typing import Any, Callable, Optional, Sequence

from ..config import Config, ConfigSpace, unique_configs
from .bench import INF, Progress

Objective = Callable[[Config], float]
EFFORT_ENV = "HELION_AUTOTUNE_EFFORT"
SMEM_BYTES = 232448  # Hopper's shared memory per block; Ampere's 166 KB only rejects more at compile

@dataclass(frozen=True)
class Effort:
    """How hard ``autotune`` searches (see ``search``); ``max_evals`` and ``time_limit`` (s, None: no cap) cap a run."""
    name: str
    population: int = 0
    generations: int = 0
    pattern_evals: int = 0
    max_evals: int = 0
    time_limit: Optional[float] = None
    reps: int = 10
    confirm_top: int = 3
    rounds: int = 0

EFFORTS = {
    "none": Effort("none"),
    # quick: at most 3 rounds of one compile batch each (16 = the GPU machine's cores), ranked by the
    # prior; 8 s of search leaves ~2 s of the 10 s target for the reference run and the re-timing.
    "quick": Effort("quick", population=16, rounds=3, max_evals=48, time_limit=8.0, reps=10, confirm_top=2),
    "full": Effort("full", population=40, generations=20, pattern_evals=200, max_evals=1200,
                   time_limit=1800.0, reps=30),
}

def resolve_effort(effort: Any = "quick", time_limit: Optional[float] = None) -> Effort:
    """``$HELION_AUTOTUNE_EFFORT`` (when set) overrides ``effort`` (a name or an Effort); ``time_limit`` or
    ``$HELION_AUTOTUNE_TIME_LIMIT`` overrides the preset's wall-clock cap (0: none)."""
    effort = os.environ.get(EFFORT_ENV, "").strip().lower() or effort
    if not isinstance(effort, Effort):
        name = "none" if effort in (None, False) else str(effort).lower()
        if name not in EFFORTS:
            raise ValueError(f"autotune effort must be one of {sorted(EFFORTS)}, got {effort!r}")
        effort = EFFORTS[name]
    if time_limit is None and (env_limit := os.environ.get("HELION_AUTOTUNE_TIME_LIMIT", "").strip()):
        time_limit = float(env_limit)
    return effort if time_limit is None else replace(effort, time_limit=float(time_limit) if time_limit > 0 else None)

class Evaluator:
    """Memoises an objective by Config within the budget (``max_evals``, ``time_limit`` s); configs past it get inf."""
    def __init__(self, objective: Objective, *, max_evals: Optional[int] = None,
                 time_limit: Optional[float] = None, progress: Any = None, batch_size: int = 16) -> None:
        self.objective, self.max_evals, self.batch_size = objective, max_evals, batch_size
        self._batch = getattr(objective, "evaluate_batch", None) or (lambda cs: [self._one(c) for c in cs])
        self.progress = progress or Progress(False)
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.memo, self.history = {}, []  # Config -> seconds; (Config, seconds) in evaluation order
    def budget_left(self) -> int:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return 0
        return 1 << 30 if self.max_evals is None else max(self.max_evals - len(self.history), 0)
    def evaluate(self, configs: Sequence[Config], limit: Optional[int] = None) -> list[float]:
        new = list(dict.fromkeys(c for c in configs if c not in self.memo))[:limit]
        i = 0
        while i < len(new) and (left := self.budget_left()):  # in chunks: the deadline holds mid-generation
            chunk = new[i:i + min(self.batch_size, left)]
            i += len(chunk)
            for c, t in zip(chunk, list(self._batch(chunk))):
                t = INF if t is None or math.isnan(t) else float(t)
                self.memo[c] = t
                self.history.append((c, t))
                self.progress.record(t)
        return [self.memo.get(c, INF) for c in configs]
    def _one(self, c: Config) -> float:
        try:
            return self.objective(c)
        except Exception:  # a broken candidate must not end the search
            return INF
    def best(self) -> tuple[Optional[Config], float]:
        return min(self.memo.items(), key=lambda ct: ct[1], default=(None, INF))

def differential_evolution(space: ConfigSpace, objective: Objective, *, population: int = 12, generations: int = 3,
                           rng: Optional[random.Random] = None, seeds: Sequence[Any] = (), cr: float = 0.7,
                           evaluator: Optional[Evaluator] = None):
    """DE/rand/1/bin from the seeds plus random points up to ``population``: each generation, one trial per member x
    (``ConfigSpace.differential`` with three other members) replaces x when not slower."""
    rng = rng or random.Random()
    ev = evaluator or Evaluator(objective)
    pop = unique_configs(space, seeds)
    for _ in range(population * 20):
        if len(pop) < population and (c := space.random(rng)) not in pop:
            pop.append(c)
    ev.progress.phase("initial population", len(pop))
    times = ev.evaluate(pop)
    # Keep the best `population` when there were more seeds than slots.
    order = sorted(range(len(pop)), key=times.__getitem__)[:max(population, 4)]
    pop, times = [pop[i] for i in order], [times[i] for i in order]
    for g in range(generations):
        if ev.budget_left() == 0:
            break
        ev.progress.phase(f"generation {g + 1}/{generations}", len(pop))
        trials = []
        for i, x in enumerate(pop):
            others = pop[:i] + pop[i + 1:]
            t = space.differential(x, *rng.sample(others, 3), rng, cr) if len(others) >= 3 else space.mutate(x, rng)
            for _ in range(8):  # an evaluated or drawn trial is mutated instead
                t = space.mutate(t, rng) if t in ev.memo or t in trials else t
            trials.append(t)
        for i, tt in enumerate(ev.evaluate(trials)):
            if tt <= times[i]:
                pop[i], times[i] = trials[i], tt
    return (*ev.best(), ev.history)

def pattern_search(space: ConfigSpace, objective: Objective, start: Any, *, max_evals: Optional[int] = 50,
                   min_improvement: float = 0.0, evaluator: Optional[Evaluator] = None):
    """Greedy local search: move to the best one-step neighbour (one batch) while it beats the current point by more
    than ``min_improvement`` (relative); ``max_evals``: this call's new evaluations, also on a shared evaluator."""
    ev = evaluator or Evaluator(objective)
    stop_at = len(ev.history) + (1 << 30 if max_evals is None else max_evals)
    left = lambda: stop_at - len(ev.history)  # noqa: E731
    current = space.normalize(start)
    cur_t = ev.evaluate([current], limit=left())[0]
    for step in count(1):
        nbrs = space.neighbors(current)
        if not nbrs or ev.budget_left() == 0 or left() <= 0:
            break
        ev.progress.phase(f"pattern search step {step}", len([n for n in nbrs if n not in ev.memo]))
        ntimes = ev.evaluate(nbrs, limit=left())
        i = min(range(len(nbrs)), key=ntimes.__getitem__)
        if ntimes[i] >= cur_t * (1.0 - min_improvement):
            break
        current, cur_t = nbrs[i], ntimes[i]
    return (*ev.best(), ev.history)

def prior(space: ConfigSpace, cfg: Config, anchors: Sequence[Config]) -> float:
    """Rank of an unmeasured candidate, lower first: distance to the nearest anchor (1 per knob or power of two off),
    for dot kernels + 100 past shared memory or 256 fp32 accumulators a thread (spills), + 1 under 16 (idle warps)."""
    d = cfg.to_dict()
    dist = min((sum(abs(math.log2(max(x, 1)) - math.log2(max(y, 1))) if isinstance(x, int) else float(x != y)
                    for k, v in d.items() if k in a for x, y in _pairs(v, a[k]))
                for a in (x.to_dict() for x in anchors)), default=0.0)
    bs = d.get("block_sizes") or []
    if len(bs) >= 3 and space.spec.inner_loops:
        acc = bs[0] * bs[1] / (32 * d.get("num_warps", 4))
        smem = max(1, d.get("num_stages", 1)) * (bs[0] + bs[1]) * bs[2] * 2
        dist += 100.0 * (smem > SMEM_BYTES or acc > 256) + (acc < 16)
    return dist

def _pairs(a: Any, b: Any) -> list:
    """Matching scalars of two knob values (lists knob-wise; ints compared in log2 by ``prior``)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [p for x, y in zip(a, b) for p in _pairs(x, y)]
    return [(a, b)] if type(a) is int and type(b) is int and a > 0 and b > 0 else [(repr(a), repr(b))]

def search(space: ConfigSpace, objective: Objective, effort: Any = "quick", *, seeds: Sequence[Any] = (),
           rng: Optional[random.Random] = None, evaluator: Optional[Evaluator] = None):
    """Quick: rounds of the ``population`` best by ``prior`` of the seeds, their neighbours and random points, then of
    the two fastest's new neighbours, until the fastest holds. Full: DE, then pattern search. "none": first seed."""
    prof = resolve_effort(effort)
    seeds = unique_configs(space, [*seeds, space.default()])
    if prof.name == "none":
        return seeds[0], math.nan, []
    rng = rng or random.Random()
    ev = evaluator or Evaluator(objective, max_evals=prof.max_evals, time_limit=prof.time_limit)
    if prof.rounds:
        pool = dict.fromkeys([*seeds, *(n for a in seeds for n in space.neighbors(a)),
                              *(space.random(rng) for _ in range(4 * prof.population))])
        batch, leader = sorted(pool, key=lambda c: prior(space, c, seeds))[:prof.population], None
        for r in range(prof.rounds):
            ev.progress.phase(f"round {r + 1}/{prof.rounds}", len(batch))
            ev.evaluate(batch)
            fastest = [c for c, t in sorted(ev.memo.items(), key=lambda ct: ct[1]) if math.isfinite(t)][:2]
            if not fastest or fastest[0] == leader or ev.budget_left() == 0:
                break
            leader = fastest[0]
            near = dict.fromkeys(n for c in fastest for n in space.neighbors(c) if n not in ev.memo)
            batch = sorted(near, key=lambda c: prior(space, c, fastest))[:prof.population]
        return (*ev.best(), ev.history)
    best, _, _ = differential_evolution(space, objective, population=prof.population, generations=prof.generations,
                                        rng=rng, seeds=seeds, evaluator=ev)
    if best is not None and ev.budget_left() > 0 and prof.pattern_evals:
        # A fixed ~0.5% bar keeps timing noise from walking the search.
        pattern_search(space, objective, best, max_evals=prof.pattern_evals, min_improvement=0.005, evaluator=ev)
    return (*ev.best(), ev.history)
