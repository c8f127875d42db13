"""The graph timing mode (bench.run --timing plain,graph): its option, the ms_graph / graph_note columns of
the rows and CSVs, and the report's graph columns, on CPU with the fake op. CPU runs have no timings at
all (plain or graph): bench.run says so; timing.graph_bench itself needs a GPU (tests/ops/test_cuda_graphs.py
captures every op under -m gpu)."""
import csv
import math
from pathlib import Path

import pytest
import torch

from bench import baselines, case, catalog, run, schema, timing

HERE = Path(__file__).parent
ENV = {"gpu": "FAKE", "torch": torch.__version__, "triton": "x", "commit": "c0ffee", "date": "2026-01-01T00:00:00Z"}


@pytest.fixture
def fake():
    return catalog.load(str(HERE / "fake_op.py"))


def test_timing_option():
    assert run.parse_args([]).timing == set()
    assert run.parse_args(["--timing", "plain"]).timing == set()
    assert run.parse_args(["--timing", "plain,graph"]).timing == {"fwd", "bwd"}
    assert run.parse_args(["--timing", "plain,graph:bwd"]).timing == {"bwd"}
    for bad in ("graph:both", "cuda", ""):
        with pytest.raises(SystemExit):
            run.parse_args(["--timing", bad])


def _graph_timer(fail_on: set):
    """A stand-in for timing.graph_bench: runs what it is given (as a capture would) and returns 0.5 ms,
    or raises for the calls numbered in fail_on (0 = the first impl timed)."""
    seen = []

    def timer(build):
        calls = build()
        seen.append(len(calls))
        for c in calls:
            c()
        if len(seen) - 1 in fail_on:
            raise RuntimeError("operation not permitted when stream is capturing")
        return 0.5
    return timer, seen


@pytest.mark.parametrize("mode", ["fwd", "bwd"])
def test_rows_carry_the_graph_columns(fake, mode, tmp_path):
    timer, seen = _graph_timer(fail_on={1})
    impls = [baselines.OURS, "eager", "vendor"]
    rows = case.run_case(fake, (8, 32), torch.float32, mode, impls, "cpu", timer=lambda fn: (fn(), 2.0)[1],
                         env=ENV, log=lambda m: None, graph_timer=timer)
    assert len(seen) == 3 and len(set(seen)) == 1  # each impl captured once, over the same rotated input sets
    by = {r["impl"]: r for r in rows}
    assert by[baselines.OURS]["ms_graph"] == 0.5 and by[baselines.OURS]["graph_note"] == ""
    assert math.isnan(by["eager"]["ms_graph"]) and by["eager"]["graph_note"].startswith("not capturable: RuntimeError")
    assert by["eager"]["status"] == "ok"  # a capture failure is not a failed row: the plain timing stands
    path = tmp_path / "fake.csv"
    schema.write_rows(path, rows)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header == schema.HEAD + ["speedup_vs_vendor"] + schema.GRAPH + schema.TAIL


def test_rows_without_graph_timing_have_no_graph_columns(fake, tmp_path):
    rows = case.run_case(fake, (8, 32), torch.float32, "fwd", [baselines.OURS, "eager"], "cpu",
                         timer=lambda fn: (fn(), 2.0)[1], env=ENV, log=lambda m: None)
    assert not any("ms_graph" in r for r in rows)
    assert not set(schema.GRAPH) & set(schema.columns_for(rows))


def _df(with_graph: bool):
    pd = pytest.importorskip("pandas")
    rows = []
    for impl, ms, ms_graph, note in ((baselines.OURS, 0.010, 0.004, ""), ("eager", 0.008, 0.006, ""),
                                     ("liger", 0.009, math.nan, "not capturable: RuntimeError: sync")):
        r = {"op": "softmax", "mode": "bwd", "impl": impl, "shape": "16x1024", "dtype": "bf16", "ms": ms,
             "metric": 1.0 / ms, "unit": "GB/s", "status": "ok", "err": 0.0, "note": "", "tuning": "",
             "speedup_vs_eager": 0.008 / ms if impl == baselines.OURS else math.nan}
        if with_graph:
            r.update(ms_graph=ms_graph, graph_note=note)
        rows.append(r)
    return pd.DataFrame(rows)


def test_report_adds_the_graph_columns_and_names_what_was_not_captured(tmp_path):
    pytest.importorskip("tabulate")
    from bench import report
    headers, rows = report.case_rows(_df(True))
    assert headers[-3:] == ["ours graph (GB/s)", "vs eager (graph)", "vs liger (graph)"]
    # ours: 100 GB/s at 0.010 ms plain is 250 GB/s at 0.004 ms replayed; eager's graph ms 0.006 / 0.004
    assert rows[0][-3:] == ["250", "1.50x", "n/c"]
    assert "vs eager" in headers and rows[0][headers.index("vs eager")] == "0.80x"  # the plain column stays
    lines = report.graph_section(_df(True))
    assert lines[0] == "## Graph timing" and any("| liger | not capturable: RuntimeError: sync |" in ln for ln in lines)


