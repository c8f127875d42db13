"""Hugging Face transformers integration: one call puts helion_ops kernels into a loaded model.

::

    import helion_ops.transformers
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.bfloat16).cuda()
    print(helion_ops.transformers.apply(model))      # norms, attention, MoE experts; weights kept
    model(**batch).loss.backward()                    # train, or model.generate(...)

Importing this module registers ``"helion_ops"`` in transformers' attention interface (with
``sdpa``'s mask format) and experts interface, so ``from_pretrained(..., attn_implementation=
"helion_ops", experts_implementation="helion_ops")`` works too (that path leaves the norms alone).
Per-family helpers (``apply_llama``, ``apply_mistral``, ``apply_mixtral``, ``apply_qwen2``,
``apply_qwen3``, ``apply_qwen3_moe``) are ``apply`` with a check of ``config.model_type``.

What is covered and what is not: docs/COVERAGE.md ("Hugging Face models"); modules:
:mod:`.patch` (``apply``, the report, the norms), :mod:`.attention`, :mod:`.experts`,
:mod:`._fallback` (run-time fallbacks, counted and warned about once).
Needs ``transformers`` >= 5.0 (``pip install -e ".[hf]"``; tested with 5.0 and 5.17): the attention,
mask and experts interfaces. transformers 5.0 to at least 5.3 accept only their own names for
``experts_implementation`` in ``from_pretrained``; ``apply`` sets ours on them all the same.
"""
from __future__ import annotations

import transformers as _transformers  # noqa: F401  (a clear ImportError here when the extra is missing)

from ._fallback import fallbacks, reset_fallbacks
from .attention import attention_forward
from .experts import experts_forward
from .patch import (Report, apply, apply_llama, apply_mistral, apply_mixtral, apply_qwen2, apply_qwen3,
                    apply_qwen3_moe)

__all__ = ["apply", "apply_llama", "apply_mistral", "apply_mixtral", "apply_qwen2", "apply_qwen3",
           "apply_qwen3_moe", "Report", "register", "fallbacks", "reset_fallbacks", "attention_forward",
           "experts_forward", "NAME"]

NAME = "helion_ops"


def register() -> None:
    """Register ``"helion_ops"`` in transformers' attention, attention-mask and experts interfaces
    (done on import; idempotent). The mask entry is ``sdpa``'s: boolean masks, or None where
    ``is_causal`` describes the mask, which is what :func:`attention_forward` expects."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    from transformers.integrations.moe import ExpertsInterface

    ExpertsInterface.register(NAME, experts_forward)


register()
