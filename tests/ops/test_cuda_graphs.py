"""CUDA graphs (GPU only, ``-m gpu``): every op, forward and backward, captured in a torch.cuda.CUDAGraph
and under torch.compile(mode="reduce-overhead"), replayed on new values and checked against eager.

What made this fail before: the DSL's bound kernels kept the first call's arguments (example_args), so a
first call inside a graph pool left a tensor there that no output tracked ("Detected 1 tensor(s) in the
cudagraph pool not tracked as outputs"). The op layer now binds kernels on meta copies; the CPU proxy
of this test is tests/ops/test_op_layer.py::test_no_call_keeps_its_tensors_alive.
"""
from __future__ import annotations

import pytest
import torch

import helion_ops
from bench import catalog

SPECS, _ = catalog.discover()
TOL = 2e-2  # fp16 inputs, relative to the largest value


def _close(got, want):
    scale = max(1.0, want.float().abs().max().item())
    assert (got.float() - want.float()).abs().max().item() <= TOL * scale


def _inputs(spec, seed):
    torch.manual_seed(seed)
    inputs = spec.make_inputs(spec.SMALL_SHAPES[-1], torch.float16, "cuda")
    return tuple(t.detach().requires_grad_(i in spec.GRAD_INPUTS and t.is_floating_point())
                 if isinstance(t, torch.Tensor) else t for i, t in enumerate(inputs))


def _fwd_bwd(fn, inputs, g):
    out = fn(*inputs)
    diff = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return (out, *torch.autograd.grad(out, diff, g)) if diff else (out,)


@pytest.mark.gpu
@pytest.mark.parametrize("op", sorted(SPECS))
def test_cuda_graph_capture_forward_and_backward(op):
    spec = SPECS[op]
    static = _inputs(spec, 0)
    g = torch.randn_like(spec.impl(*static))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile, record and warm up outside the capture
        for _ in range(3):
            _fwd_bwd(spec.impl, static, g)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = _fwd_bwd(spec.impl, static, g)
    for seed in (1, 2):
        fresh = _inputs(spec, seed)
        with torch.no_grad():
            for s, f in zip(static, fresh):
                if isinstance(s, torch.Tensor) and s.is_floating_point():
                    s.copy_(f)
        graph.replay()
        torch.cuda.synchronize()
        for got, want in zip(outs, _fwd_bwd(spec.eager, fresh, g)):
            _close(got, want)


@pytest.mark.gpu
@pytest.mark.parametrize("op", sorted(SPECS))
def test_reduce_overhead_compile_forward_and_backward(op):
    spec = SPECS[op]
    torch._dynamo.reset()
    compiled = torch.compile(spec.impl, mode="reduce-overhead", fullgraph=True)
    for seed in range(4):  # warm-up, recording, then replays
        inputs = _inputs(spec, seed)
        g = torch.randn_like(spec.eager(*inputs))
        got = [t.clone() for t in _fwd_bwd(compiled, inputs, g)]
        for a, b in zip(got, _fwd_bwd(spec.eager, inputs, g)):
            _close(a, b)


@pytest.mark.gpu
def test_reduce_overhead_rms_norm_of_softmax():
    """The composition issue 30 found failing: rms_norm(softmax(x)) with its backward, fullgraph."""
    torch._dynamo.reset()
    w = torch.randn(512, device="cuda", dtype=torch.float16, requires_grad=True)

    def f(x):
        return helion_ops.rms_norm(helion_ops.softmax(x), (512,), w)

    compiled = torch.compile(f, mode="reduce-overhead", fullgraph=True)
    for seed in range(4):
        torch.manual_seed(seed)
        x = torch.randn(64, 512, device="cuda", dtype=torch.float16, requires_grad=True)
        got = compiled(x)
        gx, gw = torch.autograd.grad(got, (x, w), torch.ones_like(got))
        # eps=None means the input dtype's eps, as in torch: fp16's here (the fp32 reference must not take fp32's)
        want = torch.nn.functional.rms_norm(torch.softmax(x.float(), -1), (512,), w.float(),
                                            eps=torch.finfo(torch.float16).eps)
        wx, ww = torch.autograd.grad(want, (x, w), torch.ones_like(want))
        _close(got, want)
        _close(gx, wx)
        _close(gw, ww)
