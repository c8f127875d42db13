"""helion_ops.transformers on tiny, randomly initialised Hugging Face models (CPU: Triton's interpreter).

Each family's config is built here (no download): hidden 64, 2 layers, head dim 64 (today's
attention takes it), odd sequence lengths. The patched model must give the unpatched model's logits,
gradients and greedy generations; the report must name what was patched; a head dim of 32 (which
today's attention does not take) must run on PyTorch's path with one warning, never fail.
"""
from __future__ import annotations

import copy
import functools
import inspect
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers", minversion="5.0")
hot = pytest.importorskip("helion_ops.transformers")

from helion_ops.errors import FallbackWarning  # noqa: E402

COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, max_position_embeddings=64,
              num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=False)
FAMILIES = {  # family: (config class, model class, extra config, norms per layer)
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_attention_heads=2, head_dim=64), 2),  # GQA 2:1
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}, 2),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=64), 4),  # + q_norm, k_norm
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(head_dim=64, sliding_window=None), 2),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(head_dim=64, num_local_experts=4, num_experts_per_tok=2), 2),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48, norm_topk_prob=True), 4),
}
MOE = ("mixtral", "qwen3_moe")


def config(family: str, **overrides):
    cfg_cls, _, extra, _ = FAMILIES[family]
    return getattr(transformers, cfg_cls)(**{**COMMON, **extra, **overrides})


