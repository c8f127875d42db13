"""bench.matmul_sweep's CPU side: the problems per layout, the candidate grids, and the table
entries it writes (the timing itself needs a GPU)."""
import json

import pytest

from bench import matmul_sweep as S
from helion_ops import pretuned


def test_problems_cover_each_layout():
    probs = S.problems([(128, 4096, 14336), (64, 64, 64)], ["fwd", "bwd"])
    assert (128, 4096, 14336, False, False) in probs
    assert (128, 14336, 4096, False, True) in probs   # dA = dZ @ B^T
    assert (14336, 4096, 128, True, False) in probs   # dB = A^T @ dZ
    assert len(probs) == len(set(probs)) == 6
    assert S.problems([(64, 64, 64)], ["fwd"]) == [(64, 64, 64, False, False)]


@pytest.mark.parametrize("m,n,k", [(1, 4096, 4096), (128, 4096, 14336), (4096, 4096, 4096)])
def test_candidates_are_distinct_and_capped(m, n, k):
    c = S.candidates(m, n, k, limit=12)
    assert 0 < len(c) <= 12 and len({json.dumps(d, sort_keys=True) for d in c}) == len(c)
    assert all(d["block_sizes"][0] == 16 for d in c) == (m <= 16)
    assert c == S.candidates(m, n, k, limit=12)  # seeded: a rerun sweeps the same grid


def test_entries_carry_the_layout_variant(tmp_path):
    cfg = {"block_sizes": [64, 64, 64], "num_warps": 4}
    rows = [dict(m=8, n=16, k=32, ta=False, tb=False, best_us=5.0, config=cfg),
            dict(m=8, n=32, k=16, ta=False, tb=True, best_us=6.0, config=cfg),
            dict(m=32, n=16, k=8, ta=True, tb=False, best_us=7.0, config=cfg)]
    pretuned.write_entries("matmul", "sm90", S.entries(rows), {}, root=tmp_path)
    stored = json.loads(pretuned.config_path("matmul", "sm90", tmp_path).read_text())["entries"]
    assert sorted(e["key"].get("variant", "NN") for e in stored) == ["NN", "NT", "TN"]
    assert pretuned.lookup("matmul", "matmul_kernel", "bf16", [8, 32, 16], arch="sm90", root=tmp_path,
                           variant="NT").num_warps == 4


@pytest.mark.parametrize("m,n,k", [(1, 8192, 8192), (16, 8192, 8192), (1024, 1024, 1024), (2048, 2048, 2048)])
def test_split_k_candidates(m, n, k):
    c = S.split_k_candidates(m, n, k, limit=16)
    assert 0 < len(c) <= 16 and len({json.dumps(d, sort_keys=True) for d in c}) == len(c)
    assert all((d["block_sizes"][0] == 16) == (m <= 16) for d in c)
    assert all(k // d["split_k"] >= max(256, d["block_sizes"][2]) and d["split_k"] >= 2 for d in c)
    assert c == S.split_k_candidates(m, n, k, limit=16)


def test_no_split_k_candidates_where_tiles_fill_the_gpu():
    assert S.split_k_candidates(4097, 4097, 4097, limit=16) == []
    assert S.split_k_candidates(4096, 4096, 512, limit=16) == []


def test_entries_write_split_k_only_where_it_wins(tmp_path):
    one = {"block_sizes": [16, 64, 256], "num_warps": 4}
    sk = {"block_sizes": [16, 64, 256], "split_k": 4, "num_warps": 4}
    rows = [dict(m=3, n=1024, k=8192, ta=False, tb=False, cublas_us=9.0,
                 kernels={"matmul_kernel": dict(us=20.0, config=one), "matmul_split_k_kernel": dict(us=10.0, config=sk)}),
            dict(m=5, n=1024, k=8192, ta=False, tb=True, cublas_us=9.0,
                 kernels={"matmul_kernel": dict(us=10.0, config=one), "matmul_split_k_kernel": dict(us=9.9, config=sk)})]
    es = S.entries(rows)
    assert [(e["kernel"], e["key"]["shape"][0]) for e in es] == [
        ("matmul_kernel", 3), ("matmul_split_k_kernel", 3), ("matmul_kernel", 5)]  # 1% faster is noise
    assert es[1]["ms"] == pytest.approx(0.01) and es[1]["cublas_ms"] == pytest.approx(0.009)
    pretuned.write_entries("matmul", "sm90", es, {}, root=tmp_path)
    assert pretuned.exact_ms("matmul", "matmul_split_k_kernel", "bf16", [3, 1024, 8192], arch="sm90",
                             root=tmp_path) == pytest.approx(0.01)


def test_sweep_one_runs_both_kernels_in_the_interpreter(monkeypatch, device):
    """The sweep's path on a tiny split-K problem (the interpreter, a fake timer: candidates' times are
    their index, so the result says which candidates were timed and kept; nothing is tuned on CPU)."""
    if device != "cpu":
        pytest.skip("CPU smoke; the GPU runs the real sweep")
    import torch

    calls = []
    monkeypatch.setattr(S, "bench_us", lambda fn: (fn(), calls.append(1), 100.0 - len(calls))[2])
    monkeypatch.setattr(S, "candidates", lambda *a, **k: [])
    monkeypatch.setattr(S, "split_k_candidates", lambda *a, **k: [
        dict(block_sizes=[16, 16, 64], split_k=2, num_warps=4, num_stages=3, indexing="pointer")])
    r = S.sweep_one((1, 24, 4097, False, False), 60.0, 4, device="cpu", dtype=torch.float32)
    # cuBLAS, the one-pass current config, the heuristic's split-K config, the split-K candidate
    assert len(calls) == 4 and r["tried"] == 3
    assert set(r["kernels"]) == {"matmul_kernel", "matmul_split_k_kernel"}
    assert r["kernels"]["matmul_split_k_kernel"]["config"]["split_k"] == 2  # timed last: fastest here
    assert [e["kernel"] for e in S.entries([r])] == ["matmul_kernel", "matmul_split_k_kernel"]
