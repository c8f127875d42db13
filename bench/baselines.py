"""The implementations timed for one op: ours, eager, torch.compile, vendor, Helion, and for
memory-bound ops a device copy of the same bytes (the bandwidth a kernel of that size can reach)."""
from __future__ import annotations

from types import ModuleType
from typing import Callable

OURS = "helion_ops"
BUILTIN = ("eager", "compile", "helion")
COPY = "copy"  # not an implementation of the op: a copy moving the bytes the op's work() counts


def helion_available() -> bool:
    """Whether upstream Helion imports (an optional baseline); imported once, lazily."""
    from bench import helion_baseline

    return helion_baseline.available()[0]


def impl_names(mod: ModuleType, requested: list[str] | None, mode: str = "fwd") -> tuple[list[str], list[str]]:
    """Which impls to run for mod in `mode`, ours first; plus notes on requested ones skipped.

    requested=None means every baseline: eager, compile, all of mod.BASELINES, helion.
    A vendor name the op does not provide (e.g. "cudnn" for softmax) is skipped with a note;
    helion runs forward only, when a Helion version of the op exists and `import helion` works.
    "copy" (only when requested) applies to memory-bound ops (METRIC GB/s).
    """
    from bench import helion_baseline

    wanted = requested if requested is not None else ["eager", "compile", *mod.BASELINES, "helion"]
    names, notes, missing = [OURS], [], []
    for name in wanted:
        if name in names or name == OURS:
            continue
        if name == "helion":
            if not helion_baseline.has_kernel(mod):
                notes.append(f"{mod.NAME}: no helion baseline (no helion_kernel, no {mod.NAME}() in tests/dsl/kernels.py)")
            elif mode != "fwd" and not hasattr(mod, "helion_kernel"):
                notes.append(f"{mod.NAME}: helion baseline is forward only")
            elif not helion_available():
                notes.append(f"{mod.NAME}: helion baseline skipped (`import helion` fails)")
            else:
                names.append(name)
        elif name in ("eager", "compile") or name in mod.BASELINES:
            names.append(name)
        elif name == COPY:
            if mod.METRIC == "GB/s":
                names.append(name)
            else:
                notes.append(f"{mod.NAME}: no copy baseline (compute-bound: {mod.METRIC})")
        elif requested is not None:
            missing.append(name)
    if missing:
        notes.append(f"{mod.NAME}: no {', '.join(missing)} baseline for this op "
                     f"(its vendor baselines: {', '.join(mod.BASELINES) or 'none'})")
    return names, notes


def make_fn(mod: ModuleType, name: str, mode: str = "fwd", n_inputs: int | None = None) -> Callable:
    """A fresh callable for impl `name` of mod.

    "compile" gets a new torch.compile(mod.eager, dynamic=False) after resetting
    dynamo: each (shape, dtype) then gets its own static-shape graph, never a
    dynamic-shape recompile or a fallback after the recompile limit.
    """
    if name == OURS:
        return mod.impl
    if name == "eager":
        return mod.eager
    if name == "helion":
        from bench import helion_baseline

        return helion_baseline.kernel_for(mod, n_inputs)
    if name == "compile":
        import torch

        torch._dynamo.reset()
        if mode == "bwd":
            # The harness calls backward repeatedly on one graph (retain_graph=True),
            # which donated buffers forbid; donation only saves memory.
            import torch._functorch.config as fconfig

            fconfig.donated_buffer = False
        return torch.compile(mod.eager, dynamic=False)
    return mod.BASELINES[name]


def copy_of(work_bytes: float, device: str) -> Callable:
    """A device-to-device copy of ``work_bytes / 2`` bytes (``work`` counts bytes read plus written):
    timed like the op, it is the bandwidth a single pass over that many bytes reaches at that size,
    launch and ramp included, which a large-copy ceiling overstates for small shapes."""
    import torch

    src = torch.empty(max(1, int(work_bytes // 2)), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)
