"""``attn_implementation="helion_ops"``: Hugging Face attention through ``helion_ops.attention``.

:func:`attention_forward` has the signature of transformers' attention interface (``module, query,
key, value, attention_mask, dropout, scaling, is_causal, **kwargs`` -> ``(out [B, S, H, D], None)``)
and the semantics of its ``sdpa`` entry, which it falls back to call by call:

* Masks come from transformers' ``sdpa_mask`` (registered for ``"helion_ops"`` in the mask interface
  too): ``None`` when the mask is plain causal over the whole cache or a decode step without
  padding, else a boolean ``[B, 1, S_q, S_k]`` tensor (padding, sliding window, packed sequences,
  a prefill after earlier tokens).
* ``is_causal`` as sdpa: causal only when ``S_q > 1`` and there is no mask; a decode step
  (``S_q = 1``) attends to the whole cache. With a static cache's prefill (``S_k > S_q``, no mask)
  the keys are cut to ``S_q`` as sdpa does, since SDPA's causal mask is top-left aligned.
* Grouped-query attention runs natively (``H_kv`` divides ``H``): no ``repeat_kv`` copy.

A call our op does not support (today: dropout, head dims over 256, a mask that does not broadcast to
the keys, CPU tensors without the interpreter, ``output_attentions``, an additive position bias or
attention sinks) runs transformers' ``sdpa_attention_forward`` instead and is counted by
:mod:`._fallback` (one warning per reason); masks run on the op. Where the op module offers ``supports(q, k, v, ...) -> (ok, reason)``, that decides
what the op takes and masks and dropout are passed to it; otherwise the conservative check here.
"""
from __future__ import annotations

import inspect
from typing import Optional

import torch

from . import _fallback
from ..errors import InputError

try:
    from ..ops import attention as _op
except Exception as _e:  # a broken op module: every call takes PyTorch's path, with the reason
    _op, _IMPORT_ERROR = None, f"helion_ops.attention is unavailable ({type(_e).__name__}: {_e})"
else:
    _IMPORT_ERROR = None

_SUPPORTS = getattr(_op, "supports", None)
_SUPPORTS_KW = set(inspect.signature(_SUPPORTS).parameters) if _SUPPORTS is not None else set()
_OP_KW = set(inspect.signature(_op.attention).parameters) if _op is not None else set()
HEAD_DIMS = tuple(getattr(_op, "HEAD_DIMS", (64, 128, 256)))
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# kwargs that change the result and that helion_ops.attention has no argument for
_UNSUPPORTED_KW = ("position_bias", "s_aux", "sinks")


def _sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    return sdpa_attention_forward


def _own_check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, dropout: float) -> Optional[str]:
    """Why today's op (no mask, no dropout, head dims 64/128/256) cannot take this call, or None."""
    if mask is not None:
        return ("the call has an attention mask (padding, sliding window, packed sequences, a chunked prefill "
                "or a static cache)")
    if dropout:
        return "attention dropout is on"
    return _static_check(q, k, v)


def _static_check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Optional[str]:
    d = q.shape[-1]
    if k.shape[-1] != d or v.shape[-1] != d:
        return f"q, k and v head dims differ ({d}, {k.shape[-1]}, {v.shape[-1]})"
    if _SUPPORTS is None and d not in HEAD_DIMS:
        return f"head dim {d} is not one of {HEAD_DIMS}"
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in _DTYPES:
        return f"dtypes {q.dtype}, {k.dtype}, {v.dtype} (the op takes one of fp16, bf16, fp32)"
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        return f"{k.shape[1]} kv heads do not divide {q.shape[1]} query heads"
    return None


def static_reason(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Optional[str]:
    """Why no call with these shapes and dtypes (meta tensors will do) can run on the op, or None."""
    if _IMPORT_ERROR:
        return _IMPORT_ERROR
    if _SUPPORTS is None:
        return _static_check(q, k, v)
    try:
        ok, why = _SUPPORTS(q, k, v)
    except Exception:  # noqa: BLE001  (undecidable without real tensors: decided call by call)
        return None
    why = str(why)
    return None if ok or "device" in why or "meta" in why else why


def unsupported_reason(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None, dropout: float = 0.0,
                       causal: bool = False, scale: Optional[float] = None) -> Optional[str]:
    """Why ``helion_ops.attention`` cannot compute this call ([B, H, S, D] tensors), or None."""
    if _IMPORT_ERROR:
        return _IMPORT_ERROR
    reason = _fallback.device_reason(q)
    if reason:
        return reason
    if _SUPPORTS is None:
        return _own_check(q, k, v, mask, dropout)
    kw = {"attn_mask": mask, "dropout_p": dropout, "causal": causal, "scale": scale}
    ok, why = _SUPPORTS(q, k, v, **{n: x for n, x in kw.items() if n in _SUPPORTS_KW})
    return None if ok else str(why)


def attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                      is_causal: Optional[bool] = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-interface entry ``"helion_ops"``: ``sdpa`` semantics, our kernel."""
    extra = next((n for n in _UNSUPPORTED_KW if kwargs.get(n) is not None), None)
    if kwargs.get("output_attentions"):
        extra = "output_attentions=True"
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    reason = (f"the call passes {extra}" if extra else
              unsupported_reason(query, key, value, attention_mask, dropout, causal, scaling))
    if reason is not None:
        _fallback.record("attention", reason)
        return _sdpa()(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                       is_causal=is_causal, **kwargs)
    if causal and kv_len > q_len:  # a static cache's prefill: keys past S_q are masked anyway
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    extra_kw = {}
    if attention_mask is not None and "attn_mask" in _OP_KW:
        extra_kw["attn_mask"] = attention_mask
    if dropout and "dropout_p" in _OP_KW:
        extra_kw["dropout_p"] = dropout
    if torch.compiler.is_compiling():
        out = _op.attention(query, key, value, causal, scaling, **extra_kw)
    else:
        try:
            out = _op.attention(query, key, value, causal, scaling, **extra_kw)
        except InputError as e:  # a case the checks above missed: PyTorch's path, never a failed forward
            _fallback.record("attention", f"helion_ops.attention refused the call ({e})")
            return _sdpa()(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                           is_causal=is_causal, **kwargs)
    return out.transpose(1, 2).contiguous(), None
