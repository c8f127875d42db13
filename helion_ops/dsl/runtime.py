"""Kernel objects, binding on a specialization key, the Config choice, the compile cache and launches: the host
code's ``__hl_launch__(i, locals())`` compiles device loop i on first use and launches it (or ``replay.py`` does)."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import os
import sys
import tempfile
import threading
import types
import warnings
from typing import Any, Callable

import numpy
import torch
import triton

from . import compile_op, exc, frontend, ir as I, passes, pipeline, space
from .backends.triton import compile_specs_for_target, launcher, load_module
from .config import Config
from .language import constexpr as hl_constexpr
from .lower import config_block
from .plan import planning, scoped
from .target import Target
from .replay import MISS, NotReplayable, replay_of

# [bound kernel, its launches, still replayable] while a replay_host kernel's first run is recorded, else None
_TRACE: contextvars.ContextVar = contextvars.ContextVar("helion_ops_trace", default=None)
_RECORD: contextvars.ContextVar = contextvars.ContextVar("helion_ops_record", default=None)  # see record_launches
REPLAY = os.environ.get("HELION_OPS_NO_REPLAY") != "1"  # =1: the host code runs on every call (debugging)
_BIND_LOCK = threading.RLock()  # binding parses and dry-runs: rare, so one lock for every kernel
_INTERPRETER_LOCK = threading.Lock()
_CODE_DIRS: dict[str, str] = {}
_HEADER = "import triton\nimport triton.language as tl\n\n\n"

def interpret_mode() -> bool: return os.environ.get("TRITON_INTERPRET", "0") == "1"

class CacheWarning(UserWarning): """The code cache directory cannot be used; generated code goes elsewhere."""

def write_code(name: str, src: str) -> str:
    """The module holding ``src`` under ``$HELION_OPS_CACHE_DIR/code`` (else a temporary directory, one CacheWarning),
    named by its hash, written atomically and rewritten when the file on disk differs (a corrupt file fails forever)."""
    want = os.path.join(os.environ.get("HELION_OPS_CACHE_DIR") or os.path.expanduser("~/.cache/helion_ops"), "code")
    if want not in _CODE_DIRS:
        try:
            os.makedirs(want, exist_ok=True)
            if not os.access(want, os.W_OK | os.X_OK):
                raise PermissionError(f"not writable: {want}")
            _CODE_DIRS[want] = want
        except OSError as e:
            d = _CODE_DIRS[want] = tempfile.mkdtemp(prefix="helion_ops-code-")
            warnings.warn(f"helion_ops: cannot use the code cache {want} ({e}); writing generated code to {d} "
                          "for this process (set HELION_OPS_CACHE_DIR to a writable directory)", CacheWarning, 2)
    from .autotune.cache import atomic_write, source_hash
    path = os.path.join(_CODE_DIRS[want], f"{name}_{source_hash(src)[:20]}.py")
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path) as f:
        if f.read() == src:
            return path
    atomic_write(path, src)
    return path

def recording(var: contextvars.ContextVar) -> Any: return scoped(var, [])

record_launches = functools.partial(recording, _RECORD)  # each call in the block appends (BoundKernel, Config, args)

class RunContext:
    """One execution of a kernel's host code under a Config: "launch", or a dry run ("codegen" collects
    sources and compile specs; "facts" the lowered IRs, registered block sizes and tunables)."""
    def __init__(self, bound: BoundKernel, config: Config, mode: str = "launch") -> None:
        self.bound, self.config, self.mode = bound, config, mode
        self._block_sizes = config.get("block_sizes") or []  # thawed once: block_size runs on every call
        self.sources, self.specs, self.irs = [], [], []  # per compiled loop: source, compile spec, (IR, Layout)
        self.registered, self.tunables = {}, {}  # "facts": bounds of each registered block size, tunables
        self.compiled: dict[tuple, Compiled] = {}  # (loop, launch key) -> binary, for this Config
        self.replay, self.recorded = None, False  # the replay function of this Config's first run (replay_host)
    def block_size(self, bid: int, *bounds: Any) -> int:
        if self.mode == "facts":
            self.registered[bid] = (bounds[0], bounds[1]) if len(bounds) > 1 else (None, bounds[0] if bounds else None)
        bs = self._block_sizes
        return int(bs[bid]) if bid < len(bs) else self.bound.default_block(bid)
    def tunable(self, name: str, fragment: Any) -> Any:
        if self.mode == "facts":
            self.tunables[name] = fragment
        return self.config[name] if name in self.config else getattr(fragment, "default", lambda: fragment)()
    def launch(self, i: int, host_locals: dict) -> None:  # the host code's __hl_launch__
        self.bound.launch(i, host_locals, self)

class Kernel:
    """A Helion-language kernel. Call it like the function it decorates."""
    def __init__(self, fn: Callable, *, config: Config | dict | None = None, configs: list | None = None,
                 static_shapes: bool = True, autotune_effort: str = "none", name: str | None = None,
                 **settings: Any) -> None:
        self.fn, self.name, self.settings = fn, name or fn.__name__, settings
        self.configs = [c if isinstance(c, Config) else Config(**c)
                        for c in ([] if config is None else [config]) + list(configs or [])]
        self.static_shapes, self.autotune_effort = static_shapes, autotune_effort
        self.signature = inspect.signature(fn)
        self.param_defaults = tuple((p.name, p.default) for p in self.signature.parameters.values())  # Dynamo reads it
        self.op_key = compile_op.register(self)  # names it under torch.compile
        self._bound: dict = {}  # spec key -> BoundKernel
        self.__doc__, self.__name__, self.__wrapped__ = fn.__doc__, fn.__name__, fn
    @functools.cached_property
    def parsed(self) -> frontend.ParsedKernel: return frontend.parse(self.fn)
    def normalize_args(self, args: tuple, kwargs: dict) -> tuple:
        if any(type(a) is hl_constexpr for a in args) or any(type(a) is hl_constexpr for a in kwargs.values()):
            args = tuple(a.value if type(a) is hl_constexpr else a for a in args)
            kwargs = {k: v.value if type(v) is hl_constexpr else v for k, v in kwargs.items()}
        if not kwargs and len(args) == len(self.signature.parameters):
            return args
        try:
            ba = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise exc.InputError(f"{self.name}(): {e}") from None
        ba.apply_defaults()
        return tuple(ba.arguments.values())
    def bind(self, args: tuple) -> BoundKernel:
        """The BoundKernel of ``args``' specialization key (one per key, whatever the threads)."""
        b = self._bound.get(key := spec_key(args))
        if b is None:
            with _BIND_LOCK:
                b = self._bound.get(key) or self._bound.setdefault(key, BoundKernel(self, args))
        return b
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():  # traced as one custom op (compile_op.py)
            return compile_op.call(self, args, kwargs)
        args = self.normalize_args(args, kwargs)
        return (self._bound.get(spec_key(args)) or self.bind(args))(*args)
    def autotune(self, args: tuple, effort: str = "quick", **kw: Any) -> Config:
        """Search the config space on ``args``; the best Config is cached and used from then on."""
        b = self.bind(self.normalize_args(tuple(args), {}))
        from .autotune import autotune
        b.config = autotune(b, tuple(args), effort, **{"cache_key": b.cache_key(), **kw})
        return b.config
    def reset(self) -> None: self._bound.clear()

