"""torch.max/min(x, dim) as a (values, indices) pair, torch.logsumexp (max-shifted; an all -inf row gives -inf),
count_nonzero, nansum and vector norms (p = 1, 2) in device code, against torch on odd row lengths and a
strided view; integer sums and products in int64 and the dtype= argument, as torch's."""
import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl


@helion.kernel(autotune_effort="none")
def row_stats(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty([x.size(0), 7], dtype=torch.float32, device=x.device)
    for t in hl.tile(x.size(0)):
        v = x[t, :]
        mx = torch.max(v, 1)
        mn = v.min(dim=1)
        out[t, 0] = mx.values
        out[t, 1] = mx[1].to(torch.float32)
        out[t, 2] = mn[0]
        out[t, 3] = mn.indices.to(torch.float32)
        out[t, 4] = torch.logsumexp(v, 1)
        out[t, 5] = v.count_nonzero(1).to(torch.float32)
        out[t, 6] = torch.where(v > 0.5, float("nan"), v).nansum(1)
    return out


def _ref(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.max(1).values, x.argmax(1).float(), x.min(1).values, x.argmin(1).float(),
                        torch.logsumexp(x, 1), x.count_nonzero(1).float(),
                        torch.where(x > 0.5, float("nan"), x).nansum(1)], dim=1)


@pytest.mark.parametrize("cols", [1, 17, 1000])
def test_row_stats(cols, device):
    x = torch.randn(9, 2 * cols, device=device)[:, ::2]
    x[:, ::3] = 0.0  # zeros for count_nonzero, ties for argmax/argmin
    x[4] = float("-inf")  # logsumexp of an all -inf row is -inf; max/min of it -inf
    torch.testing.assert_close(row_stats(x), _ref(x), rtol=1e-5, atol=1e-5)


@helion.kernel(autotune_effort="none")
def row_norms(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty([x.size(0), 4], dtype=torch.float32, device=x.device)
    for t in hl.tile(x.size(0)):
        v = x[t, :]
        out[t, 0] = torch.norm(v, dim=1)
        out[t, 1] = torch.linalg.vector_norm(v, ord=1, dim=1)
        out[t, 2] = torch.linalg.vector_norm(v, 2, 1)
        out[t, 3] = torch.norm(v, 2, 1, keepdim=True).sum(1)
    return out


@pytest.mark.parametrize("cols", [1, 17, 1000])
def test_vector_norms(cols, device):
    x = torch.randn(9, 2 * cols, device=device)[:, ::2]
    want = torch.stack([x.norm(dim=1), x.abs().sum(1), x.norm(dim=1), x.norm(dim=1)], dim=1)
    torch.testing.assert_close(row_norms(x), want, rtol=1e-5, atol=1e-5)


@helion.kernel(autotune_effort="none")
def int_sums(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty([x.size(0), 5], dtype=torch.int64, device=x.device)
    for t in hl.tile(x.size(0)):
        v = x[t, :]
        out[t, 0] = v.sum(1)
        out[t, 1] = torch.sum(v > 0, dim=1)
        out[t, 2] = torch.sum(v, 1, dtype=torch.int32).to(torch.int64)
        out[t, 3] = v.count_nonzero(1)
        out[t, 4] = torch.prod((v % 5) + 1, 1)
    return out


@pytest.mark.parametrize("cols", [1, 17, 1000])
def test_integer_sums_are_int64_as_torch(cols, device):
    """Rows of int32 values near 2**30 sum past 2**31: int64, as torch (int32 would wrap), unless dtype=
    asks for int32, where both wrap alike. Products of up to 1000 factors in 1..5 wrap in int64 as torch's."""
    g = torch.Generator().manual_seed(cols)
    x = torch.randint(2**29, 2**30, (7, 2 * cols), generator=g, dtype=torch.int32)[:, ::2]
    x[2] *= -1
    x = x.to(device)
    want = torch.stack([x.sum(1), (x > 0).sum(1), x.sum(1, dtype=torch.int32).long(), x.count_nonzero(1),
                        torch.prod((x % 5) + 1, 1)], dim=1)
    assert want.dtype == torch.int64
    torch.testing.assert_close(int_sums(x), want)


@helion.kernel(autotune_effort="none")
def half_sums(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty([x.size(0), 2], dtype=torch.float32, device=x.device)
    for t in hl.tile(x.size(0)):
        v = x[t, :]
        out[t, 0] = torch.sum(v, 1, dtype=torch.float32)
        out[t, 1] = v.mean(1, dtype=torch.float32)
    return out


def test_dtype_argument_of_float_reductions(device):
    x = (torch.randn(5, 1000) * 100).half().to(device)
    want = torch.stack([x.sum(1, dtype=torch.float32), x.mean(1, dtype=torch.float32)], dim=1)
    torch.testing.assert_close(half_sums(x), want, rtol=1e-5, atol=1e-3)


def test_dtype_argument_where_torch_has_none(tmp_path, device):
    from helion_ops.dsl import exc
    from tests.dsl.source_kernels import one_loop_kernel
    k = one_loop_kernel(tmp_path / "k.py", "out[t, 0] = torch.amax(x[t, :], 1, dtype=torch.float32)")
    with pytest.raises(exc.NotSupported, match=r"k\.py:9: .*dtype= of a max reduction"):
        k(torch.randn(4, 8, device=device))


@helion.kernel(autotune_effort="none")
def hl_reduce_add(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty([x.size(0)], dtype=x.dtype, device=x.device)
    for t in hl.tile(x.size(0)):
        out[t] = hl.reduce(torch.add, x[t, :], dim=1)
    return out


def test_hl_reduce_keeps_the_input_dtype(device):
    """hl.reduce is tl.reduce: an int32 sum stays int32 (and wraps as torch's int32 sum does)."""
    x = torch.randint(2**29, 2**30, (5, 17), dtype=torch.int32, device=device)
    torch.testing.assert_close(hl_reduce_add(x), x.sum(1, dtype=torch.int32))


def test_argmax_takes_nan_as_the_extreme(device):
    """torch.max/min(x, dim) and argmax/argmin: a row with NaN gives NaN and the first NaN's index, as
    torch (Triton's own argmax skips NaN on the GPU; the interpreter, on numpy, does not show that, so
    the generated code is checked for the NaN pick as well)."""
    x = torch.randn(9, 34, device=device)[:, ::2]
    x[2, 5] = float("nan")
    x[2, 11] = float("nan")
    x[6, 0] = float("nan")
    x[4] = float("-inf")
    torch.testing.assert_close(row_stats(x)[:, :4], _ref(x)[:, :4], rtol=1e-5, atol=1e-5, equal_nan=True)
    b = row_stats.bind((x,))
    code = b.to_triton_code(b.config)
    assert code.count("arg_nan") >= 4, code  # both argmax and argmin pick NaN first
    assert b.compile_for_target(b.config, ("cuda", 90, 32))
