"""The row builder: one case (op, mode, shape, dtype) -> one result row per impl."""
from __future__ import annotations

import math
import zlib
from types import ModuleType
from typing import Callable

import torch

from bench import baselines, metrics, schema, timing

Timer = Callable[[Callable[[], object]], float]


def grad_indices(mod: ModuleType, inputs: tuple) -> list[int]:
    """GRAD_INPUTS restricted to floating-point tensors (ints/offsets get no grad)."""
    return [i for i in mod.GRAD_INPUTS
            if isinstance(inputs[i], torch.Tensor) and inputs[i].is_floating_point()]


def _leaves(inputs: tuple, idx: list[int], upcast: bool = False) -> list:
    """inputs with idx entries replaced by fresh autograd leaves (fp32 when upcast)."""
    out = list(inputs)
    for i in idx:
        t = inputs[i].detach()
        out[i] = (t.float() if upcast else t).requires_grad_(True)
    return out


def reference(mod: ModuleType, inputs: tuple, mode: str, dtype: torch.dtype):
    """(expected result, grad_outputs): the output, or for bwd the input grads, in fp32.

    For bwd, grad_outputs are drawn in `dtype` so the impls see exactly the
    values (upcast losslessly) that the fp32 reference backward sees.
    """
    if mode == "fwd":
        with torch.no_grad():
            return mod.reference(*inputs), None
    idx = grad_indices(mod, inputs)
    leaves = _leaves(inputs, idx, upcast=True)
    outs = metrics.flatten(mod.reference(*leaves))
    gouts = [torch.randn(o.shape, dtype=dtype, device=o.device) for o in outs]
    grads = torch.autograd.grad(outs, [leaves[i] for i in idx], [g.float() for g in gouts])
    return list(grads), gouts


def prepare(fn: Callable, inputs: tuple, mode: str, idx: list[int], gouts=None):
    """Run fn once on inputs; return (result to check, timed call, bytes moved).

    fwd: the call is fn(*inputs). bwd: the forward runs once here and the call
    is its backward (retain_graph, so it can repeat, on the calling thread); the result is the grads.
    """
    if mode == "fwd":
        out = fn(*inputs)
        return out, (lambda: fn(*inputs)), timing.tensor_bytes(inputs) + timing.tensor_bytes(out)
    leaves = _leaves(inputs, idx)
    outs = metrics.flatten(fn(*leaves))
    if gouts is None:
        gouts = [torch.randn_like(o) for o in outs]
    gouts = [g.to(o.dtype) for g, o in zip(gouts, outs)]
    targets = [leaves[i] for i in idx]

    def call():
        # On the calling thread, not autograd's per-device worker: waking that thread took 0-100 us
        # on the H100 machine (idle CPU cores), which made every small backward (ours and the
        # baselines alike) vary 2-3x between runs; on one thread the same cases repeat within a few %.
        with torch.autograd.set_multithreading_enabled(False):
            return torch.autograd.grad(outs, targets, gouts, retain_graph=True)

    grads = call()
    ws = timing.tensor_bytes(inputs) + timing.tensor_bytes(gouts) + timing.tensor_bytes(grads)
    return list(grads), call, ws


GraphTimer = Callable[[Callable[[], list]], float]


