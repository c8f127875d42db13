"""The issue-28 baselines on CPU, with fakes for what CI lacks (a GPU, liger_kernel, helion):
liger (forward and backward through an autograd Function), compile_max (its first call reported as
tuning, never as ms), helion tuned once, stored under results/<GPU>/helion_configs and reused, and the
notes (not crashes) when a library or the GPU is missing."""
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from bench import baselines, catalog, gpu_info, helion_baseline, liger_baseline, metrics, run, schema, timing  # noqa: E402

FAKE = str(Path(__file__).parent / "fake_op.py")
ENV = {"gpu": "FAKEGPU", "gpu_full": "Fake GPU 1", "torch": "t", "triton": "tr", "commit": "abc",
       "date": "2026-01-01T00:00:00Z"}


class _Softmax(torch.autograd.Function):
    """A stand-in for LigerSoftmaxFunction: softmax with a hand-written backward."""

    @staticmethod
    def forward(ctx, x):
        y = torch.softmax(x.float(), -1).to(x.dtype)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        yf, g = y.float(), dy.float()
        return (yf * (g - (g * yf).sum(-1, keepdim=True))).to(dy.dtype)


@pytest.fixture
def fake_liger(monkeypatch):
    pkg = types.ModuleType("liger_kernel")
    pkg.__version__ = "0.0-fake"
    ops = types.ModuleType("liger_kernel.ops")
    sm = types.ModuleType("liger_kernel.ops.softmax")
    sm.LigerSoftmaxFunction = _Softmax
    for name, mod in (("liger_kernel", pkg), ("liger_kernel.ops", ops), ("liger_kernel.ops.softmax", sm)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(liger_baseline.OPS, "fake_softmax", ("liger_kernel.ops.softmax", "LigerSoftmaxFunction", ()))
    liger_baseline.available.cache_clear()
    yield
    liger_baseline.available.cache_clear()


class FakeConfig(dict):
    def to_json(self):
        return json.dumps(self)

    @classmethod
    def from_json(cls, text):
        return cls(json.loads(text))


class FakeBound:
    def __init__(self, kernel):
        self.kernel, self.config = kernel, None

    def set_config(self, config):
        self.config = config
        self.kernel.set_configs.append(config)


class FakeKernel:
    """The parts of helion.Kernel the baseline uses: bind, autotune, call."""

    def __init__(self):
        self.bound, self.tunes, self.set_configs = {}, 0, []

    def bind(self, args):
        key = tuple(tuple(a.shape) for a in args)
        return self.bound.setdefault(key, FakeBound(self))

    def autotune(self, args, force=True):
        self.tunes += 1
        cfg = FakeConfig(block_sizes=[32], num_warps=4)
        self.bind(args).set_config(cfg)
        return cfg

    def __call__(self, x):
        return torch.softmax(x, -1)


@pytest.fixture
def fake_helion(monkeypatch):
    mod = types.ModuleType("helion")
    mod.Config = FakeConfig
    mod.__version__ = "9.9-fake"
    monkeypatch.setitem(sys.modules, "helion", mod)
    helion_baseline.available.cache_clear()
    yield
    helion_baseline.available.cache_clear()


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(run, "has_gpu", lambda: True)
    monkeypatch.setattr(run, "DEVICE", "cpu")
    monkeypatch.setattr(baselines, "_has_gpu", lambda: True)
    monkeypatch.setattr(timing, "gpu_bench", lambda fn, warmup=25, rep=100: timing.cpu_bench(fn, 1, 3))
    monkeypatch.setattr(metrics, "measure_ceilings",
                        lambda bench_fn=None: {"copy_GBps": 100.0, "matmul_TFLOPs": 1.0, "copy_ms": 1.0, "matmul_ms": 1.0})
    monkeypatch.setattr(gpu_info, "info", lambda: dict(ENV))
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(kw) or fn)
    mod = catalog.load(FAKE)
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([mod], {}))
    monkeypatch.setitem(baselines.COMPILE_MAX_TARGET, "fake_softmax", "eager")
    monkeypatch.setattr(helion_baseline, "store", None)
    mod.compiled = compiled
    return mod


def _rows(out, impl=None):
    rows = schema.read_rows(out / "FAKEGPU" / "fake_softmax.csv")
    return [r for r in rows if impl is None or r["impl"] == impl]


