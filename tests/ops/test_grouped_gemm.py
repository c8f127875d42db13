"""grouped_gemm op: interpreter numerics with empty and unequal groups, transposed weights,
backward (dx, dw), custom-op registration, bad inputs, and the sm_90 compile."""
from __future__ import annotations

import pytest
import torch

from helion_ops import _oplib as C

from helion_ops.dsl.exc import InputError
from helion_ops.ops import grouped_gemm as GG
from bench.specs import grouped_gemm as GG_spec


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def inputs(sizes, n=65, k=33, dtype=torch.float32, device="cpu"):
    x = torch.randn(sum(sizes), k, dtype=dtype, device=device)
    w = torch.randn(len(sizes), k, n, dtype=dtype, device=device)
    offsets = torch.tensor(sizes).cumsum(0).to(device=device, dtype=torch.int32)
    return x, w, offsets


def ref_gg(x, w, offsets):
    return GG_spec._loop(x.double(), w.double(), offsets)


@pytest.mark.parametrize("shape", GG_spec.SMALL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_small_shapes_fp32(shape, device):
    x, w, offsets = GG_spec.make_inputs(shape, torch.float32, device)
    sizes = GG_spec.group_sizes(shape[0], shape[1])
    assert 0 in sizes and len(set(sizes)) > 2  # an empty group, unequal groups
    out = GG.grouped_gemm(x, w, offsets)
    assert out.shape == (shape[1], shape[2])
    assert rel_err(out, GG_spec.reference(x, w, offsets)) < 1e-4


@pytest.mark.parametrize("sizes", [[0, 17, 0, 1], [130], [1, 0, 0, 129, 0]], ids=str)
def test_group_layouts(sizes, device):
    """Leading, trailing and consecutive empty groups; a single group; 1-row groups."""
    x, w, offsets = inputs(sizes, device=device)
    assert rel_err(GG.grouped_gemm(x, w, offsets), ref_gg(x, w, offsets)) < 1e-4


def test_fp16_and_int64_offsets(device):
    x, w, offsets = inputs([20, 0, 41, 9], dtype=torch.float16, device=device)
    out = GG.grouped_gemm(x, w, offsets.long())
    assert out.dtype == torch.float16
    assert rel_err(out, ref_gg(x, w, offsets)) < 2e-3


def test_transposed_weights_no_copy(device):
    x, _, offsets = inputs([9, 0, 8])
    w_nk = torch.randn(3, 65, 33, device=device)     # stored [G, N, K]
    w = w_nk.transpose(1, 2)                          # logical [G, K, N]
    assert rel_err(GG.grouped_gemm(x, w, offsets), ref_gg(x, w, offsets)) < 1e-4


def test_backward(device):
    x, w, offsets = inputs([10, 31, 0, 21], device=device)
    x.requires_grad_(True)
    w.requires_grad_(True)
    out = GG.grouped_gemm(x, w, offsets)
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, w), g)
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    rx, rw = torch.autograd.grad(GG_spec._loop(x64, w64, offsets), (x64, w64), g.double())
    assert rel_err(gx, rx) < 1e-4
    assert rel_err(gw, rw) < 1e-4
    assert gw[2].abs().max() == 0  # empty group: zero weight gradient


def test_dw_kernel_block_sizes(device):
    """The dw kernel's row loop has device-side bounds; its block size is a registered one."""
    x, _, offsets = inputs([40, 0, 90])
    dy = torch.randn(130, 65)
    bound = GG.grouped_gemm_dw_kernel.bind((x, dy, offsets))
    cfg = bound.config_space.normalize(GG.Config(block_sizes=[32, 16, 64]))
    dw = bound.run(cfg, x, dy, offsets)
    ref = torch.stack([x[:40].T @ dy[:40], torch.zeros(33, 65), x[40:].T @ dy[40:]])
    assert rel_err(dw, ref) < 1e-4


def test_dw_grid_keeps_a_group_together():
    """The dw default orders its grid group-slowest with the (K, N) tiles L2-grouped inside a group
    (the swizzle's pair is pid_1/pid_2, the group id the remainder), so programs in flight share the
    group's x and dy blocks; results match the fp64 reference under it."""
    x, _, offsets = inputs([40, 0, 90])
    dy = torch.randn(130, 65)
    bound = GG.grouped_gemm_dw_kernel.bind((x, dy, offsets))
    cfg = C.fit(bound, GG.choose_dw_config(3, 130, 65, 33, torch.float16).replace(block_sizes=[16, 16, 16]))
    code = bound.to_triton_code(cfg)
    assert "pid_1 = first_pid +" in code and "pid_0 = rem %" in code
    dw = bound.run(cfg, x, dy, offsets)
    ref = torch.stack([x[:40].double().T @ dy[:40].double(), torch.zeros(33, 65, dtype=torch.float64),
                       x[40:].double().T @ dy[40:].double()])
    assert rel_err(dw, ref) < 1e-4


def test_one_launch_no_group_loop():
    x, w, offsets = inputs([10, 31, 0, 21])
    bound = GG.grouped_gemm_kernel.bind((x, w, offsets, False))
    code = bound.to_triton_code(bound.config)
    assert code.count("@triton.jit") == 1
    assert "tl.cumsum" in code and "tl.load(offsets" in code  # offsets read on device


