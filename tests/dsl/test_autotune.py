"""Autotuner: searches on synthetic costs, the precompile pool's failure
handling, accuracy checks, the disk cache, effort and progress settings.
CPU only; nothing here tunes a real Triton kernel.

Module-level job functions run in spawn workers, so this module keeps its
imports light (torch is imported inside the tests that need it).
"""
import io
import json
import math
import multiprocessing as mp
import os
import random
import sys
import time

import pytest

from helion_ops.dsl.autotune import (
    EFFORTS, AutotuneCache, Benchmarker, Effort, Evaluator, Precompiler, Progress, autotune, compare,
    differential_evolution, pattern_search, resolve_effort, search,
)
from helion_ops.dsl.config import BlockSpec, Config, ConfigSpace, SpaceSpec

search_mod = sys.modules["helion_ops.dsl.autotune.search"]  # the module (the package's `search` is the function)

SPEC = SpaceSpec(block_sizes=[BlockSpec(16, 256, 32), BlockSpec(16, 256, 32)], grid_loops=[2], loads=1)
SPACE = ConfigSpace(SPEC)
TARGET = {"block_sizes": [128, 64], "num_warps": 8, "num_stages": 3, "pid_type": "persistent_blocked",
          "l2_groupings": [8], "loop_orders": [[1, 0]], "load_eviction_policies": ["first"]}


def cost(cfg):
    """Separable, unimodal along each knob's steps; optimum 1.0 at TARGET."""
    c = 1.0
    for a, b in zip(cfg.block_sizes + cfg.l2_groupings, TARGET["block_sizes"] + TARGET["l2_groupings"]):
        c += abs(math.log2(a) - math.log2(b))
    c += abs(math.log2(cfg.num_warps) - 3) + abs(cfg.num_stages - 3)
    c += (cfg.pid_type != TARGET["pid_type"]) + (cfg.loop_orders != TARGET["loop_orders"])
    c += 0.5 * (cfg.load_eviction_policies != TARGET["load_eviction_policies"])
    return c


