"""Bad input: one row per case. Every public op (and a @kernel call) validates device, dtype, rank,
shape agreement and index range, and raises a helion_ops error type (a subclass of the matching builtin)
whose message names the argument and the expectation. Bad input is never a fallback case: the rows run
with HELION_OPS_STRICT=0, and no FallbackWarning may appear.
"""
from __future__ import annotations

import math
import re
import warnings

import pytest
import torch

import helion_ops
from helion_ops import errors as E
from helion_ops.ops import softmax as S

sm, ln, rn, mm, gg, at = (helion_ops.softmax, helion_ops.layer_norm, helion_ops.rms_norm, helion_ops.matmul,
                          helion_ops.grouped_gemm, helion_ops.attention)


def r(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, dtype=dtype) if device == "cpu" else torch.empty(*shape, dtype=dtype, device=device)


def qkv(hq=2, hkv=2, d=64, s=5, dtype=torch.float32):
    return r(1, hq, s, d, dtype=dtype), r(1, hkv, s, d, dtype=dtype), r(1, hkv, s, d, dtype=dtype)


def offs(*v, dtype=torch.int32):
    return torch.tensor(v, dtype=dtype)


def no_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def _kernel_missing_arg():
    S.softmax_fwd()


def _kernel_mixed_devices():
    from helion_ops.ops import rms_norm as R
    R.rms_norm_fwd(r(3, 8), torch.empty(8, device="meta"), 1e-6)


