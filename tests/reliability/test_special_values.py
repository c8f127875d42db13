"""Special values through the catalog's kernels (issue 27): -inf runs, all -inf rows, masked prefixes, NaN,
+inf, huge and tiny magnitudes; bf16 in the interpreter; unchecked grouped-GEMM offsets.

The regression tests first (each failed before its fix), then hypothesis strategies over the same values
(budget: ``HELION_OPS_HYPOTHESIS_PROFILE``, as in test_properties.py). The expected result is torch's on
fp64 copies of the inputs: NaN exactly where torch has NaN (a row of all -inf, or one holding NaN or
+inf, is NaN in torch's softmax too), infinities equal, finite values within the op's tolerance.
Configs are pinned; the online softmax is forced on short rows with small column tiles, so every
running-max step (an all -inf first tile, a -inf run mid-row) is exercised on small inputs.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings, strategies as st

from helion_ops import _oplib as C
from helion_ops.dsl import Config
from bench.specs import attention as A  # the spec: attention, TOLERANCE and its fp32 reference
from bench.specs import grouped_gemm as G_spec, layer_norm as L_spec, matmul as M_spec, rms_norm as R_spec, \
    softmax as S_spec
from helion_ops.ops import grouped_gemm as G, layer_norm as L, matmul as M, rms_norm as R, softmax as S

from .test_properties import PROFILE
from .test_regressions import guarded_outputs

NEG_INF = float("-inf")


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    monkeypatch.setenv("HELION_OPS_STRICT", "1")  # a kernel failure fails the test (no eager fallback)


def assert_same(out: torch.Tensor, ref: torch.Tensor, tol: float, what: str = "") -> None:
    """NaN where ``ref`` is NaN (and only there), the same infinities, finite values within ``tol``
    relative to max|finite ref| (absolute below 1e-6)."""
    assert out.shape == ref.shape, (what, tuple(out.shape), tuple(ref.shape))
    o, r = out.detach().double().cpu(), ref.detach().double().cpu()
    nan_o, nan_r = o.isnan(), r.isnan()
    assert torch.equal(nan_o, nan_r), f"{what}: NaN at {nan_o.sum()} places, torch at {nan_r.sum()} " \
                                      f"(first differing index {(nan_o != nan_r).nonzero()[:1].tolist()})"
    inf_r = r.isinf()
    assert torch.equal(o[inf_r], r[inf_r]) and not o[~inf_r & ~nan_r].isinf().any(), f"{what}: infinities differ"
    fin = torch.isfinite(r)
    if fin.any():
        amax = r[fin].abs().max().item()
        err = (o[fin] - r[fin]).abs().max().item() / (amax if amax > 1e-6 else 1.0)
        assert err <= tol, f"{what}: error {err:.3g} > {tol:g}"


def grads(fn, inputs: list, grad_idx: list[int], dout: torch.Tensor):
    """(out, [grads of inputs[grad_idx]]) of ``fn(*inputs)`` for output gradient ``dout``."""
    leaves = [t.detach().requires_grad_(i in grad_idx) if isinstance(t, torch.Tensor) else t
              for i, t in enumerate(inputs)]
    out = fn(*leaves)
    gs = torch.autograd.grad(out, [leaves[i] for i in grad_idx], dout.to(out.dtype))
    return out, list(gs)


def check_vs_torch(ours, ref, inputs: list, grad_idx: list[int], tol: float, seed: int = 0,
                   backward: bool = True) -> None:
    """``ours(*inputs)`` against ``ref`` on fp64 copies, forward and (``backward``) the input grads."""
    gen = torch.Generator().manual_seed(seed)
    if not backward:
        with torch.no_grad():
            assert_same(ours(*inputs), ref(*[t.double() if isinstance(t, torch.Tensor) else t for t in inputs]),
                        tol, "forward")
        return
    out_shape = ours(*[t.detach() if isinstance(t, torch.Tensor) else t for t in inputs]).shape
    dout = torch.randn(out_shape, generator=gen, dtype=torch.float64).to(inputs[0].dtype)
    out, gs = grads(ours, list(inputs), grad_idx, dout)
    rout, rgs = grads(ref, [t.double() if isinstance(t, torch.Tensor) else t for t in inputs], grad_idx,
                      dout.double())
    assert_same(out, rout, tol, "forward")
    for i, a, b in zip(grad_idx, gs, rgs):
        assert_same(a, b, tol, f"grad of input {i}")


# ---- softmax: the online kernel's running max ----------------------------------------------------

SOFTMAX_CONFIGS = {  # variant -> (fwd kernel, bwd kernel, Config of the [M, N] shape): 16-column tiles
    "online": ("softmax_fwd_online", "softmax_bwd_looped",
               lambda s: Config(block_sizes=[min(16, C.next_pow2(s[1])), 1], num_warps=4, num_stages=1,
                                range_reverses=[False, True])),
    "looped": ("softmax_fwd", "softmax_bwd",
               lambda s: Config(block_sizes=[1], reduction_loops=[16 if s[1] > 16 else None], num_warps=4,
                                num_stages=1)),
    "persistent": ("softmax_fwd", "softmax_bwd",
                   lambda s: Config(block_sizes=[2], reduction_loops=[None], num_warps=4, num_stages=1)),
}


@contextlib.contextmanager
def softmax_pinned(variant: str):
    """S.softmax runs ``variant``'s kernels with their pinned Configs inside the block."""
    fwd, bwd, cfg = SOFTMAX_CONFIGS[variant]
    old = S.ONLINE_ABOVE
    S.ONLINE_ABOVE = 8 if variant == "online" else 2**40
    try:
        with C.use_config(fwd, cfg), C.use_config(bwd, cfg):
            yield
    finally:
        S.ONLINE_ABOVE = old


