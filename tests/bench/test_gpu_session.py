"""The GPU session plan (scripts/gpu_session.sh bench_norms / bench_gemm) fits the device's 600 s per
command by the harness's own cost model, on representative shapes that are in each op's SHAPES."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from bench import catalog, run

REPO = Path(__file__).resolve().parents[2]
SESSION = REPO / "bench" / "session_shapes.json"
SCRIPT = REPO / "scripts" / "gpu_session.sh"


def test_script_parses_and_names_the_steps():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    text = SCRIPT.read_text()
    for step in ("bench_norms)", "bench_gemm)", "bench_report)", "plan)", "dsl)", "tune)", "test)", "helion_tune)",
                 "soak)", "host)", "host_dispatch)", "matmul_sweep)"):
        assert step in text
    assert "results/H100" not in text  # the results directory follows the detected card


@pytest.mark.parametrize("op", [k for k in json.loads(SESSION.read_text()) if not k.startswith("_")])
def test_session_shapes_are_op_shapes(op):
    try:
        mod = catalog.load(op)
    except Exception as e:
        pytest.skip(f"{op} does not load: {e}")
    shapes = run.select_shapes(mod, str(SESSION), gpu=True, quick=False)
    assert shapes and all(s in [tuple(x) for x in mod.SHAPES] for s in shapes)


@pytest.mark.parametrize("ops", ["softmax,rms_norm,layer_norm", "matmul,grouped_gemm,attention"])
def test_each_bench_step_is_estimated_within_its_budget(ops, capsys, monkeypatch):
    # the helion_tune step runs before the bench steps, so they find Helion's configs stored
    from bench import helion_baseline

    monkeypatch.setattr(helion_baseline, "load_entries", lambda op: {"stored": {}})
    budget = float(re.search(r"BENCH_BUDGET:-(\d+)", SCRIPT.read_text()).group(1))
    baselines = re.search(r"^BASELINES=(\S+)", SCRIPT.read_text(), re.M).group(1)
    tuned = re.search(r"TUNED_SHAPES:-([^}]+)}", SCRIPT.read_text()).group(1)
    graph = re.search(r"BENCH_GRAPH_TIMING:-([^}]+)}", SCRIPT.read_text()).group(1)
    assert "graph:bwd" in graph or graph.endswith(",graph")  # backward rows get the graph column by default
    code = run.main(["--op", ops, "--dtype", "bf16", "--mode", "both", "--warmup", "10", "--rep", "40",
                     "--baselines", baselines, "--shapes", str(SESSION), "--tuned-shapes", tuned,
                     "--timing", graph, "--plan"])
    out = capsys.readouterr().out
    if code != 0 or "not loaded" in out:
        pytest.skip(f"catalog incomplete: {out[-500:]}")
    est = float(re.search(r"^plan: \d+ cases, estimated (\d+) s", out, re.M).group(1))
    assert est <= 0.6 * budget, out  # room for the model's error before the soft budget cuts cases