def run_case(mod: ModuleType, shape: tuple, dtype: torch.dtype, mode: str, impls: list[str],
             device: str, timer: Timer | None = None, env: dict | None = None,
             log: Callable[[str], None] = print, rotate: bool = True,
             graph_timer: GraphTimer | None = None) -> list[dict]:
    """Check (and with a timer, time) every impl on one case; return tidy rows.

    Without a timer only correctness is checked (ms, metric and speedups NaN).
    An impl that raises becomes an "error" row; the others still run.
    With ``graph_timer`` (timing.graph_bench) each timed impl is also timed captured in a CUDA graph
    and replayed: ``ms_graph``; an impl that cannot be captured gets NaN and says why in ``graph_note``.
    """
    env = env or {}
    tol = mod.TOLERANCE[dtype]
    work = math.nan
    base = {"op": mod.NAME, "mode": mode, "shape": schema.format_shape(shape),
            "dtype": schema.dtype_name(dtype), "unit": mod.METRIC}
    res = {n: blank() for n in impls}
    if timer is not None and graph_timer is not None:
        for r in res.values():
            r["ms_graph"] = math.nan
    try:
        work = mod.work(shape, dtype) if mode == "fwd" else mod.backward_work(shape, dtype)
        # Seeded per case (crc32: str hash() is salted per process), so a failing row replays.
        torch.manual_seed(zlib.crc32(repr((mod.NAME, tuple(shape), str(dtype), mode)).encode()))
        inputs = mod.make_inputs(shape, dtype, device)
        expected, gouts = reference(mod, inputs, mode, dtype)
        idx = grad_indices(mod, inputs)
    except Exception as e:
        log(f"    case error (work/inputs/reference): {type(e).__name__}: {e}")
        for r in res.values():
            r["note"] = f"case set-up failed: {_why(e)}"
        impls = []  # every row stays "error"
    extra_sets: list[tuple] = []  # rotated input sets, shared by all impls of the case
    for name in impls:
        r = res[name]
        result = call = calls = None
        if name == baselines.COPY:  # no result to check: a copy of the op's counted bytes
            try:
                r["ms"] = timer(baselines.copy_of(work, device)) if timer is not None else math.nan
                r["status"] = "ok"
                if timer is not None and graph_timer is not None:
                    _graph_time(r, graph_timer, lambda: [baselines.copy_of(work, device)], log, name)
            except Exception as e:
                r["note"] = _why(e)
                log(f"    {name}: error: {r['note']}")
            continue
        try:
            fn = baselines.make_fn(mod, name, mode, n_inputs=len(inputs))
            secs, (result, call, ws) = timing.timed_call(lambda: prepare(fn, inputs, mode, idx, gouts))
            if name in FIRST_CALL_TIMED:  # first call = compile (+ tuning)
                r["compile_s"] = secs
            if name == baselines.COMPILE_MAX:  # its first call is inductor's search (compile included)
                r["tuning"], r["tune_s"] = baselines.MAX_MODE, secs
            elif getattr(fn, "tuning", ""):  # the helion baseline: searched now, stored, or default config
                r["tuning"], r["tune_s"] = fn.tuning, fn.tune_s
            r["err"] = metrics.rel_error(result, expected)
            r["status"] = "ok" if metrics.passes(r["err"], tol) else "FAIL"
            if r["status"] == "FAIL":
                r["note"] = f"err {r['err']:.1e} > tol {tol:.0e}"
            if timer is not None:
                k = timing.rotation_count(ws, timing.l2_bytes()) if rotate else 1
                while len(extra_sets) < k - 1:
                    extra_sets.append(mod.make_inputs(shape, dtype, device))
                calls = [call] + [prepare(fn, s, mode, idx)[1] for s in extra_sets[:k - 1]]
                r["ms"] = timer(timing.rotating(calls))
                if graph_timer is not None:
                    _graph_time(r, graph_timer, lambda: [prepare(fn, s, mode, idx, gouts)[1]
                                                         for s in [inputs, *extra_sets[:k - 1]]], log, name)
        except Exception as e:
            r["status"], r["note"] = "error", _why(e)
            log(f"    {name}: error: {r['note']}")
        finally:
            result = call = calls = None  # drop this impl's outputs and graphs before the next
            if torch.cuda.is_available():
                try:
                    torch.cuda.empty_cache()
                except Exception:  # a broken CUDA context shows in the next impl's row
                    pass
        log(f"    {name:<12} {r['status']:<5} err={r['err']:.2e} (tol {tol:.0e})"
            + (f"  {r['ms']:.4f} ms  {metrics.throughput(work, r['ms'], mod.METRIC):.1f} {mod.METRIC}"
               if timer is not None and math.isfinite(r["ms"]) else "")
            + (f"  graph {r['ms_graph']:.4f} ms" if math.isfinite(r.get("ms_graph", math.nan)) else ""))
    ours, eager = res.get(baselines.OURS), res.get("eager")
    if ours and eager and metrics.ill_conditioned(ours["err"], tol, eager["err"]):
        ours["status"] = "ok"
        ours["note"] = (f"ill-conditioned (ref ~0): ok, within {metrics.ILL_FACTOR:g}x of eager's "
                        f"{eager['err']:.1e}")
        eager["note"] = f"ill-conditioned (ref ~0): {base['dtype']} rounding, not a bug"
        log(f"    {baselines.OURS}: {ours['note']}")
    if ours and ours["status"] == "ok":
        for n, r in res.items():
            if r["status"] == "FAIL" and not r["note"].startswith("ill-conditioned"):
                r["note"] += f": {n}'s {base['dtype']} rounding; ours passes"
    return _rows(base, res, work, env)


def _graph_time(r: dict, graph_timer: GraphTimer, build: Callable[[], list], log, name: str) -> None:
    """r["ms_graph"] from graph_timer(build), or NaN and r["graph_note"] when the impl cannot be captured."""
    try:
        r["ms_graph"] = graph_timer(build)
    except Exception as e:  # not capturable (a host sync, a CPU tensor, an allocation it cannot replay)
        r["ms_graph"], r["graph_note"] = math.nan, f"not capturable: {_why(e)}"
        log(f"    {name}: {r['graph_note']}")
        if torch.cuda.is_available():
            try:
                torch.cuda.synchronize()
            except Exception:  # a broken context shows in the next impl's row
                pass


FIRST_CALL_TIMED = (baselines.OURS, "compile", baselines.COMPILE_MAX, "helion", baselines.LIGER)


def blank() -> dict:
    """One impl's result before it runs: an error until proven otherwise."""
    return {"ms": math.nan, "err": math.nan, "status": "error", "compile_s": math.nan,
            "tuning": "", "tune_s": math.nan, "note": ""}


def _why(e: BaseException) -> str:
    """An exception's type and first line, short enough for a table cell."""
    first = str(e).splitlines()[0] if str(e) else ""
    text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _rows(base: dict, res: dict, work: float, env: dict) -> list[dict]:
    """Tidy rows with speedup_vs_<b> = ms_b / ms_row, NaN unless both rows passed."""
    names = list(res)
    others = [n for n in names if n != baselines.OURS]
    rows = []
    for n in names:
        r = res[n]
        row = {**base, "impl": n, "ms": r["ms"], "metric": metrics.throughput(work, r["ms"], base["unit"])}
        for b in others:
            ok = r["status"] == "ok" and res[b]["status"] == "ok"
            row[f"speedup_vs_{b}"] = metrics.speedup(res[b]["ms"], r["ms"]) if ok else math.nan
        if "ms_graph" in r:  # graph timing was asked for this case (its own columns)
            row["ms_graph"], row["graph_note"] = r["ms_graph"], r.get("graph_note", "")
        row.update(err=r["err"], status=r["status"], compile_s=r["compile_s"], tuning=r.get("tuning", ""),
                   tune_s=r.get("tune_s", math.nan), version=baselines.version_of(n, env) if env else "",
                   note=r.get("note", ""))
        row.update({k: env.get(k, "") for k in ("gpu", "torch", "triton", "commit", "date")})
        rows.append(row)
    return rows
