"""The optional upstream-Helion baseline: the same-language kernel run by the real `helion` package.

Where the kernel comes from, in order:
1. the op module's own ``helion_kernel`` (a callable taking the op's inputs), when it defines one;
2. else the kernel named like the op (``NAME``) in ``tests/dsl/kernels.py``, the project's Helion-language
   acceptance kernels, loaded with only its two imports swapped (``import helion`` and
   ``import helion.language as hl``): same source, two compilers. It is used only when it takes exactly
   the op's inputs (same number of positional parameters without defaults, or fewer with defaults).

It is forward only (upstream kernels carry no autograd). Upstream Helion gets ``autotune_effort`` from
``$HELION_BENCH_EFFORT`` (default ``"none"``: Helion's own default config, no tuning), so its tuning
never eats the benchmark's time budget; the first call per shape (Helion's compile, plus tuning when
the effort is not "none") is reported as ``compile_s``. Nothing here imports ``helion`` until the
baseline is requested.
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
KERNELS = REPO / "tests" / "dsl" / "kernels.py"
EFFORT_ENV = "HELION_BENCH_EFFORT"


def effort() -> str:
    """Upstream Helion's autotune effort for the baseline ("none", "quick" or "full")."""
    return os.environ.get(EFFORT_ENV, "none").strip() or "none"


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """(whether `import helion` works, its version or why not). Cached: imported once per process."""
    import torch

    # Importing a second compiler stack must not change how the other impls and the references run.
    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    try:
        import helion
    except Exception as e:  # absent, or broken against this torch/triton
        return False, f"{type(e).__name__}: {e}"
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]
    return True, str(getattr(helion, "__version__", None) or _dist_version("helion"))


def _dist_version(name: str) -> str:
    """The installed distribution's version (the 1.4 wheel's package has no ``__version__``)."""
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def label() -> str:
    """How the helion rows were produced, for logs and reports."""
    ok, ver = available()
    if not ok:
        return f"upstream Helion not importable ({ver})"
    return (f"upstream Helion {ver}, same-language kernel (tests/dsl/kernels.py or the op's helion_kernel), "
            f"autotune_effort={effort()!r}, forward only")


@functools.lru_cache(maxsize=1)
def _upstream_kernels() -> Optional[ModuleType]:
    """tests/dsl/kernels.py compiled by upstream Helion, or None when helion does not import."""
    if not available()[0] or not KERNELS.is_file():
        return None
    src = KERNELS.read_text()
    src = src.replace("import helion_ops.dsl as helion", "import helion").replace(
        "import helion_ops.dsl.language as hl", "import helion.language as hl")
    src = src.replace("@helion.kernel()", f"@helion.kernel(autotune_effort={effort()!r})")
    path = Path(tempfile.mkdtemp(prefix="helion_baseline_")) / "helion_kernels.py"
    path.write_text(src)  # Helion reads kernel source from the file
    spec = importlib.util.spec_from_file_location("helion_baseline_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _takes(fn: Callable, n: int) -> bool:
    """Whether fn can be called with exactly n positional arguments."""
    try:
        params = list(inspect.signature(getattr(fn, "fn", fn)).parameters.values())
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is inspect.Parameter.empty]
    return len(required) <= n <= len(params)


def _source_kernel_name(mod: ModuleType) -> Optional[str]:
    """The name of a same-named kernel in tests/dsl/kernels.py (read as text: no helion import)."""
    if not KERNELS.is_file():
        return None
    return mod.NAME if f"\ndef {mod.NAME}(" in KERNELS.read_text() else None


def has_kernel(mod: ModuleType) -> bool:
    """Whether a Helion version of mod exists (without importing helion)."""
    return hasattr(mod, "helion_kernel") or _source_kernel_name(mod) is not None


def kernel_for(mod: ModuleType, n_inputs: Optional[int] = None) -> Callable:
    """The upstream-Helion callable for mod; raises LookupError when there is none."""
    own = getattr(mod, "helion_kernel", None)
    if own is not None:
        return own
    ok, why = available()
    if not ok:
        raise LookupError(f"`import helion` fails: {why}")
    name = _source_kernel_name(mod)
    kernels = _upstream_kernels() if name else None
    fn = getattr(kernels, name, None) if kernels is not None else None
    if fn is None:
        raise LookupError(f"no Helion kernel named {mod.NAME!r} in {KERNELS.relative_to(REPO)}")
    if n_inputs is not None and not _takes(fn, n_inputs):
        raise LookupError(f"tests/dsl/kernels.py:{name} does not take the op's {n_inputs} inputs")
    return fn
