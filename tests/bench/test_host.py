"""bench.host (host time per call against eager): refuses without a GPU; its calls and table."""
import torch

from bench import catalog, host


def test_refuses_without_a_gpu(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert host.main(["--out", str(tmp_path)]) == 2
    assert "CUDA GPU" in capsys.readouterr().out and not list(tmp_path.iterdir())


def test_calls_run_forward_and_backward_of_every_op():
    specs, _ = catalog.discover()
    for name, spec in specs.items():
        fns = host.calls(spec, spec.impl, spec.SMALL_SHAPES[0], device="cpu", dtype=torch.float32)
        assert set(fns) == ({"fwd", "fwd+bwd"} if spec.GRAD_INPUTS else {"fwd"}), name
        for fn in fns.values():
            fn()


def test_markdown_table():
    rows = [{"op": "softmax", "shape": "16x1024", "mode": "fwd", "ours_us": 6.0, "eager_us": 6.2, "ratio": 6 / 6.2,
             "ours_gpu_us": 2.0, "eager_gpu_us": 1.5, "stubbed_us": 4.1, "launches": 2, "static": 1,
             "launch_us": 1.9, "launch_cpu_us": 1.2}]
    info = {"gpu_full": "NVIDIA H100 80GB HBM3", "torch": "2.11", "triton": "3.6", "commit": "abc", "date": "d"}
    md = host.markdown(rows, info, 1000, 3)
    assert "| softmax | 16x1024 | fwd | 6.0 | 6.2 | 0.97x | 2.0 | 1.5 | 4.1 | 2 (1) | 1.9 (1.2) | - |" in md and "H100" in md
    assert "Launch floor" not in md and "Autograd floor" not in md
    bwd = dict(rows[0], mode="fwd+bwd", ours_ct_us=50.0, eager_ct_us=40.25)
    md = host.markdown([bwd], info, 1000, 3, fn_floor={"function_device": 83.2, "eager_device": 95.1,
                                                        "function_calling": 54.5, "eager_calling": 64.5})
    assert "| 1.9 (1.2) | 50.0 / 40.2 |" in md
    assert "`autograd.Function`" in md and "83.2 µs" in md and "95.1 µs" in md and "54.5 and 64.5 µs" in md
    md = host.markdown(rows, info, 1000, 3, {"op": "softmax", "ours": 4.0, "triton": 12.5, "eager": 3.1})
    assert "ours 4.0 µs, Triton's `fn[grid]` 12.5 µs" in md and "16-element tensor" in md and "3.1 µs" in md


def test_captured_launches_are_the_calls_kernel_launches():
    """One call's DSL launches, captured with their values: replaying them alone is what bench.host times."""
    spec = catalog.load("softmax")
    fn = host.calls(spec, spec.impl, (17, 64), device="cpu", dtype=torch.float32)["fwd"]
    fn()
    launches = host.captured_launches(fn)
    assert len(launches) == 1 and all(isinstance(v, list) for _, v in launches)
