"""Triton backend, the kernel: signature, launch grid and PID mapping around the body; compiling and loading."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from typing import Any
from unittest import mock

from ... import exc, ir as I
from ...config import Config
from ...target import Target
from .emitter import Emitter, Generated
from .ops import NAN_REDUCE_HELPERS

def generate(d: I.DeviceIR, cfg: Config, target: Target, file: str, fn_name: str, grid_ordinal: int,
             loop_index: int = 0) -> Generated:
    """Emit the ``@triton.jit`` function for device loop ``d`` (the kernel's ``loop_index``-th top-level
    loop; ``grid_ordinal``-th among those with a 2-D+ grid) under ``cfg``."""
    em = Emitter(d, cfg, file, target)
    pids, offsets = em.grid_offsets(loop_index, grid_ordinal)
    setup = []
    for t, offset in zip(d.grid, offsets):
        setup.append(offset)
        if not t.is_grid:
            setup.append(f"{t.indices} = {t.offset} + tl.arange(0, {t.block})")
            if t.masked:
                setup.append(f"{t.mask} = {t.indices} < {em.bound(t.end)}")
    rsetup = []
    for r in d.rdims.values():
        if not r.rolled:
            rsetup.append(f"{r.index} = tl.arange(0, {r.block})" + (".to(tl.int64)" if em.idx64 else ""))
            if r.masked:
                rsetup.append(f"{r.mask} = {r.index} < {r.extent}")
    em.ind, start = pids.indent, len(em.lines)
    for s in pids.decode + setup:
        em.line(s)
    em.stmts(d.body)
    params, sig = em.params()
    helpers = "".join(NAN_REDUCE_HELPERS[op] for op in sorted(em.nan_helpers))
    helpers += "".join(helper_source(d, cfg, file, target, h) for h in d.helpers)
    out = ["@triton.jit", f"def {fn_name}({', '.join(p[0] for p in params)}):"]
    out += ["    " + x for x in em.desc_lines + rsetup + pids.prologue] + em.lines[start:]
    if all(not l.strip() or l.strip().startswith("#") for l in out[2:]):
        out.append("    pass")
    asm = next((v.loc for v in I.all_values(d.body) if v.op == "inline_asm"), None)
    return Generated(fn_name, helpers + "\n".join(out) + "\n", params, sig, pids.grid,
                     int(cfg.get("num_warps", 4)), int(cfg.get("num_stages", 2)), bool(em.descs), asm)

def helper_source(d: I.DeviceIR, cfg, file: str, target: Target, helper: tuple) -> str:
    """A combine function as its own ``@triton.jit`` function; or, for ``("raw", name, text)``, the text
    that defines or imports a function for ``hl.triton_kernel``."""
    if helper[0] == "raw":
        return helper[2]
    name, params, body, results = helper
    em = Emitter(d, cfg, file, target)
    em.stmts(body)
    outs = [em.name_of(r) for r in results]
    return "\n".join(["@triton.jit", f"def {name}({', '.join(params)}):"] + em.lines
                     + [f"    return {', '.join(outs)}"]) + "\n\n\n"

def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod

def compile_spec(spec: dict[str, Any], target: tuple | None = None):
    """``triton.compile`` one generated kernel (from ``BoundKernel.compile_specs``).
    With ``target=("cuda", 90, 32)`` this builds Hopper PTX/cubin on a machine without a GPU."""
    import triton
    from triton.compiler import ASTSource

    # @triton.jit reads TRITON_INTERPRET when it decorates: load a real JITFunction even
    # when the interpreter is on, so CPU-only machines can still build sm_90 code.
    with mock.patch.dict(os.environ, TRITON_INTERPRET="0"):
        fn = getattr(load_module(spec["path"], spec["fn"] + "_compile"), spec["fn"])
    if type(fn).__name__ == "GluonJITFunction":  # the Gluon backend's kernels build from Gluon's AST
        from triton.experimental.gluon._runtime import GluonASTSource as ASTSource
    sig, constexprs = dict(spec["signature"]), dict(spec.get("constexprs", {}))
    opts = {"num_warps": spec["num_warps"], "num_stages": spec["num_stages"]}
    if target is None:
        return triton.compile(ASTSource(fn, sig, constexprs), options=opts)
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    gpu = GPUTarget(*target)
    # At run time Triton specialises a 16-byte-aligned pointer (every fresh torch allocation) as
    # divisible by 16, which is what lets the pipeliner use 16-byte cp.async copies; without that
    # hint an offline build silently drops software pipelining. Build the aligned case.
    aligned = make_backend(gpu).parse_attr("D")
    attrs = {(i,): aligned for i, ty in enumerate(sig.values()) if str(ty).startswith("*")}
    return triton.compile(ASTSource(fn, sig, constexprs, attrs), target=gpu, options=opts)

def compile_specs_for_target(specs: list[dict], target: tuple, keep_going: bool = False) -> list:
    """Compile ``specs`` for ``target`` into binaries (``.asm`` texts, ``.metadata``), in a fresh process
    without the interpreter: under TRITON_INTERPRET=1 Triton's own library functions (tl.max, tl.sum...)
    are interpreter objects and cannot be compiled. With ``keep_going`` a spec that fails gives its error
    text in place of a binary."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not keep_going:
        return [compile_spec(s, target) for s in specs]
    r = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(
        {"specs": specs, "target": list(target), "keep_going": keep_going}), env=dict(os.environ, TRITON_INTERPRET="0"),
        capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise exc.CompileError(f"compile for {target} failed:\n{r.stderr[-4000:]}")
    return [d["error"] if "error" in d else types.SimpleNamespace(asm=d["asm"], metadata=d["metadata"])
            for d in json.loads(r.stdout.splitlines()[-1])]

def _main() -> None:
    job, out = json.load(sys.stdin), []
    for s in job["specs"]:
        try:
            k = compile_spec(s, tuple(job["target"]))
        except Exception as e:  # noqa: BLE001  (keep_going: report and continue)
            if not job.get("keep_going"):
                raise
            out.append({"error": f"{type(e).__name__}: {e}"[-3000:]})
            continue
        out.append({"asm": {n: v for n, v in k.asm.items() if isinstance(v, str)},
                    "metadata": {n: getattr(k.metadata, n) for n in ("shared", "num_warps", "num_stages")
                                 if hasattr(k.metadata, n)}})
    print(json.dumps(out))

if __name__ == "__main__":
    _main()
