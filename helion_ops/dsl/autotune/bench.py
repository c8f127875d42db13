"""Measuring candidates of a BoundKernel (docs/CONTRACTS.md §2): precompiled in parallel on a GPU (``Precompiler``),
checked (``compare``), timed (``Benchmarker``); ``Progress`` lines on stderr (``HELION_AUTOTUNE_PROGRESS=0``: none)."""
from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from collections import deque
from contextlib import suppress
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Hashable, Optional, Sequence

from ..config import Config
from .cache import source_hash

log = logging.getLogger("helion_ops.autotune")
INF = math.inf
DEFAULT_COMPILE_TIMEOUT = 60.0

class Progress:
    """Counters (``record(t)`` per candidate, ``compiled(ok)`` per precompile) and status lines; no-ops once closed."""
    def __init__(self, enabled: bool = True, desc: str = "autotune", stream: Any = None) -> None:
        quiet = os.environ.get("HELION_AUTOTUNE_PROGRESS", "").strip().lower() in ("0", "false", "no", "off")
        self.enabled, self.desc, self.stream = bool(enabled) and not quiet, desc, stream or sys.stderr
        self.t0, self.best, self._phase = time.monotonic(), math.inf, None
        self.evaluated = self.failed = self.compiled_ok = self.compile_failed = 0
    def phase(self, name: Optional[str], total: Optional[int] = None) -> None:
        """Start phase ``name`` (None: none), ending the current one with a line of its counters."""
        if self._phase is not None:
            best = f"{self.best * 1e3:.4f} ms" if math.isfinite(self.best) else "-"
            self._line(f"{self._phase}: compiled {self.compiled_ok} (failed {self.compile_failed}) | "
                       f"evaluated {self.evaluated} (failed {self.failed}) | best {best}")
        self._phase = name
    def record(self, t: float) -> None:
        self.evaluated += 1
        self.failed += not math.isfinite(t)
        self.best = min(self.best, t)
    def compiled(self, ok: bool) -> None:
        self.compiled_ok += bool(ok)
        self.compile_failed += not ok
    def log(self, msg: str) -> None:
        log.info(msg)
        self._line(msg)
    def close(self, summary: Optional[str] = None) -> None:
        self.phase(None)
        if summary:
            self.log(summary)
        self.enabled = False
    def _line(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.desc} {time.monotonic() - self.t0:.1f}s] {text}", file=self.stream, flush=True)
    def __enter__(self) -> "Progress": return self
    def __exit__(self, *exc: Any) -> None: self.close()

def _worker_init() -> None:
    # Pay the import of triton + codegen while the pool starts, not inside the first job's timeout.
    with suppress(Exception):
        import helion_ops.dsl.backends.triton  # noqa: F401

def _ping() -> int:
    time.sleep(0.02)
    return os.getpid()

def compile_job(payload: tuple) -> bool:
    """Worker job: ``triton.compile`` every spec of one candidate (warms Triton's disk cache for the parent)."""
    specs, target = payload
    from helion_ops.dsl.backends.triton import compile_spec
    for spec in specs:
        compile_spec(spec, target=target)
    return True

# (workers, initializer) -> a live worker pool, shared by every search of the process: starting one costs seconds
# (each worker imports torch and Triton), more than a quick search's compiles
_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()

