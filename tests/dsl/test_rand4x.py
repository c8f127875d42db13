"""hl.rand4x: four uniform [0, 1) blocks per offset from one Philox round, bitwise Triton's own tl.rand4x for
the same seed and offsets (a plain Triton kernel is the reference), on odd sizes."""
import pytest
import torch
import triton
import triton.language as tl

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc


@helion.kernel(autotune_effort="none")  # the default config: its block follows n (1 included)
def four_streams(x: torch.Tensor, seed: int) -> torch.Tensor:
    out = torch.empty([4, x.size(0)], dtype=torch.float32, device=x.device)
    for t in hl.tile(x.size(0)):
        r0, r1, r2, r3 = hl.rand4x(seed, t.index.to(torch.int64) * 3)
        out[0, t], out[1, t], out[2, t], out[3, t] = r0, r1, r2, r3
    return out


@triton.jit
def _reference(out, n, seed, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    r0, r1, r2, r3 = tl.rand4x(seed, i.to(tl.int64) * 3)
    tl.store(out + i, r0, m)
    tl.store(out + n + i, r1, m)
    tl.store(out + 2 * n + i, r2, m)
    tl.store(out + 3 * n + i, r3, m)


@pytest.mark.parametrize("n", [1, 17, 1000, 4097])
def test_matches_triton_rand4x(n, device):
    x = torch.empty(n, device=device)
    got = four_streams(x, 1234)
    ref = torch.empty(4, n, device=device)
    _reference[(triton.cdiv(n, 64),)](ref, n, 1234, BLOCK=64)
    assert torch.equal(got, ref)
    assert ((got >= 0) & (got < 1)).all()
    if n >= 1000:  # four distinct streams, each roughly uniform
        assert abs(got.mean().item() - 0.5) < 0.02 and not torch.equal(got[0], got[1])


def test_float_offsets_are_refused():
    @helion.kernel(config=helion.Config(block_sizes=[16]))
    def bad(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            out[t] = hl.rand4x(0, x[t])[0]
        return out

    with pytest.raises(exc.CompileError, match="offsets must be integers"):
        bad(torch.randn(16))
