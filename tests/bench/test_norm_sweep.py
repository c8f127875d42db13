"""bench.norm_sweep's CPU side: its grids (the timing needs a GPU)."""
import json

from bench import norm_sweep as S


def test_grid_varies_pipelining_warps_and_rows():
    cur = {"block_sizes": [256, 2], "num_warps": 16, "num_stages": 1, "range_num_stages": [0]}
    grid = S.candidates(cur)
    assert len({json.dumps(d, sort_keys=True) for d in grid}) == len(grid) == 12
    assert {d["range_num_stages"][0] for d in grid} == {0, 2, 3}
    assert {d["block_sizes"][0] for d in grid} == {256, 128} and all(d["block_sizes"][1] == 2 for d in grid)
    assert all(d["num_stages"] == 1 for d in grid)
    one = S.candidates({"block_sizes": [1, 1], "num_warps": 8, "range_num_stages": [0]})
    assert len(one) == 6  # halving one row per program is no new candidate


def test_short_rows_also_vary_4_warps_and_rows_per_step():
    cur = {"block_sizes": [256, 4, 32], "num_warps": 4, "num_stages": 1, "range_num_stages": [0]}
    grid = S.candidates(cur, 1000)
    assert len({json.dumps(d, sort_keys=True) for d in grid}) == len(grid) == 36
    assert {d["num_warps"] for d in grid} == {4, 8, 16}
    assert {tuple(d["block_sizes"]) for d in grid} == {(256, 4, 32), (256, 8, 32), (128, 4, 32), (128, 8, 32)}
    tiny = S.candidates({"block_sizes": [4, 4, 32], "num_warps": 4, "range_num_stages": [0]}, 1000)
    assert all(d["block_sizes"][1] <= d["block_sizes"][0] for d in tiny)  # a step never exceeds its program


def test_fwd_grid_varies_warps_hints_and_loops():
    cur = {"block_sizes": [2], "num_warps": 8, "num_stages": 1, "reduction_loops": [None],
           "load_eviction_policies": ["", ""]}
    short = S.fwd_candidates(cur, 4096)
    assert len(short) == 10 and {d["num_warps"] for d in short} == {4, 8, 16}
    assert {tuple(d["load_eviction_policies"]) for d in short} == {("", ""), ("last", "last")}
    assert all(d["reduction_loops"] == [None] and d["block_sizes"] == [2] for d in short)
    layouts = [(d.get("indexing", "pointer"), d.get("pid_type", "flat"), d["num_stages"]) for d in short[-4:]]
    assert layouts == [("tensor_descriptor", "flat", 1), ("pointer", "persistent_interleaved", 2),
                       ("pointer", "persistent_interleaved", 3), ("tensor_descriptor", "persistent_interleaved", 2)]
    long = S.fwd_candidates(cur, 5120)
    looped = [d for d in long if d["reduction_loops"] != [None]]
    assert len(long) == 14 and {d["reduction_loops"][0] for d in looped} == {2048, 4096}
    assert all(d["block_sizes"] == [1] and d["load_eviction_policies"] == ["last", "last"] for d in looped)


def test_needs_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(S.torch.cuda, "is_available", lambda: False)
    assert S.main([]) == 2 and "needs a CUDA GPU" in capsys.readouterr().out
