"""Benchmarking candidates of a BoundKernel (docs/CONTRACTS.md §2). Per batch of candidate configs:

1. dedupe by the sha256 of ``bound.to_triton_code(cfg)`` (configs that generate the same source share
   one measurement);
2. precompile new sources in parallel spawn workers (``Precompiler``): a job that raises, crashes its
   worker or outlives the timeout fails only its candidate; the pool is rebuilt and the batch goes on.
   Skipped on CPU and in the interpreter, where there is nothing to warm;
3. run each candidate on fresh clones of the args and compare every output with the default config's
   (or ``reference``'s) outputs; a wrong candidate gets ``inf``;
4. time it: CUDA events around each rep, L2 flushed by writing a 256 MB buffer before each, median of
   ``reps``.

``Benchmarker`` is the objective the searches call; ``confirm`` re-times the top few at the end so a
lucky measurement does not pick the winner.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import math
import multiprocessing as mp
import os
import statistics
import threading
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Hashable, Optional, Sequence

from ..config import Config
from .progress import Progress, log

INF = math.inf
DEFAULT_COMPILE_TIMEOUT = 60.0
FLUSH_BYTES = 256 << 20

# ---------------------------------------------------------------------------
# Parallel precompilation
# ---------------------------------------------------------------------------

def _worker_init() -> None:
    # Pay the import of triton + codegen while the pool starts, not inside
    # the first job's timeout.
    try:
        import helion_ops.dsl.backends.triton  # noqa: F401
    except Exception:
        pass

def _ping() -> int:
    time.sleep(0.02)
    return os.getpid()

def compile_job(payload: tuple) -> bool:
    """Worker job: ``triton.compile`` every spec of one candidate (warms Triton's on-disk cache, so the
    parent's first launch is cheap)."""
    specs, target = payload
    from helion_ops.dsl.backends.triton import compile_spec
    for spec in specs:
        compile_spec(spec, target=target)
    return True

class Precompiler:
    """Runs picklable jobs in a spawn ``ProcessPoolExecutor`` with one timeout per job.

    At most ``workers`` jobs are in flight, so every submitted job is running and a timeout is the
    job's own. On a timeout the pool is killed (a hung ``triton.compile`` cannot be cancelled), the job
    fails, and the other in-flight jobs are requeued. When a worker dies the executor cannot say whose
    job killed it: the in-flight jobs are retried one at a time, which pins the crash on the right one.
    """

    def __init__(self, workers: Optional[int] = None, timeout: float = DEFAULT_COMPILE_TIMEOUT,
                 job: Callable[[Any], Any] = compile_job, initializer: Optional[Callable[[], None]] = _worker_init) -> None:
        self.workers = max(1, workers or min(16, os.cpu_count() or 1))
        self.timeout = timeout
        self.job = job
        self.initializer = initializer
        self._pool: Optional[cf.ProcessPoolExecutor] = None
        self._warming: Optional[threading.Thread] = None

    def warm(self) -> None:
        """Start the workers in the background (they import Triton for seconds)."""
        self._warming = threading.Thread(target=self._start, daemon=True)
        self._warming.start()

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        return self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                          initializer=self.initializer)
            # Start every worker (interpreter + imports) before any job's
            # clock starts, so a slow start never reads as a hung compile.
            # Pings are slightly slow so a ready worker cannot take them all.
            pids: set = set()
            deadline = time.monotonic() + max(120.0, self.timeout)
            while len(pids) < self.workers and time.monotonic() < deadline:
                pings = [pool.submit(_ping) for _ in range(self.workers)]
                done, _ = cf.wait(pings, timeout=deadline - time.monotonic())
                pids.update(f.result() for f in done if f.exception() is None)
            self._pool = pool
        return self._pool

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Private but stable since 3.8; the only way to stop a hung worker.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            try:
                p.kill()
            except Exception:
                pass
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)

    def close(self) -> None:
        """Shut the worker pool down."""
        if self._warming is not None:
            self._ensure_pool()  # let a starting pool finish, then shut it down
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run(self, jobs: dict[Hashable, Any], on_done: Optional[Callable[[Hashable, Optional[str]], None]] = None,
            deadline: Optional[float] = None) -> dict[Hashable, Optional[str]]:
        """Run ``job(payload)`` for each item; return key -> None on success or an error message.
        ``on_done(key, error)`` is called as each ends. At ``deadline`` (``time.monotonic()`` value)
        whatever has not finished fails, so a search's wall-clock cap holds mid-batch."""
        results: dict[Hashable, Optional[str]] = {}
        queue = deque(jobs)
        suspects: deque = deque()  # in flight when a worker died; retried alone
        inflight: dict[cf.Future, tuple[Hashable, float]] = {}

        def finish(key: Hashable, err: Optional[str]) -> None:
            results[key] = err
            if on_done is not None:
                on_done(key, err)

        def submit(source: deque) -> bool:
            k = source.popleft()
            try:
                fut = self._ensure_pool().submit(self.job, jobs[k])
                inflight[fut] = (k, time.monotonic())  # the clock starts after pool warm-up
                return True
            except BrokenProcessPool:  # died between waits: its jobs are suspects
                source.appendleft(k)
                suspects.extend(k for k, _ in inflight.values())
                inflight.clear()
                self._kill_pool()
                return False

        def expires(t0: float) -> float:
            return t0 + self.timeout if deadline is None else min(t0 + self.timeout, deadline)

        while queue or suspects or inflight:
            if deadline is not None and time.monotonic() >= deadline:
                for k in [*queue, *suspects, *(k for k, _ in inflight.values())]:
                    finish(k, "autotune time limit reached")
                queue.clear()
                suspects.clear()
                if inflight:
                    inflight.clear()
                    self._kill_pool()
                break
            if queue:
                while queue and len(inflight) < self.workers and submit(queue):
                    pass
            elif suspects and not inflight:
                submit(suspects)
            if not inflight:
                continue
            first = min(expires(t0) for _, t0 in inflight.values())
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
                crashed += [k for k, _ in inflight.values()]
                inflight.clear()
                self._kill_pool()
                if len(crashed) == 1:
                    finish(crashed[0], "worker process crashed")  # it ran alone: its own crash
                else:
                    suspects.extend(crashed)
                continue
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                continue  # handled at the top of the loop
            expired = [f for f, (_, t0) in inflight.items() if now >= expires(t0)]
            if expired:
                for f in expired:
                    finish(inflight.pop(f)[0], f"timed out after {self.timeout:.0f}s")
                # Innocent bystanders go back to the front of the queue.
                queue.extendleft(k for k, _ in inflight.values())
                inflight.clear()
                self._kill_pool()
        return results

