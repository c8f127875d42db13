"""attention's forward and backward kernels (dQ, dK/dV) on the Gluon backend (sm_90): the op layer's policy picks it
for the calls the backend covers and Triton for the rest; a Gluon build that fails falls back to Triton, never to a
wrong result.

CPU: the policy on a mocked sm_90 CUDA device (supported and unsupported calls, the opt-out, table entries);
the fallback, run in the interpreter (which cannot run Gluon: the backend refuses, as on a GPU a misaligned
tensor would); the selected Gluon Configs at the bench's shapes build for GPUTarget("cuda", 90, 32) with
warp specialization and wgmma. GPU (-m gpu): forward and backward through the public API against the fp64
reference (flash-attention's rule) at S = 128, 130, 1000, 4096, 4097, S_q != S_k, GQA, causal and not, D 128,
and a check that the forward (and, on equal lengths in whole 128-blocks, dQ and dK/dV) really ran the
Gluon kernel. Calls the policy leaves to Triton (D 64, sequences under 128, causal with S_q != S_k; in the
backward, lengths unequal or not multiples of 128) are the ones no GPU run has checked on Gluon yet.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

import helion_ops
from helion_ops import _oplib as C
from helion_ops import pretuned
from helion_ops.dsl.runtime import record_launches
from helion_ops.errors import FallbackWarning, LaunchError
from helion_ops.ops import _attention_gluon as G
from helion_ops.ops import attention as A
from bench.specs import attention as A_spec

from test_attention import make, run_and_check  # tests/ops is on sys.path (no __init__.py)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh():
    C.reset_caches()
    yield
    C.reset_caches()


@pytest.fixture
def sm90(monkeypatch):
    """A mocked sm_90 CUDA device (every tensor counts as on one) with the shipped sm90 table."""
    monkeypatch.setattr(G, "_sm90", lambda device: True)
    monkeypatch.setattr(pretuned, "current_arch", lambda: "sm90")
    monkeypatch.delenv(G.ENV, raising=False)


def _args(b, h, h_kv, s_q, s_k, d, causal, dtype=torch.bfloat16):
    q = torch.empty(b, h, s_q, d, dtype=dtype, device="meta")
    k = torch.empty(b, h_kv, s_k, d, dtype=dtype, device="meta")
    return q, k, torch.empty_like(k), causal, A.LOG2E / math.sqrt(d)


def _bwd_args(args, dout=None):
    """The backward kernels' arguments (q, k, v, dout, lse, delta, causal, qk_scale, sm_scale) for forward ``args``."""
    q, k, v, causal, qk_scale = args
    lse = torch.empty(q.shape[:3], device="meta")
    return (q, k, v, q if dout is None else dout, lse, lse, causal, qk_scale, qk_scale / A.LOG2E)


def _is_gluon(cfg) -> bool:
    return cfg.get("backend", "triton") == "gluon"


def bench_shapes() -> list[tuple]:
    """The attention shapes the harness runs: the spec's and bench/session_shapes.json's."""
    session = json.loads((ROOT / "bench" / "session_shapes.json").read_text())["attention"]
    return sorted({tuple(s) for s in A_spec.SHAPES} | {tuple(s) for s in session})


