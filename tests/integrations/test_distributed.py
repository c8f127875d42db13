"""The catalog ops under DDP and FSDP2 (fully_shard) on CPU: two gloo ranks train a tiny block of
helion_ops ops (RMSNorm, LayerNorm, matmul with bias and GELU, causal attention, softmax) for a few steps,
each on half the batch, and must end where one process training on the whole batch ends. FSDP2 starts
from meta tensors (deferred init: a forward on meta, fully_shard, to_empty, reset_parameters on the
sharded parameters). Both modes run in one spawn of two ranks (each rank's start-up costs seconds)."""
from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist


TIMEOUT_S = 600  # a hung collective fails the test instead of the CI job

pytestmark = [
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                       reason="torch.distributed with gloo is not available"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                       reason="the gloo run trains on CPU tensors in Triton's interpreter; with a GPU, the NCCL "
                              "run is bench.e2e --distributed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    from . import _dist_worker as W  # imported here: it sets TRITON_INTERPRET=1 (for the spawned ranks)
    out = tmp_path_factory.mktemp("dist")
    ctx = torch.multiprocessing.start_processes(W.rank_main, args=(2, _free_port(), str(out)), nprocs=2,
                                                join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=5):
            if time.monotonic() > deadline:
                pytest.fail(f"the two gloo ranks did not finish within {TIMEOUT_S} s (a hung collective?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    return {"single": W.single(), **torch.load(out / "results.pt")}


def _check(got: dict, want: dict) -> None:
    assert "error" not in got, got.get("error")
    assert not got["warnings"]  # e.g. "FSDP2-wrapped module (FSDPRMSNorm) returned a view tensor"
    for kind in ("grads", "params"):
        assert got[kind].keys() == want[kind].keys()
        for name, t in want[kind].items():
            torch.testing.assert_close(got[kind][name], t, rtol=1e-4, atol=1e-5, msg=f"{kind} {name}")


def test_training_changes_the_parameters(runs):
    assert runs["single"]["losses"][-1] < runs["single"]["losses"][0]


def test_ddp_matches_one_process(runs):
    _check(runs["ddp"], runs["single"])


def test_fsdp2_matches_one_process(runs):
    _check(runs["fsdp2"], runs["single"])
