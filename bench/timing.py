"""Timing: triton's do_bench on GPU (plain: each call launched from Python; graph: the calls captured once
in a CUDA graph and replayed, so no host time is in the figure), input rotation against L2 hits,
first-call cost."""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Sequence

import torch

L2_FALLBACK = 50 * 2**20  # bytes, when the driver does not report L2 size
MAX_SETS = 64


def gpu_bench(fn: Callable[[], object], warmup: int = 25, rep: int = 100) -> float:
    """Median ms of fn on the GPU (triton.testing.do_bench; warmup/rep are ms budgets)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def graph_bench(build: Callable[[], Sequence[Callable[[], object]]], warmup: int = 25, rep: int = 100) -> float:
    """Median ms per call of the calls ``build()`` returns (one per rotated input set), captured together
    in one torch.cuda.CUDAGraph and replayed (do_bench over ``graph.replay``), divided by their number.

    ``build`` runs on the capture stream, so what it sets up there (a forward whose backward is the
    timed call) runs its backward on that stream too, inside the capture (autograd runs a backward op on
    its forward's stream). The calls are warmed up on that stream before the capture. A call that cannot
    be captured raises (the caller reports it as not capturable)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        calls = list(build())
        for _ in range(2):
            for call in calls:
                call()
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=stream):
            for call in calls:
                call()
        torch.cuda.current_stream().wait_stream(stream)
        return gpu_bench(graph.replay, warmup=warmup, rep=rep) / len(calls)
    finally:
        del graph, calls
        torch.cuda.synchronize()


def cpu_bench(fn: Callable[[], object], warmup: int = 2, rep: int = 10) -> float:
    """Median wall-clock ms of fn over `rep` calls (tests and debugging; not used for results)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rep):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def l2_bytes() -> int:
    """L2 cache size of CUDA device 0 in bytes (fallback 50 MB)."""
    if torch.cuda.is_available():
        size = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0)
        if size:
            return int(size)
    return L2_FALLBACK


def tensor_bytes(obj) -> int:
    """Total bytes of the tensors in obj (a tensor or nested tuples/lists); others count 0."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(o) for o in obj)
    return 0


def rotation_count(working_set: int, l2: int) -> int:
    """How many distinct input sets to cycle through so timed calls miss in L2.

    A working set under 2x L2 could stay cache-resident between calls and
    flatter a memory-bound kernel, so we rotate among ceil(4*L2/ws) sets,
    capped at 64; bigger working sets use one set.
    """
    if working_set <= 0:
        return MAX_SETS
    if working_set >= 2 * l2:
        return 1
    return min(MAX_SETS, math.ceil(4 * l2 / working_set))


def rotating(calls: Sequence[Callable[[], object]]) -> Callable[[], object]:
    """One callable that runs calls[0], calls[1], ... in turn, cycling."""
    if len(calls) == 1:
        return calls[0]
    state = [0]

    def step():
        i = state[0]
        state[0] = (i + 1) % len(calls)
        return calls[i]()

    return step


def sync() -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_call(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one synchronized call: on a first call, the compile cost."""
    sync()
    t0 = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - t0, result
