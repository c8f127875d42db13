"""The results CSV: columns, formatting, and merge-on-write (stdlib only)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

# speedup_vs_<vendor> columns go right after speedup_vs_compile.
HEAD = ["op", "mode", "impl", "shape", "dtype", "ms", "metric", "unit",
        "speedup_vs_eager", "speedup_vs_compile"]
# tuning: how a tuned baseline got its config ("quick", "quick (stored)", "none" for helion;
# "max-autotune-no-cudagraphs" for compile_max); tune_s: that search's seconds; version: the library
# behind the impl; note: why a row is not ok (or why an ill-conditioned one still is).
TAIL = ["err", "status", "compile_s", "tuning", "tune_s", "version", "note",
        "gpu", "torch", "triton", "commit", "date"]
COLUMNS = HEAD + TAIL
CASE_KEY = ("op", "mode", "shape", "dtype")  # rows of one case come from one run

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bf16"."""
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    return str(dtype).replace("torch.", "")


def parse_dtype(name: str) -> torch.dtype:
    """"bf16" / "bfloat16" -> torch.bfloat16."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r} (want one of {', '.join(DTYPES)})")
    return DTYPES[key]


def format_shape(shape) -> str:
    """(4096, 4096) -> "4096x4096"; trailing flags stay readable: (2, 8, 128, 64, True) -> "2x8x128x64xTrue"."""
    return "x".join(str(s) for s in shape)


def parse_shape(text: str) -> tuple:
    """Inverse of format_shape."""
    flags = {"True": True, "False": False}
    return tuple(flags[p] if p in flags else int(p) for p in text.strip().split("x"))


FRACTION = "frac_of_ceiling"  # metric / the ceiling of its unit measured in the same run (GPU rows)
# bench.run --timing ...,graph: ms per call captured in a CUDA graph and replayed; why not, for an impl
# that cannot be captured. Only in rows of cases run with graph timing.
GRAPH = ["ms_graph", "graph_note"]


def columns_for(rows: list[dict]) -> list[str]:
    """COLUMNS plus one speedup_vs_<name> per other baseline present, in order of appearance,
    frac_of_ceiling and the graph columns (GRAPH) when rows carry them."""
    extra = []
    for r in rows:
        for k in r:
            if k.startswith("speedup_vs_") and k not in HEAD and k not in extra:
                extra.append(k)
    frac = [FRACTION] if any(FRACTION in r for r in rows) else []
    graph = GRAPH if any(GRAPH[0] in r for r in rows) else []
    return HEAD + extra + frac + graph + TAIL


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a results CSV as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: str | Path, rows: list[dict], merge: bool = True, order=None) -> None:
    """Write rows to a results CSV; with merge, keep old rows of cases not in `rows`.

    A case (op, mode, shape, dtype) is replaced as a whole, so the speedups in
    one case always compare timings from the same run. `order` (a key on a row
    of strings) sorts the rows, stably: e.g. the op's SHAPES order, whatever
    order the cases ran in.
    """
    path = Path(path)
    new = [{k: _fmt(v) for k, v in r.items()} for r in rows]
    if merge and path.exists():
        fresh = {tuple(r[k] for k in CASE_KEY) for r in new}
        new = [r for r in read_rows(path) if tuple(r.get(k, "") for k in CASE_KEY) not in fresh] + new
    if order is not None:
        new.sort(key=order)
    cols = columns_for(new)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in new:
            w.writerow({c: r.get(c, "") for c in cols})
    tmp.replace(path)  # atomic: an interrupted run never leaves half a CSV
