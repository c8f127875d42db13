"""Collecting the tests must not change the run mode: a test module that sets TRITON_INTERPRET (or
HELION_OPS_STRICT) when it is imported turns every GPU test of a `pytest -m gpu` run into a CPU-mode run
(each then refuses its CUDA tensors). Every test module is imported here in a fresh process, with
neither variable set, as on a GPU machine (``torch.cuda.is_available`` made to say True, so that
tests/conftest.py leaves TRITON_INTERPRET alone), and the environment checked after each import."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
WATCHED = ("TRITON_INTERPRET", "HELION_OPS_STRICT")

SCRIPT = """
import importlib, os, pathlib, sys
import torch
torch.cuda.is_available = lambda: True
importlib.import_module("tests.conftest")  # pytest imports it first; on a GPU machine it sets only STRICT
changed = []
for path in map(pathlib.Path, sys.argv[1:]):
    parts = path.with_suffix("").parts
    if not (path.parent / "__init__.py").exists():  # as pytest does: the rootless directory goes on sys.path
        sys.path.insert(0, str(path.parent.resolve()))
        parts = parts[-1:]
    name = ".".join(parts)
    before = {k: os.environ.get(k) for k in %r}
    importlib.import_module(name)
    changed += [f"{name} sets {k}={os.environ[k]!r}" for k in before if os.environ.get(k) != before[k]]
    for k, v in before.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
print("\\n".join(changed))
""" % (WATCHED,)


def test_importing_test_modules_leaves_the_run_mode_alone():
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))
    env = {k: v for k, v in os.environ.items() if k not in WATCHED}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", SCRIPT, *modules], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "", "test modules change the run mode when imported:\n" + r.stdout
