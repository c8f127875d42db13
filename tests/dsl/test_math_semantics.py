"""Elementwise math against torch's semantics on inputs that tell them apart: pow with negative bases,
integral and fractional exponents and zero (exp2/log2 alone gives NaN there), integer and negative constant
powers, fmod (truncated, like C) against remainder (floored), round half to even, sign (0 for NaN, as
torch's), lerp, hypot, the abs builtin; each also builds for sm_90. NaN through max and min, elementwise
and reduced: torch propagates it, Triton's defaults drop it on the GPU (the interpreter, on numpy,
propagates it either way, so the CPU check is the generated PTX)."""
import re

import pytest
import torch

import helion_ops.dsl as helion
from tests.dsl.source_kernels import kernel_from_source

CASES = {  # name: (device expression over x, y; torch reference; operand kind)
    "pow": ("x ** y", lambda x, y: x ** y, "pow"),
    "pow_int_const": ("x ** 4", lambda x, y: x ** 4, "int"),
    "pow_neg_const": ("x ** -3", lambda x, y: x ** -3, "float"),
    "pow_scalar_base": ("2 ** y", lambda x, y: 2 ** y, "float"),
    "fmod_float": ("torch.fmod(x, y)", torch.fmod, "float"),
    "fmod_int": ("torch.fmod(x, y)", torch.fmod, "int"),
    "remainder_float": ("torch.remainder(x, y)", torch.remainder, "float"),
    "round_ties": ("torch.round(x)", lambda x, y: torch.round(x), "ties"),
    "round_method": ("(x * 1.5).round()", lambda x, y: (x * 1.5).round(), "float"),
    "sign_float": ("torch.sign(x)", lambda x, y: torch.sign(x), "nan"),
    "sign_int": ("torch.sign(x)", lambda x, y: torch.sign(x), "int"),
    "lerp": ("torch.lerp(x, y, 0.75)", lambda x, y: torch.lerp(x, y, 0.75), "float"),
    "hypot": ("torch.hypot(x, y)", torch.hypot, "float"),
    "abs_builtin": ("abs(x)", lambda x, y: x.abs(), "int"),
    "maximum_nan": ("torch.maximum(x, y)", torch.maximum, "nan"),
    "minimum_nan": ("torch.minimum(y, x)", lambda x, y: torch.minimum(y, x), "nan"),
    "max_builtin_nan": ("max(x, y)", torch.maximum, "nan"),
    "relu_nan": ("torch.relu(x)", lambda x, y: torch.relu(x), "nan"),
    "clamp_nan": ("torch.clamp(x, -1.0, 1.0)", lambda x, y: torch.clamp(x, -1.0, 1.0), "nan"),
    "softplus_nan": ("torch.nn.functional.softplus(x)", lambda x, y: torch.nn.functional.softplus(x), "nan"),
}
NAN_CASES = sorted(k for k in CASES if k.endswith("_nan"))


def _operands(kind: str, n: int):
    g = torch.Generator().manual_seed(n)
    if kind == "int":
        x = torch.randint(-9, 10, (n,), generator=g, dtype=torch.int32)
        y = torch.randint(1, 5, (n,), generator=g, dtype=torch.int32) * (1 - 2 * (torch.arange(n) % 2)).int()
        return x, y
    x = torch.randn(n, generator=g) * 4
    y = torch.randn(n, generator=g) * 2
    if kind == "pow":  # negative bases with integral exponents, a fractional one, and zero exponents
        y = torch.randint(-3, 4, (n,), generator=g).float()
        y[::5] = 0.5
        x[::7] = 0.0
    elif kind == "ties":
        x = torch.randint(-8, 8, (n,), generator=g).float() / 2  # ..., -0.5, 0.5, 1.5, 2.5, ...
    elif kind == "nan":
        x[::4] = float("nan")
        x[1::4] = 0.0
    return x, y


def _kernel(tmp_path, name: str, expr: str, out_dtype: torch.dtype):
    return kernel_from_source(
        tmp_path / f"k_{name}.py",
        "@helion.kernel(autotune_effort='none')\n"
        "def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:\n"
        f"    out = torch.empty(a.shape, dtype={out_dtype}, device=a.device)\n"
        "    for t in hl.tile(a.size(0)):\n"
        "        x, y = a[t], b[t]\n"
        f"        out[t] = {expr}\n"
        "    return out\n")


