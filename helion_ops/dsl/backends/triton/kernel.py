"""Triton backend, the kernel: signature, launch grid and PID mapping around the body; compiling and loading."""
from __future__ import annotations

import importlib.util
from typing import Any

from ... import exc, ir as I
from ...config import Config
from ...target import Target
from ...types import SIGNATURE_DTYPE
from .emitter import Emitter, Generated
from .ops import NAN_REDUCE_HELPERS
from .strategies import program_ids

def _cdiv(a: int, b: int) -> int:
    return -(-a // b)

def _tile_count(t) -> int:
    if t.static_len is None:
        raise exc.NotSupported("a launch grid whose size is not known on the host (dynamic tile bounds)")
    return t.static_len if t.is_grid else _cdiv(t.static_len, t.block)

def generate(d: I.DeviceIR, cfg: Config, target: Target, file: str, fn_name: str, grid_ordinal: int,
             loop_index: int = 0):
    """Emit the ``@triton.jit`` function for device loop ``d`` (the kernel's ``loop_index``-th top-level
    loop; ``grid_ordinal``-th among those with a 2-D+ grid) under ``cfg``."""

    em = Emitter(d, cfg, file, target)
    tiles = d.grid
    counts = [max(_tile_count(t), 0) for t in tiles]
    pids = program_ids(cfg, counts, target.num_sms, loop_index, grid_ordinal, em.idx64)
    i64 = em.idx64
    pre, decode, grid, body_ind = pids.prologue, pids.decode, pids.grid, pids.indent
    setup = []
    for k, t in enumerate(tiles):
        b = em.bound(t.begin)
        start = "" if b == "0" else f"{b} + "
        if t.is_grid:
            setup.append(f"{t.offset} = {start}pid_{k}")
            continue
        setup.append(f"{t.offset} = {start}pid_{k} * {t.block}")
        setup.append(f"{t.indices} = {t.offset} + tl.arange(0, {t.block})")
        if t.masked:
            setup.append(f"{t.mask} = {t.indices} < {em.bound(t.end)}")
    rsetup = []
    for r in d.rdims.values():
        if not r.rolled:
            rsetup.append(f"{r.index} = tl.arange(0, {r.block})" + (".to(tl.int64)" if i64 else ""))
            if r.masked:
                rsetup.append(f"{r.mask} = {r.index} < {r.extent}")

    em.ind = body_ind
    header_lines = len(em.lines)
    for s in decode + setup:
        em.line(s)
    em.stmts(d.body)
    body = em.lines[header_lines:]

    params = [(t.name, "tensor", t.host) for t in d.inputs.tensors] + \
             [(s.name, "scalar", s.name) for s in d.inputs.scalars]
    sig = {t.name: "*" + SIGNATURE_DTYPE[t.dtype] for t in d.inputs.tensors}
    sig.update({s.name: SIGNATURE_DTYPE[s.dtype] for s in d.inputs.scalars})
    helpers = "".join(helper_source(d, cfg, file, target, h) for h in d.helpers)
    helpers = "".join(NAN_REDUCE_HELPERS[op] for op in sorted(em.nan_helpers)) + helpers
    out = ["@triton.jit", f"def {fn_name}({', '.join(p[0] for p in params)}):"]
    out += ["    " + x for x in em.desc_lines]
    out += ["    " + x for x in rsetup]
    out += ["    " + x for x in pre]
    out += body
    if len(out) == 2 or all(not l.strip() or l.strip().startswith("#") for l in out[2:]):
        out.append("    pass")
    asm = next((v.loc for v in I.all_values(d.body) if v.op == "inline_asm"), None)
    return Generated(fn_name, helpers + "\n".join(out) + "\n", params, sig, grid,
                     int(cfg.get("num_warps", 4)), int(cfg.get("num_stages", 2)), bool(em.descs), asm)

def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod

def compile_spec(spec: dict[str, Any], target: tuple | None = None):
    """``triton.compile`` one generated kernel (from ``BoundKernel.compile_specs``).

    With ``target=("cuda", 90, 32)`` this builds Hopper PTX/cubin on a machine without a GPU.
    """
    import triton
    from triton.compiler import ASTSource

    import os
    # @triton.jit reads TRITON_INTERPRET when it decorates: load a real JITFunction even
    # when the interpreter is on, so CPU-only machines can still build sm_90 code.
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "0"
    try:
        mod = load_module(spec["path"], spec["fn"] + "_compile")
    finally:
        if saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = saved
    fn = getattr(mod, spec["fn"])
    if type(fn).__name__ == "GluonJITFunction":  # the Gluon backend's kernels build from Gluon's AST
        from triton.experimental.gluon._runtime import GluonASTSource as ASTSource
    sig = dict(spec["signature"])
    opts = {"num_warps": spec["num_warps"], "num_stages": spec["num_stages"]}
    if target is None:
        return triton.compile(ASTSource(fn, sig, dict(spec.get("constexprs", {}))), options=opts)
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    gpu = GPUTarget(*target)
    # At run time Triton specialises a 16-byte-aligned pointer (every fresh torch allocation) as
    # divisible by 16, which is what lets the pipeliner use 16-byte cp.async copies; without that
    # hint an offline build silently drops software pipelining. Build the aligned case.
    aligned = make_backend(gpu).parse_attr("D")
    attrs = {(i,): aligned for i, ty in enumerate(sig.values()) if str(ty).startswith("*")}
    src = ASTSource(fn, sig, dict(spec.get("constexprs", {})), attrs)
    return triton.compile(src, target=gpu, options=opts)

class TargetBinary:
    """What a compile for another target returns: the assembly texts and metadata."""

    def __init__(self, asm: dict[str, str], metadata: dict[str, Any]) -> None:
        self.asm, self.metadata = asm, metadata

def compile_specs_for_target(specs: list[dict], target: tuple, keep_going: bool = False) -> list:
    """Compile ``specs`` for ``target`` in a fresh process without the interpreter.

    Under TRITON_INTERPRET=1 Triton's own library functions (tl.max, tl.sum...) are
    interpreter objects and cannot be compiled, so the build runs in a subprocess.
    With ``keep_going`` a spec that fails gives its error text in place of a binary."""
    import json
    import os
    import subprocess
    import sys

    if os.environ.get("TRITON_INTERPRET") != "1" and not keep_going:
        return [compile_spec(s, target) for s in specs]
    env = dict(os.environ, TRITON_INTERPRET="0")
    r = subprocess.run([sys.executable, "-m", "helion_ops.dsl.backends.triton.kernel"], input=json.dumps(
        {"specs": specs, "target": list(target), "keep_going": keep_going}), env=env, capture_output=True,
        text=True, timeout=600)
    if r.returncode != 0:
        raise exc.CompileError(f"compile for {target} failed:\n{r.stderr[-4000:]}")
    return [d["error"] if "error" in d else TargetBinary(d["asm"], d["metadata"])
            for d in json.loads(r.stdout.splitlines()[-1])]

def _main() -> None:
    import json
    import sys

    job = json.load(sys.stdin)
    out = []
    for s in job["specs"]:
        try:
            k = compile_spec(s, tuple(job["target"]))
        except Exception as e:  # noqa: BLE001  (keep_going: report and continue)
            if not job.get("keep_going"):
                raise
            out.append({"error": f"{type(e).__name__}: {e}"[-3000:]})
            continue
        asm = {n: v for n, v in k.asm.items() if isinstance(v, str)}
        md = {n: getattr(k.metadata, n) for n in ("shared", "num_warps", "num_stages")
              if hasattr(k.metadata, n)}
        out.append({"asm": asm, "metadata": md})
    print(json.dumps(out))

if __name__ == "__main__":
    _main()

def helper_source(d: I.DeviceIR, cfg, file: str, target: Target, helper: tuple) -> str:
    """A combine function as its own ``@triton.jit`` function; or, for ``("raw", name, text)``, the text
    that defines or imports a function for ``hl.triton_kernel``."""
    if helper[0] == "raw":
        return helper[2]
    name, params, body, results = helper
    em = Emitter(d, cfg, file, target)
    em.ind = 1
    em.stmts(body)
    outs = [em.name_of(r) for r in results]
    head = ["@triton.jit", f"def {name}({', '.join(params)}):"]
    return "\n".join(head + em.lines + [f"    return {', '.join(outs)}"]) + "\n\n\n"
