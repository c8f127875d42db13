"""End-to-end training step of Hugging Face models, patched by helion_ops.transformers against PyTorch.

``python -m bench.e2e [--model llama,moe] [--steps N] [--variants eager,patched,compile]``

One GPU: for each model, training steps (forward, backward, AdamW) of the same initial weights on
the same batches, once per variant: ``eager`` (transformers as loaded: SDPA attention, its RMSNorm,
its default ``grouped_mm`` experts), ``patched`` (``helion_ops.transformers.apply(model,
attention=True)``: everything we patch), ``patched_no_attn`` (``apply``'s default, attention left on
SDPA: what the norms and experts give alone),
``compile`` (``torch.compile`` of the unpatched model) and, on request, ``patched_compile``. Tokens/s over the
steps after ``--warmup``, peak memory, the first step's time (kernel compiles), the loss of every
step and its largest gap to the eager run. Writes ``results/<GPU>/e2e.md`` and
``results/<GPU>/e2e/{runs,losses}.csv`` (a subdirectory: ``bench.report`` reads the op CSVs beside it).

``--distributed ddp|fsdp2 --nproc 2``: the same training under ``torch.distributed`` (``mp.spawn``,
NCCL on GPU, gloo on CPU) with DDP or FSDP2 ``fully_shard`` (per decoder layer, then the model),
patched and unpatched, the global batch split over the ranks. Writes ``results/<GPU>x<N>/e2e.md``:
tokens/s per GPU, peak memory (largest rank), both loss curves side by side (the loss is the mean
over ranks, i.e. the global batch's). Before training, every rank checks the wrapped model's
gradients (patched) against a single-process unpatched model on the whole global batch.

Models (``--tiny``: 2 layers, hidden 64, head dim 64, for CPU dry runs under the interpreter, fp32):

* ``llama``: LlamaForCausalLM, 8 layers, hidden 2048, 16 heads (8 kv heads), MLP 5632, vocab 32000.
* ``moe``: MixtralForCausalLM, 8 layers, hidden 2048, 16 heads (8 kv heads), 8 experts of 1408, top-2.

Both at seq 4096, bf16 weights and AdamW states, batch 4 (16K tokens a step; a size every variant
fits in 80 GB with room: ``--batch``). The data are arithmetic progressions modulo the vocabulary
(learnable in context), so the loss falls and the curves of two runs can be compared step by step.

``--device cpu`` (with ``--tiny``) runs under Triton's interpreter and writes to a temporary directory
unless ``--out`` is given: a dry run of the harness, its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("eager", "patched", "patched_no_attn", "compile", "patched_compile")
DEFAULT_VARIANTS = ["eager", "patched", "patched_no_attn", "compile"]
MODELS = ("llama", "moe")


# ---- models and data ------------------------------------------------------------------------------

def model_config(name: str, tiny: bool, layers: int | None = None):
    import transformers

    if tiny:
        common = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=1,
                      num_key_value_heads=1, head_dim=64, max_position_embeddings=64, tie_word_embeddings=False)
    else:
        common = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=8, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=128, max_position_embeddings=4096, tie_word_embeddings=False)
    if layers:
        common["num_hidden_layers"] = layers
    if name == "llama":
        return transformers.LlamaConfig(**{"intermediate_size": 5632, **common})
    if name == "moe":
        moe = dict(num_local_experts=4, num_experts_per_tok=2) if tiny else \
            dict(num_local_experts=8, num_experts_per_tok=2, intermediate_size=1408)
        return transformers.MixtralConfig(**{**common, **moe, "sliding_window": None})
    raise ValueError(f"--model: unknown model {name!r}; choose from {MODELS}")


def build(name: str, tiny: bool, device: str, dtype, seed: int = 0, layers: int | None = None):
    """The model with weights from ``seed`` (the same for every variant), in training mode."""
    import torch
    import transformers

    torch.manual_seed(seed)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(model_config(name, tiny, layers), dtype=dtype)
    model.config.use_cache = False
    return model.train()


def batches(n: int, batch: int, seq: int, vocab: int, seed: int = 1) -> list:
    """``n`` batches of arithmetic progressions ``(a + b*i) mod vocab``, random a and b per row."""
    import torch

    g = torch.Generator().manual_seed(seed)
    i = torch.arange(seq)
    out = []
    for _ in range(n):
        a = torch.randint(0, vocab, (batch, 1), generator=g)
        b = torch.randint(1, 17, (batch, 1), generator=g)
        out.append((a + b * i) % vocab)
    return out


def patch(model, variant: str) -> dict:
    """Apply the variant to ``model`` in place; returns what to record (the report's counts)."""
    if variant.startswith("patched"):
        import helion_ops.transformers as hot

        report = hot.apply(model, attention=variant != "patched_no_attn")
        return {"patched": ", ".join(f"{k} {report.count(k)}" for k in ("rms_norm", "attention", "experts")
                                     if report.count(k)),
                "left_alone": len(report.left_alone)}
    return {"patched": "", "left_alone": 0}


def train(model, data: list, steps: int, warmup: int, device: str, compiled: bool = False, lr: float = 3e-4,
          reduce_loss=None) -> dict:
    """``warmup + steps`` AdamW steps over ``data`` (cycled): per-step losses, timing, peak memory.
    ``reduce_loss`` (distributed) turns a rank's loss into the global batch's."""
    import torch

    cuda = device.startswith("cuda")
    # fused AdamW on one GPU; the foreach default under DDP / FSDP2 (sharded DTensor parameters)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=(cuda and reduce_loss is None) or None)
    fwd = torch.compile(model) if compiled else model
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses, t_first, t0 = [], None, None
    start = time.perf_counter()
    for step in range(warmup + steps):
        ids = data[step % len(data)].to(device, non_blocking=True)
        loss = fwd(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach() if reduce_loss is None else reduce_loss(loss.detach()))
        if step == 0 or step == warmup - 1:
            if cuda:
                torch.cuda.synchronize()
            if step == 0:
                t_first = time.perf_counter() - start
            if step == warmup - 1:
                t0 = time.perf_counter()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - (t0 if t0 is not None else start)
    tokens = sum(int(data[s % len(data)].numel()) for s in range(warmup, warmup + steps))
    return {"losses": [float(x) for x in losses], "tokens_per_s": tokens / elapsed if steps else float("nan"),
            "step_ms": elapsed / max(steps, 1) * 1e3, "first_step_s": t_first,
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")}


def _free():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_counting_fallbacks(variant: str, *args, **kwargs) -> dict:
    """``train(*args, **kwargs)``, with the run-time fallbacks of a patched run as "fallbacks" (text)."""
    import helion_ops.transformers as hot

    hot.reset_fallbacks()
    row = train(*args, **kwargs)
    if variant.startswith("patched"):
        row["fallbacks"] = "; ".join(f"{c}: {n} calls ({why})" for (c, why), n in hot.fallbacks().items()) or "none"
    return row


def run_variant(name: str, variant: str, args, dtype) -> dict:
    import torch

    row = {"model": name, "variant": variant, "batch": args.batch, "seq": args.seq, "status": "ok"}
    model = None
    try:
        model = build(name, args.tiny, args.device, dtype, layers=args.layers)
        row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        row.update(patch(model, variant))
        data = batches(4, args.batch, args.seq, model.config.vocab_size)
        row.update(_train_counting_fallbacks(variant, model, data, args.steps, args.warmup, args.device,
                                             compiled=variant.endswith("compile")))
    except torch.cuda.OutOfMemoryError:
        row["status"] = "OOM"
    except Exception as e:  # noqa: BLE001  (one failed variant must not lose the others' figures)
        row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    finally:
        del model
        if variant.endswith("compile"):
            torch._dynamo.reset()  # drop the compiled graphs and their memory before the next run
        _free()
    return row


# ---- distributed ----------------------------------------------------------------------------------

def _grad_check(name: str, args, dtype, mode: str, rank: int, world: int, device: str) -> float:
    """Largest gradient difference, relative to the gradient's max, of the wrapped patched model on
    this rank's shard against a single-process unpatched model on the whole global batch."""
    import torch
    import torch.distributed as dist

    ids = batches(1, args.batch, args.seq, model_config(name, args.tiny).vocab_size, seed=7)[0].to(device)
    ref = build(name, args.tiny, device, dtype, layers=args.layers)
    ref(input_ids=ids, labels=ids).loss.backward()
    model, _ = _wrap(build(name, args.tiny, device, dtype, layers=args.layers), mode, rank, device, patched=True)
    shard = ids.chunk(world)[rank]
    model(input_ids=shard, labels=shard).loss.backward()
    worst = 0.0
    for (pname, p), q in zip(ref.named_parameters(), model.parameters()):
        g = q.grad.full_tensor() if hasattr(q.grad, "full_tensor") else q.grad
        scale = p.grad.abs().max().item() or 1.0
        worst = max(worst, (g.float() - p.grad.float()).abs().max().item() / scale)
    t = torch.tensor([worst], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    del ref, model
    _free()
    return t.item()


def _wrap(model, mode: str, rank: int, device: str, patched: bool):
    """(model patched or not, then wrapped in DDP or sharded with FSDP2; what ``patch`` recorded)."""
    done = patch(model, "patched" if patched else "eager")
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[rank] if device.startswith("cuda") else None), done
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model, done


def _worker(rank: int, world: int, args, port: int, outfile: str) -> None:
    import torch
    import torch.distributed as dist

    cuda = args.device == "cuda"
    device = f"cuda:{rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(1)  # the ranks share the machine's cores
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    dtype = _dtype(args)
    rows = []
    try:
        for name in args.model:
            err = _grad_check(name, args, dtype, args.distributed, rank, world, device)
            for variant in args.variants:
                row = {"model": name, "variant": variant, "mode": args.distributed, "nproc": world,
                       "batch": args.batch, "seq": args.seq, "grad_rel_err": err, "status": "ok"}
                model = build(name, args.tiny, device, dtype, layers=args.layers)
                model, done = _wrap(model, args.distributed, rank, device, patched=variant == "patched")
                row.update(done)
                vocab = model_config(name, args.tiny).vocab_size
                data = [b.chunk(world)[rank] for b in batches(4, args.batch, args.seq, vocab)]

                def mean(t):
                    dist.all_reduce(t)
                    return t / world

                row.update(_train_counting_fallbacks(variant, model, data, args.steps, args.warmup, device,
                                                     reduce_loss=mean))
                peak = torch.tensor([row["peak_gb"] if cuda else 0.0], device=device)
                dist.all_reduce(peak, op=dist.ReduceOp.MAX)
                row["peak_gb"] = peak.item() if cuda else float("nan")
                rows.append(row)
                del model
                _free()
    finally:
        if rank == 0:
            Path(outfile).write_text(json.dumps(rows))
        dist.destroy_process_group()


def run_distributed(args) -> list[dict]:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        # CPU (dry runs): fork, so the ranks share the parent's imports and compiled kernels instead of
        # paying them again; CUDA cannot be forked once initialised.
        method = "fork" if args.device == "cpu" and "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.start_processes(_worker, args=(args.nproc, args, port, out), nprocs=args.nproc, join=False,
                                 start_method=method)
        deadline = time.monotonic() + args.timeout if args.timeout else None
        while not ctx.join(timeout=5):
            if deadline is not None and time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                raise TimeoutError(f"bench.e2e: the {args.nproc} ranks did not finish in --timeout {args.timeout} s")
        return json.loads(Path(out).read_text())


# ---- report ---------------------------------------------------------------------------------------

def _fmt(x, spec: str = ".0f", unit: str = "") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec) + unit