OPTIMUM = SPACE.normalize(TARGET)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for k in ("HELION_AUTOTUNE_EFFORT", "HELION_AUTOTUNE_TIME_LIMIT", "HELION_AUTOTUNE_PROGRESS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------
# Searches
# ---------------------------------------------------------------------------

def test_pattern_search_reaches_optimum_of_separable_cost():
    best, t, hist = pattern_search(SPACE, cost, SPACE.default(), max_evals=400)
    assert best == OPTIMUM and t == 1.0
    assert len({c for c, _ in hist}) == len(hist)  # nothing evaluated twice


def test_pattern_search_respects_budget_and_local_optimum():
    _, _, hist = pattern_search(SPACE, cost, SPACE.default(), max_evals=7)
    assert len(hist) == 7
    # Started at the optimum: one round of neighbours, then stop.
    best, _, hist = pattern_search(SPACE, cost, OPTIMUM, max_evals=400)
    assert best == OPTIMUM and len(hist) == 1 + len(SPACE.neighbors(OPTIMUM))


@pytest.mark.parametrize("seed", [0, 1])
def test_differential_evolution_finds_optimum(seed):
    best, t, hist = differential_evolution(SPACE, cost, population=16, generations=40,
                                           rng=random.Random(seed), seeds=[SPACE.default()])
    assert best == OPTIMUM and t == 1.0
    assert len({c for c, _ in hist}) == len(hist)
    assert [c for c, _ in hist[:1]] == [SPACE.default()]  # seeds go first


def test_search_presets_and_budget():
    calls = []

    def obj(c):
        calls.append(c)
        return cost(c)

    best, t, hist = search(SPACE, obj, "quick", rng=random.Random(0))
    assert 16 <= len(hist) <= 48 and len(calls) == len(hist)
    assert t == min(x for _, x in hist) and t < cost(SPACE.default())
    best, t, hist = search(SPACE, obj, "none", seeds=[OPTIMUM])
    assert best == OPTIMUM and hist == []


def test_search_wall_clock_cap():
    def slow(c):
        time.sleep(0.05)
        return cost(c)

    t0 = time.monotonic()
    _, _, hist = search(SPACE, slow, Effort("x", population=40, generations=20, pattern_evals=50,
                                            max_evals=1000, time_limit=0.5), rng=random.Random(0))
    assert time.monotonic() - t0 < 2.0 and 0 < len(hist) < 40


def test_failing_objective_is_dropped():
    def flaky(c):
        if c.num_warps == 8:
            raise RuntimeError("boom")
        return math.inf if c.num_warps == 16 else cost(c)

    best, t, hist = search(SPACE, flaky, "quick", rng=random.Random(0))
    assert math.isfinite(t) and best.num_warps not in (8, 16)
    assert any(math.isinf(x) for _, x in hist)


def test_evaluator_memoises_and_batches():
    seen = []

    class Obj:
        def __call__(self, c):
            raise AssertionError("batch API must be preferred")

        def evaluate_batch(self, cs):
            seen.append(len(cs))
            return [cost(c) for c in cs]

    ev = Evaluator(Obj(), max_evals=5, batch_size=2)
    cs = [SPACE.default(), OPTIMUM, SPACE.default(), *SPACE.neighbors(OPTIMUM)[:6]]
    ts = ev.evaluate(cs)
    assert ts[0] == ts[2] and ts[1] == 1.0
    assert len(ev.history) == 5 and seen == [2, 2, 1]
    assert ts[-1] == math.inf  # over budget


def test_effort_env_override(monkeypatch):
    assert resolve_effort("quick").name == "quick"
    monkeypatch.setenv("HELION_AUTOTUNE_EFFORT", "none")
    assert resolve_effort("full").name == "none"
    monkeypatch.setenv("HELION_AUTOTUNE_EFFORT", "FULL")
    assert resolve_effort("quick").name == "full"
    monkeypatch.setenv("HELION_AUTOTUNE_TIME_LIMIT", "7")
    assert resolve_effort("quick").time_limit == 7.0
    monkeypatch.setenv("HELION_AUTOTUNE_EFFORT", "bogus")
    with pytest.raises(ValueError):
        resolve_effort("quick")
    monkeypatch.delenv("HELION_AUTOTUNE_EFFORT")
    assert resolve_effort("quick", time_limit=3).time_limit == 3.0
    assert resolve_effort(None).name == "none"


# ---------------------------------------------------------------------------
# Quick: the prior, rounds of one compile batch, early stop, the 10 s budget
# ---------------------------------------------------------------------------

MM_SPACE = ConfigSpace(SpaceSpec(block_sizes=[BlockSpec(16, 256, 64), BlockSpec(16, 256, 64), BlockSpec(16, 256, 32)],
                                 grid_loops=[2], inner_loops=1, loads=2))


def test_prior_distance_and_resource_rules():
    anchor = MM_SPACE.normalize({"block_sizes": [128, 128, 64], "num_warps": 8, "num_stages": 3})
    p = lambda d: search_mod.prior(MM_SPACE, MM_SPACE.normalize(d), [anchor])  # noqa: E731
    assert p(anchor) == 0
    assert p({"block_sizes": [128, 64, 64], "num_warps": 8, "num_stages": 3}) == 1  # one power of two
    assert p({"block_sizes": [128, 128, 64], "num_warps": 8, "num_stages": 3, "pid_type": "persistent_blocked"}) == 1
    assert p({"block_sizes": [256, 256, 128], "num_warps": 8, "num_stages": 4}) >= 100  # 512 KB of shared memory
    assert p({"block_sizes": [256, 256, 32], "num_warps": 4, "num_stages": 2}) >= 100  # 512 fp32 regs a thread
    assert p({"block_sizes": [64, 32, 64], "num_warps": 8, "num_stages": 3}) == 4  # 3 steps + idle warps


class FakeClock:
    """Stands in for search.time: compiling a batch costs ``per_batch`` fake seconds."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def _batched(clock, per_batch, calls):
    class Obj:
        def __call__(self, c):
            return self.evaluate_batch([c])[0]

        def evaluate_batch(self, cs):
            calls.append(len(cs))
            clock.now += per_batch  # one parallel compile batch, then timing
            return [cost(c) for c in cs]
    return Obj()


def test_quick_rounds_stop_when_the_leaders_agree(monkeypatch):
    clock, calls = FakeClock(), []
    monkeypatch.setattr(search_mod, "time", clock)
    near = OPTIMUM.replace(num_warps=4, block_sizes=[128, 32])  # a pretuned-like seed, 3 steps off
    best, t, hist = search(SPACE, _batched(clock, 2.5, calls), "quick", seeds=[near], rng=random.Random(0))
    assert calls and all(n <= 16 for n in calls)  # one compile batch (16 cores) per round
    assert len(calls) <= EFFORTS["quick"].rounds and clock.now <= EFFORTS["quick"].time_limit + 2.5
    assert t <= cost(near) - 2  # the rounds walk from the seed towards the optimum
    assert len({c for c, _ in hist}) == len(hist)
    calls.clear()
    best, t, hist = search(SPACE, _batched(clock, 2.5, calls), "quick", seeds=[OPTIMUM], rng=random.Random(0))
    assert best == OPTIMUM and len(calls) == 2  # round 2 found nothing faster: stop


def test_quick_is_within_3_percent_of_full_on_a_fake_timer(monkeypatch):
    """Quick (<= 8 fake seconds of 2.5 s compile batches) against full on the same landscape, both seeded
    with a config two steps from the optimum, as the op layer's pretuned entry would be."""
    clock = FakeClock()
    monkeypatch.setattr(search_mod, "time", clock)
    seed = OPTIMUM.replace(num_stages=2, l2_groupings=[4])
    quick = search(SPACE, _batched(clock, 2.5, []), "quick", seeds=[seed], rng=random.Random(1))
    assert clock.now <= 10.0
    full = search(SPACE, cost, "full", seeds=[seed], rng=random.Random(1))
    assert quick[1] <= 1.03 * full[1]


def test_precompiler_warm_start_then_run():
    pre = Precompiler(workers=1, timeout=60.0, job=_job, initializer=None)
    pre.warm()
    try:
        assert pre.run({"a": ([("ok",)], None)}) == {"a": None}
    finally:
        pre.close()
    pre = Precompiler(workers=1, job=_job, initializer=None)
    pre.warm()
    pre.close()  # closing while the workers start waits for them, then shuts them down
    assert pre._pool is None and pre._warming is None


# ---------------------------------------------------------------------------
# Precompile pool: exceptions, hangs and crashes cost one candidate
# ---------------------------------------------------------------------------

def _job(payload):
    """Stands in for bench.compile_job: payload is (specs, target)."""
    specs, _target = payload
    kind = specs[0][0]
    if kind == "raise":
        raise ValueError("bad candidate")
    if kind == "sleep":
        time.sleep(600)
    if kind == "exit":
        os._exit(3)
    return True


def test_precompiler_survives_raise_hang_and_crash():
    jobs = {k: ([(kind,)], None) for k, kind in [("ok1", "ok"), ("raise", "raise"), ("hang", "sleep"),
                                                   ("crash", "exit"), ("ok2", "ok"), ("ok3", "ok")]}
    pre = Precompiler(workers=2, timeout=3.0, job=_job, initializer=None)
    done = []
    t0 = time.monotonic()
    try:
        res = pre.run(jobs, on_done=lambda k, e: done.append(k))
    finally:
        pre.close()
    assert time.monotonic() - t0 < 30
    assert res["ok1"] is None and res["ok2"] is None and res["ok3"] is None
    assert "ValueError" in res["raise"]
    assert "timed out" in res["hang"]
    assert "crashed" in res["crash"]
    assert sorted(done) == sorted(jobs)


def test_precompiler_stops_at_deadline():
    pre = Precompiler(workers=1, timeout=60.0, job=_job, initializer=None)
    t0 = time.monotonic()
    try:
        res = pre.run({"a": ([("sleep",)], None), "b": ([("sleep",)], None)}, deadline=t0 + 4.0)
    finally:
        pre.close()
    assert time.monotonic() - t0 < 15
    assert all("time limit" in e for e in res.values()) and set(res) == {"a", "b"}


# ---------------------------------------------------------------------------
# Benchmarker on a fake BoundKernel (CONTRACTS §2)
# ---------------------------------------------------------------------------

class FakeBound:
    """out = x * 2 unless the config is "wrong"; code depends only on
    block_sizes and num_warps, so other knobs dedupe."""
    name = "fake"

    def __init__(self, wrong=lambda c: False, raises=lambda c: False, compile_kind=lambda c: "ok"):
        self.config_space = SPACE
        self.runs = []
        self.wrong, self.raises, self.compile_kind = wrong, raises, compile_kind

    def default_config(self):
        return SPACE.default()

    def to_triton_code(self, cfg):
        return f"code {cfg.block_sizes} {cfg.num_warps}"

    def compile_specs(self, cfg):
        return [(self.compile_kind(cfg),)]

    def run(self, cfg, x, out):
        self.runs.append(cfg)
        if self.raises(cfg):
            raise RuntimeError("launch failed")
        out.copy_(x * (2.01 if self.wrong(cfg) else 2))
        return out


def _args():
    import torch
    torch.manual_seed(0)
    x = torch.randn(64, 33)
    return [x, torch.empty_like(x)]


def test_benchmarker_dedupes_checks_accuracy_and_times():
    fb = FakeBound(wrong=lambda c: c.num_warps == 8, raises=lambda c: c.num_warps == 16)
    bench = Benchmarker(fb, _args(), reps=3)
    assert bench.precompiler is None  # CPU: no precompile
    base = SPACE.default()
    same_code = base.replace(num_stages=5)
    cs = [base, same_code, base.replace(num_warps=8), base.replace(num_warps=16), base.replace(num_warps=2)]
    ts = bench.evaluate_batch(cs)
    assert math.isfinite(ts[0]) and ts[1] == ts[0]
    assert ts[2] == math.inf and ts[3] == math.inf and math.isfinite(ts[4])
    assert same_code not in fb.runs  # measured once per generated source
    best, t = bench.confirm(list(zip(cs, ts)), k=3)
    assert best in (base, cs[4]) and math.isfinite(t)


def test_benchmarker_checks_in_place_outputs():
    class InPlace(FakeBound):
        def run(self, cfg, x, out):
            super().run(cfg, x, out)  # writes out, returns nothing

    bench = Benchmarker(InPlace(wrong=lambda c: c.num_warps == 8), _args(), reps=1)
    assert math.isfinite(bench(SPACE.default()))
    assert bench(SPACE.default().replace(num_warps=8)) == math.inf
    assert bench._written == [1]  # only the written arg is compared


def test_benchmarker_with_reference_fn():
    import torch
    fb = FakeBound(wrong=lambda c: c.num_warps == 8)
    bench = Benchmarker(fb, _args(), reps=1, reference=lambda x, out: x * 2)
    assert math.isfinite(bench(SPACE.default()))
    assert bench(SPACE.default().replace(num_warps=8)) == math.inf
    bad_ref = Benchmarker(fb, _args(), reps=1, reference=lambda x, out: torch.zeros_like(x))
    assert bad_ref(SPACE.default()) == math.inf


def test_benchmarker_precompile_failures_reject_candidates():
    kinds = {1: "exit", 2: "raise"}  # hangs: see the Precompiler test
    fb = FakeBound(compile_kind=lambda c: kinds.get(c.num_warps, "ok"))
    bench = Benchmarker(fb, _args(), reps=1, precompile=True, workers=2, compile_timeout=6.0)
    bench.precompiler.job, bench.precompiler.initializer = _job, None
    base = SPACE.default()
    cs = [base.replace(num_warps=w) for w in (4, 1, 2, 8)]
    try:
        ts = bench.evaluate_batch(cs)
    finally:
        bench.close()
    assert math.isfinite(ts[0]) and math.isfinite(ts[3])
    assert ts[1:3] == [math.inf] * 2
    assert {c.num_warps for c in fb.runs} <= {4, 8}  # failed compiles never run


def test_benchmarker_first_batch_runs_whole_past_the_cap():
    """A wall-clock cap that passes while the first batch compiles (a worker pool starting, slow compiles) must
    not leave the search with only the default: the first batch is compiled and timed whole; later ones stop
    at the cap (H100, 2026-12-07: quick matmul returned its 0.46x default when round 1 compiled past 8 s)."""
    fb = FakeBound()
    bench = Benchmarker(fb, _args(), reps=1, precompile=True, workers=2, compile_timeout=30.0)
    bench.precompiler.job, bench.precompiler.initializer = _job, None
    bench.deadline = time.monotonic() - 1.0  # already past
    base = SPACE.default()
    try:
        first = bench.evaluate_batch([base.replace(num_warps=w) for w in (4, 8)])
        later = bench.evaluate_batch([base.replace(num_warps=w) for w in (1, 2)])
    finally:
        bench.close()
    assert all(math.isfinite(t) for t in first)
    assert later == [math.inf] * 2


@pytest.mark.parametrize("dtype,err,ok", [
    ("float32", 5e-5, True), ("float32", 5e-3, False), ("float16", 5e-3, True), ("float16", 5e-2, False),
    ("bfloat16", 1e-2, True), ("bfloat16", 1e-1, False),
])
def test_compare_tolerances(dtype, err, ok):
    import torch
    dt = getattr(torch, dtype)
    ref = torch.linspace(-4, 4, 101, dtype=torch.float32)
    out = ref.clone()
    out[3] += err * 4  # error relative to max|ref| = 4
    assert (compare(out.to(dt), ref.to(dt)) is None) == ok


def test_compare_partial_sum_buffers_by_their_sum():
    """A [programs, N] partial-sum output (programs set by the config) matches by its column sums;
    other shape changes, and wrong sums, still fail."""
    import torch
    torch.manual_seed(0)
    parts = torch.randn(8, 33)
    fewer = parts.view(4, 2, 33).sum(1)  # the same sums over half as many programs
    assert compare(fewer, parts) is None
    assert compare(fewer + 0.1, parts) is not None
    assert compare(torch.randn(8, 32), parts) is not None  # trailing dims must agree
    assert compare(parts.sum(0), parts) is not None        # so must the rank


def test_compare_structure_nan_and_ints():
    import torch
    a = torch.tensor([1.0, float("nan"), float("inf")])
    assert compare(a, a.clone()) is None
    assert compare(a, torch.tensor([1.0, 0.0, float("inf")])) is not None
    assert compare(a, torch.tensor([1.0, float("nan"), -float("inf")])) is not None
    assert compare(torch.tensor([1, 2]), torch.tensor([1, 3])) is not None
    assert compare((a, a), a) is not None
    assert compare(torch.zeros(2), torch.zeros(3)) is not None


# ---------------------------------------------------------------------------
# autotune(): seeds, cache, effort
# ---------------------------------------------------------------------------

def test_autotune_synthetic_end_to_end(tmp_path):
    fb = FakeBound()
    calls = []

    def obj(c):
        calls.append(c)
        return cost(c)

    cache = AutotuneCache(tmp_path / "c")
    cfg = autotune(fb, _args(), "quick", objective=obj, cache=cache, rng=random.Random(0), progress=False,
                   seeds=[OPTIMUM.replace(num_warps=4)])
    assert cost(cfg) <= 1.5 and calls
    n = len(calls)
    again = autotune(fb, _args(), "quick", objective=obj, cache=cache, progress=False)
    assert again == cfg and len(calls) == n  # served from the cache
    assert len(list((tmp_path / "c").glob("*.json"))) == 1


def test_autotune_none_and_env_override(monkeypatch):
    fb = FakeBound()
    never = lambda c: pytest.fail("effort none must not measure")  # noqa: E731
    assert autotune(fb, _args(), "none", objective=never) == SPACE.default()
    assert autotune(fb, _args(), "none", objective=never, seeds=[{"num_warps": 8}]) == \
        SPACE.default().replace(num_warps=8)
    monkeypatch.setenv("HELION_AUTOTUNE_EFFORT", "none")
    assert autotune(fb, _args(), "full", objective=never) == SPACE.default()


def test_autotune_candidates_measures_exactly_those(tmp_path):
    calls = []

    def obj(c):
        calls.append(c)
        return cost(c)

    cands = [SPACE.default(), OPTIMUM, {"num_warps": 8}, OPTIMUM]
    for effort in ("none", "quick"):
        calls.clear()
        cfg = autotune(FakeBound(), _args(), effort, objective=obj, candidates=cands, progress=False,
                       cache=AutotuneCache(tmp_path))
        assert cfg == OPTIMUM and sorted(map(repr, calls)) == sorted(map(repr, _normalized_unique(cands)))
    assert not list(tmp_path.glob("*.json"))  # candidate runs are not cached
    assert autotune(FakeBound(), _args(), "quick", objective=obj, candidates=[{"num_warps": 2}]) == \
        SPACE.default().replace(num_warps=2)


def _normalized_unique(cs):
    return list(dict.fromkeys(SPACE.normalize(c) for c in cs))


def test_autotune_all_failed_returns_default_uncached(tmp_path):
    cache = AutotuneCache(tmp_path)
    cfg = autotune(FakeBound(), _args(), Effort("t", population=4, generations=1, max_evals=10),
                   objective=lambda c: math.inf, cache=cache, progress=False)
    assert cfg == SPACE.default() and not list(tmp_path.glob("*.json"))


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------

def test_cache_dir_env_and_key_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(tmp_path / "x"))
    c = AutotuneCache()
    assert c.directory == tmp_path / "x"
    k = c.key("abc", ("f32", (4, 4)))
    assert k != c.key("abd", ("f32", (4, 4))) and k != c.key("abc", ("f32", (4, 8)))
    other = AutotuneCache(env={**c.env, "torch": "0.0.1"})
    assert other.key("abc", ("f32", (4, 4))) != k


