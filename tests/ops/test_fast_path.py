"""The op layer's fast path (helion_ops/_fast.py): a call replays what the first call of its
specialization did, and only where nothing else may see or change the call. Every op, no per-op glue:
the ordinary path is detected by counting ``Op.__call__`` (the recipe of a plain inference call
launches the kernels without it)."""
from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from bench import catalog
from bench.host import DISPATCH_SHAPES
from helion_ops import _fast
from helion_ops import _oplib as C

SPECS, _ = catalog.discover()
OPS = sorted(SPECS)


def _inputs(spec, grad=False, seed=0):
    """Inputs at the shape bench.host --dispatch times (the plain path of each op)."""
    torch.manual_seed(seed)
    inputs = spec.make_inputs(DISPATCH_SHAPES.get(spec.NAME, spec.SMALL_SHAPES[0]), torch.float32, "cpu")
    return tuple(t.detach().requires_grad_(grad and i in spec.GRAD_INPUTS and t.is_floating_point())
                 if isinstance(t, torch.Tensor) else t for i, t in enumerate(inputs))


def _count_calls(monkeypatch, cls) -> list:
    """[how many times ``cls.__call__`` ran] from here on."""
    count = [0]
    real = cls.__call__

    def counting(self, *args):
        count[0] += 1
        return real(self, *args)

    monkeypatch.setattr(cls, "__call__", counting)
    return count


@pytest.fixture
def op_calls(monkeypatch):
    """How many times the ordinary path entered an op (``Op.__call__``)."""
    return _count_calls(monkeypatch, C.Op)


def _warm(spec, inputs):
    with torch.no_grad():
        spec.impl(*inputs)
        return spec.impl(*inputs)


def _fast_ops():
    """Ops whose plain call has a recipe (grouped_gemm reads its offsets back to check them: it keeps
    the ordinary path unless validate=False)."""
    return [op for op in OPS if op != "grouped_gemm"]


@pytest.mark.parametrize("op", _fast_ops())
def test_plain_inference_replays_and_matches(op, op_calls):
    spec = SPECS[op]
    inputs = _inputs(spec)
    first = _warm(spec, inputs)
    n = op_calls[0]
    with torch.no_grad():
        again = spec.impl(*inputs)
        other = _inputs(spec, seed=1)  # new tensors, same specialization: the recipe, on their values
        got = spec.impl(*other)
    assert op_calls[0] == n, "the fast path was not taken"
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    torch.testing.assert_close(got, spec.reference(*other).to(got.dtype), rtol=0,
                               atol=spec.TOLERANCE[torch.float32] * max(1.0, spec.reference(*other).abs().max().item()))


@pytest.mark.parametrize("op", OPS)
def test_grad_inputs_under_grad_mode_build_a_graph(op):
    """After the recipe exists, a call whose inputs require grad (grad mode on) still goes through its
    op's autograd formula (a graph node of its own per call), and its gradient is right."""
    spec = SPECS[op]
    _warm(spec, _inputs(spec))
    inputs = _inputs(spec, grad=True)
    outs = [spec.impl(*inputs) for _ in range(3)]
    assert all(o.requires_grad for o in outs) and len({id(o.grad_fn) for o in outs}) == 3
    out = outs[-1]
    g = torch.randn_like(out)
    diff = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    got = torch.autograd.grad(out, diff, g)
    ref_in = tuple(t.detach().double().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor)
                   and t.is_floating_point() else t for t in inputs)
    ref_out = spec.reference(*ref_in)
    want = torch.autograd.grad(ref_out, [t for t in ref_in if isinstance(t, torch.Tensor) and t.requires_grad],
                               g.double())
    for a, b in zip(got, want):
        assert (a.double() - b).abs().max() <= 1e-3 * max(1.0, b.abs().max().item()), op


