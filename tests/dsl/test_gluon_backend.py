"""The Gluon backend (helion_ops/dsl/backends/gluon): Config(backend="gluon") turns a DSL kernel into a
warp-specialized Gluon kernel for sm_90 (a TMA producer warp, one or two wgmma consumer warpgroups).

CPU: the catalog's attention forward (``attn_fwd``, used as it is) and a matmul generate Gluon that builds
for GPUTarget("cuda", 90, 32), with the partitions (ttg.warp_specialize) and wgmma in its IR; kernels
outside the subset are refused at their line, naming the construct; the interpreter refuses the knob.
GPU (-m gpu): the numbers against an fp32 reference at odd sequence lengths, GQA, causal and not.
"""
import math
import re

import pytest
import torch

pytest.importorskip("triton.experimental.gluon.language.nvidia.hopper",
                    reason="this Triton has no Gluon Hopper module (triton.experimental.gluon)")

import helion_ops.dsl as helion  # noqa: E402
import helion_ops.dsl.language as hl  # noqa: E402
from helion_ops.dsl import Config  # noqa: E402
from helion_ops.dsl.backends.triton import compile_specs_for_target  # noqa: E402
from helion_ops.dsl.exc import NotSupported  # noqa: E402
from helion_ops.ops import attention as A  # noqa: E402


def gluon_config(block_m=128, block_n=128, consumers=2, causal=False, overlap=False) -> Config:
    return Config(block_sizes=[block_m, block_n], backend="gluon", gluon_consumers=consumers,
                  gluon_overlap=overlap, grid_reverses=[causal])


@helion.kernel(static_shapes=True)
def matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, k = x.size()
    _, n = y.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = hl.dot(x[tile_m, tile_k], y[tile_k, tile_n], acc=acc)
        out[tile_m, tile_n] = acc.to(x.dtype)
    return out


def _attn_args(b, h, h_kv, s, d, causal, device="meta", dtype=torch.bfloat16):
    q = torch.empty(b, h, s, d, dtype=dtype, device=device)
    k = torch.empty(b, h_kv, s, d, dtype=dtype, device=device)
    return q, k, torch.empty_like(k), causal, A.LOG2E / math.sqrt(d)


# ---- CPU: code that builds for sm_90 --------------------------------------------------------------

def test_attention_forward_and_matmul_build_for_sm90():
    """Causal and not, 1 and 2 consumers, overlap or not, GQA, S not a multiple of the blocks (1000, 17),
    D 64 and 128."""
    cases = [(dict(b=2, h=4, h_kv=2, s=1000, d=128, causal=False), gluon_config(consumers=2)),
             (dict(b=2, h=4, h_kv=2, s=1000, d=128, causal=True), gluon_config(consumers=2, causal=True)),
             (dict(b=2, h=4, h_kv=2, s=4096, d=128, causal=True), gluon_config(causal=True, overlap=True)),
             (dict(b=1, h=2, h_kv=1, s=17, d=64, causal=True), gluon_config(consumers=1, block_n=64, causal=True))]
    specs, want = [], []
    for kw, cfg in cases:
        bound = A.attn_fwd.bind(_attn_args(**kw))
        specs += bound.compile_specs(cfg)
        want.append(cfg["gluon_consumers"])
    x = torch.empty(1000, 520, dtype=torch.float16, device="meta")
    y = torch.empty(520, 296, dtype=torch.float16, device="meta")
    specs += matmul.bind((x, y)).compile_specs(Config(block_sizes=[128, 128, 64], backend="gluon"))
    want.append(2)
    assert len(specs) == len(want)
    built = compile_specs_for_target(specs, ("cuda", 90, 32))
    for kb, consumers in zip(built, want):
        ttgir, ptx = kb.asm["ttgir"], kb.asm["ptx"]
        assert "ttg.warp_specialize" in ttgir and "ttng.warp_group_dot" in ttgir
        assert "wgmma.mma_async" in ptx and "cp.async.bulk.tensor" in ptx   # wgmma; loads through TMA
        assert "setmaxnreg.dec.sync.aligned.u32 \t24;" in ptx               # the producer gives registers up
        # TMA descriptors come from the host (kernel parameters): no program builds one in global memory
        assert "tensormap.replace" not in ptx and "fence.proxy.tensormap" not in ptx
        assert kb.metadata["num_warps"] == 4 * consumers + 4                # consumers + the producer's group
        assert kb.metadata["shared"] <= 227 * 1024, (consumers, kb.metadata["shared"])


