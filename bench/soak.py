"""Soak test: every catalog op over many random shapes, checked against its fp32/fp64 reference.

    python -m bench.soak --shapes 1000 --out results/H100/soak.md [--seconds-budget 600] [--workers 12]

Shapes are drawn per op around the op's ``SHAPES`` distribution (half near a benchmark shape, half
log-uniform over its range, sizes nudged off powers of two), capped so most are small to medium: on a GPU
the whole run is dominated by Triton compiles (every shape is a new static-shape specialisation), so the
cases are spread over ``--workers`` processes. Each shape runs ours forward, and backward for ops with
``GRAD_INPUTS``, in one dtype (alternating bf16 / fp16 over the shapes; ``--both-dtypes`` runs both),
against ``reference`` with the op's ``TOLERANCE`` (the bench harness's check: ``bench.case``). Kernels
run with ``HELION_OPS_STRICT=1``: a kernel that fails to compile or launch is a failure, not an eager
fallback. The markdown summary (GPU, torch/triton versions, date, commit; per op: shapes tried, failures,
max error per mode and dtype) goes to ``--out``; the exit status is 1 when anything failed.

Without a GPU it runs in Triton's interpreter on tiny shapes in fp32/fp16/bf16 (``--shapes 18`` is ~3 per op).
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
import zlib
from pathlib import Path

OPS = ("softmax", "layer_norm", "rms_norm", "matmul", "grouped_gemm", "attention")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", type=int, default=1000, help="random shapes in all (split evenly over the ops)")
    p.add_argument("--out", default=None, help="markdown summary path (default: print only)")
    p.add_argument("--seconds-budget", type=float, default=None, help="stop starting new cases after this")
    p.add_argument("--ops", default=",".join(OPS), help="comma list of ops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (GPU default: min(12, cores - 2))")
    p.add_argument("--both-dtypes", action="store_true", help="every shape in both dtypes")
    p.add_argument("--cpu", action="store_true", help="force the interpreter on CPU")
    return p.parse_args(argv)


# ---- shape distributions -------------------------------------------------------------------------

def _logu(rng: random.Random, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))))


def _nudge(rng: random.Random, v: int, lo: int = 1) -> int:
    """v, or a neighbour (off-by-one around powers of two, primes...)."""
    return max(lo, v + rng.choice([0, 0, 1, -1, 3, -3, 17]))


def draw_shape(op: str, mod, rng: random.Random, gpu: bool) -> tuple:
    """One random shape for ``op`` near its SHAPES distribution; capped (GPU: small-to-medium; CPU: tiny)."""
    near = rng.random() < 0.5
    if op in ("softmax", "layer_norm", "rms_norm"):
        n_max = max(s[1] for s in mod.SHAPES) if gpu else 300
        cap = 2**24 if gpu else 4096
        n = _nudge(rng, rng.choice(mod.SHAPES)[1]) if near and gpu else _logu(rng, 1, n_max)
        m = _logu(rng, 1, max(1, min(16384 if gpu else 12, cap // n)))
        return (m, n)
    if op == "matmul":
        hi, cap = (8192, 2**33) if gpu else (48, 2**14)
        if near and gpu:
            m, n, k = rng.choice(mod.SHAPES)[:3]
            m, n, k = (_nudge(rng, max(1, d // rng.choice([1, 2, 4, 8]))) for d in (m, n, k))
        else:
            m, n, k = (_logu(rng, 1, hi) for _ in range(3))
        while m * n * k > cap:
            i = max(range(3), key=lambda j: (m, n, k)[j])
            m, n, k = [(d // 2 if j == i else d) for j, d in enumerate((m, n, k))]
        return (max(m, 1), max(n, 1), max(k, 1))
    if op == "grouped_gemm":
        hi, cap = (8192, 2**33) if gpu else (40, 2**14)
        g = _logu(rng, 1, 16 if gpu else 4)
        if near and gpu:
            g0, m, n, k = rng.choice(mod.SHAPES)[:4]
            g = min(g0, 16)
            m, n, k = (_nudge(rng, max(1, d // rng.choice([2, 4, 8, 16]))) for d in (m, n, k))
        else:
            m, n, k = _logu(rng, 1, hi * 2), _logu(rng, 1, hi), _logu(rng, 1, hi)
        while m * n * k > cap:
            if m >= max(n, k):
                m //= 2
            elif n >= k:
                n //= 2
            else:
                k //= 2
        return (g, max(m, 1), max(n, 1), max(k, 1))
    if op == "attention":
        d = rng.choice([64, 128, 128, 256]) if gpu else 64
        s_hi = 4096 if gpu else 40
        s = _nudge(rng, rng.choice([128, 512, 1024, 2048])) if near and gpu else _logu(rng, 1, s_hi)
        s_k = s if rng.random() < 0.6 else _logu(rng, 1, s_hi)
        h_kv = rng.choice([1, 2, 4, 8]) if gpu else rng.choice([1, 2])
        h = h_kv * rng.choice([1, 1, 2, 4] if gpu else [1, 2])
        b = _logu(rng, 1, 8 if gpu else 2)
        while b * h * s * s_k * d > (2**33 if gpu else 2**17):
            if b > 1:
                b //= 2
            elif s_k >= s and s_k > 1:
                s_k //= 2
            else:
                s = max(1, s // 2)
        # with one key (or a causal single query) the exact dQ/dK are 0 and a relative error is void
        causal = rng.random() < 0.5
        s_k = max(s_k, 2)
        s = max(s, 2) if causal else s
        return (b, h, s, d, causal, h_kv, s_k)
    raise KeyError(op)


def plan(ops: list[str], total: int, seed: int, gpu: bool, dtypes: list, both: bool) -> list[tuple]:
    """[(op, shape, dtype)] in an interleaved order (so a time budget cuts all ops evenly)."""
    from bench import catalog
    rng = random.Random(seed)
    per = [total // len(ops) + (1 if i < total % len(ops) else 0) for i in range(len(ops))]
    lists = []
    for op, n in zip(ops, per):
        mod = catalog.load(op)
        cases = []
        for i in range(n):
            shape = draw_shape(op, mod, rng, gpu)
            for dt in (dtypes if both else [dtypes[i % len(dtypes)]]):
                cases.append((op, shape, dt))
        lists.append(cases)
    out = []
    for i in range(max(map(len, lists), default=0)):
        out += [lst[i] for lst in lists if i < len(lst)]
    return out


# ---- running -----------------------------------------------------------------------------------

def _setup_env(cpu: bool) -> None:
    os.environ["HELION_OPS_STRICT"] = "1"
    os.environ.setdefault("HELION_AUTOTUNE_PROGRESS", "0")
    if cpu:
        os.environ["TRITON_INTERPRET"] = "1"


def run_case(op: str, shape: tuple, dtype_name: str, device: str) -> list[dict]:
    """Forward (and backward) of one case; one result dict per mode."""
    import torch
    from bench import case, catalog, metrics
    mod = catalog.load(op)
    dtype = getattr(torch, dtype_name)
    tol = mod.TOLERANCE[dtype]
    rows = []
    modes = ["fwd"] + (["bwd"] if mod.GRAD_INPUTS else [])
    # crc32, not hash(): str hashing is salted per process, and a soak failure must replay.
    torch.manual_seed(zlib.crc32(repr((op, shape, dtype_name)).encode()))
    try:
        inputs = mod.make_inputs(shape, dtype, device)
    except Exception as e:
        return [dict(op=op, shape=shape, dtype=dtype_name, mode=m, err=math.nan, ok=False,
                     error=f"make_inputs: {type(e).__name__}: {e}") for m in modes]
    for mode in modes:
        r = dict(op=op, shape=shape, dtype=dtype_name, mode=mode, err=math.nan, ok=False, error="")
        try:
            expected, gouts = case.reference(mod, inputs, mode, dtype)
            idx = case.grad_indices(mod, inputs)
            if mode == "bwd" and not idx:
                continue
            if mode == "fwd":
                with torch.no_grad():
                    out = mod.impl(*inputs)
            else:
                out, _, _ = case.prepare(mod.impl, inputs, mode, idx, gouts)
            if device == "cuda":
                torch.cuda.synchronize()
            r["err"] = metrics.rel_error(out, expected)
            r["ok"] = metrics.passes(r["err"], tol)
            if not r["ok"]:
                # Ill-conditioned case? See metrics.ill_conditioned: then it passes, and is noted.
                if mode == "fwd":
                    with torch.no_grad():
                        e_out = mod.eager(*inputs)
                else:
                    e_out, _, _ = case.prepare(mod.eager, inputs, mode, idx, gouts)
                e_err = metrics.rel_error(e_out, expected)
                r["eager_err"] = e_err
                if metrics.ill_conditioned(r["err"], tol, e_err):
                    r["ok"] = True
                    r["note"] = f"ill-conditioned: error {r['err']:.3g} > tolerance {tol:g}, eager {e_err:.3g}"
                else:
                    r["error"] = f"error {r['err']:.3g} > tolerance {tol:g} (eager {e_err:.3g})"
        except Exception as e:
            lines = str(e).strip().splitlines()
            r["error"] = f"{type(e).__name__}: {lines[0][:300] if lines else ''}"
        rows.append(r)
        expected = gouts = out = None
    return rows


def _worker(args) -> list[dict]:
    cases, device, cpu, deadline = args
    _setup_env(cpu)
    rows = []
    for op, shape, dt in cases:
        if deadline is not None and time.time() > deadline:
            break
        rows += run_case(op, shape, dt, device)
    return rows


def run(cases: list[tuple], device: str, cpu: bool, workers: int, deadline, log=print) -> list[dict]:
    if workers <= 1:
        rows = []
        for i, (op, shape, dt) in enumerate(cases):
            if deadline is not None and time.time() > deadline:
                log(f"time budget reached after {i} of {len(cases)} cases")
                break
            rows += run_case(op, shape, dt, device)
            for r in rows[-2:]:
                if not r["ok"] and r["shape"] == shape and r["op"] == op:
                    log(f"  FAIL {op} {shape} {dt} {r['mode']}: {r['error']}")
        return rows
    import multiprocessing as mp
    chunks = [cases[i::workers] for i in range(workers)]
    ctx = mp.get_context("spawn")
    rows: list[dict] = []
    with ctx.Pool(workers) as pool:
        for part in pool.imap_unordered(_worker, [(c, device, cpu, deadline) for c in chunks if c]):
            rows += part
            log(f"  worker done: {len(part)} results, {sum(not r['ok'] for r in part)} failures")
    return rows


# ---- report ------------------------------------------------------------------------------------

def summarize(rows: list[dict], cases: list[tuple], env: dict, args: argparse.Namespace, seconds: float,
              dtypes: list) -> str:
    from bench import catalog
    lines = [f"# Soak test: {env['gpu']}", "",
             f"- GPU: {env['gpu']}", f"- torch {env['torch']}, triton {env['triton']}",
             f"- date: {env['date']}, commit: {env['commit']}",
             f"- command: `python -m bench.soak {' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`".rstrip(),
             f"- seed {args.seed}; {len(cases)} cases planned, "
             f"{len({(r['op'], r['shape'], r['dtype']) for r in rows})} run, {seconds:.0f} s "
             f"({args.workers_used} worker{'s' if args.workers_used != 1 else ''})",
             f"- dtypes: {', '.join(dtypes)} ({'each shape in every dtype' if args.both_dtypes else 'alternating over shapes'});"
             f" HELION_OPS_STRICT=1 (an eager fallback would count as a failure)",
             "- check: max|out - ref| / max|ref| against the op's TOLERANCE, ref = the op's fp32/fp64 "
             "`reference` (backward: input gradients for one random output gradient)", ""]
    fails = [r for r in rows if not r["ok"]]
    lines += [f"**Shapes tried: {len({(r['op'], r['shape']) for r in rows})}, cases: "
              f"{len({(r['op'], r['shape'], r['dtype']) for r in rows})}, checks: {len(rows)}, "
              f"failures: {len(fails)}**", ""]
    hdr = ["op", "shapes", "checks", "failures"]
    cols = [(m, d) for d in dtypes for m in ("fwd", "bwd")]
    hdr += [f"max err {m} {d}" for m, d in cols] + ["tolerance"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    import torch
    for op in args.ops_list:
        rs = [r for r in rows if r["op"] == op]
        if not rs:
            continue
        mod = catalog.load(op)
        cells = [op, str(len({r["shape"] for r in rs})), str(len(rs)), str(sum(not r["ok"] for r in rs))]
        for m, d in cols:
            errs = [r["err"] for r in rs if r["mode"] == m and r["dtype"] == d and not math.isnan(r["err"])]
            cells.append(f"{max(errs):.2e}" if errs else "—")
        cells.append(", ".join(f"{d} {mod.TOLERANCE[getattr(torch, d)]:g}" for d in dtypes))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [r for r in rows if r.get("note")]
    if notes:
        from bench import metrics
        lines += ["", f"Ill-conditioned cases (over tolerance, but within {metrics.ILL_FACTOR:g}x of PyTorch eager's error in the same "
                      f"dtype; not counted as failures): {len(notes)}", ""]
        lines += [f"- {r['op']} {r['shape']} {r['dtype']} {r['mode']}: {r['note']}" for r in notes[:30]]
    if fails:
        lines += ["", "## Failures", "", "| op | shape | dtype | mode | error |", "|---|---|---|---|---|"]
        for r in fails[:100]:
            lines.append(f"| {r['op']} | {r['shape']} | {r['dtype']} | {r['mode']} | {r['error'].replace('|', '/')} |")
        if len(fails) > 100:
            lines.append(f"| ... | {len(fails) - 100} more | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    gpu = torch.cuda.is_available() and not args.cpu and os.environ.get("TRITON_INTERPRET") != "1"
    _setup_env(not gpu)
    from bench import gpu_info
    device = "cuda" if gpu else "cpu"
    dtypes = ["bfloat16", "float16"] if gpu else ["float32", "float16", "bfloat16"]
    args.ops_list = [o for o in args.ops.split(",") if o]
    cases = plan(args.ops_list, args.shapes, args.seed, gpu, dtypes, args.both_dtypes)
    workers = args.workers if args.workers is not None else (max(1, min(12, (os.cpu_count() or 4) - 2)) if gpu else 1)
    args.workers_used = workers
    env = {"gpu": gpu_info.gpu_name() if gpu else "cpu (Triton interpreter)", **gpu_info.versions(),
           "date": gpu_info.utc_date(), "commit": gpu_info.git_commit()}
    print(f"soak: {len(cases)} cases ({args.shapes} shapes) on {env['gpu']}, {workers} worker(s)", flush=True)
    t0 = time.time()
    deadline = t0 + args.seconds_budget if args.seconds_budget else None
    rows = run(cases, device, not gpu, workers, deadline)
    secs = time.time() - t0
    md = summarize(rows, cases, env, args, secs, dtypes)
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(md)
        print(f"wrote {args.out}")
    return 1 if any(not r["ok"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