# Both keys run on every call: exact-type set lookups, with isinstance only for the rare rest.
_TENSORS = {torch.Tensor, torch.nn.Parameter}
_BY_VALUE = {int, bool, str, type(None), types.ModuleType}

def spec_key(args: tuple) -> tuple:
    """What a kernel specialises on: tensor dtype/shape/strides/device, int and str values, and the
    code of a function argument (it is inlined: another function is another kernel)."""
    return tuple([(a.dtype, a.shape, a.stride(), a.is_cuda) if type(a) in _TENSORS
                  else float if type(a) is float
                  else (type(a), a) if type(a) in _BY_VALUE
                  else _spec_key_other(a) for a in args])

def _spec_key_other(a: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return (a.dtype, a.shape, a.stride(), a.is_cuda)
    if isinstance(a, (int, str)):
        return (type(a), a)
    return (types.FunctionType, a.__code__) if type(a) is types.FunctionType else type(a)

def _launch_key(values: list) -> tuple:
    """What one device loop specialises on: 16-byte pointer alignment too (Triton compiles an aligned pointer into
    wider loads: a misaligned view needs its own binary); floats by type (runtime arguments)."""
    return tuple([(v.dtype, v.shape, v.stride(), not v.data_ptr() & 15) if type(v) in _TENSORS
                  else float if type(v) is float
                  else v if type(v) in _BY_VALUE
                  else _launch_key_other(v) for v in values])

def _launch_key_other(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return (v.dtype, v.shape, v.stride(), not v.data_ptr() & 15)
    if isinstance(v, float):
        return float
    if type(v) is hl_constexpr:  # keyed by the value it wraps (the device loop branches on it)
        return (hl_constexpr, _launch_key([v.value]))
    return repr(v) if isinstance(v, (list, dict, set)) else v

class Compiled:
    """One compiled device loop. The first launch goes through ``fn[grid](...)``, which compiles; later ones go
    straight to a launcher (``backends.triton.launcher``), skipping Triton's per-call re-specialisation: our launch
    key already pins what Triton specialises on (dtypes, shapes, strides, 16-byte alignment)."""
    __slots__ = ("fn", "grid", "num_warps", "num_stages", "arg_index", "alloc", "interp", "fast", "makes")
    def __init__(self, fn: Any, gen: Any, names: list[str], interp: bool) -> None:
        self.fn, self.grid, self.num_warps, self.num_stages = fn, gen.grid, gen.num_warps, gen.num_stages
        self.arg_index = [names.index(src) for _, _, src in gen.params]
        self.makes = [(j, kind) for j, (_, kind, _) in enumerate(gen.params) if callable(kind)]
        self.alloc, self.interp, self.fast = gen.uses_descriptors, interp, None
    def args_of(self, values: list) -> list:
        args = [values[i] for i in self.arg_index]
        for j, make in self.makes:   # a callable kind: what it makes of the value (a TMA descriptor)
            args[j] = make(args[j])
        if self.alloc:   # device-side TMA descriptors
            _ensure_allocator()
        return args
    def launch(self, values: list) -> None:
        if self.fast is not None:
            return self.fast(self.grid, values)
        g = self.grid
        if g[0] == 0:
            return
        args = self.args_of(values)
        if self.interp:
            with _INTERPRETER_LOCK:  # it patches triton.language while a kernel runs: one at a time
                self.fn[g](*args, num_warps=self.num_warps, num_stages=self.num_stages)
        else:
            k = self.fn[g](*args, num_warps=self.num_warps, num_stages=self.num_stages)
            from triton import knobs  # direct launches skip Triton's launch hooks: only when a profiler set none
            hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
            if hasattr(k, "packed_metadata") and not any(getattr(h, "calls", h) for h in hooks) \
                    and os.environ.get("HELION_OPS_SLOW_LAUNCH") != "1":
                dev = next((a.device.index for a in args if isinstance(a, torch.Tensor)), None) or 0
                self.fast = launcher(k, dev, self.arg_index, self.args_of, not (self.makes or self.alloc))

def _check_interpreter() -> None:
    """Triton 3.6's interpreter turns loop bounds into 1-element arrays, which numpy >= 2.4 no longer converts to
    ints: every loop over program ids would fail with an obscure TypeError. Say so (once per compile: cheap)."""
    tv, nv = (tuple(int(x) for x in m.__version__.split(".")[:2]) for m in (triton, numpy))
    if tv < (3, 7) and nv >= (2, 4):
        raise exc.InputError(f"TRITON_INTERPRET=1 with Triton {triton.__version__} needs numpy < 2.4 "
                             f"(found {numpy.__version__}); use Triton >= 3.7 or pip install 'numpy<2.4'")

class BoundKernel:
    """A kernel specialised on one argument signature (CONTRACTS §2)."""
    def __init__(self, kernel: Kernel, args: tuple) -> None:
        self.kernel, self.pk, self.example_args, self.name = kernel, kernel.parsed, args, kernel.name
        # loop -> hoist plan; (loop, lowering key) -> lowered IRs (see _compile); (loop, Config, launch key) -> binary
        self._plans, self._lowered, self._compiled = {}, {}, {}
        self._lock = threading.RLock()  # lowering and compiling: once per key, whatever the threads
        self._facts, self._ctx, self._host = None, None, self.pk.host_fn
        _check_devices(kernel, args)
    @functools.cached_property
    def config(self) -> Config:
        """Chosen on first use: the kernel's config (the fastest of several on a GPU), else one tuned at
        its ``autotune_effort`` (or $HELION_AUTOTUNE_EFFORT) off the interpreter, else the default."""
        from .autotune import autotune
        configs, interp = self.kernel.configs, interpret_mode()
        if len(configs) > 1 and not interp and torch.cuda.is_available():
            return autotune(self, self.example_args, "none", candidates=[self.normalize(c) for c in configs])
        if configs:
            return self.normalize(configs[0])
        effort = os.environ.get("HELION_AUTOTUNE_EFFORT", self.kernel.autotune_effort)
        if effort == "none" or interp:
            return self.default_config()
        return autotune(self, self.example_args, effort, cache_key=self.cache_key())
    def cache_key(self) -> tuple: return (self.pk.source_hash, repr(spec_key(self.example_args)))
    @functools.cached_property
    def config_space(self) -> Any: return space.space_for(self)
    def default_config(self) -> Config: return self.config_space.default()
    def normalize(self, cfg: Config) -> Config: return self.config_space.normalize(cfg)
    def default_block(self, bid: int) -> int: return space.default_block(self, bid)
    def facts(self) -> dict:
        """Static facts of the device loops (extents, loops, loads) from a dry run on meta tensors."""
        self._facts = self._facts or space.collect_facts(self)
        return self._facts
    def __call__(self, *args: Any) -> Any:
        ctx = self._ctx
        if ctx is None or ctx.config is not self.config:
            ctx = self._ctx = RunContext(self, self.config)
        outer = _TRACE.get()
        if outer is not None:
            outer[2] = False  # a kernel called from another's host code: that one cannot replay
        rec = _RECORD.get()
        if rec is not None:
            rec.append((self, self.config, args))
        r = ctx.replay
        if r is not None and REPLAY:
            out = r(args)
            if out is not MISS:
                return out
        if ctx.recorded or not REPLAY or not self.kernel.settings.get("replay_host"):
            return self._exec(ctx, args)
        with recording(_TRACE) as trace:  # run the host code once, noting each launch (see replay.py)
            trace += [self, [], True]
            out = self._exec(ctx, args)
        ctx.recorded = True
        if trace[2]:
            with contextlib.suppress(NotReplayable):
                ctx.replay = replay_of(args, trace[1], out)
        return out
    def run(self, config: Config, *args: Any) -> Any:
        """Run the whole kernel (host code and launches) under ``config``."""
        rec = _RECORD.get()
        if rec is not None:
            rec.append((self, config, args))
        return self._exec(RunContext(self, config), args)
    def _exec(self, ctx: RunContext, args: tuple) -> Any: return compile_op.run_host(self._host, ctx, args)
    def _host_fn(self) -> Callable: return self._host
    def launch(self, i: int, host_locals: dict, ctx: RunContext) -> None:
        p = self._plans.get(i)
        if p is None:
            p = self._plans[i] = pipeline.hoist_plan(self.pk, self.pk.loops[i], host_locals)
        names, hoisted, hoist_ids, _, gather = p
        glb = self.pk._host_globals
        try:
            values = list(eval(gather, glb, host_locals))
        except NameError:  # a name this call's host code left unbound: None, as for a missing global
            values = [host_locals[n] if n in host_locals else glb.get(n) for n in names]
            values += [eval(code, glb, host_locals) for code in hoisted]
        if ctx.mode != "launch":
            return self._compile(i, names + hoist_ids, values, ctx)  # a dry run: compiles nothing
        # The run context's cache needs no Config in its key (it has one); the bound kernel's outlives it.
        lk = (i, _launch_key(values))
        c = ctx.compiled.get(lk)
        if c is None:
            key = (i, ctx.config.key(), lk[1])
            with self._lock:  # one compile per key: a second thread waits for the first's
                c = self._compiled.get(key)
                if c is None:
                    if len(devs := {v.device for v in values if isinstance(v, torch.Tensor)}) > 1:
                        raise exc.InputError(f"{self.name}(): device loop reads tensors on different devices: "
                                             f"{sorted(map(str, devs))}")
                    c = self._compiled[key] = self._compile(i, names + hoist_ids, values, ctx)
            ctx.compiled[lk] = c
        tr = _TRACE.get()
        if tr is not None:
            if tr[0] is self:
                # A hoisted expression reading no float local (``1.0 / n``, ``float("-inf")``) is fixed
                # by the specialization key, so a replay may keep its value even when it is a float.
                fixed = [False] * len(names) + [not any(type(host_locals.get(n)) is float for n in code.co_names)
                                                for code in hoisted]
                tr[1].append((c, values, fixed))
            else:
                tr[2] = False
        c.launch(values)
    def _compile(self, i: int, names: list[str], values: list, ctx: RunContext) -> Compiled | None:
        # Device loop i is lowered once per specialization (its launch key, registered block sizes left out)
        # for every Config that agrees on the block sizes the lowering read as numbers (DeviceIR.deps).
        key = (i, tuple("block" if n in self.pk.registered else k for n, k in zip(names, _launch_key(values))))
        with self._lock:
            irs = self._lowered.setdefault(key, [])
            ir = next((ir for ir in irs if all(config_block(ctx.config, b) == v for b, v in ir.deps.items())), None)
            if ir is None:
                irs.append(ir := pipeline.lower(self.pk, i, dict(zip(names, values)), self._plans[i][3], ctx.config))
        if ctx.mode == "facts":
            ctx.irs.append(ir)
            return None
        o = space.offsets(self, i)
        layout = passes.Layout(o["load"], o["loop"], o["rdim"], self.default_block)
        ctx.irs.append((ir, layout))
        # Only code that the interpreter will run is written for it; code shown or built for a GPU is the GPU's.
        t = target() if ctx.mode == "launch" else dataclasses.replace(target(), interpreter=False)
        gen = pipeline.generate(self.pk, ir, i, ctx.config, t, layout, ctx.config.get("backend") or "triton")
        path = write_code(gen.fn_name, src := _HEADER + gen.source)
        if os.environ.get("HELION_PRINT_OUTPUT_CODE") == "1":
            print(f"# helion_ops generated code: {path}\n{src}", file=sys.stderr)
        ctx.sources.append(gen.source)
        ctx.specs.append({"path": path, "fn": gen.fn_name, "signature": gen.signature, "constexprs": {},
                          "num_warps": gen.num_warps, "num_stages": gen.num_stages})
        if ctx.mode != "launch":
            return None
        if t.interpreter:
            _check_interpreter()
            if gen.interpreter_cannot is not None:
                raise exc.NotSupported("hl.inline_asm_elementwise needs a CUDA GPU: Triton's interpreter cannot "
                                       "run inline PTX", gen.interpreter_cannot)
        return Compiled(getattr(load_module(path, os.path.basename(path)[:-3]), gen.fn_name), gen, names, t.interpreter)
    def dry_run(self, config: Config, mode: str) -> RunContext:
        """Run the host code without launching ("codegen" or "facts"): on meta tensors, or on the real
        arguments when the host code reads tensor values (``n = offsets[-1].item()`` cannot run on meta)."""
        ctx = RunContext(self, config, mode=mode)
        try:
            self._exec(ctx, compile_op.meta(self.example_args))
        except (RuntimeError, NotImplementedError) as e:
            if isinstance(e, exc.HelionOpsError) or "meta" not in str(e).lower():
                raise
            ctx = RunContext(self, config, mode=mode)
            self._exec(ctx, self.example_args)
        return ctx
    def _dry(self, config: Config | None) -> RunContext:
        return self.dry_run(self.config if config is None else self.normalize(config), "codegen")
    def to_triton_code(self, config: Config | None = None) -> str:
        """The generated Triton source of every device loop under ``config``."""
        return _HEADER + "\n\n".join(self._dry(config).sources)
    def explain(self, config: Config | None = None) -> str:
        """Each device loop as lowered (shared by every Config), its Plan under ``config`` (block sizes,
        masks, rolled reductions, descriptors), and the generated source."""
        ctx = self._dry(config)
        parts = [f"# {self.kernel.name} under {ctx.config}"]
        for (ir, layout), src in zip(ctx.irs, ctx.sources):
            with planning():
                passes.run(ir, ctx.config, layout, dump="")
                planned = I.format_ir(ir)
            parts += ["# lowered", I.format_ir(ir), "# planned", planned, "# generated", src]
        return "\n".join(parts)
    def compile_specs(self, config: Config) -> list[dict]: return self._dry(config).specs
    def compile_for_target(self, config: Config, target: tuple = ("cuda", 90, 32)) -> list:
        """Compile every device loop for ``target`` (no GPU needed); returns CompiledKernels."""
        return compile_specs_for_target(self.compile_specs(config), target)

@functools.cache
def target() -> Target:
    """The current GPU's arch and SM count (Hopper's 132 SMs without a GPU), and whether the interpreter runs code."""
    if torch.cuda.is_available() and not interpret_mode():
        p = torch.cuda.get_device_properties(0)
        return Target("cuda", p.major * 10 + p.minor, p.multi_processor_count, False)
    return Target(num_sms=132, interpreter=interpret_mode())

def num_sms() -> int:
    """Streaming multiprocessors of the current GPU (persistent grids launch one program each)."""
    return target().num_sms

try:
    from triton.runtime._allocation import _NULL_ALLOCATOR, _allocator as _ALLOCATOR_VAR
except ImportError:
    _ALLOCATOR_VAR = _NULL_ALLOCATOR = None

def _ensure_allocator() -> None:
    """Device-side tensor descriptors need scratch memory from a Triton allocator, kept in a ContextVar: a thread
    that never set one (autograd's backward thread, a DataLoader worker) has none: check on each launch."""
    if _ALLOCATOR_VAR is None or _ALLOCATOR_VAR.get() is _NULL_ALLOCATOR:
        triton.set_allocator(lambda size, alignment, stream: torch.empty(
            size, device="cuda" if torch.cuda.is_available() else "cpu", dtype=torch.int8))

def _check_devices(kernel: Kernel, args: tuple) -> None:
    name, interp = kernel.name, interpret_mode()
    tensors = [(p, a) for p, a in zip(kernel.signature.parameters, args) if isinstance(a, torch.Tensor)]
    for p, a in tensors:
        if a.is_nested:  # strides of a jagged layout are symbolic: no flat index arithmetic applies
            raise exc.InputError(f"{name}(): argument '{p}' is a nested (jagged) tensor, which helion_ops kernels "
                                 f"do not take; pass its values() and offsets() and tile with hl.tile(begin, end)")
        if a.device.type == "cpu" and not interp:
            raise exc.InputError(f"{name}(): argument '{p}' is a CPU tensor; helion_ops kernels run on CUDA "
                                 f"tensors (or on CPU under TRITON_INTERPRET=1)")
        if a.device.type == "cuda" and interp:
            raise exc.InputError(f"{name}(): argument '{p}' is on CUDA but TRITON_INTERPRET=1 runs on CPU tensors")
    if len({a.device for _, a in tensors}) > 1:
        desc = ", ".join(f"{p}: {a.device}" for p, a in tensors)
        raise exc.InputError(f"{name}(): tensors are on different devices ({desc})")
