"""The Gluon attention probe (bench/gluon_attention.py) builds real sm_90 code without a GPU.

Each schedule compiles for GPUTarget("cuda", 90, 32); its TTGIR shows wgmma (ttng.warp_group_dot) and,
where the schedule is warp-specialized, the partitions (ttg.warp_specialize) and the register moves
between them (setmaxnreg in the PTX). The GPU half (numbers and timings) runs on the device only.
"""
import pytest

pytest.importorskip("triton.experimental.gluon.language.nvidia.hopper",
                    reason="this Triton has no Gluon Hopper module (triton.experimental.gluon)")
_runtime = pytest.importorskip("triton.experimental.gluon._runtime", reason="this Triton has no Gluon runtime")
if not hasattr(_runtime, "GluonASTSource"):
    pytest.skip("this Triton's Gluon has no GluonASTSource to compile without a GPU", allow_module_level=True)

import torch  # noqa: E402

from bench import gluon_attention as ga  # noqa: E402


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["a_single", "b_producer", "d_pingpong_overlap"])
def test_compiles_for_sm90(variant, causal):
    var = ga.VARIANTS[variant]
    kernel = ga.compile_sm90(variant, causal)
    ttgir, ptx = kernel.asm["ttgir"], kernel.asm["ptx"]
    assert "ttng.warp_group_dot" in ttgir
    assert "wgmma.mma_async" in ptx
    assert "cp.async.bulk.tensor" in ptx  # K/V arrive through TMA
    assert ("ttg.warp_specialize" in ttgir) == var.ws
    if var.ws:
        # the producer gives registers up, the consumers take them (worker_num_regs)
        assert f"setmaxnreg.dec.sync.aligned.u32 \t{var.producer_regs};" in ptx
        assert f"setmaxnreg.inc.sync.aligned.u32 \t{var.consumer_regs};" in ptx
    # the K/V ring and Q fit Hopper's 227 KB of shared memory per block
    assert kernel.metadata.shared <= 227 * 1024


def test_pingpong_partitions():
    """Two consumer warpgroups (4 warps each) beside a 1-warp producer: three partitions, 12 warps."""
    kernel = ga.compile_sm90("c_pingpong", False)
    ttgir = kernel.asm["ttgir"]
    assert "ttg.warp_specialize" in ttgir
    assert "partition0" in ttgir and "partition1" in ttgir
    assert kernel.metadata.num_warps == 12


def test_work_counts_half_when_causal():
    assert ga.work(4, 16, 4096, 128, False) == 4.0 * 4 * 16 * 4096 * 4096 * 128
    assert ga.work(1, 16, 16384, 128, True) == 2.0 * 16 * 16384 * 16384 * 128


@pytest.mark.parametrize("bad, arg", [
    (dict(dtype=torch.float16), "q"),
    (dict(shape=(1, 2, 100, 128)), "q"),
    (dict(shape=(1, 2, 128, 64)), "q"),
])
def test_bad_input_names_the_argument(bad, arg):
    shape = bad.get("shape", (1, 2, 128, 128))
    dtype = bad.get("dtype", torch.bfloat16)
    q, k, v = (torch.zeros(shape, dtype=dtype) for _ in range(3))
    with pytest.raises(ValueError, match=f"^{arg}"):
        ga.attention(q, k, v, causal=False)


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        ga.main(["--variants", "nope"])


@pytest.mark.parametrize("kernel", ["attn_bwd_dq", "attn_bwd_dkdv"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_bwd_session_configs_build_warp_specialized_for_sm90(causal, kernel):
    """``--dsl-bwd`` times the catalog's backward kernels under their Triton Config and the Gluon backend's: the
    Gluon ones with ``gluon_mma_ahead`` (two consumer warpgroups) build for sm_90 with the partitions and wgmma."""
    import math
    from helion_ops.dsl.backends.triton import compile_specs_for_target
    from helion_ops.ops import attention as A
    b, h, s, d = 2, 4, 1024, 128
    q = torch.empty(b, h, s, d, dtype=torch.bfloat16, device="meta")
    lse = torch.empty(b, h, s, dtype=torch.float32, device="meta")
    args = (q, q, q, q, lse, lse, causal, ga.LOG2E / math.sqrt(d), 1 / math.sqrt(d))
    cfgs = ga.bwd_configs(kernel, args)
    tri, c2 = kernel.split("_")[-1] + "_triton", kernel.split("_")[-1] + "_gluon_c2"
    assert set(cfgs) == {kernel.split("_")[-1] + "_" + n for n in ga.BWD_IMPLS}
    assert cfgs[tri].get("backend", "triton") == "triton"
    assert cfgs[c2]["backend"] == "gluon" and cfgs[c2]["gluon_consumers"] == 2 and cfgs[c2]["gluon_mma_ahead"]
    assert not cfgs[kernel.split("_")[-1] + "_gluon_c2_serial"]["gluon_mma_ahead"]
    (kb,) = compile_specs_for_target(A.KERNELS[kernel].bind(args).compile_specs(cfgs[c2]), ("cuda", 90, 32))
    assert "ttg.warp_specialize" in kb.asm["ttgir"] and "wgmma.mma_async" in kb.asm["ptx"]
    assert kb.metadata["shared"] <= 227 * 1024
