"""Host time per op call, ours against eager: ``python -m bench.host [--op all] [--out results]``.

For every op spec (bench/specs), at a small shape where the GPU work is a few microseconds, the time
per call of ``impl`` and of ``eager`` in a tight loop (``--iters`` calls, one CUDA synchronize at the
end, so the host stays ahead of an idle GPU), best of ``--repeats`` loops, ours' and eager's interleaved:
forward (inference, no autograd) and forward + backward (inputs requiring grad, ``out.backward(g)``). The
loop measures what the host spends per call, as long as it is longer than the kernels; the table also
gives each op's GPU time (kernel durations from a CUDA profiler trace), so a row where the GPU decides
says so, the same loop with every DSL launch stubbed, and the launches one call makes, replayed alone
(wall and CPU time), and forward + backward again with the backward on the calling thread (the other rows run
it on autograd's device thread, as training does); beside them, the autograd floor (a bare ``autograd.Function``
against eager's ``x * 2``). ``--profile N`` prints a cProfile of ours. Writes results/<GPU>/host.md.

Needs a CUDA GPU (the interpreter's timings say nothing about host cost): without one it refuses.

``--dispatch`` times the op layer's Python path alone, on any machine: every kernel launch is stubbed
out (``stubbed_launches``) after warm-up calls, so what remains is the checks, the op layer, autograd,
config lookup, allocation and the replayed host code down to the launch; ``--profile N`` adds a
cProfile of ours (the N most expensive functions). On CPU the kernels run in Triton's interpreter for
the warm-up and ``eager`` is torch's CPU kernels (on one thread), so the ratio is indicative only;
nothing is written.
tests/bench/test_host_dispatch.py runs the same calls under pytest-benchmark, so CI watches them.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import torch

from bench import catalog, gpu_info

REPO = Path(__file__).resolve().parent.parent
DTYPE = torch.bfloat16
# A small shape per op (its GPU work a few microseconds); ops not listed use their first SMALL_SHAPES.
SHAPES = {"softmax": (16, 1024), "rms_norm": (16, 1024), "layer_norm": (16, 1024), "matmul": (16, 256, 256),
          "grouped_gemm": (4, 64, 256, 256), "attention": (1, 4, 64, 64, False)}


# Dispatch mode's shapes: the smallest each op takes (the launch is stubbed; the interpreter runs warm-up).
DISPATCH_SHAPES = {"softmax": (16, 64), "rms_norm": (16, 64), "layer_norm": (16, 64), "matmul": (16, 32, 32),
                   "grouped_gemm": (2, 16, 32, 32), "attention": (1, 2, 16, 64, False)}


@contextlib.contextmanager
def stubbed_launches():
    """Inside the block every compiled DSL kernel launch returns at once (outputs stay uninitialised): what
    a call costs is the host path above the launch. Binding, compiling and recording are not stubbed, so
    warm each call up before entering the block."""
    from helion_ops.dsl import runtime
    real = runtime.Compiled.launch
    runtime.Compiled.launch = lambda self, values: None
    try:
        yield
    finally:
        runtime.Compiled.launch = real


def _grad_inputs(spec, inputs: tuple) -> tuple:
    return tuple(t.detach().requires_grad_(i in spec.GRAD_INPUTS and t.is_floating_point())
                 if isinstance(t, torch.Tensor) else t for i, t in enumerate(inputs))


def per_call_us(fn, iters: int, repeats: int) -> float:
    """Best of ``repeats`` tight loops of ``iters`` calls, synchronized once at the end of each (µs/call)."""
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / iters * 1e6)
    return best


def gpu_us(fn, iters: int = 20) -> float:
    """GPU time per call (µs): the kernels' own durations summed from a CUDA profiler trace (CUPTI), so a
    host-bound loop's idle gaps between kernels stay out of it (CUDA events around the loop would time
    them too)."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) / iters


def calls(spec, fn, shape, device: str = "cuda", dtype: torch.dtype = DTYPE) -> dict:
    """The timed calls of ``fn`` (impl or eager) at ``shape``: fwd, and fwd+bwd for an op with gradients."""
    inputs = spec.make_inputs(shape, dtype, device)
    ginputs = _grad_inputs(spec, inputs)
    out = {"fwd": lambda: fn(*inputs)}
    if spec.GRAD_INPUTS:
        g = torch.randn_like(fn(*ginputs))

        def fwd_bwd():
            fn(*ginputs).backward(g)
        out["fwd+bwd"] = fwd_bwd
    return out


def interleaved(ours, eager, iters: int, repeats: int) -> tuple[float, float]:
    """(ours, eager) µs per call, each the best of ``repeats`` loops run alternately (ours, eager, ours, ...):
    drift in the machine's speed during the measurement moves both alike."""
    return tuple(min(ts) for ts in zip(*[(per_call_us(ours, iters, 1), per_call_us(eager, iters, 1))
                                         for _ in range(repeats)]))


