"""Launch replay (``@kernel(replay_host=True)``): repeat calls skip the host code and stay correct."""
from __future__ import annotations

import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import Config, runtime


@helion.kernel(replay_host=True, config=Config(block_sizes=[16, 32]))
def scaled_add(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        out[tile_m, tile_n] = x[tile_m, tile_n] + alpha * y[tile_m, tile_n]
    return out


@helion.kernel(replay_host=True, config=Config(block_sizes=[16, 32]))
def scaled_add_derived(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    m, n = x.size()
    beta = alpha * 2.0  # a float computed from an argument: the recording must not freeze it
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        out[tile_m, tile_n] = x[tile_m, tile_n] + beta * y[tile_m, tile_n]
    return out


@helion.kernel(replay_host=True, config=Config(block_sizes=[16]))
def row_mean_scaled(x: torch.Tensor, alpha: float) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty([m], dtype=torch.float32, device=x.device)
    for tile_m in hl.tile(m):
        # both factors are host expressions hoisted out of the loop: 1.0 / n is fixed by the shape,
        # alpha * 2.0 is not
        out[tile_m] = torch.sum(x[tile_m, :], dim=1) * (1.0 / n) * (alpha * 2.0)
    return out


@helion.kernel(replay_host=True, config=Config(block_sizes=[16]))
def row_mean(x: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty([m], dtype=torch.float32, device=x.device)
    for tile_m in hl.tile(m):
        out[tile_m] = torch.sum(x[tile_m, :], dim=1) * (1.0 / n)
    return out


@helion.kernel(replay_host=True, config=Config(block_sizes=[16, 16]))
def two_loops(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = x.size()
    rows = torch.empty([m], dtype=torch.float32, device=x.device)
    y = torch.empty_like(x)
    xt = x.view(n, m) if m == n else x  # a view of an argument passed to a launch
    for tile_m in hl.tile(m):
        rows[tile_m] = torch.sum(x[tile_m, :].to(torch.float32), dim=1)
    for tile_m in hl.tile(m):
        y[tile_m, :] = xt[tile_m, :] * 2
    return rows, y


@helion.kernel(replay_host=True, config=Config(block_sizes=[16, 32]))
def add_then_double(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s = scaled_add(x, y, 1.0)  # another kernel called from host code: its launch is not ours to replay
    out = torch.empty_like(x)
    for tile_m, tile_n in hl.tile(x.size()):
        out[tile_m, tile_n] = s[tile_m, tile_n] * 2
    return out


@helion.kernel(replay_host=True, config=Config(block_sizes=[16, 32]))
def apply_fn(x: torch.Tensor, fn) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile_m, tile_n in hl.tile(x.size()):
        out[tile_m, tile_n] = fn(x[tile_m, tile_n], tile_n)
    return out


def _adder(bias: torch.Tensor):
    return lambda v, t: v + bias[t][None, :]  # closes over a tensor: a launch value of its own


@helion.kernel(config=Config(block_sizes=[16, 32]))
def plain_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile_m, tile_n in hl.tile(x.size()):
        out[tile_m, tile_n] = x[tile_m, tile_n] + y[tile_m, tile_n]
    return out


@pytest.fixture
def host_runs(monkeypatch):
    """Counts executions of kernels' host code that launch (not the dry runs that collect facts)."""
    calls = {"n": 0}
    orig = runtime.BoundKernel._exec

    def counting(self, ctx, args):
        calls["n"] += ctx.mode == "launch"
        return orig(self, ctx, args)

    monkeypatch.setattr(runtime.BoundKernel, "_exec", counting)
    return calls


def test_repeat_calls_skip_the_host_code_and_use_new_inputs(device, host_runs):
    outs = []
    for i in range(4):
        x, y = torch.randn(40, 70, device=device), torch.randn(40, 70, device=device)
        alpha = 0.5 + i  # floats are runtime arguments: each call's own value is used
        out = scaled_add(x, y, alpha)
        torch.testing.assert_close(out, x + alpha * y)
        outs.append(out)
    assert host_runs["n"] == 1
    assert len({o.data_ptr() for o in outs}) == len(outs)  # a fresh output every call


def test_a_float_computed_in_host_code_is_not_frozen(device, host_runs):
    x, y = torch.randn(33, 65, device=device), torch.randn(33, 65, device=device)
    for alpha in (1.0, -3.0, 0.25):
        torch.testing.assert_close(scaled_add_derived(x, y, alpha), x + 2 * alpha * y)
    assert host_runs["n"] == 3  # not replayable: the host code runs each time


def test_hoisted_floats_replay_only_when_fixed_by_the_shape(device, host_runs):
    for _ in range(3):
        x = torch.randn(24, 64, device=device)
        torch.testing.assert_close(row_mean(x), x.mean(1), rtol=1e-5, atol=1e-6)
    assert host_runs["n"] == 1
    for alpha in (1.0, 0.5, -2.0):
        x = torch.randn(24, 64, device=device)
        torch.testing.assert_close(row_mean_scaled(x, alpha), x.mean(1) * 2 * alpha, rtol=1e-5, atol=1e-6)
    assert host_runs["n"] == 4


def test_misaligned_views_take_the_full_path(device, host_runs):
    base = torch.randn(40 * 70 + 1, device=device)
    x, y = torch.randn(40, 70, device=device), torch.randn(40, 70, device=device)
    scaled_add(x, y, 1.0)
    runs = host_runs["n"]
    xv = base[1:].view(40, 70)  # 4 bytes past an aligned pointer: another binary
    torch.testing.assert_close(scaled_add(xv, y, 1.0), xv + y)
    assert host_runs["n"] == runs + 1
    torch.testing.assert_close(scaled_add(x, y, 2.0), x + 2 * y)


def test_several_launches_views_and_tuple_outputs(device, host_runs):
    for m in (32, 32, 32, 48):
        x = torch.randn(m, m, device=device)
        rows, y = two_loops(x)
        torch.testing.assert_close(rows, x.sum(1), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(y, x.view(m, m) * 2)
    assert host_runs["n"] == 2  # one recording per shape


def test_a_kernel_calling_another_kernel_is_not_replayed(device):
    for _ in range(3):
        x, y = torch.randn(20, 40, device=device), torch.randn(20, 40, device=device)
        torch.testing.assert_close(add_then_double(x, y), 2 * (x + y))


def test_functions_closing_over_tensors_are_not_replayed(device):
    x = torch.randn(20, 40, device=device)
    for _ in range(3):  # same code, so the same specialization; each closure holds another tensor
        bias = torch.randn(40, device=device)
        torch.testing.assert_close(apply_fn(x, _adder(bias)), x + bias)


def test_kernels_without_the_setting_always_run_their_host_code(device, host_runs):
    x, y = torch.randn(20, 40, device=device), torch.randn(20, 40, device=device)
    for _ in range(3):
        torch.testing.assert_close(plain_add(x, y), x + y)
    assert host_runs["n"] == 3


def test_replay_source_is_readable(device):
    x, y = torch.randn(16, 32, device=device), torch.randn(16, 32, device=device)
    b = scaled_add.bind((x, y, 1.0))
    b(x, y, 1.0)
    src = b._ctx.replay.source
    assert "empty_strided((16, 32), (32, 1)" in src and "return MISS" in src, src
