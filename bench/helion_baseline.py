"""The optional upstream-Helion baseline: the same-language kernel run by the real `helion` package.

Where the kernel comes from, in order:
1. the op module's own ``helion_kernel`` (a callable taking the op's inputs), when it defines one;
2. else the kernel named like the op (``NAME``) in ``tests/dsl/kernels.py``, the project's Helion-language
   acceptance kernels, loaded with only its two imports swapped (``import helion`` and
   ``import helion.language as hl``): same source, two compilers. It is used only when it takes exactly
   the op's inputs (same number of positional parameters without defaults, or fewer with defaults).

It is forward only (upstream kernels carry no autograd).

**Tuning.** A user who adopts Helion tunes it, so the baseline does too: ``$HELION_BENCH_EFFORT``
(default ``"quick"``) is Helion's own ``autotune_effort``, capped at ``$HELION_BENCH_TUNE_S`` seconds
per kernel and shape (Helion's ``autotune_budget_seconds``; default 30). Each search's result is stored
under ``results/<GPU>/helion_configs/<op>.json`` (config, effort, cap, seconds spent, Helion version,
date), keyed by the inputs' dtype and shapes, and reused by later runs at the same effort and a cap no
longer than the stored one's (``python -m bench.helion_baseline --op ...`` tunes ahead of a run).
A capped search returns its best-so-far: a short cap can leave Helion far from its tuned speed, so the
cap is part of the label. ``HELION_BENCH_EFFORT=none`` runs Helion's default config, untuned. Each helion
row says which (``tuning``: ``quick, cap 30 s``, ``quick, cap 30 s (stored)`` or ``none``) and carries the search's seconds in ``tune_s``, apart from the
first call's compile time (``compile_s``). Nothing here imports ``helion`` until the baseline is requested.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
KERNELS = REPO / "tests" / "dsl" / "kernels.py"
EFFORT_ENV = "HELION_BENCH_EFFORT"
TUNE_S_ENV = "HELION_BENCH_TUNE_S"
EFFORTS = ("none", "quick", "full")
STORE_DIR = "helion_configs"  # under results/<GPU>/

# Where tuned configs are read and written (results/<GPU>/helion_configs); bench.run sets it. None: no store.
store: Optional[Path] = None


def effort() -> str:
    """Upstream Helion's autotune effort for the baseline ("none", "quick" or "full")."""
    value = os.environ.get(EFFORT_ENV, "quick").strip() or "quick"
    if value not in EFFORTS:
        raise ValueError(f"${EFFORT_ENV}={value!r}: want one of {', '.join(EFFORTS)}")
    return value


def tune_cap_s() -> int:
    """Seconds Helion may search per kernel and shape (its autotune_budget_seconds)."""
    return int(float(os.environ.get(TUNE_S_ENV, "30")))


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


def version() -> str:
    """'helion 1.4.0', or '' when it does not import."""
    ok, ver = available()
    return f"helion {ver}" if ok else ""


def label() -> str:
    """How the helion rows were produced, for logs and reports."""
    ok, ver = available()
    if not ok:
        return f"upstream Helion not importable ({ver})"
    tuned = (f"tuned: autotune_effort={effort()!r}, at most {tune_cap_s()} s per shape, configs stored under "
             f"results/<GPU>/{STORE_DIR}/" if effort() != "none" else "untuned: autotune_effort='none' (default config)")
    return f"upstream Helion {ver}, same-language kernel (tests/dsl/kernels.py or the op's helion_kernel), {tuned}, forward only"


def _decorator_args(eff: str) -> str:
    args = f"autotune_effort={eff!r}"
    return args + (f", autotune_budget_seconds={tune_cap_s()}" if eff != "none" else "")


@functools.lru_cache(maxsize=4)
def _upstream_kernels(eff: str = "none") -> Optional[ModuleType]:
    """tests/dsl/kernels.py compiled by upstream Helion at effort `eff`, or None when helion does not import."""
    if not available()[0] or not KERNELS.is_file():
        return None
    src = KERNELS.read_text()
    src = src.replace("import helion_ops.dsl as helion", "import helion").replace(
        "import helion_ops.dsl.language as hl", "import helion.language as hl")
    src = src.replace("@helion.kernel()", f"@helion.kernel({_decorator_args(eff)})")
    path = Path(tempfile.mkdtemp(prefix="helion_baseline_")) / "helion_kernels.py"
    path.write_text(src)  # Helion reads kernel source from the file
    spec = importlib.util.spec_from_file_location(f"helion_baseline_kernels_{eff}", path)
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
    """The upstream-Helion callable for mod, wrapped to pick its config (see Tuned); LookupError when none."""
    own = getattr(mod, "helion_kernel", None)
    if own is None:
        ok, why = available()
        if not ok:
            raise LookupError(f"`import helion` fails: {why}")
        name = _source_kernel_name(mod)
        kernels = _upstream_kernels(effort()) if name else None
        own = getattr(kernels, name, None) if kernels is not None else None
        if own is None:
            raise LookupError(f"no Helion kernel named {mod.NAME!r} in {KERNELS.relative_to(REPO)}")
        if n_inputs is not None and not _takes(own, n_inputs):
            raise LookupError(f"tests/dsl/kernels.py:{name} does not take the op's {n_inputs} inputs")
    return Tuned(own, mod.NAME) if hasattr(own, "bind") else own


# ---- tuned configs: search once, store, reuse ----------------------------------------------------

def input_key(inputs: tuple) -> str:
    """'bf16 4096x4096 4096': the first tensor's dtype and every tensor's shape (what a config is tuned for)."""
    import torch

    from bench.schema import dtype_name

    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    dt = dtype_name(tensors[0].dtype) if tensors else "-"
    return " ".join([dt] + ["x".join(map(str, t.shape)) or "scalar" for t in tensors])