@pytest.mark.parametrize("op", _fast_ops())
def test_no_fast_path_under_modes_tracing_and_transforms(op, op_calls):
    spec = SPECS[op]
    inputs = _inputs(spec)
    want = _warm(spec, inputs)

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    class Fn(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    cases = [Seen, Fn, torch.inference_mode]
    for ctx in cases:
        n = op_calls[0]
        with torch.no_grad(), ctx() as mode:
            got = spec.impl(*inputs)
        if ctx is torch.inference_mode:  # no grad: the fast path may run (and does)
            assert op_calls[0] == n
        else:
            assert op_calls[0] > n, ctx
        if ctx is Seen:
            assert mode.ops, "the dispatch mode saw nothing of the call"
        torch.testing.assert_close(got, want)
    # torch.func: the transform must see the op
    n = op_calls[0]
    got = torch.func.vmap(lambda t: spec.impl(t, *inputs[1:]))(inputs[0][None])
    assert op_calls[0] > n
    torch.testing.assert_close(got[0], want)


@pytest.mark.parametrize("op", ["softmax", "rms_norm", "matmul"])
def test_torch_compile_still_sees_the_custom_op(op):
    """The eager fast path warm for these shapes, torch.compile(fullgraph=True) still traces the op as
    its custom op (helion_ops::...), not as the ATen ops of a replayed launch."""
    spec = SPECS[op]
    inputs = _inputs(spec)
    want = _warm(spec, inputs)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    got = torch.compile(spec.impl, backend=backend, fullgraph=True)(*inputs)
    torch.testing.assert_close(got, want)
    targets = [str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"]
    assert any("helion_ops" in t for t in targets), targets


def test_jit_trace_records_the_custom_op():
    spec = SPECS["softmax"]
    (x,) = _inputs(spec)
    _warm(spec, (x,))
    with torch.no_grad():
        traced = torch.jit.trace(spec.impl, (x,), check_trace=False)
    assert "helion_ops::softmax_fwd" in str(traced.graph)
    x2 = torch.randn_like(x)
    torch.testing.assert_close(traced(x2), torch.softmax(x2, -1))


def test_one_object_in_two_places_is_not_baked_in():
    """layer_norm(x, shape, w, b), then (x, shape, w, w), then (x, shape, w, b) again: one specialization,
    other tensors; a recipe observed on the aliased call would not know which place a step read."""
    import helion_ops
    x, w, b = torch.randn(5, 35), torch.randn(35), torch.randn(35)
    with torch.no_grad():
        for wb in ((w, b), (w, b), (w, w), (w, b), (w, w)):
            got = helion_ops.layer_norm(x, (35,), *wb)
            torch.testing.assert_close(got, torch.nn.functional.layer_norm(x, (35,), *wb), rtol=1e-5, atol=1e-5)
        x2 = torch.randn(5, 37)
        w2 = torch.randn(37)
        helion_ops.layer_norm(x2, (37,), w2, w2)
        recipes = helion_ops.layer_norm.recipes
        assert [r for k, r in recipes.items() if k[1] == (tuple, (37,))] == [None]


def test_dsl_replay_first_call_with_one_tensor_in_two_places():
    """A kernel first called with one tensor in two places is not recorded for replay (which place a
    value came from is ambiguous): later calls with two tensors read both."""
    import helion_ops
    a, b = torch.randn(48, 48), torch.randn(48, 48)
    with torch.no_grad():
        helion_ops.matmul(b, b)
        helion_ops.matmul(b, b)
        got = helion_ops.matmul(a, b)
    torch.testing.assert_close(got, a @ b, rtol=1e-4, atol=1e-4)


def test_float_arguments_are_not_baked_in():
    import helion_ops
    x, w = torch.randn(4, 40), torch.randn(40)
    with torch.no_grad():
        for eps in (1e-6, 1e-6, 0.5, 2.0):
            got = helion_ops.rms_norm(x, (40,), w, eps)
            torch.testing.assert_close(got, torch.nn.functional.rms_norm(x, (40,), w, eps), rtol=1e-5, atol=1e-5)


def test_value_reads_keep_the_ordinary_path():
    """grouped_gemm checks its offsets on the host each call: a bad one raises after good calls of the
    same shapes (the check is not skipped)."""
    import helion_ops
    from helion_ops.errors import InputError
    x, w = torch.randn(6, 8), torch.randn(2, 8, 4)
    good = torch.tensor([2, 6], dtype=torch.int32)
    with torch.no_grad():
        for _ in range(2):
            helion_ops.grouped_gemm(x, w, good)
        with pytest.raises(InputError, match="offsets"):
            helion_ops.grouped_gemm(x, w, torch.tensor([4, 3], dtype=torch.int32))


def test_overrides_and_resets_forget_recipes(op_calls):
    import helion_ops
    x = torch.randn(3, 19)
    with torch.no_grad():
        helion_ops.softmax(x)
        helion_ops.softmax(x)
        assert any(r is not None for r in helion_ops.softmax.recipes.values())
        n = op_calls[0]
        with C.use_config("softmax_fwd", C.EAGER):
            helion_ops.softmax(x)
        assert op_calls[0] > n
        C.reset_caches()
        assert not helion_ops.softmax.recipes
        torch.testing.assert_close(helion_ops.softmax(x), torch.softmax(x, -1))


def test_wrong_device_still_raises_after_a_recipe(monkeypatch):
    import helion_ops
    from helion_ops.errors import InputError
    x = torch.randn(2, 3)
    with torch.no_grad():
        helion_ops.softmax(x)
        helion_ops.softmax(x)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(InputError, match="CPU tensor"):
        helion_ops.softmax(x)


def test_training_calls_replay_and_match():
    """Calls needing a graph replay too (their recipe calls the op's autograd entry): gradients right."""
    import helion_ops
    for seed in range(3):
        torch.manual_seed(seed)
        x, w = torch.randn(6, 24, requires_grad=True), torch.randn(24, requires_grad=True)
        g = torch.randn(6, 24)
        helion_ops.rms_norm(x, (24,), w, 1e-5).backward(g)
        xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        torch.nn.functional.rms_norm(xr, (24,), wr, 1e-5).backward(g.double())
        torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(w.grad.double(), wr.grad, rtol=1e-4, atol=1e-4)
    assert any(r is not None and k[0][4] for k, r in helion_ops.rms_norm.recipes.items())  # a grad recipe


# ---- the backward (_fast.GradSpec) ----------------------------------------------------------------

def _grads(spec, inputs, g, **kw):
    out = spec.impl(*inputs)
    return out, torch.autograd.grad(out, [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad],
                                    g, **kw)


def _ref_grads(spec, inputs, g):
    ref_in = tuple(t.detach().double().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor)
                   and t.is_floating_point() else t for t in inputs)
    out = spec.reference(*ref_in)
    return torch.autograd.grad(out, [t for t in ref_in if isinstance(t, torch.Tensor) and t.requires_grad],
                               g.double())


def _assert_grads(got, want, op):
    for a, b in zip(got, want, strict=True):
        assert (a.double() - b).abs().max() <= 1e-3 * max(1.0, b.abs().max().item()), op


@pytest.fixture
def ordinary_launches(monkeypatch):
    """How many launches went through a Kern (the ordinary path; a replayed one calls its choice directly)."""
    return _count_calls(monkeypatch, C.Kern)


@pytest.mark.parametrize("op", OPS)
def test_backward_replays_and_matches(op, op_calls, ordinary_launches):
    """After a first forward + backward of a specialization, the next ones (new tensors, new values)
    replay both halves: no op entered, no Kern called; the gradients match fp64 autograd."""
    spec = SPECS[op]
    for seed in range(2):  # observe, then replay once
        inputs = _inputs(spec, grad=True, seed=seed)
        out, _ = _grads(spec, inputs, torch.ones(1).expand_as(spec.impl(*inputs)).contiguous())
    n_ops, n_kerns = op_calls[0], ordinary_launches[0]
    for seed in (5, 6):
        inputs = _inputs(spec, grad=True, seed=seed)
        g = torch.randn_like(out)
        _, got = _grads(spec, inputs, g)
        _assert_grads(got, _ref_grads(spec, inputs, g), op)
    if op != "grouped_gemm":  # its offsets check keeps its public call on the ordinary path (not its backward)
        assert op_calls[0] == n_ops, "the public call did not replay"
    assert ordinary_launches[0] == n_kerns, "a launch did not replay"


@pytest.mark.parametrize("op", ["softmax", "rms_norm", "layer_norm", "matmul"])
def test_gradients_of_other_strides_are_their_own_specialization(op):
    """The backward's replay is chosen by the incoming gradient's strides: an expanded one (``.sum()``),
    a transposed view and a contiguous one each get theirs, all right."""
    spec = SPECS[op]
    inputs = _inputs(spec, grad=True)
    out = spec.impl(*inputs)
    gs = [torch.ones(()).expand_as(out), torch.randn(out.shape[::-1]).t(), torch.randn_like(out)]
    for _ in range(2):
        for g in gs:
            _, got = _grads(spec, inputs, g)
            _assert_grads(got, _ref_grads(spec, inputs, g), op)


@pytest.mark.parametrize("op", ["softmax", "rms_norm", "layer_norm", "matmul"])
def test_create_graph_after_a_replayed_backward_still_builds_a_graph(op):
    """A specialization whose backward replays: under create_graph=True its gradient still has a graph,
    and the second derivative matches fp64 autograd's."""
    spec = SPECS[op]
    for seed in range(3):
        inputs = _inputs(spec, grad=True, seed=seed)
        out, _ = _grads(spec, inputs, torch.ones(()).expand(spec.impl(*inputs).shape).contiguous())
    g = torch.randn_like(out)
    _, got = _grads(spec, inputs, g, create_graph=True)
    assert any(t.grad_fn is not None for t in got), op
    diff = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    second = torch.autograd.grad(sum((t ** 2).sum() for t in got), diff, allow_unused=True)
    ref_in = tuple(t.detach().double().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor)
                   and t.is_floating_point() else t for t in inputs)
    ref_diff = [t for t in ref_in if isinstance(t, torch.Tensor) and t.requires_grad]
    first = torch.autograd.grad(spec.reference(*ref_in), ref_diff, g.double(), create_graph=True)
    want = torch.autograd.grad(sum((t ** 2).sum() for t in first), ref_diff, allow_unused=True)
    for a, b in zip(second, want):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any()), op
            continue
        assert (a.double() - b).abs().max() <= 1e-3 * max(1.0, b.abs().max().item()), op


