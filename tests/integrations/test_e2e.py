"""bench.e2e: the end-to-end training harness, as CPU dry runs (interpreter, fp32, tiny models).

Single process: the page and CSVs are written, patched and unpatched runs have the same losses.
Distributed (gloo, 2 processes): the patched model wrapped in FSDP2 or DDP has the gradients of one
unpatched process on the whole batch, and trains with the single process's loss curve.
On GPUs (-m gpu): the same on one GPU and, with two, FSDP2 over NCCL in bf16.
"""
from __future__ import annotations

import csv

import pytest
import torch

pytest.importorskip("transformers", minversion="5.0")

from bench import e2e  # noqa: E402

TINY = ["--device", "cpu", "--tiny", "--steps", "1", "--warmup", "1"]


def rows(out) -> list[dict]:
    with open(out / "e2e" / "runs.csv") as f:
        return list(csv.DictReader(f))


def losses(out) -> dict[tuple[str, str], list[float]]:
    curves: dict = {}
    with open(out / "e2e" / "losses.csv") as f:
        for r in csv.DictReader(f):
            curves.setdefault((r["model"], r["variant"]), []).append(float(r["loss"]))
    return curves


def one_process_curve(model: str, layers: int) -> list[float]:
    """The unpatched model trained in this process on the whole batch (plain PyTorch: fast)."""
    args = e2e.parse_args([*TINY, "--layers", str(layers)])
    net = e2e.build(model, True, "cpu", torch.float32, layers=layers)
    data = e2e.batches(4, args.batch, args.seq, net.config.vocab_size)
    return e2e.train(net, data, args.steps, args.warmup, "cpu")["losses"]


def test_single_process_dry_run_writes_the_page(tmp_path):
    # batch 1, 1 layer: the shapes of a rank below, whose forked processes reuse these compiled kernels
    argv = [*TINY, "--model", "llama", "--layers", "1", "--batch", "1", "--variants", "eager,patched"]
    assert e2e.main([*argv, "--out", str(tmp_path)]) == 0
    page = (tmp_path / "e2e.md").read_text()
    assert "## llama" in page and "| patched |" in page and "run-time fallbacks: none" in page
    assert [(r["model"], r["variant"], r["status"]) for r in rows(tmp_path)] == [
        ("llama", "eager", "ok"), ("llama", "patched", "ok")]
    curves = losses(tmp_path)
    assert len(curves[("llama", "patched")]) == 2
    torch.testing.assert_close(curves[("llama", "patched")], curves[("llama", "eager")], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode,model", [("ddp", "llama"), ("fsdp2", "moe")])
def test_two_process_gloo_run_matches_one_process(tmp_path, mode, model):
    argv = [*TINY, "--distributed", mode, "--nproc", "2", "--model", model, "--layers", "1",
            "--variants", "patched", "--timeout", "600", "--out", str(tmp_path)]
    assert e2e.main(argv) == 0
    (row,) = rows(tmp_path)
    assert row["status"] == "ok" and float(row["grad_rel_err"]) < 1e-4
    torch.testing.assert_close(losses(tmp_path)[(model, "patched")], one_process_curve(model, 1),
                               rtol=1e-5, atol=1e-5)
    page = (tmp_path / "e2e.md").read_text()
    assert f"{mode.upper()} x2" in page and "max relative difference" in page


@pytest.mark.parametrize("argv,message", [
    (["--variants", "fast"], "--variants"), (["--model", "gpt"], "--model"), (["--steps", "-1"], "--steps"),
    (["--distributed", "ddp", "--variants", "compile"], "--variants"),
    (["--distributed", "fsdp2", "--nproc", "2", "--batch", "3"], "--batch")])
def test_arguments_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit):
        e2e.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.gpu
def test_one_gpu_short_run(tmp_path):
    argv = ["--seq", "512", "--batch", "2", "--steps", "2", "--variants", "eager,patched", "--out", str(tmp_path)]
    assert e2e.main(argv) == 0
    curves = losses(tmp_path)
    for model in ("llama", "moe"):
        gap = max(abs(a - b) for a, b in zip(curves[(model, "patched")], curves[(model, "eager")]))
        assert gap < 0.05, (model, gap)  # bf16 noise


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_fsdp2_on_two_gpus_patched_gradients_match(tmp_path):
    argv = ["--distributed", "fsdp2", "--nproc", "2", "--seq", "512", "--batch", "2", "--steps", "3",
            "--out", str(tmp_path)]
    assert e2e.main(argv) == 0
    for row in rows(tmp_path):
        assert float(row["grad_rel_err"]) < 3e-2, row  # bf16 against one unpatched process
    curves = losses(tmp_path)
    for model in ("llama", "moe"):
        gap = max(abs(a - b) for a, b in zip(curves[(model, "patched")], curves[(model, "eager")]))
        assert gap < 0.05, (model, gap)