class Precompiler:
    """Runs picklable jobs in a process pool, at most ``workers`` in flight. Workers fork from a server that imported
    the codegen once; the pool outlives the Precompiler. A timeout kills the pool (a hung ``triton.compile`` cannot
    be cancelled) and requeues the others; after a worker crash they run one at a time."""
    def __init__(self, workers: Optional[int] = None, timeout: float = DEFAULT_COMPILE_TIMEOUT,
                 job: Callable[[Any], Any] = compile_job, initializer: Optional[Callable[[], None]] = _worker_init):
        self.workers = max(1, workers or min(16, os.cpu_count() or 1))
        self.timeout, self.job, self.initializer = timeout, job, initializer
        self._pool, self._warming = None, None  # the executor, the thread starting it (warm)
    def warm(self) -> None:
        """Start the workers in the background (they import Triton for seconds)."""
        self._warming = threading.Thread(target=self._start, daemon=True)
        self._warming.start()
    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        return self._start()
    def _start(self) -> cf.ProcessPoolExecutor:  # the live shared pool (another search may have killed ours)
        with _POOLS_LOCK:
            key = (self.workers, self.initializer)
            self._pool = _POOLS.get(key) or _POOLS.setdefault(key, self._new_pool())
            return self._pool
    def _new_pool(self) -> cf.ProcessPoolExecutor:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["helion_ops.dsl.backends.triton"])  # read when the server first starts
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=self.initializer)
        # Start every worker (fork + initializer) before any job's clock starts, so a slow start never reads
        # as a hung compile. Pings are slightly slow so a ready worker cannot take them all.
        pids, deadline = set(), time.monotonic() + max(120.0, self.timeout)
        while len(pids) < self.workers and time.monotonic() < deadline:
            done, _ = cf.wait([pool.submit(_ping) for _ in range(self.workers)], timeout=deadline - time.monotonic())
            pids.update(f.result() for f in done if f.exception() is None)
        return pool
    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with _POOLS_LOCK:
            if _POOLS.get((self.workers, self.initializer)) is pool:
                del _POOLS[(self.workers, self.initializer)]
        # Private but stable since 3.8; the only way to stop a hung worker.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            with suppress(Exception):
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)
    def close(self) -> None:
        """Let go of the worker pool (after letting a starting one finish); it stays up for the next search."""
        if self._warming is not None:
            self._ensure_pool()
        self._pool = None
    def run(self, jobs: dict[Hashable, Any], on_done: Optional[Callable[[Hashable, Optional[str]], None]] = None,
            deadline: Optional[float] = None) -> dict[Hashable, Optional[str]]:
        """key -> None or the error of ``job(payload)`` for each item, ``on_done(key, error)`` as each ends; what has
        not finished at ``deadline`` (``time.monotonic()``) fails, so a search's wall-clock cap holds mid-batch."""
        results, inflight = {}, {}  # key -> error (None: done), future -> (key, start time)
        cap = INF if deadline is None else deadline
        queue, suspects = deque(jobs), deque()  # suspects: in flight when a worker died; retried alone
        def finish(key: Hashable, err: Optional[str]) -> None:
            results[key] = err
            if on_done is not None:
                on_done(key, err)
        def abandon() -> list:  # kill the pool; return the keys that were in flight
            keys = [k for k, _ in inflight.values()]
            inflight.clear()
            self._kill_pool()
            return keys
        def submit(source: deque) -> bool:
            k = source.popleft()
            try:
                fut = self._ensure_pool().submit(self.job, jobs[k])
                inflight[fut] = (k, time.monotonic())  # the clock starts after pool warm-up
                return True
            except BrokenProcessPool:  # died between waits: its jobs are suspects
                source.appendleft(k)
                suspects.extend(abandon())
                return False
        while queue or suspects or inflight:
            if time.monotonic() >= cap:
                for k in [*queue, *suspects, *(abandon() if inflight else ())]:
                    finish(k, "autotune time limit reached")
                break
            while queue and len(inflight) < self.workers and submit(queue):
                pass
            if not queue and suspects and not inflight:
                submit(suspects)
            if not inflight:
                continue
            first = min(min(t0 + self.timeout, cap) for _, t0 in inflight.values())
            done, _ = cf.wait(list(inflight), timeout=max(0.0, first - time.monotonic()) + 0.01,
                              return_when=cf.FIRST_COMPLETED)
            crashed = []
            for f in done:
                k, _ = inflight.pop(f)
                try:
                    f.result()
                    finish(k, None)
                except BrokenProcessPool:
                    crashed.append(k)
                except Exception as e:
                    finish(k, f"{type(e).__name__}: {e}")
            if crashed:
                crashed += abandon()
                if len(crashed) == 1:
                    finish(crashed[0], "worker process crashed")  # it ran alone: its own crash
                else:
                    suspects.extend(crashed)
                continue
            now = time.monotonic()
            expired = [f for f, (_, t0) in inflight.items() if now >= t0 + self.timeout]
            if expired and now < cap:  # at the cap, the top of the loop fails them all
                for f in expired:
                    finish(inflight.pop(f)[0], f"timed out after {self.timeout:.0f}s")
                queue.extendleft(abandon())  # innocent bystanders go back to the front of the queue
        return results

def tensors_of(obj: Any) -> list:
    import torch
    if isinstance(obj, dict):
        obj = [obj[k] for k in sorted(obj, key=str)]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in tensors_of(x)]
    return [obj] if isinstance(obj, torch.Tensor) else []

