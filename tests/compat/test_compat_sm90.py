"""Every compat kernel compiles for Hopper (sm_90) without a GPU: its default config
(or the config its decorator pins), one build per kernel, all in one subprocess."""
from __future__ import annotations

import pytest
import torch

from helion_ops.dsl.backends.triton import compile_specs_for_target

from .cases import CASES, COMPILE_ONLY

# one case per kernel: the first that uses it
_FIRST = {}
for _c in CASES + COMPILE_ONLY:
    if hasattr(_c.kernel, "bind"):  # plain wrappers (e.g. split_k_with_bias) compile via their kernel
        _FIRST.setdefault(id(_c.kernel), _c)
SM90 = list(_FIRST.values())


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    spans, specs = {}, []
    for c in SM90:
        args = c.make(c.dtypes[-1], c.sizes[-1])
        b = c.kernel.bind(c.kernel.normalize_args(args, {}))
        s = b.compile_specs(b.config)
        spans[c.name] = (len(specs), len(specs) + len(s))
        specs += s
    res = compile_specs_for_target(specs, ("cuda", 90, 32), keep_going=True)
    return {name: res[a:b] for name, (a, b) in spans.items()}


@pytest.mark.parametrize("name", [c.name for c in SM90])
def test_compiles_for_sm90(built, name):
    res = built[name]
    assert res
    for r in res:
        assert not isinstance(r, str), r
        assert ".target sm_90" in r.asm["ptx"]