def _store_path(op: str) -> Optional[Path]:
    return store / f"{op}.json" if store is not None else None


def load_entries(op: str) -> dict:
    """{input key: entry} stored for op ({} when there is no store or the file is unreadable)."""
    path = _store_path(op)
    try:
        return json.loads(path.read_text()) if path is not None and path.exists() else {}
    except ValueError:
        return {}


def save_entry(op: str, key: str, entry: dict) -> None:
    """Merge one entry into results/<GPU>/helion_configs/<op>.json (atomic replace)."""
    path = _store_path(op)
    if path is None:
        return
    data = load_entries(op)
    data[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")
    tmp.replace(path)


def state(eff: str, cap_s, stored: bool = False) -> str:
    """A helion row's tuning state: 'quick, cap 30 s' (searched in this run) or '... (stored)'. The cap
    matters: a search stopped early returns its best-so-far, which can be far from what Helion finds
    given its time."""
    return f"{eff}, cap {cap_s:g} s" + (" (stored)" if stored else "")


def reusable(entry: dict | None, eff: str) -> bool:
    """Whether a stored entry serves a run at effort `eff`: same effort, searched for at least as long as
    this run would (a config from a shorter cap is searched again)."""
    return (entry is not None and entry.get("config") is not None and entry.get("effort") == eff
            and float(entry.get("cap_s", 0)) >= tune_cap_s())


class Tuned:
    """An upstream Helion kernel whose config for the inputs it first sees is, in order: the stored
    tuned config (effort not "none", see reusable), a search run now and stored, or Helion's default
    (effort "none").

    ``tuning`` and ``tune_s`` say which, for the row (tune_s: the search's seconds, also when stored)."""

    def __init__(self, kernel, op: str):
        self.kernel, self.op = kernel, op
        self.tuning, self.tune_s = "", math.nan

    def __call__(self, *inputs):
        if not self.tuning:
            self._configure(inputs)
        return self.kernel(*inputs)

    def _configure(self, inputs: tuple) -> None:
        eff = effort()
        if eff == "none":
            self.tuning = "none"
            return
        key = input_key(inputs)
        entry = load_entries(self.op).get(key)
        bound = self.kernel.bind(inputs)
        if reusable(entry, eff):
            import helion

            bound.set_config(helion.Config.from_json(json.dumps(entry["config"])))
            self.tuning = state(entry["effort"], entry["cap_s"], stored=True)
            self.tune_s = float(entry.get("tune_s", math.nan))
            return
        t0 = time.perf_counter()
        config = self.kernel.autotune(inputs, force=True)
        self.tune_s = time.perf_counter() - t0
        self.tuning = state(eff, tune_cap_s())
        from bench.gpu_info import utc_date

        save_entry(self.op, key, {"config": json.loads(config.to_json()), "effort": eff, "cap_s": tune_cap_s(),
                                  "tune_s": round(self.tune_s, 1), "helion": available()[1], "date": utc_date()})


# ---- CLI: tune ahead of a run ----------------------------------------------------------------------

def main(argv=None) -> int:
    """Tune the helion baseline on the run's shapes and store the configs (GPU only)."""
    p = argparse.ArgumentParser(prog="python -m bench.helion_baseline",
                                description="Tune upstream Helion (quick effort, capped) on the bench shapes; "
                                            "store the configs under results/<GPU>/helion_configs/.")
    p.add_argument("--op", default="softmax,rms_norm,layer_norm,matmul", help="comma list of op names")
    p.add_argument("--shapes", default="preset", help="as bench.run --shapes")
    p.add_argument("--max-shapes", default=None, help="as bench.run --max-shapes")
    p.add_argument("--tuned-shapes", default="2", help="at most N of those shapes per op, spread (as bench.run)")
    p.add_argument("--dtype", default="bf16", help="one dtype (bf16, fp16, fp32)")
    p.add_argument("--out", default=str(REPO / "results"), help="results root")
    args = p.parse_args(argv)
    import torch

    from bench import catalog, gpu_info, run, schema

    if not torch.cuda.is_available():
        print("note: no CUDA GPU: nothing tuned (Helion tunes on the device)")
        return 0
    if effort() == "none":
        print(f"note: ${EFFORT_ENV}=none: nothing tuned")
        return 0
    ok, why = available()
    if not ok:
        print(f"note: `import helion` fails ({why}): nothing tuned")
        return 0
    global store
    store = Path(args.out) / gpu_info.short_name(gpu_info.gpu_name()) / STORE_DIR
    dtype = schema.parse_dtype(args.dtype)
    mods, problems = catalog.resolve(args.op)
    for name, why in problems.items():
        print(f"op {name}: not loaded: {why}")
    for mod in mods:
        if not has_kernel(mod):
            print(f"{mod.NAME}: no helion kernel")
            continue
        shapes = run.select_shapes(mod, args.shapes, True, False, args.max_shapes)
        for shape in run.spread_subset(shapes, run.max_shapes_for(args.tuned_shapes, mod.NAME)):
            inputs = mod.make_inputs(shape, dtype, "cuda")
            try:
                fn = kernel_for(mod, len(inputs))
                fn(*inputs)
                torch.cuda.synchronize()
                print(f"{mod.NAME} {schema.format_shape(shape)}: {getattr(fn, 'tuning', '?')} "
                      f"{getattr(fn, 'tune_s', math.nan):.1f} s", flush=True)
            except Exception as e:
                print(f"{mod.NAME} {schema.format_shape(shape)}: error: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
