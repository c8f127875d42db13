"""Metric formulas (DESIGN §6/§7) and the per-run hardware ceilings."""
from __future__ import annotations

import math
from typing import Iterable

import torch

TINY = 1e-30  # keeps relative error finite when the reference is all zeros


def throughput(work: float, ms: float, unit: str) -> float:
    """GB/s = bytes/ms/1e6; TFLOP/s = flops/ms/1e9. NaN when ms is not positive."""
    if not ms or not math.isfinite(ms) or ms <= 0:
        return math.nan
    if unit == "GB/s":
        return work / ms / 1e6
    if unit == "TFLOP/s":
        return work / ms / 1e9
    raise ValueError(f"unknown unit {unit!r} (want 'GB/s' or 'TFLOP/s')")


def flatten(x) -> list[torch.Tensor]:
    """The tensors of x (a tensor, or nested tuples/lists of them), in order."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in flatten(item)]
    raise TypeError(f"expected a tensor or a tuple of tensors, got {type(x).__name__}")


def rel_error(out, ref) -> float:
    """max|out - ref| / max(max|ref|, tiny), in fp32; max over tensors of a tuple.

    Shape mismatches and non-finite values give inf/nan, which fail any tolerance.
    """
    outs, refs = flatten(out), flatten(ref)
    if len(outs) != len(refs):
        return math.inf
    worst = 0.0
    for o, r in zip(outs, refs):
        if o.shape != r.shape:
            return math.inf
        o32, r32 = o.detach().float(), r.detach().float().to(o.device)
        if o32.numel() == 0:
            continue
        diff = (o32 - r32).abs().max().item()
        scale = max(r32.abs().max().item(), TINY)
        err = diff / scale
        if math.isnan(err):
            return math.nan
        worst = max(worst, err)
    return worst


def passes(err: float, tol: float) -> bool:
    """True when err <= tol; NaN never passes."""
    return err <= tol


# An ill-conditioned case (RMSNorm's dx at N=1: w*g*(1 - xhat^2) cancels to ~eps) leaves a reference near
# zero, so any rounding is a large relative error. PyTorch eager in the same dtype is then as far off; ours
# passes while within ILL_FACTOR of eager's error. Both are rounding noise of the same cancellation, in a
# different summation order, so a factor of a few separates them from a real bug (which is >> tolerance).
ILL_FACTOR = 4.0


def ill_conditioned(err: float, tol: float, eager_err: float) -> bool:
    """True when err fails tol only because the case is ill-conditioned: eager fails it too, ours is close."""
    return (not passes(err, tol)) and math.isfinite(err) and math.isfinite(eager_err) \
        and eager_err > tol and err <= ILL_FACTOR * eager_err


def speedup(baseline_ms: float, ours_ms: float) -> float:
    """baseline_ms / ours_ms (> 1 means ours is faster); NaN when either is missing."""
    if not (ours_ms and baseline_ms) or not (math.isfinite(ours_ms) and math.isfinite(baseline_ms)):
        return math.nan
    if ours_ms <= 0 or baseline_ms <= 0:
        return math.nan
    return baseline_ms / ours_ms


def geomean(values: Iterable[float]) -> float:
    """Geometric mean of the finite positive values; NaN when there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not vals:
        return math.nan
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def measure_ceilings(bench_fn=None) -> dict[str, float]:
    """Measured hardware ceilings on CUDA device 0 (GPU only).

    copy_GBps: device-to-device copy of 1 GiB, counting read + write.
    matmul_TFLOPs: cuBLAS bf16 matmul 8192^3.
    """
    from bench.timing import gpu_bench

    bench_fn = bench_fn or gpu_bench
    n, k = 1 << 30, 8192

    def copy_ms() -> float:  # a function, so the 2 GiB of buffers are freed on return
        src = torch.empty(n, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        return bench_fn(lambda: dst.copy_(src))

    def matmul_ms() -> float:
        a = torch.randn(k, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(k, k, device="cuda", dtype=torch.bfloat16)
        return bench_fn(lambda: torch.matmul(a, b))

    c_ms, m_ms = copy_ms(), matmul_ms()
    torch.cuda.empty_cache()
    return {"copy_GBps": throughput(2 * n, c_ms, "GB/s"),
            "matmul_TFLOPs": throughput(2 * k**3, m_ms, "TFLOP/s"),
            "copy_ms": c_ms, "matmul_ms": m_ms}


def ceiling_for(unit: str, ceilings: dict[str, float] | None) -> float | None:
    """The ceiling that applies to a metric unit, if measured."""
    if not ceilings:
        return None
    return ceilings.get({"GB/s": "copy_GBps", "TFLOP/s": "matmul_TFLOPs"}.get(unit, ""))
