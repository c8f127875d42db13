"""bench.sweep: what the grid sweeps share (the search loop, the sweep-or-merge command line)."""
import argparse
import json

import torch

from bench import sweep


def test_grid_search_keeps_the_fastest_valid_candidate(monkeypatch):
    """The shared search loop (interpreter, a fake timer): a candidate that cannot be built is skipped,
    the fastest valid one wins, and the timer never sees a rejected config."""
    from helion_ops import _oplib as C
    from helion_ops.ops import matmul as M

    a, b = torch.randn(17, 33), torch.randn(33, 65)
    args = (a, b, None, None, False, False)
    bound = M.matmul_kernel.bind(args)
    bound.config = C.fit(bound, M.Config(block_sizes=[16, 16, 16], num_warps=4, num_stages=1))
    monkeypatch.setattr(sweep, "bench_us", lambda fn: 100.0 / bound.config["block_sizes"][1])
    grid = [dict(block_sizes=[16, 32, 16], num_warps=4, num_stages=1),
            dict(block_sizes=[16, 32, 16], num_warps=4, num_stages=1, no_such_knob=1),
            dict(block_sizes=[16, 64, 16], num_warps=4, num_stages=1)]
    t_cur, best_t, best_cfg, tried = sweep.grid_search(bound, args, a @ b, grid, C.fit, seconds=60)
    assert (t_cur, best_t, tried) == (100.0 / 16, 100.0 / 64, 2)
    assert list(best_cfg["block_sizes"]) == [16, 64, 16]


def _args(argv):
    ap = argparse.ArgumentParser()
    sweep.table_args(ap, "a table")
    return ap.parse_args(argv)


def test_run_merges_files_and_writes_through_the_callback(tmp_path):
    """--merge reads earlier sweep JSONs (no GPU needed) and --write hands them, with the given meta and
    a date, to the tool's writer; without --write nothing is written."""
    f = tmp_path / "s.json"
    f.write_text(json.dumps([{"x": 1}, {"x": 2}]))
    seen = []
    argv = ["--merge", str(f), "--write", "--arch", "sm90", "--meta", '{"gpu": "H100"}']
    assert sweep.run(_args(argv), "t", lambda keep: None, lambda r, m, a: seen.append((r, m, a))) == 0
    (results, meta, arch), = seen
    assert results == [{"x": 1}, {"x": 2}] and arch == "sm90" and meta["gpu"] == "H100" and meta["date"]
    assert sweep.run(_args(["--merge", str(f)]), "t", lambda keep: None, lambda *a: seen.append(a)) == 0
    assert len(seen) == 1


def test_run_needs_a_gpu_to_sweep(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sweep.run(_args([]), "some_sweep", lambda keep: None, lambda *a: None) == 2
    assert "bench.some_sweep needs a CUDA GPU" in capsys.readouterr().out
