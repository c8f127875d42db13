"""Indexing of host tensors in device code (``x[tile, :]``, ``x[t, a:b]``, gathers, ``None``) into the IR ``Index``:
a tile that runs past a dim is an error at the line, a tile over a size-1 dim broadcasts on load (torch's rule)."""
from __future__ import annotations

import ast
from typing import Any

from . import exc, ops as O
from .ir import Index, Value
from .types import ONE, BlockT, Dim, TensorArg, TensorRef, TileVar, same_lanes

def index(lw, ref: "TensorRef", sl: ast.expr, node: ast.AST) -> Index:
    items = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
    vals = []
    for it in items:  # (a multi-dim tile used as one index stands for its tiles)
        v = None if isinstance(it, ast.Slice) else lw.expr(it)
        vals += [(None, x) for x in v] if isinstance(v, tuple) and all(isinstance(x, TileVar) for x in v) else [(it, v)]
    return make_index(lw, ref, vals, node)

def make_index(lw, ref: "TensorRef", vals: list, node: ast.AST, extra_mask: Any = None) -> Index:
    """The Index of ``ref`` by (AST item, value) pairs; an entry per tensor dim, missing trailing dims are ':'."""
    t = ref.arg
    entries, out, adv = [], [], []  # adv: dims indexed by integer blocks (torch's advanced indices)
    for it, v in vals:
        d = len(entries)
        if v is None and not isinstance(it, ast.Slice):
            out.append(None)
            continue
        if d >= t.ndim:
            raise lw.err(exc.ShapeMismatch, f"too many indices for {t.host}: it has {t.ndim} dims", node)
        if isinstance(it, ast.Slice) or isinstance(v, slice):
            entries.append(slice_entry(lw, it, v, t, d, node))
        elif isinstance(v, TileVar):
            # a tile past a dim's end (but a size-1 dim's: it broadcasts) is an error, unless an extra_mask guards it
            size, n, begin = t.sizes[d], v.info.static_len, int(v.info.begin) if str(v.info.begin).isdigit() else 0
            if extra_mask is None and not v.info.is_grid and n is not None and size != 1 and isinstance(size, int) \
                    and begin + n > size:
                raise lw.err(exc.ShapeMismatch, f"tile '{v.info.name or 'tile'}' spans [{begin}, {begin + n}) but "
                             f"dim {d} of {t.host} has size {size}", node)
            entries.append(("tile", v.info))
        elif isinstance(v, Value) and v.type.dims:
            if v.type.dtype.is_floating_point:
                raise lw.err(exc.CompileError, "tensor index must be an integer block", node)
            entries.append(("block", v))
            adv.append(d)
        elif isinstance(v, (int, Value)) and not isinstance(v, bool):  # a scalar: the dim is indexed away
            if isinstance(v, int) and isinstance(size := t.sizes[d], int):
                if not -size <= v < size:  # as torch: an IndexError, not a read out of bounds
                    raise lw.err(exc.ShapeMismatch, f"index {v} is out of bounds for dim {d} of {t.host} "
                                 f"(size {size})", node)
                v += size if v < 0 else 0  # a negative index counts from the end, as in torch
            entries.append(("scalar", v))
            continue
        else:
            raise lw.err(exc.NotSupported, f"unsupported index {type(v).__name__}", node)
        out.append(d)
    for d in range(len(entries), t.ndim):
        entries.append(("rdim", lw.rdim_for(t.sizes[d], node)))
        out.append(d)
    em = lw.as_value(extra_mask, node) if extra_mask is not None else None
    if len(adv) > 1:  # integer blocks index jointly, as in torch: broadcast to one shape that stands once in the result
        pos = [out.index(a) for a in adv]
        if pos != list(range(pos[0], pos[0] + len(pos))):
            raise lw.err(exc.NotSupported, "integer-block indices separated by a slice or tile (torch moves their "
                         "dims first); index with adjacent blocks", node)
        dims = O.bcast_dims(lw, [entries[a][1] for a in adv], node)
        for a in adv:
            if entries[a][1].type.dims != dims:
                entries[a] = ("block", O.expand(lw, entries[a][1], dims, node))
    return Index(t, entries, out, em, tuple(adv) if len(adv) > 1 else ())