def test_softmax_long_row_masked_prefix_issue_repro():
    """Issue 27's repro at its size and default config: 40000 columns, the first 16384 (one whole
    16K column tile of the online kernel) -inf, as top-k masked logits. Was all NaN."""
    torch.manual_seed(0)
    x = torch.randn(1, 40000)
    x[:, :16384] = NEG_INF
    assert C.next_pow2(x.shape[1]) > S.ONLINE_ABOVE  # the online kernels
    check_vs_torch(lambda t: S.softmax(t, -1), lambda t: torch.softmax(t, -1), [x], [0], S_spec.TOLERANCE[torch.float32])


def special_softmax_rows(n: int, dtype) -> torch.Tensor:
    """One row per special case, n columns (n >= 40)."""
    g = torch.Generator().manual_seed(n)
    rows = torch.randn(10, n, generator=g, dtype=torch.float64)
    rows[0, :40] = NEG_INF                       # masked prefix: the first two 16-column tiles all -inf
    rows[1] = NEG_INF                            # all -inf: NaN, as torch
    rows[2, 5:37] = NEG_INF                      # a -inf run over a whole tile mid-row
    rows[2, 60:] = NEG_INF                       # ... and a masked suffix
    rows[3, 17] = float("nan")                   # NaN: the row is NaN
    rows[4, 3] = float("inf")                    # +inf: NaN, as torch (inf - inf)
    rows[5, : n - 1] = NEG_INF                   # only the last column finite: a one-hot at the end
    big = 1e30 if dtype == torch.float32 else 6e4
    rows[6] *= big                               # huge magnitudes (exp underflows to exact 0s)
    rows[7] *= 1e-30 if dtype == torch.float32 else 1e-4  # tiny: ~uniform
    rows[8, ::2] *= big                          # mixed
    rows[9, :16] = NEG_INF                       # exactly the first tile
    return rows.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("variant", list(SOFTMAX_CONFIGS))
def test_softmax_special_rows(variant, dtype):
    x = special_softmax_rows(100, dtype)
    with softmax_pinned(variant):
        check_vs_torch(lambda t: S.softmax(t, -1), lambda t: torch.softmax(t, -1), [x], [0], S_spec.TOLERANCE[dtype])


# ---- attention: the online softmax over key blocks ---------------------------------------------

def neg_inf_key_prefix(s_q: int, s_k: int, prefix: int, d: int = 64, h: int = 2, h_kv: int = 1, seed: int = 0):
    """(q, k, v): every query scores the first ``prefix`` keys -inf (the fp32 dot q.k overflows:
    |q|, |k| ~ 1e20) and the others exactly 0 (k = 0), so softmax is uniform over the rest."""
    g = torch.Generator().manual_seed(seed)
    q = 1e20 * (1 + torch.rand(1, h, s_q, d, generator=g))
    k = torch.zeros(1, h_kv, s_k, d)
    k[:, :, :prefix] = -1e20 * (1 + torch.rand(1, h_kv, prefix, d, generator=g))
    v = torch.randn(1, h_kv, s_k, d, generator=g)
    return q, k, v