# ---- CPU: the policy ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", bench_shapes(), ids=lambda s: "b{}h{}s{}d{}{}".format(*s[:4], "c" * s[4]))
def test_bench_shapes_select_gluon_over_the_table(sm90, shape):
    """At the harness's shapes (bf16, D=128) the forward gets the measured-best Gluon Config, even where the
    sm90 table holds a tuned Triton entry; that entry stays the Triton choice (the fallback)."""
    b, h, s, d, causal = shape
    args = _args(b, h, h, s, s, d, causal)
    cfg = A.config_for("attn_fwd", args)
    assert _is_gluon(cfg) and cfg["gluon_consumers"] == 2 and cfg["gluon_overlap"] is True
    assert list(cfg["block_sizes"]) == [128, 128]
    assert list(cfg.get("grid_reverses", [])) == ([True] if causal else [])
    tri = A.triton_config(args)
    assert not _is_gluon(tri)
    entry = pretuned.lookup("attention", "attn_fwd", torch.bfloat16, [b * h, s, s, d, 2 if causal else 1],
                            exact=(3, 4))
    assert entry is not None and list(tri["block_sizes"]) == list(entry["block_sizes"])
    assert tri["num_warps"] == entry["num_warps"]
    # the backward: dQ and dK/dV on Gluon (causal dK/dV from 8192 keys), each its Triton choice plus the backend's
    bwd = _bwd_args(args)
    dq = A.config_for("attn_bwd_dq", bwd)
    assert list(dq.get("grid_reverses", [])) == ([True] if causal else [])
    assert _is_gluon(A.config_for("attn_bwd_dkdv", bwd)) == (not causal or s >= G.CAUSAL_DKDV_MIN_KEYS)
    for kernel, blocks, extra in (("attn_bwd_dq", [128, 128], {"gluon_mma_ahead": True}),
                                  ("attn_bwd_dkdv", [128, 64], {"gluon_mma_ahead": True, "keys_rows": True})):
        cfg, tri_cfg = A.config_for(kernel, bwd), A.triton_config(bwd, kernel)
        if not _is_gluon(cfg):
            assert dict(cfg) == dict(tri_cfg)
            continue
        assert cfg["gluon_consumers"] == 2 and list(cfg["block_sizes"]) == blocks
        assert not _is_gluon(tri_cfg) and not tri_cfg.get("keys_rows", False)
        assert {n: v for n, v in dict(cfg).items() if n not in ("backend", "block_sizes", "gluon_consumers")} == \
            {n: v for n, v in {**dict(tri_cfg), **extra}.items() if n != "block_sizes"}


@pytest.mark.parametrize("case", [(1, 4, 1, 1000, 1000, 128, True), (1, 2, 2, 4097, 4097, 128, False),
                                  (2, 4, 2, 128, 128, 128, True), (1, 2, 1, 1000, 4096, 128, False),
                                  (1, 2, 2, 4096, 4096, 128, True)],
                         ids=lambda c: "b{}h{}kv{}q{}k{}d{}{}".format(*c[:6], "c" * c[6]))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_supported_calls_select_gluon(sm90, case, dtype):
    """Odd lengths from one full block up, S_q != S_k without causal, GQA, fp16 and bf16, D=128: Gluon with
    128x128 tiles; gluon_overlap only where the key length is a multiple of the block."""
    args = _args(*case, dtype=dtype)
    assert G.refusal(args) is None
    cfg = A.config_for("attn_fwd", args)
    assert _is_gluon(cfg) and cfg["gluon_consumers"] == 2 and cfg["gluon_overlap"] is (case[4] % 128 == 0)
    assert list(cfg["block_sizes"]) == [128, 128]


def _strided(d: int, pad: int) -> torch.Tensor:
    """k-like [1, 2, 256, d] view of rows of d + pad elements."""
    return torch.empty(1, 2, 256, d + pad, dtype=torch.bfloat16, device="meta")[..., :d]


@pytest.mark.parametrize("what,reason", [
    ("fp32", "dtype torch.float32"), ("d256", "head dim 256"), ("d96", "head dim 96"), ("d32", "head dim 32"),
    ("k_rows_not_16B", "'k' strides"), ("kv_broadcast_batch", "'k' strides (0,"),
    ("opt_out", "HELION_OPS_GLUON=0"), ("not_sm90", "not an sm_90"), ("q_2_31", "'q' has 2**31 elements"),
    ("d64", "head dim 64"), ("s_q_1", "shorter than 128"), ("s_k_17", "shorter than 128"),
    ("causal_s_q_ne_s_k", "causal with S_q != S_k"),
])
def test_unsupported_calls_stay_on_triton(sm90, monkeypatch, what, reason):
    d = {"d256": 256, "d96": 96, "d32": 32, "d64": 64}.get(what, 128)
    dtype = torch.float32 if what == "fp32" else torch.bfloat16
    s_q, s_k = {"s_q_1": (1, 4096), "s_k_17": (1000, 17), "causal_s_q_ne_s_k": (1000, 4096)}.get(what, (256, 256))
    args = _args(1, 2, 2, s_q, s_k, d, True, dtype)
    if what == "k_rows_not_16B":  # rows of 68 bf16 = 136 bytes: no TMA descriptor
        args = (args[0], _strided(d, 4), args[2], *args[3:])
    if what == "kv_broadcast_batch":  # a batch expanded from one (stride 0): no TMA descriptor either
        v = torch.empty(1, 2, 256, d, dtype=dtype, device="meta").expand(3, 2, 256, d)
        args = (torch.empty(3, 2, 256, d, dtype=dtype, device="meta"), v, v, *args[3:])
    if what == "q_2_31":
        args = (torch.empty(1, 2, 2**24, d, dtype=dtype, device="meta"), *args[1:])
    if what == "opt_out":
        monkeypatch.setenv(G.ENV, "0")
    if what == "not_sm90":
        monkeypatch.setattr(G, "_sm90", lambda device: False)
    assert reason in G.refusal(args)
    cfg = A.config_for("attn_fwd", args)
    assert not _is_gluon(cfg) and dict(cfg) == dict(A.triton_config(args))


