"""The GPU path of bench.run end to end, with CPU stand-ins for the device parts.

Timing uses wall-clock on CPU, ceilings are constants and torch.compile is the
identity; everything else (plan, rows, CSV per op, ceilings.json, reports) is real.
"""
from pathlib import Path

import pytest
import torch

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from bench import catalog, gpu_info, metrics, run, schema, timing  # noqa: E402

FAKE = str(Path(__file__).parent / "fake_op.py")
ENV = {"gpu": "FAKEGPU", "gpu_full": "Fake GPU 1", "torch": "t", "triton": "tr", "commit": "abc", "date": "2026-01-01T00:00:00Z"}


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(run, "has_gpu", lambda: True)
    monkeypatch.setattr(run, "DEVICE", "cpu")
    monkeypatch.setattr(timing, "gpu_bench", lambda fn, warmup=25, rep=100: timing.cpu_bench(fn, 1, 3))
    monkeypatch.setattr(metrics, "measure_ceilings",
                        lambda bench_fn=None: {"copy_GBps": 100.0, "matmul_TFLOPs": 1.0, "copy_ms": 1.0, "matmul_ms": 1.0})
    monkeypatch.setattr(gpu_info, "info", lambda: dict(ENV))
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    mod = catalog.load(FAKE)
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([mod], {}))
    return mod


def test_gpu_run_writes_csv_ceilings_and_reports(fake_gpu, tmp_path, capsys):
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32,bf16", "--out", str(out)]) == 0
    gpu = out / "FAKEGPU"
    rows = schema.read_rows(gpu / "fake_softmax.csv")
    # 2 SHAPES x 2 dtypes x (fwd, bwd) x (ours, eager, compile, vendor)
    assert len(rows) == 32
    assert {r["impl"] for r in rows} == {"helion_ops", "eager", "compile", "vendor"}
    assert all(r["status"] == "ok" and float(r["ms"]) > 0 and r["gpu"] == "FAKEGPU" for r in rows)
    assert all(r["compile_s"] for r in rows if r["impl"] in ("compile", "helion_ops"))
    assert "speedup_vs_vendor" in rows[0]
    for name in ("ceilings.json", "README.md", "fake_softmax.png"):
        assert (gpu / name).exists()
    assert "fake_softmax" in (out / "README.md").read_text()
    assert run.CPU_TITLE not in capsys.readouterr().out


def test_partial_rerun_merges_cases(fake_gpu, tmp_path):
    out = tmp_path / "results"
    run.main(["--op", "fake", "--dtype", "fp32", "--out", str(out), "--no-report"])
    run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager",
              "--shapes", "64x128", "--out", str(out), "--no-report"])
    rows = schema.read_rows(out / "FAKEGPU" / "fake_softmax.csv")
    fwd_64 = [r["impl"] for r in rows if r["mode"] == "fwd" and r["shape"] == "64x128"]
    assert fwd_64 == ["helion_ops", "eager"]  # replaced as a whole
    assert len([r for r in rows if r["mode"] == "bwd"]) == 8  # untouched
    assert not (out / "FAKEGPU" / "README.md").exists()