def test_a_replayed_backward_whose_launch_fails_takes_the_ordinary_path(monkeypatch):
    """A launch raising inside a replayed backward: the ordinary backward runs (its eager fallback, with the
    FallbackWarning) and the gradient is still right; the failed kernel is not replayed again."""
    import helion_ops
    from helion_ops.errors import FallbackWarning
    from helion_ops.dsl import runtime
    monkeypatch.setenv("HELION_OPS_STRICT", "0")
    x = torch.randn(7, 33, requires_grad=True)
    for _ in range(2):
        helion_ops.softmax(x).backward(torch.ones(7, 33))
    g = torch.randn(7, 33)
    want = torch.autograd.grad(torch.softmax(x, -1), x, g)[0]
    real, calls = runtime.BoundKernel.__call__, []

    def failing(self, *args):
        if self.kernel.name != "softmax_bwd":
            return real(self, *args)
        calls.append(1)
        raise RuntimeError("boom")

    monkeypatch.setattr(runtime.BoundKernel, "__call__", failing)
    y = helion_ops.softmax(x)
    with pytest.warns(FallbackWarning, match="softmax_bwd"):
        got = torch.autograd.grad(y, x, g)[0]
    torch.testing.assert_close(got, want)
    n = len(calls)
    torch.testing.assert_close(torch.autograd.grad(helion_ops.softmax(x), x, g)[0], want)
    assert len(calls) == n  # the eager fallback now, not the failing kernel
    monkeypatch.undo()
    C.reset_caches()
    torch.testing.assert_close(torch.autograd.grad(helion_ops.softmax(x), x, g)[0], want)


