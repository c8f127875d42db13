"""Tuner resilience by fault injection (what tests/dsl/test_autotune.py does not already cover).

* A whole ``autotune()`` run through the real ``Benchmarker`` and its spawn precompile pool, where one
  candidate's compile worker dies of a real SIGSEGV (a NULL read through ctypes), one hangs past the
  compile timeout, one returns wrong values and one raises at launch. Each of them would be the
  fastest if it were measured; the run must finish, reject and log each, and return a good config.
* Two processes tuning the same kernel and key at once (spawn, shared ``HELION_OPS_CACHE_DIR``, a fake
  objective) end with exactly one valid cache entry per key, which a later ``autotune()`` serves.
* A cache entry written under another torch or triton version is never returned: neither through the
  key (the versions are part of it) nor through a file at the current key that records other versions.

CPU only; the kernel is a fake BoundKernel (docs/CONTRACTS.md §2), so nothing compiles for real.
The injected compile jobs live in ``_fault_jobs.py`` (no torch import), so spawn workers start fast.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import random
import time

import pytest

from helion_ops.dsl.autotune import AutotuneCache, Benchmarker, Effort, autotune
from helion_ops.dsl.autotune import bench as bench_mod
from helion_ops.dsl.autotune.cache import environment
from helion_ops.dsl.config import BlockSpec, Config, ConfigSpace, SpaceSpec

from ._fault_jobs import fault_job, ping

SPACE = ConfigSpace(SpaceSpec(block_sizes=[BlockSpec(16, 256, 32)], grid_loops=[1], loads=1))
COMPILE_TIMEOUT = 3.0

# num_warps -> what the candidate does. Every bad one is "fastest" if it were ever timed.
SEGV, HANG, WRONG, RAISES, GOOD, SLOW = 1, 2, 8, 16, 32, 4  # SLOW: the default (4 warps)
DELAY = {GOOD: 0.001, SLOW: 0.004}  # seconds per run; the bad ones take 0


class FaultyBound:
    """out = 2 * x; compile and run behaviour by num_warps (see the table above)."""
    name = "faulty"

    def __init__(self, space=SPACE):
        self.config_space = space
        self.runs: list = []

    def default_config(self):
        return self.config_space.default()

    def to_triton_code(self, cfg):
        return f"code {cfg.block_sizes} {cfg.num_warps}"

    def compile_specs(self, cfg):
        return [{SEGV: "segv", HANG: "hang"}.get(cfg.num_warps, "ok")]

    def run(self, cfg, x, out):
        self.runs.append(cfg.num_warps)
        if cfg.num_warps == RAISES:
            raise RuntimeError("illegal instruction (injected)")
        out.copy_(x * (2.5 if cfg.num_warps == WRONG else 2))
        d = DELAY.get(cfg.num_warps, 0.0)
        if d:
            time.sleep(d)
        return out


def _args():
    import torch
    torch.manual_seed(0)
    x = torch.randn(32, 17)
    return [x, torch.empty_like(x)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    # Workers warm up with a ping that does not import torch: each pool (re)build after a crash or a
    # hang then costs ~0.1 s instead of ~3 s. What a job does and how failures are handled is unchanged.
    monkeypatch.setattr(bench_mod, "_ping", ping)
    for k in ("HELION_AUTOTUNE_EFFORT", "HELION_AUTOTUNE_TIME_LIMIT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------------------------
# Crash, hang, wrong values: contained in one autotune() run
# ---------------------------------------------------------------------------------------------

def test_autotune_contains_segfault_hang_and_wrong_candidates(caplog):
    fb = FaultyBound()
    bench = Benchmarker(fb, _args(), reps=3, precompile=True, workers=2, compile_timeout=COMPILE_TIMEOUT)
    bench.precompiler.job, bench.precompiler.initializer = fault_job, None
    base = SPACE.default()
    cands = [base.replace(num_warps=w) for w in (SLOW, SEGV, HANG, WRONG, RAISES, GOOD)]
    t0 = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="helion_ops.autotune"):
        best = autotune(fb, _args(), "quick", candidates=cands, objective=bench, progress=False, time_limit=40)
    took = time.monotonic() - t0
    assert best == base.replace(num_warps=GOOD), best
    assert took < 45, took  # the hang cost one compile timeout, not the run
    assert bench.precompiler._pool is None  # closed at the end of the run
    # Failed compiles never ran; the wrong and raising ones ran (and were rejected).
    assert SEGV not in fb.runs and HANG not in fb.runs
    assert WRONG in fb.runs and RAISES in fb.runs
    for h, c in ((bench.code_of[c], c) for c in cands if c.num_warps not in (SLOW, GOOD)):
        assert bench.by_code[h] == math.inf, c
    assert math.isfinite(bench.by_code[bench.code_of[cands[0]]])
    text = "\n".join(r.getMessage() for r in caplog.records if "candidate rejected" in r.getMessage())
    assert "crashed" in text and "timed out" in text
    assert "wrong result" in text and "illegal instruction" in text


def test_search_with_crashing_candidates_caches_a_good_config(tmp_path):
    """The search path (seeds + a small DE run) with the same faults: the cached winner is good."""
    fb = FaultyBound()
    bench = Benchmarker(fb, _args(), reps=2, precompile=True, workers=2, compile_timeout=COMPILE_TIMEOUT)
    bench.precompiler.job, bench.precompiler.initializer = fault_job, None
    base = SPACE.default()
    seeds = [base.replace(num_warps=w) for w in (SEGV, WRONG, RAISES, GOOD)]
    cache = AutotuneCache(tmp_path)
    effort = Effort("t", population=5, generations=0, pattern_evals=0, max_evals=5, time_limit=60, reps=2)
    best = autotune(fb, _args(), effort, seeds=seeds, objective=bench, cache=cache, progress=False,
                    rng=random.Random(0))
    assert best == seeds[3], best  # the segfault, wrong and raising seeds were all evaluated first
    assert [bench.by_code[bench.code_of[c]] for c in seeds[:3]] == [math.inf] * 3
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    assert Config.from_dict(json.loads(files[0].read_text())["config"]) == best


# ---------------------------------------------------------------------------------------------
# Two processes tuning the same key at once
# ---------------------------------------------------------------------------------------------

KEYS = [("src-a", ("f32", (64, 64))), ("src-b", ("f16", (64, 64))), ("src-c", ("f32", (7, 9)))]


def _fake_cost(cfg, bias):
    """Unimodal cost around (128, 8 warps); ``bias`` makes the two processes disagree on the winner."""
    t = abs(math.log2(cfg.block_sizes[0]) - 7) + abs(math.log2(cfg.num_warps) - 3) + 1.0
    return t + bias * (cfg.num_stages == 2)


def _tune_worker(cache_dir, barrier, bias, result_q):
    os.environ["HELION_OPS_CACHE_DIR"] = cache_dir
    os.environ["HELION_AUTOTUNE_PROGRESS"] = "0"
    fb = FaultyBound()
    out = []
    for key in KEYS:
        barrier.wait(timeout=60)  # both start each key together

        def obj(cfg):
            time.sleep(0.0005)
            return _fake_cost(cfg, bias)

        cfg = autotune(fb, _args(), Effort("t", population=6, generations=2, pattern_evals=6, max_evals=20),
                       objective=obj, cache_key=key, rng=random.Random(bias), progress=False)
        out.append(cfg.to_dict())
    result_q.put((bias, out))


def test_two_processes_tuning_the_same_key_leave_one_valid_entry(tmp_path, monkeypatch):
    cache_dir = tmp_path / "shared"
    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_tune_worker, args=(str(cache_dir), barrier, b, q)) for b in (-0.5, 0.5)]
    for p in procs:
        p.start()
    results = dict(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    files = sorted(cache_dir.iterdir())
    assert len(files) == len(KEYS) and all(f.suffix == ".json" for f in files), files  # no temp files
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(cache_dir))
    cache = AutotuneCache()
    for i, key in enumerate(KEYS):
        hit = cache.get(cache.key(*key))
        assert hit is not None
        assert SPACE.normalize(hit) == hit
        # The entry is one process's winner, whole (never a mix of the two).
        assert hit.to_dict() in (results[-0.5][i], results[0.5][i])
        never = lambda c: pytest.fail("a valid cache entry must be served without tuning")  # noqa: E731
        assert autotune(FaultyBound(), _args(), "quick", objective=never, cache_key=key, progress=False) == hit


# ---------------------------------------------------------------------------------------------
# Entries written under another torch / triton version
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lib", ["torch", "triton"])
def test_entry_from_another_version_is_ignored(lib, monkeypatch, tmp_path):
    import torch
    import triton
    mod = {"torch": torch, "triton": triton}[lib]
    key = ("src", ("f32", (4, 4)))
    old_cfg = SPACE.default().replace(num_warps=2)
    new_cfg = SPACE.default().replace(num_warps=16)
    calls = []

    def prefer(cfg_wanted):
        def obj(c):
            calls.append(c)
            return 1.0 if c == cfg_wanted else 2.0
        return obj

    effort = Effort("t", population=3, generations=0, max_evals=3)
    # 1. Tuned under "the old version": that env is recorded in the file (and in the key).
    real = mod.__version__
    monkeypatch.setattr(mod, "__version__", "0.0.1-old")
    old = AutotuneCache()
    assert old.env[lib] == "0.0.1-old"
    assert autotune(FaultyBound(), _args(), effort, objective=prefer(old_cfg), cache_key=key, seeds=[old_cfg],
                    progress=False) == old_cfg
    old_path = old.path(old.key(*key))
    assert json.loads(old_path.read_text())["env"][lib] == "0.0.1-old"
    # 2. Back on the real version: the old entry is not returned; autotune measures again.
    monkeypatch.setattr(mod, "__version__", real)
    cur = AutotuneCache()
    assert cur.env == environment() and cur.env[lib] == real
    assert cur.key(*key) != old.key(*key)
    assert cur.get(cur.key(*key)) is None
    calls.clear()
    got = autotune(FaultyBound(), _args(), effort, objective=prefer(new_cfg), cache_key=key,
                   seeds=[old_cfg, new_cfg], progress=False)
    assert got == new_cfg and calls
    # 3. A file at the current key that records the old version (copied, or a hash collision) is a miss
    #    too, and the next tuning run overwrites it.
    data = json.loads(old_path.read_text())
    data["key"] = cur.key(*key)
    cur.path(cur.key(*key)).write_text(json.dumps(data))
    assert cur.get(cur.key(*key)) is None
    calls.clear()
    assert autotune(FaultyBound(), _args(), effort, objective=prefer(new_cfg), cache_key=key,
                    seeds=[old_cfg, new_cfg], progress=False) == new_cfg
    assert calls
    assert json.loads(cur.path(cur.key(*key)).read_text())["env"][lib] == real
    assert cur.get(cur.key(*key)) == new_cfg
