"""``apply(model)``: put helion_ops kernels into a loaded Hugging Face model, in place.

What is patched (each part is a keyword; all but ``attention`` are on by default):

* ``rms_norm``: every RMSNorm module computing Llama's RMSNorm (``weight * normalize(x)``, the
  ``*RMSNorm`` classes of Llama, Mistral, Mixtral, Qwen2/3, Qwen3-MoE and most decoder models, and
  ``torch.nn.RMSNorm``) gets a forward on ``helion_ops.rms_norm``. A module whose class is not known
  to compute that is checked on a random input first; one that does not match (Gemma's ``1 + weight``,
  for example) is left alone and reported.
* ``layer_norm``: ``torch.nn.LayerNorm`` modules (with torch's own forward) -> ``helion_ops.layer_norm``.
* ``attention`` (off by default: on Hopper PyTorch's SDPA runs cuDNN's attention, faster than ours today,
  docs/decisions/hf-attention-default.md): the model's ``attn_implementation`` becomes ``"helion_ops"`` (see
  :mod:`.attention`): every attention layer that dispatches through transformers' attention
  interface runs our flash-attention kernel, call by call falling back to PyTorch's SDPA where the
  call has something the kernel does not take. A head dim the op cannot take at all leaves the
  model's implementation as it was.
* ``moe``: experts modules with stacked weights (transformers' experts interface) run their two
  matmuls on ``helion_ops.grouped_gemm`` (``experts_implementation="helion_ops"``, see
  :mod:`.experts`). Experts kept as a list of per-expert MLP modules are left alone: grouped GEMM
  needs the weights stacked, and stacking them would copy the weights.

Weights are never copied or replaced: parameters, state-dict keys, ``isinstance`` checks and the
optimizer's references stay as they were. Patched modules get their ``forward`` set on the instance
(a norm's original forward stays reachable as ``module._helion_ops_original_forward``). ``apply``
returns a :class:`Report` of what was patched and what was left alone, with the reason; print it.
Apply before wrapping the model in DDP / ``fully_shard`` / ``torch.compile``.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Callable, Optional

import torch

from . import _fallback

__all__ = ["Report", "apply", "apply_llama", "apply_mistral", "apply_mixtral", "apply_qwen2", "apply_qwen3",
           "apply_qwen3_moe"]

# *RMSNorm classes known to compute Llama's RMSNorm (variance in fp32, ``weight * x_normed.to(dtype)``)
KNOWN_RMS_NORMS = {"LlamaRMSNorm", "MistralRMSNorm", "MixtralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm",
                   "Qwen3MoeRMSNorm", "Qwen2MoeRMSNorm"}


@dataclasses.dataclass
class Entry:
    name: str       # module path in the model ("model.layers.0.input_layernorm"), "" for the model
    kind: str       # "rms_norm", "layer_norm", "attention", "experts"
    cls: str        # class of the module
    detail: str = ""  # what changed, or why it was left alone


@dataclasses.dataclass
class Report:
    """What :func:`apply` did to a model. ``str(report)`` is a short readable summary."""

    model: str
    patched: list[Entry] = dataclasses.field(default_factory=list)
    left_alone: list[Entry] = dataclasses.field(default_factory=list)

    def count(self, kind: str) -> int:
        """How many modules of ``kind`` were patched (attention: how many layers will use our kernel)."""
        return sum(e.kind == kind for e in self.patched)

    def names(self, kind: str, patched: bool = True) -> list[str]:
        return [e.name for e in (self.patched if patched else self.left_alone) if e.kind == kind]

    def fallbacks(self) -> dict[tuple[str, str], int]:
        """Run-time fallbacks so far (every patched model of the process), see :func:`fallbacks`."""
        return _fallback.fallbacks()

    def __str__(self) -> str:
        lines = [f"helion_ops.transformers.apply({self.model}):"]
        for title, entries in (("patched", self.patched), ("left alone", self.left_alone)):
            groups: dict[tuple[str, str, str], list[str]] = {}
            for e in entries:
                groups.setdefault((e.kind, e.cls, e.detail), []).append(e.name or "<model>")
            lines.append(f"  {title}: {len(entries)}" + ("" if entries else " (none)"))
            for (kind, cls, detail), names in groups.items():
                shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
                lines.append(f"    {kind:<10} {len(names):>3} x {cls}: {shown}" + (f"  [{detail}]" if detail else ""))
        runtime = _fallback.fallbacks()
        lines.append("  run-time fallbacks so far: " + ("none" if not runtime else "; ".join(
            f"{comp}: {n} call(s), {reason}" for (comp, reason), n in runtime.items())))
        return "\n".join(lines)

    __repr__ = __str__


# ---- norms ----------------------------------------------------------------------------------------

def _rms_forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    from ..ops.rms_norm import rms_norm

    reason = _fallback.device_reason(x)
    if reason is not None:
        _fallback.record("rms_norm", reason)
        return self._helion_ops_original_forward(x)
    w = self.weight
    if isinstance(self, torch.nn.RMSNorm):  # torch's: weight optional, eps=None is finfo(x.dtype).eps
        return rms_norm(x, self.normalized_shape, w if w is None or w.dtype == x.dtype else w.to(x.dtype), self.eps)
    y = rms_norm(x, tuple(w.shape), w if w.dtype == x.dtype else w.to(x.dtype), self.variance_epsilon)
    out_dtype = torch.promote_types(w.dtype, x.dtype)  # transformers: weight * x_normed.to(x.dtype)
    return y if y.dtype == out_dtype else y.to(out_dtype)


def _layer_norm_forward(self: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    from ..ops.layer_norm import layer_norm

    reason = _fallback.device_reason(x)
    if reason is not None:
        _fallback.record("layer_norm", reason)
        return self._helion_ops_original_forward(x)
    w, b = self.weight, self.bias
    cast = (lambda p: p if p is None or p.dtype == x.dtype else p.to(x.dtype))
    return layer_norm(x, self.normalized_shape, cast(w), cast(b), self.eps)


def _is_rms_norm(m: torch.nn.Module) -> Optional[str]:
    """None when ``m`` looks like an RMSNorm we can patch, else why not; "" when it is no RMSNorm."""
    if isinstance(m, torch.nn.RMSNorm):
        return "a torch.nn.RMSNorm subclass with its own forward" if type(m).forward is not torch.nn.RMSNorm.forward \
            else None
    if not type(m).__name__.endswith("RMSNorm"):
        return ""
    w = getattr(m, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 1 or not hasattr(m, "variance_epsilon"):
        return "not Llama's RMSNorm layout (a 1-D weight and variance_epsilon)"
    if sum(1 for _ in m.parameters(recurse=False)) != 1 or any(True for _ in m.children()):
        return "it has parameters or submodules besides its weight"
    if type(m).__name__ in KNOWN_RMS_NORMS or w.device.type == "meta":
        return None if type(m).__name__ in KNOWN_RMS_NORMS else "unknown class on the meta device (cannot check)"
    return _check_numerically(m)


@torch.no_grad()
def _check_numerically(m: torch.nn.Module) -> Optional[str]:
    """Compare ``m``'s own forward with Llama's RMSNorm formula on a random fp32 input."""
    w = m.weight
    x = torch.randn(3, w.shape[0], generator=torch.Generator().manual_seed(0)).to(device=w.device)
    ref = w.float() * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + float(m.variance_epsilon)))
    try:
        got = type(m).forward(m, x).float()
    except Exception as e:  # noqa: BLE001  (any failure means: not the formula we implement)
        return f"its forward failed on a check input ({type(e).__name__})"
    tol = 1e-5 if w.dtype == torch.float32 else 2e-2
    if got.shape != ref.shape or not torch.allclose(got, ref, rtol=tol, atol=tol):
        return "its forward does not compute Llama's RMSNorm (checked on a random input)"
    return None


def _set_forward(m: torch.nn.Module, fn: Callable) -> None:
    if "_helion_ops_original_forward" not in m.__dict__:
        m._helion_ops_original_forward = m.forward
    m.forward = types.MethodType(fn, m)


def _patch_norms(model: torch.nn.Module, report: Report, rms: bool, ln: bool) -> None:
    for name, m in model.named_modules():
        if "_helion_ops_original_forward" in m.__dict__:
            report.patched.append(Entry(name, "layer_norm" if isinstance(m, torch.nn.LayerNorm) else "rms_norm",
                                        type(m).__name__, "already patched"))
            continue
        if ln and isinstance(m, torch.nn.LayerNorm):
            if type(m).forward is not torch.nn.LayerNorm.forward:
                report.left_alone.append(Entry(name, "layer_norm", type(m).__name__,
                                               "a torch.nn.LayerNorm subclass with its own forward"))
            else:
                _set_forward(m, _layer_norm_forward)
                report.patched.append(Entry(name, "layer_norm", type(m).__name__))
            continue
        if not rms:
            continue
        why = _is_rms_norm(m)
        if why is None:
            _set_forward(m, _rms_forward)
            report.patched.append(Entry(name, "rms_norm", type(m).__name__))
        elif why:
            report.left_alone.append(Entry(name, "rms_norm", type(m).__name__, why))


# ---- attention and experts: transformers' interfaces -----------------------------------------------

def _attention_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if type(m).__name__.endswith("Attention") and hasattr(m, "head_dim") and hasattr(m, "layer_idx")]


def _head_dim_reason(layers, dtype: torch.dtype) -> Optional[str]:
    """Why no call of these layers can run on our kernel (head dim, heads, dtype), or None."""
    from .attention import static_reason

    for _, m in layers:
        d, cfg = int(m.head_dim), m.config
        h = int(getattr(cfg, "num_attention_heads", 1))
        h_kv = int(getattr(cfg, "num_key_value_heads", None) or h)
        q = torch.empty(1, h, 2, d, device="meta", dtype=dtype)
        k = torch.empty(1, h_kv, 2, d, device="meta", dtype=dtype)
        reason = static_reason(q, k, k)
        if reason:
            return reason
    return None


def _patch_attention(model: torch.nn.Module, report: Report) -> None:
    config = getattr(model, "config", None)
    layers = _attention_modules(model)
    if config is None or not hasattr(model, "set_attn_implementation"):
        report.left_alone.append(Entry("", "attention", type(model).__name__,
                                       "not a transformers model (no attention implementation to set)"))
        return
    before = config._attn_implementation
    if not type(model)._can_set_attn_implementation():
        report.left_alone.append(Entry("", "attention", type(model).__name__,
                                       "its attention does not dispatch through transformers' attention interface"))
        return
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    why = _head_dim_reason(layers, dtype)
    if why:
        for name, m in layers:
            report.left_alone.append(Entry(name, "attention", type(m).__name__, f"{why}; stays on {before!r}"))
        return
    if before != "helion_ops":
        model.set_attn_implementation("helion_ops")
    for name, m in layers:
        report.patched.append(Entry(name, "attention", type(m).__name__,
                                    f"attn_implementation {before!r} -> 'helion_ops'"))


def _is_stacked_experts(m: torch.nn.Module) -> bool:
    """An experts module of transformers' experts interface (5.x: ``is_transposed`` set by its decorator;
    ``has_gate`` / ``has_bias`` since 5.1, before which every such class was gated, without biases)."""
    return all(hasattr(m, a) for a in ("is_transposed", "num_experts", "down_proj")) \
        and isinstance(getattr(m, "down_proj"), torch.Tensor) and m.down_proj.dim() == 3


def _patch_experts(model: torch.nn.Module, report: Report) -> None:
    stacked, listed = [], []
    for name, m in model.named_modules():
        if _is_stacked_experts(m):
            stacked.append((name, m))
        elif name.endswith("experts") and isinstance(m, torch.nn.ModuleList):
            listed.append((name, m))
    for name, m in listed:
        report.left_alone.append(Entry(name, "experts", type(m).__name__, "experts kept as per-expert modules; "
                                       "grouped_gemm needs stacked [E, K, N] weights (stacking would copy them)"))
    if not stacked:
        return
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "set_experts_implementation") \
            or not type(model)._can_set_experts_implementation():
        for name, m in stacked:
            report.left_alone.append(Entry(name, "experts", type(m).__name__, "the model does not dispatch "
                                           "experts through transformers' experts interface"))
        return
    before = config._experts_implementation
    if before != "helion_ops":
        try:
            model.set_experts_implementation("helion_ops")
        except ValueError:  # transformers 5.0 checks against a fixed list; its experts read the config's name
            for _, m in stacked:
                m.config._experts_implementation_internal = "helion_ops"
    for name, m in stacked:
        report.patched.append(Entry(name, "experts", type(m).__name__,
                                    f"experts_implementation {before!r} -> 'helion_ops'"))


# ---- entry points ---------------------------------------------------------------------------------

def apply(model: torch.nn.Module, *, rms_norm: bool = True, layer_norm: bool = True, attention: bool = False,
          moe: bool = True) -> Report:
    """Patch ``model`` (a transformers model, or any ``nn.Module`` for the norms) in place; returns a
    :class:`Report`. Weights are kept; calling it again is harmless. See the module docstring."""
    from . import register

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"apply(): argument 'model' must be a torch.nn.Module, got {type(model).__name__}")
    register()
    report = Report(type(model).__name__)
    if rms_norm or layer_norm:
        _patch_norms(model, report, rms_norm, layer_norm)
    if attention:
        _patch_attention(model, report)
    if moe:
        _patch_experts(model, report)
    return report


def _family(model_types: tuple[str, ...]) -> Callable[..., Report]:
    def apply_family(model: torch.nn.Module, **kwargs) -> Report:
        got = getattr(getattr(model, "config", None), "model_type", None)
        if got not in model_types:
            raise ValueError(f"apply_{model_types[0]}(): argument 'model' is a {type(model).__name__} "
                             f"(model_type {got!r}), not one of {model_types}; use helion_ops.transformers.apply")
        return apply(model, **kwargs)

    apply_family.__name__ = f"apply_{model_types[0]}"
    apply_family.__doc__ = (f"``apply(model, **kwargs)`` for {', '.join(model_types)} models; raises ValueError "
                            f"for another model_type. Same keywords as :func:`apply`.")
    return apply_family


apply_llama = _family(("llama",))
apply_mistral = _family(("mistral",))
apply_mixtral = _family(("mixtral",))
apply_qwen2 = _family(("qwen2",))
apply_qwen3 = _family(("qwen3",))
apply_qwen3_moe = _family(("qwen3_moe",))
