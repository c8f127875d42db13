"""Every script in examples/ runs as a user would run it, on CPU at tiny sizes (Triton's interpreter)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "examples").glob("*.py"))


def run(script: Path) -> str:
    env = dict(os.environ, TRITON_INTERPRET="1", HELION_OPS_STRICT="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, str(script), "--tiny"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_every_example_is_listed():
    listed = (REPO / "examples" / "README.md").read_text()
    assert SCRIPTS and all(f"({s.name})" in listed for s in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_runs_tiny_on_cpu(script):
    out = run(script)
    if script.stem == "train_small_model":
        losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", out)]
        assert len(losses) >= 3 and losses[-1] < losses[0], out  # it learns
    if script.stem == "write_a_kernel":
        assert "@triton.jit" in out and "default config:" in out and "matches torch" in out
