"""matmul op: interpreter numerics (fp32/fp16), transposed operands, epilogues, backward,
custom-op registration, bad inputs, and the sm_90 compile (wgmma + TMA in the PTX)."""
from __future__ import annotations

import contextlib

import pytest
import torch

from helion_ops import _oplib as C
import torch.nn.functional as F

from helion_ops.dsl.exc import InputError
from helion_ops.dsl import Config
from helion_ops.ops import matmul as M
from helion_ops.ops import _gemm as GE
from bench.specs import matmul as M_spec


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def ref_mm(a, b, bias=None, activation=None):
    z = a.double() @ b.double()
    if bias is not None:
        z = z + bias.double()
    return M._eager_act(z, activation)


@pytest.mark.parametrize("shape", M_spec.SMALL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_small_shapes_fp32(shape, device):
    a, b = M_spec.make_inputs(shape, torch.float32, device)
    out = M.matmul(a, b)
    assert out.shape == (shape[0], shape[1]) and out.dtype == torch.float32
    assert rel_err(out, M_spec.reference(a, b)) < 1e-4


@pytest.mark.parametrize("m", [1, 130])
def test_fp16(m, device):
    a, b = M_spec.make_inputs((m, 65, 33), torch.float16, device)
    out = M.matmul(a, b)
    assert out.dtype == torch.float16
    assert rel_err(out, M_spec.reference(a, b)) < M_spec.TOLERANCE[torch.float16]


@pytest.mark.parametrize("ta,tb", [(True, False), (False, True), (True, True)])
def test_transposed_inputs_no_copy(ta, tb, device):
    m, n, k = 17, 65, 33
    a = torch.randn(k, m, device=device).t() if ta else torch.randn(m, k, device=device)
    b = torch.randn(n, k, device=device).t() if tb else torch.randn(k, n, device=device)
    # the op passes the stored layout with a trans flag instead of copying
    assert GE.layout(a)[1] == ta and GE.layout(b)[1] == tb
    assert GE.layout(a)[0].data_ptr() == a.data_ptr()
    assert rel_err(M.matmul(a, b), ref_mm(a, b)) < 1e-4


def test_generic_strides(device):
    a = torch.randn(17, 66, device=device)[:, ::2]   # no unit stride
    b = torch.randn(33, 130, device=device)[:, ::2]
    assert rel_err(M.matmul(a, b), ref_mm(a, b)) < 1e-4


@pytest.mark.parametrize("trans", [False, True])
def test_padded_copies_unaligned_rows_only(trans, device):
    t = torch.randn(33, 17, device=device, dtype=torch.float16)  # rows of 34 bytes
    t = t.t() if trans else t
    p = GE.padded(t)
    assert torch.equal(p, t) and p.dtype == t.dtype
    stored, tr = GE.layout(p)
    assert tr == trans and GE.rows_aligned(stored) and stored.stride(0) * 2 % 128 == 0
    assert p.data_ptr() != t.data_ptr()
    aligned = torch.randn(33, 64, device=device, dtype=torch.float16)
    assert GE.padded(aligned) is aligned and GE.padded(aligned.t()).data_ptr() == aligned.data_ptr()
    assert GE.padded(torch.randn(40, 66, device=device)[:, ::2]).stride(1) == 1  # no unit stride: copied


@pytest.mark.parametrize("rows,cols", [(1, 1), (17, 17), (3, 1000), (2, 4097)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pad_rows_kernel(rows, cols, dtype, device):
    """The DSL copy into padded rows (contiguous operands) holds exactly the operand, rows 128-byte
    aligned; a non-contiguous operand takes torch's copy instead, with the same result."""
    calls = []
    real = GE._pad.__call__
    t = torch.randn(rows, cols, device=device).to(dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(GE._pad), "__call__", lambda self, *a: calls.append(a) or real(*a))
        p = GE.pad_rows(t)
        v = torch.randn(rows, cols + 3, device=device).to(dtype)[:, :cols]  # rows 3 elements apart
        q = GE.pad_rows(v)
    assert torch.equal(p, t) and p.stride(0) * p.element_size() % 128 == 0
    assert torch.equal(q, v) and q.stride(0) * q.element_size() % 128 == 0
    assert len(calls) == 1 + v.is_contiguous()


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_unaligned_operands_padded_when_worth_it(ta, tb, monkeypatch, device):
    """K=33 and N=65 (fp16: 66- and 130-byte rows): large problems pad both operands before the
    kernel (TMA and vector loads need 16-byte aligned rows); the results match, forward and backward."""
    monkeypatch.setattr(GE, "PAD_MIN_MNK", 0)
    monkeypatch.setattr(GE, "PAD_MIN_MN", 0)
    seen = []
    real = M._mm
    monkeypatch.setattr(M, "_mm", lambda *args: seen.append(args[:2]) or real(*args))
    m, n, k = 17, 65, 33
    a = torch.randn(k, m, device=device).t() if ta else torch.randn(m, k, device=device)
    b = torch.randn(n, k, device=device).t() if tb else torch.randn(k, n, device=device)
    a, b = a.half().requires_grad_(), b.half().requires_grad_()
    out = M.matmul(a, b)
    assert seen and all(GE.rows_aligned(x) for x in seen[0])
    assert rel_err(out, ref_mm(a, b)) < 2e-3
    g = torch.randn_like(out)
    out.backward(g)
    ad, bd = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    (ad @ bd).backward(g.double())
    assert rel_err(a.grad, ad.grad) < 2e-3 and rel_err(b.grad, bd.grad) < 2e-3
    assert len(seen) == 3 and all(GE.rows_aligned(x) for args in seen[1:] for x in args)  # dA, dB


@pytest.mark.parametrize("tb", [False, True])
def test_padded_gemm_replays(tb, monkeypatch, device):
    """A GEMM that pads its operands' rows (K = 513 in fp16: 1026-byte rows) replays from its second call on
    (no op entered), with the same result."""
    calls = []
    real = C.Op.__call__
    monkeypatch.setattr(C.Op, "__call__", lambda self, *args: (calls.append(self.name), real(self, *args))[1])
    a = torch.randn(513, 513, device=device).half()
    b = torch.randn(513, 513, device=device).half()
    b = b.t() if tb else b
    with torch.no_grad():
        first = M.matmul(a, b)
        entered = len(calls)
        again = M.matmul(a, b)
    assert entered and len(calls) == entered and torch.equal(again, first)
    assert rel_err(first, ref_mm(a, b)) < 2e-3


@pytest.mark.parametrize("activation", M.ACTIVATIONS)
def test_bias_and_activation(activation, device):
    a = torch.randn(17, 33, device=device)
    b = torch.randn(33, 65, device=device)
    bias = torch.randn(65, device=device)
    out = M.matmul(a, b, bias, activation)
    assert rel_err(out, ref_mm(a, b, bias, activation)) < 1e-4
    out = M.matmul(a, b, activation=activation)
    assert rel_err(out, ref_mm(a, b, None, activation)) < 1e-4


def test_fp16_with_fp32_bias_and_gelu(device):
    a = torch.randn(17, 33, device=device, dtype=torch.float16)
    b = torch.randn(33, 65, device=device, dtype=torch.float16)
    bias = torch.randn(65, device=device)
    out = M.matmul(a, b, bias, "gelu")
    assert out.dtype == torch.float16
    assert rel_err(out, ref_mm(a, b, bias, "gelu")) < 2e-3


def test_epilogue_resolved_at_compile_time():
    a, b = torch.randn(17, 33), torch.randn(33, 65)
    bound = M.matmul_kernel.bind((a, b, None, "silu", False, False))
    code = bound.to_triton_code(bound.config_space.default())
    assert "tl.sigmoid" in code and "tl.erf" not in code and "bias" not in code
    bound = M.matmul_kernel.bind((a, b, torch.randn(65), None, False, False))
    code = bound.to_triton_code(bound.config_space.default())
    assert "tl.sigmoid" not in code and "bias" in code


def test_leading_dims(device):
    a = torch.randn(2, 3, 33, device=device)
    b = torch.randn(33, 65, device=device)
    out = M.matmul(a, b)
    assert out.shape == (2, 3, 65)
    assert rel_err(out, ref_mm(a.reshape(6, 33), b).reshape(2, 3, 65)) < 1e-4


def test_zero_k(device):
    a, b, bias = torch.randn(5, 0, device=device), torch.randn(0, 7, device=device), torch.randn(7, device=device)
    torch.testing.assert_close(M.matmul(a, b, bias, "relu"), torch.relu(bias).expand(5, 7))


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "silu"])
def test_backward(activation, device):
    a = torch.randn(17, 33, device=device, requires_grad=True)
    b = torch.randn(33, 65, device=device, requires_grad=True)
    bias = torch.randn(65, device=device, requires_grad=True)
    out = M.matmul(a, b, bias, activation)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (a, b, bias), g)
    a64, b64, bias64 = (t.detach().double().requires_grad_() for t in (a, b, bias))
    want = torch.autograd.grad(ref_mm(a64, b64, bias64, activation), (a64, b64, bias64), g.double())
    for x, y in zip(got, want):
        assert rel_err(x, y) < 1e-4


