"""bench.tune's recorder: which kernels an op launched, under which pretuned key (interpreter)."""
import torch

from bench import tune
from helion_ops.ops import rms_norm, softmax


def test_record_forward_kernels_and_keys():
    rec = tune.record(softmax, (4, 17), torch.float32, "fwd", device="cpu")
    assert set(rec) == {"softmax_fwd"}
    (op, key), bound, cfg, args = rec["softmax_fwd"]
    assert op == "softmax" and key == [4, 17]
    assert bound.kernel.name == "softmax_fwd" and args[0].shape == (4, 17)
    # the recorded call can be replayed under the recorded config
    out = bound.run(cfg, *args)
    ref = torch.softmax(args[0].double(), -1)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_record_backward_only_keeps_backward_kernels():
    rec = tune.record(rms_norm, (3, 17), torch.float32, "bwd", device="cpu")
    assert rec and all("bwd" in name for name in rec), sorted(rec)