def test_custom_op_registration():
    x, w, offsets = inputs([10, 31, 0, 21])
    torch.library.opcheck(GG.grouped_gemm_op.custom, (x, w, offsets),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    torch.library.opcheck(GG.grouped_gemm_bwd_op.custom, (torch.randn(62, 65), x, w, offsets, True, True),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_no_graph_break():
    x, w, offsets = inputs([9, 0, 8])
    f = torch.compile(lambda a, b, o: GG.grouped_gemm(a, b, o, validate=False) + 1, fullgraph=True,
                      backend="eager")
    assert rel_err(f(x, w, offsets), ref_gg(x, w, offsets) + 1) < 1e-4


@pytest.mark.parametrize("bad,match", [
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(2, 9, 5), torch.tensor([3, 7], dtype=torch.int32)),
     "K mismatch"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(2, 8, 5), torch.tensor([5, 3], dtype=torch.int32)),
     "non-decreasing"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(2, 8, 5), torch.tensor([3, 9], dtype=torch.int32)),
     "must end at M_total"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(2, 8, 5), torch.tensor([3, 6], dtype=torch.int32)),
     "must end at M_total"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(2, 8, 5), torch.tensor([-1, 7], dtype=torch.int32)),
     "non-decreasing and >= 0"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(2, 8, 5, dtype=torch.float16),
                             torch.tensor([3, 7], dtype=torch.int32)), "'w' has dtype"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(2, 8, 5), torch.tensor([3., 7.])), "'offsets' must be int32"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(3, 8, 5), torch.tensor([3, 7], dtype=torch.int32)),
     "'offsets' has 2 entries"),
    (lambda: GG.grouped_gemm(torch.randn(7, 8), torch.randn(8, 5), torch.tensor([7], dtype=torch.int32)), "'w' must be 3-D"),
])
def test_bad_inputs(bad, match):
    with pytest.raises(InputError, match=match):
        bad()


def test_contract():
    for name in ("NAME", "METRIC", "SHAPES", "SMALL_SHAPES", "make_inputs", "impl", "eager", "BASELINES",
                 "reference", "work", "TOLERANCE", "GRAD_INPUTS", "backward_work"):
        assert hasattr(GG_spec, name), name
    assert GG.NAME == "grouped_gemm" and GG_spec.METRIC == "TFLOP/s"
    assert {s[0] for s in GG_spec.SHAPES} == {8, 16, 64}
    assert all(8192 <= s[1] <= 65536 and 1024 <= s[2] <= 14336 and 1024 <= s[3] <= 14336 for s in GG_spec.SHAPES)
    assert "loop_cublas" in GG_spec.BASELINES
    assert ("grouped_mm" in GG_spec.BASELINES) == hasattr(torch, "_grouped_mm")
    for g, m in [(8, 8192), (64, 65536)]:
        sizes = GG_spec.group_sizes(g, m)
        assert sum(sizes) == m and 0 in sizes and min(sizes) >= 0


# ---- sm_90 code generation (no GPU needed) ----------------------------------------------------

def _compile(bound, cfg):
    ks = bound.compile_for_target(cfg, ("cuda", 90, 32))
    assert len(ks) == 1
    return ks[0].asm["ptx"]


def test_sm90_forward_and_dw_wgmma():
    g, m, n, k = 8, 16384, 4096, 4096
    x = torch.empty(m, k, dtype=torch.bfloat16, device="meta")
    w = torch.empty(g, k, n, dtype=torch.bfloat16, device="meta")
    offsets = torch.empty(g, dtype=torch.int32, device="meta")
    bound = GG.grouped_gemm_kernel.bind((x, w, offsets, False))
    cfg = C.fit(bound, GG.choose_config(g, m, n, k, torch.bfloat16))
    assert cfg["pid_type"] == "persistent_interleaved" and cfg["indexing"] == "tensor_descriptor"
    ptx = _compile(bound, cfg)
    assert "wgmma" in ptx and "cp.async.bulk.tensor" in ptx  # TMA for w (x rows are jagged: pointers)
    dy = torch.empty(m, n, dtype=torch.bfloat16, device="meta")
    bound = GG.grouped_gemm_dw_kernel.bind((x, dy, offsets))
    ptx = _compile(bound, C.fit(bound, GG.choose_dw_config(g, m, n, k, torch.bfloat16)))
    assert "wgmma" in ptx


# ---- GPU ---------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(8, 8192, 4096, 4096), (64, 32768, 1024, 1024), (5, 130, 65, 33)])
def test_gpu_bf16(shape):
    x, w, offsets = GG_spec.make_inputs(shape, torch.bfloat16, "cuda")
    out = GG_spec.impl(x, w, offsets)
    assert rel_err(out, GG_spec.reference(x, w, offsets)) < GG_spec.TOLERANCE[torch.bfloat16]
    if hasattr(torch, "_grouped_mm") and shape[2] % 8 == 0 and shape[3] % 8 == 0:
        assert rel_err(out, GG_spec._grouped_mm(x, w, offsets)) < GG_spec.TOLERANCE[torch.bfloat16]


@pytest.mark.gpu
def test_gpu_bf16_backward():
    x, w, offsets = GG_spec.make_inputs((8, 4096, 512, 1024), torch.bfloat16, "cuda")
    x.requires_grad_(True)
    w.requires_grad_(True)
    out = GG.grouped_gemm(x, w, offsets)
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, w), g)
    x32, w32 = (t.detach().float().requires_grad_() for t in (x, w))
    rx, rw = torch.autograd.grad(GG_spec._loop(x32, w32, offsets), (x32, w32), g.float())
    assert rel_err(gx, rx) < 2e-2 and rel_err(gw, rw) < 2e-2
