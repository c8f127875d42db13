"""Pretuned configs shipped with the package: ``helion_ops/configs/<arch>/<op>.json``.

File format::

    {"op": "softmax", "arch": "sm90", "gpu": "NVIDIA H100 80GB HBM3",
     "torch": "2.11.0", "triton": "3.6.0", "date": "2026-11-25",
     "entries": [{"kernel": "softmax_kernel",
                  "key": {"dtype": "bfloat16", "shape": [4096, 8192]},
                  "config": {...Config dict...}, "ms": 0.123}, ...]}

``arch`` is ``sm<major><minor>`` of ``torch.cuda.get_device_capability()``
(sm80 Ampere, sm89 Ada, sm90 Hopper, sm100 Blackwell).

The dynamic-shape story
-----------------------
Entries are tuned for a few representative shapes, and ``lookup`` serves
every other shape from the nearest entry: same kernel and dtype, distance =
sum over dims of |bucket(query) - bucket(entry)|, bucket(d) = ceil(log2 d)
(powers-of-two buckets, so N=3000 and N=4096 share a bucket: both compile
to a 4096-wide block), ties going to the larger entry (a config for a
bigger shape under-fills a little; one for a smaller shape may not cover
the row). A shape more than one bucket above the largest tuned size of a
dim gets no entry: the op's own chooser decides, since an extrapolated config
can be catastrophically wrong. So an unseen shape gets a good config with no
autotuning, and a kernel with ``static_shapes=False`` can compile once per
bucket instead of once per shape. The op decides which dims go into ``shape`` (the dims that
matter, e.g. [M, N] for a row-wise op, [M, N, K] for matmul).

Configs are returned as stored; the runtime must ``normalize`` them against
the bound kernel's ConfigSpace and skip an entry that no longer validates.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from .dsl.autotune.cache import atomic_write_json
from .dsl.config import Config

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"

_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32",
                  "float": "float32", "fp64": "float64", "double": "float64"}


def current_arch() -> Optional[str]:
    """``"sm90"`` etc. for the current CUDA device; None without one."""
    try:
        import torch
        if not torch.cuda.is_available():
            return None
        major, minor = torch.cuda.get_device_capability()
        return f"sm{major}{minor}"
    except Exception:
        return None


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` / ``"bf16"`` / ``"bfloat16"`` -> ``"bfloat16"``."""
    s = str(dtype)
    s = s[len("torch."):] if s.startswith("torch.") else s
    return _DTYPE_ALIASES.get(s, s)


def config_path(op: str, arch: str, root: Optional[os.PathLike | str] = None) -> Path:
    return Path(root or CONFIG_ROOT) / arch / f"{op}.json"


_loaded: dict[Path, tuple[int, Optional[dict]]] = {}


