"""attention beyond the plain path: attn_mask (boolean / additive, broadcast shapes, with causal, fully masked
rows), packed variable-length sequences (cu_seqlens, bottom-right causal), decode (S_q = 1 against a longer
cache, GQA packed), any head dim 1..256, and supports(). Interpreter numerics in fp32/fp16 against an fp64
reference under flash-attention's rule (|ours - ref| <= 2 |torch same-dtype - ref| + rounding floor);
gradients; custom ops, torch.compile and meta tensors; the sm_90 build; bf16 against SDPA on a GPU."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helion_ops import _oplib as C
from helion_ops.dsl.exc import InputError
from helion_ops.ops import _attention_masked as X
from helion_ops.ops import _attention_varlen as V
from helion_ops.ops import attention as A

# finfo.min masks overflow exp2's argument to -inf on purpose (exp2(-inf) = 0): numpy warns in the interpreter
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in multiply:RuntimeWarning")


# ---- references -----------------------------------------------------------------------------------

def ref_attention(q, k, v, causal=False, mask=None, scale=None, off=0, upcast=True):
    """Math attention on [B, H, S, D] (fp64 when ``upcast``, else the inputs' dtype). A row with no key
    to attend gives zeros (the op's documented choice; SDPA gives NaN). ``off``: causal diagonal offset
    (0: top-left, SDPA; len_k - len_q: bottom-right, FlashAttention's varlen)."""
    dt = q.dtype
    if upcast:
        q, k, v = q.double(), k.double(), v.double()
        mask = mask.double() if mask is not None and mask.is_floating_point() else mask
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.matmul(q * scale, k.transpose(-1, -2))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.to(s.dtype)
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(off)
        s = s.masked_fill(~keep, float("-inf"))
    empty = (s == float("-inf")).all(-1, keepdim=True)
    p = torch.softmax(s.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
    out = torch.matmul(p.to(v.dtype), v)
    return out if upcast else out.to(dt)


def check(name, out, ref, pt):
    ref_d = ref.to(out.dtype)
    floor = 2 * ((ref_d + 0.3 - 0.3) - ref_d).abs().max().item() if ref.numel() else 0.0
    floor = max(floor, torch.finfo(out.dtype).eps * max(1.0, ref.abs().max().item() if ref.numel() else 0.0) * 4)
    err = (out.double() - ref).abs().max().item() if ref.numel() else 0.0
    err_pt = (pt.double() - ref).abs().max().item() if ref.numel() else 0.0
    assert torch.isfinite(out).all(), name
    assert err <= 2 * err_pt + floor, f"{name}: err {err:.3e} > 2 * torch's {err_pt:.3e} + {floor:.1e}"


def rand(*shape, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def compare(fn, ref_fn, tensors, backward=True, seed=1):
    """fn(*tensors) against ref_fn in fp64 and in the tensors' dtype: output and the q, k, v gradients."""
    runs = []
    for cast, f in ((torch.float64, lambda *t: ref_fn(*t, True)), (None, lambda *t: ref_fn(*t, False)), (None, fn)):
        leaves = [(t.to(cast) if cast else t.clone()).requires_grad_() for t in tensors]
        runs.append((f(*leaves), leaves))
    (ref, l64), (pt, lpt), (out, lo) = runs
    assert out.shape == pt.shape and out.dtype == tensors[0].dtype
    check("out", out.detach(), ref.detach(), pt.detach())
    if not backward:
        return
    do = rand(*out.shape, dtype=out.dtype, device=out.device, seed=seed)
    for o, leaves in ((ref, l64), (pt, lpt), (out, lo)):
        o.backward(do.to(o.dtype))
    for n, a, r, p in zip("qkv", lo, l64, lpt):
        assert a.grad.shape == a.shape and a.grad.dtype == a.dtype
        check(f"d{n}", a.grad, r.grad, p.grad)


# ---- attn_mask ------------------------------------------------------------------------------------

def _mask(kind, b, h, s_q, s_k, dtype, device, seed=3):
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g).to(device)  # noqa: E731
    if kind == "pad":  # [B, 1, 1, S_k] boolean padding (the last keys of batch 0 padded)
        m = torch.ones(b, 1, 1, s_k, dtype=torch.bool, device=device)
        m[0, ..., max(1, s_k - 5):] = False
        return m
    if kind == "bool2d":
        return u(s_q, s_k) > 0.3
    if kind == "add4d":  # per-head additive bias in the inputs' dtype, some -inf
        m = (torch.randn(b, h, s_q, s_k, generator=g) * 2).to(dtype).to(device)
        return m.masked_fill(u(b, h, s_q, s_k) < 0.2, float("-inf"))
    if kind == "hf":  # Hugging Face's additive padding mask: 0 or finfo(dtype).min, [B, 1, S_q, S_k]
        keep = u(b, 1, s_q, s_k) > 0.25
        return torch.zeros(b, 1, s_q, s_k, dtype=dtype, device=device).masked_fill(~keep, torch.finfo(dtype).min)
    raise KeyError(kind)


MASK_CASES = [  # (B, H, H_kv, S_q, S_k, D, mask kind)
    (2, 2, 2, 1, 17, 32, "pad"),
    (1, 2, 1, 17, 17, 80, "bool2d"),
    (2, 4, 2, 17, 23, 96, "add4d"),
    (1, 2, 2, 100, 100, 32, "hf"),
    (2, 1, 1, 17, 100, 64, "pad"),
]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", MASK_CASES, ids=lambda c: "b{}h{}kv{}q{}k{}d{}-{}".format(*c))
def test_mask_fp32(case, causal, device):
    b, h, h_kv, s_q, s_k, d, kind = case
    q, k, v = rand(b, h, s_q, d, device=device), rand(b, h_kv, s_k, d, device=device, seed=1), \
        rand(b, h_kv, s_k, d, device=device, seed=2)
    mask = _mask(kind, b, h, s_q, s_k, torch.float32, device)
    compare(lambda *t: A.attention(*t, causal=causal, attn_mask=mask),
            lambda *t: ref_attention(*t[:3], causal, mask, upcast=t[3]), (q, k, v))


@pytest.mark.parametrize("kind", ["pad", "add4d", "hf"])
def test_mask_fp16(kind, device):
    b, h, h_kv, s_q, s_k, d = 2, 2, 1, 17, 33, 80
    q, k, v = (rand(*s, dtype=torch.float16, device=device, seed=i)
               for i, s in enumerate([(b, h, s_q, d), (b, h_kv, s_k, d), (b, h_kv, s_k, d)]))
    mask = _mask(kind, b, h, s_q, s_k, torch.float16, device)
    compare(lambda *t: A.attention(*t, causal=True, attn_mask=mask),
            lambda *t: ref_attention(*t[:3], True, mask, upcast=t[3]), (q, k, v))


def test_mask_matches_sdpa_where_sdpa_is_defined(device):
    """Where every row has a key, the op is SDPA's: boolean and additive masks, every broadcast shape."""
    b, h, s_q, s_k, d = 2, 3, 9, 21, 32
    q, k, v = rand(b, h, s_q, d, device=device), rand(b, h, s_k, d, device=device, seed=1), \
        rand(b, h, s_k, d, device=device, seed=2)
    for shape in [(s_q, s_k), (1, s_q, s_k), (b, 1, 1, s_k), (b, h, s_q, s_k), (h, 1, s_k), (b, 1, s_q, 1)]:
        keep = torch.rand(*shape, generator=torch.Generator().manual_seed(len(shape))) > 0.3
        keep = keep | (torch.arange(shape[-1]) == 0)  # every row keeps its first key
        for mask in (keep.to(device), torch.randn(*shape).to(device)):
            want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                                  attn_mask=mask if mask.dtype == torch.bool else mask.double())
            got = A.attention(q, k, v, attn_mask=mask)
            assert (got.double() - want).abs().max().item() < 1e-5, (shape, mask.dtype)


def test_fully_masked_rows_are_zero_with_zero_gradients(device):
    """An all-False boolean row, an all -inf additive row: zeros and zero gradients (FlashAttention's
    convention; SDPA returns NaN). A row of finfo.min (Hugging Face's padding) is SDPA's uniform row."""
    b, h, s_q, s_k, d = 1, 2, 5, 7, 32
    q, k, v = (rand(b, h, s, d, device=device, seed=i).requires_grad_() for i, s in enumerate((s_q, s_k, s_k)))
    keep = torch.ones(s_q, s_k, dtype=torch.bool, device=device)
    keep[1] = False
    add = torch.zeros(s_q, s_k, device=device)
    add[3] = float("-inf")
    for mask in (keep, add):
        out = A.attention(q, k, v, attn_mask=mask)
        dead = 1 if mask.dtype == torch.bool else 3
        assert (out[:, :, dead] == 0).all() and torch.isfinite(out).all()
        do = torch.zeros_like(out)
        do[:, :, dead] = 1.0  # a gradient only on the dead row: every input gradient is 0
        gq, gk, gv = torch.autograd.grad(out, (q, k, v), do)
        assert (gq == 0).all() and (gk == 0).all() and (gv == 0).all()
    hf = torch.zeros(s_q, s_k, device=device)
    hf[2] = torch.finfo(torch.float32).min
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=hf.double())
    torch.testing.assert_close(A.attention(q, k, v, attn_mask=hf).double(), want, atol=1e-5, rtol=1e-5)
    assert (A.attention(q, k, v, attn_mask=hf)[:, :, 2] != 0).any()  # uniform over the keys, not zero


def test_mask_non_contiguous(device):
    """[B, S, H, D] storage viewed as [B, H, S, D], a transposed [S_k, S_q] mask, a sliced 5-D mask view."""
    b, s, h, d = 2, 17, 2, 96
    q, k, v = (rand(b, s, h, d, device=device, seed=i).transpose(1, 2) for i in range(3))
    mask = (torch.rand(s, s, generator=torch.Generator().manual_seed(5)) > 0.4).to(device).t()
    mask[:, 0] = True
    assert not q.is_contiguous() and not mask.is_contiguous()
    compare(lambda *t: A.attention(*t, attn_mask=mask), lambda *t: ref_attention(*t[:3], False, mask, upcast=t[3]),
            (q, k, v))
    big = torch.randn(b, 2, h, s, s, device=device)[:, 1]  # strided additive mask
    compare(lambda *t: A.attention(*t, attn_mask=big), lambda *t: ref_attention(*t[:3], False, big, upcast=t[3]),
            (q, k, v), backward=False)


def test_mask_is_read_not_materialised(device, monkeypatch):
    """The mask reaches the kernel as a stride-0 view of the caller's tensor: no [B, H, S_q, S_k] copy."""
    seen, real = [], X._KERNS["attn_fwd_mask"]

    def spy(*args):
        seen.append(args[3])
        return real(*args)

    monkeypatch.setitem(X._KERNS, "attn_fwd_mask", spy)
    q = rand(2, 4, 17, 32, device=device)
    mask = torch.ones(2, 1, 1, 17, dtype=torch.bool, device=device)
    A.attention(q, q, q, attn_mask=mask)
    m = seen[0]
    assert m.shape == (2, 4, 17, 17) and m.stride()[1:3] == (0, 0) and m.data_ptr() == mask.data_ptr()


# ---- variable length ------------------------------------------------------------------------------

def _packed(lens_q, lens_k, h, h_kv, d, dtype, device, seed=0):
    cu = lambda ls: torch.tensor([0] + list(torch.tensor(ls).cumsum(0).tolist()), dtype=torch.int32,  # noqa: E731
                                 device=device)
    q = rand(sum(lens_q), h, d, dtype=dtype, device=device, seed=seed)
    k = rand(sum(lens_k), h_kv, d, dtype=dtype, device=device, seed=seed + 1)
    v = rand(sum(lens_k), h_kv, d, dtype=dtype, device=device, seed=seed + 2)
    return q, k, v, cu(lens_q), cu(lens_k)


def ref_varlen(q, k, v, cu_q, cu_k, causal, upcast=True):
    """Per sequence, [len, H, D] -> [1, H, len, D] math attention, bottom-right causal."""
    outs = []
    a, b = cu_q.tolist(), cu_k.tolist()
    for i in range(len(a) - 1):
        qs, ks, vs = (t[s:e].transpose(0, 1).unsqueeze(0) for t, s, e in
                      ((q, a[i], a[i + 1]), (k, b[i], b[i + 1]), (v, b[i], b[i + 1])))
        off = (b[i + 1] - b[i]) - (a[i + 1] - a[i])
        outs.append(ref_attention(qs, ks, vs, causal, off=off, upcast=upcast)[0].transpose(0, 1))
    return torch.cat(outs)


VARLEN_CASES = [  # (lens_q, lens_k, H, H_kv, D)
    ([5, 17, 1], [5, 17, 1], 2, 2, 32),
    ([17, 0, 33, 1], [23, 3, 30, 40], 4, 2, 80),
    ([100], [100], 2, 1, 96),
]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", VARLEN_CASES, ids=lambda c: f"n{len(c[0])}h{c[2]}kv{c[3]}d{c[4]}")
def test_varlen_fp32(case, causal, device):
    lens_q, lens_k, h, h_kv, d = case
    q, k, v, cu_q, cu_k = _packed(lens_q, lens_k, h, h_kv, d, torch.float32, device)
    compare(lambda *t: A.attention(*t, causal=causal, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k),
            lambda *t: ref_varlen(*t[:3], cu_q, cu_k, causal, upcast=t[3]), (q, k, v))


def test_varlen_fp16_with_max_seqlen_and_strided_qkv(device):
    """q, k, v as slices of one packed [total, 3, H, D] projection; max_seqlen given (FlashAttention's call)."""
    lens = [9, 31, 17]
    qkv = rand(sum(lens), 3, 2, 64, dtype=torch.float16, device=device)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    cu = torch.tensor([0, 9, 40, 57], dtype=torch.int32, device=device)
    assert not q.is_contiguous()
    compare(lambda *t: A.attention(*t, causal=True, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=31,
                                   max_seqlen_k=31),
            lambda *t: ref_varlen(*t[:3], cu, cu, True, upcast=t[3]), (q, k, v))


def test_varlen_matches_padded_batch(device):
    """Packed sequences give what the padded batch with a key-padding mask gives, row for row."""
    lens = [3, 17, 11]
    q, k, v, cu, _ = _packed(lens, lens, 2, 2, 32, torch.float32, device)
    out = A.attention(q, k, v, causal=True, cu_seqlens_q=cu, cu_seqlens_k=cu)
    s = max(lens)
    pad = lambda t: torch.stack([F.pad(t[a:b], (0, 0, 0, 0, 0, s - (b - a))) for a, b in  # noqa: E731
                                 zip(cu[:-1].tolist(), cu[1:].tolist())]).transpose(1, 2)
    keep = (torch.arange(s, device=device)[None, :] < torch.tensor(lens, device=device)[:, None])[:, None, None, :]
    dense = A.attention(pad(q), pad(k), pad(v), causal=True, attn_mask=keep)
    for i, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        torch.testing.assert_close(out[a:b], dense[i, :, : b - a].transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_varlen_bad_cu_seqlens_fail_loudly(device):
    """cu_seqlens the kernels cannot trust (not ending at the packed length, decreasing, a sequence longer
    than max_seqlen) fail a device-side assert instead of reading past a sequence (CPU only: on a GPU the
    assert would poison the CUDA context for the tests after it)."""
    if device == "cuda":
        pytest.skip("a device-side assert poisons the CUDA context")
    q = rand(10, 2, 32, device=device)
    for cu, mx in (([0, 4, 9], None), ([0, 6, 4, 10], None), ([0, 4, 10], 4)):
        c = torch.tensor(cu, dtype=torch.int32, device=device)
        with pytest.raises(RuntimeError, match="cu_seqlens"):
            A.attention(q, q, q, cu_seqlens_q=c, cu_seqlens_k=c, max_seqlen_q=mx, max_seqlen_k=mx)


# ---- decode and head dims -------------------------------------------------------------------------

@pytest.mark.parametrize("h,h_kv,s_k,d,masked", [(8, 2, 100, 32, False), (4, 4, 17, 80, True), (6, 2, 100, 96, True),
                                               (4, 1, 5, 64, False)])
def test_decode_single_query(h, h_kv, s_k, d, masked, device):
    """S_q = 1 against a longer cache (GQA: the group's heads packed as rows), with a padding mask."""
    b = 2
    q, k, v = rand(b, h, 1, d, device=device), rand(b, h_kv, s_k, d, device=device, seed=1), \
        rand(b, h_kv, s_k, d, device=device, seed=2)
    mask = _mask("pad", b, h, 1, s_k, torch.float32, device) if masked else None
    compare(lambda *t: A.attention(*t, attn_mask=mask), lambda *t: ref_attention(*t[:3], False, mask, upcast=t[3]),
            (q, k, v))


@pytest.mark.parametrize("n_split,s_k", [(3, 100), (4, 5), (2, 37)])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_decode_split_keys(n_split, s_k, masked, device, monkeypatch):
    """Flash-decoding: the keys split n ways (uneven chunks; with 5 keys in 4 splits of 2 the last is
    empty), partial outputs combined by their max and sum; the backward is the masked kernels'."""
    monkeypatch.setattr(X, "decode_splits", lambda *a: n_split)
    b, h, h_kv, d = 2, 4, 2, 80
    q, k, v = rand(b, h, 1, d, device=device), rand(b, h_kv, s_k, d, device=device, seed=1), \
        rand(b, h_kv, s_k, d, device=device, seed=2)
    mask = _mask("pad", b, h, 1, s_k, torch.float32, device) if masked else None
    if masked:
        mask[1, ..., : s_k // 2] = False  # a whole split of batch 1 masked out
    compare(lambda *t: A.attention(*t, attn_mask=mask), lambda *t: ref_attention(*t[:3], False, mask, upcast=t[3]),
            (q, k, v))


def test_decode_splits_policy():
    """Split only where the heads leave the GPU short of programs and the cache is long; a power of two."""
    assert X.decode_splits(64, 8, 4, 4096) == 1  # 512 programs already
    assert X.decode_splits(1, 8, 4, 256) == 1  # short cache
    n = X.decode_splits(1, 8, 4, 32768)
    assert n > 1 and n & (n - 1) == 0 and 8 * n >= C.num_sms()


def test_decode_causal_is_sdpa_top_left(device):
    """causal=True with S_q != S_k keeps SDPA's top-left alignment (a single query sees key 0 only)."""
    q, k = rand(1, 2, 1, 32, device=device), rand(1, 2, 9, 32, device=device, seed=1)
    v = rand(1, 2, 9, 32, device=device, seed=2)
    torch.testing.assert_close(A.attention(q, k, v, causal=True), v[:, :, :1])
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(A.attention(q, k, v, causal=True), want)


@pytest.mark.parametrize("d", [1, 8, 32, 80, 96, 112, 160, 200])
def test_any_head_dim(d, device):
    b, h, s = 1, 2, 17
    q, k, v = rand(b, h, s, d, device=device), rand(b, h, s, d, device=device, seed=1), \
        rand(b, h, s, d, device=device, seed=2)
    compare(lambda *t: A.attention(*t, causal=True), lambda *t: ref_attention(*t[:3], True, upcast=t[3]), (q, k, v))


def test_head_dim_fp16(device):
    q, k, v = (rand(1, 2, 33, 80, dtype=torch.float16, device=device, seed=i) for i in range(3))
    compare(lambda *t: A.attention(*t), lambda *t: ref_attention(*t[:3], False, upcast=t[3]), (q, k, v))


# ---- integration ----------------------------------------------------------------------------------

def test_gradcheck_fp64_mask_and_varlen():
    """fp64 finite differences through the op layer with the kernels' eager twins (the kernels themselves
    are fp32: their gradients are checked against fp64 autograd above); first and second order."""
    q, k, v = (rand(1, 1, s, 4, dtype=torch.float64, seed=i).requires_grad_() for i, s in enumerate((3, 4, 4)))
    keep = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    bias = rand(3, 4, dtype=torch.float64, seed=7)
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    with C.eager_kernels():
        for mask in (keep, bias):
            f = lambda *t: A.attention(*t, causal=True, attn_mask=mask)  # noqa: E731
            assert torch.autograd.gradcheck(f, (q, k, v))
            assert torch.autograd.gradgradcheck(f, (q, k, v))
        qv, kv, vv = (rand(5, 2, 4, dtype=torch.float64, seed=10 + i).requires_grad_() for i in range(3))
        f = lambda *t: A.attention(*t, causal=True, cu_seqlens_q=cu, cu_seqlens_k=cu)  # noqa: E731
        assert torch.autograd.gradcheck(f, (qv, kv, vv))


def test_meta_tensors():
    q = torch.empty(2, 4, 17, 80, device="meta")
    k = torch.empty(2, 2, 23, 80, device="meta")
    mask = torch.empty(2, 1, 1, 23, dtype=torch.bool, device="meta")
    assert A.attention(q, k, k, attn_mask=mask).shape == q.shape
    assert A.attention(q[:, :, :1], k, k).shape == (2, 4, 1, 80)
    qv, kv = torch.empty(40, 4, 96, device="meta"), torch.empty(50, 2, 96, device="meta")
    cu = torch.empty(4, dtype=torch.int32, device="meta")
    out = A.attention(qv, kv, kv, True, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=20, max_seqlen_k=25)
    assert out.shape == qv.shape and out.device.type == "meta"


def test_custom_ops_opcheck(device):
    q, k, v = rand(1, 2, 17, 32, device=device), rand(1, 1, 17, 32, device=device, seed=1), \
        rand(1, 1, 17, 32, device=device, seed=2)
    mask = (torch.rand(1, 1, 17, 17) > 0.3).to(device)
    torch.library.opcheck(X.attention_mask_fwd_op.custom, (q, k, v, mask, True, 0.2),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    qv, kv, vv, cu, _ = _packed([5, 12], [5, 12], 2, 1, 32, torch.float32, device)
    torch.library.opcheck(V.attention_varlen_fwd_op.custom, (qv, kv, vv, cu, cu, 16, 16, True, 0.2),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_torch_compile_fullgraph_mask_and_varlen(device):
    q, k, v = (rand(1, 2, 17, 32, device=device, seed=i) for i in range(3))
    mask = (torch.rand(1, 1, 1, 17) > 0.3).to(device)
    qv, kv, vv, cu, _ = _packed([5, 12], [5, 12], 2, 2, 32, torch.float32, device)

    def f(q, k, v, qv, kv, vv):
        a = A.attention(q, k, v, causal=True, attn_mask=mask)
        b = A.attention(qv, kv, vv, causal=True, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=12, max_seqlen_k=12)
        return a.sum() + b.sum() * 2

    c = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves = [t.clone().requires_grad_() for t in (q, k, v, qv, kv, vv)]
    leaves_e = [t.clone().requires_grad_() for t in (q, k, v, qv, kv, vv)]
    c(*leaves).backward()
    f(*leaves_e).backward()
    for a, e in zip(leaves, leaves_e):
        torch.testing.assert_close(a.grad, e.grad)


# ---- supports() and bad inputs ----------------------------------------------------------------------

def test_supports_names_the_argument():
    q = torch.randn(1, 2, 5, 32)
    ok = A.supports(q, q, q, attn_mask=torch.ones(5, 5, dtype=torch.bool))
    assert ok == (True, "")
    assert A.supports(q, q, q, dropout_p=0.1)[0] is False and "dropout_p" in A.supports(q, q, q, dropout_p=0.1)[1]
    m = torch.zeros(5, 5, requires_grad=True)
    assert A.supports(q, q, q, attn_mask=m)[0] is False and "requires grad" in A.supports(q, q, q, attn_mask=m)[1]
    with torch.no_grad():
        assert A.supports(q, q, q, attn_mask=m) == (True, "")
    qv, cu = torch.randn(5, 2, 32), torch.tensor([0, 5], dtype=torch.int32)
    bad = A.supports(qv, qv, qv, attn_mask=torch.ones(5, 5, dtype=torch.bool), cu_seqlens_q=cu, cu_seqlens_k=cu)
    assert bad[0] is False and "attn_mask" in bad[1]
    assert A.supports(qv, qv, qv, cu_seqlens_q=cu, cu_seqlens_k=cu) == (True, "")
    assert "head dim 300" in A.supports(*(torch.randn(1, 1, 2, 300),) * 3)[1]


@pytest.mark.parametrize("bad,match", [
    (lambda q: A.attention(q, q, q, attn_mask=torch.ones(5, 4, dtype=torch.bool)), "'attn_mask' has shape"),
    (lambda q: A.attention(q, q, q, attn_mask=torch.ones(3, 1, 5, 5, dtype=torch.bool)), "'attn_mask' has shape"),
    (lambda q: A.attention(q, q, q, attn_mask=torch.ones(5, 5, dtype=torch.int32)), "'attn_mask' has dtype"),
    (lambda q: A.attention(q, q, q, attn_mask=[[True]]), "'attn_mask' must be a torch.Tensor"),
    (lambda q: A.attention(q, q, q, attn_mask=torch.zeros(5, 5, requires_grad=True)), "requires grad"),
    (lambda q: A.attention(*(torch.randn(1, 1, 5, 257),) * 3), "head dim 257"),
    (lambda q: A.attention(q[0], q[0], q[0], cu_seqlens_q=torch.tensor([0, 2], dtype=torch.int32)),
     "'cu_seqlens_k' is missing"),
    (lambda q: A.attention(q[0], q[0], q[0], cu_seqlens_q=torch.tensor([0, 2]), cu_seqlens_k=torch.tensor([0, 2])),
     "'cu_seqlens_q' must be a 1-D int32"),
    (lambda q: A.attention(q, q, q, cu_seqlens_q=torch.tensor([0, 2], dtype=torch.int32),
                           cu_seqlens_k=torch.tensor([0, 2], dtype=torch.int32)), "'q' must be 3-D"),
    (lambda q: A.attention(q, q, q, max_seqlen_q=4), "'max_seqlen_q' is given without"),
    (lambda q: A.attention(q[0], q[0], q[0], cu_seqlens_q=torch.tensor([0, 2], dtype=torch.int32),
                           cu_seqlens_k=torch.tensor([0, 1, 2], dtype=torch.int32)), "same length"),
])
def test_bad_inputs(bad, match):
    q = torch.randn(1, 2, 5, 32)
    with pytest.raises(InputError, match=match):
        bad(q)


# ---- sm_90 code -----------------------------------------------------------------------------------

def test_sm90_compile_mask_and_varlen_kernels():
    """Each new kernel with its default bf16 config builds for Hopper with wgmma and fits the H100's
    227 KiB of shared memory (D = 80 padded to 128, D = 256; a boolean and an additive mask; causal)."""
    from helion_ops.dsl.backends.triton import compile_specs_for_target

    specs, names = [], []
    for d, causal, mdt in ((80, True, torch.bool), (256, False, torch.bfloat16)):
        q, k, st = torch.empty(2, 4, 1000, d, dtype=torch.bfloat16), torch.empty(2, 2, 1000, d, dtype=torch.bfloat16), \
            torch.empty(2, 4, 1000)
        mask = torch.empty(2, 1, 1, 1000, dtype=mdt).expand(2, 4, 1000, 1000)
        q4 = torch.empty(3000, 4, d, dtype=torch.bfloat16).unsqueeze(0).transpose(1, 2)
        k4 = torch.empty(3000, 2, d, dtype=torch.bfloat16).unsqueeze(0).transpose(1, 2)
        st4, cu = torch.empty(1, 4, 3000), torch.empty(5, dtype=torch.int32)
        kernels = {"attn_fwd_mask": (q, k, k, mask, causal, 0.1),
                   "attn_bwd_dkdv_mask": (q, k, k, mask, q, st, st, st, causal, 0.1),
                   "attn_bwd_dq_mask": (q, k, k, mask, q, st, st, st, causal, 0.1),
                   "attn_fwd_varlen": (q4, k4, k4, cu, cu, 1024, 1024, causal, 0.1),
                   "attn_bwd_dkdv_varlen": (q4, k4, k4, q4, st4, st4, st4, cu, cu, 1024, 1024, causal, 0.1),
                   "attn_bwd_dq_varlen": (q4, k4, k4, q4, st4, st4, st4, cu, cu, 1024, 1024, causal, 0.1),
                   "attn_fwd_split": (q[:, :2, :4], k, k, mask[:, :2, :4], 8, 0.1),
                   "attn_split_combine": (torch.empty(2, 2, 4, 8, d), torch.empty(2, 2, 4, 8),
                                          torch.empty(2, 2, 4, 8), q[:, :2, :4])}
        for name, args in kernels.items():
            mod = V if "varlen" in name else X
            cfg = mod._KERNS[name].config_for(*args)
            specs += mod.KERNELS[name].bind(args).compile_specs(cfg)
            names.append((name, d, causal))
    built = compile_specs_for_target(specs, ("cuda", 90, 32))
    assert len(built) == len(names)
    for name, kb in zip(names, built):
        assert kb.metadata["shared"] <= 232448, (name, kb.metadata["shared"])
        if name[0] not in ("attn_fwd_split", "attn_split_combine"):  # decode's 16-row blocks: mma.sync
            assert "wgmma" in kb.asm["ptx"], name


def test_plain_path_runs_the_plain_kernels(device, monkeypatch):
    """Without a mask or cu_seqlens (decode against a short cache included) no kernel of _attention_masked or
    _attention_varlen runs: the plain kernels, their tuned table and their generated code are what they were."""
    def boom(*args):
        raise AssertionError("a mask or varlen kernel ran on the plain path")

    for kerns in (X._KERNS, V._KERNS):
        for name in kerns:
            monkeypatch.setitem(kerns, name, boom)
    q, k = rand(1, 4, 17, 80, device=device), rand(1, 2, 17, 80, device=device, seed=1)
    A.attention(q, k, k, causal=True)
    A.attention(q[:, :, :1], k, k)


# ---- GPU ------------------------------------------------------------------------------------------

def _sdpa_check(out, want, ref):
    """bf16 on the GPU: ours within 2x SDPA's own bf16 error against the fp32 reference, plus a floor."""
    err = (out.float() - ref).abs().max().item()
    err_sdpa = (want.float() - ref).abs().max().item()
    assert torch.isfinite(out).all()
    assert err <= 2 * err_sdpa + 1e-2 * max(1.0, ref.abs().max().item()), (err, err_sdpa)


@pytest.mark.gpu
@pytest.mark.parametrize("s", [1, 17, 1000, 4097])
@pytest.mark.parametrize("d", [80, 96])
@pytest.mark.parametrize("kind", ["none", "pad", "hf", "add4d"])
def test_mask_bf16_gpu(kind, d, s, device):
    """bf16 against SDPA, forward and backward: head dims 80 and 96, GQA, S 1 (decode) to 4097."""
    if kind == "add4d" and s > 1000:
        pytest.skip("a [B, H, S, S] bias at S=4097 adds 0.5 GB and minutes of fp32 reference for no new path")
    b, h, h_kv = 2, 8, 2
    q, k, v = (rand(b, hh, s, d, dtype=torch.bfloat16, device=device, seed=i).requires_grad_()
               for i, hh in enumerate((h, h_kv, h_kv)))
    mask = None if kind == "none" else _mask(kind, b, h, s, s, torch.bfloat16, device)
    if mask is not None and mask.dtype == torch.bool:
        mask[..., 0] = True  # SDPA is NaN on a row with no key
    elif mask is not None:
        mask[..., 0] = 0.0
    causal = kind == "none" and s > 1
    out = A.attention(q, k, v, causal=causal, attn_mask=mask)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask.float()
                                         if mask is not None and mask.is_floating_point() else mask,
                                         is_causal=causal, enable_gqa=True)
    _sdpa_check(out, want, ref)
    do = torch.randn_like(out)
    for g, gw, gr in zip(torch.autograd.grad(out, (q, k, v), do), torch.autograd.grad(want, (q, k, v), do),
                         torch.autograd.grad(ref, (q, k, v), do.float())):
        _sdpa_check(g, gw, gr)


@pytest.mark.gpu
@pytest.mark.parametrize("lens", [[1, 17, 1000], [4097, 3, 200]], ids=["short", "long"])
@pytest.mark.parametrize("d", [80, 96, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_varlen_bf16_gpu(lens, d, causal, device):
    q, k, v, cu, _ = _packed(lens, lens, 8, 2, d, torch.bfloat16, device)
    out = A.attention(q, k, v, causal=causal, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=max(lens),
                      max_seqlen_k=max(lens))
    outs_w, outs_r = [], []
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qs, ks, vs = (t[a:b].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        outs_w.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal, enable_gqa=True)[0].transpose(0, 1))
        outs_r.append(F.scaled_dot_product_attention(qs.float(), ks.float(), vs.float(), is_causal=causal,
                                                     enable_gqa=True)[0].transpose(0, 1))
    _sdpa_check(out, torch.cat(outs_w), torch.cat(outs_r))


@pytest.mark.gpu
@pytest.mark.parametrize("s_k", [17, 1000, 4097, 32768])
@pytest.mark.parametrize("d", [80, 96, 128])
def test_decode_bf16_gpu(s_k, d, device):
    b, h, h_kv = 4, 32, 8
    q = rand(b, h, 1, d, dtype=torch.bfloat16, device=device)
    k, v = (rand(b, h_kv, s_k, d, dtype=torch.bfloat16, device=device, seed=i) for i in (1, 2))
    mask = _mask("pad", b, h, 1, s_k, torch.bfloat16, device)
    for m in (None, mask):
        out = A.attention(q, k, v, attn_mask=m)
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=m, enable_gqa=True)
        _sdpa_check(out, want, ref)
