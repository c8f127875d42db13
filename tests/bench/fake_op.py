"""A CPU-only op module following docs/CONTRACTS.md §1, for harness tests.

Row softmax with torch functions, so the harness can be tested without the
DSL or the real catalog. Tests monkeypatch attributes to plant failures.
"""
import torch

NAME = "fake_softmax"
METRIC = "GB/s"
SHAPES = [(64, 128), (128, 256)]
SMALL_SHAPES = [(3, 5), (7, 33)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
GRAD_INPUTS = (0,)


def make_inputs(shape, dtype, device):
    """One random (M, N) matrix."""
    return (torch.randn(shape, dtype=dtype, device=device),)


def impl(x):
    """"Ours"."""
    return torch.softmax(x, dim=-1)


def eager(x):
    """Plain PyTorch."""
    return torch.softmax(x, dim=-1)


def _vendor(x):
    """A differently written softmax, standing in for a vendor library."""
    e = torch.exp(x.float() - x.float().amax(-1, keepdim=True))
    return (e / e.sum(-1, keepdim=True)).to(x.dtype)


BASELINES = {"vendor": _vendor}


def reference(x):
    """fp64 softmax, returned in fp32."""
    return torch.softmax(x.double(), dim=-1).float()


def work(shape, dtype):
    """One read of x and one write of out."""
    m, n = shape
    return 2 * m * n * torch.tensor([], dtype=dtype).element_size()


def backward_work(shape, dtype):
    """Read out and grad_out, write grad_in."""
    m, n = shape
    return 3 * m * n * torch.tensor([], dtype=dtype).element_size()
