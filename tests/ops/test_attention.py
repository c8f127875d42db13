"""attention op: forward and backward numerics in the interpreter (fp32/fp16) under flash-attention's rule,
causal and not, S in {1, 17, 130}, D in {64, 128} (and one 256), GQA, S_q != S_k; custom ops, autograd and
torch.compile; bad inputs; the sm_90 compile of every kernel; bf16 on a GPU."""
from __future__ import annotations

import math

import pytest
import torch

from helion_ops import _oplib as C
import torch.nn.functional as F

from helion_ops.dsl.exc import InputError
from helion_ops.ops import attention as A
from bench.specs import attention as A_spec


# ---- references -----------------------------------------------------------------------------------

def attention_ref(q, k, v, causal: bool, scale: float | None = None, upcast: bool = True):
    """Math attention: in fp64 when ``upcast``, else in the inputs' dtype (the "same computation done by
    torch at the same precision" of flash-attention's tests). Returns the inputs' dtype when not upcast."""
    dt = q.dtype
    if upcast:
        q, k, v = q.double(), k.double(), v.double()
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.matmul(q * scale, k.transpose(-1, -2))
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.matmul(p.to(v.dtype), v) if upcast else torch.matmul(p, v).to(dt)


def fa_check(name: str, out: torch.Tensor, ref: torch.Tensor, pt: torch.Tensor, cancel: float = 0.0) -> None:
    """flash-attention's rule: |out - ref| <= 2 |pt - ref| + floor, floor = 2 * rounding(ref at the 0.3
    scale) as in its tests, at least one ulp of max(1, max|ref|, cancel). ``cancel`` bounds the terms
    that cancel in the gradient (see ``_cancel``): with one key dQ and dK are exactly 0, which torch's
    math path reaches exactly (``P * (dP - sum(P * dP))`` with P = 1) while FA2's ``delta = rowsum(dO *
    O)`` cancels against ``dP`` only to the rounding of those sums."""
    ref_d = ref.to(out.dtype)
    floor = 2 * ((ref_d + 0.3 - 0.3) - ref_d).abs().max().item()
    floor = max(floor, torch.finfo(out.dtype).eps * max(1.0, ref.abs().max().item(), cancel))
    err = (out.double() - ref).abs().max().item()
    err_pt = (pt.double() - ref).abs().max().item()
    assert torch.isfinite(out).all(), name
    assert err <= 2 * err_pt + floor, f"{name}: err {err:.3e} > 2 * torch's {err_pt:.3e} + {floor:.1e}"


def make(b, h, h_kv, s_q, s_k, d, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype).to(device)  # noqa: E731
    return mk(b, h, s_q, d), mk(b, h_kv, s_k, d), mk(b, h_kv, s_k, d), mk(b, h, s_q, d)


def run_and_check(b, h, h_kv, s_q, s_k, d, causal, dtype, device, scale=None, backward=True):
    q, k, v, do = make(b, h, h_kv, s_q, s_k, d, dtype, device)
    leaves64 = [t.double().requires_grad_() for t in (q, k, v)]
    ref = attention_ref(*leaves64, causal, scale)
    leaves_pt = [t.clone().requires_grad_() for t in (q, k, v)]
    pt = attention_ref(*leaves_pt, causal, scale, upcast=False)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = A.attention(*leaves, causal=causal, scale=scale)
    assert out.shape == q.shape and out.dtype == dtype
    fa_check("out", out.detach(), ref.detach(), pt.detach())
    if not backward:
        return
    ref.backward(do.double())
    pt.backward(do)
    out.backward(do)
    cancel = _cancel(q, k, v, do, scale)
    for n, a, r, p in zip("qkv", leaves, leaves64, leaves_pt):
        assert a.grad.shape == a.shape and a.grad.dtype == dtype
        fa_check(f"d{n}", a.grad, r.grad, p.grad, cancel[n])


def _cancel(q, k, v, do, scale) -> dict:
    """Per gradient, the size of the terms that cancel in it: dS = P * (dP - delta) subtracts two
    sums of |dO . V| size, and dQ (dK) multiplies that by K (Q) and the scale; dV has no such step."""
    group = q.shape[1] // k.shape[1]
    kk, vv = (t.double().abs().repeat_interleave(group, 1) for t in (k, v))
    dp = (do.double().abs() @ vv.transpose(-1, -2)).max().item()
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return {"q": dp * kk.max().item() * scale, "k": dp * q.double().abs().max().item() * scale, "v": 0.0}


