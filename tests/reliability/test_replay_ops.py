"""Every catalog kernel replays its launches after the first call (``replay_host=True``), and the
replayed calls are right on fresh inputs. A change that makes a kernel's host code unreplayable
(a float computed from an argument, say) would silently bring its host cost back: this catches it."""
from __future__ import annotations

import pytest
import torch

from helion_ops import _oplib as C
from helion_ops.dsl import runtime

from ._util import MODS, OP_MODS, OPS, check_against_reference

DTYPE = torch.float32


@pytest.mark.parametrize("op", OPS)
def test_catalog_kernels_replay_and_stay_right(op, device):
    mod = MODS[op]
    shape = mod.SMALL_SHAPES[-1]
    for v in vars(OP_MODS[op]).values():  # start from unbound kernels: earlier tests may have run with replay off
        if isinstance(v, runtime.Kernel):
            v.reset()
        elif isinstance(v, C.Kern):
            v._cache.clear()
    for seed in range(3):  # the first call records, the later ones replay: each on fresh inputs
        torch.manual_seed(seed)
        check_against_reference(mod, mod.make_inputs(shape, DTYPE, device), DTYPE)
    kernels = [k for k in vars(OP_MODS[op]).values() if isinstance(k, runtime.Kernel)]
    assert kernels and all(k.settings.get("replay_host") for k in kernels), op
    called = [(k.name, b) for k in kernels for b in k._bound.values() if b._ctx is not None]
    assert called, op
    for name, b in called:
        assert b._ctx.replay is not None, f"{op}: {name} does not replay its launches"
