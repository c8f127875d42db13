"""Host path of one op call with its kernel launches stubbed out (pytest-benchmark, group "dispatch").

Per op and mode (forward under no_grad; forward + backward with inputs requiring grad), the calls of
``python -m bench.host --dispatch`` at its DISPATCH_SHAPES: argument checks, the op layer, autograd,
config lookup, output allocation and the replayed host code, down to the launch, which returns at
once. CPU numbers, compared by scripts/test with the stored baseline like the other host-cost
benchmarks (a minimum past 4x the baseline's fails); ops missing from the baseline are only reported.
On a GPU machine the same calls run on CUDA tensors (the host path the H100's bench.host measures).
"""
import pytest
import torch

from bench import catalog, host
from tests.conftest import DEVICE

SPECS, _ = catalog.discover()
CASES = [(op, mode) for op, spec in SPECS.items() for mode in (("fwd", "fwd+bwd") if spec.GRAD_INPUTS else ("fwd",))]


@pytest.fixture(scope="module")
def warm_calls():
    """Every op's calls, compiled and recorded once for the whole module (the interpreter is slow)."""
    return {op: host.dispatch_calls(spec, DEVICE, torch.float32)[0] for op, spec in SPECS.items()}


@pytest.mark.parametrize("op,mode", CASES, ids=[f"{o}-{m}" for o, m in CASES])
@pytest.mark.benchmark(group="dispatch", min_rounds=5, max_time=0.1)
def test_op_dispatch(benchmark, warm_calls, op, mode):
    fn = warm_calls[op][mode]
    with host.stubbed_launches(), host._grad_mode(mode):
        benchmark(fn)


def test_stubbed_launches_stub_every_launch_and_restore():
    """Inside the block a warmed-up op launches nothing (its output stays as allocated); after it, the
    real launch is back and the result is right."""
    from helion_ops.dsl import runtime
    spec = SPECS["softmax"]
    ours, _ = host.dispatch_calls(spec, DEVICE, torch.float32)
    x = torch.randn(host.DISPATCH_SHAPES["softmax"], device=DEVICE)
    spec.impl(x)
    real = runtime.Compiled.launch
    launched = []
    runtime.Compiled.launch = lambda self, values: launched.append(1)
    try:
        with host.stubbed_launches():
            spec.impl(x)
            ours["fwd+bwd"]()
    finally:
        runtime.Compiled.launch = real
    assert not launched and runtime.Compiled.launch is real
    with torch.no_grad():
        torch.testing.assert_close(spec.impl(x), torch.softmax(x, -1))


def test_dispatch_cli_prints_ours_and_eager(capsys):
    assert host.main(["--dispatch", "--op", "softmax", "--iters", "5", "--repeats", "1", "--profile", "3"]) == 0
    out = capsys.readouterr().out
    assert "softmax       fwd+bwd  ours" in out and "eager" in out and "tottime" in out
