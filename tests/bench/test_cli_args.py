"""The harness CLIs refuse bad arguments with an error naming the option (exit 2), and --mode both
runs the forward AND the backward, labelled as such."""
import re
import subprocess
from pathlib import Path

import pytest

from bench import catalog, check, run

FAKE = str(Path(__file__).parent / "fake_op.py")
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("argv, option, says", [
    (["--mode", "sideways"], "--mode", "invalid choice: 'sideways'"),
    (["--mode", "fwd,bwd"], "--mode", "invalid choice: 'fwd,bwd'"),
    (["--shapes", "abc"], "--shapes", "'abc' is not 'preset', 'small', a JSON file, or shapes like"),
    (["--shapes", "4096x;"], "--shapes", "is not 'preset'"),
    (["--shapes", "no/such/file.json"], "--shapes", "no such file: no/such/file.json"),
    (["--dtype", "bf17"], "--dtype", "unknown dtype 'bf17'"),
    (["--max-shapes", "many"], "--max-shapes", "want N, op=N pairs"),
    (["--max-shapes", "matmul=0"], "--max-shapes", "want N, op=N pairs"),
    (["--tuned-shapes", "x"], "--tuned-shapes", "want N, op=N pairs"),
    (["--warmup", "-5"], "--warmup", "want a value > 0"),
    (["--time-budget", "soon"], "--time-budget", "'soon' is not a number"),
])
def test_bad_arguments_exit_2_naming_the_option(argv, option, says, capsys):
    with pytest.raises(SystemExit) as exc:
        run.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and says in err, err


def test_bad_json_shapes_file_is_named(tmp_path, capsys):
    bad = tmp_path / "shapes.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit):
        run.parse_args(["--shapes", str(bad)])
    assert "argument --shapes: " in capsys.readouterr().err


def test_good_arguments_parse():
    a = run.parse_args(["--mode", "both", "--shapes", "4x8;16x32", "--dtype", "bf16,float16",
                        "--max-shapes", "matmul=5,attention=4", "--tuned-shapes", "2"])
    assert run.MODES[a.mode] == ["fwd", "bwd"] and a.dtype == ["bf16", "float16"]
    t = run.parse_args(["--tuned-shapes", "2,grouped_gemm=1"]).tuned_shapes
    assert run.max_shapes_for(t, "grouped_gemm") == 1 and run.max_shapes_for(t, "softmax") == 2
    for bad in ("2,3", "=2", "matmul=x"):
        with pytest.raises(SystemExit):
            run.parse_args(["--max-shapes", bad])
    assert run.parse_args([]).mode == "both"


def test_mode_both_runs_forward_and_backward(monkeypatch, capsys):
    mod = catalog.load(FAKE)
    monkeypatch.setattr(catalog, "resolve", lambda arg: ([mod], {}))
    monkeypatch.setattr(run, "has_gpu", lambda: False)
    assert run.main(["--op", "fake", "--mode", "both", "--shapes", "3x5"]) == 0
    out = capsys.readouterr().out
    table = out[out.index(run.CPU_TITLE):]
    modes = re.findall(r"^fake_softmax +(\w+) +3x5 ", table, re.M)
    assert sorted(set(modes)) == ["bwd", "fwd"] and "both" not in modes
    assert "4 of 4 cases" in out  # 1 shape x 2 dtypes x (fwd, bwd)


def test_check_bad_revision_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        check.main(["--new", str(DATA), "--old", "git:no-such-rev-xyz"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --old: git revision 'no-such-rev-xyz' not found" in err


def test_check_missing_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        check.main(["--new", str(tmp_path / "nothing"), "--old", str(DATA)])
    assert "argument --new: no such file or directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check.main(["--new", str(DATA), "--old", str(tmp_path / "nothing")])
    assert "argument --old: no such file or directory" in capsys.readouterr().err


def test_check_good_revision_compares(capsys):
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=DATA, capture_output=True, text=True)
    if top.returncode != 0:
        pytest.skip("not a git checkout")
    assert check.main(["--new", str(DATA), "--old", "git:HEAD"]) in (0, 1)  # the fixture CSVs, committed
    assert "compared" in capsys.readouterr().out