# ---------------------------------------------------------------------------
# Accuracy check
# ---------------------------------------------------------------------------

def _tolerance(dtype: Any) -> float:
    import torch
    return {torch.float32: 1e-4, torch.float64: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}.get(dtype, 1e-1)

def tensors_of(obj: Any) -> list:
    """The tensors in a (nested) result, in order."""
    import torch
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in tensors_of(x)]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in tensors_of(obj[k])]
    return []

def compare(out: Any, ref: Any) -> Optional[str]:
    """None when ``out`` matches ``ref`` (tensor or nested), else why not. Floats pass when ``|out - ref|
    <= tol * (max|ref| + |ref|)``, tol by the reference's dtype (fp32 1e-4, fp16 1e-2, bf16 2e-2);
    NaN/inf positions must agree; everything else must be equal. A float output whose shape differs from
    the reference's in the leading dim only is a per-program partial-sum buffer (its row count is
    the number of programs, which the config sets, e.g. a norm backward's dweight partials): it is
    compared by its sum over that dim, which is what the host reduces it to."""
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
        # On the device, in fp32 (fp64 for fp64): exact for fp16/bf16 values,
        # and no host copies of big outputs per candidate.
        ct = torch.float64 if r.dtype == torch.float64 else torch.float32
        o32, r32 = o.to(ct), r.to(ct)
        bad_o, bad_r = ~torch.isfinite(o32), ~torch.isfinite(r32)
        if not torch.equal(bad_o, bad_r) or not torch.equal(o32[bad_o].nan_to_num(), r32[bad_r].nan_to_num()):
            return f"output {i}: NaN/inf positions differ"
        o32, r32 = o32.masked_fill(bad_o, 0), r32.masked_fill(bad_r, 0)
        if not r32.numel():
            continue
        tol = _tolerance(r.dtype)
        ra = r32.abs()
        scale = ra.max()
        diff = (o32 - r32).abs()
        if bool((diff > tol * (scale + ra)).any()):
            rel = (diff.max() / scale.clamp_min(1e-30)).item()
            return f"output {i}: max error {rel:.3g} of max|ref| (tol {tol:g})"
    return None

