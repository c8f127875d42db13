"""The benchmark contract of each catalog op (docs/CONTRACTS.md §1): ``bench/specs/<op>.py``.

The ops (``helion_ops/ops/``) import nothing from here; the harness (bench/) and the tests (tests/)
loop over these specs (``bench.catalog.discover``) with no per-op glue.
"""
from __future__ import annotations

import torch


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