@pytest.mark.parametrize("kernel", ["attn_bwd_dq", "attn_bwd_dkdv"])
@pytest.mark.parametrize("what,reason", [
    ("s_q_1000", "not a multiple of 128"), ("s_k_4097", "not a multiple of 128"),
    ("dout_rows_not_16B", "'dout' strides"), ("d64", "head dim 64"), ("opt_out", "HELION_OPS_GLUON=0"),
    ("causal_s_q_ne_s_k", "causal with S_q != S_k"), ("s_q_ne_s_k", "S_q != S_k"),
])
def test_backward_stays_on_triton_where_its_gluon_run_is_unchecked(sm90, monkeypatch, what, reason, kernel):
    """dQ and dK/dV take Gluon only where the forward could and the GPU tests checked them: equal lengths in
    whole 128-blocks (GQA or not)."""
    d = 64 if what == "d64" else 128
    s_q, s_k = {"s_q_1000": (1000, 1000), "s_k_4097": (4097, 4097), "causal_s_q_ne_s_k": (1024, 2048),
                "s_q_ne_s_k": (1024, 2048)}.get(what, (1024, 1024))
    args = _args(1, 4, 2, s_q, s_k, d, what == "causal_s_q_ne_s_k")
    dout = None
    if what == "dout_rows_not_16B":
        dout = torch.empty(1, 4, s_q, d + 4, dtype=torch.bfloat16, device="meta")[..., :d]
    if what == "opt_out":
        monkeypatch.setenv(G.ENV, "0")
    bwd = _bwd_args(args, dout)
    assert reason in G.refusal_bwd(bwd)
    cfg = A.config_for(kernel, bwd)
    assert not _is_gluon(cfg) and dict(cfg) == dict(A.triton_config(bwd, kernel))
    if what != "opt_out":
        assert _is_gluon(A.config_for(kernel, _bwd_args(_args(1, 4, 2, 1024, 1024, 128, False))))  # GQA is taken


@pytest.mark.parametrize("s", [1024, 4096, 8192, 16384])
def test_causal_dkdv_takes_gluon_from_8192_keys(sm90, s):
    """Causal dK/dV below CAUSAL_DKDV_MIN_KEYS keys stays on Triton (faster there on the H100); dQ does not."""
    bwd = _bwd_args(_args(1, 4, 4, s, s, 128, True))
    assert _is_gluon(A.config_for("attn_bwd_dkdv", bwd)) == (s >= 8192)
    assert _is_gluon(A.config_for("attn_bwd_dq", bwd))
    assert ("causal dK/dV under 8192 keys" in (G.refusal_bwd(bwd, "attn_bwd_dkdv") or "")) == (s < 8192)


def test_sm90_check_refuses_cpu_meta_and_the_interpreter():
    for dev in ("cpu", "meta"):
        assert not G._sm90(torch.device(dev))
    args = _args(1, 2, 2, 64, 64, 128, False)
    assert "not an sm_90" in G.refusal(args)
    assert not _is_gluon(A.config_for("attn_fwd", args))


def test_a_gluon_table_entry_serves_only_calls_gluon_takes(sm90, monkeypatch):
    """A table entry that is a Gluon Config (a tuner's find) is kept where Gluon runs; a call it does not
    cover gets the analytic Triton default instead."""
    args = _args(1, 2, 2, 256, 256, 128, False)
    entry = G.config(args).replace(gluon_consumers=1, gluon_overlap=False, block_sizes=[128, 64])
    monkeypatch.setattr(pretuned, "lookup", lambda *a, **k: entry)
    cfg = A.config_for("attn_fwd", args)
    assert _is_gluon(cfg) and cfg["gluon_consumers"] == 1 and list(cfg["block_sizes"]) == [128, 64]
    monkeypatch.setenv(G.ENV, "0")
    C.reset_caches()
    cfg = A.config_for("attn_fwd", args)
    want = C.fit(A.attn_fwd.bind(args), A.default_config("attn_fwd", 128, torch.bfloat16))
    assert not _is_gluon(cfg) and dict(cfg) == dict(want)