def _clone(args: Sequence[Any]) -> list:
    import torch
    return [a.clone() if isinstance(a, torch.Tensor) else a for a in args]

# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

def _device_of(args: Sequence[Any]) -> Any:
    import torch
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")

def _on_gpu(device: Any) -> bool:
    return getattr(device, "type", "cpu") == "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1"

class Timer:
    """Median-of-reps timing. On CUDA: events around each rep with a 256 MB write before it, so each
    rep starts with a cold L2. Elsewhere (CPU, interpreter): wall clock, which only orders roughly."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.cuda = _on_gpu(device)
        self._flush = None

    def __call__(self, fn: Callable[[], Any], reps: int, budget_s: float = 2.0) -> float:
        """Median seconds per call of ``fn`` (one untimed warm-up first)."""
        if not self.cuda:
            fn()
            ts = []
            for _ in range(max(1, reps)):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return statistics.median(ts)
        import torch
        if self._flush is None:
            self._flush = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device=self.device)
        fn()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize(self.device)
        est = s.elapsed_time(e) / 1e3
        # Slow candidates get fewer reps: a 50 ms kernel need not eat 1.5 s.
        reps = max(3, min(reps, int(budget_s / max(est, 1e-6))))
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            self._flush.zero_()
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize(self.device)
        return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)) / 1e3

# ---------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------

class Benchmarker:
    """Objective over a BoundKernel: ``bench(cfg) -> seconds`` and ``bench.evaluate_batch(cfgs)``
    (precompiles the batch in parallel). ``reference(*args)`` gives expected outputs; without it the
    default config's outputs (and its in-place writes to the args) are expected. ``precompile=None``
    means "on GPU only"."""

    def __init__(self, bound: Any, args: Sequence[Any], *, reps: int = 10,
                 reference: Optional[Callable[..., Any]] = None, compile_timeout: float = DEFAULT_COMPILE_TIMEOUT,
                 workers: Optional[int] = None, precompile: Optional[bool] = None,
                 progress: Optional[Progress] = None, target: Any = None) -> None:
        self.bound, self.args, self.reps, self.reference = bound, list(args), reps, reference
        self.progress = progress or Progress(False)
        self.device = _device_of(self.args)
        self.timer = Timer(self.device)
        self.target = target
        precompile = _on_gpu(self.device) if precompile is None else precompile
        self.precompiler = Precompiler(workers, compile_timeout) if precompile else None
        self.by_code: dict[str, float] = {}     # source hash -> time
        self.code_of: dict[Config, Optional[str]] = {}
        self.deadline: Optional[float] = None  # time.monotonic() cap, set by autotune()
        self._expected: Any = None
        self._written: list[int] = []
        self._timing_args: Optional[list] = None

    # -- objective API ------------------------------------------------------
    def __call__(self, cfg: Config) -> float:
        return self.evaluate_batch([cfg])[0]

    def evaluate_batch(self, cfgs: Sequence[Config]) -> list[float]:
        """Times for ``cfgs`` (inf for failures), measuring each distinct generated source once."""
        new: dict[str, Config] = {}
        for c in cfgs:
            h = self._code_hash(c)
            if h is not None and h not in self.by_code and h not in new:
                new[h] = c
        if self.precompiler is not None and new:
            self.expected()  # the default's run compiles in this process while the workers start
            self._precompile(new)
        for h, c in new.items():
            if self.by_code and self.deadline is not None and time.monotonic() > self.deadline:
                break  # past the run's wall-clock cap: the rest stay unmeasured (inf)
            if h not in self.by_code:
                self.by_code[h] = self.measure(c)
        return [self.by_code.get(self.code_of[c], INF) if self.code_of[c] else INF for c in cfgs]

    def confirm(self, history: Sequence[tuple[Config, float]], k: int = 3) -> tuple[Optional[Config], float]:
        """Re-time the ``k`` fastest distinct sources of ``history`` with twice the reps; return the
        winner and its new time."""
        best: dict[str, tuple[Config, float]] = {}
        for c, t in history:
            h = self.code_of.get(c)
            if h and math.isfinite(t) and (h not in best or t < best[h][1]):
                best[h] = (c, t)
        top = sorted(best.values(), key=lambda ct: ct[1])[:k]
        if len(top) <= 1:
            return top[0] if top else (None, INF)
        retimed = []
        for c, t in top:
            try:
                retimed.append((c, self._time(c, self.reps * 2)))
            except Exception as e:
                self._fail(c, f"re-timing failed: {type(e).__name__}: {e}")
        return min(retimed, key=lambda ct: ct[1]) if retimed else top[0]

    def close(self) -> None:
        if self.precompiler is not None:
            self.precompiler.close()

    # -- steps --------------------------------------------------------------
    def _code_hash(self, cfg: Config) -> Optional[str]:
        if cfg not in self.code_of:
            try:
                self.code_of[cfg] = hashlib.sha256(self.bound.to_triton_code(cfg).encode()).hexdigest()
            except Exception as e:
                self.code_of[cfg] = None
                self._fail(cfg, f"codegen failed: {type(e).__name__}: {e}")
        return self.code_of[cfg]

    def _precompile(self, new: dict[str, Config]) -> None:
        jobs = {}
        for h, c in new.items():
            try:
                jobs[h] = (self.bound.compile_specs(c), self.target)
            except Exception as e:
                self.by_code[h] = INF
                self._fail(c, f"compile_specs failed: {type(e).__name__}: {e}")

        def done(h: Hashable, err: Optional[str]) -> None:
            self.progress.compiled(err is None)
            if err is not None:
                self.by_code[h] = INF  # type: ignore[index]
                self._fail(new[h], f"precompile: {err}")  # type: ignore[index]

        self.precompiler.run(jobs, on_done=done, deadline=self.deadline)  # type: ignore[union-attr]

    def expected(self) -> Any:
        """The outputs every candidate must reproduce (computed once); None when neither a reference
        nor the default config can produce them."""
        if self._expected is None:
            import torch
            args = _clone(self.args)
            try:
                if self.reference is not None:
                    self._expected = ("ref", self.reference(*args))
                else:
                    default = self.bound.default_config()
                    out = self.bound.run(default, *args)
                    # Only args the kernel writes need checking afterwards. An output buffer
                    # may already hold the right answer (a recycled allocation), so also run
                    # once with every float arg refilled at random: a written arg changes.
                    changed = {i for i, (a, b) in enumerate(zip(args, self.args))
                               if isinstance(a, torch.Tensor) and not torch.equal(a, b)}
                    probe = [a.clone().normal_() if isinstance(a, torch.Tensor) and a.is_floating_point()
                             else a for a in self.args]
                    filled = _clone(probe)
                    self.bound.run(default, *probe)
                    changed |= {i for i, (a, b) in enumerate(zip(probe, filled))
                                if isinstance(a, torch.Tensor) and not torch.equal(a, b)}
                    self._written = sorted(changed)
                    self._expected = ("default", (out, [args[i] for i in self._written]))
            except Exception as e:
                self.progress.log(f"no reference output ({type(e).__name__}: {e}); accuracy check skipped")
                self._expected = ("none", None)
        return self._expected

    def measure(self, cfg: Config) -> float:
        """Accuracy-check then time one candidate; inf on any failure."""
        kind, exp = self.expected()
        args = _clone(self.args)
        try:
            out = self.bound.run(cfg, *args)
            if kind != "none":
                err = compare(out, exp) if kind == "ref" else \
                    compare((out, [args[i] for i in self._written]), exp)
                if err is not None:
                    self._fail(cfg, f"wrong result: {err}")
                    return INF
            return self._time(cfg, self.reps)
        except Exception as e:
            self._fail(cfg, f"run failed: {type(e).__name__}: {e}")
            return INF

    def _time(self, cfg: Config, reps: int) -> float:
        if self._timing_args is None:
            self._timing_args = _clone(self.args)
        args = self._timing_args
        return self.timer(lambda: self.bound.run(cfg, *args), reps)

    def _fail(self, cfg: Config, msg: str) -> None:
        # Triton errors can carry whole PTX listings: one line on screen,
        # the full text at debug level.
        log.debug("candidate rejected: %r\n%s", cfg, msg)
        lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
        short = lines[0] if len(lines) <= 1 else f"{lines[0]} ... {lines[-1]}"
        self.progress.log(f"candidate rejected ({short[:240]}): {cfg!r}")
