"""The upstream-Helion baseline wiring, with helion_ops.dsl standing in for the `helion` package.

The stand-in runs the same tests/dsl/kernels.py source in the interpreter, so the source swap,
the kernel lookup by op NAME, the arity check and the fwd-only rule are all exercised on CPU.
"""
import sys

import pytest
import torch

from bench import baselines, case, catalog, helion_baseline


def _clear():
    helion_baseline.available.cache_clear()
    helion_baseline._upstream_kernels.cache_clear()


@pytest.fixture
def fake_helion(monkeypatch):
    try:
        import helion_ops.dsl as dsl
        import helion_ops.dsl.language as lang
    except Exception as e:  # the DSL is another engineer's, mid-edit
        pytest.skip(f"helion_ops.dsl does not import: {e}")
    monkeypatch.setitem(sys.modules, "helion", dsl)
    monkeypatch.setitem(sys.modules, "helion.language", lang)
    monkeypatch.setenv(helion_baseline.EFFORT_ENV, "none")
    _clear()
    yield
    _clear()


def _op(name):
    try:
        return catalog.load(name)
    except Exception as e:
        pytest.skip(f"op {name} does not load: {e}")


def test_softmax_helion_baseline_runs_and_is_checked(fake_helion):
    mod = _op("softmax")
    impls, notes = baselines.impl_names(mod, ["eager", "helion"], "fwd")
    assert impls == [baselines.OURS, "eager", "helion"] and not notes
    rows = {r["impl"]: r for r in case.run_case(mod, (5, 17), torch.float32, "fwd", impls, "cpu",
                                                 log=lambda m: None)}
    assert rows["helion"]["status"] == "ok" and rows["helion"]["compile_s"] >= 0
    assert "autotune_effort='none'" in helion_baseline.label()


def test_helion_is_forward_only_and_needs_a_kernel(fake_helion):
    impls, notes = baselines.impl_names(_op("softmax"), ["helion"], "bwd")
    assert impls == [baselines.OURS] and "forward only" in notes[0]
    impls, notes = baselines.impl_names(_op("attention"), ["helion"], "fwd")
    assert impls == [baselines.OURS] and "no helion baseline" in notes[0]


def test_no_helion_package_is_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "helion", None)  # `import helion` raises ImportError
    _clear()
    try:
        impls, notes = baselines.impl_names(_op("softmax"), ["helion"], "fwd")
        assert impls == [baselines.OURS] and "`import helion` fails" in notes[0]
    finally:
        _clear()
