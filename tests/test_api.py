"""Public API: both import forms, help(), robustness to missing/broken op modules, torch.compile."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import helion_ops
from helion_ops.dsl import exc
from tests.conftest import DEVICE  # cuda on a GPU machine, else cpu (interpreter)

CORE = ["softmax", "layer_norm", "rms_norm"]


def test_module_path_form():
    import helion_ops.softmax  # noqa: F401  (the statement itself must work)
    import helion_ops.layer_norm  # noqa: F401
    import helion_ops.rms_norm  # noqa: F401
    x = torch.randn(3, 17, device=DEVICE)
    torch.testing.assert_close(helion_ops.softmax(x), torch.softmax(x, -1))
    torch.testing.assert_close(helion_ops.layer_norm(x, (17,)), torch.nn.functional.layer_norm(x, (17,)))
    torch.testing.assert_close(helion_ops.rms_norm(x, (17,)), torch.nn.functional.rms_norm(x, (17,)))


def test_from_import_form():
    from helion_ops import layer_norm, rms_norm, softmax
    x = torch.randn(3, 17, device=DEVICE)
    torch.testing.assert_close(softmax(x, dim=0), torch.softmax(x, 0))
    torch.testing.assert_close(layer_norm(x, [17]), torch.nn.functional.layer_norm(x, [17]))
    torch.testing.assert_close(rms_norm(x, 17), torch.nn.functional.rms_norm(x, [17]))


def test_import_as_and_names_agree():
    import helion_ops.softmax as sm
    from helion_ops import softmax
    assert sm is softmax is helion_ops.softmax
    assert sys.modules["helion_ops.softmax"] is sys.modules["helion_ops.ops.softmax"]


@pytest.mark.parametrize("name", CORE)
def test_exposed_ops_are_documented_functions(name):
    fn = getattr(helion_ops, name)
    assert callable(fn) and fn.__name__ == name
    assert fn.__doc__ and "torch.nn.functional" in fn.__doc__
    assert name in helion_ops.__all__ and name in dir(helion_ops)
    assert "helion_ops.ops" in fn.__module__


def test_every_present_op_module_is_exposed():
    """Each op module in helion_ops/ops/ that imports and defines its function is public."""
    import pkgutil

    import helion_ops.ops as ops_pkg
    present = {m.name for m in pkgutil.iter_modules(ops_pkg.__path__) if not m.name.startswith("_")}
    for name in helion_ops.OPS:
        if name in present and name not in helion_ops.import_errors():
            assert callable(getattr(helion_ops, name)), name
        elif name not in present:
            assert name in helion_ops.import_errors()
            with pytest.raises(AttributeError, match="not available"):
                getattr(helion_ops, name)
    assert helion_ops.dsl.kernel and helion_ops.nn.RMSNorm and helion_ops.nn.LayerNorm


def test_broken_op_module_does_not_break_import():
    """Block one op module (import fails) in a fresh interpreter: the others still import."""
    code = ("import sys; sys.modules['helion_ops.ops.rms_norm'] = None\n"
            "import helion_ops, torch\n"
            "assert 'rms_norm' in helion_ops.import_errors(), helion_ops.import_errors()\n"
            "assert not hasattr(helion_ops, 'rms_norm')\n"
            "from helion_ops import softmax\n"
            "x = torch.randn(2, 5); assert torch.allclose(softmax(x), torch.softmax(x, -1))\n"
            "print('ok')\n")
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_help_renders():
    import pydoc
    text = pydoc.render_doc(helion_ops.softmax, renderer=pydoc.plaintext)
    assert "softmax(x" in text and "dim" in text
    assert "both" in pydoc.render_doc(helion_ops, renderer=pydoc.plaintext).lower()


def test_input_error_names_argument():
    with pytest.raises(exc.InputError, match="'weight'"):
        helion_ops.layer_norm(torch.randn(2, 5, device=DEVICE), (5,), torch.randn(5, dtype=torch.float16, device=DEVICE))
    assert issubclass(exc.InputError, ValueError)


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)
        self.ln = helion_ops.nn.LayerNorm(16)
        self.rn = helion_ops.nn.RMSNorm(16, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.rn(self.ln(self.lin(x)))
        h = h + helion_ops.rms_norm(h, (16,), None, 1e-6)
        return helion_ops.softmax(h, dim=-1) + helion_ops.softmax(h, dim=1)


def test_torch_compile_fullgraph():
    """fullgraph=True raises on any graph break. aot_eager traces forward and backward through the fake
    implementations and the autograd registrations, then runs the real ops (interpreter) on CPU."""
    torch.manual_seed(0)
    m = _Block().to(DEVICE)
    x = torch.randn(2, 3, 16, device=DEVICE, requires_grad=True)
    ref = m(x)
    ref.square().sum().backward()
    gx, gw = x.grad.clone(), m.ln.weight.grad.clone()
    x.grad = None
    m.zero_grad()
    torch._dynamo.reset()
    c = torch.compile(m, backend="aot_eager", fullgraph=True)
    y = c(x)
    y.square().sum().backward()
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(m.ln.weight.grad, gw)


def test_torch_compile_no_graph_break_count():
    def f(x, w, b):
        return helion_ops.layer_norm(helion_ops.softmax(x), (8,), w, b).sum()

    torch._dynamo.reset()
    x, w, b = (torch.randn(*s, device=DEVICE) for s in ((4, 8), (8,), (8,)))
    explanation = torch._dynamo.explain(f)(x, w, b)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_custom_ops_pass_opcheck():
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of each custom op."""
    from helion_ops.ops import layer_norm as L, rms_norm as R, softmax as S
    x = torch.randn(5, 17, device=DEVICE, requires_grad=True)
    w = torch.randn(17, device=DEVICE, requires_grad=True)
    b = torch.randn(17, device=DEVICE, requires_grad=True)
    cases = [(S.softmax_fwd_op.custom, (x,)), (R.rms_norm_fwd_op.custom, (x, w, 1e-5)),
             (R.rms_norm_fwd_op.custom, (x, None, 1e-5)),
             (L.layer_norm_fwd_op.custom, (x, w, b, 1e-5)), (L.layer_norm_fwd_op.custom, (x, None, b, 1e-5))]
    for op, args in cases:
        result = torch.library.opcheck(op, args)
        assert all(v == "SUCCESS" for v in result.values()), (op, result)


