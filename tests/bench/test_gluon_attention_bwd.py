"""The Gluon attention backward probe (bench/gluon_attention_bwd.py) builds real sm_90 code without a GPU.

Each variant compiles for GPUTarget("cuda", 90, 32): warp-specialized (two consumer warpgroups, a producer
warp, and for ``ws_dq_writer`` a dQ-writer warp), five wgmma shapes per step including dQ's transposed-operand
one, TMA loads of K, V, Q and dO, relaxed (or vector) reductions for dQ, and it fits sm_90's shared memory. The numbers and
timings run on the device only (``gpu_session.sh gluon_bwd``).
"""
import pytest

pytest.importorskip("triton.experimental.gluon.language.nvidia.hopper",
                    reason="this Triton has no Gluon Hopper module (triton.experimental.gluon)")
_runtime = pytest.importorskip("triton.experimental.gluon._runtime", reason="this Triton has no Gluon runtime")
if not hasattr(_runtime, "GluonASTSource"):
    pytest.skip("this Triton's Gluon has no GluonASTSource to compile without a GPU", allow_module_level=True)

import torch  # noqa: E402

from bench import gluon_attention_bwd as gb  # noqa: E402


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", sorted(gb.VARIANTS))
def test_compiles_for_sm90(variant, causal):
    var = gb.VARIANTS[variant]
    kernel = gb.compile_sm90(variant, causal)
    ttgir, ptx = kernel.asm["ttgir"], kernel.asm["ptx"]
    assert "ttg.warp_specialize" in ttgir
    assert "partition1" in ttgir and ("partition2" in ttgir) == (var.dq == "writer")
    # S^T and dP^T (64x64), dV and dK (64x128), dQ's share (64x64 from dS^T read transposed)
    assert "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16" in ptx
    assert "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16" in ptx
    assert "cp.async.bulk.tensor" in ptx
    if var.red_vec == 1:
        assert "atom.global.gpu.relaxed.add.f32" in ptx
    else:  # one vector reduction per red_vec adjacent fp32 elements
        assert f"red.global.add.v{var.red_vec}.f32" in ptx
    assert f"setmaxnreg.inc.sync.aligned.u32 \t{var.consumer_regs};" in ptx
    assert kernel.metadata.shared <= 227 * 1024


def test_work_counts_five_matmuls():
    assert gb.work(4, 16, 4096, 128, False) == 2.5 * 4.0 * 4 * 16 * 4096 * 4096 * 128
    assert gb.work(1, 16, 16384, 128, True) == 2.5 * 2.0 * 16 * 16384 * 16384 * 128


@pytest.mark.parametrize("bad, arg", [
    (dict(dtype=torch.float16), "q"),
    (dict(shape=(1, 2, 100, 128)), "q"),
    (dict(shape=(1, 2, 128, 64)), "q"),
])
def test_bad_input_names_the_argument(bad, arg):
    shape = bad.get("shape", (1, 2, 128, 128))
    dtype = bad.get("dtype", torch.bfloat16)
    q, k, v, do = (torch.zeros(shape, dtype=dtype) for _ in range(4))
    lse = torch.zeros(shape[:3])
    with pytest.raises(ValueError, match=f"^{arg}"):
        gb.attention_bwd(q, k, v, do, lse, lse, causal=False)


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        gb.main(["--variants", "nope"])
