"""The optional Liger-Kernel baseline: what Hugging Face users install for fused norms and softmax.

Liger-Kernel (``liger-kernel``, pure Python over Triton) provides autograd Functions for RMSNorm,
LayerNorm and softmax; each is called here with the op's bench inputs and the op's own constants
(eps as in the op's ``eager``), forward and backward, timed like every other impl. RMSNorm runs
with ``in_place=False``: Liger's default writes dx into dy's buffer, which the harness shares between
impls and repeats the backward on (in-place only saves one allocation). Its ``casting_mode`` is
Liger's default ("llama": fp32 statistics, the normalised row cast to x's dtype before the weight).

Liger's kernels need a CUDA device (they query its SM count); without one, or when
``import liger_kernel`` fails, the baseline is skipped with a note. Nothing here imports
``liger_kernel`` until the baseline is requested.
"""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Callable

DIST = "liger-kernel"
# op NAME -> (Liger module, Function class, extra positional arguments after the op's inputs).
# The extra arguments repeat the op's eager constants: rms_norm eps 1e-6 (offset 0, casting "llama",
# in_place False), layer_norm eps 1e-5.
OPS = {
    "rms_norm": ("liger_kernel.ops.rms_norm", "LigerRMSNormFunction", (1e-6, 0.0, "llama", False)),
    "layer_norm": ("liger_kernel.ops.layer_norm", "LigerLayerNormFunction", (1e-5,)),
    "softmax": ("liger_kernel.ops.softmax", "LigerSoftmaxFunction", ()),
}


def has_op(mod: ModuleType) -> bool:
    """Whether Liger has this op (by the op's NAME; no import)."""
    return mod.NAME in OPS


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """(whether liger_kernel imports, its version or why not). Cached: imported once per process."""
    try:
        import liger_kernel  # noqa: F401
    except Exception as e:  # absent, or broken against this torch/triton
        return False, f"{type(e).__name__}: {e}"
    from importlib import metadata

    try:
        return True, metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return True, str(getattr(liger_kernel, "__version__", "?"))


def version() -> str:
    """'liger-kernel 0.8.5', or '' when it does not import."""
    ok, ver = available()
    return f"{DIST} {ver}" if ok else ""


def fn_for(mod: ModuleType) -> Callable:
    """A callable taking the op's bench inputs and returning Liger's result (autograd included)."""
    if mod.NAME not in OPS:
        raise LookupError(f"Liger-Kernel has no {mod.NAME} in this harness (it covers {', '.join(OPS)})")
    ok, why = available()
    if not ok:
        raise LookupError(f"`import liger_kernel` fails: {why}")
    import importlib

    module, cls, extra = OPS[mod.NAME]
    apply = getattr(importlib.import_module(module), cls).apply
    return lambda *inputs: apply(*inputs, *extra)
