"""A tiny transformer block of helion_ops ops, trained single-process or as one rank of a gloo group
(tests/integrations/test_distributed.py). Kept apart from the test module so spawned ranks import only
this. Every op of the block is ours: RMSNorm and LayerNorm (helion_ops.nn), matmul (with a fused bias
and GELU), causal attention and the softmax of the loss; fp32 (Triton's interpreter on CPU)."""
from __future__ import annotations

import os
import traceback
import warnings
from datetime import timedelta

import torch

os.environ.setdefault("TRITON_INTERPRET", "1")  # before helion_ops creates a kernel (spawned ranks)
os.environ.setdefault("HELION_OPS_STRICT", "1")  # a kernel that fails must fail the run, not fall back

import helion_ops  # noqa: E402
from helion_ops.nn import LayerNorm, RMSNorm  # noqa: E402

DIM, HEADS, HEAD_DIM, HIDDEN, CLASSES, SEQ, BATCH, STEPS, LR = 32, 2, 64, 48, 10, 17, 2, 3, 0.5


class Block(torch.nn.Module):
    """tokens [B, S, DIM] -> log-probabilities [B, S, CLASSES]."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1 = RMSNorm(DIM)
        self.wqkv = torch.nn.Parameter(torch.empty(DIM, 3 * HEADS * HEAD_DIM))
        self.wo = torch.nn.Parameter(torch.empty(HEADS * HEAD_DIM, DIM))
        self.norm2 = LayerNorm(DIM)
        self.w1 = torch.nn.Parameter(torch.empty(DIM, HIDDEN))
        self.b1 = torch.nn.Parameter(torch.empty(HIDDEN))
        self.w2 = torch.nn.Parameter(torch.empty(HIDDEN, CLASSES))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.w1.device.type == "meta":
            return
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in (self.wqkv, self.wo, self.w1, self.b1, self.w2):
                v = torch.randn(p.shape, generator=g) / p.shape[0] ** 0.5
                if hasattr(p, "device_mesh"):  # a sharded (FSDP2) parameter takes its own shard of v
                    from torch.distributed.tensor import distribute_tensor
                    v = distribute_tensor(v, p.device_mesh, p.placements)
                p.copy_(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = helion_ops.matmul(self.norm1(x), self.wqkv).reshape(b, s, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        a = helion_ops.attention(qkv[0].contiguous(), qkv[1].contiguous(), qkv[2].contiguous(), causal=True)
        x = x + helion_ops.matmul(a.transpose(1, 2).reshape(b, s, HEADS * HEAD_DIM), self.wo)
        h = helion_ops.matmul(self.norm2(x), self.w1, self.b1, activation="gelu")
        return torch.log(helion_ops.softmax(helion_ops.matmul(h, self.w2), dim=-1))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, SEQ, DIM, generator=g)
    return x, torch.randint(0, CLASSES, (BATCH, SEQ), generator=g)


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """STEPS of SGD on the mean NLL of (x, y); the losses."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for _ in range(STEPS):
        loss = torch.nn.functional.nll_loss(model(x).reshape(-1, CLASSES), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def full(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def state(model: torch.nn.Module, losses: list[float]) -> dict:
    """Parameters after training and the last step's gradients, unsharded."""
    return {"losses": losses,
            "params": {n: full(p.detach()).clone() for n, p in model.named_parameters()},
            "grads": {n: full(p.grad).clone() for n, p in model.named_parameters()}}


def single() -> dict:
    x, y = data()
    model = Block()
    return state(model, train(model, x, y))


def _ddp(rank: int, world: int, x: torch.Tensor, y: torch.Tensor) -> dict:
    from torch.nn.parallel import DistributedDataParallel
    model = Block()
    ddp = DistributedDataParallel(model)
    return state(model, train(ddp, x, y))


def _fsdp2(rank: int, world: int, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Deferred init as FSDP2 recommends: built and run on meta, sharded, materialised, initialised."""
    from torch.distributed.fsdp import fully_shard
    with torch.device("meta"):
        model = Block()
        assert model(torch.empty(1, SEQ, DIM)).shape == (1, SEQ, CLASSES)  # the ops on meta tensors
    fully_shard(model.norm1)
    fully_shard(model.norm2)
    fully_shard(model)
    model.to_empty(device="cpu")
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()  # on sharded (DTensor) parameters
    assert all(type(p).__name__ == "DTensor" for p in model.parameters())
    return state(model, train(model, x, y))


def rank_main(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank: DDP, then FSDP2, each on this rank's half of the batch; rank 0 saves the results."""
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))
    x, y = data()
    n = BATCH // world
    x, y = x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
    results = {}
    for name, run in (("ddp", _ddp), ("fsdp2", _fsdp2)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                results[name] = run(rank, world, x, y)
            except Exception:  # reported by the test (a torch limitation reads differently from ours)
                results[name] = {"error": traceback.format_exc()}
        results[name]["warnings"] = sorted({str(w.message) for w in caught if "FSDP" in str(w.message)})
        dist.barrier()
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "results.pt"))
    dist.destroy_process_group()
