"""Helion kernels as users write them (language breadth, round two): host-tensor helpers in device
code, gathers, strided slices, stepped grids, torch's associative_scan, lists of accumulators."""
from __future__ import annotations

import torch
from torch._higher_order_ops import associative_scan

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl

SCALE = torch.linspace(0.5, 2.0, 8)  # read by a helper at module level, as a constant of the kernel


def _scaled(v: torch.Tensor) -> torch.Tensor:
    return v * SCALE[None, :].to(v.device)


@helion.kernel()
def new_zeros_accumulate(x: torch.Tensor) -> torch.Tensor:
    """The rms_norm / layer_norm backward examples: an accumulator from ``x.new_zeros`` and
    ``torch.zeros(..., device=x.device)`` inside the loop."""
    m, n = x.size()
    out = torch.empty([m], dtype=torch.float32, device=x.device)
    for t in hl.tile(m):
        acc = x.new_zeros([t], dtype=torch.float32)
        sq = torch.zeros([t], dtype=torch.float32, device=x.device)
        for c in hl.tile(n):
            v = x[t, c].to(torch.float32)
            acc += v.sum(1)
            sq = sq + (v * v).sum(1)
        out[t] = acc + sq
    return out


@helion.kernel()
def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``torch.gather`` of a loaded row block by a loaded index block."""
    m = x.size(0)
    out = torch.empty(idx.shape, dtype=x.dtype, device=x.device)
    for t in hl.tile(m):
        out[t, :] = torch.gather(x[t, :], 1, idx[t, :])
    return out


@helion.kernel()
def strided_columns(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Strided slices: even columns, and every third column from 1."""
    m, n = x.size()
    even = torch.empty([m, (n + 1) // 2], dtype=x.dtype, device=x.device)
    third = torch.empty([m, len(range(1, n, 3))], dtype=x.dtype, device=x.device)
    for t in hl.tile(m):
        even[t, :] = x[t, ::2] * 2
        third[t, :] = x[t, 1::3]
    return even, third


@helion.kernel()
def stepped_grid(x: torch.Tensor) -> torch.Tensor:
    """``hl.grid(begins, ends, steps)`` at top level and a stepped inner grid."""
    m, n = x.size()
    out = torch.zeros_like(x)
    for i, j in hl.grid([0, 1], [m, n], [2, 3]):
        out[i, j] = x[i, j] * 2
    for t in hl.tile(m):
        for j in hl.grid(2, n, 4):
            out[t, j] = x[t, j] - 1
    return out


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b


def _max_and_sum(a: tuple, b: tuple) -> tuple:
    return torch.maximum(a[0], b[0]), a[1] + b[1]


@helion.kernel()
def torch_associative_scan(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch._higher_order_ops.associative_scan`` over one block and over a tuple of two."""
    m = x.size(0)
    csum, cmax, csum2 = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    for t in hl.tile(m):
        v = x[t, :].to(torch.float32)
        csum[t, :] = associative_scan(_add, v, dim=1).to(x.dtype)
        a, b = associative_scan(_max_and_sum, (v, v * 2), 1)
        cmax[t, :] = a.to(x.dtype)
        csum2[t, :] = b.to(x.dtype)
    return csum, cmax, csum2


@helion.kernel()
def list_of_accumulators(x: torch.Tensor) -> torch.Tensor:
    """``[hl.zeros(...)] * G`` and ``accs[g] = ...`` carried through an inner loop."""
    m, n = x.size()
    out = torch.empty([m, 3], dtype=torch.float32, device=x.device)
    for t in hl.tile(m):
        accs = [hl.zeros([t], dtype=torch.float32)] * 3
        for c in hl.tile(n):
            v = x[t, c].to(torch.float32)
            accs[0] = accs[0] + v.sum(1)
            accs[1] = torch.maximum(accs[1], v.amax(1))
            accs[-1] = accs[-1] + (v * v).sum(1)
        for g in range(3):
            out[t, g] = accs[g]
    return out


@helion.kernel()
def module_tensor_helper(x: torch.Tensor) -> torch.Tensor:
    """A helper function reading a module-level tensor (read from the helper's globals on each call)."""
    m = x.size(0)
    out = torch.empty_like(x)
    for t in hl.tile(m):
        out[t, :] = _scaled(x[t, :].to(torch.float32)).to(x.dtype)
    return out


@helion.kernel()
def row_sums(x: torch.Tensor) -> torch.Tensor:
    """A whole-row sum: over a dim of size 0 it is 0, as in torch."""
    m = x.size(0)
    out = torch.empty([m], dtype=torch.float32, device=x.device)
    for t in hl.tile(m):
        out[t] = x[t, :].to(torch.float32).sum(1)
    return out


@helion.kernel()
def gather_sum(b: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """A tensor-index gather whose index blocks broadcast together, as in torch:
    ``B[cols[:, :, None], tile_n.index[None, None, :]]`` is [tile_m, K, tile_n]."""
    m = cols.size(0)
    n = b.size(1)
    out = torch.empty([m, n], dtype=torch.float32, device=b.device)
    for tm, tn in hl.tile([m, n]):
        c = cols[tm, :]
        out[tm, tn] = b[c[:, :, None], tn.index[None, None, :]].to(torch.float32).sum(1)
    return out


@helion.kernel()
def row_bias_expand(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x[tile].view(-1, 1).expand(tile_b, tile_s)``: a view that only adds a size-1 dim."""
    out = torch.empty_like(y)
    for tb, ts in hl.tile([y.size(0), y.size(1)]):
        out[tb, ts] = y[tb, ts] + x[tb].view(-1, 1).expand(tb, ts)
    return out
