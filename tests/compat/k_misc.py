"""Compat kernels: jagged loops, grid/tile mixes, tiles of tiles, integer tensors, view ops,
inline Triton, helper functions called from device code."""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl


@helion.kernel()
def jagged_row_sum(values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-row device-side bounds: hl.tile(start, end) with start/end loaded from offsets."""
    rows = offsets.size(0) - 1
    f = values.size(1)
    out = torch.zeros([rows, f], dtype=values.dtype, device=values.device)
    for r in hl.grid(rows):
        start = offsets[r]
        end = offsets[r + 1]
        for tf in hl.tile(f):
            acc = hl.zeros([tf], dtype=torch.float32)
            for tk in hl.tile(start, end):
                acc = acc + values[tk, tf].sum(dim=0)
            out[r, tf] = acc
    return out


@helion.kernel()
def jagged_mean(values: torch.Tensor, offsets: torch.Tensor, max_len: int) -> torch.Tensor:
    """Row tiles over a jagged tensor: loop to the tile's longest row, mask by per-row length."""
    rows = offsets.size(0) - 1
    f = values.size(1)
    flat = values.view(-1)
    out = torch.zeros([rows, f], dtype=values.dtype, device=values.device)
    for tb in hl.tile(rows):
        starts = offsets[tb]
        lens = offsets[tb.index + 1] - starts
        longest = lens.amax()
        for tf in hl.tile(f):
            acc = hl.zeros([tb, tf], dtype=torch.float32)
            for tk in hl.tile(0, longest):
                pos = starts[:, None] + tk.index[None, :]
                ok = tk.index[None, :] < lens[:, None]
                idx = pos[:, :, None] * f + tf.index[None, None, :]
                v = hl.load(flat, [idx], extra_mask=ok[:, :, None])
                acc = acc + v.sum(dim=1)
            denom = lens.to(torch.float32)[:, None]
            out[tb, tf] = torch.where(denom > 0, acc / denom, 0.0).to(out.dtype)
    return out


@helion.kernel()
def tiles_of_tiles(x: torch.Tensor) -> torch.Tensor:
    """An outer tile split into inner sub-tiles (hl.tile(t.begin, t.end, block_size=...))."""
    m, n = x.shape
    out = torch.empty_like(x)
    for tm in hl.tile(m, block_size=32):
        for sub in hl.tile(tm.begin, tm.end, block_size=8):
            for tn in hl.tile(n):
                out[sub, tn] = x[sub, tn] * 2 + sub.index[:, None].to(x.dtype)
    return out


@helion.kernel()
def int_bit_ops(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer tensors: bitwise ops, shifts, integer division/modulo, casts, comparisons."""
    out1 = torch.empty_like(a)
    out2 = torch.empty_like(a)
    out3 = torch.empty(a.shape, dtype=torch.int64, device=a.device)
    for t in hl.tile(a.size(0)):
        x = a[t]
        y = b[t]
        out1[t] = (x & 0xF) | ((y >> 4) << 8) ^ 3
        out2[t] = torch.where(y != 0, x // torch.where(y == 0, 1, y), 0) + x % 7
        out3[t] = x.to(torch.int64) * 65536 + (x > y).to(torch.int64)
    return out1, out2, out3


@helion.kernel()
def view_ops(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """permute / transpose / unsqueeze / expand / reshape on tiles, hl.split / hl.join."""
    b, m, n = x.shape
    out_t = torch.empty([b, n, m], dtype=x.dtype, device=x.device)
    out_s = torch.empty([b, m, n], dtype=x.dtype, device=x.device)
    for tb, tm in hl.tile([b, m]):
        blk = x[tb, tm, :]
        out_t[tb, :, tm] = blk.permute(0, 2, 1)
        rowmax = blk.amax(dim=-1).unsqueeze(-1).expand([tb, tm, n])
        pairs = blk.reshape([tb, tm, n // 2, 2])
        lo, hi = hl.split(pairs)
        swapped = hl.join(hi, lo).reshape([tb, tm, n])
        out_s[tb, tm, :] = swapped - rowmax + blk.transpose(1, 2).transpose(-1, -2)
    return out_t, out_s


@helion.kernel()
def inline_triton_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for t in hl.tile(x.size(0)):
        xv = x[t]
        yv = y[t]
        out[t] = hl.inline_triton(
            "tmp = {0} * 2\ntmp + {1}",
            args=(xv, yv),
            output_like=xv,
        )
    return out


def _rms(v, w, eps):
    inv = torch.rsqrt(torch.mean(v * v, dim=-1, keepdim=True) + eps)
    return v * inv * w


@helion.kernel()
def rms_norm_helper(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """A plain Python helper function called from device code (inlined)."""
    m, n = x.size()
    out = torch.empty_like(x)
    for tm in hl.tile(m):
        out[tm, :] = _rms(x[tm, :].float(), w[:].float(), eps).to(x.dtype)
    return out


@helion.kernel()
def grid_2d_scalar(x: torch.Tensor) -> torch.Tensor:
    """hl.grid([m, n]) scalar indices, x.amax over a ':' dim, scalar stores."""
    m, n, k = x.shape
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for i, j in hl.grid([m, n]):
        out[i, j] = x[i, j, :].amax() + x[i, j, 0]
    return out


@helion.kernel()
def atomics(x: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Histogram with atomic_add; per-bin max/min and bit-or with the other atomics."""
    counts = torch.zeros([bins], dtype=torch.int32, device=x.device)
    hi = torch.full([bins], -2**31, dtype=torch.int32, device=x.device)
    bits = torch.zeros([bins], dtype=torch.int32, device=x.device)
    for t in hl.tile(x.size(0)):
        v = x[t]
        b = v % bins
        hl.atomic_add(counts, [b], 1, sem="relaxed")
        hl.atomic_max(hi, [b], v)
        hl.atomic_or(bits, [b], 1 << (v % 16))
    return counts, hi, bits


@helion.kernel()
def broadcast_bias(x: torch.Tensor, row_bias: torch.Tensor, col_scale: torch.Tensor) -> torch.Tensor:
    """Tiles index size-1 dims (row_bias [1, n], col_scale [m, 1]): they broadcast, as in torch."""
    out = torch.empty_like(x)
    for tm, tn in hl.tile(x.size()):
        out[tm, tn] = x[tm, tn] * col_scale[tm, tn] + row_bias[tm, tn]
    return out


@helion.kernel()
def slices_and_methods(x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounded slices (x[t, 2:7], x[t, -4:]), masked_fill, block.size(), view(bs, 1).expand(...),
    torch.stack of two blocks, hl.register_reduction_dim."""
    m = x.size(0)
    n = hl.register_reduction_dim(x.size(1))
    head = torch.empty([m, 5], dtype=x.dtype, device=x.device)
    pairs = torch.empty([m, 2, n], dtype=x.dtype, device=x.device)
    for t in hl.tile(m):
        a = x[t, 2:7]
        b = x[t, -4:].sum(-1, keepdim=True)
        c = a.masked_fill(a < 0, 0.0) + b / a.size(1)
        head[t, :] = c
        scale = v[t].view(t.block_size, 1).expand(t.block_size, n)
        full = x[t, :] * scale
        pairs[t, :, :] = torch.stack([full, full + hl.zeros([t, n], dtype=x.dtype)], dim=1)
    return head, pairs


@helion.kernel()
def prefix_by_item(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Host code reads a device value (offsets[-1].item()) to size the output and the loop."""
    n = int(offsets[-1].item())
    out = torch.empty([n], dtype=x.dtype, device=x.device)
    for t in hl.tile(n):
        out[t] = x[t] + 1
    return out


@helion.kernel()
def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """hl.join of two [tile] blocks reshaped to [2 * block] (a tile merged into plain lanes, as int4
    unpacking does); needs the tile to divide its extent."""
    n = a.size(0)
    out = torch.empty([2 * n], dtype=a.dtype, device=a.device)
    for t in hl.tile(n):
        v = hl.join(a[t], b[t]).reshape(t.block_size * 2)
        out[t.begin * 2 + hl.arange(t.block_size * 2)] = v
    return out


@helion.kernel()
def pairs_scaled(x: torch.Tensor) -> torch.Tensor:
    """Column pairs through device-started slices ``x[tm, k0 : k0 + 2 * bk]``, load and store; an odd
    column count leaves the last slice past the dim, which must be masked, not read or written."""
    m, n = x.size()
    out = torch.zeros([m, n], dtype=x.dtype, device=x.device)
    bk = hl.register_block_size(hl.cdiv(n, 2))
    for tm in hl.tile(m):
        for tk in hl.tile(hl.cdiv(n, 2), block_size=bk):
            k0 = tk.begin * 2
            k1 = k0 + bk * 2  # the end held in a variable (e = b + n), as Helion's fused SwiGLU GEMM writes it
            out[tm, k0:k1] = x[tm, k0 : k0 + bk * 2] * 2
    return out


def _torch_style_helper(score, b):
    return score * b


_torch_style_helper.__module__ = "torch.nn.attention.example"  # as flex_attention's _identity: plain Python in torch


@helion.kernel()
def decode_mix(q: torch.Tensor, kk: torch.Tensor, flag: torch.Tensor, scale: hl.constexpr) -> torch.Tensor:
    """decoding-attention constructs: torch.matmul of a 3-D block by a 2-D one, a 0-d tensor made on the
    host, torch.isfinite, hl.static_range around the device loop, a torch-defined Python helper, `if` on a
    tile of block 1, tile.begin + hl.arange(tile.block_size) against the tile's dim, a store with host-only
    indices, and .unsqueeze of a loaded scalar."""
    b, m, d = q.size()
    n = kk.size(0)
    out = torch.zeros([b, m, n], dtype=torch.float32, device=q.device)
    first = torch.zeros([b, n], dtype=torch.float32, device=q.device)
    lim = torch.tensor(4.0, device=q.device)
    for rep in hl.static_range(2):
        for tb, tm, tn in hl.tile([b, m, n], block_size=[1, None, None]):
            s = torch.matmul(q[tb, tm, :], kk[tn, :].transpose(0, 1)).to(torch.float32)
            s = torch.minimum(_torch_style_helper(s, scale), lim)
            s = torch.where(torch.isfinite(s), s, 0.0)
            rows = (tm.begin + hl.arange(tm.block_size))[None, :, None]
            if flag[tb] == 1:
                out[tb, tm, tn] = out[tb, tm, tn] + torch.where(rows >= 2, s, 0.0) * (rep + 1)
    for i in hl.grid(b):
        j = flag[i].unsqueeze(0)
        first[i, :] = out[i, 2, :] * j.to(torch.float32)
    return out, first


@helion.kernel()
def jagged_tile_rows(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hl.jagged_tile: per-row sums of the first lengths[r] columns, and a copy of just those columns;
    the loads and stores inside are masked per row (the rest of `kept` stays zero)."""
    b = x.size(0)
    sums = torch.empty([b], dtype=torch.float32, device=x.device)
    kept = torch.zeros_like(x)
    for tb in hl.tile(b):
        n = lengths[tb]
        acc = hl.zeros([tb], dtype=torch.float32)
        for tk in hl.jagged_tile(n):
            v = x[tb, tk]
            acc = acc + v.to(torch.float32).sum(1)
            kept[tb, tk] = v
        sums[tb] = acc
    return sums, kept


@helion.kernel()
def jagged_tile_stats(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reductions inside hl.jagged_tile: the lanes past a row's own length stay out of a sum of a
    computed value ((x + 1).sum) and out of a maximum (rows of negative values)."""
    b = x.size(0)
    sums = torch.empty([b], dtype=torch.float32, device=x.device)
    maxes = torch.empty([b], dtype=torch.float32, device=x.device)
    for tb in hl.tile(b):
        n = lengths[tb]
        acc = hl.zeros([tb], dtype=torch.float32)
        mx = hl.full([tb], -100.0, dtype=torch.float32)  # below every value: an empty row keeps it
        for tk in hl.jagged_tile(n):
            v = x[tb, tk].to(torch.float32)
            acc = acc + (v + 1).sum(1)
            mx = torch.maximum(mx, v.amax(1))
        sums[tb] = acc
        maxes[tb] = mx
    return sums, maxes


@helion.kernel()
def skip_with_continue(x: torch.Tensor, flag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`continue` in a top-level grid loop (skip flagged rows) and in an inner tile loop with a
    loop-carried accumulator (skip the column block starting at 8)."""
    m, n = x.size()
    copy = torch.zeros_like(x)
    sums = torch.empty([m], dtype=torch.float32, device=x.device)
    for i in hl.grid(m):
        if flag[i] == 0:
            continue
        copy[i, :] = x[i, :]
    for tb in hl.tile(m):
        acc = hl.zeros([tb], dtype=torch.float32)
        for tk in hl.tile(n, block_size=8):
            if tk.begin == 8:
                continue
            acc = acc + x[tb, tk].to(torch.float32).sum(1)
        sums[tb] = acc
    return copy, sums


@helion.kernel()
def rope_rotate_half(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in the rotate-half form: halves of a block (x[..., :h], x[..., h:]) and torch.cat."""
    out = torch.empty_like(q)
    for t in hl.tile(q.size(0)):
        x = q[t, :, :].to(torch.float32)
        h = x.size(2) // 2
        rot = torch.cat([-x[:, :, h:], x[:, :, :h]], dim=-1)
        out[t, :, :] = (x * cos[t, None, :] + rot * sin[t, None, :]).to(q.dtype)
    return out


@helion.kernel()
def packed_swiglu(x: torch.Tensor) -> torch.Tensor:
    """A gate and an up projection packed in one row: silu(x[:, :h]) * x[:, h:]."""
    m, n2 = x.size()
    out = torch.empty([m, n2 // 2], dtype=x.dtype, device=x.device)
    for t in hl.tile(m):
        v = x[t, :].to(torch.float32)
        out[t, :] = (torch.nn.functional.silu(v[:, : n2 // 2]) * v[:, n2 // 2:]).to(x.dtype)
    return out


@helion.kernel()
def sum_over_middle(x: torch.Tensor) -> torch.Tensor:
    """A carried hl.zeros([tile, n]) accumulator fed by x[tile, tile_m, :]: with n == 1 both must be the
    same one-lane axis (it was a shape change across the loop)."""
    b, m, n = x.size()
    out = torch.empty([b, n], dtype=torch.float32, device=x.device)
    for tb in hl.tile(b):
        acc = hl.zeros([tb, n], dtype=torch.float32)
        for tm in hl.tile(m):
            acc = acc + x[tb, tm, :].to(torch.float32).sum(1)
        out[tb, :] = acc
    return out