def test_liger_runs_fwd_and_bwd_like_any_impl(fake_gpu, fake_liger, tmp_path):
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "both", "--baselines", "eager,liger",
                     "--out", str(out), "--no-report"]) == 0
    rows = _rows(out, "liger")
    assert {r["mode"] for r in rows} == {"fwd", "bwd"} and len(rows) == 4
    assert all(r["status"] == "ok" and float(r["ms"]) > 0 and r["version"] == "liger-kernel 0.0-fake" for r in rows)
    ours = _rows(out, baselines.OURS)
    assert all(r["speedup_vs_liger"] for r in ours)
    runs = json.loads((out / "FAKEGPU" / "runs.json").read_text())
    assert runs["fake_softmax"]["baselines"]["liger"]["version"] == "liger-kernel 0.0-fake"


def test_compile_max_reports_its_tuning_apart_from_ms(fake_gpu, tmp_path):
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager,compile_max",
                     "--out", str(out)]) == 0
    assert {"mode": baselines.MAX_MODE, "dynamic": False} in fake_gpu.compiled
    rows = _rows(out, baselines.COMPILE_MAX)
    assert rows and all(r["tuning"] == baselines.MAX_MODE and float(r["tune_s"]) >= 0 for r in rows)
    tables = (out / "FAKEGPU" / "README.md").read_text()
    assert "## Tuned baselines: search time per case" in tables and "| compile_max | max-autotune" in tables
    assert "| compile_max | torch t | tuned per shape by inductor" in tables


def test_tuned_shapes_limit_the_tuned_baselines(fake_gpu, tmp_path):
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager,compile_max",
                     "--tuned-shapes", "1", "--out", str(out), "--no-report"]) == 0
    assert len(_rows(out, baselines.COMPILE_MAX)) == 1 and len(_rows(out, "eager")) == 2


