"""Control flow on device values. `while`: per-lane iteration to a data-dependent end (Collatz steps against
Python), a counter that starts as a Python int, the sm_90 build, and clear refusals (break, while-else, an
always-true condition, a block condition, a carried value that changes shape). Loop-carried Python numbers:
a scalar accumulator that starts as a Python float in a `for` loop (silently the value before the loop
until 2026-11-27). `if` on a device scalar: a number reassigned in a branch and a name first bound in
both branches are merged (the first was silently dropped, the second undefined after the `if`)."""
import re

import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc
from tests.dsl.source_kernels import kernel_from_source


@helion.kernel(autotune_effort="none")
def collatz_steps(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for t in hl.tile(x.size(0)):
        v = x[t]
        steps = torch.zeros_like(v)
        while (v > 1).any():
            nxt = torch.where((v % 2) == 1, 3 * v + 1, v // 2)
            steps = steps + (v > 1).to(steps.dtype)
            v = torch.where(v > 1, nxt, v)
        out[t] = steps
    return out


@helion.kernel(autotune_effort="none")
def double_n_times(n: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for t in hl.tile(x.size(0)):
        i = 0
        acc = x[t]
        while i < n[0]:
            acc = acc * 2
            i += 1
        out[t] = acc
    return out


@helion.kernel(autotune_effort="none")
def row_sums_from_a_float(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.size(0), dtype=torch.float32, device=x.device)
    for i in hl.grid(x.size(0)):
        total = 0.0
        for u in hl.tile(x.size(1)):
            total = total + x[i, u].sum()
        out[i] = total
    return out


@helion.kernel(autotune_effort="none")
def branch_merges(x: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for t in hl.tile(x.size(0)):
        v = x[t]
        s = 0.0
        if flag[0] > 0:
            s = 1.0             # a number reassigned in one branch
            y = v * 2           # a name first bound in both branches
        else:
            y = v * 3
        out[t] = y + s
    return out


def _steps(n: int) -> int:
    s = 0
    while n > 1:
        n, s = (3 * n + 1 if n % 2 else n // 2), s + 1
    return s


@pytest.mark.parametrize("n", [1, 17, 1000])
def test_collatz_steps(n, device):
    x = torch.randint(1, 200, (n,), dtype=torch.int32)
    got = collatz_steps(x.to(device)).cpu()
    assert got.tolist() == [_steps(int(v)) for v in x]


@pytest.mark.parametrize("times", [0, 1, 5])
def test_counter_from_a_python_int(times, device):
    x = torch.randn(17, device=device)
    n = torch.tensor([times], dtype=torch.int32, device=device)
    torch.testing.assert_close(double_n_times(n, x), x * 2 ** times)


@pytest.mark.parametrize("cols", [1, 17, 1000])
def test_for_loop_accumulator_from_a_python_float(cols, device):
    x = torch.randn(5, 2 * cols, device=device)[:, ::2]
    torch.testing.assert_close(row_sums_from_a_float(x), x.double().sum(1).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flag", [1, 0])
@pytest.mark.parametrize("n", [1, 17, 1000])
def test_if_merges_numbers_and_names_bound_in_both_branches(flag, n, device):
    x = torch.randn(n, device=device)
    got = branch_merges(x, torch.tensor([flag], dtype=torch.int32, device=device))
    torch.testing.assert_close(got, x * 2 + 1 if flag else x * 3)


def test_sm90_build_has_the_loop():
    b = collatz_steps.bind((torch.ones(100, dtype=torch.int32),))
    assert "while cond_" in b.to_triton_code(b.config)
    assert b.compile_for_target(b.config, ("cuda", 90, 32))


BAD = {
    "break": ("while (v > 0).any():\n            v = v - 1\n            break", "break"),
    "else": ("while (v > 0).any():\n            v = v - 1\n        else:\n            v = v + 1", "while ... else"),
    "true": ("while True:\n            v = v - 1", "always true"),
    "block": ("while v > 0:\n            v = v - 1", "must be a scalar"),
    "shape": ("s = 0.0\n        while (v > 0).any():\n            s = s + v\n            v = v - 1",
              "'s' changes shape"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_refused_at_the_line(tmp_path, case):
    body, match = BAD[case]
    k = kernel_from_source(
        tmp_path / "bad_while.py",
        "@helion.kernel(config=helion.Config(block_sizes=[16]))\n"
        "def k(x: torch.Tensor) -> torch.Tensor:\n"
        "    out = torch.empty_like(x)\n"
        "    for t in hl.tile(x.size(0)):\n"
        "        v = x[t]\n"
        f"        {body}\n"
        "        out[t] = v\n"
        "    return out\n")
    with pytest.raises(exc.NotSupported if case != "shape" else exc.ShapeMismatch, match=match) as info:
        k.bind((torch.ones(16, dtype=torch.int32),)).to_triton_code(helion.Config(block_sizes=[16]))
    assert re.search(r"bad_while\.py:1[0-3]\b", str(info.value))  # the loop's own lines


def test_if_refuses_host_objects_that_differ_between_paths(tmp_path):
    k = kernel_from_source(
        tmp_path / "bad_if.py",
        "@helion.kernel(config=helion.Config(block_sizes=[16]))\n"
        "def k(x: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:\n"
        "    out = torch.empty_like(x)\n"
        "    for t in hl.tile(x.size(0)):\n"
        "        pair = (x[t], x[t])\n"
        "        if flag[0] > 0:\n"
        "            pair = (x[t] * 2, x[t])\n"
        "        out[t] = pair[0]\n"
        "    return out\n")
    with pytest.raises(exc.NotSupported, match="'pair' is bound to a tuple and a tuple") as info:
        k.bind((torch.ones(16), torch.ones(1, dtype=torch.int32))).to_triton_code(
            helion.Config(block_sizes=[16]))
    assert "bad_if.py:10" in str(info.value)