# ---- CPU: a failed Gluon build falls back to Triton ---------------------------------------------

def _check_numbers(q, k, v, causal, out):
    ref = A_spec.reference(q, k, v, causal)
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)


def _fwd_backends(rec) -> list:
    return [cfg.get("backend", "triton") for bound, cfg, _ in rec if bound.name == "attn_fwd"]


def test_refused_gluon_build_falls_back_to_triton_quietly(sm90, monkeypatch):
    """The interpreter cannot run Gluon: the backend refuses (NotSupported) at the first launch, as it would
    for a misaligned tensor on an H100; the call runs on Triton with no warning, and so do later calls."""
    torch.manual_seed(0)
    q, k, v, _ = make(1, 2, 1, 130, 130, 128, torch.float16, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        with record_launches() as rec:
            out = helion_ops.attention(q, k, v, True)
        assert _fwd_backends(rec) == ["gluon", "triton"]
        _check_numbers(q, k, v, True, out)
        with record_launches() as rec:
            out2 = helion_ops.attention(q, k, v, True)
        assert _fwd_backends(rec) == ["triton"]
    torch.testing.assert_close(out2, out, atol=0, rtol=0)


@pytest.mark.parametrize("strict", [False, True])
def test_failed_gluon_build_warns_or_raises(sm90, monkeypatch, strict):
    """Any other Gluon failure (a Triton compile error, out of resources, a launch error): one
    FallbackWarning naming it, then the Triton Config (the backward too); HELION_OPS_STRICT=1 raises."""
    from helion_ops.dsl.backends import gluon

    def boom(*a, **k):
        raise RuntimeError("PassManager::run failed (injected)")
    monkeypatch.setattr(gluon, "generate", boom)
    monkeypatch.setenv("HELION_OPS_STRICT", "1" if strict else "0")
    torch.manual_seed(1)
    q, k, v, do = make(1, 2, 2, 128, 128, 128, torch.float16, "cpu", seed=3)
    if strict:
        with pytest.raises(LaunchError, match="attn_fwd.*PassManager::run failed.*HELION_OPS_STRICT"):
            helion_ops.attention(q, k, v, False)
        return
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    with pytest.warns(FallbackWarning, match=r"attention: kernel 'attn_fwd' .*PassManager::run failed.*"
                                             r"running its triton Config instead"):
        out = helion_ops.attention(*leaves, False)
    _check_numbers(q, k, v, False, out)
    out.backward(do)
    ref_leaves = [t.float().requires_grad_() for t in (q, k, v)]
    A_spec.reference(*ref_leaves, False).backward(do.float())
    for a, r in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad.float(), r.grad, atol=5e-3, rtol=5e-3)


# ---- CPU: the selected Gluon kernels build for sm_90 --------------------------------------------

def test_selected_gluon_configs_build_for_sm90_at_bench_shapes(sm90):
    """What the policy selects at the harness's shapes (and D=64, GQA, an odd length; and the dQ kernel) is
    warp-specialized Gluon for sm_90: a TMA producer warp, two wgmma consumer warpgroups, within shared memory."""
    pytest.importorskip("triton.experimental.gluon.language.nvidia.hopper")
    from helion_ops.dsl.backends.triton import compile_specs_for_target

    cases = [(b, h, h, s, s, d, c) for b, h, s, d, c in bench_shapes()]
    cases += [(2, 8, 2, 1000, 1000, 128, True), (1, 4, 2, 130, 4097, 128, False)]
    specs = []
    for case in cases:
        args = _args(*case)
        cfg = A.config_for("attn_fwd", args)
        assert _is_gluon(cfg), case
        got = A.attn_fwd.bind(args).compile_specs(cfg)
        assert len(got) == 1
        specs += got
    for case in ((1, 4, 4, 1024, 1024, 128, False), (1, 4, 2, 8192, 8192, 128, True)):  # the backward's
        bwd = _bwd_args(_args(*case))
        for kernel in ("attn_bwd_dq", "attn_bwd_dkdv"):
            cfg = A.config_for(kernel, bwd)
            assert _is_gluon(cfg), case
            cases.append((kernel, case))
            specs += A.KERNELS[kernel].bind(bwd).compile_specs(cfg)
    built = compile_specs_for_target(specs, ("cuda", 90, 32))
    assert len(built) == len(cases)
    for case, kb in zip(cases, built):
        ttgir, ptx = kb.asm["ttgir"], kb.asm["ptx"]
        assert "ttg.warp_specialize" in ttgir and "ttng.warp_group_dot" in ttgir, case
        assert "wgmma.mma_async" in ptx and "cp.async.bulk.tensor" in ptx, case
        assert kb.metadata["num_warps"] == 12, case  # two consumer warpgroups + the producer's group
        assert kb.metadata["shared"] <= 227 * 1024, (case, kb.metadata["shared"])