def test_attention_first_key_block_all_neg_inf():
    """The first 256 keys (the first key block at any block size the kernel allows) score -inf for
    every query: was NaN, forward and backward (the NaN lse). GQA (2 query heads on one kv head)."""
    q, k, v = neg_inf_key_prefix(s_q=5, s_k=300, prefix=256)
    scale = 1 / 8

    def ref(q_, k_, v_):
        return A._math_attention(q_, k_, v_, False, scale)

    check_vs_torch(lambda *t: A.attention(*t), ref, [q, k, v], [0, 1, 2], A.TOLERANCE[torch.float32])


def sdpa(q, k, v, causal=False):
    """torch's SDPA (GQA expanded): a query whose every score is -inf gets 0 and zero gradients."""
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def test_attention_fully_masked_rows_are_zero_as_torch():
    """Causal: queries 0..255 see only keys scoring -inf (the fp32 dots overflow, in torch's SDPA too):
    0 there, as torch's SDPA, and zero gradients from them (lse = +inf), not NaN."""
    q, k, v = neg_inf_key_prefix(s_q=300, s_k=300, prefix=256, h=1)
    out = A.attention(q, k, v, causal=True)
    assert (out[..., :256, :] == 0).all() and out[..., 256:, :].isfinite().all()
    check_vs_torch(lambda *t: A.attention(*t, causal=True), lambda *t: sdpa(*[x.float() for x in t], True),
                   [q, k, v], [0, 1, 2], A.TOLERANCE[torch.float32])


# ---- bf16 in the interpreter ---------------------------------------------------------------------

