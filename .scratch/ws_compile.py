import math, sys, itertools, torch
from helion_ops.ops import attention as A
from helion_ops.dsl import Config
from helion_ops.dsl.codegen_kernel import compile_specs_for_target
d=128
q = torch.empty(2, 4, 4096, d, dtype=torch.bfloat16)
qs = A.LOG2E / math.sqrt(d)
args=(q, q, q, False, qs)
bound = A.attn_fwd.bind(args)
base = A.config_for("attn_fwd", args, q, q, False).to_dict()
print(base)
print(bound.config_space.spec.warp_specialize if hasattr(bound.config_space.spec,'warp_specialize') else 'no ws spec')
for idx, bm, w in itertools.product(["pointer","tensor_descriptor"], [64,128], [4]):
    dd = dict(base, indexing=idx, num_warps=w, block_sizes=[bm,128])
    n = len(dd.get("range_warp_specializes") or [])
    dd["range_warp_specializes"] = [True]*max(n,1)
    try:
        cfg = bound.normalize(Config(**dd))
        code = bound.to_triton_code(cfg)
        specs = bound.compile_specs(cfg)
        kb = compile_specs_for_target(specs, ("cuda", 90, 32))[0]
        ttgir = kb.asm["ttgir"]
        print(idx, bm, w, "OK ws=", "ttg.warp_specialize" in ttgir, "setmaxnreg" in kb.asm["ptx"], "shared", kb.metadata["shared"])
    except Exception as e:
        print(idx, bm, w, "FAIL", type(e).__name__, str(e)[:300].replace("\n"," "))
