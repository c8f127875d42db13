"""bench.grouped_gemm_dw_sweep's CPU side: its grid (the timing needs a GPU)."""
import json

from bench import grouped_gemm_dw_sweep as S


def test_grid_is_distinct_seeded_and_fits():
    grid = S.candidates()
    assert len({json.dumps(d, sort_keys=True) for d in grid}) == len(grid) > 0
    assert grid == S.candidates() and grid != S.candidates(seed=1)
    assert not any(d["num_warps"] == 4 and d["block_sizes"][1] * d["block_sizes"][2] >= 128 * 256 for d in grid)


def test_needs_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(S.torch.cuda, "is_available", lambda: False)
    assert S.main([]) == 2 and "needs a CUDA GPU" in capsys.readouterr().out
