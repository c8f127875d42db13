"""The GPU path of bench.run end to end, with CPU stand-ins for the device parts.

Timing uses wall-clock on CPU, ceilings are constants and torch.compile is the
identity; everything else (plan, rows, CSV per op, ceilings.json, reports) is real.
"""
import json
import re
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
    assert all(float(r["frac_of_ceiling"]) == pytest.approx(float(r["metric"]) / 100.0, rel=1e-4) for r in rows)
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


def _second_op(tmp_path):
    """A copy of the fake op under another NAME (a second op for multi-command runs)."""
    path = tmp_path / "fake_other.py"
    path.write_text(Path(FAKE).read_text().replace('NAME = "fake_softmax"', 'NAME = "fake_other"'))
    return catalog.load(str(path))


def test_ops_in_separate_commands_make_one_report(fake_gpu, tmp_path, monkeypatch):
    out = tmp_path / "results"
    other = _second_op(tmp_path)
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--out", str(out)]) == 0
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([other], {}))
    assert run.main(["--op", "other", "--dtype", "fp32", "--out", str(out)]) == 0
    gpu = out / "FAKEGPU"
    tables = (gpu / "README.md").read_text()
    assert "## fake_softmax" in tables and "## fake_other" in tables  # rebuilt from every CSV on disk
    assert "## How these were run" in tables and "--op other" in tables
    summary = (out / "README.md").read_text()
    assert re.search(r"\| fake_softmax +\| fwd", summary) and re.search(r"\| fake_other +\| bwd", summary)
    runs = json.loads((gpu / "runs.json").read_text())
    assert set(runs) == {"fake_softmax", "fake_other"} and runs["fake_other"]["cases_run"] == 4


def test_time_budget_stops_starting_cases(fake_gpu, tmp_path, capsys):
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--out", str(out), "--time-budget", "0.000001"]) == run.BUDGET_EXIT
    assert "TIME BUDGET: fake_softmax: 4 of 4 cases not run" in capsys.readouterr().out


def test_plan_estimates_and_runs_nothing(fake_gpu, tmp_path, capsys):
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "bf16", "--out", str(out), "--plan", "--max-shapes", "1"]) == 0
    text = capsys.readouterr().out
    assert "plan fake_softmax: 2 cases (1 shapes" in text and "estimated" in text
    assert not out.exists()


def test_crashing_case_is_recorded_and_run_goes_on(fake_gpu, tmp_path, monkeypatch, capsys):
    from bench import case

    real, calls = case.run_case, []

    def flaky(mod, shape, *a, **kw):
        calls.append(shape)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (planted)")
        return real(mod, shape, *a, **kw)

    monkeypatch.setattr(case, "run_case", flaky)
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager,cudnn",
                     "--out", str(out), "--no-report"]) == 1  # ours errored in one case
    rows = schema.read_rows(out / "FAKEGPU" / "fake_softmax.csv")
    assert [r["status"] for r in rows if r["shape"] == "64x128"] == ["error", "error"]
    assert [r["status"] for r in rows if r["shape"] == "128x256"] == ["ok", "ok"]
    text = capsys.readouterr().out
    assert "case crashed: OutOfMemoryError" in text
    assert "note: fake_softmax: no cudnn baseline for this op (its vendor baselines: vendor)" in text


def test_broken_cuda_context_restarts_with_the_other_ops(fake_gpu, tmp_path, monkeypatch):
    other = _second_op(tmp_path)
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([fake_gpu, other], {}))
    monkeypatch.setattr(run, "_cuda_broken", lambda: "AcceleratorError: illegal memory access (planted)")
    seen = []
    monkeypatch.setattr(run.os, "execv", lambda exe, argv: seen.append(argv))
    out = tmp_path / "results"
    run.main(["--op", "fake,other", "--dtype", "fp32", "--out", str(out), "--time-budget", "500", "--no-report"])
    (argv,) = seen
    assert argv[1:3] == ["-m", "bench.run"]
    assert argv[argv.index("--op") + 1] == "fake_other" and argv.count("--op") == 1
    assert float(argv[argv.index("--time-budget") + 1]) <= 500
    runs = json.loads((out / "FAKEGPU" / "runs.json").read_text())
    assert "illegal memory access" in runs["fake_softmax"]["cuda_error"]


def test_max_shapes_per_op_and_spread_order():
    assert run.spread_order(7) == [0, 6, 3, 1, 4, 2, 5]
    assert sorted(run.spread_order(10)) == list(range(10))
    assert run.max_shapes_for("6", "x") == 6
    assert run.max_shapes_for("matmul=5,attention=4", "attention") == 4
    assert run.max_shapes_for("matmul=5", "softmax") is None
    assert run.spread_subset(list("abcdefg"), 3) == ["a", "d", "g"]


def test_older_than_runs_only_the_stale_cases(fake_gpu, tmp_path, capsys, monkeypatch):
    """--older-than DATE: a case whose helion_ops row was measured on or after DATE is left out; a case with an
    older row, or none, runs (and its row is replaced)."""
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager", "--out", str(out),
                     "--no-report"]) == 0
    path = out / "FAKEGPU" / "fake_softmax.csv"
    rows = schema.read_rows(path)
    shapes = sorted({r["shape"] for r in rows})
    assert len(shapes) >= 2
    stale = shapes[0]
    for r in rows:  # the first run's rows carry ENV's date, 2026-01-01; one case is made older
        if r["shape"] == stale:
            r["date"] = "2025-06-01T00:00:00Z"
    schema.write_rows(path, rows, merge=False)
    capsys.readouterr()
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager", "--out", str(out),
                     "--no-report", "--older-than", "2026-01-01", "--plan"]) == 0
    assert "plan fake_softmax: 1 cases (1 shapes" in capsys.readouterr().out
    with monkeypatch.context() as m:  # a plan made on a machine without a GPU reads $BENCH_GPU's rows
        m.setattr(run, "has_gpu", lambda: False)
        m.setenv("BENCH_GPU", "FAKEGPU")
        assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager", "--out",
                         str(out), "--no-report", "--older-than", "2026-01-01", "--plan"]) == 0
        assert "plan fake_softmax: 1 cases (1 shapes" in capsys.readouterr().out
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager", "--out", str(out),
                     "--no-report", "--older-than", "2026-01-01"]) == 0
    dates = {r["shape"]: r["date"] for r in schema.read_rows(path) if r["impl"] == "helion_ops"}
    assert dates[stale].startswith("2026-01-01") and all(d.startswith("2026-01-01") for d in dates.values())


def test_older_than_wants_a_date():
    with pytest.raises(SystemExit):
        run.parse_args(["--older-than", "yesterday"])