def test_partitions_in_the_source():
    """The producer issues the loads of the loop-indexed tiles (K, V) into rings; Q once; two consumers
    of 64 rows each share every slot (its empty barrier counts both)."""
    src = A.attn_fwd.bind(_attn_args(2, 4, 2, 1000, 128, False)).to_triton_code(gluon_config())
    assert "gl.warp_specialize(" in src and "[4, 1], [240, 24]" in src
    assert re.search(r"tma\.async_copy_global_to_shared\(k_ring\d+_desc", src)
    assert re.search(r"tma\.async_copy_global_to_shared\(v_ring\d+_desc", src)
    assert re.search(r"mbarrier\.init\(k_ring\d+_empty\.index\(i\), count=2\)", src)
    assert "WG * 64 + gl.arange(0, 64, layout=ROW)" in src
    assert src.count("warpgroup_mma(") == 2 and "warpgroup_mma_wait(1," not in src
    # gluon_overlap: the next block's S = Q K^T is issued before this block's P V, and only it is waited for
    # before the softmax (the loop's first block is peeled off, its last P V follows the loop)
    over = A.attn_fwd.bind(_attn_args(2, 4, 2, 1000, 128, False)).to_triton_code(gluon_config(overlap=True))
    loop = over[over.index("for offset_"):]
    assert loop.index("use_acc=False, is_async=True") < loop.index("v_ring") < loop.index("warpgroup_mma_wait(1,")
    assert over.count("warpgroup_mma(") == 4
    # the K slot goes back to the producer as soon as S = Q K^T was waited for, before the softmax
    wait1 = loop.index("warpgroup_mma_wait(1,")
    assert loop.index("mbarrier.arrive(k_ring", wait1) < loop.index("tl.exp2(", wait1)
    # max(S * scale) is max(S) * scale for 0 < scale < inf: one multiply per row; other scales multiply first
    # (S = 1000: the last key block is masked, and so is every block's max)
    assert re.search(r"if \(qk_scale > 0\) & \(qk_scale < float\('inf'\)\):\n\s+max_\d+ = tl\.reduce\(tl\.where\(mask_\d+"
                     r"\[None, :\], mma_out_\d+, float\('-inf'\)\), 1, _hl_max_nan, keep_dims=False\) \* qk_scale\n"
                     r"\s+else:\n\s+max_\d+ = tl\.reduce\(tl\.where\(mask_\d+\[None, :\], tl\.inline_asm_elementwise\("
                     r"\"mul\.rn\.f32", loop)
    assert "make_tensor_descriptor" not in over and re.search(r"def _attn_fwd_kernel0\(.*, k_ring\d+_desc", over)
    # the Triton backend's code is unchanged by the knob
    triton_src = A.attn_fwd.bind(_attn_args(2, 4, 2, 1000, 128, False)).to_triton_code(
        Config(block_sizes=[128, 128]))
    assert "gluon" not in triton_src and "@triton.jit" in triton_src