# ---- GPU: through the public API -------------------------------------------------------------------

def _gluon_ran(rec, kernel: str = "attn_fwd") -> bool:
    """Every launch of ``kernel`` in ``rec`` ran a Gluon Config, and its compiled kernel is a Gluon kernel."""
    fwd = [(bound, cfg) for bound, cfg, _ in rec if bound.name == kernel]
    return bool(fwd) and all(_is_gluon(cfg) for _, cfg in fwd) and all(
        any(type(c.fn).__name__ == "GluonJITFunction" for c in bound._compiled.values()) for bound, _ in fwd)


def _on_sm90() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


GPU_CASES = ([(2, 4, 2, s, s, 128, torch.bfloat16) for s in (128, 1000, 4096, 4097)]
             + [(1, 4, 2, s, s, 128, torch.float16) for s in (130, 1000)]
             + [(2, 4, 4, 1024, 1024, 128, torch.bfloat16), (1, 2, 2, 384, 384, 128, torch.float16),
                (1, 2, 2, 128, 2048, 128, torch.bfloat16)]
             + [(2, 4, 1, 1000, 4097, 128, torch.bfloat16), (1, 2, 2, 4096, 130, 128, torch.bfloat16)])


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: "b{}h{}kv{}q{}k{}d{}{}".format(*c[:6], str(c[6])[6:]))
def test_forward_backward_through_gluon_gpu(case, causal, device):
    if not _on_sm90():
        pytest.skip("the Gluon backend runs on sm_90")
    *shape, dtype = case
    # the backward on this thread: the autograd engine's device thread would not see the recording
    with record_launches() as rec, torch.autograd.set_multithreading_enabled(False):
        run_and_check(*shape, causal, dtype, device)
    if causal and shape[3] != shape[4]:  # left to Triton (G.refusal): the numbers are checked all the same
        assert not any(_is_gluon(c) for b, c, _ in rec), [(b.name, dict(c)) for b, c, _ in rec]
    else:
        assert _gluon_ran(rec), [(b.name, dict(c)) for b, c, _ in rec]
        # dQ and dK/dV on Gluon where the lengths are equal whole 128-blocks (G.refusal_bwd)
        whole = shape[3] % 128 == 0 and shape[3] == shape[4]
        assert _gluon_ran(rec, "attn_bwd_dq") == whole, [(b.name, dict(c)) for b, c, _ in rec]
        dkdv = whole and (not causal or shape[4] >= G.CAUSAL_DKDV_MIN_KEYS)
        assert _gluon_ran(rec, "attn_bwd_dkdv") == dkdv, [(b.name, dict(c)) for b, c, _ in rec]


@pytest.mark.gpu
def test_transposed_views_and_the_opt_out_gpu(device, monkeypatch):
    """[B, S, H, D] storage seen as [B, H, S, D] (what transformers passes) runs on Gluon with the right
    numbers; HELION_OPS_GLUON=0 runs the same call on Triton with the same numbers."""
    if not _on_sm90():
        pytest.skip("the Gluon backend runs on sm_90")
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 1000, h, 128, device=device, dtype=torch.bfloat16).transpose(1, 2)
               for h in (8, 2, 2))
    ref = A_spec.reference(q, k, v, True)
    with record_launches() as rec:
        out = helion_ops.attention(q, k, v, True)
    assert _gluon_ran(rec)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    monkeypatch.setenv(G.ENV, "0")
    C.reset_caches()
    with record_launches() as rec:
        out_t = helion_ops.attention(q, k, v, True)
    assert [c.get("backend", "triton") for b, c, _ in rec if b.name == "attn_fwd"] == ["triton"]
    torch.testing.assert_close(out_t.float(), ref, atol=2e-2, rtol=2e-2)
