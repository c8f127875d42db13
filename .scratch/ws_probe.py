"""Device probe: attention forward with Triton's warp specialization (TMA, 64-row blocks, 4 warps)
against the shipped config. Kernel timings, interleaved, median of do_bench medians."""
import math, sys, json, torch, triton.testing
from helion_ops.ops import attention as A
from helion_ops.dsl import Config

def us(fn):
    return float(triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")) * 1e3

res = []
for (b, h, s, d, causal) in [(4, 16, 4096, 128, False), (1, 16, 16384, 128, False), (4, 16, 4096, 128, True)]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    qs = A.LOG2E / math.sqrt(d)
    args = (q, k, v, causal, qs)
    bound = A.attn_fwd.bind(args)
    base = A.config_for("attn_fwd", args, q, k, causal)
    cands = {"shipped": base}
    bd = base.to_dict()
    for bm, bn, st, ws in [(64, 128, 2, True), (64, 64, 3, True), (64, 64, 2, True), (64, 128, 2, False), (64, 128, 3, True)]:
        dd = dict(bd, indexing="tensor_descriptor", num_warps=4, block_sizes=[bm, bn], num_stages=st)
        dd["range_warp_specializes"] = [ws] * len(dd["range_warp_specializes"])
        cands[f"tma{bm}x{bn}s{st}w4{'ws' if ws else ''}"] = bound.normalize(Config(**dd))
    ref = bound.run(base, *args)
    ok = {}
    for name, cfg in cands.items():
        try:
            out = bound.run(cfg, *args)
            err = max((o.float() - r.float()).abs().max().item() for o, r in zip(out, ref)) if isinstance(out, tuple) else (out.float()-ref.float()).abs().max().item()
            ok[name] = cfg
            print(f"  {name}: err {err:.2e}", flush=True)
        except Exception as e:
            print(f"  {name}: FAIL {type(e).__name__}: {str(e)[:200]}", flush=True)
    times = {n: [] for n in ok}
    for rep in range(3):
        for n, cfg in ok.items():
            times[n].append(us(lambda: bound.run(cfg, *args)))
    flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0)
    shape = f"{b}x{h}x{s}x{d}x{causal}"
    for n, t in times.items():
        t = sorted(t)[1]
        print(f"{shape} {n}: {t:.1f} us {flops / t / 1e6:.0f} TFLOP/s ({times['shipped'] and sorted(times['shipped'])[1] / t:.3f}x shipped)", flush=True)
        res.append(dict(shape=shape, cand=n, us=t, tflops=flops / t / 1e6))
import os
json.dump(res, open(os.path.join(os.environ.get("OUT", "/tmp"), "ws_probe.json"), "w"), indent=1)
