"""bench.check: catches a planted 20% slowdown of ours, passes a 2% one."""
import shutil
from pathlib import Path

import pytest

from bench import check, schema

DATA = Path(__file__).parent / "data"


def slowed(tmp_path: Path, factor: float, status: str | None = None) -> Path:
    """A copy of the fixture run with ours' ms multiplied by factor."""
    new = tmp_path / f"new{factor}"
    shutil.copytree(DATA, new)
    path = new / "H100" / "softmax.csv"
    rows = schema.read_rows(path)
    for r in rows:
        if r["impl"] == "helion_ops" and r["ms"]:
            r["ms"] = str(float(r["ms"]) * factor)
            if status and r["status"] == "ok":
                r["status"] = status
    schema.write_rows(path, rows, merge=False)
    return new


def test_planted_slowdown_is_caught(tmp_path, capsys):
    assert check.main(["--new", str(slowed(tmp_path, 1.2)), "--old", str(DATA)]) == 1
    out = capsys.readouterr().out
    # softmax fwd 4096x4096 and bwd 4096x4096 (the FAIL row counts neither way); matmul unchanged.
    assert out.count("REGRESSION") == 2
    assert "REGRESSION H100 softmax fwd 4096x4096 bf16: 0.0250 ms -> 0.0300 ms (+20.0%)" in out


def test_small_slowdown_within_band_passes(tmp_path, capsys):
    assert check.main(["--new", str(slowed(tmp_path, 1.02)), "--old", str(DATA), "--band", "0.05"]) == 0
    assert "0 regressions" in capsys.readouterr().out


def test_speedup_passes_and_csv_form(tmp_path):
    new = slowed(tmp_path, 0.5)
    assert check.main(["--csv", str(new / "H100" / "softmax.csv"),
                       "--baseline", str(DATA / "H100" / "softmax.csv")]) == 0


def test_ok_to_fail_is_a_regression(tmp_path, capsys):
    assert check.main(["--new", str(slowed(tmp_path, 1.0, status="FAIL")), "--old", str(DATA)]) == 1
    assert "status ok -> FAIL" in capsys.readouterr().out


def test_nothing_in_common_is_not_a_pass(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check.main(["--new", str(tmp_path / "empty"), "--old", str(DATA)]) == 2


def test_needs_two_runs():
    with pytest.raises(SystemExit):
        check.main(["--new", str(DATA)])


def test_against_the_committed_csvs(tmp_path, capsys):
    """--old git:HEAD reads the committed versions of the new run's CSVs."""
    import subprocess

    repo = tmp_path / "repo"
    shutil.copytree(DATA, repo / "results")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", "results")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "run")
    path = repo / "results" / "H100" / "softmax.csv"
    rows = schema.read_rows(path)
    for r in rows:
        if r["impl"] == "helion_ops" and r["ms"]:
            r["ms"] = str(float(r["ms"]) * 1.3)
    schema.write_rows(path, rows, merge=False)
    assert check.main(["--new", str(repo / "results" / "H100"), "--old", "git:HEAD"]) == 1
    assert "REGRESSION H100 softmax fwd 4096x4096 bf16" in capsys.readouterr().out
