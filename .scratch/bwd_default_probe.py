"""Device probe: norm backward defaults for short rows (untabled shapes): the current default against
more rows per step and/or a pipelined row loop. Kernel timings, three interleaved rounds, median."""
import importlib, json, os, torch
from bench.tune import record
from bench.sweep import bench_us
from helion_ops.dsl import Config
from helion_ops import _common as C

res = []
for op in ("layer_norm", "rms_norm"):
    mod = importlib.import_module(f"helion_ops.ops.{op}")
    for shape in [(8192, 1000), (65536, 1000), (16384, 768), (16384, 2048), (16384, 512)]:
        kname, _, bound, cur, args = [r for r in record(mod, shape, torch.bfloat16, "bwd") if r[0] == f"{op}_bwd"][0]
        dflt = bound.normalize(C.clamp_blocks(bound, C.norm_bwd_config(*shape)))
        d = dflt.to_dict()
        rows, sub, cols = d["block_sizes"]
        p = C.next_pow2(shape[1])
        cands = {"served": cur, "default": dflt}
        for s2, st in [(sub, 3), (min(rows, 8192 // p), 0), (min(rows, 8192 // p), 3)]:
            cands[f"sub{s2}_st{st}"] = bound.normalize(Config(**dict(d, block_sizes=[rows, s2, cols], range_num_stages=[st])))
        for c in cands.values():
            bound.run(c, *args)
        t = {n: [] for n in cands}
        for _ in range(3):
            for n, c in cands.items():
                t[n].append(bench_us(lambda: bound.run(c, *args)))
        med = {n: sorted(v)[1] for n, v in t.items()}
        print(op, shape, d["block_sizes"], d["num_warps"], " ".join(f"{n} {v:.1f}" for n, v in med.items()), flush=True)
        res.append(dict(op=op, shape=shape, default=d, us=med))
json.dump(res, open(os.path.join(os.environ.get("OUT", "/tmp"), "bwd_default_probe.json"), "w"), indent=1)
