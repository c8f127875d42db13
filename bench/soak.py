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

Special values (``--special-every K``, default 3: every K-th case of softmax, layer_norm, rms_norm and
attention): the inputs get rows of special kinds (a masked prefix of -inf, all -inf, -inf runs, NaN,
+inf, huge and tiny magnitudes; the norms: NaN, huge, tiny) or, for attention, keys whose fp32 scores
overflow to -inf (as a prefix, all of them, runs, at random; bf16/fp32 only, fp16 cannot hold them).
Expected: NaN exactly where the reference has NaN, the same infinities, finite values within the
TOLERANCE; attention's reference is torch's SDPA semantics (a query with no finite score gives 0).
Backward is checked unless the inputs hold NaN. ``--special-every 0`` turns them off.

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
    p.add_argument("--special-every", type=int, default=3,
                   help="every K-th case of softmax/norms/attention uses special values (0: none)")
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


def plan(ops: list[str], total: int, seed: int, gpu: bool, dtypes: list, both: bool,
         special_every: int = 0) -> list[tuple]:
    """[(op, shape, dtype, special)] in an interleaved order (so a time budget cuts all ops evenly)."""
    from bench import catalog
    rng = random.Random(seed)
    per = [total // len(ops) + (1 if i < total % len(ops) else 0) for i in range(len(ops))]
    lists = []
    for op, n in zip(ops, per):
        mod = catalog.load(op)
        cases = []
        for i in range(n):
            shape = draw_shape(op, mod, rng, gpu)
            special = bool(special_every) and op in SPECIAL_OPS and i % special_every == special_every - 1
            for dt in (dtypes if both else [dtypes[i % len(dtypes)]]):
                cases.append((op, shape, dt, special and not (op == "attention" and dt == "float16")))
        lists.append(cases)
    out = []
    for i in range(max(map(len, lists), default=0)):
        out += [lst[i] for lst in lists if i < len(lst)]
    return out


# ---- special values ------------------------------------------------------------------------------

SPECIAL_OPS = ("softmax", "layer_norm", "rms_norm", "attention")
ROW_KINDS = ("prefix", "all_neg_inf", "neg_inf_runs", "nan", "pos_inf", "huge", "tiny", "mixed", "randn")
NORM_KINDS = ("nan", "huge", "tiny", "mixed", "randn")  # norms of +-inf rows: NaN or 0 by formula choice
KEY_KINDS = ("prefix", "all", "runs", "random")


def special_rows(x, kinds, gen):
    """x (2-D) with row i made of kind ``kinds[i % len(kinds)]``; values from ``gen`` (CPU), then x's device."""
    import torch
    m, n = x.shape
    r = torch.randn(m, n, generator=gen, dtype=torch.float64)
    big, small = (3e4, 1e-3) if x.dtype == torch.float16 else (1e15, 1e-15)  # squares stay finite in fp32
    start = int(torch.randint(0, len(kinds), (), generator=gen))
    for i in range(m):
        kind, j = kinds[(start + i) % len(kinds)], int(torch.randint(0, n, (), generator=gen))
        if kind == "prefix":
            r[i, :j + 1] = -math.inf
        elif kind == "all_neg_inf":
            r[i] = -math.inf
        elif kind == "neg_inf_runs":
            r[i, torch.rand(n, generator=gen) < 0.3] = -math.inf
            r[i, j:j + max(1, n // 4)] = -math.inf
        elif kind == "nan":
            r[i, j] = math.nan
        elif kind == "pos_inf":
            r[i, j] = math.inf
        elif kind == "huge":
            r[i] *= big
        elif kind == "tiny":
            r[i] *= small
        elif kind == "mixed":
            r[i, torch.rand(n, generator=gen) < 0.5] *= big
    return r.to(device=x.device, dtype=x.dtype)


def special_inputs(op: str, inputs: tuple, gen) -> tuple[tuple, bool]:
    """(inputs with special values, whether they hold NaN)."""
    import torch
    if op in ("softmax", "layer_norm", "rms_norm"):
        x = special_rows(inputs[0], ROW_KINDS if op == "softmax" else NORM_KINDS, gen)
        return (x, *inputs[1:]), bool(x.isnan().any())
    q, k, v, causal = inputs  # attention: q ~ 1e20, keys of a kind score -inf (the fp32 dot overflows)
    s_k = k.shape[2]
    neg = torch.zeros(s_k, dtype=torch.bool)
    kind, j = KEY_KINDS[int(torch.randint(0, len(KEY_KINDS), (), generator=gen))], int(torch.randint(0, s_k, (), generator=gen))
    if kind == "prefix":
        neg[:j + 1] = True
    elif kind == "all":
        neg[:] = True
    elif kind == "runs":
        neg[j:j + 17] = True
        neg[torch.rand(s_k, generator=gen) < 0.2] = True
    else:
        neg[torch.rand(s_k, generator=gen) < 0.5] = True
    q = (1e20 * (1 + torch.rand(q.shape, generator=gen))).to(q.device, q.dtype)
    kk = 1e-20 * torch.randn(k.shape, generator=gen)  # the other scores of order 1..10
    kk[:, :, neg] = -1e20 * (1 + torch.rand(kk[:, :, neg].shape, generator=gen))
    return (q, kk.to(k.device, k.dtype), v, causal), False


def attention_reference(q, k, v, causal):
    """fp32 attention as torch's SDPA defines it: the same fp32 score overflow as the kernels, and 0 for a
    query whose every score is -inf."""
    import torch
    group = q.shape[1] // k.shape[1]
    qf, kf, vf = q.float(), k.float(), v.float()
    if group > 1:
        kf, vf = kf.repeat_interleave(group, 1), vf.repeat_interleave(group, 1)
    s = torch.matmul(qf, kf.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, -math.inf)
    empty = (s == -math.inf).all(-1, keepdim=True)  # softmax there would be NaN, and so its gradient
    p = torch.softmax(s.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
    return torch.matmul(p, vf)


def attention_grad_floors(inputs, gouts) -> list[float]:
    """Per gradient (dq, dk, dv), the size of the terms that cancel in it: dS = P * (dP - delta) subtracts
    two sums of |dO . V| size (delta from the stored, rounded output), times |K| (dQ) or |Q| (dK) and the
    scale; dV has none. With |q| ~ 1e20 that rounding, not a bug, dominates dK (tests/ops/test_attention.py
    bounds its gradients the same way)."""
    q, k, v = (t.float() for t in inputs[:3])
    group = q.shape[1] // k.shape[1]
    vv = v.abs().repeat_interleave(group, 1) if group > 1 else v.abs()
    dp = (gouts[0].float().abs() @ vv.transpose(-1, -2)).max().item()
    scale = 1.0 / math.sqrt(q.shape[-1])
    return [dp * k.abs().max().item() * scale, dp * q.abs().max().item() * scale, 0.0]


def special_error(out, ref, floors=None) -> float:
    """max |out - ref| / max(max |finite ref|, floor) over the finite entries (per tensor, ``floors``
    optional); inf when NaN or inf positions differ."""
    import torch
    from bench import metrics
    worst = 0.0
    refs = metrics.flatten(ref)
    for o, r, floor in zip(metrics.flatten(out), refs, floors or [0.0] * len(refs)):
        o, r = o.detach().double(), r.detach().double().to(o.device)
        if o.shape != r.shape or not torch.equal(o.isnan(), r.isnan()):
            return math.inf
        inf = r.isinf()
        if not torch.equal(o[inf], r[inf]) or o[~inf & ~r.isnan()].isinf().any():
            return math.inf
        fin = torch.isfinite(r)
        if fin.any():
            amax = max(r[fin].abs().max().item(), floor)
            worst = max(worst, (o[fin] - r[fin]).abs().max().item() / (amax if amax > 1e-6 else 1.0))
    return worst


# ---- running -----------------------------------------------------------------------------------

def _setup_env(cpu: bool) -> None:
    os.environ["HELION_OPS_STRICT"] = "1"
    os.environ.setdefault("HELION_AUTOTUNE_PROGRESS", "0")
    if cpu:
        os.environ["TRITON_INTERPRET"] = "1"


def run_case(op: str, shape: tuple, dtype_name: str, device: str, special: bool = False) -> list[dict]:
    """Forward (and backward) of one case; one result dict per mode. ``special``: special-value inputs
    (see ``special_inputs``), checked with ``special_error``."""
    import types

    import torch
    from bench import case, catalog, metrics
    mod = catalog.load(op)
    dtype = getattr(torch, dtype_name)
    tol = mod.TOLERANCE[dtype]
    rows = []
    modes = ["fwd"] + (["bwd"] if mod.GRAD_INPUTS else [])
    # crc32, not hash(): str hashing is salted per process, and a soak failure must replay.
    seed = zlib.crc32(repr((op, shape, dtype_name) + (("special",) if special else ())).encode())
    torch.manual_seed(seed)
    try:
        inputs = mod.make_inputs(shape, dtype, device)
        if special:
            inputs, has_nan = special_inputs(op, inputs, torch.Generator().manual_seed(seed))
            if has_nan:
                modes = ["fwd"]  # which gradient entries a NaN poisons is the formula's choice
    except Exception as e:
        return [dict(op=op, shape=shape, dtype=dtype_name, mode=m, err=math.nan, ok=False, special=special,
                     error=f"make_inputs: {type(e).__name__}: {e}") for m in modes]
    ref_mod = types.SimpleNamespace(reference=attention_reference, GRAD_INPUTS=mod.GRAD_INPUTS) \
        if special and op == "attention" else mod
    for mode in modes:
        r = dict(op=op, shape=shape, dtype=dtype_name, mode=mode, err=math.nan, ok=False, error="",
                 special=special)
        try:
            expected, gouts = case.reference(ref_mod, inputs, mode, dtype)
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
            if special:
                floors = attention_grad_floors(inputs, gouts) if op == "attention" and mode == "bwd" else None
                r["err"] = special_error(out, expected, floors)
            else:
                r["err"] = metrics.rel_error(out, expected)
            r["ok"] = metrics.passes(r["err"], tol)
            if not r["ok"] and special:
                r["error"] = f"special values: error {r['err']:.3g} > tolerance {tol:g} (or NaN/inf placement differs)"
            elif not r["ok"]:
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
    for op, shape, dt, special in cases:
        if deadline is not None and time.time() > deadline:
            break
        rows += run_case(op, shape, dt, device, special)
    return rows


def run(cases: list[tuple], device: str, cpu: bool, workers: int, deadline, log=print) -> list[dict]:
    if workers <= 1:
        rows = []
        for i, (op, shape, dt, special) in enumerate(cases):
            if deadline is not None and time.time() > deadline:
                log(f"time budget reached after {i} of {len(cases)} cases")
                break
            rows += run_case(op, shape, dt, device, special)
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
             "`reference` (backward: input gradients for one random output gradient)"]
    sp = [r for r in rows if r.get("special")]
    lines += [f"- special values (1 in {args.special_every} cases of {', '.join(SPECIAL_OPS)}: -inf prefixes, "
              f"runs and rows, NaN, +inf, huge and tiny magnitudes; attention: keys scoring -inf): {len(sp)} checks, "
              f"{sum(not r['ok'] for r in sp)} failures; NaN and inf must sit where the reference has them"
              if args.special_every else "- special values: off", ""]
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
            mode = r["mode"] + (" (special values)" if r.get("special") else "")
            lines.append(f"| {r['op']} | {r['shape']} | {r['dtype']} | {mode} | {r['error'].replace('|', '/')} |")
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
    cases = plan(args.ops_list, args.shapes, args.seed, gpu, dtypes, args.both_dtypes, args.special_every)
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
