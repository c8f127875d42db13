"""Pretuned config files: lookup (exact, nearest power-of-two bucket), merge
on write, and robustness to missing or broken files."""
import json

import pytest

from helion_ops import pretuned
from helion_ops.dsl.config import Config


def _entry(shape, warps, kernel="softmax_kernel", dtype="bfloat16", ms=0.1):
    return {"kernel": kernel, "key": {"dtype": dtype, "shape": list(shape)},
            "config": {"block_sizes": [1], "num_warps": warps}, "ms": ms}


@pytest.fixture
def root(tmp_path):
    entries = [_entry((4096, 1024), 4), _entry((4096, 4096), 8), _entry((4096, 16384), 16),
               _entry((4096, 4096), 2, dtype="float16"), _entry((64, 64, 64), 1, kernel="other")]
    pretuned.write_entries("softmax", "sm90", entries, {"gpu": "H100", "torch": "2.11", "triton": "3.6"},
                           root=tmp_path)
    return tmp_path


def lookup(root, shape, dtype="bfloat16", kernel="softmax_kernel"):
    cfg = pretuned.lookup("softmax", kernel, dtype, shape, arch="sm90", root=root)
    return None if cfg is None else cfg.num_warps


def test_file_format(root):
    data = json.loads((root / "sm90" / "softmax.json").read_text())
    assert data["op"] == "softmax" and data["arch"] == "sm90" and data["gpu"] == "H100"
    assert {"torch", "triton", "date", "entries"} <= set(data)
    e = data["entries"][0]
    assert set(e) == {"kernel", "key", "config", "ms"}


def test_exact_match(root):
    assert lookup(root, (4096, 4096)) == 8
    assert lookup(root, [4096, 1024]) == 4
    assert lookup(root, (4096, 4096), dtype="float16") == 2


@pytest.mark.parametrize("shape,warps", [
    ((4096, 3000), 8),      # same next-pow2 bucket as 4096
    ((4096, 4097), 16),     # bucket 8192: one from 4096 and 16384; tie goes to the larger
    ((4096, 1000), 4),      # bucket 1024
    ((4096, 100), 4),       # far below: the smallest
    ((4096, 32768), 16),    # one bucket above the largest: still the largest
    ((1000, 2048), 8),      # M off by 2 buckets for all; N=2048 ties 1024 and 4096 -> larger
    ((8192, 8192), 16),     # N=8192 ties 4096 and 16384 -> larger
])
def test_nearest_bucket(root, shape, warps):
    assert lookup(root, shape) == warps


def test_no_extrapolation_far_above_the_table(root):
    # A config tuned for 16K columns must not be served for 1M columns (a whole-row
    # persistent config would spill): the op's own chooser decides there.
    assert lookup(root, (4096, 10 ** 6)) is None
    assert lookup(root, (2 ** 20, 4096)) is None


def test_no_entry_for_kernel_dtype_or_rank(root):
    assert lookup(root, (4096, 4096), kernel="missing") is None
    assert lookup(root, (4096, 4096), dtype="float32") is None
    assert lookup(root, (4096,)) is None
    assert pretuned.lookup("softmax", "other", "bf16", (64, 64, 64), arch="sm90", root=root) == \
        Config(block_sizes=[1], num_warps=1)
    assert pretuned.lookup("layer_norm", "k", "bf16", (1, 1), arch="sm90", root=root) is None
    assert pretuned.lookup("softmax", "softmax_kernel", "bf16", (4096, 4096), arch="sm80", root=root) is None


def test_dtype_aliases(root):
    import torch
    assert lookup(root, (4096, 4096), dtype=torch.bfloat16) == 8
    assert lookup(root, (4096, 4096), dtype="bf16") == 8
    assert lookup(root, (4096, 4096), dtype=torch.float16) == 2


def test_cpu_returns_none(root, monkeypatch):
    monkeypatch.setattr(pretuned, "current_arch", lambda: None)
    assert pretuned.lookup("softmax", "softmax_kernel", "bfloat16", (4096, 4096), root=root) is None
    monkeypatch.setattr(pretuned, "current_arch", lambda: "sm90")
    assert pretuned.lookup("softmax", "softmax_kernel", "bfloat16", (4096, 4096), root=root).num_warps == 8