def _kernel_args(kernel: str, shape: list) -> tuple:
    """Meta-tensor arguments of one of our kernels at an [M, N] shape (bf16), for binding without data."""
    m, n = shape
    t = lambda *s, dt=torch.bfloat16: torch.empty(*s, dtype=dt, device="meta")  # noqa: E731
    x, v, st = t(m, n), t(n), t(m, dt=torch.float32)
    return {"softmax_fwd": (x,), "softmax_fwd_online": (x,), "softmax_bwd": (x, t(m, n)), "softmax_bwd_looped": (x, t(m, n)),
            "rms_norm_fwd": (x, v, 1e-6), "rms_norm_bwd": (t(m, n), x, v, st),
            "layer_norm_fwd": (x, v, t(n), 1e-5), "layer_norm_bwd": (t(m, n), x, v, t(n), st, t(m, dt=torch.float32))}[kernel]


@pytest.mark.parametrize("op", CORE)
def test_pretuned_sm90_configs_validate_and_compile(op):
    """Every shipped H100 entry validates against its kernel's ConfigSpace at its shape, is what the
    lookup returns for that shape, and one entry per kernel and inner-loop pipelining depth compiles
    for sm_90 (no GPU needed)."""
    import json

    import helion_ops.ops as ops_pkg
    from helion_ops import pretuned
    path = pretuned.config_path(op, "sm90")
    if not path.exists():
        pytest.skip(f"no {path}")
    data = json.loads(path.read_text())
    assert data["gpu"].startswith("NVIDIA H100") and data["entries"]
    mod = __import__(f"{ops_pkg.__name__}.{op}", fromlist=["_"])
    compiled = set()
    for e in data["entries"]:
        kernel = getattr(mod, e["kernel"])
        bound = kernel.bind(_kernel_args(e["kernel"], e["key"]["shape"]))
        cfg = bound.config_space.normalize(helion_ops.dsl.Config(**e["config"]))
        assert pretuned.lookup(op, e["kernel"], torch.bfloat16, e["key"]["shape"], arch="sm90") == \
            helion_ops.dsl.Config(**e["config"])
        kind = (e["kernel"], tuple(e["config"].get("range_num_stages") or ()),
                tuple(e["config"].get("range_reverses") or ()))
        if kind not in compiled:
            compiled.add(kind)
            assert bound.compile_for_target(cfg, ("cuda", 90, 32))


@pytest.mark.parametrize("mode", ["fwd", "bwd"])
@pytest.mark.parametrize("op", ["rms_norm", "layer_norm"])
def test_norm_table_serves_its_own_shapes_only(op, mode, monkeypatch):
    """A norm kernel's table entry is used at its own [M, N] only: elsewhere the op's default runs, not
    the nearest entry (rows per program, and per step, were tuned for that entry's M and N)."""
    from helion_ops import _oplib as C
    from helion_ops import pretuned

    monkeypatch.setattr(pretuned, "current_arch", lambda: "sm90")
    mod = __import__(f"helion_ops.ops.{op}", fromlist=["_"])
    kernel = f"{op}_{mode}"
    launcher, default = (mod._fwd, mod._default_fwd) if mode == "fwd" else (mod._bwd, mod._default_bwd)
    for shape in ([16384, 1000], [16384, 768], [8192, 1000]):
        args = _kernel_args(kernel, shape)
        bound = getattr(mod, kernel).bind(args)
        entry = pretuned.lookup(op, kernel, torch.bfloat16, shape, arch="sm90", exact=(0, 1))
        assert (entry is not None) == (shape == [16384, 1000])
        want = entry or default(tuple(shape))
        assert launcher.config_for(*args) == C.fit(bound, want)
