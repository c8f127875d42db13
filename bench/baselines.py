"""The implementations timed for one op: ours, eager, torch.compile (default and max-autotune), vendor,
Liger-Kernel, Helion, and for memory-bound ops a device copy of the same bytes (the bandwidth a kernel
of that size can reach)."""
from __future__ import annotations

from types import ModuleType
from typing import Callable

OURS = "helion_ops"
BUILTIN = ("eager", "compile", "helion")
COPY = "copy"  # not an implementation of the op: a copy moving the bytes the op's work() counts
LIGER = "liger"
COMPILE_MAX = "compile_max"
MAX_MODE = "max-autotune-no-cudagraphs"
# compile_max: torch.compile(mode=MAX_MODE) of what a user tuning GEMMs would compile, by op NAME:
# the op's eager for matmul; torch._grouped_mm (the grouped_mm vendor baseline) for grouped GEMM,
# since the eager per-group loop would get one autotuned GEMM per group size instead of inductor's
# grouped template.
COMPILE_MAX_TARGET = {"matmul": "eager", "grouped_gemm": "grouped_mm"}
TUNED = (COMPILE_MAX, "helion")  # their first call searches configs: run on --tuned-shapes only


def helion_available() -> bool:
    """Whether upstream Helion imports (an optional baseline); imported once, lazily."""
    from bench import helion_baseline

    return helion_baseline.available()[0]


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def compile_max_target(mod: ModuleType) -> Callable | None:
    """The function compile_max compiles for mod, or None when it does not apply."""
    what = COMPILE_MAX_TARGET.get(mod.NAME)
    return mod.eager if what == "eager" else mod.BASELINES.get(what) if what else None


def impl_names(mod: ModuleType, requested: list[str] | None, mode: str = "fwd",
               gpu: bool | None = None) -> tuple[list[str], list[str]]:
    """Which impls to run for mod in `mode`, ours first; plus notes on requested ones skipped.

    requested=None means every baseline that applies: eager, compile, compile_max, all of
    mod.BASELINES, liger, helion. A vendor name the op does not provide (e.g. "cudnn" for softmax) is
    skipped with a note; helion runs forward only, when a Helion version of the op exists and
    `import helion` works; liger where Liger-Kernel has the op and imports; liger and compile_max need
    a CUDA GPU (`gpu`; default: whether torch sees one). "copy" (only when requested) applies to
    memory-bound ops (METRIC GB/s).
    """
    from bench import helion_baseline, liger_baseline

    gpu = _has_gpu() if gpu is None else gpu
    wanted = requested if requested is not None else [
        "eager", "compile", *([COMPILE_MAX] if compile_max_target(mod) else []), *mod.BASELINES,
        *([LIGER] if liger_baseline.has_op(mod) else []), "helion"]
    names, notes, missing = [OURS], [], []
    for name in wanted:
        if name in names or name == OURS:
            continue
        if name == LIGER:
            if not liger_baseline.has_op(mod):
                notes.append(f"{mod.NAME}: no liger baseline (Liger-Kernel has {', '.join(liger_baseline.OPS)})")
            elif not gpu:
                notes.append(f"{mod.NAME}: liger baseline skipped (Liger-Kernel's kernels need a CUDA GPU)")
            elif not liger_baseline.available()[0]:
                notes.append(f"{mod.NAME}: liger baseline skipped (`import liger_kernel` fails: "
                             f"{liger_baseline.available()[1]})")
            else:
                names.append(name)
        elif name == COMPILE_MAX:
            if compile_max_target(mod) is None:
                notes.append(f"{mod.NAME}: no compile_max baseline (it applies to {', '.join(COMPILE_MAX_TARGET)})")
            elif not gpu:
                notes.append(f"{mod.NAME}: compile_max skipped (max-autotune tunes GPU kernels: no CUDA GPU)")
            else:
                names.append(name)
        elif name == "helion":
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
    dynamic-shape recompile or a fallback after the recompile limit. "compile_max" likewise,
    with mode="max-autotune-no-cudagraphs" (its first call tunes: reported as tune_s, never as ms).
    """
    if name == OURS:
        return mod.impl
    if name == "eager":
        return mod.eager
    if name == "helion":
        from bench import helion_baseline

        return helion_baseline.kernel_for(mod, n_inputs)
    if name == LIGER:
        from bench import liger_baseline

        return liger_baseline.fn_for(mod)
    if name in ("compile", COMPILE_MAX):
        import torch

        torch._dynamo.reset()
        if mode == "bwd":
            # The harness calls backward repeatedly on one graph (retain_graph=True),
            # which donated buffers forbid; donation only saves memory.
            import torch._functorch.config as fconfig

            fconfig.donated_buffer = False
        if name == COMPILE_MAX:
            return torch.compile(compile_max_target(mod), mode=MAX_MODE, dynamic=False)
        return torch.compile(mod.eager, dynamic=False)
    return mod.BASELINES[name]


def version_of(name: str, env: dict) -> str:
    """The library version behind impl `name` ("torch 2.11.0", "liger-kernel 0.8.5", ...); "" for ours and copy."""
    if name in (OURS, COPY):
        return ""
    if name == LIGER:
        from bench import liger_baseline

        return liger_baseline.version()
    if name == "helion":
        from bench import helion_baseline

        return helion_baseline.version()
    return f"torch {env['torch']}" if env.get("torch") else ""  # eager, compile(_max), vendor libraries via torch


def copy_of(work_bytes: float, device: str) -> Callable:
    """A device-to-device copy of ``work_bytes / 2`` bytes (``work`` counts bytes read plus written):
    timed like the op, it is the bandwidth a single pass over that many bytes reaches at that size,
    launch and ramp included, which a large-copy ceiling overstates for small shapes."""
    import torch

    src = torch.empty(max(1, int(work_bytes // 2)), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)
