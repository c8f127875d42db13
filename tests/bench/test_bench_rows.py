"""The row builder and CSV schema, on the CPU fake op (tests/bench/fake_op.py)."""
import csv
import math
import sys
from pathlib import Path

import pytest
import torch

from bench import baselines, case, catalog, schema, timing

HERE = Path(__file__).parent
ENV = {"gpu": "FAKE", "torch": torch.__version__, "triton": "x", "commit": "c0ffee", "date": "2026-01-01T00:00:00Z"}


@pytest.fixture
def fake():
    return catalog.load(str(HERE / "fake_op.py"))  # a fresh module object per test


def cpu_timer(fn):
    return timing.cpu_bench(fn, warmup=1, rep=3)


def run(mod, mode="fwd", dtype=torch.float32, impls=None, timer=cpu_timer):
    names = impls or baselines.impl_names(mod, ["eager", "vendor"])[0]
    return case.run_case(mod, (8, 32), dtype, mode, names, "cpu", timer=timer, env=ENV, log=lambda m: None)


def test_contract_check(fake):
    assert catalog.missing_names(fake) == []
    del fake.backward_work
    assert catalog.missing_names(fake) == ["backward_work"]
    fake.GRAD_INPUTS = ()
    assert catalog.missing_names(fake) == []


def test_impl_names(fake):
    names, notes = baselines.impl_names(fake, None)
    assert names[:4] == [baselines.OURS, "eager", "compile", "vendor"]
    assert baselines.impl_names(fake, ["cudnn", "eager"])[0] == [baselines.OURS, "eager"]  # cudnn: not this op's


@pytest.mark.parametrize("mode", ["fwd", "bwd"])
def test_rows_schema_and_values(fake, mode, tmp_path):
    rows = run(fake, mode)
    assert [r["impl"] for r in rows] == [baselines.OURS, "eager", "vendor"]
    for r in rows:
        assert r["status"] == "ok" and r["err"] < 1e-5
        assert r["ms"] > 0 and r["metric"] > 0 and r["unit"] == "GB/s"
        assert r["speedup_vs_eager"] == pytest.approx(rows[1]["ms"] / r["ms"])
        assert r["mode"] == mode and r["shape"] == "8x32" and r["dtype"] == "fp32"
    work = fake.work((8, 32), torch.float32) if mode == "fwd" else fake.backward_work((8, 32), torch.float32)
    assert rows[0]["metric"] == pytest.approx(work / rows[0]["ms"] / 1e6)
    path = tmp_path / "fake.csv"
    schema.write_rows(path, rows)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header == schema.HEAD + ["speedup_vs_vendor"] + schema.TAIL
    assert header[:10] == ["op", "mode", "impl", "shape", "dtype", "ms", "metric", "unit",
                           "speedup_vs_eager", "speedup_vs_compile"]
    assert header[-12:] == ["err", "status", "compile_s", "tuning", "tune_s", "version", "note",
                            "gpu", "torch", "triton", "commit", "date"]
    back = schema.read_rows(path)
    assert back[0]["commit"] == "c0ffee" and back[0]["speedup_vs_compile"] == ""


def test_wrong_output_is_fail_without_speedup(fake):
    fake.impl = lambda x: torch.softmax(x, dim=-1) * 1.1
    rows = {r["impl"]: r for r in run(fake)}
    ours = rows[baselines.OURS]
    assert ours["status"] == "FAIL" and ours["err"] > fake.TOLERANCE[torch.float32]
    assert math.isnan(ours["speedup_vs_eager"]) and math.isnan(ours["speedup_vs_vendor"])
    assert math.isfinite(rows["eager"]["speedup_vs_vendor"])  # passing impls still compare


def test_raising_baseline_is_error_row_and_run_goes_on(fake):
    def boom(x):
        raise RuntimeError("vendor library missing")

    fake.BASELINES = {"vendor": boom}
    rows = {r["impl"]: r for r in run(fake)}
    assert rows["vendor"]["status"] == "error" and math.isnan(rows["vendor"]["ms"])
    assert rows[baselines.OURS]["status"] == "ok" and rows["eager"]["status"] == "ok"
    assert math.isnan(rows[baselines.OURS]["speedup_vs_vendor"])


def test_correctness_only_without_timer(fake):
    rows = run(fake, "bwd", torch.float16, timer=None)
    assert all(r["status"] == "ok" and math.isnan(r["ms"]) and math.isnan(r["metric"]) for r in rows)


def test_compile_baseline_records_compile_time(fake, monkeypatch):
    # Stand-in for torch.compile: it is slow and needs a C++ toolchain on CPU.
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    rows = {r["impl"]: r for r in run(fake, impls=[baselines.OURS, "compile"])}
    assert rows["compile"]["compile_s"] >= 0 and math.isfinite(rows["compile"]["ms"])
    assert math.isfinite(rows[baselines.OURS]["speedup_vs_compile"])


def test_merge_replaces_whole_cases(fake, tmp_path):
    path = tmp_path / "fake.csv"
    schema.write_rows(path, run(fake, "fwd") + run(fake, "bwd"))
    new = run(fake, "fwd", impls=[baselines.OURS])
    schema.write_rows(path, new)
    back = schema.read_rows(path)
    assert [(r["mode"], r["impl"]) for r in back if r["mode"] == "fwd"] == [("fwd", baselines.OURS)]
    assert len([r for r in back if r["mode"] == "bwd"]) == 3


def test_discover_skips_private_and_helpers(tmp_path, monkeypatch):
    pkg = tmp_path / "fakecat"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "softmaxish.py").write_text((HERE / "fake_op.py").read_text())
    (pkg / "_private.py").write_text("raise RuntimeError('never imported')")
    (pkg / "helper.py").write_text("X = 1\n")
    (pkg / "broken.py").write_text("import not_a_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ops, problems = catalog.discover("fakecat")
    assert list(ops) == ["fake_softmax"]
    assert list(problems) == ["broken"]
    for name in [m for m in sys.modules if m.startswith("fakecat")]:
        monkeypatch.delitem(sys.modules, name)


def test_copy_baseline_times_the_counted_bytes(fake, monkeypatch):
    """"copy" (memory-bound ops only) is a device copy of work()/2 bytes, timed like the impls, with no
    result to check; ours gets a speedup_vs_copy (its fraction of a same-size single pass)."""
    names, notes = baselines.impl_names(fake, ["eager", "copy"])
    assert names == [baselines.OURS, "eager", "copy"] and not notes
    sizes = []
    real = baselines.copy_of
    monkeypatch.setattr(baselines, "copy_of", lambda work, dev: sizes.append(work) or real(work, dev))
    rows = run(fake, "fwd", impls=names)
    copy = next(r for r in rows if r["impl"] == "copy")
    assert copy["status"] == "ok" and copy["ms"] > 0 and sizes == [fake.work((8, 32), torch.float32)]
    assert rows[0]["speedup_vs_copy"] == pytest.approx(copy["ms"] / rows[0]["ms"])
    fake.METRIC = "TFLOP/s"
    names, notes = baselines.impl_names(fake, ["copy"])
    assert names == [baselines.OURS] and "no copy baseline" in notes[0]
