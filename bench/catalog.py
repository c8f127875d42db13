"""Finding the ops' benchmark specs (``bench/specs/<op>.py``, docs/CONTRACTS.md §1)."""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

CONTRACT = ("NAME", "METRIC", "SHAPES", "SMALL_SHAPES", "make_inputs", "impl", "eager",
            "BASELINES", "reference", "work", "TOLERANCE", "GRAD_INPUTS")


def missing_names(mod: ModuleType) -> list[str]:
    """Contract names mod lacks (backward_work is required only when GRAD_INPUTS is non-empty)."""
    missing = [n for n in CONTRACT if not hasattr(mod, n)]
    if getattr(mod, "GRAD_INPUTS", ()) and not hasattr(mod, "backward_work"):
        missing.append("backward_work")
    return missing


SPECS = "bench.specs"


def discover(package: str = SPECS) -> tuple[dict[str, ModuleType], dict[str, str]]:
    """All contract-following spec modules under `package`, by NAME.

    Returns (ops, problems): problems maps a module name to why it was not
    used (import error). Modules starting with "_" and helpers lacking
    contract names are skipped silently, as they are not ops.
    """
    ops: dict[str, ModuleType] = {}
    problems: dict[str, str] = {}
    try:
        pkg = importlib.import_module(package)
    except Exception as e:  # the catalog may not exist yet, or be broken mid-edit
        return ops, {package: f"{type(e).__name__}: {e}"}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"{package}.{info.name}")
        except Exception as e:
            problems[info.name] = f"{type(e).__name__}: {e}"
            continue
        if not missing_names(mod):
            ops[mod.NAME] = mod
    return dict(sorted(ops.items())), problems


def load(spec: str) -> ModuleType:
    """One op spec from a catalog name ("softmax"), a dotted module path, or a .py file.

    Raises LookupError when it is not found, ValueError when it breaks the contract.
    """
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise LookupError(f"no such op file: {spec}")
        name = f"_bench_op_{path.stem}"
        mspec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(mspec)
        sys.modules[name] = mod  # dataclasses and pickling look modules up here
        mspec.loader.exec_module(mod)
    elif "." in spec:
        mod = importlib.import_module(spec)
    else:
        try:
            mod = importlib.import_module(f"{SPECS}.{spec}")
        except ModuleNotFoundError as e:
            if e.name not in (f"{SPECS}.{spec}", SPECS, "bench"):
                raise  # the spec exists but one of its imports is missing
            ops, _ = discover()  # maybe NAME differs from the file name
            if spec not in ops:
                raise LookupError(f"no op named {spec!r} in {SPECS} (found: {sorted(ops)})") from None
            return ops[spec]
    missing = missing_names(mod)
    if missing:
        raise ValueError(f"{spec}: not an op spec, missing {', '.join(missing)}")
    return mod


def resolve(op_arg: str) -> tuple[list[ModuleType], dict[str, str]]:
    """Modules for --op ("all" or a comma list of names/paths), plus load problems."""
    if op_arg == "all":
        ops, problems = discover()
        return list(ops.values()), problems
    mods, problems = [], {}
    for spec in [s for s in op_arg.split(",") if s]:
        try:
            mods.append(load(spec))
        except Exception as e:
            problems[spec] = f"{type(e).__name__}: {e}"
    return mods, problems