def write(rows: list[dict], out: Path, args, info: dict) -> Path:
    """e2e.md and e2e/{runs,losses}.csv under ``out``; returns the page's path."""
    (out / "e2e").mkdir(parents=True, exist_ok=True)
    dist = bool(args.distributed)
    with open(out / "e2e" / "runs.csv", "w", newline="") as f:
        cols = [c for c in ("model", "variant", "mode", "nproc", "batch", "seq", "status", "tokens_per_s", "step_ms",
                            "first_step_s", "peak_gb", "grad_rel_err", "patched", "left_alone")
                if any(c in r for r in rows)]
        w = csv.DictWriter(f, fieldnames=cols + ["loss_first", "loss_last"], extrasaction="ignore")
        w.writeheader()
        for r in rows:
            curve = r.get("losses") or [None]
            w.writerow({**r, "loss_first": curve[0], "loss_last": curve[-1]})
    with open(out / "e2e" / "losses.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "variant", "step", "loss"])
        for r in rows:
            for i, loss in enumerate(r.get("losses") or []):
                w.writerow([r["model"], r["variant"], i, f"{loss:.6f}"])

    per = f"per GPU ({args.nproc} ranks, {args.distributed})" if dist else ""  # rank 0's tokens / its time
    lines = [f"# End-to-end training step{' — ' + args.distributed.upper() + f' x{args.nproc}' if dist else ''}", "",
             f"GPU: {info['gpu_full']} · torch {info['torch']} · triton {info['triton']} · transformers "
             f"{info['transformers']} · commit {info['commit']} · {info['date']}", "",
             f"Command: `python -m bench.e2e {' '.join(args.argv)}`. Each step: forward, backward and AdamW "
             f"over batch {args.batch} x seq {args.seq} ({args.batch * args.seq} tokens"
             f"{', split over the ranks' if dist else ''}), {_dtype_name(args)} weights; tokens/s over "
             f"{args.steps} steps after {args.warmup} warmup steps. Data: arithmetic progressions modulo the "
             f"vocabulary (the loss falls); every variant starts from the same weights.", ""]
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        base = {r["variant"]: r for r in mine if r["status"] == "ok"}
        cfg = model_config(name, args.tiny, args.layers)
        desc = (f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, {cfg.num_attention_heads} heads "
                f"({cfg.num_key_value_heads} kv) of {cfg.head_dim}, vocab {cfg.vocab_size}"
                + (f", {cfg.num_local_experts} experts of {cfg.intermediate_size} (top-{cfg.num_experts_per_tok})"
                   if hasattr(cfg, "num_local_experts") else f", MLP {cfg.intermediate_size}"))
        params = next((r["params_m"] for r in mine if r.get("params_m")), None)
        head = "| variant | tokens/s" + (f" {per}" if per else "") + " | vs eager | vs compile | peak GB " \
               "| first step s | loss first → last | max abs Δloss vs eager | status |"
        lines += [f"## {name}", "", f"{type(cfg).__name__.replace('Config', '')}: {desc}"
                  + (f"; {params:.1f}M parameters." if params else "."), "", head, "|---" * 9 + "|"]
        for r in mine:
            ok = r["status"] == "ok"
            tps = r.get("tokens_per_s") if ok else None
            rel = {b: (r["tokens_per_s"] / base[b]["tokens_per_s"]) if ok and b in base else None
                   for b in ("eager", "compile")}
            gap = (max(abs(a - b) for a, b in zip(r["losses"], base["eager"]["losses"]))
                   if ok and "eager" in base else None)
            loss = f"{r['losses'][0]:.3f} → {r['losses'][-1]:.3f}" if ok and r.get("losses") else "—"
            lines.append(f"| {r['variant']} | {_fmt(tps)} | {_fmt(rel['eager'], '.2f', 'x')} "
                         f"| {_fmt(rel['compile'], '.2f', 'x')} "
                         f"| {_fmt(r.get('peak_gb'), '.1f')} | {_fmt(r.get('first_step_s'), '.1f')} | {loss} "
                         f"| {_fmt(gap, '.4f')} | {r['status']} |")
        for r in mine:
            if r.get("patched"):
                lines += ["", f"{r['variant']}: {r['patched']} modules patched ({r['left_alone']} left alone); "
                          f"run-time fallbacks: {r.get('fallbacks', '—')}."]
        if dist and mine and "grad_rel_err" in mine[0]:
            lines += [f"Gradients of the {args.distributed} patched model on {args.nproc} ranks against one "
                      f"unpatched process on the whole batch: max relative difference {mine[0]['grad_rel_err']:.2e}."]
        if dist:
            curves = {r["variant"]: r["losses"] for r in mine if r.get("losses")}
            if len(curves) == 2:
                n = len(curves["eager"])
                lines += ["", "| step | loss eager | loss patched |", "|---|---|---|"]
                for i in sorted(set(list(range(0, n, max(1, n // 20))) + [n - 1])):
                    lines.append(f"| {i} | {curves['eager'][i]:.4f} | {curves['patched'][i]:.4f} |")
        lines.append("")
    page = out / "e2e.md"
    page.write_text("\n".join(lines) + "\n")
    return page


# ---- CLI ------------------------------------------------------------------------------------------

def _dtype(args):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[_dtype_name(args)]


def _dtype_name(args) -> str:
    return args.dtype or ("fp32" if args.device == "cpu" else "bf16")


def _list(choices: tuple):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {bad or text!r}; choose from {', '.join(choices)}")
        return items
    return parse


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=_list(MODELS), default=list(MODELS), help="comma list of llama, moe")
    ap.add_argument("--variants", type=_list(VARIANTS), default=None,
                    help="comma list of " + ", ".join(VARIANTS) + " (default " + ",".join(DEFAULT_VARIANTS) + "; "
                    "distributed: eager,patched, the only two it runs)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20; distributed 200; tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 3; tiny 1)")
    ap.add_argument("--batch", type=int, default=None, help="global batch (default 4; tiny 2)")
    ap.add_argument("--seq", type=int, default=None, help="sequence length (default 4096; tiny 8)")
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default 8; tiny 2)")
    ap.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None, help="default bf16 (cpu: fp32)")
    ap.add_argument("--distributed", choices=("ddp", "fsdp2"), default=None)
    ap.add_argument("--nproc", type=int, default=2, help="processes (GPUs) with --distributed")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models for a CPU dry run")
    ap.add_argument("--timeout", type=float, default=None, help="distributed: kill the ranks after this many s")
    ap.add_argument("--out", default=None, help="directory of e2e.md (default results/<GPU>[x<N>]; cpu: a temp dir)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    defaults = (("steps", 2, 20, 200), ("warmup", 1, 3, 3), ("batch", 2, 4, 4), ("seq", 8, 4096, 4096))
    for name, small, full, dist_full in defaults:
        if getattr(args, name) is None:
            setattr(args, name, small if args.tiny else (dist_full if args.distributed else full))
        if getattr(args, name) < (0 if name == "steps" else 1):
            ap.error(f"argument --{name}: must be positive, got {getattr(args, name)}")
    if args.layers is not None and args.layers < 1:
        ap.error(f"argument --layers: must be at least 1, got {args.layers}")
    if args.variants is None:
        args.variants = ["eager", "patched"] if args.distributed else list(DEFAULT_VARIANTS)
    elif args.distributed and not set(args.variants) <= {"eager", "patched"}:
        ap.error("argument --variants: with --distributed only eager and patched run")
    if args.warmup < 1:
        ap.error("argument --warmup: must be at least 1")
    if args.distributed and args.nproc < 1:
        ap.error(f"argument --nproc: must be at least 1, got {args.nproc}")
    if args.distributed and args.batch % args.nproc:
        ap.error(f"argument --batch: {args.batch} must be a multiple of --nproc {args.nproc}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (spawned ranks inherit it)
    import torch
    import transformers

    from bench import gpu_info
    import helion_ops.transformers  # noqa: F401  (registers "helion_ops" before any model is built)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench.e2e: no CUDA GPU; for a dry run use --device cpu --tiny", file=sys.stderr)
        return 2
    if args.distributed and args.device == "cuda" and torch.cuda.device_count() < args.nproc:
        print(f"bench.e2e: --nproc {args.nproc} needs {args.nproc} GPUs, found {torch.cuda.device_count()}",
              file=sys.stderr)
        return 2
    info = {**gpu_info.info(), "transformers": transformers.__version__}
    gpu = info["gpu"] + (f"x{args.nproc}" if args.distributed else "")
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="e2e_")) if args.device == "cpu"
                                           else REPO / "results" / gpu)
    if args.distributed:
        rows = run_distributed(args)
    else:
        rows = []
        for name in args.model:
            for variant in args.variants:
                rows.append(run_variant(name, variant, args, _dtype(args)))
                write(rows, out, args, info)  # after every run: a killed session keeps what it measured
                r, curve = rows[-1], rows[-1].get("losses") or []
                print(f"{name:6s} {variant:16s} {r['status']:6s} tokens/s {_fmt(r.get('tokens_per_s'))} "
                      f"peak {_fmt(r.get('peak_gb'), '.1f')} GB first step {_fmt(r.get('first_step_s'), '.1f')} s "
                      f"loss {' -> '.join(f'{x:.3f}' for x in curve[:1] + curve[-1:])}", flush=True)
    page = write(rows, out, args, info)
    print(page.read_text())
    print(f"wrote {page}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
