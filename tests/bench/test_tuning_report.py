"""bench.tuning_report's CPU side: the plan that keeps the `tune` session step inside its budget."""
import pytest

from bench import tuning_report as T

OPS = ["softmax", "rms_norm", "layer_norm", "matmul"]


def test_dry_plan_fits_the_session_step(capsys):
    assert T.main(["--dry", "--full-limit", "35", "--budget", "200"]) == 0
    out = capsys.readouterr().out
    assert "matmul     quick" in out and "helion" not in out  # 200 s leave no room for Helion's ~90 s
    steps = T.plan(OPS, 35, 200, True)
    assert sum(s for *_, s in steps) <= 200
    assert [p for n, p, _ in steps if n == "matmul"] == ["quick", "full"]


def test_plan_shares_the_budget_and_puts_helion_last_matmul_first():
    steps = T.plan(OPS, 40, 560, True)
    assert [n for n, p, _ in steps if p.startswith("helion")] == ["matmul", "softmax", "rms_norm", "layer_norm"]
    assert sum(s for *_, s in steps) <= 560
    tight = T.plan(OPS, 40, 100, True)  # quick always runs; fulls share what is left
    assert [s for n, p, s in tight if p == "quick"] == [T.QUICK_S] * 4
    assert sum(s for n, p, s in tight if p == "full") <= 100 - 4 * T.QUICK_S + 1e-9


def test_unknown_op_is_named():
    with pytest.raises(SystemExit, match="attention"):
        T.main(["--dry", "--ops", "softmax,attention"])
