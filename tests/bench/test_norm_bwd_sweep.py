"""bench.norm_bwd_sweep's CPU side: its grid (the timing needs a GPU)."""
import json

from bench import norm_bwd_sweep as S


def test_grid_varies_pipelining_warps_and_rows():
    cur = {"block_sizes": [256, 2], "num_warps": 16, "num_stages": 1, "range_num_stages": [0]}
    grid = S.candidates(cur)
    assert len({json.dumps(d, sort_keys=True) for d in grid}) == len(grid) == 12
    assert {d["range_num_stages"][0] for d in grid} == {0, 2, 3}
    assert {d["block_sizes"][0] for d in grid} == {256, 128} and all(d["block_sizes"][1] == 2 for d in grid)
    assert all(d["num_stages"] == 1 for d in grid)
    one = S.candidates({"block_sizes": [1, 1], "num_warps": 8, "range_num_stages": [0]})
    assert len(one) == 6  # halving one row per program is no new candidate


def test_needs_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(S.torch.cuda, "is_available", lambda: False)
    assert S.main([]) == 2 and "needs a CUDA GPU" in capsys.readouterr().out
