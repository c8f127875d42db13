"""Dump the generated Triton of every catalog kernel, for byte-for-byte diffs across refactors.

    python -m bench.codegen_dump --out /tmp/before      # on the old tree
    python -m bench.codegen_dump --out /tmp/after       # on the new tree
    diff -r /tmp/before /tmp/after                      # empty: the refactor changed no generated code

For each op it runs the op (forward, and backward for ops with gradients) on meta tensors, at every
shape its pretuned table (helion_ops/configs/<arch>/<op>.json) has an entry for (bf16) and at each of
its SMALL_SHAPES (fp32), recording each DSL kernel the op launches and the arguments it launches it
with. Nothing runs on a device: each launch is replaced by a codegen-only run of the kernel's host
code, which returns meta outputs for the op to carry on with. Each recorded kernel's source is then
written at the config the op chose, at the kernel's default config and at every table entry of that
kernel for that shape; the attention and matmul kernels also through the Gluon backend (the chosen config
with ``backend="gluon"``: one and two consumer warpgroups, with and without ``gluon_overlap``). A config
that does not apply is written as its error message, so a changed error shows up in the diff too. Needs no
GPU (CPU, under a minute).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import pathlib
import sys
import warnings

os.environ.setdefault("HELION_OPS_NO_REPLAY", "1")  # every call runs the host code (and so records)
os.environ.setdefault("HELION_OPS_STRICT", "1")  # a kernel that fails raises (no silent eager fallback)

import torch  # noqa: E402

from bench import catalog  # noqa: E402

OPS = ["softmax", "rms_norm", "layer_norm", "matmul", "grouped_gemm", "attention"]
GLUON_OPS = ("attention", "matmul")  # the Gluon backend's subset (docs/decisions/gluon-attention.md)
GLUON = {"gluon-c1": dict(gluon_consumers=1), "gluon-c2": dict(gluon_consumers=2),
         "gluon-c2-overlap": dict(gluon_consumers=2, gluon_overlap=True)}


def _meta(args: tuple) -> tuple:
    return tuple(torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device="meta")
                 if isinstance(a, torch.Tensor) else a for a in args)


def record(op_mod, shape: tuple, dtype: torch.dtype) -> list:
    """[(bound kernel, config the op chose)] for one forward (+ backward) of the op on meta tensors."""
    from helion_ops import _oplib
    from helion_ops.dsl import runtime

    launches: list = []
    real_exec, real_impl = runtime.BoundKernel._exec, _oplib.Op.impl

    def _exec(self, ctx, args):
        if ctx.mode != "launch":
            return real_exec(self, ctx, args)
        launches.append((self, ctx.config))
        return real_exec(self, runtime.RunContext(self, ctx.config, mode="codegen"), _meta(args))

    inputs = op_mod.make_inputs(shape, dtype, "meta")
    grads = getattr(op_mod, "GRAD_INPUTS", ())
    runtime.BoundKernel._exec = _exec
    _oplib.Op.impl = lambda self, *a: self.forward(*a)  # meta tensors take the kernel path (recorded above)
    try:
        if grads:
            inputs = tuple(x.detach().requires_grad_(i in grads) if isinstance(x, torch.Tensor) else x
                           for i, x in enumerate(inputs))
        out = op_mod.impl(*inputs)
        if grads:
            outs = out if isinstance(out, tuple) else (out,)
            torch.autograd.backward([o for o in outs if o.requires_grad],
                                    [torch.ones_like(o) for o in outs if o.requires_grad])
    finally:
        runtime.BoundKernel._exec, _oplib.Op.impl = real_exec, real_impl
    return launches


def _code(bound, cfg) -> str:
    from helion_ops.dsl import Config
    try:
        return bound.to_triton_code(cfg if isinstance(cfg, Config) else Config(**cfg))
    except Exception as e:  # the message is part of the behaviour being compared (paths from the repo root,
        root = str(pathlib.Path(__file__).resolve().parent.parent) + os.sep  # so two checkouts compare equal)
        return f"# error: {type(e).__name__}: {str(e).replace(root, '')}\n"


def dump(out: pathlib.Path, ops: list[str], arch: str = "sm90") -> int:
    warnings.simplefilter("ignore")
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for op in ops:
        mod = catalog.load(op)  # the op's benchmark spec: SMALL_SHAPES, make_inputs, impl
        table = pathlib.Path(importlib.import_module("helion_ops").__file__).parent / "configs" / arch / f"{op}.json"
        entries = json.loads(table.read_text())["entries"] if table.exists() else []
        cases = [(tuple(s), torch.float32) for s in mod.SMALL_SHAPES]
        cases += [(tuple(s), torch.bfloat16) for s in dict.fromkeys(tuple(e["key"]["shape"]) for e in entries)]
        for shape, dtype in cases:
            tag = "x".join(map(str, shape)) + "-" + str(dtype).replace("torch.", "")
            try:
                launches = record(mod, shape, dtype)
            except Exception as e:
                (out / f"{op}-{tag}.error").write_text(f"{type(e).__name__}: {e}\n")
                continue
            for k, (bound, chosen) in enumerate(launches):
                name = bound.kernel.name
                configs = {"chosen": chosen, "default": bound.default_config()}
                for e in entries:
                    if e["kernel"] == name and tuple(e["key"]["shape"]) == shape:
                        h = hashlib.sha1(json.dumps(e["config"], sort_keys=True).encode()).hexdigest()[:10]
                        configs[f"table-{e['key'].get('variant') or 'nn'}-{h}"] = e["config"]
                if op in GLUON_OPS:
                    configs.update({label: {**dict(chosen), "backend": "gluon", **kw} for label, kw in GLUON.items()})
                if name in ("attn_bwd_dq", "attn_bwd_dkdv"):  # the op's own Gluon backward (_attention_gluon)
                    from helion_ops.ops._attention_gluon import config_bwd
                    configs["gluon-policy"] = config_bwd(name, chosen)
                for label, cfg in configs.items():
                    f = out / op / tag / f"{k}-{name}-{label}.py"
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.write_text(f"# config: {dict(cfg)}\n" + _code(bound, cfg))
                    n += 1
        print(f"{op}: {len(cases)} shapes", file=sys.stderr)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory to write the sources into")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated op names (default: all)")
    a = p.parse_args(argv)
    unknown = [o for o in a.ops.split(",") if o not in OPS]
    if unknown:
        p.error(f"--ops: unknown op(s) {unknown}; choose from {OPS}")
    n = dump(pathlib.Path(a.out), a.ops.split(","))
    print(f"wrote {n} sources under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
