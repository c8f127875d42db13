"""``experts_implementation="helion_ops"``: MoE experts' matmuls through ``helion_ops.grouped_gemm``.

transformers (5.x) stores the experts of Mixtral, Qwen2/3-MoE, DeepSeek, gpt-oss and most MoE models
as stacked 3-D parameters (``gate_up_proj`` ``[E, 2I, H]`` or ``up_proj``, ``down_proj`` ``[E, H, I]``;
``[E, in, out]`` when ``is_transposed``) and dispatches their forward through its experts interface.
:func:`experts_forward` is that forward with the two grouped matmuls on our kernel:

1. The ``T * top_k`` (token, expert) pairs are sorted by expert, so each expert's rows are
   consecutive; ``offsets`` are the cumulative counts (a scatter-add: no host read, no shape that
   depends on the data, so it works in CUDA graphs and under torch.compile).
2. ``h = grouped_gemm(x_sorted, W_up)``, the class's own gating (``_apply_gate``: SwiGLU on the
   ``[gate; up]`` halves, or its variant) or activation, ``y = grouped_gemm(h, W_down)``, biases
   per row where the class has them. Weights stored ``[E, out, in]`` are read transposed in place.
3. Rows are weighted by their routing weight, put back in token order and summed over ``top_k``
   (a deterministic reduction, as transformers' ``grouped_mm``; no atomics).

Expert-parallel sentinels (expert ids ``>= E``, whose routing weight transformers sets to 0) are
counted in the last expert's group: they cost a few rows of work and contribute exactly 0, so every
row of both products is written (``grouped_gemm`` leaves rows outside every group unwritten).

Cases the kernel does not take (a device it does not run on, a dtype other than fp16/bf16/fp32, no
tokens) run transformers' ``grouped_mm`` experts forward, counted by :mod:`._fallback`.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _fallback

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _hf_forward():
    from transformers.integrations.moe import grouped_mm_experts_forward
    return grouped_mm_experts_forward


def _gated(module: torch.nn.Module) -> bool:
    return getattr(module, "has_gate", True)  # transformers 5.0 has no has_gate: every class was gated


def unsupported_reason(module: torch.nn.Module, hidden_states: torch.Tensor) -> Optional[str]:
    w = module.gate_up_proj if _gated(module) else module.up_proj
    reason = _fallback.device_reason(hidden_states) or _fallback.device_reason(w)
    if reason:
        return reason
    if w.dtype not in _DTYPES:
        return f"the expert weights are {w.dtype} (grouped_gemm takes fp16, bf16 or fp32)"
    if hidden_states.shape[0] == 0:
        return "the batch has no tokens"
    return None


def _as_kn(w: torch.Tensor, transposed: bool) -> torch.Tensor:
    """[E, in, out] for grouped_gemm: a transposed view of [E, out, in] storage (read in place)."""
    return w if transposed else w.transpose(1, 2)


def experts_forward(self: torch.nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:
    """transformers' experts-interface entry ``"helion_ops"``: [T, H] tokens -> [T, H] mixture."""
    from ..ops.grouped_gemm import grouped_gemm

    reason = unsupported_reason(self, hidden_states)
    if reason is not None:
        _fallback.record("experts", reason)
        return _hf_forward()(self, hidden_states, top_k_index, top_k_weights)
    num_experts, top_k = self.num_experts, top_k_index.shape[-1]
    tokens, hidden = hidden_states.shape
    ids, order = torch.sort(top_k_index.reshape(-1))                 # (token, slot) pairs by expert
    ids = ids.clamp(max=num_experts - 1)                              # EP sentinels join the last group
    counts = torch.zeros(num_experts, dtype=torch.int32, device=ids.device)
    counts.scatter_add_(0, ids, torch.ones_like(ids, dtype=torch.int32))
    offsets = torch.cumsum(counts, 0, dtype=torch.int32)

    gated, bias = _gated(self), getattr(self, "has_bias", False)
    w_up = _as_kn(self.gate_up_proj if gated else self.up_proj, self.is_transposed)
    x = hidden_states[order // top_k].to(w_up.dtype)
    h = grouped_gemm(x, w_up, offsets, validate=False)
    if bias:
        h = h + (self.gate_up_proj_bias if gated else self.up_proj_bias)[ids]
    h = self._apply_gate(h) if gated else self.act_fn(h)
    y = grouped_gemm(h.to(w_up.dtype), _as_kn(self.down_proj, self.is_transposed), offsets, validate=False)
    if bias:
        y = y + self.down_proj_bias[ids]
    y = y * top_k_weights.reshape(-1)[order].unsqueeze(-1)
    y = torch.empty_like(y).index_copy_(0, order, y)                 # back to (token, slot) order
    return y.view(tokens, top_k, hidden).sum(dim=1).to(hidden_states.dtype)