def test_backward_transposed_and_no_bias(device):
    w = torch.randn(65, 33, device=device, requires_grad=True)   # used as w.t(): [33, 65]
    a = torch.randn(130, 33, device=device, requires_grad=True)
    out = M.matmul(a, w.t())
    g = torch.randn_like(out)
    ga, gw = torch.autograd.grad(out, (a, w), g)
    torch.testing.assert_close(ga, g @ w.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, (a.detach().t() @ g).t(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["row", "col", "strided"])
def test_layout_of_a_transposed_operand(layout):
    """``_layout(t, transposed=True)`` describes ``t.t()``: the passed tensor (transposed back when
    flagged) is that operand, with unit stride in its last dim where the storage allows."""
    base = torch.randn(12, 20)
    t = {"row": base[:, :10], "col": base.t()[:10], "strided": base[::2, ::2]}[layout]
    passed, trans = GE.layout(t, transposed=True)
    assert torch.equal(passed.t() if trans else passed, t.t())
    if layout != "strided":
        assert passed.stride(1) == 1


def test_backward_transposed_a_and_strided_b(device):
    """Backward's GEMMs take the forward's operands with a transposed flag (no views): a stored
    transposed and b with no unit stride exercise both branches of ``_layout``."""
    a_t = torch.randn(33, 17, device=device, requires_grad=True)      # a = a_t.t(): [17, 33]
    b_big = torch.randn(66, 130, device=device, requires_grad=True)
    a, b = a_t.t(), b_big[::2, ::2]                                    # b: [33, 65], strides (260, 2)
    out = M.matmul(a, b)
    g = torch.randn_like(out)
    ga, gb = torch.autograd.grad(out, (a_t, b_big), g)
    a64, b64 = a.detach().double(), b.detach().double()
    assert rel_err(ga, (g.double() @ b64.t()).t()) < 1e-4
    assert rel_err(gb[::2, ::2], a64.t() @ g.double()) < 1e-4
    assert gb[1::2].abs().max() == 0


def test_custom_op_registration():
    a, b, bias = torch.randn(17, 33), torch.randn(33, 65), torch.randn(65)
    torch.library.opcheck(M.matmul_op.custom, (a, b, bias, "relu"),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_torch_compile_no_graph_break():
    a, b = torch.randn(17, 33), torch.randn(33, 65)
    f = torch.compile(lambda x, y: M.matmul(x, y, activation="relu") * 2, fullgraph=True, backend="eager")
    torch.testing.assert_close(f(a, b), torch.relu(a @ b) * 2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad,match", [
    (lambda: M.matmul(torch.randn(4, 5), torch.randn(6, 7)), "K mismatch"),
    (lambda: M.matmul(torch.randn(4, 5), torch.randn(5, 7, dtype=torch.float16)), "'b' has dtype"),
    (lambda: M.matmul(torch.randn(4, 5, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)), "'a' has dtype"),
    (lambda: M.matmul(torch.randn(4, 5), torch.randn(5, 7), torch.randn(6)), "'bias' must have shape"),
    (lambda: M.matmul(torch.randn(4, 5), torch.randn(5, 7), activation="tanh"), "'activation'"),
    (lambda: M.matmul(torch.randn(5), torch.randn(5, 7)), "'a' must have at least 2 dims"),
    (lambda: M.matmul(torch.randn(4, 5), torch.randn(2, 5, 7)), "'b' must be 2-D"),
])
def test_bad_inputs(bad, match):
    with pytest.raises(InputError, match=match):
        bad()


def test_contract():
    for name in ("NAME", "METRIC", "SHAPES", "SMALL_SHAPES", "make_inputs", "impl", "eager", "BASELINES",
                 "reference", "work", "TOLERANCE", "GRAD_INPUTS", "backward_work"):
        assert hasattr(M_spec, name), name
    assert M.NAME == "matmul" and M_spec.METRIC == "TFLOP/s" and M_spec.GRAD_INPUTS == (0, 1)
    assert 15 <= len(M_spec.SHAPES) <= 25 and all(len(s) == 3 for s in M_spec.SHAPES)
    assert M_spec.work((2, 3, 5), torch.bfloat16) == 60 and M_spec.backward_work((2, 3, 5), torch.bfloat16) == 120
    assert "cublas" in M_spec.BASELINES


def test_chooser_configs_validate():
    """Every benchmark shape's chosen config fits the kernel's ConfigSpace (bf16, meta tensors)."""
    for m, n, k in M_spec.SHAPES:
        a = torch.empty(m, k, dtype=torch.bfloat16, device="meta")
        b = torch.empty(k, n, dtype=torch.bfloat16, device="meta")
        cfg = M.config_for((a, b, None, None, False, False))
        assert cfg.get("block_sizes")[0] * cfg.get("block_sizes")[1] <= 128 * 256
        if cfg.get("block_sizes")[:2] == [128, 256]:
            assert cfg["num_stages"] <= 3  # 4 stages of 128x256x64 overflow H100 shared memory


def test_config_for_uses_the_layouts_own_table_entry(monkeypatch):
    """On sm90 the shipped table answers per operand layout: backward's dA (B transposed) at 1024^3
    gets its own NT entry, not the forward's NN one (0.67x cuBLAS there against 0.93x)."""
    import json

    from helion_ops import pretuned
    monkeypatch.setattr(pretuned, "current_arch", lambda: "sm90")
    table = json.loads(pretuned.config_path("matmul", "sm90").read_text())["entries"]
    want = {e["key"].get("variant"): e["config"] for e in table if e["key"]["shape"] == [1024, 1024, 1024]}
    assert {None, "NT", "TN"} <= set(want) and len({str(want[v]) for v in (None, "NT", "TN")}) == 3
    t = lambda *s: torch.empty(*s, dtype=torch.bfloat16, device="meta")  # noqa: E731
    for variant, args in [(None, (t(1024, 1024), t(1024, 1024), None, None, False, False)),
                          ("NT", (t(1024, 1024), t(1024, 1024), None, None, False, True)),
                          ("TN", (t(1024, 1024), t(1024, 1024), None, None, True, False))]:
        cfg = M.config_for(args)
        assert list(cfg["block_sizes"]) == want[variant]["block_sizes"], variant
        assert cfg["num_warps"] == want[variant]["num_warps"], variant


# ---- sm_90 code generation (no GPU needed) ----------------------------------------------------

def _ptx(bound, cfg):
    kernels = bound.compile_for_target(cfg, ("cuda", 90, 32))
    assert len(kernels) == 1
    return kernels[0]


@pytest.mark.parametrize("trans_a", [False, True])
def test_sm90_tma_persistent_wgmma(trans_a):
    m = n = k = 4096
    a = torch.empty((k, m) if trans_a else (m, k), dtype=torch.bfloat16, device="meta")
    b = torch.empty(k, n, dtype=torch.bfloat16, device="meta")
    bias = torch.empty(n, dtype=torch.bfloat16, device="meta")
    bound = M.matmul_kernel.bind((a, b, bias, "relu", trans_a, False))
    cfg = C.fit(bound, M.choose_config(m, n, k, torch.bfloat16))
    assert cfg["pid_type"] == "persistent_interleaved" and cfg["indexing"] == "tensor_descriptor"
    assert cfg.get("block_sizes") == [128, 256, 64] and cfg["num_stages"] == 3
    code = bound.to_triton_code(cfg)
    assert "tl.make_tensor_descriptor" in code and "for virtual_pid in tl.range" in code
    ck = _ptx(bound, cfg)
    ptx = ck.asm["ptx"]
    assert "wgmma" in ptx
    assert "cp.async.bulk.tensor" in ptx
    md = ck.metadata
    shared = md["shared"] if isinstance(md, dict) else md.shared
    assert shared <= 232448  # H100's per-block shared memory limit


def test_sm90_warp_specialized_and_small_m():
    b = torch.empty(4096, 4096, dtype=torch.bfloat16, device="meta")
    a = torch.empty(4096, 4096, dtype=torch.bfloat16, device="meta")
    bound = M.matmul_kernel.bind((a, b, None, None, False, False))
    # 4 warps: on sm_90 Triton (3.6, 3.7) only warp-specializes then; with 8 it ignores the flag.
    cfg = C.fit(bound, M.choose_config(4096, 4096, 4096, torch.bfloat16).replace(range_warp_specializes=[True],
                                                                                  num_warps=4))
    ck = _ptx(bound, cfg)
    if bound.config_space.spec.warp_specialize:
        assert "warp_specialize=True" in bound.to_triton_code(cfg)
        assert "ttg.warp_specialize" in ck.asm["ttgir"]  # the knob reaches Triton's partitioner
    assert "wgmma" in ck.asm["ptx"]
    a16 = torch.empty(16, 4096, dtype=torch.bfloat16, device="meta")
    bound = M.matmul_kernel.bind((a16, b, None, None, False, False))
    cfg = C.fit(bound, M.choose_config(16, 4096, 4096, torch.bfloat16))
    assert cfg.get("block_sizes")[0] == 16
    assert "cp.async.bulk.tensor" in _ptx(bound, cfg).asm["ptx"]


# ---- GPU ---------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 4096, 4096), (130, 65, 33), (1000, 1000, 1000), (4097, 4097, 4097),
                                   (2048, 2048, 2048)])