# (id, call, error type, argument named in the message, expectation regex in the message[, setup])
CASES = [
    # ---- softmax
    ("softmax/not-a-tensor", lambda: sm([[1.0, 2.0]]), E.ArgumentTypeError, "input", "torch.Tensor"),
    ("softmax/int-dtype", lambda: sm(torch.ones(3, 4, dtype=torch.int32)), E.DtypeError, "input", "float32"),
    ("softmax/dim-out-of-range", lambda: sm(r(3, 4), dim=2), E.ShapeError, "dim", r"-2 <= dim < 2"),
    ("softmax/dim-not-int", lambda: sm(r(3, 4), dim=1.0), E.ArgumentTypeError, "dim", "int"),
    ("softmax/dtype-arg-int", lambda: sm(r(3, 4), dtype=torch.int64), E.DtypeError, "dtype", "float16"),
    ("softmax/cpu-without-interpreter", lambda: sm(r(3, 4)), E.DeviceError, "input", "CUDA", no_interpreter),
    # ---- layer_norm
    ("layer_norm/normalized_shape-mismatch", lambda: ln(r(3, 8), (7,)), E.ShapeError, "normalized_shape",
     "trailing dims"),
    ("layer_norm/normalized_shape-not-ints", lambda: ln(r(3, 8), ("8",)), E.ArgumentTypeError,
     "normalized_shape", "sequence of ints"),
    ("layer_norm/weight-shape", lambda: ln(r(3, 8), (8,), r(4)), E.ShapeError, "weight", r"normalized_shape \[8\]"),
    ("layer_norm/weight-not-a-tensor", lambda: ln(r(3, 8), (8,), [1.0] * 8), E.ArgumentTypeError, "weight",
     "torch.Tensor"),
    ("layer_norm/bias-dtype", lambda: ln(r(3, 8), (8,), r(8), r(8, dtype=torch.float16)), E.DtypeError, "bias",
     "must match"),
    ("layer_norm/weight-device", lambda: ln(r(3, 8), (8,), r(8, device="meta")), E.DeviceError, "weight",
     "one device"),
    ("layer_norm/eps-not-a-number", lambda: ln(r(3, 8), (8,), eps="1e-5"), E.ArgumentTypeError, "eps", "float"),
    ("layer_norm/cpu-without-interpreter", lambda: ln(r(3, 8), (8,)), E.DeviceError, "input", "CUDA",
     no_interpreter),
    # ---- rms_norm
    ("rms_norm/float64", lambda: rn(r(3, 8, dtype=torch.float64), (8,)), E.DtypeError, "input", "bfloat16"),
    ("rms_norm/weight-rank", lambda: rn(r(3, 8), (8,), r(1, 8)), E.ShapeError, "weight", "normalized_shape"),
    ("rms_norm/normalized_shape-longer-than-rank", lambda: rn(r(8), (2, 8)), E.ShapeError, "normalized_shape",
     "trailing dims"),
    ("rms_norm/eps-not-a-number", lambda: rn(r(3, 8), (8,), eps=[1e-6]), E.ArgumentTypeError, "eps", "float"),
    ("rms_norm/weight-dtype", lambda: rn(r(3, 8), (8,), r(8, dtype=torch.float16)), E.DtypeError, "weight",
     "must match"),
    # ---- matmul
    ("matmul/a-not-a-tensor", lambda: mm(1.0, r(4, 4)), E.ArgumentTypeError, "a", "torch.Tensor"),
    ("matmul/a-rank-1", lambda: mm(r(4), r(4, 4)), E.ShapeError, "a", "at least 2 dims"),
    ("matmul/b-rank-3", lambda: mm(r(4, 4), r(2, 4, 4)), E.ShapeError, "b", "2-D"),
    ("matmul/K-mismatch", lambda: mm(r(4, 5), r(4, 4)), E.ShapeError, "b", "K mismatch"),
    ("matmul/b-dtype-mismatch", lambda: mm(r(4, 4), r(4, 4, dtype=torch.float16)), E.DtypeError, "b",
     "must match"),
    ("matmul/a-int-dtype", lambda: mm(torch.ones(4, 4, dtype=torch.int64), torch.ones(4, 4, dtype=torch.int64)),
     E.DtypeError, "a", "supported"),
    ("matmul/bias-shape", lambda: mm(r(4, 4), r(4, 6), bias=r(4)), E.ShapeError, "bias", r"shape \(6,\)"),
    ("matmul/bias-dtype", lambda: mm(r(4, 4), r(4, 6), bias=torch.ones(6, dtype=torch.int32)), E.DtypeError,
     "bias", "float32"),
    ("matmul/activation", lambda: mm(r(4, 4), r(4, 4), activation="tanh"), E.InputError, "activation",
     "one of"),
    ("matmul/b-device", lambda: mm(r(4, 4), r(4, 4, device="meta")), E.DeviceError, "b", "is on meta"),
    ("matmul/cpu-without-interpreter", lambda: mm(r(4, 4), r(4, 4)), E.DeviceError, "a", "CUDA",
     no_interpreter),
    # ---- grouped_gemm
    ("grouped_gemm/x-rank-3", lambda: gg(r(2, 4, 8), r(2, 8, 4), offs(2, 4)), E.ShapeError, "x", "2-D"),
    ("grouped_gemm/w-rank-2", lambda: gg(r(4, 8), r(8, 4), offs(2, 4)), E.ShapeError, "w", "3-D"),
    ("grouped_gemm/offsets-float", lambda: gg(r(4, 8), r(2, 8, 4), torch.tensor([2.0, 4.0])), E.DtypeError,
     "offsets", "int32"),
    ("grouped_gemm/offsets-length", lambda: gg(r(4, 8), r(2, 8, 4), offs(4)), E.ShapeError, "offsets",
     "G=2 groups"),
    ("grouped_gemm/offsets-unsorted", lambda: gg(r(4, 8), r(2, 8, 4), offs(3, 2)), E.InputError, "offsets",
     "non-decreasing"),
    ("grouped_gemm/offsets-end", lambda: gg(r(4, 8), r(2, 8, 4), offs(2, 5)), E.InputError, "offsets",
     "end at M_total = 4"),
    ("grouped_gemm/K-mismatch", lambda: gg(r(4, 8), r(2, 7, 4), offs(2, 4)), E.ShapeError, "w", "K mismatch"),
    ("grouped_gemm/w-dtype", lambda: gg(r(4, 8), r(2, 8, 4, dtype=torch.float16), offs(2, 4)), E.DtypeError,
     "w", "must match"),
    ("grouped_gemm/rows-over-int32", lambda: gg(r(1, 8).expand(2**31, 8), r(1, 8, 4), offs(2**31 - 1)),
     E.IndexOverflowError, "x", r"2\*\*31 - 1"),
    ("grouped_gemm/cpu-without-interpreter", lambda: gg(r(4, 8), r(2, 8, 4), offs(2, 4)), E.DeviceError, "x",
     "CUDA", no_interpreter),
    # ---- attention
    ("attention/q-rank-3", lambda: at(r(2, 5, 64), *qkv()[1:]), E.ShapeError, "q", "4-D"),
    ("attention/head-dim", lambda: at(*qkv(d=300)), E.ShapeError, "q", r"head dims are 1\.\.256"),
    ("attention/gqa-heads", lambda: at(*qkv(hq=3, hkv=2)), E.ShapeError, "k", "H % H_kv == 0"),
    ("attention/k-v-shape", lambda: at(qkv()[0], qkv()[1], r(1, 2, 6, 64)), E.ShapeError, "v", "same shape"),
    ("attention/k-dtype", lambda: at(qkv()[0], *qkv(dtype=torch.float16)[1:]), E.DtypeError, "k",
     "same dtype"),
    ("attention/attn_mask-grad", lambda: at(*qkv(), attn_mask=torch.zeros(5, 5, requires_grad=True)),
     E.InputError, "attn_mask", "requires grad"),
    ("attention/attn_mask-shape", lambda: at(*qkv(), attn_mask=torch.ones(4, 5, dtype=torch.bool)), E.ShapeError,
     "attn_mask", "does not broadcast"),
    ("attention/attn_mask-dtype", lambda: at(*qkv(), attn_mask=torch.ones(5, 5, dtype=torch.int64)), E.DtypeError,
     "attn_mask", "bool"),
    ("attention/cu_seqlens-dtype", lambda: at(*(t[0] for t in qkv()), cu_seqlens_q=torch.tensor([0, 2]),
                                              cu_seqlens_k=torch.tensor([0, 2])), E.ShapeError, "cu_seqlens_q", "int32"),
    ("attention/mask-with-cu_seqlens", lambda: at(*(t[0] for t in qkv()), attn_mask=torch.ones(2, 2, dtype=torch.bool),
                                                  cu_seqlens_q=torch.tensor([0, 2], dtype=torch.int32),
                                                  cu_seqlens_k=torch.tensor([0, 2], dtype=torch.int32)),
     E.InputError, "attn_mask", "cu_seqlens"),
    ("attention/dropout", lambda: at(*qkv(), dropout_p=0.1), E.InputError, "dropout_p", "must be 0"),
    ("attention/causal-not-bool", lambda: at(*qkv(), causal="yes"), E.ArgumentTypeError, "causal", "bool"),
    ("attention/scale-nan", lambda: at(*qkv(), scale=math.nan), E.InputError, "scale", "finite"),
    ("attention/cpu-without-interpreter", lambda: at(*qkv()), E.DeviceError, "q", "CUDA", no_interpreter),
    # ---- @kernel calls
    ("kernel/missing-argument", _kernel_missing_arg, E.InputError, "x", "missing a required argument"),
    ("kernel/mixed-devices", _kernel_mixed_devices, E.InputError, "weight", "different devices"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, monkeypatch):
    name, call, etype, arg, expect = case[:5]
    monkeypatch.setenv("HELION_OPS_STRICT", "0")  # bad input must raise even where fallback is allowed
    if len(case) > 5:
        case[5](monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", E.FallbackWarning)
        with pytest.raises(etype) as ei:
            call()
    msg = str(ei.value)
    assert isinstance(ei.value, E.HelionOpsError) and isinstance(ei.value, E.InputError)
    assert re.search(rf"'{arg}'|\b{arg}: ", msg), f"{name}: message does not name argument '{arg}': {msg}"
    assert re.search(expect, msg), f"{name}: message does not state the expectation /{expect}/: {msg}"


def test_table_size():
    assert len(CASES) >= 25
    assert {c[0].split("/")[0] for c in CASES} >= set(helion_ops.OPS) | {"kernel"}


def test_error_types_subclass_the_builtins():
    """torch-style except clauses keep working."""
    assert issubclass(E.InputError, ValueError)
    assert issubclass(E.DtypeError, TypeError) and issubclass(E.ArgumentTypeError, TypeError)
    assert issubclass(E.IndexOverflowError, OverflowError)
    assert issubclass(E.LaunchError, RuntimeError)
    for t in (E.DtypeError, E.DeviceError, E.ShapeError, E.IndexOverflowError, E.ArgumentTypeError):
        assert issubclass(t, E.InputError) and issubclass(t, E.HelionOpsError)
    with pytest.raises(TypeError):
        helion_ops.softmax(torch.ones(2, 2, dtype=torch.int32))
    with pytest.raises(ValueError):
        helion_ops.matmul(torch.randn(4, 5), torch.randn(4, 4))


# ---- index overflow: sizes past 2**31 switch the kernels to int64 indexing (no silent wrap) -------

def _bindings(big: bool):
    """(name, kernel, meta args) per catalog kernel; with ``big``, tensors of more than 2**31 elements
    (meta tensors: no memory), else small ones of the same ranks."""
    from helion_ops.ops import attention as A, grouped_gemm as G, layer_norm as L, matmul as M, rms_norm as R
    f16 = dict(dtype=torch.float16, device="meta")
    rows, n = (2**16 + 3, 2**15 + 8) if big else (37, 72)
    m, k = (2**17 + 5, 2**14 + 8) if big else (37, 72)
    s_q = 2**15 + 1 if big else 33
    x, w = torch.empty(rows, n, **f16), torch.empty(n, **f16)
    a, b = torch.empty(m, k, **f16), torch.empty(k, 64, **f16)
    q = torch.empty(1, 2**9 if big else 2, s_q, 128, **f16)
    return [
        ("softmax_fwd", S.softmax_fwd, (x,)),
        ("rms_norm_fwd", R.rms_norm_fwd, (x, w, 1e-6)),
        ("layer_norm_fwd", L.layer_norm_fwd, (x, w, w, 1e-5)),
        ("matmul_kernel", M.matmul_kernel, (a, b, None, None, False, False)),
        ("grouped_gemm_kernel", G.grouped_gemm_kernel,
         (a, torch.empty(2, k, 64, **f16), torch.empty(2, dtype=torch.int32, device="meta"), False)),
        ("attn_fwd", A.attn_fwd, (q, q, q, False, 0.1)),
    ]


@pytest.mark.parametrize("i", range(6), ids=[b[0] for b in _bindings(False)])
def test_index_math_switches_to_int64(i):
    """Generated code for inputs over 2**31 elements computes program ids and offsets in int64; for small
    inputs it does not (the switch is automatic, not always on)."""
    name, kernel, args = _bindings(True)[i]
    bound = kernel.bind(args)
    code = bound.to_triton_code(bound.default_config())
    assert "program_id(0).to(tl.int64)" in code and ".to(tl.int64)" in code, f"{name}: int32 index math"
    _, kernel, small = _bindings(False)[i]
    sb = kernel.bind(small)
    assert "program_id(0).to(tl.int64)" not in sb.to_triton_code(sb.default_config()), name