@functools.lru_cache(maxsize=None)
def _base(family: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(hash(family) % 1000)
    model = getattr(transformers, FAMILIES[family][1])(config(family, **overrides))
    with torch.no_grad():  # transformers initialises norm weights to 1: make them count
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


def pair(family: str, dtype=torch.float32, **overrides):
    """(unpatched, patched, report): two copies of one randomly initialised model."""
    ref = copy.deepcopy(_base(family, **overrides)).to(dtype)
    model = copy.deepcopy(ref)
    return ref, model, hot.apply(model, attention=True)


def tokens(batch: int, seq: int, seed: int) -> torch.Tensor:
    return torch.randint(0, COMMON["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def close(got, want, tol):
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(1.0, want.abs().max().item()))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_and_report_names_the_modules(family):
    ref, model, report = pair(family)
    layers = COMMON["num_hidden_layers"]
    assert report.count("rms_norm") == FAMILIES[family][3] * layers + 1  # + the final norm
    assert report.names("attention") == [f"model.layers.{i}.self_attn" for i in range(layers)]
    experts = [f"model.layers.{i}.mlp.experts" for i in range(layers)] if family in MOE else []
    assert report.names("experts") == experts
    assert report.left_alone == []
    assert model.config._attn_implementation == "helion_ops"
    assert "patched: " in str(report) and "rms_norm" in str(report)
    ids = tokens(2, 5, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every call on our kernels
        got = model(ids).logits
    close(got, ref(ids).logits, 1e-4)


@pytest.mark.parametrize("family", ["llama", "mixtral"])
def test_gradients_match_fp32(family):
    ref, model, _ = pair(family)
    ref.train(), model.train()
    ids = tokens(2, 5, seed=2)
    losses = [m(ids, labels=ids).loss for m in (ref, model)]
    for loss in losses:
        loss.backward()
    close(losses[1], losses[0], 1e-5)
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        assert q.grad is not None, name
        close(q.grad, p.grad, 1e-4)


def test_fp16_within_the_unpatched_models_own_error():
    """In fp16 the patched model is as close to the fp32 model as the unpatched fp16 model is."""
    ref32, _, _ = pair("llama")
    ref16, model16, _ = pair("llama", torch.float16)
    ids = tokens(2, 5, seed=3)
    want = ref32(ids, labels=ids)
    outs = [m(ids, labels=ids) for m in (ref16, model16)]
    for o in [want, *outs]:
        o.loss.backward()
    errs = [(o.logits.float() - want.logits).abs().max().item() for o in outs]
    assert errs[1] <= 2 * errs[0] + 1e-3, errs
    for (name, p32), p_ref, p_ours in zip(ref32.named_parameters(), ref16.parameters(), model16.parameters()):
        e_ref = (p_ref.grad.float() - p32.grad).abs().max().item()
        e_ours = (p_ours.grad.float() - p32.grad).abs().max().item()
        assert e_ours <= 2 * e_ref + 1e-3 * p32.grad.abs().max().item(), (name, e_ours, e_ref)


def test_generation_with_kv_cache_gives_the_same_tokens():
    ref, model, _ = pair("llama")
    ids = tokens(1, 5, seed=4)
    kw = dict(do_sample=False, max_new_tokens=5, pad_token_id=0)
    want = ref.generate(ids, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # prefill (causal) and decode (S_q = 1) on our kernel
        got = model.generate(ids, **kw)
    assert got.tolist() == want.tolist()


def test_torch_compile_fullgraph_of_the_patched_model():
    """No graph break (norms, attention and experts are custom ops); the compiled step matches eager."""
    ref, model, _ = pair("mixtral")
    model.train(), ref.train()
    ids = tokens(2, 5, seed=9)
    step = torch.compile(lambda x: model(input_ids=x, labels=x, use_cache=False).loss, backend="aot_eager",
                         fullgraph=True)
    loss = step(ids)
    loss.backward()
    want = ref(input_ids=ids, labels=ids, use_cache=False).loss
    want.backward()
    close(loss, want, 1e-5)
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        close(q.grad, p.grad, 1e-4)
    torch._dynamo.reset()


def accepts_registered_experts() -> bool:
    """transformers 5.0 to at least 5.3 check experts_implementation against a fixed list (apply() sets it anyway)."""
    check = transformers.PreTrainedModel.get_correct_experts_implementation
    return "ALL_EXPERTS_FUNCTIONS" in inspect.getsource(check)


def test_attn_implementation_helion_ops_in_from_pretrained(tmp_path):
    _base("qwen3_moe").save_pretrained(tmp_path)
    kw = dict(attn_implementation="helion_ops")
    if accepts_registered_experts():
        kw["experts_implementation"] = "helion_ops"
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, **kw).eval()
    assert model.config._attn_implementation == "helion_ops"
    assert model.config._experts_implementation == kw.get("experts_implementation", "grouped_mm")
    ids = tokens(1, 5, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        got = model(ids).logits
    close(got, _base("qwen3_moe")(ids).logits, 1e-4)


@pytest.mark.parametrize("head_dim", [32, 288])
def test_a_head_dim_the_op_does_not_take_stays_on_pytorch_and_says_so(head_dim):
    """Today's op takes head dims 64/128/256: 32 (tiny models) and 288 (past every kernel) stay on
    PyTorch. Where the op takes the head dim (32 once the op's own ``supports`` admits it), it is patched."""
    hot.reset_fallbacks()
    ref, model, report = pair("llama", head_dim=head_dim)
    q, k = (torch.empty(1, h, 2, head_dim, device="meta") for h in (2, 1))
    ids = tokens(2, 5, seed=6)
    if hot.attention.static_reason(q, k, k) is None:
        assert report.count("attention") == 2 and head_dim <= 256
        with warnings.catch_warnings():
            warnings.simplefilter("error", FallbackWarning)
            close(model(ids).logits, ref(ids).logits, 1e-4)
        return
    assert report.count("attention") == 0 and report.count("rms_norm") == 5
    assert len(report.names("attention", patched=False)) == 2
    assert str(head_dim) in str(report) and model.config._attn_implementation == "sdpa"
    close(model(ids).logits, ref(ids).logits, 1e-4)
    # forced through the interface anyway: every call falls back, one warning in all, counted
    model.set_attn_implementation("helion_ops")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            close(model(ids).logits, ref(ids).logits, 1e-4)
    fallback = [w for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(fallback) == 1 and str(head_dim) in str(fallback[0].message)
    assert sum(hot.fallbacks().values()) == 4  # 2 layers x 2 calls


def test_padding_mask_runs_on_the_op_with_the_same_result():
    """A padding mask (left padding) runs on helion_ops.attention's masked kernels, no fallback: the same
    logits at the kept tokens (a padded query attends to no key: zeros there, SDPA's own choice in sdpa)."""
    hot.reset_fallbacks()
    ref, model, _ = pair("qwen3")
    ids = tokens(2, 5, seed=7)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        got = model(ids, attention_mask=mask).logits
    keep = mask.bool()
    close(got[keep], ref(ids, attention_mask=mask).logits[keep], 1e-4)
    assert not hot.fallbacks()


@pytest.mark.parametrize("tokens_in", [1, 3])
def test_experts_forward_matches_transformers_at_decode_sizes(tokens_in):
    """One and three tokens (a decode step, a short batch): some experts get no rows."""
    from transformers.integrations.moe import grouped_mm_experts_forward

    experts = copy.deepcopy(_base("mixtral").model.layers[0].mlp.experts)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(tokens_in, COMMON["hidden_size"], generator=g, requires_grad=True)
    idx = torch.stack([torch.randperm(4, generator=g)[:2] for _ in range(tokens_in)])
    wts = torch.rand(tokens_in, 2, generator=g).softmax(-1)
    want = grouped_mm_experts_forward(experts, x, idx, wts)
    got = hot.experts_forward(experts, x, idx, wts)
    close(got, want, 1e-5)
    (dx_want,) = torch.autograd.grad(want.sum(), x)
    (dx_got,) = torch.autograd.grad(got.sum(), x)
    close(dx_got, dx_want, 1e-5)


class GemmaStyleRMSNorm(torch.nn.Module):
    """``(1 + weight)`` scaling: looks like an RMSNorm, is not Llama's."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n))
        self.variance_epsilon = 1e-6

    def forward(self, x):
        return (1 + self.weight) * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


class LlamaStyleRMSNorm(GemmaStyleRMSNorm):
    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def test_norms_of_any_module_and_what_is_left_alone():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.LayerNorm(33), GemmaStyleRMSNorm(33), LlamaStyleRMSNorm(33),
                              torch.nn.RMSNorm(33, eps=1e-5), torch.nn.RMSNorm(33, elementwise_affine=False))
    for m in net:
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.RMSNorm)) and m.weight is not None:
            torch.nn.init.normal_(m.weight)
    x = torch.randn(5, 7, 33)[:, ::2]  # odd sizes, a non-contiguous view
    want = net(x)
    patched = copy.deepcopy(net)
    report = hot.apply(patched)
    assert report.names("layer_norm") == ["0"] and report.names("rms_norm") == ["2", "3", "4"]
    assert [(e.name, e.cls) for e in report.left_alone] == [("1", "GemmaStyleRMSNorm")]  # attention: off by default
    assert "does not compute Llama's RMSNorm" in str(report)
    close(patched(x), want, 1e-5)
    assert [k for k in patched.state_dict()] == [k for k in net.state_dict()]
    assert hot.apply(patched).count("rms_norm") == 3  # again: harmless


def test_family_helpers_check_the_model_type():
    _, model, _ = pair("qwen3")
    with pytest.raises(ValueError, match="model_type 'qwen3'"):
        hot.apply_llama(model)
    assert hot.apply_qwen3(model, attention=False).count("rms_norm") == 9
    with pytest.raises(TypeError, match="'model'"):
        hot.apply("not a model")


def test_attention_is_opt_in():
    """apply() leaves attention on PyTorch's SDPA unless asked (cuDNN's is faster on Hopper today)."""
    _, model, _ = pair("llama")  # pair() patches attention: a fresh copy for the default
    fresh = copy.deepcopy(_base("llama"))
    before = fresh.config._attn_implementation
    report = hot.apply(fresh)
    assert report.count("attention") == 0 and report.count("rms_norm") == 5
    assert fresh.config._attn_implementation == before != "helion_ops"
    assert model.config._attn_implementation == "helion_ops"
