"""The README's promises that the harness side can check: DSL example size and run, commands."""
import importlib.util
import os
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def example() -> str:
    return re.search(r"## The DSL in 30 lines.*?```python\n(.*?)```", README, re.S).group(1)


def test_markers_and_commands_exist():
    assert README.count("<!-- results:begin -->") == 1 and README.count("<!-- results:end -->") == 1
    for script in ("scripts/run", "scripts/test", ".ci/run"):
        assert os.access(REPO / script, os.X_OK), script


def test_dsl_example_is_30_lines_and_runs(tmp_path, monkeypatch):
    code = example()
    assert len(code.strip().splitlines()) <= 30
    assert "import helion_ops.dsl as helion" in code and "for tile_m in hl.tile(m)" in code
    import helion_ops.dsl as helion

    if not hasattr(helion, "kernel"):
        pytest.skip("helion_ops.dsl does not define `kernel` yet")
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        code = code.replace('device="cuda"', 'device="cpu"')
    # Small odd shape, and the default config instead of a (slow, in the interpreter) search.
    code = code.replace("4096, 4096", "37, 300").replace("softmax.autotune((x,))", "bound.default_config()")
    path = tmp_path / "readme_example.py"  # the frontend reads kernel source from a file
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("readme_example", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # asserts against torch.softmax
