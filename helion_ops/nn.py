"""Drop-in ``torch.nn`` modules backed by helion_ops kernels.

``RMSNorm`` and ``LayerNorm`` subclass ``torch.nn.RMSNorm`` / ``torch.nn.LayerNorm``: same constructor,
parameters, initialisation and state-dict keys (``weight``, ``bias``), so checkpoints load either way
and ``isinstance`` checks keep working; only ``forward`` runs our kernels. Unlike the functional ops,
the modules cast their parameters to the input's dtype (e.g. fp32 parameters with a bf16 input).
"""
from __future__ import annotations

import torch

__all__ = ["RMSNorm", "LayerNorm"]


def _param(p: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    return p if p is None or p.dtype == x.dtype else p.to(x.dtype)


class RMSNorm(torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` computed by ``helion_ops.ops.rms_norm``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .ops.rms_norm import rms_norm
        return rms_norm(x, self.normalized_shape, _param(self.weight, x), self.eps)


class LayerNorm(torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` computed by ``helion_ops.ops.layer_norm``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .ops.layer_norm import layer_norm
        return layer_norm(x, self.normalized_shape, _param(self.weight, x), _param(self.bias, x), self.eps)
