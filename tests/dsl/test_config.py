"""Config, fragments and ConfigSpace (CPU only, fast)."""
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from helion_ops.dsl.config import (
    FIELDS, BlockSpec, BoolFragment, Config, ConfigSpace, EnumFragment, IntegerFragment,
    ListOf, PermutationFragment, PowerOfTwoFragment, ReductionLoopFragment, SpaceSpec,
    heuristic_configs, next_pow2,
)

FRAGMENTS = [
    PowerOfTwoFragment(16, 256, 64),
    PowerOfTwoFragment(1, 1, 1),
    IntegerFragment(1, 8, 3),
    IntegerFragment(0, 0, 0),
    EnumFragment(["", "first", "last"], ""),
    EnumFragment([None, False, True], None),
    BoolFragment(True),
    PermutationFragment(3),
    PermutationFragment(1),
    ReductionLoopFragment(4096),
    ReductionLoopFragment(100_000),
    ReductionLoopFragment(10),
    ListOf(PowerOfTwoFragment(1, 64, 1), 3),
    ListOf([PowerOfTwoFragment(16, 32, 16), EnumFragment(["a", "b"], "b")]),
]

MATMUL = SpaceSpec(
    block_sizes=[BlockSpec(16, 256, 64), BlockSpec(16, 256, 64), BlockSpec(16, 128, 32)],
    grid_loops=[2], inner_loops=1, loads=2, tensor_descriptor=True, warp_specialize=True,
    tunables={"split_k": PowerOfTwoFragment(1, 8, 1)},
)
SOFTMAX = SpaceSpec(block_sizes=[BlockSpec(1, 1024, 1)], reduction_extents=[4096], grid_loops=[1], loads=1)
WIDE = SpaceSpec(block_sizes=[BlockSpec(1, 16, 1)] * 4, grid_loops=[4], reduction_extents=[100_000])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(FRAGMENTS) - 1))
def test_fragments_stay_in_bounds(seed, which):
    f = FRAGMENTS[which]
    rng = random.Random(seed)
    f.validate(f.default())
    a, b, c = f.random(rng), f.random(rng), f.random(rng)
    for v in (a, b, c):
        f.validate(v)
    v = a
    for _ in range(20):
        v = f.mutate(v, rng)
        f.validate(v)
    f.validate(f.crossover(a, b, rng))
    f.validate(f.differential(a, b, c, rng))
    for n in f.neighbors(a):
        f.validate(n)
        assert n != a


def test_fragment_steps_are_small():
    p = PowerOfTwoFragment(1, 1024, 64)
    assert sorted(p.neighbors(64)) == [32, 128]
    assert p.neighbors(1024) == [512]
    rng = random.Random(0)
    assert all(p.mutate(64, rng) in (16, 32, 128, 256) for _ in range(50))
    assert IntegerFragment(1, 8, 2).neighbors(8) == [7]
    assert PermutationFragment(3).neighbors([0, 1, 2]) == [[1, 0, 2], [0, 2, 1]]
    # Persistent (None) is above the largest chunk.
    r = ReductionLoopFragment(4096)
    assert r.neighbors(None) == [2048] and r.default() is None
    assert ReductionLoopFragment(100_000).default() == 4096
    assert ReductionLoopFragment(10).choices == [None]


@pytest.mark.parametrize("frag,bad", [
    (PowerOfTwoFragment(16, 256), 48), (PowerOfTwoFragment(16, 256), 512), (PowerOfTwoFragment(16, 256), 64.0),
    (IntegerFragment(1, 8), 0), (IntegerFragment(1, 8), True), (EnumFragment([None, False, True]), 0),
    (BoolFragment(), 1), (PermutationFragment(3), [0, 0, 1]), (ReductionLoopFragment(4096), 4096),
    (ReductionLoopFragment(4096), 8), (ListOf(IntegerFragment(0, 4), 2), [1]),
])
def test_fragment_rejects(frag, bad):
    with pytest.raises(ValueError):
        frag.validate(bad)


def test_config_json_round_trip():
    cfg = Config(block_sizes=[64, 32], loop_orders=[[1, 0]], reduction_loops=[None, 256],
                 range_flattens=[None, True], num_warps=8, pid_type="persistent_blocked", split_k=4)
    again = Config.from_json(cfg.to_json())
    assert again == cfg and hash(again) == hash(cfg)
    assert again.loop_orders == [[1, 0]] and again.reduction_loops == [None, 256]
    assert json.loads(cfg.to_json())["split_k"] == 4