def slice_entry(lw, it: Any, v: Any, t: TensorArg, d: int, node: ast.AST) -> tuple[str, Any]:
    """The Index entry of a slice on dim d: ``:`` a full dim; ``a:b`` (host ints, Python semantics) a gather of
    ``a + arange(b - a)``; ``k0:k0 + n`` (device k0, host int n) a gather of ``k0 + arange(n)`` masked to the dim."""
    size = t.sizes[d]
    if isinstance(it, ast.Slice):
        lo, step = (lw.expr(e) if e is not None else None for e in (it.lower, it.step))
        up, hi, n = it.upper, None, None
        if isinstance(lo, Value) and isinstance(up, ast.BinOp) and isinstance(up.op, ast.Add) \
                and ast.dump(up.left) == ast.dump(it.lower):  # k0 : k0 + n, n a BlockSizeInt keeps its tile's lanes
            n = _positive(lw.expr(up.right))
        if n is None and up is not None:
            hi = lw.expr(up)
        if n is None and isinstance(lo, Value) and isinstance(hi, Value) and hi.op == "binary" \
                and hi.attrs.get("op") == "+" and hi.args[0] is lo:  # e = k0 + tile.block_size; x[t, k0:e]
            n = _positive(hi.args[1].args[0] if hi.args[1].op == "const" else None)
    else:
        lo, hi, step, n = v.start, v.stop, v.step, None
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise lw.err(exc.NotSupported, "a slice step must be a positive host int (as in torch)", node)
    if isinstance(lo, Value) or isinstance(hi, Value):
        if n is None or not isinstance(lo, Value) or lo.type.dims or step not in (None, 1):
            raise lw.err(exc.NotSupported, "a slice with a device-valued bound must read `x[k0 : k0 + n]` (no step), "
                         "with n a host int (e.g. a block size)", node)
        idx = O.binary(lw, "+", lo, O.arange(lw, [0, n], None, node), node)
        idx.attrs["index_bound"] = t.size_code(d)  # codegen masks lanes at or past the dim's end
        return ("block", idx)
    if any(b is not None and (isinstance(b, bool) or not isinstance(b, int)) for b in (lo, hi)):
        raise lw.err(exc.NotSupported, "slice bounds must be ints (host sizes, constants, or `k0 : k0 + n`)", node)
    lo, hi, step = slice(lo, hi, step).indices(size)
    if (lo, hi) == (0, size) and (step == 1 or not size):  # a whole dim (of size 0: every lane masked, sums are 0)
        return ("rdim", lw.rdim_for(size, node))
    if hi <= lo:
        raise lw.err(exc.ShapeMismatch, f"empty slice [{lo}:{hi}] of a dim of size {size}", node)
    if step != 1:  # x[::2]: a gather of lo + step * arange(n)
        n = len(range(lo, hi, step))
        return ("block", O.binary(lw, "+", O.binary(lw, "*", O.arange(lw, [0, n], None, node), step, node), lo, node))
    return ("block", O.arange(lw, [lo, hi], None, node))  # masked past hi by its ':' dim

def _positive(n: Any) -> int | None: return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

def access(lw, idx: Index, node: ast.AST, store: bool) -> Index:
    """The Index a load or store uses: a tile into a size-1 dim reads element 0 and broadcasts, as in torch (a store
    there, one element from many lanes, is refused); inside ``hl.jagged_tile(parent)``, an access with the lanes of
    the tile and of every dim of ``parent`` is masked to ``tile.index < parent`` (else the loop's ``parent.amax()``)."""
    entries, out = list(idx.entries), list(idx.out)
    for d, (kind, v) in enumerate(idx.entries if idx.extra_mask is None else ()):  # a user's mask: index as written
        # x[t, :] of one column reads that axis; a tile with device-valued bounds may stay inside the dim: as written
        tile = kind == "tile" and not v.is_grid and idx.tensor.sizes[d] == 1 and v.static_len not in (None, 1)
        if not (tile or kind == "rdim" and v.extent == 1 and not store):
            continue
        if store:
            raise lw.err(exc.ShapeMismatch, f"store into dim {d} of {idx.tensor.host}, which has size 1, "
                           f"with tile '{v.name or 'tile'}' of length {v.static_len}", node)
        entries[d] = ("scalar", 0)
        out = [None if o == d else o for o in out]
    idx = Index(idx.tensor, entries, out, idx.extra_mask, idx.joint)
    m = jagged_lanes(lw, idx.dims(), node) if lw.jagged else None
    if m is not None:
        idx.extra_mask = m if idx.extra_mask is None else O.binary(lw, "&", idx.extra_mask, m, node)
    return idx

def jagged_lanes(lw, dims: tuple[Dim, ...], node: ast.AST, only: int | None = None) -> Value | None:
    """``tile.index < parent`` over ``dims`` per jagged tile there (or ``only``) with all its parent's dims, or None."""
    mask = None
    for tid, parent in lw.jagged.items():
        if (only not in (None, tid) or not any(d.kind == "tile" and d.id == tid for d in dims)
                or not all(any(same_lanes(p, d) for d in dims) for p in parent.type.dims)):
            continue
        index = O.attribute(lw, TileVar(lw.tiles[tid]), "index", node)
        m = O.binary(lw, "<", _place(lw, index, dims, node), _place(lw, parent, dims, node), node)
        mask = m if mask is None else O.binary(lw, "&", mask, m, node)
    return mask

def _place(lw, v: Value, dims: tuple[Dim, ...], node: ast.AST) -> Value:
    """v (whose dims all occur in ``dims``) viewed with size-1 axes, each of its dims at its place in ``dims``."""
    pos = [next(j for j, d in enumerate(dims) if same_lanes(p, d)) for p in v.type.dims]
    v, pos = O.permute(lw, v, sorted(range(len(pos)), key=lambda i: pos[i]), node), sorted(pos)
    new = tuple(v.type.dims[pos.index(j)] if j in pos else ONE for j in range(len(dims)))
    return lw.emit("view", [v], BlockT(new, v.type.dtype), node, axes=tuple(j in pos for j in range(len(dims))))