def test_gpu_bf16(shape):
    a, b = M_spec.make_inputs(shape, torch.bfloat16, "cuda")
    assert rel_err(M_spec.impl(a, b), M_spec.reference(a, b)) < M_spec.TOLERANCE[torch.bfloat16]


@pytest.mark.gpu
def test_gpu_bf16_epilogue_backward():
    a = torch.randn(257, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(512, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    bias = torch.randn(512, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    out = M.matmul(a, w.t(), bias, "silu")
    ref = F.silu(a.float() @ w.float().t() + bias.float())
    assert rel_err(out, ref) < 2e-2
    g = torch.randn_like(out)
    ga, gw, gb = torch.autograd.grad(out, (a, w, bias), g)
    a32, w32, b32 = (t.detach().float().requires_grad_() for t in (a, w, bias))
    ra, rw, rb = torch.autograd.grad(F.silu(a32 @ w32.t() + b32), (a32, w32, b32), g.float())
    for x, y in ((ga, ra), (gw, rw), (gb, rb)):
        assert rel_err(x, y) < 3e-2


@pytest.mark.gpu
def test_gpu_fp32_is_ieee():
    a, b = M_spec.make_inputs((256, 256, 1024), torch.float32, "cuda")
    ref = (a.double() @ b.double()).float()
    assert rel_err(M.matmul(a, b), ref) < 1e-5


def test_double_backward_through_eager_training_path(device):
    # Eager training skips the custom op (autograd.Function), but a create_graph=True backward must
    # stay differentiable: grad-of-grad matches torch.
    a0, b0 = torch.randn(5, 7, device=device), torch.randn(7, 3, device=device)
    grads = []
    for fn in (M.matmul, torch.matmul):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        (ga,) = torch.autograd.grad((fn(a, b) ** 2).sum(), a, create_graph=True)
        grads.append(torch.autograd.grad(ga.sum(), b)[0])
    assert ((grads[0] - grads[1]).abs().max() / grads[1].abs().max()).item() < 1e-5


# ---- split-K (small M*N, large K) and its GEMV path (M <= 16) -----------------------------------

def _launched(fn):
    from helion_ops.dsl import runtime
    with runtime.record_launches() as rec:
        out = fn()
    return out, [r[0].kernel.name for r in rec]


@pytest.mark.parametrize("m,n,k,dtype,bias,act", [
    (1, 17, 4097, torch.float32, False, None), (16, 40, 4097, torch.float16, True, "gelu"),
    (17, 33, 4097, torch.float32, True, "silu"), (1, 1000, 4097, torch.float16, False, "relu")])
def test_split_k_heuristic_path(m, n, k, dtype, bias, act, device):
    """Narrow outputs with K >= 4096 take split-K (partials + epilogue kernel) and match an fp64 reference."""
    assert M.split_factor(m, n, k, dtype) > 1
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = (torch.randn(k, n, device=device) / k ** 0.5).to(dtype)
    bv = torch.randn(n, dtype=dtype, device=device) if bias else None
    out, names = _launched(lambda: M.matmul(a, b, bv, act))
    assert names == ["matmul_split_k_kernel", "matmul_split_k_reduce_kernel"]
    assert out.dtype == dtype and out.shape == (m, n)
    assert rel_err(out, ref_mm(a, b, bv, act)) < (1e-5 if dtype == torch.float32 else 2e-3)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("split,bk", [(2, 64), (4, 512), (64, 16)])  # 4 x 512 on K=4097: 3 uneven slices
def test_split_k_pinned_configs_layouts(ta, tb, split, bk, device):
    m, n, k = 17, 24, 4097
    a = torch.randn((k, m) if ta else (m, k), device=device)
    b = torch.randn((n, k) if tb else (k, n), device=device) / k ** 0.5
    av, bvw = (a.t() if ta else a), (b.t() if tb else b)
    cfg = Config(block_sizes=[16, 16, bk], split_k=split)
    with C.use_config("matmul_split_k_kernel", cfg):
        out, names = _launched(lambda: M.matmul(av, bvw))
    assert names[0] == "matmul_split_k_kernel"
    assert rel_err(out, ref_mm(av, bvw)) < 1e-5


def test_split_k_backward_db_reduces_over_rows(device):
    """dB = A^T @ dZ reduces over M rows: with M = 4100 and N, K small it is a split-K problem."""
    a = torch.randn(4100, 16, device=device, requires_grad=True)
    b = torch.randn(16, 17, device=device, requires_grad=True)
    assert M.split_factor(16, 17, 4100, torch.float32) > 1
    g = torch.randn(4100, 17, device=device)
    out = M.matmul(a, b)
    _, names = _launched(lambda: out.backward(g))
    assert "matmul_split_k_kernel" in names
    assert rel_err(b.grad, a.detach().double().T @ g.double()) < 1e-5
    assert rel_err(a.grad, g.double() @ b.detach().double().T) < 1e-5


def test_split_k_heuristic_is_conservative():
    """No benchmark shape, none of their backward problems and no small shape takes split-K by heuristic
    (their table entries, or the sweep, decide); a decode GEMV with a narrow output does."""
    import json

    from bench.matmul_sweep import problems
    from helion_ops import pretuned
    table = [tuple(e["key"]["shape"]) for e in json.loads(pretuned.config_path("matmul", "sm90").read_text())["entries"]]
    for m, n, k, _, _ in problems(M_spec.SHAPES + M_spec.SMALL_SHAPES + table, ["fwd", "bwd"]):
        assert M.split_factor(m, n, k, torch.bfloat16, 132) == 1, (m, n, k)
    assert M.split_factor(1, 1024, 8192, torch.bfloat16, 132) == 8
    assert M.split_factor(16, 2048, 14336, torch.bfloat16, 132) == 8  # 32 tiles x 8: two waves


def test_route_keeps_table_shapes_and_compares_measured_times(monkeypatch, tmp_path):
    """Every shape of the shipped sm90 table keeps matmul_kernel; a shape where the table times both
    kernels runs the faster one."""
    import json

    from helion_ops import pretuned
    monkeypatch.setattr(pretuned, "current_arch", lambda: "sm90")
    t = lambda *s: torch.empty(*s, dtype=torch.bfloat16, device="meta")  # noqa: E731
    for e in json.loads(pretuned.config_path("matmul", "sm90").read_text())["entries"]:
        m, n, k = e["key"]["shape"]
        ta, tb = {None: (False, False), "NT": (False, True), "TN": (True, False)}[e["key"].get("variant")]
        args = (t(*((k, m) if ta else (m, k))), t(*((n, k) if tb else (k, n))), None, None, ta, tb)
        assert M._route(args, lambda: (args, (args[0], args[1], ta, tb))) == 0, e["key"]
    C.reset_caches()
    sk = {"block_sizes": [16, 64, 256], "split_k": 4}
    entries = [{"kernel": "matmul_kernel", "key": {"dtype": "bf16", "shape": [1, 1024, 8192]},
                "config": {"block_sizes": [16, 64, 256]}, "ms": 0.02},
               {"kernel": "matmul_split_k_kernel", "key": {"dtype": "bf16", "shape": [1, 1024, 8192]},
                "config": sk, "ms": 0.01}]
    pretuned.write_entries("matmul", "sm90", entries, root=tmp_path)
    monkeypatch.setattr(pretuned, "CONFIG_ROOT", tmp_path)
    args = (t(1, 8192), t(8192, 1024), None, None, False, False)
    assert M._route(args, lambda: (args, (args[0], args[1], False, False))) == 1
    assert M._sk.config_for(args[0], args[1], False, False)["split_k"] == 4
    args2 = (t(1, 8192), t(8192, 4096), None, None, False, False)  # not in the table: heuristic (64 tiles)
    assert M._route(args2, lambda: (args2, (args2[0], args2[1], False, False))) == 0
    C.reset_caches()


@pytest.mark.parametrize("m,n,k", [(1, 8192, 8192), (16, 4096, 14336), (128, 4096, 14336)])
def test_sm90_split_k_compiles(m, n, k):
    a = torch.empty(m, k, dtype=torch.bfloat16, device="meta")
    b = torch.empty(k, n, dtype=torch.bfloat16, device="meta")
    bound = M.matmul_split_k_kernel.bind((a, b, False, False))
    cfg = C.fit(bound, M.choose_split_k_config(m, n, k, torch.bfloat16, split=4))
    assert cfg["split_k"] == 4 and cfg["indexing"] == "tensor_descriptor"
    ptx = _ptx(bound, cfg).asm["ptx"]
    assert "cp.async.bulk.tensor" in ptx and ("wgmma" in ptx or "mma.sync" in ptx)
    parts = torch.empty(4, m, n, dtype=torch.float32, device="meta")
    out = torch.empty(m, n, dtype=torch.bfloat16, device="meta")
    bias = torch.empty(n, dtype=torch.bfloat16, device="meta")
    red = M.matmul_split_k_reduce_kernel.bind((parts, bias, "gelu", out))
    _ptx(red, C.fit(red, M.reduce_config(4, m, n)))


@pytest.mark.gpu
@pytest.mark.parametrize("shape,split", [((1, 1024, 8192), None), ((16, 8192, 8192), 4), ((1024, 1024, 1024), 2)])
def test_gpu_split_k_bf16(shape, split):
    """Split-K on the GPU: by the heuristic (decode, narrow output) or pinned (shapes the sweep tries)."""
    a, b = M_spec.make_inputs(shape, torch.bfloat16, "cuda")
    pin = None if split is None else M.choose_split_k_config(*shape, torch.bfloat16, split=split)
    with C.use_config("matmul_split_k_kernel", pin) if pin is not None else contextlib.nullcontext():
        out, names = _launched(lambda: M_spec.impl(a, b))
    assert names == ["matmul_split_k_kernel", "matmul_split_k_reduce_kernel"]
    assert rel_err(out, M_spec.reference(a, b)) < M_spec.TOLERANCE[torch.bfloat16]
