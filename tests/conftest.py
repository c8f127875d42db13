"""Tests run on CPU in Triton's interpreter unless a CUDA GPU is present.

TRITON_INTERPRET must be set before any @triton.jit function is created, so it
is set here, before helion_ops is imported by any test module.
"""
import os

import pytest

try:
    import torch
    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _HAS_CUDA = False

if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HELION_AUTOTUNE_PROGRESS", "0")
# A kernel that fails to compile or launch must fail its test, not pass through the eager fallback
# (tests/reliability/test_fallback.py turns this off where it tests the fallback itself).
os.environ.setdefault("HELION_OPS_STRICT", "1")

DEVICE = "cuda" if _HAS_CUDA and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


@pytest.fixture
def device() -> str:
    return DEVICE


def pytest_collection_modifyitems(config, items):
    if DEVICE == "cuda":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run with -m gpu on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _host(info: dict) -> str:
    cpu = info.get("cpu", {})
    return (f"{cpu.get('brand_raw', '?')} x{cpu.get('count', '?')}, "
            f"{info.get('python_implementation', '?')} {info.get('python_version', '?')}")


def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    """Name, in one line, a difference in what bears on host-cost timings: CPU model and count, Python.

    pytest-benchmark's own check warns with both machines' whole machine_info (6,000 characters: CPU
    flags, clock, kernel release...) whenever anything differs; pyproject.toml filters that warning.
    The comparison's margin (scripts/test: min:300%) is what absorbs machine differences."""
    now, then = _host(machine_info), _host(compared_benchmark.get("machine_info", {}))
    if now != then:
        benchmarksession.logger.info(f"Host-cost baseline recorded on {then}; this machine: {now}.")


@pytest.fixture(autouse=True)
def _keep_run_mode():
    """A test that runs a harness command in-process (bench.soak --cpu, bench.run without a GPU) sets
    TRITON_INTERPRET=1 for the rest of the process; on a GPU machine every later GPU test would then
    refuse its CUDA tensors. Restore the variables the harness sets after each test."""
    saved = {k: os.environ.get(k) for k in ("TRITON_INTERPRET", "HELION_OPS_STRICT")}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
