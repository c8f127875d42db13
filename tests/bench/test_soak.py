"""bench.soak on CPU (interpreter): a tiny run over every op, and that a wrong result is caught."""
from __future__ import annotations

import random

import torch

from bench import catalog, soak


def test_soak_cpu_tiny_run(tmp_path):
    out = tmp_path / "soak.md"
    rc = soak.main(["--shapes", "18", "--out", str(out), "--cpu", "--seed", "3"])  # 3 shapes per op
    md = out.read_text()
    assert rc == 0, md
    assert "failures: 0**" in md and "Shapes tried: 18" in md
    for op in soak.OPS:
        assert f"| {op} | 3 |" in md
    for field in ("torch ", "triton ", "date: ", "commit: ", "GPU: "):
        assert field in md


def test_soak_catches_a_wrong_result(monkeypatch):
    from bench.specs import softmax as S
    monkeypatch.setattr(S, "impl", lambda x: S.softmax(x) * 1.01)
    rows = soak.run_case("softmax", (4, 33), "float32", "cpu")
    assert [r["ok"] for r in rows] == [False, False] and "tolerance" in rows[0]["error"]


def test_soak_reports_kernel_errors(monkeypatch):
    from bench.specs import matmul as M

    def boom(a, b):
        raise RuntimeError("launch failed")
    monkeypatch.setattr(M, "impl", boom)
    rows = soak.run_case("matmul", (3, 5, 7), "float16", "cpu")
    assert not any(r["ok"] for r in rows) and "RuntimeError: launch failed" in rows[0]["error"]


def test_gpu_shape_distribution_is_capped():
    """The GPU distribution stays small-to-medium (so 1,000 shapes take minutes) and valid for each op."""
    rng = random.Random(0)
    for op in soak.OPS:
        mod = catalog.load(op)
        for _ in range(200):
            shape = soak.draw_shape(op, mod, rng, gpu=True)
            inputs = mod.make_inputs(shape, torch.float16, "meta")  # shapes make valid inputs (no memory)
            assert sum(t.numel() for t in inputs if isinstance(t, torch.Tensor)) < 2**28, (op, shape)
            assert mod.work(shape, torch.float16) <= 2**35, (op, shape)


def test_soak_case_replays_across_processes():
    """Inputs are seeded from the case, not from salted str hashes, so a failure replays; and the case
    that broke CI once, RMSNorm's dx at N=1 (cancels to ~eps), passes as ill-conditioned."""
    import os
    import subprocess
    import sys

    code = ("from bench import soak; r = soak.run_case('rms_norm', (9, 1), 'float32', 'cpu');"
            "print(repr([(x['ok'], x['err']) for x in r]))")
    outs = []
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        assert p.returncode == 0, p.stderr[-2000:]
        outs.append(p.stdout.strip().splitlines()[-1])
    assert outs[0] == outs[1]
    assert "False" not in outs[0], outs[0]
