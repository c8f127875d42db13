"""Triton backend, the kernel: signature, launch grid and PID mapping (the Config's ``pid_type``, ``loop_orders``,
``l2_groupings``, ``grid_reverses``) around the body; compiling and loading."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import types
from typing import Any
from unittest import mock

import torch

from ... import exc, ir as I
from ...config import Config
from ...target import Target
from .emitter import Emitter, Generated
from .ops import NAN_REDUCE_HELPERS

def program_ids(em: Emitter, loop_index: int, grid_ordinal: int) -> tuple[tuple, list[str], list[str], list[str]]:
    """Which grid tiles each program of device loop ``loop_index`` takes (the ``grid_ordinal``-th loop with a 2-D+
    grid, which indexes ``loop_orders`` and ``l2_groupings``): the launch grid, each grid tile's offset from its
    ``pid_k``, the lines before the body (a persistent loop's header) and the lines that compute each ``pid_k``."""
    if any(t.static_len is None for t in em.d.grid):
        raise exc.NotSupported("a launch grid whose size is not known on the host (dynamic tile bounds)")
    cfg, counts = em.cfg, [max(t.static_len if t.is_grid else -(-t.static_len // t.block), 0) for t in em.d.grid]
    total = math.prod(counts)
    starts = [("" if b == "0" else f"{b} + ") for b in (em.bound(t.begin) for t in em.d.grid)]
    offsets = [f"{t.offset} = {start}pid_{k}" + ("" if t.is_grid else f" * {t.block}")
               for k, (t, start) in enumerate(zip(em.d.grid, starts))]
    pid_type = cfg.get("pid_type", "flat")
    if pid_type == "xyz" and (len(counts) > 3 or any(c > 65535 for c in counts[1:])):
        pid_type = "flat"  # more dims than CUDA's grid has, or past its y/z limit
    # grid_reverses: when work grows with the tile (causal attention's later query blocks), the longest programs
    # start first and the short ones fill the last wave, instead of leaving it to a few long ones.
    reverse = any((cfg.get("grid_reverses") or [])[loop_index:loop_index + 1])
    wide = ".to(tl.int64)" if em.idx64 else ""
    if pid_type == "xyz":
        return tuple(counts + [1] * (3 - len(counts))), offsets, [], [
            f"pid_{k} = {f'{c - 1} - ' if reverse else ''}tl.program_id({k}){wide}" for k, c in enumerate(counts)]
    p = pid0 = f"tl.program_id(0){wide}"
    grid, prologue = (total, 1, 1), []
    if pid_type.startswith("persistent"):
        nprog = max(1, min(em.target.num_sms, total))  # one program per SM, each looping over its share of tiles
        grid, p, per = (nprog, 1, 1), "virtual_pid", -(-total // nprog)
        prologue = ([f"for virtual_pid in tl.range({pid0}, {total}, {nprog}):"] if pid_type == "persistent_interleaved"
                    else [f"start_pid = {pid0} * {per}",
                          f"for virtual_pid in tl.range(start_pid, tl.minimum(start_pid + {per}, {total})):"])
    decode = [f"pid = {total - 1} - {p}" if reverse else f"pid = {p}"] + _decode_flat(counts, cfg, grid_ordinal)
    return grid, offsets, prologue, decode

def _decode_flat(counts: list[int], cfg: Config, ordinal: int) -> list[str]:
    """A flat program id ``pid`` -> a tile per grid dim, in ``loop_orders`` order (first fastest); with
    ``l2_groupings`` G > 1, G rows of tiles of the first two dims share their columns (L2 reuse)."""
    n = len(counts)
    if n == 1:
        return ["pid_0 = pid"]
    orders, groups = cfg.get("loop_orders") or [], cfg.get("l2_groupings") or []
    order = list(orders[ordinal]) if ordinal < len(orders) and len(orders[ordinal]) == n else list(range(n))
    g = int(groups[ordinal]) if ordinal < len(groups) else 1
    def peel(pairs) -> list[str]:  # (name, count): name = rem % count, then the rest of rem
        return [ln for k, c in pairs for ln in (f"{k} = rem % {c}", f"rem = rem // {c}")]
    lines = ["rem = pid"]
    if g <= 1:
        return lines + peel((f"pid_{k}", counts[k]) for k in order[:-1]) + [f"pid_{order[-1]} = rem"]
    a, b, rest = order[0], order[1], order[2:]
    if rest:
        lines += peel([("inner_pid", counts[a] * counts[b])] + [(f"pid_{k}", counts[k]) for k in rest])
    else:
        lines.append("inner_pid = rem")
    return lines + [f"num_pid_in_group = {g * counts[b]}", "group_id = inner_pid // num_pid_in_group",
                    f"first_pid = group_id * {g}", f"group_size = tl.minimum({counts[a]} - first_pid, {g})",
                    f"pid_{a} = first_pid + (inner_pid % num_pid_in_group) % group_size",
                    f"pid_{b} = (inner_pid % num_pid_in_group) // group_size"]

def generate(d: I.DeviceIR, cfg: Config, target: Target, file: str, fn_name: str, grid_ordinal: int,
             loop_index: int = 0) -> Generated:
    """The ``@triton.jit`` function of device loop ``d`` under ``cfg`` (loop_index, grid_ordinal: see program_ids)."""
    em = Emitter(d, cfg, file, target)
    grid, offsets, prologue, decode = program_ids(em, loop_index, grid_ordinal)
    em.ind = 1 + bool(prologue)
    em.line(*decode)
    for t, offset in zip(d.grid, offsets):
        em.line(offset)
        if not t.is_grid:
            em.tile_lines(t)
    rsetup = [ln for r in d.rdims.values() if not r.rolled
              for ln in [f"{r.index} = tl.arange(0, {r.block})" + (".to(tl.int64)" if em.idx64 else "")]
              + ([f"{r.mask} = {r.index} < {r.extent}"] if r.masked else [])]
    em.stmts(d.body)
    params, sig = em.params()
    helpers = "".join(NAN_REDUCE_HELPERS[op] for op in sorted(em.nan_helpers))
    helpers += "".join(helper_source(d, cfg, file, target, h) for h in d.helpers)
    out = ["@triton.jit", f"def {fn_name}({', '.join(p[0] for p in params)}):"]
    out += ["    " + x for x in em.desc_lines + rsetup + prologue] + em.lines
    if all(not l.strip() or l.strip().startswith("#") for l in out[2:]):
        out.append("    pass")
    asm = next((v.loc for v in I.all_values(d.body) if v.op == "inline_asm"), None)
    return Generated(fn_name, helpers + "\n".join(out) + "\n", params, sig, grid,
                     int(cfg.get("num_warps", 4)), int(cfg.get("num_stages", 2)), bool(em.descs), asm)

def helper_source(d: I.DeviceIR, cfg, file: str, target: Target, helper: tuple) -> str:
    """A combine function as its own ``@triton.jit`` function; or, for ``("raw", name, text)``, the text
    that defines or imports a function for ``hl.triton_kernel``."""
    if helper[0] == "raw":
        return helper[2]
    name, params, body, results = helper
    em = Emitter(d, cfg, file, target)
    em.stmts(body)
    outs = ", ".join(em.name_of(r) for r in results)
    return "\n".join(["@triton.jit", f"def {name}({', '.join(params)}):", *em.lines, f"    return {outs}"]) + "\n\n\n"

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
    # @triton.jit reads TRITON_INTERPRET as it decorates: a real JITFunction lets CPU-only machines build sm_90 code
    with mock.patch.dict(os.environ, TRITON_INTERPRET="0"):
        fn = getattr(load_module(spec["path"], spec["fn"] + "_compile"), spec["fn"])
    if type(fn).__name__ == "GluonJITFunction":  # the Gluon backend's kernels build from Gluon's AST
        from triton.experimental.gluon._runtime import GluonASTSource as ASTSource
    sig, attrs, kw = dict(spec["signature"]), None, {}
    if target is not None:
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import make_backend
        kw["target"] = GPUTarget(*target)
        # At run time Triton marks a 16-byte-aligned pointer (every fresh torch allocation) divisible by 16, which lets
        # the pipeliner use 16-byte cp.async copies; an offline build without it silently drops pipelining.
        aligned = make_backend(kw["target"]).parse_attr("D")
        attrs = {(i,): aligned for i, ty in enumerate(sig.values()) if str(ty).startswith("*")}
    return triton.compile(ASTSource(fn, sig, dict(spec.get("constexprs", {})), attrs),
                          options={"num_warps": spec["num_warps"], "num_stages": spec["num_stages"]}, **kw)

# Triton signature type -> the type letter of torch's static launcher (pointers go as ints: no driver query per call)
_STATIC_TYPES = {"i1": "i", "i8": "b", "i16": "h", "i32": "i", "i64": "l", "u1": "I", "u8": "B", "u16": "H",
                 "u32": "I", "u64": "K", "fp32": "f", "f32": "f", "fp64": "d"}

def launcher(k: Any, device: int, index: list[int], args_of: Any, plain: bool):
    """``run(grid, values)`` for a compiled kernel ``k`` (already launched once, so loaded) whose i-th argument is
    ``values[index[i]]`` (``args_of(values)``: all of them, made; ``plain``: nothing to make, no TMA descriptor or
    scratch allocator). Through torch's C++ launcher for Triton cubins (Inductor's ``_StaticCudaLauncher``) where it
    applies, else through Triton's own launcher; either way skipping ``fn[grid]``'s per-call re-specialisation."""
    md, stream, keep = k.metadata, torch._C._cuda_getCurrentRawStream, []
    for i, name in enumerate(k.src.fn.arg_names):
        ty = str(k.src.signature.get(name, "constexpr"))
        if ty != "constexpr" and (i,) not in k.src.constants:
            keep.append((i, "O" if ty.startswith("*") else _STATIC_TYPES.get(ty, "?")))
    S = getattr(torch._C, "_StaticCudaLauncher", None)
    if not plain or S is None or torch.version.hip or any(t == "?" for _, t in keep) \
            or getattr(md, "num_ctas", 1) != 1 or any(getattr(md, a, 0) for a in (
                "global_scratch_size", "profile_scratch_size", "launch_pdl", "launch_cooperative_grid")):
        return lambda g, v: g[0] and k.run(g[0], g[1], g[2], stream(device), k.function, k.packed_metadata,
                                           None, None, None, *args_of(v))
    # Triton >= 3.5 kernels take a global (and a profile) scratch pointer after the arguments: null when unused
    scratch = sum(hasattr(md, a) for a in ("global_scratch_size", "profile_scratch_size"))
    # Generated for this kernel: each argument read by position (a pointer is never None: None is a constexpr).
    # An empty grid launches nothing.
    vals = "".join(f"v[{index[i]}].data_ptr(), " if t == "O" else f"v[{index[i]}], " for i, t in keep) + "0, " * scratch
    tys = "".join(t for _, t in keep) + "O" * scratch
    src = f"lambda g, v: run(fn, g[0], g[1], g[2], {md.num_warps}, {md.shared}, {tys!r}, ({vals}), stream({device}))"
    fast = eval(src, {"run": S._launch_kernel, "fn": k.function, "stream": stream})
    fast.static = True  # for bench.host's count of launches that take this path
    return fast

def compile_specs_for_target(specs: list[dict], target: tuple, keep_going: bool = False) -> list:
    """Compile ``specs`` for ``target`` (``.asm`` texts, ``.metadata``; with ``keep_going`` a failure's error
    text), in a fresh process: under TRITON_INTERPRET=1 Triton's tl.max, tl.sum... cannot be compiled."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not keep_going:
        return [compile_spec(s, target) for s in specs]
    r = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(
        {"specs": specs, "target": list(target), "keep_going": keep_going}), env=dict(os.environ, TRITON_INTERPRET="0"),
        capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise exc.CompileError(f"compile for {target} failed:\n{r.stderr[-4000:]}")
    return [d["error"] if "error" in d else types.SimpleNamespace(asm=d["asm"], metadata=d["metadata"])
            for d in json.loads(r.stdout.splitlines()[-1])]

if __name__ == "__main__":   # compile_specs_for_target's fresh process
    job, out = json.load(sys.stdin), []
    for s in job["specs"]:
        try:
            k = compile_spec(s, tuple(job["target"]))
            out.append({"asm": {n: v for n, v in k.asm.items() if isinstance(v, str)},
                        "metadata": {n: getattr(k.metadata, n) for n in ("shared", "num_warps", "num_stages")
                                     if hasattr(k.metadata, n)}})
        except Exception as e:  # noqa: BLE001  (keep_going: report and continue)
            if not job.get("keep_going"):
                raise
            out.append({"error": f"{type(e).__name__}: {e}"[-3000:]})
    print(json.dumps(out))