def compare(out: Any, ref: Any) -> Optional[str]:
    """None when ``out`` matches ``ref`` (nested tensors), else why not. Floats: ``|out - ref| <= tol * (max|ref| +
    |ref|)``, tol by dtype, NaN/inf at the same places; the rest equal. Partials (leading dim unlike ref's) by sum."""
    import torch
    outs, refs = tensors_of(out), tensors_of(ref)
    if len(outs) != len(refs):
        return f"{len(outs)} output tensors, expected {len(refs)}"
    for i, (o, r) in enumerate(zip(outs, refs)):
        if o.shape != r.shape:
            if not (o.dim() == r.dim() >= 2 and o.shape[1:] == r.shape[1:] and r.is_floating_point()):
                return f"output {i}: shape {tuple(o.shape)}, expected {tuple(r.shape)}"
            o, r = o.sum(0, keepdim=True), r.sum(0, keepdim=True)  # partials: compare what they sum to
        o, r = o.detach().to(r.device), r.detach()
        if not r.is_floating_point():
            if not torch.equal(o, r):
                return f"output {i}: values differ"
            continue
        # On the device, in fp32 (fp64 for fp64): exact for fp16/bf16 values, no host copies of big outputs.
        ct = torch.float64 if r.dtype == torch.float64 else torch.float32
        o32, r32 = o.to(ct), r.to(ct)
        bad_o, bad_r = ~torch.isfinite(o32), ~torch.isfinite(r32)
        if not torch.equal(bad_o, bad_r) or not torch.equal(o32[bad_o].nan_to_num(), r32[bad_r].nan_to_num()):
            return f"output {i}: NaN/inf positions differ"
        o32, r32 = o32.masked_fill(bad_o, 0), r32.masked_fill(bad_r, 0)
        if not r32.numel():
            continue
        tol = {torch.float32: 1e-4, torch.float64: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}.get(r.dtype, 1e-1)
        ra = r32.abs()
        scale, diff = ra.max(), (o32 - r32).abs()
        if bool((diff > tol * (scale + ra)).any()):
            return f"output {i}: max error {(diff.max() / scale.clamp_min(1e-30)).item():.3g} of max|ref| (tol {tol:g})"
    return None

def _clone(args: Sequence[Any]) -> list:
    import torch
    return [a.clone() if isinstance(a, torch.Tensor) else a for a in args]

