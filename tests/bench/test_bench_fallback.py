"""The no-GPU path of bench.run: interpreter correctness run, no timings, nothing written."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench import run

REPO = Path(__file__).resolve().parents[2]
FAKE = str(Path(__file__).parent / "fake_op.py")

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU fallback")

# A contract op whose impl is a real @triton.jit kernel, so the fallback is
# exercised through Triton's interpreter exactly as for catalog ops.
TRITON_OP = textwrap.dedent('''
    import os
    import torch
    import triton
    import triton.language as tl

    assert os.environ.get("TRITON_INTERPRET") == "1", "bench.run must set TRITON_INTERPRET before op imports"

    NAME = "triton_scale"
    METRIC = "GB/s"
    SHAPES = [(4096, 4096)]
    SMALL_SHAPES = [(5, 7), (3, 129)]
    TOLERANCE = {torch.float32: 1e-6, torch.float16: 1e-3}
    GRAD_INPUTS = ()
    BASELINES = {}

    @triton.jit
    def _scale(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 2, mask=mask)

    def make_inputs(shape, dtype, device):
        return (torch.randn(shape, dtype=dtype, device=device),)

    def impl(x):
        out = torch.empty_like(x)
        _scale[(triton.cdiv(x.numel(), 64),)](x, out, x.numel(), BLOCK=64)
        return out

    def eager(x):
        return x * 2

    def reference(x):
        return x.double().mul(2).float()

    def work(shape, dtype):
        return 2 * shape[0] * shape[1] * torch.tensor([], dtype=dtype).element_size()
''')


def bench_run(*args, tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TRITON_INTERPRET", None)  # bench.run must set it itself
    return subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(tmp_path / "results")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_fallback_runs_a_triton_op_in_the_interpreter(tmp_path):
    op = tmp_path / "triton_scale.py"
    op.write_text(TRITON_OP)
    p = bench_run("--op", str(op), tmp_path=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert run.CPU_TITLE in p.stdout
    assert re.search(r"\[4/4 t=\d+s\] triton_scale fwd 3x129 fp16", p.stdout)
    assert "== triton_scale done: 4/4 cases" in p.stdout  # per-op progress line with seconds
    assert p.stdout.count(" ok") >= 8  # 4 cases x (ours, eager)
    assert not (tmp_path / "results").exists()


def test_cli_fallback_fake_op_fwd_and_bwd(tmp_path):
    p = bench_run("--op", FAKE, "--dtype", "bf16", tmp_path=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "--dtype bf16 ignored" in p.stdout and "fake_softmax  bwd" in p.stdout
    assert not (tmp_path / "results").exists()


def test_in_process_failure_sets_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from bench import catalog

    mod = catalog.load(FAKE)
    mod.impl = lambda x: x  # wrong
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([mod], {}))
    assert run.main(["--op", "whatever", "--mode", "fwd", "--out", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert run.CPU_TITLE in out and "FAIL" in out and not (tmp_path / "r").exists()


def test_unknown_op_is_an_error(tmp_path):
    p = bench_run("--op", "no_such_op_xyz", tmp_path=tmp_path)
    assert p.returncode == 1 and "not loaded" in p.stdout


def test_shape_selection(tmp_path):
    from bench import catalog

    mod = catalog.load(FAKE)
    assert run.select_shapes(mod, "preset", gpu=False, quick=False) == mod.SMALL_SHAPES
    assert run.select_shapes(mod, "preset", gpu=True, quick=False) == mod.SHAPES
    assert run.select_shapes(mod, "4x8;16x32", gpu=True, quick=False) == [(4, 8), (16, 32)]
    many = ";".join(f"{i}x8" for i in range(1, 8))
    assert run.select_shapes(mod, many, gpu=True, quick=True) == [(1, 8), (4, 8), (7, 8)]
    spec = tmp_path / "shapes.json"
    spec.write_text('{"fake_softmax": [[2, 3]], "other": [[9, 9]]}')
    assert run.select_shapes(mod, str(spec), gpu=True, quick=False) == [(2, 3)]


def test_cli_fallback_whole_catalog_end_to_end(tmp_path):
    """The main job on a machine with no GPU (scripts/run): every catalog op, fwd and bwd, exits 0.

    The small shapes include N=1 norms, whose input gradient cancels to ~0: those rows pass only
    as ill-conditioned (eager fails the tolerance too), and the log says so.
    """
    p = bench_run("--op", "all", tmp_path=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert run.CPU_TITLE in p.stdout and "ours not ok: 0" in p.stdout
    for op in ("softmax", "rms_norm", "layer_norm", "matmul", "grouped_gemm", "attention"):
        assert re.search(rf"{op} +bwd +\S+ +fp16 +helion_ops", p.stdout), op
    # each non-ok row says why in the closing table, on its own line
    fails = [line for line in p.stdout.splitlines() if re.search(r" eager +\S+ +\S+ +FAIL ", line)]
    assert fails and all("ill-conditioned" in line or "rounding; ours passes" in line for line in fails), fails
    assert re.search(r"helion_ops +1 +\S+ +ok +ill-conditioned \(ref ~0\): ok, within 4x", p.stdout)
    assert max(len(line) for line in p.stdout.splitlines()) < 160  # a table a terminal can show
    assert not (tmp_path / "results").exists()
