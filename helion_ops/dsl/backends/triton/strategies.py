"""How the Config's launch and loop knobs become Triton code: small strategies the emitter asks.

- ``program_ids``: which tiles each program takes (``pid_type`` flat / xyz / persistent_blocked /
  persistent_interleaved, with ``loop_orders``, ``l2_groupings`` and ``grid_reverses``).
- ``range_knobs``: the ``tl.range`` arguments of an inner loop (``range_num_stages``,
  ``range_unroll_factors``, ``range_warp_specializes``, ``range_flattens``).
Tile sizes, masks, rolled reductions and descriptors are decided before codegen (``passes.py``, into the Plan).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ... import exc
from ...config import Config

@dataclass
class ProgramIds:
    """The launch grid, the lines before the body (a persistent loop's header), the lines that compute
    ``pid_k`` for each grid tile k, and the indent of the body."""

    grid: tuple[int, int, int]
    prologue: list[str] = field(default_factory=list)
    decode: list[str] = field(default_factory=list)
    indent: int = 1

def _cdiv(a: int, b: int) -> int:
    return -(-a // b)

def tile_count(t) -> int:
    if t.static_len is None:
        raise exc.NotSupported("a launch grid whose size is not known on the host (dynamic tile bounds)")
    return max(t.static_len if t.is_grid else _cdiv(t.static_len, t.block), 0)

def program_ids(cfg: Config, tiles: list, num_sms: int, loop_index: int, grid_ordinal: int, i64: bool) -> ProgramIds:
    """For the grid ``tiles`` of device loop ``loop_index`` (the ``grid_ordinal``-th with a 2-D+ grid, which
    indexes ``loop_orders`` and ``l2_groupings``)."""
    counts = [tile_count(t) for t in tiles]
    total = math.prod(counts)
    pid_type = cfg.get("pid_type", "flat")
    if pid_type == "xyz" and (len(counts) > 3 or any(c > 65535 for c in counts[1:])):
        pid_type = "flat"  # more dims than CUDA's grid has, or past its y/z limit
    # grid_reverses: programs take the tiles in reverse order, so that when work grows with the tile
    # (causal attention's later query blocks) the longest programs start first and the short ones fill
    # the last wave, instead of leaving it to a few long ones.
    revs = cfg.get("grid_reverses") or []
    reverse = loop_index < len(revs) and bool(revs[loop_index])
    wide = ".to(tl.int64)" if i64 else ""
    if pid_type == "xyz":
        decode = [f"pid_{k} = {f'{c - 1} - ' if reverse else ''}tl.program_id({k}){wide}" for k, c in enumerate(counts)]
        return ProgramIds(tuple(counts + [1] * (3 - len(counts))), [], decode)  # type: ignore[arg-type]
    p = pid0 = f"tl.program_id(0){wide}"
    out = ProgramIds((total, 1, 1))
    if pid_type.startswith("persistent"):
        nprog = max(1, min(num_sms, total))  # one program per SM, each looping over its share of tiles
        out.grid, out.indent, p = (nprog, 1, 1), 2, "virtual_pid"
        if pid_type == "persistent_interleaved":
            out.prologue.append(f"for virtual_pid in tl.range({pid0}, {total}, {nprog}):")
        else:
            per = _cdiv(total, nprog)
            out.prologue += [f"start_pid = {pid0} * {per}",
                             f"for virtual_pid in tl.range(start_pid, tl.minimum(start_pid + {per}, {total})):"]
    out.decode = [f"pid = {total - 1} - {p}" if reverse else f"pid = {p}"] + _decode_flat(counts, cfg, grid_ordinal)
    return out

def _decode_flat(counts: list[int], cfg: Config, ordinal: int) -> list[str]:
    """A flat program id ``pid`` -> a tile per grid dim, in ``loop_orders`` order (first fastest); with
    ``l2_groupings`` G > 1, G rows of tiles of the first two dims share their columns (L2 reuse)."""
    n = len(counts)
    if n == 1:
        return ["pid_0 = pid"]
    orders, groups = cfg.get("loop_orders") or [], cfg.get("l2_groupings") or []
    order = list(orders[ordinal]) if ordinal < len(orders) and len(orders[ordinal]) == n else list(range(n))
    g = int(groups[ordinal]) if ordinal < len(groups) else 1
    def peel(pairs) -> list[str]:  # (name, count): name = rem % count, then the rest of rem
        return [ln for k, c in pairs for ln in (f"{k} = rem % {c}", f"rem = rem // {c}")]
    lines = ["rem = pid"]
    if g <= 1:
        return lines + peel((f"pid_{k}", counts[k]) for k in order[:-1]) + [f"pid_{order[-1]} = rem"]
    a, b, rest = order[0], order[1], order[2:]
    if rest:
        lines += peel([("inner_pid", counts[a] * counts[b])] + [(f"pid_{k}", counts[k]) for k in rest])
    else:
        lines.append("inner_pid = rem")
    return lines + [
        f"num_pid_in_group = {g * counts[b]}",
        "group_id = inner_pid // num_pid_in_group",
        f"first_pid = group_id * {g}",
        f"group_size = tl.minimum({counts[a]} - first_pid, {g})",
        f"pid_{a} = first_pid + (inner_pid % num_pid_in_group) % group_size",
        f"pid_{b} = (inner_pid % num_pid_in_group) // group_size",
    ]

RANGE_KNOBS = (("range_num_stages", "num_stages"), ("range_unroll_factors", "loop_unroll_factor"),
               ("range_warp_specializes", "warp_specialize"), ("range_flattens", "flatten"))

def range_knobs(cfg: Config, loop_id: int) -> str:
    """``, num_stages=3, ...``: the ``tl.range`` arguments the Config sets for inner loop ``loop_id``."""
    vals = [(arg, cfg.get(knob) or []) for knob, arg in RANGE_KNOBS]
    out = [f"{arg}={v[loop_id]!r}" for arg, v in vals if loop_id < len(v) and v[loop_id] not in (None, 0, False)]
    return (", " + ", ".join(out)) if out else ""