def test_retain_graph_backward_twice_and_unused_output():
    """A replayed backward run twice on one graph (retain_graph) accumulates the same gradient twice;
    a graph whose output is never used (only a statistic would be) gives no gradient, not an error."""
    import helion_ops
    x, w = torch.randn(6, 40, requires_grad=True), torch.randn(40, requires_grad=True)
    for _ in range(2):
        helion_ops.rms_norm(x, (40,), w).sum().backward()
    x.grad = w.grad = None
    y = helion_ops.rms_norm(x, (40,), w)
    g = torch.randn(6, 40)
    y.backward(g, retain_graph=True)
    once = x.grad.clone()
    y.backward(g)
    torch.testing.assert_close(x.grad, 2 * once)


def test_in_place_change_of_a_saved_input_is_still_caught():
    """The replay saves its tensors as the ordinary path does: modifying one before backward raises."""
    import helion_ops
    x = torch.randn(4, 24, requires_grad=True)
    for _ in range(2):
        helion_ops.softmax(x * 1).sum().backward()
    h = x * 1
    y = helion_ops.softmax(h)
    y.mul_(2)  # y is saved for the backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` whose data starts 4 bytes past a 16-byte boundary (same shape and strides)."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype)
    out = buf[1:].view(t.shape).copy_(t)
    assert out.data_ptr() % 16 != 0 and out.stride() == t.stride()
    return out.requires_grad_(t.requires_grad)