def test_host_descriptors_are_made_at_launch():
    """The Gluon kernel's TMA descriptors are parameters whose kind makes them from their tensor at each launch
    (after an empty grid returns); the other arguments pass as they are."""
    import types
    from helion_ops.dsl.runtime import Compiled
    calls, made = [], []

    def make(t):
        made.append(t)
        return ("desc", t)

    class Fn:
        def __getitem__(self, grid):
            return lambda *args, **kw: calls.append((grid, args))
    gen = types.SimpleNamespace(grid=(3, 1, 1), num_warps=4, num_stages=1, uses_descriptors=False,
                                params=[("x", "tensor", "x"), ("s", "scalar", "s"), ("x_desc", make, "x")])
    x = torch.randn(5)
    Compiled(Fn(), gen, ["s", "x"], True).launch([2.0, x])
    assert calls == [((3, 1, 1), (x, 2.0, ("desc", x)))] and made == [x]
    gen.grid = (0, 1, 1)
    Compiled(Fn(), gen, ["s", "x"], True).launch([2.0, x])
    assert len(calls) == 1 and len(made) == 1


# ---- CPU: refusals ----------------------------------------------------------------------------------

@helion.kernel(static_shapes=True)
def cumsum_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, k = x.size()
    _, n = y.size()
    out = torch.empty([m, n], dtype=torch.float32, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = hl.dot(x[tile_m, tile_k], y[tile_k, tile_n], acc=acc)
        out[tile_m, tile_n] = torch.cumsum(acc, dim=1)
    return out


@helion.kernel(static_shapes=True)
def centered_matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, k = x.size()
    _, n = y.size()
    out = torch.empty([m, n], dtype=torch.float32, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = hl.dot(x[tile_m, tile_k], y[tile_k, tile_n], acc=acc)
        out[tile_m, tile_n] = acc - torch.sum(acc, dim=0)[None, :]
    return out


def _line_of(fn, text: str) -> int:
    import inspect
    lines, start = inspect.getsourcelines(fn.fn if hasattr(fn, "fn") else fn)
    return start + next(i for i, l in enumerate(lines) if text in l)


def test_construct_outside_the_subset_is_refused_at_its_line():
    x = torch.empty(256, 128, dtype=torch.float16, device="meta")
    with pytest.raises(NotSupported, match=r"Gluon backend .* does not cover the op 'scan'") as e:
        cumsum_rows.bind((x, x)).to_triton_code(Config(block_sizes=[128, 128, 64], backend="gluon"))
    assert f":{_line_of(cumsum_rows, 'torch.cumsum')}" in str(e.value)


@helion.kernel(static_shapes=True)
def grouped_matmul(x: torch.Tensor, y: torch.Tensor, grid_outside: bool) -> torch.Tensor:
    """sum over g of x[g] @ y, the loop over the groups inside the k loop, or inside a second hl.grid loop."""
    g, m, k = x.size()
    _, n = y.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        if grid_outside:
            for j in hl.grid(1):
                for i in hl.grid(g):
                    for tile_k in hl.tile(k):
                        acc = hl.dot(x[i, tile_m, tile_k], y[tile_k, tile_n], acc=acc)
        else:
            for tile_kk in hl.tile(k):
                for i in hl.grid(g):
                    acc = hl.dot(x[i, tile_m, tile_kk], y[tile_kk, tile_n], acc=acc)
        out[tile_m, tile_n] = acc.to(x.dtype)
    return out


@pytest.mark.parametrize("grid_outside,what,line", [
    (False, "nested inner loops", "for tile_kk in hl.tile(k):"),
    (True, "an hl.grid loop inside a loop", "for i in hl.grid(g):")])
def test_loop_nests_outside_the_subset_are_refused_at_their_line(grid_outside, what, line):
    """One ``hl.grid`` loop may hold the tile loops (dK/dV's GQA group); tile loops hold no loops, and no
    ``hl.grid`` loop sits inside another loop."""
    x = torch.empty(2, 256, 128, dtype=torch.float16, device="meta")
    y = torch.empty(128, 256, dtype=torch.float16, device="meta")
    with pytest.raises(NotSupported, match=what) as e:
        grouped_matmul.bind((x, y, grid_outside)).to_triton_code(
            Config(block_sizes=[128, 128, 64, 64], backend="gluon"))
    assert f":{_line_of(grouped_matmul, line)}" in str(e.value)


def test_reduction_over_rows_needs_one_consumer():
    """Two consumers each hold half of the row block: a sum over its rows is refused at its line; with
    one consumer it is generated."""
    x = torch.empty(256, 128, dtype=torch.float16, device="meta")
    bound = centered_matmul.bind((x, torch.empty(128, 256, dtype=torch.float16, device="meta")))
    with pytest.raises(NotSupported, match="reduction over the row tile with gluon_consumers=2") as e:
        bound.to_triton_code(Config(block_sizes=[128, 128, 64], backend="gluon", gluon_consumers=2))
    assert f":{_line_of(centered_matmul, 'torch.sum(acc, dim=0)')}" in str(e.value)
    src = bound.to_triton_code(Config(block_sizes=[128, 128, 64], backend="gluon", gluon_consumers=1))
    assert "gl.warp_specialize(" in src


def test_fp32_dot_and_untma_able_operand_are_refused():
    x = torch.empty(256, 128, dtype=torch.float32, device="meta")
    with pytest.raises(NotSupported, match=r"hl\.dot on torch\.float32 operands"):
        matmul.bind((x, x)).to_triton_code(Config(block_sizes=[128, 128, 32], backend="gluon"))
    a = torch.empty(256, 128, dtype=torch.float16, device="meta")
    b = torch.empty(128, 300, dtype=torch.float16, device="meta")  # rows of 600 bytes: no TMA
    with pytest.raises(NotSupported, match="right operand"):
        matmul.bind((a, b)).to_triton_code(Config(block_sizes=[128, 128, 64], backend="gluon"))


def test_dkdv_takes_keys_rows_and_its_grid_loop():
    """attention's dK/dV: with the query rows' orientation its dP = dO V^T reads V^T, a tile split between the
    consumers, from registers, refused at that line; with ``keys_rows`` it compiles, the GQA group's hl.grid
    loop in the producer and in the consumers."""
    q, k, v, causal, qs = _attn_args(1, 4, 2, 256, 128, True)
    lse = torch.empty(1, 4, 256, device="meta")
    bound = A.attn_bwd_dkdv.bind((q, k, v, q, lse, lse, causal, qs, 0.125))
    with pytest.raises(NotSupported, match="right operand is not a tile loaded from memory") as e:
        bound.to_triton_code(Config(block_sizes=[128, 64], backend="gluon"))
    assert f":{_line_of(A._dkdv_step, 'dp = hl.dot(do_blk, v_blk.T)')}" in str(e.value)
    src = bound.to_triton_code(Config(block_sizes=[128, 64], backend="gluon", keys_rows=True))
    assert "gl.warp_specialize(" in src and src.count("in range(0, 2):") == 2


@pytest.mark.parametrize("kernel", ["attn_bwd_dq", "attn_bwd_dkdv"])
def test_mma_ahead_issues_dp_beside_s_and_waits_at_first_use(kernel):
    """``gluon_mma_ahead``: the loop's dP wgmma (both operands in shared memory, no accumulator) is issued right
    after S's, S is waited for with one wgmma left in flight, and every wgmma of the loop is waited for before
    the ring slots go back to the producer. Off, each wgmma is waited for at once."""
    q, k, v, causal, qs = _attn_args(1, 4, 2, 256, 128, False)
    lse = torch.empty(1, 4, 256, device="meta")
    bound = A.KERNELS[kernel].bind((q, k, v, q, lse, lse, causal, qs, 0.125))
    base = dict(backend="gluon", block_sizes=[128, 128]) if kernel == "attn_bwd_dq" else \
        dict(backend="gluon", block_sizes=[128, 64], keys_rows=True)
    for ahead in (False, True):
        src = bound.to_triton_code(Config(**base, gluon_mma_ahead=ahead))
        consumer = src.split("_consumer(")[1].split("@gluon.jit")[0]
        body = consumer[consumer.index("slot = ring_it"):consumer.index("ring_it += 1")]   # the first ring loop's
        loop = [ln.strip() for ln in body.splitlines() if "warpgroup_mma" in ln or "mbarrier.arrive" in ln]
        kinds = ["wait" if "warpgroup_mma_wait" in ln else "arrive" if "arrive" in ln else "mma" for ln in loop]
        n = kinds.count("mma")
        assert kinds.count("wait") == n and kinds[-2:] == ["arrive", "arrive"] and n in (3, 4)
        assert kinds[:3] == (["mma", "mma", "wait"] if ahead else ["mma", "wait", "mma"])
        assert ("warpgroup_mma_wait(1," in loop[2]) is ahead


def test_knob_values_and_the_interpreter(device):
    x = torch.randn(128, 64, dtype=torch.float16, device=device)
    bound = matmul.bind((x, x.T.contiguous()))
    with pytest.raises(ValueError, match="Config.backend"):
        bound.normalize(Config(block_sizes=[128, 64, 64], backend="cuda"))
    with pytest.raises(ValueError, match="Config.gluon_consumers"):
        bound.normalize(Config(block_sizes=[128, 64, 64], backend="gluon", gluon_consumers=3))
    if device != "cpu":
        return
    # no sm_90 GPU: the tuner never searches the backend, and a launch under the interpreter refuses it
    assert "backend" not in bound.config_space.fragments
    with pytest.raises(NotSupported, match="interpreter cannot run Gluon"):
        bound.run(bound.normalize(Config(block_sizes=[128, 64, 64], backend="gluon")), x, x.T.contiguous())


# ---- GPU: numbers --------------------------------------------------------------------------------

def _ref(q, k, v, causal, scale):
    group = q.shape[1] // k.shape[1]
    q, k, v = q.float(), k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1)
    s = q @ k.transpose(-1, -2) * scale
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(s, -1) / math.log(2)
    return torch.softmax(s, -1) @ v, lse


GPU_CASES = [(s, 128, 2, True) for s in (1, 17, 1000, 4097)] + \
    [(1000, 128, 2, False), (4097, 128, 2, False), (1000, 128, 1, False), (1000, 64, 1, True)]


@pytest.mark.gpu
@pytest.mark.parametrize("s,d,consumers,overlap", GPU_CASES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_forward_gpu(s, d, consumers, overlap, causal):
    torch.manual_seed(s + d + 7 * causal + consumers + 3 * overlap)
    b, h, h_kv = 2, 4, 2   # GQA: two query heads per kv head
    q = torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(b, h_kv, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    scale = 1 / math.sqrt(d)
    args = (q, k, v, causal, scale * A.LOG2E)
    bound = A.attn_fwd.bind(args)
    cfg = gluon_config(block_n=min(d, 128), consumers=consumers, causal=causal, overlap=overlap)
    out, lse = bound.run(bound.normalize(cfg), *args)
    ref, ref_lse = _ref(q, k, v, causal, scale)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse, ref_lse, atol=1e-3, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("sign,overlap", [(-1.0, True), (0.0, False)])
def test_attention_forward_nonpositive_scale_gpu(sign, overlap):
    """A scale that is not in (0, inf) takes the product before the row max (the folded max would be wrong)."""
    torch.manual_seed(11)
    q, k, v = (torch.randn(1, 2, 1024, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    scale = sign / math.sqrt(128)
    args = (q, k, v, False, scale * A.LOG2E)
    bound = A.attn_fwd.bind(args)
    out, lse = bound.run(bound.normalize(gluon_config(overlap=overlap)), *args)
    ref, ref_lse = _ref(q, k, v, False, scale)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse, ref_lse, atol=1e-3, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("m,k,n", [(1, 64, 64), (1000, 520, 296), (4097, 1024, 1024)])
def test_matmul_gpu(m, k, n):
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
    bound = matmul.bind((x, y))
    out = bound.run(bound.normalize(Config(block_sizes=[128, 128, 64], backend="gluon")), x, y)
    torch.testing.assert_close(out.float(), x.float() @ y.float(), atol=0.25, rtol=2e-2)