def test_cache_ignores_truncated_and_stale_files(tmp_path):
    c = AutotuneCache(tmp_path)
    k = c.key("src", 1)
    cfg = Config(block_sizes=[64, 32], num_warps=8)
    assert c.get(k) is None
    c.put(k, cfg, time_s=1e-3)
    assert c.get(k) == cfg
    text = c.path(k).read_text()
    c.path(k).write_text(text[: len(text) // 2])  # truncated
    assert c.get(k) is None
    c.path(k).write_text("[]")
    assert c.get(k) is None
    c.put(k, cfg)
    assert c.get(k) == cfg
    # Same file, written under another torch version: ignored, then rewritten.
    AutotuneCache(tmp_path, env={**c.env, "torch": "0.0.1"}).put(k, cfg.replace(num_warps=2))
    assert json.loads(c.path(k).read_text())["env"]["torch"] == "0.0.1"
    assert c.get(k) is None
    c.put(k, cfg)
    assert c.get(k) == cfg
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _writer(directory, key, warps, n):
    c = AutotuneCache(directory, env={"gpu": "g", "capability": None, "torch": "t", "triton": "tr"})
    for i in range(n):
        c.put(key, Config(num_warps=warps, block_sizes=[16] * (1 + i % 5)), pad="x" * 5000)


def test_cache_concurrent_writers(tmp_path):
    env = {"gpu": "g", "capability": None, "torch": "t", "triton": "tr"}
    c = AutotuneCache(tmp_path, env=env)
    k = c.key("src", "spec")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), k, w, 60)) for w in (2, 8)]
    for p in procs:
        p.start()
    seen = set()
    while any(p.is_alive() for p in procs):
        try:
            text = c.path(k).read_text()
        except FileNotFoundError:
            continue
        seen.add(json.loads(text)["config"]["num_warps"])  # never a partial file
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert c.get(k).num_warps in (2, 8) and seen <= {2, 8}
    assert [p.name for p in tmp_path.iterdir()] == [f"{k}.json"]


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------

