"""The DSL runtime under stress: concurrent first calls, broken code caches, recursion, bf16 dots on CPU."""
from __future__ import annotations

import math
import os
import threading
import warnings

import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc, pipeline, runtime
from tests.dsl import kernels as K


def _fresh(kernel):
    import copy
    k = copy.copy(kernel)
    k._parsed, k._bound = None, {}
    return k


def test_eight_threads_first_call_one_kernel_compile_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(tmp_path))
    k = _fresh(K.softmax)
    x = torch.randn(37, 300)
    start, outs, errors = threading.Barrier(8), [None] * 8, []
    before = pipeline.LOWERINGS[0]

    def worker(i: int) -> None:
        try:
            start.wait()
            outs[i] = k(x)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ref = torch.softmax(x.double(), 1).float()
    for o in outs:
        torch.testing.assert_close(o, ref, rtol=1e-5, atol=1e-6)
    bound = next(iter(k._bound.values()))
    assert len(k._bound) == 1 and len(bound._compiled) == 1
    assert pipeline.LOWERINGS[0] - before == 1  # one device loop, lowered once for all eight threads
    assert not [f for f in os.listdir(tmp_path / "code") if f.endswith(".tmp")]


def test_a_corrupt_generated_module_is_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(tmp_path))
    x = torch.randn(4, 17)
    k = _fresh(K.softmax)
    k(x)
    (path,) = [tmp_path / "code" / f for f in os.listdir(tmp_path / "code")]
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # a half-written file from a killed process
    k2 = _fresh(K.softmax)
    torch.testing.assert_close(k2(x), torch.softmax(x.double(), 1).float(), rtol=1e-5, atol=1e-6)
    assert path.read_text() == good


def test_an_unusable_cache_dir_falls_back_with_one_warning(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(not_a_dir))
    x = torch.randn(4, 17)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _fresh(K.softmax)(x)
        out2 = _fresh(K.softmax)(x)
    torch.testing.assert_close(out, torch.softmax(x.double(), 1).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out2, out)
    assert [w.category for w in caught if issubclass(w.category, runtime.CacheWarning)] == [runtime.CacheWarning]


def test_a_finished_search_survives_an_unwritable_tuning_cache(tmp_path):
    from helion_ops.dsl.autotune import AutotuneCache, autotune
    from tests.dsl.test_autotune import FakeBound, _args

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.warns(RuntimeWarning, match="could not save the tuned config"):
        cfg = autotune(FakeBound(), _args(), "quick", objective=lambda c: 1.0 + c.num_warps / 100,
                       cache=AutotuneCache(directory=not_a_dir / "sub"), progress=False)
    assert cfg is not None


def _recurse(x, n):
    return _recurse(x, n - 1) + x


def test_a_recursive_device_helper_is_refused_at_its_call():
    @helion.kernel()
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            out[t] = _recurse(x[t], 3)
        return out

    with pytest.raises(exc.NotSupported, match="recursion cannot be compiled") as e:
        k(torch.randn(8))
    assert "test_dsl_runtime.py" in str(e.value) and "_recurse(x, n - 1)" in str(e.value)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="the interpreter's bf16 dot")
def test_bf16_dot_is_right_in_the_interpreter():
    """Triton's interpreter multiplies bf16 bit patterns (1e8-1e10 results): the DSL's dots run on fp32
    copies there, so a user's bf16 matmul gives the right numbers on CPU too."""
    a, b = torch.randn(33, 40, dtype=torch.bfloat16), torch.randn(40, 17, dtype=torch.bfloat16)
    ref = a.double() @ b.double()
    out = K.matmul.bind((a, b)).run(helion.Config(block_sizes=[16, 16, 16]), a, b)
    err = (out.double() - ref).abs().max().item()
    assert err <= 2 ** -7 * ref.abs().max().item() and math.isfinite(err)


def _first_call_from_threads(op: str, device: str, monkeypatch, n: int = 8) -> None:
    """n threads make the first call of ``op`` (fresh caches: bind, lower, compile, record) on the same
    inputs at once, forward and backward; every result matches a single-threaded one and no kernel was
    compiled twice for one key (loop, Config, launch key)."""
    import importlib
    from bench import catalog
    from helion_ops import _oplib as C

    spec = catalog.discover()[0][op]
    mod = importlib.import_module(f"helion_ops.ops.{op}")
    kernels = [k for k in vars(mod).values() if isinstance(k, runtime.Kernel)]
    shape = spec.SMALL_SHAPES[1 % len(spec.SMALL_SHAPES)]
    torch.manual_seed(0)
    base = spec.make_inputs(shape, torch.float32, device)

    def run():
        xs = tuple(t.detach().clone().requires_grad_(i in spec.GRAD_INPUTS and t.is_floating_point())
                   if isinstance(t, torch.Tensor) else t for i, t in enumerate(base))
        out = spec.impl(*xs)
        grads = ()
        if spec.GRAD_INPUTS:
            diff = [t for t in xs if isinstance(t, torch.Tensor) and t.requires_grad]
            grads = torch.autograd.grad(out, diff, torch.ones_like(out))
        return out.detach(), grads

    C.reset_caches()
    for k in kernels:
        k.reset()
    compiles: list = []  # (bound kernel, loop, Config, launch key) of every compile for a launch
    real = runtime.BoundKernel._compile

    def counting(self, i, names, values, ctx):
        if ctx.mode == "launch":
            compiles.append((id(self), i, ctx.config.key(), runtime._launch_key(values)))
        return real(self, i, names, values, ctx)

    monkeypatch.setattr(runtime.BoundKernel, "_compile", counting)
    start, results, errors = threading.Barrier(n), [None] * n, []

    def worker(i: int) -> None:
        try:
            start.wait()
            results[i] = run()
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    want = run()
    for out, grads in results:
        torch.testing.assert_close(out, want[0])
        for g, w in zip(grads, want[1]):
            torch.testing.assert_close(g, w)
    assert compiles and len(compiles) == len(set(compiles)), op  # one compile per key, whatever the threads


OPS = ("softmax", "rms_norm", "layer_norm", "matmul", "grouped_gemm", "attention")


@pytest.mark.parametrize("op", OPS)
def test_eight_threads_make_the_first_call_of_every_op(op, tmp_path, monkeypatch):
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(tmp_path))
    _first_call_from_threads(op, "cpu", monkeypatch)


@pytest.mark.gpu
@pytest.mark.parametrize("op", OPS)
def test_eight_threads_make_the_first_call_of_every_op_on_the_gpu(op, tmp_path, monkeypatch):
    monkeypatch.setenv("HELION_OPS_CACHE_DIR", str(tmp_path))
    _first_call_from_threads(op, "cuda", monkeypatch)