def load(op: str, arch: str, root: Optional[os.PathLike | str] = None) -> Optional[dict]:
    """The parsed file (cached until its mtime changes); None when absent
    or unreadable."""
    p = config_path(op, arch, root)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        return None
    hit = _loaded.get(p)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    try:
        data = json.loads(p.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise ValueError("no 'entries' list")
    except Exception:
        data = None  # a broken file must not break the op: it falls back to tuning/defaults
    _loaded[p] = (mtime, data)
    return data


def _bucket(d: int) -> int:
    return 0 if d <= 1 else math.ceil(math.log2(d))


def _entries(op: str, kernel_name: str, dtype: Any, arch: Optional[str], root: Any,
             variant: Optional[str] = None) -> list[dict]:
    arch = arch or current_arch()
    if arch is None:
        return []
    data = load(op, arch, root)
    if data is None:
        return []
    dt = dtype_name(dtype) if dtype is not None else None
    out = []
    for e in data["entries"]:
        try:
            if e["kernel"] == kernel_name and (dt is None or dtype_name(e["key"]["dtype"]) == dt) \
                    and e["key"].get("variant") == variant:
                out.append(e)
        except (KeyError, TypeError):
            continue
    return out


# How far (in power-of-two buckets) a query may lie above the largest tuned size of a dim. Beyond
# that, an entry's config may not fit the data at all (a whole-row persistent config tuned for 32K
# columns spills to local memory on 128K columns, 10x slower), so the op's own chooser decides.
MAX_EXTRAPOLATION = 1


def nearest_entry(entries: Iterable[Mapping], shape: Sequence[int]) -> Optional[Mapping]:
    """The entry whose ``key.shape`` is nearest ``shape`` (see module doc); None when ``shape``
    exceeds the table's largest size in some dim by more than MAX_EXTRAPOLATION buckets."""
    shape = [int(d) for d in shape]
    entries = [e for e in entries if len(e["key"]["shape"]) == len(shape)]
    if entries:
        top = [max(_bucket(int(e["key"]["shape"][i])) for e in entries) for i in range(len(shape))]
        if any(_bucket(d) > t + MAX_EXTRAPOLATION for d, t in zip(shape, top)):
            return None
    best, best_key = None, None
    for e in entries:
        es = [int(d) for d in e["key"]["shape"]]
        if len(es) != len(shape):
            continue
        if es == shape:
            return e
        dist = sum(abs(_bucket(a) - _bucket(b)) for a, b in zip(shape, es))
        size = sum(math.log2(max(d, 1)) for d in es)
        k = (dist, -size)
        if best_key is None or k < best_key:
            best, best_key = e, k
    return best


def lookup(op: str, kernel_name: str, dtype: Any, shape: Sequence[int], arch: Optional[str] = None,
           root: Optional[os.PathLike | str] = None, variant: Optional[str] = None,
           exact: Sequence[int] = ()) -> Optional[Config]:
    """The pretuned Config for (kernel, dtype, shape): the exact entry, else
    the nearest bucket; None on CPU or when the file has no entry for this
    kernel and dtype. ``variant`` names a layout the shape does not show (matmul's operand
    transposes, "NT" / "TN"): only entries whose ``key.variant`` is the same are considered, so a
    backward-shaped call never borrows a config tuned for the forward layout. ``exact`` lists the
    shape dims that must match, not just be near (attention's head dim: a config tuned for D=128
    needs twice its shared memory at D=256; its causal flag: the causal backward must not be
    pipelined)."""
    entries = _entries(op, kernel_name, dtype, arch, root, variant)
    if exact:
        entries = [e for e in entries if len(e["key"]["shape"]) == len(shape)
                   and all(int(e["key"]["shape"][i]) == int(shape[i]) for i in exact)]
    e = nearest_entry(entries, shape)
    return None if e is None else Config.from_dict(e["config"])


def exact_ms(op: str, kernel_name: str, dtype: Any, shape: Sequence[int], arch: Optional[str] = None,
             root: Optional[os.PathLike | str] = None, variant: Optional[str] = None) -> Optional[float]:
    """The measured ms of the entry for exactly (kernel, dtype, shape, variant); None when there is
    none (or it has no time): how an op with alternative kernels compares them for a tuned shape."""
    for e in _entries(op, kernel_name, dtype, arch, root, variant):
        if [int(d) for d in e["key"]["shape"]] == [int(d) for d in shape] and e.get("ms") is not None:
            return float(e["ms"])
    return None


def configs_for(op: str, kernel_name: str, dtype: Any = None, arch: Optional[str] = None,
                root: Optional[os.PathLike | str] = None) -> list[Config]:
    """Every pretuned Config of a kernel (optionally one dtype): autotuner
    seeds."""
    out: dict[Config, None] = {}
    for e in _entries(op, kernel_name, dtype, arch, root):
        try:
            out[Config.from_dict(e["config"])] = None
        except (KeyError, TypeError, ValueError):
            continue
    return list(out)


def merge_method(old: str, new: str) -> str:
    """A table's "method" line after a tool wrote into it: the old line when it already says ``new``,
    ``new`` when that repeats the old line, else both, so the provenance of the entries kept survives."""
    if not old or new in old:
        return old or new
    return new if old in new else f"{old}; {new}"


def write_entries(op: str, arch: str, entries: Sequence[Mapping], meta: Optional[Mapping] = None,
                  root: Optional[os.PathLike | str] = None) -> Path:
    """Merge ``entries`` ({"kernel", "key": {"dtype", "shape"[, "variant"]}, "config", "ms"}, and any
    note fields) into ``configs/<arch>/<op>.json``: an entry with the same kernel, dtype, shape and
    variant is replaced; the others are kept as they are, notes included. ``meta`` sets
    gpu/torch/triton/date (date defaults to today); its ``method`` is added to the table's (see
    :func:`merge_method`), since the entries kept were made the old way. The write is atomic;
    concurrent merges are not serialised (last writer wins), so run one tuning job per file."""
    p = config_path(op, arch, root)
    data = load(op, arch, root) or {}
    merged: dict[tuple, dict] = {}
    for e in [*data.get("entries", []), *entries]:
        cfg = e["config"]
        e = {"kernel": e["kernel"],
             "key": {"dtype": dtype_name(e["key"]["dtype"]), "shape": [int(d) for d in e["key"]["shape"]],
                     **({"variant": e["key"]["variant"]} if e["key"].get("variant") else {})},
             "config": cfg.to_dict() if isinstance(cfg, Config) else dict(cfg),
             **({"ms": float(e["ms"])} if e.get("ms") is not None else {}),
             **{k: v for k, v in e.items() if k not in ("kernel", "key", "config", "ms")}}  # notes kept
        merged[(e["kernel"], e["key"]["dtype"], tuple(e["key"]["shape"]), e["key"].get("variant", ""))] = e
    out = {k: v for k, v in data.items() if k != "entries"}
    out.update({"op": op, "arch": arch})
    out.update(dict(meta or {}))
    if (meta or {}).get("method"):
        out["method"] = merge_method(data.get("method", ""), meta["method"])
    out["date"] = (meta or {}).get("date") or time.strftime("%Y-%m-%d")
    out["entries"] = [merged[k] for k in sorted(merged)]
    atomic_write_json(p, out)
    _loaded.pop(p, None)
    return p
