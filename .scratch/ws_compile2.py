import math, sys, itertools, torch, re
from helion_ops.ops import attention as A
from helion_ops.dsl import Config
from helion_ops.dsl.codegen_kernel import compile_specs_for_target
d=128
q = torch.empty(2, 4, 4096, d, dtype=torch.bfloat16)
causal = len(sys.argv) > 1
qs = A.LOG2E / math.sqrt(d)
args=(q, q, q, causal, qs)
bound = A.attn_fwd.bind(args)
base = A.config_for("attn_fwd", args, q, q, causal).to_dict()
for bm, bn, st, w in [(64,128,2,4),(64,64,3,4),(64,64,2,4),(128,64,2,4),(128,128,2,4),(128,128,1,4)]:
    dd = dict(base, indexing="tensor_descriptor", num_warps=w, block_sizes=[bm,bn], num_stages=st)
    dd["range_warp_specializes"] = [True]*len(dd["range_warp_specializes"])
    try:
        cfg = bound.normalize(Config(**dd))
        specs = bound.compile_specs(cfg)
        kb = compile_specs_for_target(specs, ("cuda", 90, 32))[0]
        print(bm, bn, st, w, "OK ws=", "ttg.warp_specialize" in kb.asm["ttgir"], "setmaxnreg" in kb.asm["ptx"], "shared", kb.metadata["shared"], "regs?", flush=True)
    except Exception as e:
        msg = str(e)
        m = re.findall(r"error: [^\n]*", msg)
        print(bm, bn, st, w, "FAIL", m[:2] or msg[:200], flush=True)