def test_progress_plain_and_quiet(monkeypatch):
    buf = io.StringIO()
    p = Progress(True, desc="k", stream=buf)
    p.phase("round 1/3", 4)
    p.record(2e-3)
    p.record(math.inf)
    p.compiled(False)
    p.phase("round 2/3", 4)
    p.close("done")
    out = buf.getvalue()
    assert "round 1/3" in out and "failed 1" in out and "2.0000 ms" in out and "done" in out
    monkeypatch.setenv("HELION_AUTOTUNE_PROGRESS", "0")
    buf = io.StringIO()
    with Progress(True, stream=buf) as q:
        q.phase("x")
        q.record(1.0)
        q.log("hello")
    q.close("bye")
    assert buf.getvalue() == "" and q.evaluated == 1


def test_precompiler_pool_is_shared_until_killed():
    """Starting workers costs seconds (each imports torch and Triton): a second Precompiler of the same size reuses
    the live pool; a pool killed (a hung or crashed job) is never handed out again."""
    first = Precompiler(workers=1, timeout=60.0, job=_job, initializer=None)
    first.warm()
    try:
        assert first.run({"a": ([("ok",)], None)}) == {"a": None}
        pool = first._pool
    finally:
        first.close()
    second = Precompiler(workers=1, timeout=60.0, job=_job, initializer=None)
    try:
        assert second.run({"b": ([("ok",)], None)}) == {"b": None} and second._pool is pool
        assert "crashed" in second.run({"c": ([("exit",)], None)})["c"]
        assert second.run({"d": ([("ok",)], None)}) == {"d": None} and second._pool is not pool
    finally:
        second.close()