@pytest.mark.parametrize("n", [17, 1000])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch(tmp_path, name, n, device):
    expr, ref, kind = CASES[name]
    x, y = _operands(kind, n)
    want = ref(x, y)
    k = _kernel(tmp_path, name, expr, want.dtype)
    got = k(x.to(device), y.to(device)).cpu()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", ["pow", "round_ties", "sign_float", "fmod_int", "pow_int_const"])
def test_builds_for_sm90(tmp_path, name, device):
    expr, ref, kind = CASES[name]
    x, y = (t.to(device) for t in _operands(kind, 64))
    k = _kernel(tmp_path, name, expr, ref(x, y).dtype)
    b = k.bind((x, y))
    assert b.compile_for_target(b.config, ("cuda", 90, 32))


def test_integer_power_needs_a_small_constant(tmp_path, device):
    from helion_ops.dsl import exc
    x, y = (t.to(device) for t in _operands("int", 16))
    with pytest.raises(exc.NotSupported, match="integer power"):
        _kernel(tmp_path, "bad_pow", "x ** y", torch.int32)(x, y)


_ROW_REDUCE = """@helion.kernel
def k(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty([x.size(0), 2], dtype=x.dtype, device=x.device)
    for t in hl.tile(x.size(0)):
        row = x[t, :]
        out[t, 0] = torch.amax(row, dim=1)
        out[t, 1] = torch.amin(row, dim=1)
    return out
"""


def _rows_with_nan(n: int, device) -> torch.Tensor:
    x = torch.randn(6, n, generator=torch.Generator().manual_seed(n))
    x[1, n // 2] = float("nan")
    x[4, -1] = float("nan")
    return x.to(device)


def _reduce_configs():
    return [helion.Config(block_sizes=[2]), helion.Config(block_sizes=[2], reduction_loops=[16])]


def _check_row_reduce(tmp_path, n, device):
    x = _rows_with_nan(n, device)
    k = kernel_from_source(tmp_path / "k_rows.py", _ROW_REDUCE)
    want = torch.stack([x.cpu().amax(1), x.cpu().amin(1)], 1)
    for cfg in _reduce_configs():  # whole rows, and rows in chunks of 16 (a running max/min)
        got = k.bind((x,)).run(k.bind((x,)).normalize(cfg), x).cpu()
        torch.testing.assert_close(got, want, equal_nan=True)


@pytest.mark.parametrize("n", [17, 1000])
def test_row_max_min_propagate_nan(tmp_path, n, device):
    _check_row_reduce(tmp_path, n, device)


def test_float_max_min_build_nan_propagating_ptx(tmp_path, device):
    """Every float max and min, elementwise or reduced (whole rows or chunked), is max.NaN / min.NaN in
    the sm_90 PTX; fails on code that uses Triton's defaults (max.f32 drops NaN on the GPU)."""
    x, y = (t.to(device) for t in _operands("nan", 64))
    ptx = []
    for name in NAN_CASES:
        b = _kernel(tmp_path, name, CASES[name][0], torch.float32).bind((x, y))
        ptx += [r.asm["ptx"] for r in b.compile_for_target(b.config, ("cuda", 90, 32))]
    rows = torch.randn(6, 100, device=device)
    b = kernel_from_source(tmp_path / "k_rows.py", _ROW_REDUCE).bind((rows,))
    for cfg in _reduce_configs():
        ptx += [r.asm["ptx"] for r in b.compile_for_target(b.normalize(cfg), ("cuda", 90, 32))]
    text = "\n".join(ptx)
    assert re.search(r"\bmax\.NaN\.f32", text) and re.search(r"\bmin\.NaN\.f32", text)
    assert not re.search(r"\b(max|min)\.f32", text), re.findall(r".*\b(?:max|min)\.f32.*", text)[:3]


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAN_CASES)
def test_nan_through_max_min_on_gpu(tmp_path, name, device):
    expr, ref, kind = CASES[name]
    x, y = _operands(kind, 1000)
    got = _kernel(tmp_path, name, expr, torch.float32)(x.to(device), y.to(device)).cpu()
    torch.testing.assert_close(got, ref(x, y), rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.gpu
def test_row_max_min_propagate_nan_on_gpu(tmp_path, device):
    _check_row_reduce(tmp_path, 1000, device)