@pytest.mark.parametrize("spec", [MATMUL, SOFTMAX, WIDE, SpaceSpec()])
def test_default_validates_and_round_trips(spec):
    space = ConfigSpace(spec)
    d = space.default()
    space.validate(d)
    assert Config.from_json(d.to_json()) == d
    assert space.normalize(Config()) == d
    rng = random.Random(1)
    for _ in range(30):
        c = space.random(rng)
        space.validate(c)
        space.validate(space.mutate(c, rng))
        space.validate(space.crossover(c, d, rng))
        space.validate(space.differential(d, c, space.random(rng), d, rng))
    for n in space.neighbors(d):
        space.validate(n)


def test_knobs_present_only_when_they_exist():
    m = ConfigSpace(MATMUL).fragments
    assert {"l2_groupings", "loop_orders", "indexing", "range_num_stages", "range_warp_specializes",
            "range_flattens", "split_k"} <= set(m)
    assert "reduction_loops" not in m
    assert "xyz" in m["pid_type"].choices
    assert m["num_stages"].default() == 3
    s = ConfigSpace(SOFTMAX).fragments
    assert not {"l2_groupings", "loop_orders", "indexing", "range_num_stages"} & set(s)
    assert s["num_stages"].default() == 2 and "reduction_loops" in s
    w = ConfigSpace(WIDE).fragments
    assert "xyz" not in w["pid_type"].choices
    assert "range_warp_specializes" not in ConfigSpace(SpaceSpec(inner_loops=1)).fragments
    assert all(k in FIELDS or k == "split_k" for k in m)


def test_validate_names_the_field_and_normalize_fills():
    space = ConfigSpace(MATMUL)
    with pytest.raises(ValueError, match="num_warps"):
        space.validate(space.default().replace(num_warps=3))
    with pytest.raises(ValueError, match="block_sizes"):
        space.normalize({"block_sizes": [64, 64]})
    with pytest.raises(ValueError, match="bogus"):
        space.normalize({"bogus": 1})
    with pytest.raises(ValueError, match="pid_type"):
        ConfigSpace(WIDE).normalize({"pid_type": "xyz"})
    with pytest.raises(ValueError, match="missing"):
        space.validate(Config(num_warps=4))
    cfg = space.normalize(Config(block_sizes=[128, 128, 64], num_warps=8))
    assert cfg.num_stages == 3 and cfg.split_k == 1 and cfg.l2_groupings == [1]
    # A standard field this kernel lacks is dropped, not an error.
    assert "l2_groupings" not in ConfigSpace(SOFTMAX).normalize({"l2_groupings": [4]})


def test_tunable_name_collision():
    with pytest.raises(ValueError):
        ConfigSpace(SpaceSpec(tunables={"num_warps": IntegerFragment(1, 2)}))


def test_neighbors_are_one_step():
    space = ConfigSpace(SOFTMAX)
    d = space.default()
    for n in space.neighbors(d):
        diff = [k for k in d if d[k] != n[k]]
        assert len(diff) == 1


def test_heuristics_valid_and_sensible():
    space = ConfigSpace(MATMUL)
    mm = heuristic_configs(MATMUL)
    for c in mm:
        space.validate(c)
    assert any(c.block_sizes == [128, 256, 64] and c.num_warps == 8 and c.num_stages == 3 for c in mm)
    assert any(c.pid_type.startswith("persistent") and c.indexing == "tensor_descriptor" for c in mm)
    # Clipped to bounds.
    small = SpaceSpec(block_sizes=[BlockSpec(16, 64, 16)] * 3, grid_loops=[2], inner_loops=1)
    assert all(max(c.block_sizes) <= 64 for c in heuristic_configs(small))
    sm = heuristic_configs(SOFTMAX)
    assert sm and all(c.reduction_loops == [None] for c in sm)
    # Warps follow elements: 4096-wide row at 256-512 elements per warp.
    assert {c.num_warps for c in sm if c.block_sizes == [1]} <= {8, 16}
    big = ConfigSpace(WIDE)
    hw = heuristic_configs(WIDE)
    assert hw and all(c.reduction_loops == [4096] for c in hw)
    for c in hw:
        big.validate(c)
    tiny = SpaceSpec(block_sizes=[BlockSpec(1, 1024, 1)], reduction_extents=[100], grid_loops=[1])
    assert any(c.block_sizes[0] * next_pow2(100) >= 2048 for c in heuristic_configs(tiny))
    ew = SpaceSpec(block_sizes=[BlockSpec(1, 1024, 32)] * 2, grid_loops=[2])
    for c in heuristic_configs(ew, shape_hint=[100, 30]):
        assert c.block_sizes[1] <= 32 and c.block_sizes[0] <= 128


def test_set_default_is_used_to_fill():
    space = ConfigSpace(SOFTMAX)
    space.set_default({"block_sizes": [4], "num_warps": 16})
    assert space.default().num_warps == 16 and space.default().block_sizes == [4]
    assert space.normalize({"num_stages": 1}).num_warps == 16
    assert space.normalize(None) == space.default()
    with pytest.raises(ValueError, match="num_warps"):
        space.set_default({"num_warps": 64})
