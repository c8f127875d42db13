"""Report generation from the fixture CSVs in tests/bench/data (a fake H100 run)."""
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pandas")
pytest.importorskip("tabulate")
pytest.importorskip("matplotlib")

from bench import report  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture
def results(tmp_path):
    shutil.copytree(DATA, tmp_path / "results")
    return tmp_path / "results"


def test_build_writes_tables_plots_and_summary(results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# proj\n\n## Results\n{report.BEGIN}\n{report.NO_RESULTS}\n{report.END}\ntail\n")
    written = report.build(results, readme=readme)

    gpu = results / "H100"
    for name in ("README.md", "softmax.png", "matmul.png"):
        assert gpu / name in written and (gpu / name).stat().st_size > 0
    assert (gpu / "softmax.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    tables = (gpu / "README.md").read_text()
    assert "NVIDIA H100 80GB HBM3" in tables and "torch 2.11.0+cu130" in tables
    assert "copy 3,003 GB/s" in tables and "745 TFLOP/s" in tables  # ceilings
    assert "### softmax fwd bf16" in tables and "### matmul fwd bf16" in tables
    assert "vs cublas" in tables and "2.34x" in tables  # 0.0585 / 0.025
    assert "ours % of ceiling" in tables and "| 92%" in tables  # 687 of 745 TFLOP/s (ceilings.json)

    summary = (results / "README.md").read_text()
    assert "[H100](H100/README.md)" in summary and "vs compile" in summary
    assert "1.75x" in summary  # softmax bwd vs eager: 0.07 / 0.04

    text = readme.read_text()
    assert report.NO_RESULTS not in text and "[H100](results/H100/README.md)" in text
    assert text.endswith("tail\n") and text.count(report.BEGIN) == 1


def test_fail_rows_show_fail_not_speedup(results):
    report.build(results)
    row = next(line for line in (results / "H100" / "README.md").read_text().splitlines()
               if line.startswith("| 8192x1000"))
    assert row.count("FAIL") == 3 and "x " not in row.replace("8192x1000", "")
    tables = (results / "H100" / "README.md").read_text()
    assert "## Rows not ok, and why" in tables and "| 8192x1000 | bf16 | helion_ops | FAIL |" in tables


def test_empty_results_say_so(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.BEGIN}\nold\n{report.END}\n")
    report.build(tmp_path / "results", readme=readme)
    assert report.NO_RESULTS in (tmp_path / "results" / "README.md").read_text()
    assert report.NO_RESULTS in readme.read_text()


def test_cli_regenerates(results, capsys):
    assert report.main(["--results", str(results), "--no-readme"]) == 0
    assert "softmax.png" in capsys.readouterr().out