class Benchmarker:
    """The searches' objective over a BoundKernel, in seconds, one measurement per generated source: each runs on
    clones of the args and must reproduce ``reference(*args)``, else the default config's outputs and writes."""
    def __init__(self, bound: Any, args: Sequence[Any], *, reps: int = 10, workers: Optional[int] = None,
                 reference: Optional[Callable[..., Any]] = None, compile_timeout: float = DEFAULT_COMPILE_TIMEOUT,
                 precompile: Optional[bool] = None, progress: Optional[Progress] = None, target: Any = None) -> None:
        import torch
        self.bound, self.args, self.reps, self.reference, self.target = bound, list(args), reps, reference, target
        self.progress = progress or Progress(False)
        self.device = next((a.device for a in self.args if isinstance(a, torch.Tensor)),
                           torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.cuda = self.device.type == "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1"
        precompile = self.cuda if precompile is None else precompile
        self.precompiler = Precompiler(workers, compile_timeout) if precompile else None
        self.by_code, self.code_of = {}, {}  # source hash -> time, Config -> source hash (None: codegen failed)
        self.deadline: Optional[float] = None  # time.monotonic() cap, set by autotune()
        self._written, self._expected, self._timing_args, self._flush = [], None, None, None
    def __call__(self, cfg: Config) -> float: return self.evaluate_batch([cfg])[0]
    def evaluate_batch(self, cfgs: Sequence[Config]) -> list[float]:
        """Times for ``cfgs`` (inf for failures), measuring each distinct generated source once."""
        new, cap = {}, (self.deadline if self.by_code else None)  # batch 1 runs whole: cut, it yields the default
        for c in cfgs:
            if c not in self.code_of:
                self.code_of[c] = self._attempt(c, "codegen", lambda: source_hash(self.bound.to_triton_code(c)))
            h = self.code_of[c]
            if h is not None and h not in self.by_code:
                new.setdefault(h, c)
        if self.precompiler is not None and new:
            self.expected()  # the default's run compiles in this process while the workers start
            specs = {h: self._attempt(c, "compile_specs", lambda: self.bound.compile_specs(c), h)
                     for h, c in new.items()}
            def done(h: Hashable, err: Optional[str]) -> None:
                self.progress.compiled(err is None)
                if err is not None:
                    self._fail(new[h], f"precompile: {err}", h)  # type: ignore[index]
            self.precompiler.run({h: (sp, self.target) for h, sp in specs.items() if sp is not None}, on_done=done,
                                 deadline=cap)
        for h, c in new.items():
            if cap is not None and time.monotonic() > cap:
                break  # past the run's wall-clock cap: the rest stay unmeasured (inf)
            if h not in self.by_code:
                self.by_code[h] = self.measure(c)
        return [self.by_code.get(self.code_of[c], INF) for c in cfgs]
    def confirm(self, history: Sequence[tuple[Config, float]], k: int = 3) -> tuple[Optional[Config], float]:
        """Re-time the ``k`` fastest distinct sources of ``history`` with twice the reps: (winner, new time)."""
        best: dict[str, tuple[Config, float]] = {}
        for c, t in history:
            h = self.code_of.get(c)
            if h and math.isfinite(t) and (h not in best or t < best[h][1]):
                best[h] = (c, t)
        top = sorted(best.values(), key=lambda ct: ct[1])[:k]
        if len(top) <= 1:
            return top[0] if top else (None, INF)
        retimed = [(c, self._attempt(c, "re-timing", lambda: self._time(c, self.reps * 2))) for c, _ in top]
        return min((ct for ct in retimed if ct[1] is not None), key=lambda ct: ct[1], default=top[0])
    def close(self) -> None:
        if self.precompiler is not None:
            self.precompiler.close()
    def expected(self) -> Any:
        """(kind, outputs every candidate must reproduce), computed once; kind "none" when nothing produced them."""
        if self._expected is None:
            import torch
            args = _clone(self.args)
            try:
                if self.reference is not None:
                    self._expected = ("ref", self.reference(*args))
                    return self._expected
                default = self.bound.default_config()
                out = self.bound.run(default, *args)
                # Only written args are checked. An output buffer may already hold the right answer (a recycled
                # allocation), so a second run on float args refilled at random finds them too.
                changed = [isinstance(a, torch.Tensor) and not torch.equal(a, b) for a, b in zip(args, self.args)]
                probe = [a.clone().normal_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                         for a in self.args]
                filled = _clone(probe)
                self.bound.run(default, *probe)
                self._written = [i for i, (c, p, f) in enumerate(zip(changed, probe, filled))
                                 if c or isinstance(p, torch.Tensor) and not torch.equal(p, f)]
                self._expected = ("default", (out, [args[i] for i in self._written]))
            except Exception as e:
                self.progress.log(f"no reference output ({type(e).__name__}: {e}); accuracy check skipped")
                self._expected = ("none", None)
        return self._expected
    def measure(self, cfg: Config) -> float:
        kind, exp = self.expected()
        args = _clone(self.args)
        try:
            out = self.bound.run(cfg, *args)
            if kind == "default":
                out = (out, [args[i] for i in self._written])
            err = None if kind == "none" else compare(out, exp)
            return self._fail(cfg, f"wrong result: {err}") if err is not None else self._time(cfg, self.reps)
        except Exception as e:
            return self._fail(cfg, f"run failed: {type(e).__name__}: {e}")
    def _time(self, cfg: Config, reps: int, budget_s: float = 2.0) -> float:
        """Median seconds per run after a warm-up: CUDA events, each after a cold-L2 flush; elsewhere wall clock."""
        args = self._timing_args = self._timing_args or _clone(self.args)
        self.bound.run(cfg, *args)
        def wall() -> float:
            t0 = time.perf_counter()
            self.bound.run(cfg, *args)
            return time.perf_counter() - t0
        if not self.cuda:
            return statistics.median([wall() for _ in range(max(1, reps))])
        import torch
        if self._flush is None:
            self._flush = torch.empty(64 << 20, dtype=torch.int32, device=self.device)  # 256 MB: over any L2
        def timed(n: int, flush: bool) -> list[float]:  # ms of n runs, each between two events
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            for s, e in events:
                if flush:
                    self._flush.zero_()
                s.record()
                self.bound.run(cfg, *args)
                e.record()
            torch.cuda.synchronize(self.device)
            return [s.elapsed_time(e) for s, e in events]
        reps = max(3, min(reps, int(budget_s / max(timed(1, False)[0] / 1e3, 1e-6))))
        return statistics.median(timed(reps, True)) / 1e3
    def _attempt(self, cfg: Config, what: str, fn: Callable[[], Any], code: Optional[str] = None) -> Any:
        try:
            return fn()
        except Exception as e:
            self._fail(cfg, f"{what} failed: {type(e).__name__}: {e}", code)
    def _fail(self, cfg: Config, msg: str, code: Optional[str] = None) -> float:
        """Reject a candidate (and its source ``code``): inf. One line on screen (Triton errors carry PTX listings)."""
        if code is not None:
            self.by_code[code] = INF
        log.debug("candidate rejected: %r\n%s", cfg, msg)
        lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
        short = lines[0] if len(lines) <= 1 else f"{lines[0]} ... {lines[-1]}"
        self.progress.log(f"candidate rejected ({short[:240]}): {cfg!r}")
        return INF
