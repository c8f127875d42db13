"""Random numbers in device code: hl.rand with a seed (deterministic) and torch.rand_like
(fresh per call). Checked by the dropout identity and by keep-rate statistics."""
from __future__ import annotations

import torch

from helion_ops.dsl import Config

from . import k_elementwise as E


def _check_dropout(x, out, keep, p):
    want = torch.where(keep, x / (1 - p), torch.zeros_like(x))
    assert torch.allclose(out, want, rtol=1e-6, atol=0)
    rate = keep.float().mean().item()
    assert abs(rate - (1 - p)) < 0.05, rate


def test_hl_rand_seeded_dropout():
    x = torch.randn(4001)
    b = E.dropout_seeded.bind((x, 0.3, 123))
    out, keep = b.run(b.normalize(Config(block_sizes=[256])), x, 0.3, 123)
    _check_dropout(x, out, keep, 0.3)
    out2, keep2 = b.run(b.normalize(Config(block_sizes=[128])), x, 0.3, 123)
    assert torch.equal(keep, keep2)  # same seed, same stream, whatever the block size
    _, keep3 = E.dropout_seeded(x, 0.3, 7)
    assert not torch.equal(keep, keep3)


def test_rand_like_fresh_per_call():
    x = torch.randn(33, 65)
    out, keep = E.dropout_rand_like(x, 0.5)
    _check_dropout(x, out, keep, 0.5)
    _, keep2 = E.dropout_rand_like(x, 0.5)
    assert not torch.equal(keep, keep2)