# ---- numerics ------------------------------------------------------------------------------------

CASES = [  # (B, H, H_kv, S_q, S_k, D)
    (1, 2, 2, 1, 1, 64),
    (2, 1, 1, 17, 17, 64),
    (1, 2, 2, 130, 130, 64),
    (1, 1, 1, 17, 17, 128),
    (1, 1, 1, 130, 130, 128),
]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}h{}kv{}q{}k{}d{}".format(*c))
def test_fwd_bwd_fp32(case, causal, device):
    run_and_check(*case, causal, torch.float32, device)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", [(1, 2, 2, 1, 1, 64), (1, 2, 2, 17, 17, 128), (1, 1, 1, 130, 130, 64)],
                         ids=lambda c: "b{}h{}kv{}q{}k{}d{}".format(*c))
def test_fwd_bwd_fp16(case, causal, device):
    run_and_check(*case, causal, torch.float16, device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gqa(causal, dtype, device):
    """4 query heads share 2 kv heads; dK/dV are reduced over each group in-kernel."""
    run_and_check(1, 4, 2, 17, 17, 64, causal, dtype, device)


def test_gqa_multi_query(device):
    run_and_check(2, 3, 1, 17, 17, 64, True, torch.float32, device)


@pytest.mark.parametrize("blocks", [(32, 16), (16, 32)], ids=["bm32bn16", "bm16bn32"])
@pytest.mark.parametrize("s", [64, 80, 33])
def test_causal_split_with_unequal_blocks(s, blocks, device, monkeypatch):
    """The causal split (unmasked loops off the diagonal band, masked loops on it) with query and key
    blocks of different sizes, where the band spans several blocks and its bounds may or may not be
    multiples of the loop's block."""
    from helion_ops.dsl import Config

    bm, bn = blocks
    sizes = {"attn_fwd": [bm, bn], "attn_bwd_dq": [bm, bn], "attn_bwd_dkdv": [bn, bm], "attn_bwd_preprocess": [16]}
    monkeypatch.setattr(A, "default_config", lambda kernel, *a, **k: Config(
        block_sizes=sizes[kernel], num_warps=4, num_stages=2, indexing="pointer"))
    C.reset_caches()
    try:
        run_and_check(1, 2, 1, s, s, 64, True, torch.float32, device)
    finally:
        C.reset_caches()


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", [(1, 4, 2, 33, 33, 64), (1, 2, 1, 17, 130, 32), (2, 2, 2, 130, 17, 32)],
                         ids=lambda c: "b{}h{}kv{}q{}k{}d{}".format(*c))
def test_dkdv_keys_rows(case, causal, device, monkeypatch):
    """dK/dV computed as P^T and dP^T (``keys_rows``, the orientation the Gluon backend takes) against the fp64
    reference: GQA, S_q != S_k both ways, ragged blocks, causal split with unequal blocks."""
    default = A.default_config
    monkeypatch.setattr(A, "default_config", lambda kernel, *a, **k: default(kernel, *a, **k).replace(
        block_sizes=[32, 16], keys_rows=True) if kernel == "attn_bwd_dkdv" else default(kernel, *a, **k))
    C.reset_caches()
    try:
        run_and_check(*case, causal, torch.float32, device)
    finally:
        C.reset_caches()


@pytest.mark.parametrize("s_q,s_k", [(17, 130), (130, 17)])
def test_different_query_and_key_lengths(s_q, s_k, device):
    """SDPA's causal mask is top-left aligned (query i sees keys j <= i) also when S_q != S_k."""
    run_and_check(1, 2, 2, s_q, s_k, 64, True, torch.float32, device)
    run_and_check(1, 1, 1, s_q, s_k, 64, False, torch.float32, device, backward=False)


def test_head_dim_256(device):
    run_and_check(1, 1, 1, 17, 17, 256, True, torch.float32, device)


def test_custom_scale(device):
    run_and_check(1, 1, 1, 17, 17, 64, True, torch.float32, device, scale=0.3)


def test_matches_sdpa_and_contract(device):
    """make_inputs/impl/eager/reference agree on every SMALL_SHAPE (forward)."""
    for shape in A_spec.SMALL_SHAPES:
        inputs = A_spec.make_inputs(shape, torch.float32, device)
        out = A_spec.impl(*inputs)
        ref = A_spec.reference(*inputs)
        ref_e = A_spec.eager(*inputs)
        err = ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
        assert err < A_spec.TOLERANCE[torch.float32], (shape, err)
        assert ((ref_e - ref).abs().max() / ref.abs().max()).item() < 1e-4


