"""Runtime behaviour beyond numerics: allocator per thread, config space bounds, interpreter versions."""
from __future__ import annotations

import threading

import pytest

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import Config

from . import kernels as K


@helion.kernel()
def jagged_row_sum(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty([m], dtype=x.dtype, device=x.device)
    for tile_m in hl.tile(m, block_size=1):
        acc = hl.zeros([tile_m], dtype=torch.float32)
        end = lengths[tile_m.begin]
        for tile_n in hl.tile(0, end):
            acc = acc + x[tile_m, tile_n].to(torch.float32).sum(-1)
        out[tile_m] = acc.to(x.dtype)
    return out


def test_descriptor_launch_sets_allocator_in_a_fresh_thread():
    # Triton keeps its scratch allocator in a ContextVar: autograd's backward runs in
    # a thread that never saw a set_allocator call, and a TMA kernel launched there
    # must still find one.
    from triton.runtime._allocation import _NULL_ALLOCATOR, _allocator

    x, y = torch.randn(64, 32), torch.randn(32, 48)
    b = K.matmul.bind((x, y))
    cfg = b.config.replace(block_sizes=[32, 16, 16], indexing="tensor_descriptor")
    seen = {}

    def worker():
        seen["before"] = _allocator.get() is _NULL_ALLOCATOR
        out = b.run(cfg, x, y)
        seen["after"] = _allocator.get() is not _NULL_ALLOCATOR
        seen["err"] = ((out.double() - x.double() @ y.double()).abs().max() /
                       (x.double() @ y.double()).abs().max()).item()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["before"] and seen["after"]
    assert seen["err"] < 1e-5


def test_row_tiles_capped_next_to_a_whole_row():
    # rows x next_pow2(N) <= 64K elements: the tuner must not spend time on
    # candidates that can only spill registers.
    for n, cap in [(8192, 8), (1000, 64), (17, 2048)]:
        x = torch.randn(4096, n)
        spec = K.softmax.bind((x,)).config_space.spec
        assert spec.block_sizes[0].max == cap, (n, spec.block_sizes[0])


def test_device_bounded_loop_gets_a_real_block_range():
    # A loop whose bounds live on the device (jagged rows) has no static extent; its
    # block must still be tunable over a normal range, not pinned to the minimum.
    x = torch.randn(8, 100)
    lengths = torch.randint(0, 100, (8,), dtype=torch.int32)
    b = jagged_row_sum.bind((x, lengths))
    spec = b.config_space.spec
    inner = spec.block_sizes[-1]
    assert inner.max >= 256 and inner.default >= 32, inner
    out = b(x, lengths)
    ref = torch.stack([x[i, :lengths[i]].double().sum() for i in range(8)])
    assert ((out.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item() < 1e-5
    assert isinstance(b.default_config(), Config)


def test_bmm_batch_tile_may_be_one():
    # Tensor-core tiles need >= 16 only in the matrix dims; a bmm's batch tile of 1 is valid.
    from tests.compat import k_matmul as MM

    a, b = torch.randn(3, 17, 24), torch.randn(3, 24, 20)
    bound = MM.bmm.bind((a, b))
    assert bound.config_space.spec.block_sizes[0].min == 1
    cfg = bound.normalize(Config(block_sizes=[1, 16, 16, 16]))
    ref = a.double() @ b.double()
    assert ((bound.run(cfg, a, b).double() - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_looped_half_reductions_accumulate_in_fp32():
    # A chunked max/sum over fp16 keeps an fp32 accumulator (the loop-carried type must not change,
    # and fp16 sums of 1000 terms lose digits); the result matches torch to fp16 precision.
    x = torch.randn(6, 1000).to(torch.float16)
    b = K.softmax_decomposed.bind((x,))
    out = b.run(b.config.replace(reduction_loops=[64]), x)
    ref = torch.softmax(x.double(), -1)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 2e-3
    assert "tl.float32)" in b.to_triton_code(b.config.replace(reduction_loops=[64]))


def test_interpreter_version_check(monkeypatch):
    """Triton 3.6's interpreter with numpy >= 2.4 fails on loops over program ids: a clear error instead."""
    import numpy
    import triton

    from helion_ops.dsl import exc, runtime

    for tv, nv, ok in (("3.6.0", "2.4.6", False), ("3.6.0", "2.3.5", True), ("3.7.1", "2.4.6", True)):
        monkeypatch.setattr(triton, "__version__", tv)
        monkeypatch.setattr(numpy, "__version__", nv)
        if ok:
            runtime._check_interpreter()
        else:
            with pytest.raises(exc.InputError, match="numpy < 2.4"):
                runtime._check_interpreter()


def test_device_print(capfd):
    """hl.device_print becomes tl.device_print (in the interpreter it prints each program's block)."""
    @helion.kernel(config=Config(block_sizes=[4]))
    def k(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for t in hl.tile(x.size(0)):
            v = x[t] * 2
            hl.device_print("twice:", v)
            out[t] = v
        return out

    x = torch.arange(8, dtype=torch.float32)
    torch.testing.assert_close(k(x), x * 2)
    assert "tl.device_print('twice:', " in k.bind((x,)).to_triton_code()
    printed = capfd.readouterr().out
    assert "twice:" in printed and "14." in printed


_LAUNCHER_SCRIPT = r'''
import json, sys, types, torch
from unittest import mock
from helion_ops.dsl.backends.triton import compile_spec, launcher
k = compile_spec(json.load(sys.stdin), ("cuda", 90, 32))
k.function, seen = 99, {}
tensors = [torch.empty(4) for _ in range(4)]
args = [*tensors, 1000.0, 1e-6]
values, index = args[::-1], [len(args) - 1 - i for i in range(len(args))]  # the host's values, not in kernel order
fake = types.SimpleNamespace(_launch_kernel=lambda *a: seen.setdefault("static", a))
with mock.patch.object(torch._C, "_cuda_getCurrentRawStream", lambda d: 7, create=True):
    with mock.patch.object(torch._C, "_StaticCudaLauncher", fake, create=True):
        launcher(k, 0, index, lambda v: [v[i] for i in index], True)((3, 1, 1), values)
    with mock.patch.object(torch._C, "_StaticCudaLauncher", None, create=True), \
            mock.patch.object(type(k), "run", lambda self, *a: seen.setdefault("triton", a), create=True):
        launcher(k, 0, index, lambda v: [v[i] for i in index], True)((3, 1, 1), values)
    with mock.patch.object(torch._C, "_StaticCudaLauncher", fake, create=True), \
            mock.patch.object(type(k), "run", lambda self, *a: seen.setdefault("made", a), create=True):
        launcher(k, 0, index, lambda v: [v[i] for i in index], False)((3, 1, 1), values)  # arguments to make
s = seen["static"]
scratch = [0] * sum(hasattr(k.metadata, a) for a in ("global_scratch_size", "profile_scratch_size"))
print(json.dumps({"static": [s[:7], list(s[7]), s[8]], "ptrs": [t.data_ptr() for t in tensors] + scratch,
                  "scratch": len(scratch),
                  "warps": k.metadata.num_warps, "shared": k.metadata.shared,
                  "triton": [seen["triton"][:4], seen["triton"][4], len(seen["triton"])],
                  "triton_args": [a.data_ptr() if torch.is_tensor(a) else a for a in seen["triton"][9:]],
                  "made_through_triton": "made" in seen}))
'''


def test_launcher_passes_pointers_as_ints_to_torchs_static_launcher():
    """``backends.triton.launcher`` on a real sm_90 build (no GPU): torch's static launcher gets the kernel's
    non-constexpr arguments, picked from the host's values by index, typed from its signature (pointers as ints,
    fp32 scalars as 'f'); without that launcher, or for arguments to make, Triton's own ``run`` gets every argument."""
    import json
    import os
    import subprocess
    import sys
    from helion_ops.ops import rms_norm as R
    b = R.rms_norm_fwd.bind((torch.randn(17, 1000), torch.randn(1000), 1e-6))
    r = subprocess.run([sys.executable, "-c", _LAUNCHER_SCRIPT], capture_output=True, text=True, timeout=300,
                       input=json.dumps(b.compile_specs(b.default_config())[0]),
                       env=dict(os.environ, TRITON_INTERPRET="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["scratch"] >= 1  # Triton >= 3.5: the global scratch pointer follows the arguments
    assert got["static"][0] == [99, 3, 1, 1, got["warps"], got["shared"], "OOOOff" + "O" * got["scratch"]]
    assert got["static"][1] == [*got["ptrs"][:4], 1000.0, 1e-6, *got["ptrs"][4:]] and got["static"][2] == 7
    # grid, stream, function, metadata, three hook slots, then every argument
    assert got["triton"][0] == [3, 1, 1, 7] and got["triton"][1] == 99 and got["triton"][2] == 9 + 6
    assert got["triton_args"] == [*got["ptrs"][:4], 1000.0, 1e-6]
    assert got["made_through_triton"]  # a kernel whose arguments must be made (TMA descriptors) keeps Triton's
