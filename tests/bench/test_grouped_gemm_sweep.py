"""bench.grouped_gemm_sweep's CPU side: its grids and the table entries it writes (the timing needs a GPU)."""
import json

import pytest

from bench import grouped_gemm_sweep as S
from helion_ops import pretuned


@pytest.mark.parametrize("kernel", ["fwd", "dw"])
def test_grid_is_distinct_seeded_and_fits(kernel):
    grid = S.candidates(kernel)
    assert len({json.dumps(d, sort_keys=True) for d in grid}) == len(grid) > 0
    assert grid == S.candidates(kernel) and grid != S.candidates(kernel, seed=1)
    for d in grid:
        bs = d["block_sizes"]
        acc = bs[0] * bs[1] if kernel == "fwd" else bs[1] * bs[2]  # the fp32 output tile
        assert not (d["num_warps"] == 4 and acc >= 128 * 256)  # would spill
        if kernel == "fwd":
            assert (bs[0] + bs[1]) * bs[2] * 2 * d["num_stages"] <= 200 * 1024  # fits shared memory


def test_entries_key_dx_as_a_transposed_variant(tmp_path):
    cfg = {"block_sizes": [64, 64, 32], "num_warps": 4}
    rows = [dict(kernel="fwd", shape=[4, 64, 32, 16], key=[4, 64, 32, 16], best_us=5.0, config=cfg),
            dict(kernel="dx", shape=[4, 64, 16, 32], key=[4, 64, 32, 16], best_us=6.0, config={**cfg, "num_warps": 8}),
            dict(shape=[4, 64, 32, 16], best_us=7.0, config=cfg)]  # a dw run's row (no "kernel")
    ents = S.entries(rows)
    assert [e["kernel"] for e in ents] == ["grouped_gemm_kernel", "grouped_gemm_kernel", "grouped_gemm_dw_kernel"]
    pretuned.write_entries("grouped_gemm", "sm90", ents, {}, root=tmp_path)
    look = lambda v: pretuned.lookup("grouped_gemm", "grouped_gemm_kernel", "bf16", [4, 64, 32, 16], arch="sm90",
                                     root=tmp_path, variant=v)
    assert (look(None).num_warps, look("T").num_warps) == (4, 8)


def test_variant_of_names_the_transposed_read():
    from helion_ops.ops import grouped_gemm as G

    assert G.variant_of((None, None, None, True)) == "T"
    assert G.variant_of((None, None, None, False)) is None and G.variant_of((None, None, None)) is None


def test_needs_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(S.torch.cuda, "is_available", lambda: False)
    assert S.main(["--kernel", "dw"]) == 2 and "needs a CUDA GPU" in capsys.readouterr().out
