"""Metric formulas, timing helpers and provenance helpers of the harness."""
import math

import pytest
import torch

from bench import gpu_info, metrics, schema, timing


def test_throughput_units():
    # 1 GB moved in 1 ms is 1000 GB/s; 1 TFLOP in 1 ms is 1000 TFLOP/s.
    assert metrics.throughput(1e9, 1.0, "GB/s") == pytest.approx(1000.0)
    assert metrics.throughput(1e12, 1.0, "TFLOP/s") == pytest.approx(1000.0)
    assert metrics.throughput(2 * 4096 * 4096 * 2, 0.0585, "GB/s") == pytest.approx(1147.2, rel=1e-3)  # anchor row
    assert math.isnan(metrics.throughput(1e9, math.nan, "GB/s"))
    assert math.isnan(metrics.throughput(1e9, 0.0, "GB/s"))
    with pytest.raises(ValueError):
        metrics.throughput(1.0, 1.0, "furlongs")


def test_rel_error():
    ref = torch.tensor([1.0, -4.0, 2.0])
    assert metrics.rel_error(ref.clone(), ref) == 0.0
    assert metrics.rel_error(torch.tensor([1.0, -4.0, 3.0]), ref) == pytest.approx(0.25)
    # Computed in fp32 even for half inputs, and max over tuple members.
    assert metrics.rel_error((ref.half(), torch.tensor([0.0, 3.0])), (ref, torch.tensor([0.0, 2.0]))) == pytest.approx(0.5)
    assert metrics.rel_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert metrics.rel_error(torch.ones(2), torch.ones(3)) == math.inf
    assert math.isnan(metrics.rel_error(torch.tensor([math.nan]), torch.tensor([1.0])))


def test_passes_rejects_nan():
    assert metrics.passes(1e-3, 1e-2)
    assert not metrics.passes(2e-2, 1e-2)
    assert not metrics.passes(math.nan, 1e-2)


def test_ill_conditioned_needs_eager_to_fail_too_and_ours_close():
    tol = 1e-5
    assert metrics.ill_conditioned(2e-3, tol, 1e-3)  # both off, ours within ILL_FACTOR of eager
    assert not metrics.ill_conditioned(2e-3, tol, 1e-6)  # eager is fine: ours is simply wrong
    assert not metrics.ill_conditioned(1e-1, tol, 1e-3)  # far worse than eager
    assert not metrics.ill_conditioned(1e-6, tol, 1e-3)  # ours passes anyway: nothing to excuse
    assert not metrics.ill_conditioned(math.nan, tol, 1e-3)
    assert not metrics.ill_conditioned(math.inf, tol, math.inf)


def test_speedup_and_geomean():
    assert metrics.speedup(2.0, 1.0) == 2.0
    assert math.isnan(metrics.speedup(math.nan, 1.0))
    assert math.isnan(metrics.speedup(1.0, 0.0))
    assert metrics.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert metrics.geomean([2.0, math.nan, 8.0]) == pytest.approx(4.0)
    assert math.isnan(metrics.geomean([]))


def test_ceiling_for_unit():
    c = {"copy_GBps": 3000.0, "matmul_TFLOPs": 745.0}
    assert metrics.ceiling_for("GB/s", c) == 3000.0
    assert metrics.ceiling_for("TFLOP/s", c) == 745.0
    assert metrics.ceiling_for("GB/s", None) is None


def test_rotation_count():
    l2 = 50 * 2**20
    assert timing.rotation_count(2 * l2, l2) == 1
    assert timing.rotation_count(l2, l2) == 4
    assert timing.rotation_count(l2 // 4, l2) == 16
    assert timing.rotation_count(1024, l2) == 64
    assert timing.l2_bytes() > 0


def test_rotating_cycles():
    seen = []
    step = timing.rotating([lambda i=i: seen.append(i) for i in range(3)])
    for _ in range(7):
        step()
    assert seen == [0, 1, 2, 0, 1, 2, 0]


def test_tensor_bytes():
    assert timing.tensor_bytes((torch.zeros(4, 8, dtype=torch.bfloat16), 3, [torch.zeros(2)])) == 64 + 8


@pytest.mark.parametrize("name,short", [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA GeForce RTX 4090", "RTX4090"), ("NVIDIA L40S", "L40S"), ("NVIDIA B200", "B200"),
    ("NVIDIA H100 PCIe", "H100")])
def test_short_gpu_name(name, short):
    assert gpu_info.short_name(name) == short


def test_provenance_fields():
    info = gpu_info.info()
    assert set(info) >= {"gpu", "torch", "triton", "commit", "date"}
    assert info["date"].endswith("Z")


def test_shape_and_dtype_names():
    assert schema.format_shape((4, 32, 4096, 128, True)) == "4x32x4096x128xTrue"
    assert schema.parse_shape("4x32x4096x128xTrue") == (4, 32, 4096, 128, True)
    assert schema.parse_dtype("bfloat16") is torch.bfloat16
    assert schema.dtype_name(torch.float16) == "fp16"
    with pytest.raises(ValueError):
        schema.parse_dtype("fp8")
