"""Train a small model whose layers are helion_ops kernels, for a few steps.

The model is an RMSNorm, a matmul with a fused bias and GELU, a LayerNorm and a matmul to class
logits, trained with a softmax cross-entropy: every forward and backward pass runs helion_ops
kernels (``helion_ops.nn`` modules, ``helion_ops.matmul``, ``helion_ops.softmax``).

    python examples/train_small_model.py            # on a GPU: bf16 activations, 4096 tokens
    python examples/train_small_model.py --tiny     # tiny sizes; the default without a GPU

Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set here), in fp32.
"""
from __future__ import annotations

import argparse
import math
import os

import torch

INTERPRET = not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"  # before any Triton kernel is created

import helion_ops  # noqa: E402  (after TRITON_INTERPRET)
from helion_ops.nn import LayerNorm, RMSNorm  # noqa: E402


class SmallModel(torch.nn.Module):
    """tokens [T, D] -> logits [T, C]; parameters in fp32, math in the input's dtype."""

    def __init__(self, dim: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.w1 = torch.nn.Parameter(torch.randn(dim, hidden) / math.sqrt(dim))
        self.b1 = torch.nn.Parameter(torch.zeros(hidden))
        self.norm2 = LayerNorm(hidden)
        self.w2 = torch.nn.Parameter(torch.randn(hidden, classes) / math.sqrt(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        h = helion_ops.matmul(self.norm(x), self.w1.to(dt), self.b1.to(dt), activation="gelu")
        return helion_ops.matmul(self.norm2(h), self.w2.to(dt))


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood through helion_ops.softmax (in fp32, as a loss should be)."""
    p = helion_ops.softmax(logits, dim=-1, dtype=torch.float32)
    return -torch.log(p.gather(1, target[:, None]).clamp_min(1e-12)).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the default without a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 4 tiny, 50 on a GPU)")
    args = parser.parse_args()
    tiny = args.tiny or INTERPRET
    device = "cpu" if INTERPRET else "cuda"
    dtype = torch.float32 if INTERPRET else torch.bfloat16  # the interpreter gets bf16 arithmetic wrong
    tokens, dim, hidden, classes = (16, 32, 64, 10) if tiny else (4096, 1024, 4096, 1000)
    steps = args.steps or (4 if tiny else 50)

    torch.manual_seed(0)
    # A learnable task: the class is the argmax of a fixed random projection of the input.
    x = torch.randn(tokens, dim, device=device)
    target = (x @ torch.randn(dim, classes, device=device)).argmax(1)
    x = x.to(dtype)

    model = SmallModel(dim, hidden, classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    print(f"{'interpreter (CPU)' if INTERPRET else torch.cuda.get_device_name()}: {tokens} tokens, "
          f"dim {dim}, hidden {hidden}, {classes} classes, {dtype}, {steps} steps")
    for step in range(steps):
        loss = cross_entropy(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # backward kernels of matmul, the norms and softmax
        opt.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