def test_helion_tunes_once_stores_and_reuses(fake_gpu, fake_helion, tmp_path, monkeypatch):
    kernel = FakeKernel()
    monkeypatch.setattr(fake_gpu, "helion_kernel", kernel, raising=False)
    monkeypatch.setenv(helion_baseline.EFFORT_ENV, "quick")
    monkeypatch.setenv(helion_baseline.TUNE_S_ENV, "30")
    out = tmp_path / "results"
    args = ["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "eager,helion", "--out", str(out)]
    assert run.main(args) == 0
    assert kernel.tunes == 2  # one search per shape
    store = json.loads((out / "FAKEGPU" / "helion_configs" / "fake_softmax.json").read_text())
    assert set(store) == {"fp32 64x128", "fp32 128x256"}
    assert all(e["config"] == {"block_sizes": [32], "num_warps": 4} and e["effort"] == "quick" for e in store.values())
    first = _rows(out, "helion")
    assert [r["tuning"] for r in first] == ["quick, cap 30 s"] * 2 and all(float(r["tune_s"]) >= 0 for r in first)
    assert all(r["version"] == "helion 9.9-fake" for r in first)

    kernel2 = FakeKernel()  # a later run (fresh process): the stored configs, no search
    monkeypatch.setattr(fake_gpu, "helion_kernel", kernel2)
    assert run.main(args) == 0
    assert kernel2.tunes == 0 and kernel2.set_configs == [FakeConfig(block_sizes=[32], num_warps=4)] * 2
    again = _rows(out, "helion")
    assert [r["tuning"] for r in again] == ["quick, cap 30 s (stored)"] * 2
    assert [float(r["tune_s"]) for r in again] == [store[k]["tune_s"] for k in ("fp32 64x128", "fp32 128x256")]
    tables = (out / "FAKEGPU" / "README.md").read_text()
    assert "(tuned: quick, cap 30 s)" in tables and "(untuned)" not in tables

    monkeypatch.setenv(helion_baseline.TUNE_S_ENV, "60")  # a longer cap than the stored searches had: search again
    kernel3 = FakeKernel()
    monkeypatch.setattr(fake_gpu, "helion_kernel", kernel3)
    assert run.main(args) == 0
    assert kernel3.tunes == 2 and {r["tuning"] for r in _rows(out, "helion")} == {"quick, cap 60 s"}
    summary = (out / "README.md").read_text()
    assert "(n=2, tuned: quick, cap 60 s)†" in summary  # two shapes: marked as too few for a geomean


def test_helion_effort_none_is_untuned_and_stores_nothing(fake_gpu, fake_helion, tmp_path, monkeypatch):
    kernel = FakeKernel()
    monkeypatch.setattr(fake_gpu, "helion_kernel", kernel, raising=False)
    monkeypatch.setenv(helion_baseline.EFFORT_ENV, "none")
    out = tmp_path / "results"
    assert run.main(["--op", "fake", "--dtype", "fp32", "--mode", "fwd", "--baselines", "helion",
                     "--out", str(out)]) == 0
    assert kernel.tunes == 0 and not (out / "FAKEGPU" / "helion_configs").exists()
    assert {r["tuning"] for r in _rows(out, "helion")} == {"none"}
    assert "(untuned)" in (out / "FAKEGPU" / "README.md").read_text()
    assert "(n=2, untuned)†" in (out / "README.md").read_text()


def test_bad_effort_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(helion_baseline.EFFORT_ENV, "fast")
    with pytest.raises(ValueError, match="HELION_BENCH_EFFORT='fast'"):
        helion_baseline.effort()


def test_missing_libraries_and_gpu_are_notes(monkeypatch):
    mod = catalog.load(FAKE)
    monkeypatch.setitem(liger_baseline.OPS, "fake_softmax", ("liger_kernel.ops.softmax", "X", ()))
    monkeypatch.setitem(baselines.COMPILE_MAX_TARGET, "fake_softmax", "eager")
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # `import liger_kernel` raises ImportError
    liger_baseline.available.cache_clear()
    try:
        names, notes = baselines.impl_names(mod, ["liger", "compile_max"], "fwd", gpu=True)
        assert names == [baselines.OURS, "compile_max"]
        assert any("liger baseline skipped (`import liger_kernel` fails" in n for n in notes)
        names, notes = baselines.impl_names(mod, ["liger", "compile_max"], "fwd", gpu=False)
        assert names == [baselines.OURS]
        assert any("need a CUDA GPU" in n for n in notes) and any("no CUDA GPU" in n for n in notes)
        names, _ = baselines.impl_names(catalog.load(FAKE), None, "fwd", gpu=False)  # defaults: skipped quietly
        assert "liger" not in names and "compile_max" not in names
    finally:
        liger_baseline.available.cache_clear()


def test_cpu_run_with_every_new_baseline_degrades_to_notes(monkeypatch, capsys):
    """The interpreter run (no GPU) asked for liger, compile_max and helion: notes, exit 0, ours checked."""
    mod = catalog.load(FAKE)
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([mod], {}))
    monkeypatch.setattr(run, "has_gpu", lambda: False)
    monkeypatch.setattr(baselines, "_has_gpu", lambda: False)
    monkeypatch.setitem(sys.modules, "helion", None)
    helion_baseline.available.cache_clear()
    try:
        code = run.main(["--op", "fake", "--baselines", "eager,liger,compile_max,helion", "--mode", "fwd"])
    finally:
        helion_baseline.available.cache_clear()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "note: fake_softmax: no liger baseline" in out
    assert "note: fake_softmax: no compile_max baseline" in out
    assert "note: fake_softmax: no helion baseline" in out or "helion baseline skipped" in out
    assert run.CPU_TITLE in out


def test_liger_adapters_name_real_functions():
    """The adapter table points at Liger 0.8.5's Function classes, with the op's eager constants."""
    assert liger_baseline.OPS["rms_norm"][2][0] == 1e-6 and liger_baseline.OPS["layer_norm"][2] == (1e-5,)
    assert liger_baseline.OPS["rms_norm"][2][3] is False  # in_place off: dy is shared between impls
    for op, (module, cls, _) in liger_baseline.OPS.items():
        assert module.startswith("liger_kernel.ops.") and cls.startswith("Liger") and cls.endswith("Function")


def test_plan_counts_compile_max(fake_gpu, capsys):
    assert run.main(["--op", "fake", "--dtype", "bf16", "--mode", "fwd", "--baselines", "eager,compile_max",
                     "--plan"]) == 0
    est = float(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("plan fake"))
                .rsplit("estimated ", 1)[1].split()[0])
    assert est >= 2 * run.FIRST_CALL_S[(baselines.COMPILE_MAX, "fwd")]
    assert math.isfinite(est)


def test_tune_cli_without_a_gpu_is_a_note(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert helion_baseline.main(["--op", "softmax", "--tuned-shapes", "2,matmul=1"]) == 0
    assert "note: no CUDA GPU: nothing tuned" in capsys.readouterr().out