def per_call_cpu_us(fn, iters: int, repeats: int) -> float:
    """Best of ``repeats`` loops of ``iters`` calls of ``fn`` (µs/call of this thread's CPU time: with no
    device to wait for, that is the host cost, and a loaded machine's preemptions stay out of it)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time_ns()
        for _ in range(iters):
            fn()
        best = min(best, (time.thread_time_ns() - t0) / iters / 1e3)
    return best


def _grad_mode(mode: str):
    return torch.no_grad() if mode == "fwd" else torch.enable_grad()


def dispatch_calls(spec, device: str, dtype: torch.dtype) -> tuple[dict, dict]:
    """(ours, eager) calls of ``spec`` at its DISPATCH_SHAPES shape, each run twice (compile, record)."""
    shape = DISPATCH_SHAPES.get(spec.NAME, spec.SMALL_SHAPES[0])
    ours, theirs = calls(spec, spec.impl, shape, device, dtype), calls(spec, spec.eager, shape, device, dtype)
    for mode, fn in (*ours.items(), *theirs.items()):
        with _grad_mode(mode):
            fn()
            fn()
    return ours, theirs


def dispatch(spec, iters: int, repeats: int, profile: int = 0) -> list[dict]:
    """Host time per call of ours and eager with every DSL launch stubbed out (see the module docstring)."""
    device = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
    dtype = DTYPE if device == "cuda" else torch.float32
    ours, theirs = dispatch_calls(spec, device, dtype)
    rows = []
    with stubbed_launches():
        for mode in ours:
            with _grad_mode(mode):
                o = per_call_cpu_us(ours[mode], iters, repeats)
                e = per_call_cpu_us(theirs[mode], iters, repeats)
                row = {"op": spec.NAME, "mode": mode, "ours_us": o, "eager_us": e, "ratio": o / e}
                if profile:
                    row["profile"] = profiled(ours[mode], iters, profile)
            rows.append(row)
    return rows


def measure(spec, iters: int, repeats: int, profile: int = 0) -> list[dict]:
    shape = SHAPES.get(spec.NAME, spec.SMALL_SHAPES[0])
    rows = []
    ours, theirs = calls(spec, spec.impl, shape), calls(spec, spec.eager, shape)
    for mode in ours:
        for fn in (ours[mode], theirs[mode]):
            for _ in range(3):
                fn()  # compile, record, warm the caches
        with torch.no_grad() if mode == "fwd" else torch.enable_grad():
            o, e = interleaved(ours[mode], theirs[mode], iters, repeats)
            g, eg = gpu_us(ours[mode]), gpu_us(theirs[mode])
            if mode == "fwd+bwd":  # the backward on the calling thread, not autograd's device thread
                with torch.autograd.set_multithreading_enabled(False):
                    oc, ec = interleaved(ours[mode], theirs[mode], iters, repeats)
            with stubbed_launches():  # the same loop with every DSL launch a no-op: what the launches cost
                stub = per_call_us(ours[mode], iters, repeats)
            launches = captured_launches(ours[mode])
            alone = per_call_us(lambda: [c.launch(v) for c, v in launches], iters, repeats)
            # the same loop's CPU time: the host's own cost of the launches, if the GPU bounds the loop above
            alone_cpu = per_call_cpu_us(lambda: [c.launch(v) for c, v in launches], iters, repeats)
            if profile:
                print(f"{spec.NAME} {mode}: cProfile of ours (launches real)\n" + profiled(ours[mode], iters, profile))
        ct = {"ours_ct_us": oc, "eager_ct_us": ec} if mode == "fwd+bwd" else {}
        rows.append({"op": spec.NAME, "shape": "x".join(map(str, shape)), "mode": mode, "ours_us": o,
                     "eager_us": e, "ratio": o / e, **ct, "ours_gpu_us": g, "eager_gpu_us": eg, "stubbed_us": stub,
                     "launches": len(launches), "static": sum(bool(getattr(c.fast, "static", False))
                                                              for c, _ in launches), "launch_us": alone,
                     "launch_cpu_us": alone_cpu, "captured": launches})
    return rows


def captured_launches(fn) -> list:
    """[(Compiled, values)] of the DSL kernel launches one call of ``fn`` makes (each also runs)."""
    from helion_ops.dsl import runtime
    real, seen = runtime.Compiled.launch, []

    def launch(self, values):
        seen.append((self, list(values)))
        return real(self, values)
    runtime.Compiled.launch = launch
    try:
        fn()
    finally:
        runtime.Compiled.launch = real
    return seen


def launch_floor(launches: list, iters: int, repeats: int) -> dict:
    """What one launch costs the host by three routes, each alone in a tight loop: the first single-launch
    call's binary through the path ours takes (torch's static CUDA launcher where it applies), the same binary
    through Triton's ``fn[grid]`` (its JIT dispatch and launcher), and an eager in-place op on a 16-element
    tensor (torch's dispatcher and its own launch): whether ours' launch or the GPU's intake decides a row."""
    c, v = launches[0]
    args = c.args_of(v)
    tiny = torch.zeros(16, device="cuda")
    return {"ours": per_call_us(lambda: c.launch(v), iters, repeats),
            "triton": per_call_us(lambda: c.fn[c.grid](*args, num_warps=c.num_warps, num_stages=c.num_stages),
                                  iters, repeats),
            "eager": per_call_us(tiny.neg_, iters, repeats)}


class _Bare(torch.autograd.Function):
    """The least an ``autograd.Function`` does: its forward allocates the output, its backward returns the
    gradient it got."""
    @staticmethod
    def forward(ctx, x):
        return torch.empty_like(x)

    @staticmethod
    def backward(ctx, g):
        return g


def function_floor(iters: int, repeats: int) -> dict:
    """Forward + backward of ``_Bare`` on a 16x1024 bf16 tensor, and of eager's ``x * 2`` (one ATen op with a
    backward), with the backward on autograd's device thread and on the calling thread: what any op whose
    autograd is a Python ``Function`` pays, against a native op's."""
    x = torch.randn(16, 1024, device="cuda", dtype=DTYPE, requires_grad=True)
    g = torch.randn_like(x)
    out = {}
    for where, threads in (("device", True), ("calling", False)):
        with torch.autograd.set_multithreading_enabled(threads):
            out[f"function_{where}"] = per_call_us(lambda: _Bare.apply(x).backward(g), iters, repeats)
            out[f"eager_{where}"] = per_call_us(lambda: (x * 2).backward(g), iters, repeats)
    return out


def profiled(fn, iters: int, top: int) -> str:
    """cProfile of ``iters`` calls of ``fn``: its ``top`` most expensive functions by own time."""
    prof = cProfile.Profile(time.thread_time)
    prof.runcall(lambda: [fn() for _ in range(iters)])
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def markdown(rows: list[dict], info: dict, iters: int, repeats: int, floor: dict | None = None,
             fn_floor: dict | None = None) -> str:
    lines = [f"# Host time per call: helion_ops against eager ({info['gpu_full']})", "",
             f"torch {info['torch']}, triton {info['triton']}, commit {info['commit']}, {info['date']}; "
             f"`python -m bench.host`: {DTYPE} inputs, a tight loop of {iters} calls synchronized at the "
             f"end, best of {repeats} (ours' and eager's loops interleaved). `ratio` = ours / eager (lower is "
             f"better; issue 30's bars: fwd <= 1.0, fwd+bwd <= 1.2). `ours GPU` / `eager GPU` are the "
             f"kernels' own time (their durations in a CUDA profiler trace): a row whose time per call is "
             f"close to it is bound by the GPU, not the host. `ours, no launch` is the same loop with every "
             f"DSL kernel launch a no-op: the difference to `ours` is what the launches cost. `launches` "
             f"counts one call's DSL kernel launches (in brackets: those through torch's static CUDA "
             f"launcher); `launches alone` replays just those launches, with the call's recorded arguments, "
             f"in the same loop (wall time; in brackets the thread's CPU time: their host cost where the GPU "
             f"bounds that loop). `calling thread`: forward + backward with the backward on the calling thread "
             f"(`torch.autograd.set_multithreading_enabled(False)`, as the harness times backwards), ours / eager; "
             f"the other columns run it on autograd's device thread, as a training loop does.", "",
             "| op | shape | mode | ours (us) | eager (us) | ratio | ours GPU (us) | eager GPU (us) "
             "| ours, no launch (us) | launches | launches alone (us) | calling thread (us) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ct = f"{r['ours_ct_us']:.1f} / {r['eager_ct_us']:.1f}" if "ours_ct_us" in r else "-"
        lines.append(f"| {r['op']} | {r['shape']} | {r['mode']} | {r['ours_us']:.1f} | {r['eager_us']:.1f} | "
                     f"{r['ratio']:.2f}x | {r['ours_gpu_us']:.1f} | {r['eager_gpu_us']:.1f} | {r['stubbed_us']:.1f} | "
                     f"{r['launches']} ({r['static']}) | {r['launch_us']:.1f} ({r['launch_cpu_us']:.1f}) | {ct} |")
    if floor:
        lines += ["", f"Launch floor ({floor['op']}'s forward binary, each route alone in the same loop): ours "
                      f"{floor['ours']:.1f} µs, Triton's `fn[grid]` {floor['triton']:.1f} µs; an eager in-place op on a "
                      f"16-element tensor (torch's dispatcher and launch) {floor['eager']:.1f} µs."]
    if fn_floor:
        lines += ["", f"Autograd floor (16x1024, forward + backward): a bare `autograd.Function` (its forward allocates "
                      f"the output, its backward returns its gradient) {fn_floor['function_device']:.1f} µs, eager's "
                      f"`x * 2` {fn_floor['eager_device']:.1f} µs; on the calling thread "
                      f"{fn_floor['function_calling']:.1f} and {fn_floor['eager_calling']:.1f} µs."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", default="all", help="'all' or a comma list of op names")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "results"), help="results root: writes <out>/<GPU>/host.md")
    ap.add_argument("--dispatch", action="store_true",
                    help="time the host path with every kernel launch stubbed out (any machine; writes nothing)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="a cProfile of ours, its N most expensive functions, printed (launches real; with "
                         "--dispatch, stubbed)")
    args = ap.parse_args(argv)
    if args.dispatch:
        return main_dispatch(args)
    if not torch.cuda.is_available():
        print("bench.host measures host time per call against eager on a CUDA GPU; none is visible here, so "
              "nothing was measured or written (the interpreter's timings say nothing about host cost)")
        return 2
    mods, problems = catalog.resolve(args.op)
    for name, why in problems.items():
        print(f"{name}: not loaded ({why})")
    rows, floor = [], None
    for spec in mods:
        try:
            rows += measure(spec, args.iters, args.repeats, args.profile)
            one = [r["captured"] for r in rows[-2:] if r["mode"] == "fwd" and r["launches"] == 1]
            if one and floor is None:
                floor = {"op": spec.NAME, **launch_floor(one[0], args.iters, args.repeats)}
                print(f"launch floor ({spec.NAME}): {floor}", flush=True)
        except Exception as e:  # one broken op must not cost the others' rows
            print(f"{spec.NAME}: failed: {type(e).__name__}: {str(e)[:300]}")
            continue
        for r in rows[-2:]:
            print(f"{r['op']:13s} {r['mode']:8s} ours {r['ours_us']:7.1f} us  eager {r['eager_us']:7.1f} us  "
                  f"{r['ratio']:.2f}x  (GPU {r['ours_gpu_us']:.1f} / {r['eager_gpu_us']:.1f} us; "
                  f"no launch {r['stubbed_us']:.1f} us; {r['launches']} launches, {r['static']} static, "
                  f"alone {r['launch_us']:.1f} us, CPU {r['launch_cpu_us']:.1f} us)", flush=True)
    info = {**gpu_info.info(), "commit": gpu_info.git_commit(), "date": gpu_info.utc_date()}
    path = Path(args.out) / info["gpu"] / "host.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fn_floor = function_floor(args.iters, args.repeats)
        print(f"autograd floor: {fn_floor}", flush=True)
    except Exception as e:  # a reference figure: its failure must not cost the table
        fn_floor = None
        print(f"autograd floor: failed: {type(e).__name__}: {str(e)[:300]}")
    path.write_text(markdown(rows, info, args.iters, args.repeats, floor, fn_floor))
    print(f"wrote {path}")
    return 0 if rows else 1


def main_dispatch(args) -> int:
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # the warm-up calls run in the interpreter
        # eager's CPU kernels on one thread: on a shared machine its intra-op workers' barriers spin in this
        # thread's CPU time (eager's column moved 2-5x between runs); the kernels here are tiny either way
        torch.set_num_threads(1)
    mods, problems = catalog.resolve(args.op)
    for name, why in problems.items():
        print(f"{name}: not loaded ({why})")
    iters = min(args.iters, 500) if not torch.cuda.is_available() else args.iters
    print(f"host path per call with kernel launches stubbed out ({'GPU' if torch.cuda.is_available() else 'CPU'}; "
          f"eager is torch's own kernels, launched): best of {args.repeats} loops of {iters} calls")
    ok = True
    for spec in mods:
        try:
            rows = dispatch(spec, iters, args.repeats, args.profile)
        except Exception as e:  # one broken op must not cost the others' rows
            print(f"{spec.NAME}: failed: {type(e).__name__}: {str(e)[:300]}")
            ok = False
            continue
        for r in rows:
            print(f"{r['op']:13s} {r['mode']:8s} ours {r['ours_us']:7.1f} us  eager {r['eager_us']:7.1f} us  "
                  f"{r['ratio']:.2f}x", flush=True)
            if "profile" in r:
                print(r["profile"])
    return 0 if ok and mods else 1


if __name__ == "__main__":
    sys.exit(main())
