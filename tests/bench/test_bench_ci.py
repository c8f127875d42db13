"""CI wiring: README, scripts/test and .ci/run agree, and the stored host-cost baseline catches a
planted regression (pytest-benchmark's --benchmark-compare-fail)."""
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "tests" / "bench" / "data" / "benchmarks" / "baseline.json"


def script_pytest_line() -> str:
    """The pytest command of scripts/test, as run with no arguments."""
    line = next(ln for ln in (REPO / "scripts" / "test").read_text().splitlines() if ln.startswith("python -m pytest"))
    return line.replace('"${where[@]}"', "tests").replace(' "$@"', "")


def test_readme_states_exactly_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    stated = re.search(r"`scripts/test` runs exactly\s*```bash\n(.*?)\n```", readme, re.S).group(1).strip()
    assert stated == script_pytest_line()
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text()
    assert "--benchmark-compare=tests/bench/data/benchmarks/baseline.json" in stated
    assert ".benchmarks/" in (REPO / ".gitignore").read_text()  # where the CI JSON goes


def test_baseline_covers_every_host_cost_benchmark():
    names = {b["name"] for b in json.loads(BASELINE.read_text())["benchmarks"]}
    assert "test_dispatch_cached_kernel" in names and "test_autotuner_overhead_per_candidate" in names
    assert any(n.startswith("test_codegen_time[softmax.") for n in names)


def test_compare_fail_catches_a_planted_regression(tmp_path, factor=0.01, code=1):
    data = json.loads(BASELINE.read_text())
    for b in data["benchmarks"]:
        for k in ("min", "max", "mean", "median"):
            b["stats"][k] *= factor  # factor 0.01: the stored run was 100x faster, so today's is a regression
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps(data))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/bench/test_host_costs.py", "-k", "softmax_fwd", "--benchmark-only",
                        f"--benchmark-compare={planted}", "--benchmark-compare-fail=min:300%"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == code, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Performance has regressed" in p.stdout + p.stderr