def test_strided_inputs(device):
    """[B, S, H, D] storage viewed as [B, H, S, D] (the usual projection layout) runs without a copy."""
    b, s, h, d = 1, 17, 2, 64
    q, k, v = (torch.randn(b, s, h, d, device=device).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()
    out = A.attention(q, k, v, causal=True)
    torch.testing.assert_close(out, attention_ref(q, k, v, True).float(), atol=1e-5, rtol=1e-5)


def test_inference_path_matches_autograd_path(device):
    q, k, v, _ = make(1, 2, 1, 17, 17, 64, torch.float32, device)
    with torch.no_grad():
        a = A.attention(q, k, v, causal=True)
    b = A.attention(q.requires_grad_(), k, v, causal=True)
    assert b.requires_grad
    torch.testing.assert_close(a, b.detach(), atol=0, rtol=0)


def test_empty_inputs(device):
    q = torch.randn(1, 2, 3, 64, device=device)
    k = torch.randn(1, 2, 0, 64, device=device)
    out = A.attention(q, k, k)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, k))
    q0 = torch.randn(1, 2, 0, 64, device=device, requires_grad=True)
    k0 = torch.randn(1, 2, 5, 64, device=device, requires_grad=True)
    out = A.attention(q0, k0, k0)
    assert out.shape == (1, 2, 0, 64)
    out.sum().backward()
    assert k0.grad.shape == k0.shape and (k0.grad == 0).all()


# ---- integration ---------------------------------------------------------------------------------

def test_public_api():
    import helion_ops
    assert helion_ops.attention is A.attention or helion_ops.import_errors().get("attention") is None


