"""Host-side operand handling shared by the GEMM ops: which stored layout a kernel reads (a transposed
operand costs no copy) and, in large GEMMs, padding rows that TMA descriptors and 16-byte vector
loads cannot read (K or N odd in fp16/bf16), as torch.compile's pad_mm does."""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops import _fast, _oplib as C
from helion_ops.dsl import Config


def layout(t: torch.Tensor, transposed: bool = False) -> tuple[torch.Tensor, bool]:
    """(tensor to pass, transposed?) for the operand ``t`` (``t.t()`` with ``transposed``), so that the
    passed tensor's last dim has stride 1 if possible. Backward passes ``b`` with ``transposed`` for
    ``b^T``: a row-major ``b`` is then passed as it is, with no transposed view made twice."""
    if transposed:
        if t.stride(0) == 1 or t.shape[0] == 1:
            return C.transpose(t, 0, 1), False
        if t.stride(1) == 1 or t.shape[1] == 1:
            return t, True
        return C.transpose(t, 0, 1), False
    if t.stride(1) == 1 or t.shape[1] == 1:
        return t, False
    if t.stride(0) == 1 or t.shape[0] == 1:
        return C.transpose(t, 0, 1), True
    return t, False  # generic strides: pointer indexing by strides


def rows_aligned(t: torch.Tensor) -> bool:
    """Every row of the (layout-normalised, see ``layout``) 2-D operand ``t`` starts 16-byte aligned
    and has unit stride: what TMA descriptors and 16-byte vector loads need."""
    if t.stride(1) != 1 and t.shape[1] != 1:
        return False
    return t.data_ptr() % 16 == 0 and (t.shape[0] == 1 or (t.stride(0) * t.element_size()) % 16 == 0)


# Padding an operand whose rows are not 16-byte aligned (K or N = 4097 in bf16) costs one copy of it;
# it pays once the GEMM is compute-bound and large: unaligned rows rule out TMA and vector loads.
PAD_MIN_MNK = 2 ** 27   # m * n * k: about 512^3
PAD_MIN_MN = 256        # min(m, n): below it the GEMM is bound by reading one operand, as the copy is


@helion.kernel(replay_host=True)
def pad_rows_kernel(src: torch.Tensor, cols: int, width: int):
    """The row-major matrix whose elements are the flat ``src`` (rows of ``cols``), as flat rows of
    ``width`` >= ``cols`` (lanes past ``cols`` hold 0). Indexed by the output, so every store is a full,
    aligned vector; the loads are 2-byte gathers of consecutive elements, which coalesce per warp."""
    rows = src.size(0) // cols
    out = torch.empty([rows * width], dtype=src.dtype, device=src.device)
    for tile in hl.tile(rows * width):
        i = tile.index // width
        j = tile.index - i * width
        out[tile] = hl.load(src, [i * cols + j], extra_mask=j < cols)
    return out


# Faster than torch's copy_ into the padded view (a strided elementwise kernel; device probes).
_pad = C.Kern("matmul", pad_rows_kernel, lambda args: Config(block_sizes=[1024], num_warps=4),
              eager=lambda src, cols, width: torch.nn.functional.pad(src.view(-1, cols), (0, width - cols)).view(-1))


@_fast.step
def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1)


@_fast.step
def _unflat(t: torch.Tensor, width: int, cols: int) -> torch.Tensor:
    """The flat ``t`` as rows of ``width``, their first ``cols`` elements."""
    return t.view(-1, width)[:, :cols]


def pad_rows(p: torch.Tensor) -> torch.Tensor:
    """A copy of the 2-D ``p`` whose rows start on 128-byte boundaries (the padding is never read)."""
    rows, cols = p.shape
    step = max(1, 128 // p.element_size())
    width = -(-cols // step) * step
    if p.is_contiguous():  # views through steps, the copy through a Kern: the fast path replays it
        return _unflat(_pad(_flat(p), cols, width), width, cols)
    buf = torch.empty((rows, width), dtype=p.dtype, device=p.device)[:, :cols]
    buf.copy_(p)
    return buf


def padded(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if its rows are aligned (``rows_aligned`` of its layout), else a copy of it in the
    same orientation with padded rows (``pad_rows``)."""
    p, trans = layout(t)
    _fast.alignment_read()  # a pointer's alignment decides: the fast path's recipe checks it
    if rows_aligned(p):
        return t
    return pad_rows(p).t() if trans else pad_rows(p)


def worth_padding(m: int, n: int, k: int) -> bool:
    return min(m, n) >= PAD_MIN_MN and m * n * k >= PAD_MIN_MNK


def operands(a: torch.Tensor, b: torch.Tensor, m: int, n: int, k: int, ta: bool = False,
              tb: bool = False) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """(pa, pb, trans_a, trans_b): what the kernel reads for ``A [M, K] @ B [K, N]`` (A = ``a``, or
    ``a.t()`` with ``ta``; B likewise): the stored layouts (``layout``), with unaligned rows padded in
    large GEMMs. One layout pass: every GEMM's host path."""
    pa, ta = layout(a, ta)
    pb, tb = layout(b, tb)
    if worth_padding(m, n, k):
        _fast.alignment_read()  # as in padded()
        if not rows_aligned(pa):
            pa = pad_rows(pa)
        if not rows_aligned(pb):
            pb = pad_rows(pb)
    return pa, pb, ta, tb