def test_report_without_graph_timing_is_unchanged():
    pytest.importorskip("tabulate")
    from bench import report
    headers, _ = report.case_rows(_df(False))
    assert not any("graph" in h for h in headers) and report.graph_section(_df(False)) == []


def test_report_reads_csvs_with_and_without_graph_columns(tmp_path):
    """A GPU directory where one op was run with graph timing and another before it existed."""
    pytest.importorskip("pandas")
    from bench import report
    gpu = tmp_path / "H100"
    with_graph = _df(True).to_dict("records")
    schema.write_rows(gpu / "softmax.csv", with_graph)
    schema.write_rows(gpu / "rms_norm.csv", [{**r, "op": "rms_norm"} for r in _df(False).to_dict("records")])
    df = report.load(gpu)
    assert set(df["graph_note"]) == {"", "not capturable: RuntimeError: sync"}  # no NaN where a CSV lacks it
    assert report.graph_baselines(df[df["op"] == "rms_norm"]) is None
    assert report.graph_baselines(df[df["op"] == "softmax"]) == ["eager", "liger"]


def test_cpu_run_says_graph_timing_needs_a_gpu(fake, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([fake], {}))
    assert run.main(["--op", "x", "--mode", "fwd", "--timing", "plain,graph", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "--timing graph ignored" in out and "ms_graph" not in out


def test_graph_bench_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: tests/ops/test_cuda_graphs.py covers capture")
    with pytest.raises(Exception):
        timing.graph_bench(lambda: [lambda: None])


def test_gpu_flow_with_graph_timing_on_backward_rows(monkeypatch, tmp_path, capsys):
    """bench.run's GPU path end to end (CPU stand-ins for the device, as in test_bench_gpu_flow.py) with
    --timing plain,graph:bwd: backward rows carry ms_graph, forward rows leave it empty, and the
    GPU README has the graph columns and section."""
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    from bench import gpu_info, metrics
    from tests.bench.test_bench_gpu_flow import ENV as GPU_ENV, FAKE

    monkeypatch.setattr(run, "has_gpu", lambda: True)
    monkeypatch.setattr(run, "DEVICE", "cpu")
    monkeypatch.setattr(timing, "gpu_bench", lambda fn, warmup=25, rep=100: timing.cpu_bench(fn, 1, 3))
    built = []

    def graph_bench(build, warmup=25, rep=100):
        calls = build()
        built.append(len(calls))
        return timing.cpu_bench(lambda: [c() for c in calls], 1, 3) / len(calls)

    monkeypatch.setattr(timing, "graph_bench", graph_bench)
    monkeypatch.setattr(metrics, "measure_ceilings",
                        lambda bench_fn=None: {"copy_GBps": 100.0, "matmul_TFLOPs": 1.0, "copy_ms": 1.0, "matmul_ms": 1.0})
    monkeypatch.setattr(gpu_info, "info", lambda: dict(GPU_ENV))
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    mod = catalog.load(FAKE)
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([mod], {}))
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--baselines", "eager", "--timing", "plain,graph:bwd",
                     "--out", str(out)]) == 0
    rows = schema.read_rows(out / "FAKEGPU" / "fake_softmax.csv")
    assert built and all(float(r["ms_graph"]) > 0 for r in rows if r["mode"] == "bwd")
    assert all(r["ms_graph"] == "" for r in rows if r["mode"] == "fwd")
    tables = (out / "FAKEGPU" / "README.md").read_text()
    assert "ours graph (GB/s)" in tables and "vs eager (graph)" in tables and "## Graph timing" in tables


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["fwd", "bwd"])
def test_graph_bench_captures_ours_and_eager_on_the_gpu(mode):
    """timing.graph_bench on every op's smallest case: ours is captured and replayed (it must be
    capturable: issue 30) with a positive time; eager too, except where it reads the device from the host
    (grouped GEMM's loop over offsets.tolist()), which the row must then say."""
    specs, _ = catalog.discover()
    for op, spec in specs.items():
        if mode == "bwd" and not spec.GRAD_INPUTS:
            continue
        rows = case.run_case(spec, spec.SMALL_SHAPES[-1], torch.float16, mode, [baselines.OURS, "eager"], "cuda",
                             timer=lambda fn: timing.gpu_bench(fn, 5, 20), env=ENV, log=lambda m: None,
                             graph_timer=lambda build: timing.graph_bench(build, 5, 20))
        for r in rows:
            assert r["status"] == "ok", (op, r)
            if r["impl"] == "eager" and op == "grouped_gemm":
                assert r["graph_note"].startswith("not capturable") or r["ms_graph"] > 0, (op, r)
                continue
            assert r["graph_note"] == "" and r["ms_graph"] > 0, (op, r)
