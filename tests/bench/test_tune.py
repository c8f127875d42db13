"""bench.tune's recorder: which kernels an op launched, under which pretuned key (interpreter)."""
import torch

from bench import tune
from bench.specs import matmul, rms_norm, softmax


def test_record_forward_kernels_and_keys():
    rec = tune.record(softmax, (4, 17), torch.float32, "fwd", device="cpu")
    assert [r[0] for r in rec] == ["softmax_fwd"]
    _, (op, key, variant), bound, cfg, args = rec[0]
    assert op == "softmax" and key == [4, 17] and variant is None
    assert bound.kernel.name == "softmax_fwd" and args[0].shape == (4, 17)
    # the recorded call can be replayed under the recorded config
    out = bound.run(cfg, *args)
    ref = torch.softmax(args[0].double(), -1)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_record_backward_only_keeps_backward_kernels():
    rec = tune.record(rms_norm, (3, 17), torch.float32, "bwd", device="cpu")
    assert rec and all("bwd" in r[0] for r in rec), [r[0] for r in rec]


def test_record_matmul_backward_keys_each_layout():
    """dA = dZ @ B^T and dB = A^T @ dZ launch one kernel twice; each is recorded under its own
    (shape, layout) key, so tuning writes a config per layout."""
    m, n, k = 5, 7, 3
    rec = tune.record(matmul, (m, n, k), torch.float32, "bwd", device="cpu")
    keys = sorted((r[1][1], r[1][2]) for r in rec)
    assert [r[0] for r in rec] == ["matmul_kernel", "matmul_kernel"]
    assert keys == sorted([([m, k, n], "NT"), ([k, n, m], "TN")]), keys


def test_pick_shapes():
    from bench.tune import pick_shapes

    shapes = [(4096, 1000), (4096, 4096), (16384, 5120)]
    assert pick_shapes(shapes, "all") == shapes and pick_shapes(shapes, "2") == shapes[:2]
    assert pick_shapes(shapes, "16384x5120;4096x4097") == [(16384, 5120), (4096, 4097)]