def test_write_merges_and_replaces(root):
    pretuned.write_entries("softmax", "sm90", [_entry((4096, 4096), 32, ms=0.05), _entry((2, 2), 1)],
                           {"date": "2030-01-01"}, root=root)
    data = json.loads((root / "sm90" / "softmax.json").read_text())
    assert len(data["entries"]) == 6 and data["date"] == "2030-01-01" and data["gpu"] == "H100"
    assert lookup(root, (4096, 4096)) == 32
    assert lookup(root, (4096, 1024)) == 4


def test_write_keeps_notes_of_entries_it_does_not_replace(root):
    noted = {**_entry((2, 2), 1), "migrated": "why this entry's ms predates its config"}
    pretuned.write_entries("softmax", "sm90", [noted, {**_entry((8, 8), 2), "migrated": "old"}], {}, root=root)
    pretuned.write_entries("softmax", "sm90", [_entry((8, 8), 4)], {}, root=root)
    ents = {tuple(e["key"]["shape"]): e for e in json.loads((root / "sm90" / "softmax.json").read_text())["entries"]}
    assert ents[(2, 2)]["migrated"] == noted["migrated"]
    assert "migrated" not in ents[(8, 8)] and ents[(8, 8)]["config"]["num_warps"] == 4


def test_write_adds_its_method_to_the_tables(root):
    """A tool writing some entries adds its method to the table's line: the entries it kept were made
    the old way."""
    pretuned.write_entries("softmax", "sm90", [_entry((2, 2), 1)], {"method": "grid sweep"}, root=root)
    pretuned.write_entries("softmax", "sm90", [_entry((8, 8), 2)], {"method": "bench.tune"}, root=root)
    pretuned.write_entries("softmax", "sm90", [_entry((8, 8), 4)], {"method": "bench.tune"}, root=root)
    method = json.loads((root / "sm90" / "softmax.json").read_text())["method"]
    assert method.endswith("grid sweep; bench.tune") and method.count("bench.tune") == 1
    assert pretuned.merge_method("a", "a; b") == "a; b" and pretuned.merge_method("", "b") == "b"


def test_broken_file_is_ignored(root):
    p = root / "sm90" / "softmax.json"
    p.write_text(p.read_text()[:50])
    assert lookup(root, (4096, 4096)) is None
    # A rewrite after a broken file starts fresh.
    pretuned.write_entries("softmax", "sm90", [_entry((8, 8), 2)], {}, root=root)
    assert lookup(root, (8, 8)) == 2


def test_configs_for_seeds(root):
    seeds = pretuned.configs_for("softmax", "softmax_kernel", arch="sm90", root=root)
    assert sorted(c.num_warps for c in seeds) == [2, 4, 8, 16]
    assert len(pretuned.configs_for("softmax", "softmax_kernel", "float16", arch="sm90", root=root)) == 1


def test_arch_names(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert pretuned.current_arch() == "sm90"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (10, 0))
    assert pretuned.current_arch() == "sm100"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pretuned.current_arch() is None


def test_variant_entries_only_match_their_variant(root):
    """A layout variant (matmul's "NT") is its own table: its entries never serve the plain key, and
    a variant with no entries gets None (the op's chooser), not the plain entry of that shape."""
    nt = _entry((4096, 4096), 32)
    nt["key"]["variant"] = "NT"
    pretuned.write_entries("softmax", "sm90", [nt], {}, root=root)
    get = lambda v: pretuned.lookup("softmax", "softmax_kernel", "bfloat16", [4096, 4096], arch="sm90",
                                    root=root, variant=v)
    assert get(None).num_warps == 8 and get("NT").num_warps == 32 and get("TN") is None
    stored = json.loads(pretuned.config_path("softmax", "sm90", root).read_text())["entries"]
    assert sum(e["key"]["shape"] == [4096, 4096] and e["key"]["dtype"] == "bfloat16" for e in stored) == 2


def test_exact_dims_must_match(root):
    """``exact`` dims are matched, never bucketed: with only N = 1024/4096/16384 entries, N = 4097 gets
    no entry when N is exact (attention's head dim), though bucketing would serve 16384's."""
    get = lambda shape, exact: pretuned.lookup("softmax", "softmax_kernel", "bfloat16", shape, arch="sm90",
                                               root=root, exact=exact)
    assert get((4096, 4097), ()).num_warps == 16
    assert get((4096, 4097), (1,)) is None
    assert get((1000, 4096), (1,)).num_warps == 8   # M still bucketed
    assert get((1000, 4096), (0, 1)) is None