def _bf(*shape, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(torch.bfloat16)


def test_bf16_matmul_in_interpreter():
    """Triton's interpreter multiplies bf16 bit patterns: was off by 1e8-1e10."""
    a, b, bias = _bf(33, 40), _bf(40, 17, scale=40 ** -0.5), _bf(17, scale=0.1)
    check_vs_torch(lambda a_, b_, c_: M.matmul(a_, b_, c_, "gelu"),
                   lambda a_, b_, c_: M._eager_act(a_ @ b_ + c_, "gelu"), [a, b, bias], [0, 1, 2],
                   M_spec.TOLERANCE[torch.bfloat16])
    check_vs_torch(lambda a_, b_: M.matmul(a_, b_), lambda a_, b_: a_ @ b_, [a, b.t().contiguous().t()], [0, 1],
                   M_spec.TOLERANCE[torch.bfloat16])


def test_bf16_grouped_gemm_in_interpreter():
    x, w = _bf(40, 16), _bf(3, 16, 24, scale=0.25)
    offsets = torch.tensor([7, 7, 40], dtype=torch.int32)

    def ref(x_, w_):
        return torch.cat([x_[:7] @ w_[0], x_[7:] @ w_[2]])

    check_vs_torch(lambda x_, w_: G.grouped_gemm(x_, w_, offsets), ref, [x, w], [0, 1],
                   G_spec.TOLERANCE[torch.bfloat16])


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_attention_in_interpreter(causal):
    q, k, v = _bf(1, 2, 17, 64), _bf(1, 1, 20, 64, seed=1), _bf(1, 1, 20, 64, seed=2)
    check_vs_torch(lambda *t: A.attention(*t, causal=causal),
                   lambda *t: A._math_attention(*t, causal, 1 / 8), [q, k, v], [0, 1, 2],
                   A.TOLERANCE[torch.bfloat16])


# ---- grouped_gemm: unchecked offsets stay in bounds ---------------------------------------------

def _padded_rows(m: int, cols: int, seed: int) -> torch.Tensor:
    """An [m, cols] view of a buffer whose 200 rows after it are NaN (an out-of-bounds read shows)."""
    buf = torch.full((m + 200, cols), float("nan"))
    buf[:m] = torch.randn(m, cols, generator=torch.Generator().manual_seed(seed))
    return buf[:m]


@pytest.mark.parametrize("offsets", [[20, 100], [20, 100000], [-8, 40], [30, 10, 40]],
                         ids=["past-M", "far-past-M", "negative", "unsorted"])
def test_grouped_gemm_unchecked_offsets_stay_in_bounds(offsets):
    """validate=False with offsets past M (or negative, or unsorted): the kernels clamp each tile's rows
    to [0, M). Before, the forward stored past ``out`` (heap corruption: the interpreter process
    aborted) and dw read past x and dy. Rows inside [0, M) that one group covers are still right."""
    m, k, n = 40, 16, 24
    x, dy = _padded_rows(m, k, 0), _padded_rows(m, n, 1)
    off = torch.tensor(offsets, dtype=torch.int32)
    w = torch.randn(len(offsets), k, n, generator=torch.Generator().manual_seed(2))
    rows = [(max(s, 0), min(e, m)) for s, e in zip([0] + offsets[:-1], offsets)]  # each group's rows, clamped
    cover = torch.zeros(m, dtype=torch.int64)
    for s, e in rows:
        cover[s:max(s, e)] += 1
    cfg = Config(block_sizes=[16, 16, 16], num_warps=4, num_stages=1, pid_type="flat", indexing="pointer")

    bound = G.grouped_gemm_kernel.bind((x, w, off, False))
    with guarded_outputs(bound) as intact:
        out = bound.run(bound.normalize(cfg), x, w, off, False)
    assert intact(), "grouped_gemm_kernel stored past the end of out"
    for g, (s, e) in enumerate(rows):
        once = torch.arange(s, max(s, e))[cover[s:max(s, e)] == 1]  # rows two groups claim: either result
        torch.testing.assert_close(out[once], x[once] @ w[g], rtol=1e-5, atol=1e-5)

    bound = G.grouped_gemm_dw_kernel.bind((x, dy, off))
    with guarded_outputs(bound) as intact:
        dw = bound.run(bound.normalize(cfg), x, dy, off)
    assert intact(), "grouped_gemm_dw_kernel stored past the end of dw"
    assert not dw.isnan().any(), "grouped_gemm_dw_kernel read x or dy past row M"
    for g, (s, e) in enumerate(rows):
        want = x[s:e].t() @ dy[s:e] if e > s else torch.zeros(k, n)
        torch.testing.assert_close(dw[g], want, rtol=1e-5, atol=1e-4)

    out = G.grouped_gemm(x, w, off, validate=False)  # the op itself, at its default config
    assert out.shape == (m, n)


# ---- hypothesis: special values ------------------------------------------------------------------
# Each row (or key sequence) draws a kind; the values are made from a seeded generator, so a failing
# example replays from its printed arguments.

ROW_KINDS = ["randn", "prefix", "all_neg_inf", "neg_inf_runs", "nan", "pos_inf", "huge", "tiny", "mixed"]
NORM_KINDS = ["randn", "nan", "huge", "tiny", "mixed"]  # norms of +-inf rows are NaN / 0 by formula choice


def special_rows(kinds: list[str], n: int, dtype, seed: int) -> torch.Tensor:
    """[len(kinds), n] in ``dtype``, row i of kind ``kinds[i]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(kinds), n, generator=g, dtype=torch.float64)
    big, small = (1e15, 1e-15) if dtype == torch.float32 else (3e4, 1e-3)  # squares stay finite in fp32
    for i, kind in enumerate(kinds):
        j = int(torch.randint(0, n, (), generator=g))
        if kind == "prefix":  # a masked prefix: often whole column tiles
            x[i, :j + 1] = NEG_INF
        elif kind == "all_neg_inf":
            x[i] = NEG_INF
        elif kind == "neg_inf_runs":
            x[i, torch.rand(n, generator=g) < 0.3] = NEG_INF
            x[i, j:j + 20] = NEG_INF
        elif kind == "nan":
            x[i, j] = float("nan")
        elif kind == "pos_inf":
            x[i, j] = float("inf")
        elif kind == "huge":
            x[i] *= big
        elif kind == "tiny":
            x[i] *= small
        elif kind == "mixed":
            x[i, torch.rand(n, generator=g) < 0.5] *= big
    return x.to(dtype)


SPECIAL_N = st.one_of(st.sampled_from([1, 2, 16, 17, 31, 33, 64, 65, 100]), st.integers(1, 200))
SPECIAL_DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])


@settings(PROFILE)
@given(kinds=st.lists(st.sampled_from(ROW_KINDS), min_size=1, max_size=6), n=SPECIAL_N, dtype=SPECIAL_DTYPES,
       variant=st.sampled_from(list(SOFTMAX_CONFIGS)), seed=st.integers(0, 2**31 - 1))
def test_softmax_special_values(kinds, n, dtype, variant, seed):
    x = special_rows(kinds, n, dtype, seed)
    with softmax_pinned(variant):
        check_vs_torch(lambda t: S.softmax(t, -1), lambda t: torch.softmax(t, -1), [x], [0], S_spec.TOLERANCE[dtype],
                       seed)


@settings(PROFILE)
@given(kinds=st.lists(st.sampled_from(NORM_KINDS), min_size=1, max_size=6), n=SPECIAL_N,
       dtype=SPECIAL_DTYPES, op=st.sampled_from(["layer_norm", "rms_norm"]), seed=st.integers(0, 2**31 - 1))
def test_norms_special_values(kinds, n, dtype, op, seed):
    x = special_rows(kinds, n, dtype, seed)
    w = (1 + 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).to(dtype)
    if op == "layer_norm":
        ours = lambda t, w_: L.layer_norm(t, (n,), w_, None, 1e-5)  # noqa: E731
        ref = lambda t, w_: torch.nn.functional.layer_norm(t, (n,), w_, None, 1e-5)  # noqa: E731
        tol = L_spec.TOLERANCE[dtype]
    else:
        ours = lambda t, w_: R.rms_norm(t, (n,), w_, 1e-6)  # noqa: E731
        ref = lambda t, w_: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * w_  # noqa: E731
        tol = R_spec.TOLERANCE[dtype]
    # forward only where a row is NaN: which dweight columns a NaN row poisons is torch's formula's choice
    check_vs_torch(ours, ref, [x, w], [0, 1], tol, seed, backward="nan" not in kinds and n > 1)


KEY_KINDS = ["prefix", "all", "runs", "random", "none"]


@settings(PROFILE)
@given(s_q=st.integers(1, 40), s_k=st.integers(1, 80), keys=st.sampled_from(KEY_KINDS), causal=st.booleans(),
       group=st.sampled_from([1, 2]), nan_v=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_attention_special_values(s_q, s_k, keys, causal, group, nan_v, seed):
    """Keys scoring -inf (fp32 dots overflowing: |q|, |k| ~ 1e20) as a prefix, all of them, runs or at
    random, the others moderate; optionally a NaN in v. Against torch's SDPA in fp32, where the
    same scores overflow: fully masked queries give 0."""
    g = torch.Generator().manual_seed(seed)
    d = 64
    q = 1e20 * (1 + torch.rand(1, group, s_q, d, generator=g))
    neg = torch.zeros(s_k, dtype=torch.bool)
    j = int(torch.randint(0, s_k, (), generator=g))
    if keys == "prefix":
        neg[:j + 1] = True
    elif keys == "all":
        neg[:] = True
    elif keys == "runs":
        neg[j:j + 17] = True
        neg[torch.rand(s_k, generator=g) < 0.2] = True
    elif keys == "random":
        neg[torch.rand(s_k, generator=g) < 0.5] = True
    k = 1e-20 * torch.randn(1, 1, s_k, d, generator=g)  # scores q.k of order 1..10: a non-trivial softmax
    k[:, :, neg] = -1e20 * (1 + torch.rand(1, 1, int(neg.sum()), d, generator=g))
    v = torch.randn(1, 1, s_k, d, generator=g)
    if nan_v:  # in key 0, which every query visits (a causal kernel never reads the keys it masks whole,
        # where torch's 0 * NaN makes NaN: FlashAttention's behaviour, kept)
        v[0, 0, 0, int(torch.randint(0, d, (), generator=g))] = float("nan")
    check_vs_torch(lambda *t: A.attention(*t, causal=causal), lambda *t: sdpa(*[x.float() for x in t], causal),
                   [q, k, v], [0, 1, 2], A.TOLERANCE[torch.float32], seed, backward=not nan_v)