def test_custom_ops_opcheck(device):
    q, k, v, do = make(1, 2, 1, 17, 17, 64, torch.float32, device)
    torch.library.opcheck(A.attention_fwd_op.custom, (q, k, v, True, 0.125),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    out, lse = A.attention_fwd_op(q, k, v, True, 0.125)
    torch.library.opcheck(A.attention_bwd_op.custom, (do, q, k, v, out, lse, True, 0.125),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph_forward_and_backward(device):
    q, k, v, do = make(1, 2, 1, 17, 17, 64, torch.float32, device)

    def f(q, k, v):
        return A.attention(q, k, v, causal=True) * 2

    c = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = c(*leaves)
    out.backward(do)
    leaves_e = [t.clone().requires_grad_() for t in (q, k, v)]
    out_e = f(*leaves_e)
    out_e.backward(do)
    torch.testing.assert_close(out, out_e)
    for a, e in zip(leaves, leaves_e):
        torch.testing.assert_close(a.grad, e.grad)


def test_work_counts():
    shape = (2, 16, 1024, 128, False)
    assert A_spec.work(shape, torch.bfloat16) == 4 * 2 * 16 * 1024 * 1024 * 128
    assert A_spec.work((2, 16, 1024, 128, True), torch.bfloat16) == A_spec.work(shape, torch.bfloat16) / 2
    assert A_spec.backward_work(shape, torch.bfloat16) == 2.5 * A_spec.work(shape, torch.bfloat16)
    for s in A_spec.SHAPES:
        b, h, seq, d, causal = s
        assert d == 128 and seq in (1024, 2048, 4096, 8192, 16384) and isinstance(causal, bool)
        assert 64 * 1024 <= b * h * seq <= 256 * 1024
    assert {s[2] for s in A_spec.SMALL_SHAPES} >= {1, 17, 130} and {s[3] for s in A_spec.SMALL_SHAPES} == {64, 128}
    assert set(A_spec.BASELINES) == {"cudnn", "flash"} and A_spec.GRAD_INPUTS == (0, 1, 2)


# ---- bad inputs ----------------------------------------------------------------------------------

def _qkv(device, d=64, dtype=torch.float32, h=2, h_kv=2):
    return (torch.randn(1, h, 5, d, dtype=dtype, device=device), torch.randn(1, h_kv, 5, d, dtype=dtype, device=device),
            torch.randn(1, h_kv, 5, d, dtype=dtype, device=device))


@pytest.mark.parametrize("bad,match", [
    (lambda q, k, v: A.attention(q, k, v, dropout_p=0.1), "dropout_p"),
    (lambda q, k, v: A.attention(q, k, v, attn_mask=torch.zeros(5, 5, requires_grad=True)), "attn_mask"),
    (lambda q, k, v: A.attention(*(torch.randn(1, 2, 5, 264),) * 3), "head dim 264"),
    (lambda q, k, v: A.attention(q, k[..., :32].contiguous(), v), "'k' has head dim 32"),
    (lambda q, k, v: A.attention(q, k, torch.randn(1, 2, 5, 128)), "'v'"),
    (lambda q, k, v: A.attention(q, k.half(), v), "'k' has dtype"),
    (lambda q, k, v: A.attention(q, k, v.double()), "'v' has dtype"),
    (lambda q, k, v: A.attention(q.int(), k, v), "'q' has dtype"),
    (lambda q, k, v: A.attention(q[0], k, v), "'q' must be 4-D"),
    (lambda q, k, v: A.attention(q, torch.randn(1, 3, 5, 64), torch.randn(1, 3, 5, 64)), "does not divide"),
    (lambda q, k, v: A.attention(q, torch.randn(2, 2, 5, 64), torch.randn(2, 2, 5, 64)), "batch"),
    (lambda q, k, v: A.attention(q, k, v[:, :, :3]), "'v' has shape"),
    (lambda q, k, v: A.attention(q.tolist(), k, v), "'q' must be a torch.Tensor"),
    (lambda q, k, v: A.attention(q, k, v, causal="yes"), "'causal'"),
    (lambda q, k, v: A.attention(q, k, v, scale=float("nan")), "'scale'"),
])
def test_bad_inputs(bad, match):
    q, k, v = _qkv("cpu")
    with pytest.raises(InputError, match=match):
        bad(q, k, v)


# ---- sm_90 code ----------------------------------------------------------------------------------

def test_sm90_compile_forward_and_backward():
    """Every kernel (fwd, preprocess, dK/dV, dQ; causal and not; D=128 and 256) with its default
    bf16 config builds for Hopper, uses wgmma, and fits the H100's 227 KiB of shared memory;
    dQ and dK/dV loads are software-pipelined (cp.async), except causal dK/dV at D=256."""
    from helion_ops.dsl.backends.triton import compile_specs_for_target

    specs, names = [], []
    for d in (128, 256):
        q = torch.empty(2, 4, 1024, d, dtype=torch.bfloat16)
        k = torch.empty(2, 2, 1024, d, dtype=torch.bfloat16)
        lse = torch.empty(2, 4, 1024)
        for causal in (False, True):
            qs, s = A.LOG2E / math.sqrt(d), 1 / math.sqrt(d)
            kernels = {"attn_fwd": (q, k, k, causal, qs), "attn_bwd_dkdv": (q, k, k, q, lse, lse, causal, qs, s),
                       "attn_bwd_dq": (q, k, k, q, lse, lse, causal, qs, s)}
            if not causal:
                kernels["attn_bwd_preprocess"] = (q, q)
            for name, args in kernels.items():
                cfg = A.config_for(name, args, q, k, causal)
                specs += A.KERNELS[name].bind(args).compile_specs(cfg)
                names.append((name, d, causal))
    built = compile_specs_for_target(specs, ("cuda", 90, 32))
    assert len(built) == len(names)
    for (name, d, causal), kb in zip(names, built):
        ptx = kb.asm["ptx"]
        assert kb.metadata["shared"] <= 232448, (name, d, causal, kb.metadata["shared"])
        if name != "attn_bwd_preprocess":
            assert "wgmma" in ptx, (name, d, causal)
        if name in ("attn_bwd_dq", "attn_bwd_dkdv") and not (name == "attn_bwd_dkdv" and causal and d == 256):
            assert "cp.async.cg.shared.global" in ptx, (name, d, causal)  # software-pipelined loads


@pytest.mark.parametrize("s,d,stages", [(1024, 128, 2), (2048, 64, 2), (1000, 128, 1), (1024, 256, 1)])
def test_causal_dkdv_pipelined_only_without_masks(s, d, stages):
    """Causal dK/dV is software-pipelined only where its diagonal-start loop has no partial query
    block (S a multiple of 128) and D <= 128: the H100 soak found wrong dK with masks (D=256, odd S)."""
    q = torch.empty(1, 2, s, d, dtype=torch.bfloat16)
    lse = torch.empty(1, 2, s)
    args = (q, q, q, q, lse, lse, True, 1.0, 1.0)
    cfg = A.config_for("attn_bwd_dkdv", args, q, q, True)
    assert cfg.get("num_stages") == stages and cfg.get("indexing") == "pointer"
    code = A.attn_bwd_dkdv.bind(args).to_triton_code(cfg)
    assert ("mask_" in code) == (s % 128 != 0)


@pytest.mark.parametrize("causal", [False, True])
def test_causal_query_blocks_launch_longest_first(causal):
    """Causal forward and dQ take the query blocks last-first (their work grows with the block index);
    dK/dV's key blocks already start with the longest; without the mask every program is equal and the
    knob does not exist."""
    q = torch.empty(2, 2, 1024, 128, dtype=torch.bfloat16)
    lse = torch.empty(2, 2, 1024)
    kernels = {"attn_fwd": (q, q, q, causal, 1.0), "attn_bwd_dq": (q, q, q, q, lse, lse, causal, 1.0, 1.0),
               "attn_bwd_dkdv": (q, q, q, q, lse, lse, causal, 1.0, 1.0)}
    for name, args in kernels.items():
        cfg = A.config_for(name, args, q, q, causal)
        want = [True] if causal and name != "attn_bwd_dkdv" else ([False] if causal else None)
        assert cfg.get("grid_reverses") == want, name
        code = A.KERNELS[name].bind(args).to_triton_code(cfg)
        assert (" - tl.program_id(0)" in code) == bool(want and want[0]), name


# ---- GPU -----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_bf16_gpu(causal, d, device):
    run_and_check(2, 4, 2, 1000, 1000, d, causal, torch.bfloat16, device)
    run_and_check(1, 2, 2, 4097, 4097, d, causal, torch.bfloat16, device, backward=d != 256)


@pytest.mark.gpu
@pytest.mark.parametrize("b,h,h_kv,s_q,s_k,d", [(2, 8, 2, 1024, 1024, 128), (1, 4, 1, 2048, 2048, 64),
                                              (3, 4, 4, 512, 512, 128), (1, 8, 8, 4096, 4096, 128)])
def test_causal_backward_pipelined_gpu(b, h, h_kv, s_q, s_k, d, device):
    # S a multiple of 128: the causal dK/dV loop runs with 2 stages (no masks); GQA included.
    run_and_check(b, h, h_kv, s_q, s_k, d, True, torch.float16, device)
    run_and_check(b, h, h_kv, s_q, s_k, d, True, torch.bfloat16, device)


@pytest.mark.gpu
@pytest.mark.parametrize("b,h,h_kv,s_q,s_k,d", [(6, 4, 1, 9, 340, 128), (1, 2, 1, 2045, 347, 256),
                                              (1, 32, 8, 1025, 512, 256), (7, 2, 2, 529, 529, 256)])
def test_causal_backward_gpu_soak_regressions(b, h, h_kv, s_q, s_k, d, device):
    # Shapes where the H100 soak found wrong dK in fp16 (a pipelined causal dK/dV loop).
    run_and_check(b, h, h_kv, s_q, s_k, d, True, torch.float16, device)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_fp16_gpu_against_tolerance(causal, device):
    shape = (2, 8, 1024, 128, causal)
    inputs = A_spec.make_inputs(shape, torch.float16, device)
    out = A_spec.impl(*inputs)
    ref = A_spec.reference(*inputs)
    assert ((out.float() - ref).abs().max() / ref.abs().max()).item() < A_spec.TOLERANCE[torch.float16]


def test_config_for_head_dim_without_a_table_entry(monkeypatch):
    """On sm90 the shipped table holds D=128 entries only: D=256 must get the analytic default (a D=128
    config needs twice the shared memory there: 458 KB, out of resources on the H100), D=128 its entry."""
    import json

    from helion_ops import pretuned
    monkeypatch.setattr(pretuned, "current_arch", lambda: "sm90")
    table = json.loads(pretuned.config_path("attention", "sm90").read_text())["entries"]
    assert {e["key"]["shape"][3] for e in table} == {128}
    for d in (128, 256):
        q = torch.empty(4, 16, 4096, d, dtype=torch.bfloat16, device="meta")
        args = (q, q, q, False, 0.1)
        cfg = A.config_for("attn_fwd", args, q, q, False)
        want = C.fit(A.attn_fwd.bind(args), A.default_config("attn_fwd", d, torch.bfloat16, False))
        if d == 256:
            assert list(cfg["block_sizes"]) == list(want["block_sizes"]) == [64, 64]
        else:
            entry = next(e for e in table if e["key"]["shape"] == [64, 4096, 4096, 128, 1])
            assert list(cfg["block_sizes"]) == entry["config"]["block_sizes"]