def test_a_gemm_choice_by_alignment_replays_only_calls_aligned_alike(monkeypatch, op_calls, ordinary_launches):
    """A GEMM large enough to pad unaligned operand rows reads its pointers' alignment: its recipes (forward,
    and backward per gradient) replay calls whose tensors are aligned as the observed call's (no op entered,
    no Kern called); a call on a misaligned copy takes the ordinary path and is right; aligned calls replay
    again after it."""
    from helion_ops.ops import _gemm as GE
    monkeypatch.setattr(GE, "PAD_MIN_MNK", 1)  # the dispatch shape counts as large
    monkeypatch.setattr(GE, "PAD_MIN_MN", 1)
    spec = SPECS["matmul"]
    for seed in range(2):  # observe, then replay once
        with torch.no_grad():
            spec.impl(*_inputs(spec, seed=seed))
        inputs = _inputs(spec, grad=True, seed=seed)
        out, _ = _grads(spec, inputs, torch.randn_like(spec.impl(*inputs)))

    def check(inputs, replayed: bool):
        n_ops, n_kerns = op_calls[0], ordinary_launches[0]
        with torch.no_grad():
            got = spec.impl(*inputs)
        ref = spec.reference(*inputs).to(got.dtype)
        torch.testing.assert_close(got, ref, rtol=0, atol=spec.TOLERANCE[torch.float32] * max(1.0, ref.abs().max().item()))
        g = torch.randn_like(out)
        _, grads = _grads(spec, inputs, g)
        _assert_grads(grads, _ref_grads(spec, inputs, g), "matmul")
        assert (op_calls[0] == n_ops and ordinary_launches[0] == n_kerns) == replayed

    check(_inputs(spec, grad=True, seed=3), replayed=True)
    a, b = _inputs(spec, grad=True, seed=4)
    check((_misaligned(a), b), replayed=False)
    check(_inputs(spec, grad=True, seed=5), replayed=True)
