"""Runtime: Kernel objects, binding, the compile cache and launches.

``Kernel.__call__`` binds on a specialization key (dtypes, shapes, strides),
picks a Config once per bound kernel (given, pretuned, tuned or default), then
runs the rewritten host function; each ``__hl_launch__(i, locals())`` compiles
device loop i on first use and launches it. Later calls do no codegen; for a ``replay_host``
kernel they skip the host code too, replaying the first call's launches (``replay.py``).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import inspect
import os
import sys
import tempfile
import threading
import types
import warnings
from typing import Any, Callable, Iterator

import torch

from . import compile_op, exc, frontend, ir as I, passes, pipeline
from .backends.triton import compile_specs_for_target, load_module
from .config import Config
from .language import _RUN, current_run, constexpr as hl_constexpr
from .lower import config_block
from .plan import planning
from .pipeline import hoist_plan
from .replay import MISS as _MISS, NotReplayable, Replay
from .space import offsets
from .target import Target

# [bound kernel, its launches, still valid] while a replay_host kernel's run is recorded; a context
# variable, so a first call on another thread records its own launches only.
_TRACE: contextvars.ContextVar = contextvars.ContextVar("helion_ops_trace", default=None)
# The launches being recorded by record_launches(), or None (one context-variable read per call).
_RECORD: contextvars.ContextVar = contextvars.ContextVar("helion_ops_record", default=None)
# HELION_OPS_NO_REPLAY=1 runs every kernel's host code on every call (debugging; failure-injection tests).
REPLAY = os.environ.get("HELION_OPS_NO_REPLAY") != "1"

def interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"

class CacheWarning(UserWarning):
    """The code cache directory cannot be used; generated code goes to a temporary directory."""

_CODE_DIRS: dict[str, str] = {}

def code_dir() -> str:
    """Where generated modules are written: ``$HELION_OPS_CACHE_DIR/code`` (``~/.cache/helion_ops/code``).
    When it cannot be created or written (a read-only home, a path that is a file), a private temporary
    directory instead, with one CacheWarning: kernels still compile and run."""
    want = os.path.join(os.environ.get("HELION_OPS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                               "helion_ops"), "code")
    d = _CODE_DIRS.get(want)
    if d is None:
        try:
            os.makedirs(want, exist_ok=True)
            if not os.access(want, os.W_OK | os.X_OK):
                raise PermissionError(f"not writable: {want}")
            d = want
        except OSError as e:
            d = tempfile.mkdtemp(prefix="helion_ops-code-")
            warnings.warn(f"helion_ops: cannot use the code cache {want} ({e}); writing generated code to {d} "
                          "for this process (set HELION_OPS_CACHE_DIR to a writable directory)", CacheWarning, 2)
        _CODE_DIRS[want] = d
    return d

def write_code(name: str, src: str) -> str:
    """The path of a module holding ``src``, named by its hash: written once, through a private temporary
    file (threads and processes never see a half-written module), and rewritten when what is on disk is
    not ``src`` (a corrupt or truncated file would otherwise fail every later process)."""
    h = hashlib.sha256(src.encode()).hexdigest()[:20]
    path = os.path.join(code_dir(), f"{name}_{h}.py")
    try:
        with open(path) as f:
            if f.read() == src:
                return path
    except (OSError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{name}_", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(src)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path

@contextlib.contextmanager
def recording(var: contextvars.ContextVar) -> Iterator[list]:
    """Set ``var`` to a fresh list for the block and yield it (what the code under it appends)."""
    log: list = []
    tok = var.set(log)
    try:
        yield log
    finally:
        var.reset(tok)

def record_launches() -> Any:
    """Within the block, every kernel call appends (BoundKernel, Config, args) to the yielded list: how
    a caller (bench.tune) learns which kernels an op ran, on what, under which Config."""
    return recording(_RECORD)

_BIND_LOCK = threading.RLock()  # binding parses and dry-runs: rare, so one lock for every kernel

class RunContext:
    """State of one execution of a kernel's host function under a Config."""

    def __init__(self, bound: "BoundKernel", config: Config, mode: str = "launch") -> None:
        self.bound, self.config, self.mode = bound, config, mode
        self._block_sizes = config.get("block_sizes") or []  # thawed once: block_size runs on every call
        self.sources: list[str] = []
        self.specs: list[dict] = []
        self.irs: list[Any] = []
        self.compiled: dict[tuple, "Compiled"] = {}  # (loop, launch key) -> binary, for this Config
        self.replay: Any = None         # Replay(...).run of this Config's first run (replay_host kernels)
        self.recorded = False

    def block_size(self, bid: int, *bounds: Any) -> int:
        if self.mode == "facts":
            self.registered = getattr(self, "registered", {})
            self.registered[bid] = (bounds[0], bounds[1]) if len(bounds) > 1 else (None, bounds[0] if bounds else None)
        bs = self._block_sizes
        if bid < len(bs):
            return int(bs[bid])
        return self.bound.default_block(bid)

    def tunable(self, name: str, fragment: Any) -> Any:
        if self.mode == "facts":
            self.tunables = getattr(self, "tunables", {})
            self.tunables[name] = fragment
        if name in self.config:
            return self.config[name]
        return fragment.default() if hasattr(fragment, "default") else fragment

def _launch_hook(i: int, host_locals: dict) -> None:
    ctx: RunContext = _RUN.get()
    ctx.bound.launch(i, host_locals, ctx)

class Kernel:
    """A Helion-language kernel. Call it like the function it decorates."""

    def __init__(self, fn: Callable, *, config: Config | dict | None = None, configs: list | None = None,
                 static_shapes: bool = True, autotune_effort: str = "none", name: str | None = None,
                 **settings: Any) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.configs = [c if isinstance(c, Config) else Config(**c) for c in (configs or [])]
        if config is not None:
            self.configs.insert(0, config if isinstance(config, Config) else Config(**config))
        self.static_shapes = static_shapes
        self.autotune_effort = autotune_effort
        self.settings = settings
        self.signature = inspect.signature(fn)
        self.param_defaults = tuple((p.name, p.default) for p in self.signature.parameters.values())  # Dynamo reads it
        self._parsed: frontend.ParsedKernel | None = None
        self._bound: dict[Any, BoundKernel] = {}
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    @property
    def parsed(self) -> frontend.ParsedKernel:
        if self._parsed is None:
            self._parsed = frontend.parse(self.fn)
        return self._parsed

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

    def bind(self, args: tuple) -> "BoundKernel":
        """Specialise on ``args``; returns the cached BoundKernel for their key (one per key, whatever
        the threads)."""
        key = spec_key(args)
        b = self._bound.get(key)
        if b is None:
            with _BIND_LOCK:
                b = self._bound.get(key)
                if b is None:
                    b = self._bound[key] = BoundKernel(self, args)
        return b

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():  # traced as one custom op (compile_op.py)
            return compile_op.call(self, args, kwargs)
        args = self.normalize_args(args, kwargs)
        key = spec_key(args)
        b = self._bound.get(key)
        if b is None:
            b = self.bind(args)
        return b(*args)

    def autotune(self, args: tuple, effort: str = "quick", **kw: Any) -> Config:
        """Search the config space on ``args``; the best Config is cached and used from then on."""
        b = self.bind(self.normalize_args(tuple(args), {}))
        from .autotune import autotune as _autotune
        kw.setdefault("cache_key", b.cache_key())
        cfg = _autotune(b, tuple(args), effort, **kw)
        b.config = cfg
        return cfg

    def reset(self) -> None:
        self._bound.clear()

_Tensor = torch.Tensor
# Exact types keyed by value with no further test; tensors and Parameters by layout. Both keys run on
# every launch (several µs of host time per call on a slow host CPU), so they are one comprehension
# over exact-type set lookups, with isinstance only for the rare rest.
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
    if isinstance(a, _Tensor):
        return (a.dtype, a.shape, a.stride(), a.is_cuda)
    if isinstance(a, (int, str)):
        return (type(a), a)
    return (types.FunctionType, a.__code__) if type(a) is types.FunctionType else type(a)

def _launch_key(values: list) -> tuple:
    """What one device loop specialises on. Pointer alignment is part of it because Triton
    compiles a 16-byte-aligned pointer into wider loads; a misaligned view needs its own binary.
    Floats are keyed by type only (they are runtime arguments, not constants)."""
    return tuple([(v.dtype, v.shape, v.stride(), not v.data_ptr() & 15) if type(v) in _TENSORS
                  else float if type(v) is float
                  else v if type(v) in _BY_VALUE
                  else _launch_key_other(v) for v in values])

def _launch_key_other(v: Any) -> Any:
    if isinstance(v, _Tensor):
        return (v.dtype, v.shape, v.stride(), not v.data_ptr() & 15)
    if isinstance(v, float):
        return float
    if type(v) is hl_constexpr:  # keyed by the value it wraps (the device loop branches on it)
        return (hl_constexpr, _launch_key([v.value]))
    return repr(v) if isinstance(v, (list, dict, set)) else v

class Compiled:
    """One compiled device loop: the jit function, its params and grid.

    The first launch goes through ``fn[grid](...)``, which compiles and returns
    Triton's CompiledKernel; later launches call its launcher directly, skipping
    Triton's per-call re-specialisation (about half of a launch's host cost).
    Our launch key already pins everything Triton specialises on (dtypes, shapes,
    strides, 16-byte pointer alignment), so the same binary is valid."""

    __slots__ = ("fn", "params", "grid", "num_warps", "num_stages", "gen", "path", "arg_index", "fast", "device",
                 "descriptors")

    def __init__(self, fn, gen, path: str, names: list[str]) -> None:
        self.fn, self.gen, self.path = fn, gen, path
        self.params, self.grid = gen.params, gen.grid
        self.num_warps, self.num_stages = gen.num_warps, gen.num_stages
        self.arg_index = [names.index(src) for _, _, src in gen.params]
        self.fast = None
        self.device = None
        self.descriptors = gen.uses_descriptors

    def launch(self, values: list) -> None:
        args = [values[i] for i in self.arg_index]
        g = self.grid
        if g[0] == 0:
            return
        if self.descriptors:
            _ensure_allocator()
        k = self.fast
        if k is not None:
            k.run(g[0], g[1], g[2], _raw_stream(self.device), k.function, k.packed_metadata, None, None, None, *args)
            return
        if interpret_mode():
            _check_interpreter()
            if self.gen.interpreter_cannot is not None:
                raise exc.NotSupported("hl.inline_asm_elementwise needs a CUDA GPU: Triton's interpreter cannot "
                                       "run inline PTX", self.gen.interpreter_cannot)
            with _INTERPRETER_LOCK:  # it patches triton.language while a kernel runs: one at a time
                self.fn[g](*args, num_warps=self.num_warps, num_stages=self.num_stages)
            return
        k = self.fn[g](*args, num_warps=self.num_warps, num_stages=self.num_stages)
        if not interpret_mode() and _fast_launch_ok(k):
            self.fast = k
            self.device = next((a.device.index for a in args if isinstance(a, torch.Tensor)), None) or 0

_INTERPRETER_OK: bool | None = None
_INTERPRETER_LOCK = threading.Lock()

def _check_interpreter() -> None:
    """Triton 3.6's interpreter turns loop bounds into 1-element arrays, which numpy >= 2.4 no longer
    converts to ints: every loop over program ids would fail with an obscure TypeError. Say so once."""
    global _INTERPRETER_OK
    if _INTERPRETER_OK is None:
        import numpy
        import triton
        tv = tuple(int(x) for x in triton.__version__.split(".")[:2])
        nv = tuple(int(x) for x in numpy.__version__.split(".")[:2])
        _INTERPRETER_OK = not (tv < (3, 7) and nv >= (2, 4))
        if not _INTERPRETER_OK:
            raise exc.InputError(f"TRITON_INTERPRET=1 with Triton {triton.__version__} needs numpy < 2.4 "
                                 f"(found {numpy.__version__}); use Triton >= 3.7 or pip install 'numpy<2.4'")
    elif not _INTERPRETER_OK:
        raise exc.InputError("TRITON_INTERPRET=1 with Triton < 3.7 needs numpy < 2.4")

def _fast_launch_ok(k: Any) -> bool:
    """Direct launches skip Triton's launch hooks; only take them when none are installed."""
    try:
        from triton import knobs
        hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
    except Exception:
        return False
    # Triton <= 3.5 keeps None here; 3.6+ a HookChain that is empty unless a profiler added hooks.
    unhooked = all(h is None or not getattr(h, "calls", True) for h in hooks)
    return k is not None and hasattr(k, "packed_metadata") and unhooked \
        and os.environ.get("HELION_OPS_SLOW_LAUNCH") != "1"

def _raw_stream(device: int) -> int:
    return torch._C._cuda_getCurrentRawStream(device)

class BoundKernel:
    """A kernel specialised on one argument signature (CONTRACTS §2)."""

    def __init__(self, kernel: Kernel, args: tuple) -> None:
        self.kernel = kernel
        self.pk = kernel.parsed
        self.example_args = args
        self._plans: dict[int, tuple] = {}
        self._lowered: dict[tuple, list] = {}  # (loop, lowering key) -> lowered IRs (see _lower)
        self._lock = threading.RLock()  # lowering and compiling: once per key, whatever the threads
        self._compiled: dict[tuple, Compiled] = {}
        self._space = None
        self._facts: dict | None = None
        self._config: Config | None = None
        self._ctx: RunContext | None = None
        _check_devices(kernel.name, self.pk, args)

    # -- config selection ---------------------------------------------------------------------
    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = self._choose_config()
        return self._config

    @config.setter
    def config(self, cfg: Config) -> None:
        self._config = cfg

    def _choose_config(self) -> Config:
        if self.kernel.configs:
            return self.normalize(self.kernel.configs[0]) if len(self.kernel.configs) == 1 else self._pick(self.kernel.configs)
        effort = os.environ.get("HELION_AUTOTUNE_EFFORT", self.kernel.autotune_effort)
        if effort != "none" and not interpret_mode():
            from .autotune import autotune as _autotune
            return _autotune(self, self.example_args, effort, cache_key=self.cache_key())
        return self.default_config()

    def cache_key(self) -> tuple:
        """Tuning-cache identity: kernel source hash and specialization key."""
        return (self.pk.source_hash, repr(spec_key(self.example_args)))

    def _pick(self, configs: list[Config]) -> Config:
        if interpret_mode() or not torch.cuda.is_available():
            return self.normalize(configs[0])
        from .autotune import autotune as _autotune
        return _autotune(self, self.example_args, "none", candidates=[self.normalize(c) for c in configs])

    @property
    def config_space(self):
        if self._space is None:
            from .space import space_for
            self._space = space_for(self)
        return self._space

    def default_config(self) -> Config:
        return self.config_space.default()

    def normalize(self, cfg: Config) -> Config:
        try:
            return self.config_space.normalize(cfg)
        except AttributeError:
            return cfg

    def default_block(self, bid: int) -> int:
        from .space import default_block
        return default_block(self, bid)

    def facts(self) -> dict:
        """Static facts of the device loops (extents, loops, loads) from a dry run on meta tensors."""
        if self._facts is None:
            from .space import collect_facts
            self._collecting = True
            try:
                self._facts = collect_facts(self)
            finally:
                self._collecting = False
        return self._facts

    # -- running ------------------------------------------------------------------------------
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
            if out is not _MISS:
                return out
        if ctx.recorded or not REPLAY or not self.kernel.settings.get("replay_host"):
            return self._exec(ctx, args)
        return self._record(ctx, args)

    def _record(self, ctx: RunContext, args: tuple) -> Any:
        """Run the host code once, noting each launch, and keep a Replay of it (see replay.py)."""
        trace = [self, [], True]
        tok = _TRACE.set(trace)
        try:
            out = self._exec(ctx, args)
        finally:
            _TRACE.reset(tok)
        ctx.recorded = True
        if trace[2]:
            try:
                ctx.replay = Replay(args, trace[1], out).run
            except NotReplayable:
                pass
        return out

    def run(self, config: Config, *args: Any) -> Any:
        """Run the whole kernel (host code and launches) under ``config``."""
        rec = _RECORD.get()
        if rec is not None:
            rec.append((self, config, args))
        return self._exec(RunContext(self, config), args)

    @property
    def name(self) -> str:
        return self.kernel.name

    def _exec(self, ctx: RunContext, args: tuple) -> Any:
        fn = self._host_fn()
        tok = _RUN.set(ctx)
        try:
            return fn(*args)
        finally:
            _RUN.reset(tok)

    def _host_fn(self) -> Callable:
        f = getattr(self.pk, "_host_fn", None)
        if f is None:
            glb = dict(self.pk.globals)
            glb["__hl_launch__"] = _launch_hook
            glb["__hl_rt__"] = current_run
            f = types.FunctionType(self.pk.host_code, glb, self.pk.name, self.kernel.fn.__defaults__)
            f.__kwdefaults__ = self.kernel.fn.__kwdefaults__
            self.pk._host_fn = f  # type: ignore[attr-defined]
            self.pk._host_globals = glb  # type: ignore[attr-defined]
        return f

    def plan(self, i: int, host_locals: dict) -> tuple:
        p = self._plans.get(i)
        if p is None:
            p = hoist_plan(self.pk, self.pk.loops[i], host_locals)
            self._plans[i] = p
        return p

    def launch(self, i: int, host_locals: dict, ctx: RunContext) -> None:
        p = self._plans.get(i) or self.plan(i, host_locals)
        names, hoisted, hoist_ids, _, gather = p
        glb = self.pk._host_globals  # type: ignore[attr-defined]
        try:
            values = list(eval(gather, glb, host_locals))
        except NameError:  # a name this call's host code left unbound: None, as for a missing global
            values = [host_locals[n] if n in host_locals else glb.get(n) for n in names]
            values += [eval(code, glb, host_locals) for code in hoisted]
        if ctx.mode != "launch":
            self._compile(i, names + hoist_ids, values, ctx)
            return
        # The run context's own cache needs no Config in its key (it has one Config); the bound
        # kernel's cache outlives contexts (bound.run with a Config builds a fresh one).
        lk = (i, _launch_key(values))
        c = ctx.compiled.get(lk)
        if c is None:
            key = (i, ctx.config.key(), lk[1])
            c = self._compiled.get(key)
            if c is None:
                with self._lock:  # one compile per key: a second thread waits for the first's
                    c = self._compiled.get(key)
                    if c is None:
                        _check_launch(self.kernel.name, names, values)
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

    def _lower(self, i: int, names: list[str], values: list, config: Config) -> Any:
        with self._lock:
            return self._lower_locked(i, names, values, config)

    def _lower_locked(self, i: int, names: list[str], values: list, config: Config) -> Any:
        """Device loop i's IR for these host values: lowered once per specialization (the loop's launch key,
        with registered block sizes left out), for every Config that agrees on the block sizes the lowering
        read as numbers (``DeviceIR.deps``; none for most kernels)."""
        reg = self.pk.registered
        key = (i, tuple("block" if n in reg else k for n, k in zip(names, _launch_key(values))))
        irs = self._lowered.setdefault(key, [])
        for ir in irs:
            if all(config_block(config, bid) == v for bid, v in ir.deps.items()):
                return ir
        ir = pipeline.lower(self.pk, i, dict(zip(names, values)), self._plans[i][3], config)
        irs.append(ir)
        return ir

    def _compile(self, i: int, names: list[str], values: list, ctx: RunContext) -> Compiled:
        ir = self._lower(i, names, values, ctx.config)
        if ctx.mode == "facts":
            ctx.irs.append(ir)
            return None  # type: ignore[return-value]
        o = offsets(self, i)
        layout = passes.Layout(o["load"], o["loop"], o["rdim"], self.default_block)
        ctx.irs.append((ir, layout))
        # Code that will run under Triton's interpreter is written for it; code only shown or built for
        # a GPU (to_triton_code, compile_specs, the tuner's precompile) is the GPU's.
        t = target()
        if t.interpreter and ctx.mode != "launch":
            t = dataclasses.replace(t, interpreter=False)
        gen = pipeline.generate(self.pk, ir, i, ctx.config, t, layout, ctx.config.get("backend") or "triton")
        src = "import triton\nimport triton.language as tl\n\n\n" + gen.source
        path = write_code(gen.fn_name, src)
        if os.environ.get("HELION_PRINT_OUTPUT_CODE") == "1":
            print(f"# helion_ops generated code: {path}\n{src}", file=sys.stderr)
        ctx.sources.append(gen.source)
        ctx.specs.append({"path": path, "fn": gen.fn_name, "signature": gen.signature, "constexprs": {},
                          "num_warps": gen.num_warps, "num_stages": gen.num_stages})
        if ctx.mode != "launch":
            return None  # type: ignore[return-value]
        mod = load_module(path, os.path.basename(path)[:-3])
        return Compiled(getattr(mod, gen.fn_name), gen, path, names)

    # -- code inspection ----------------------------------------------------------------------
    def dry_run(self, config: Config, mode: str) -> RunContext:
        """Run the host code without launching ("codegen" or "facts"): on meta tensors (no memory,
        no device work), or on the real arguments when host code reads tensor values
        (``n = offsets[-1].item()`` cannot run on meta)."""
        ctx = RunContext(self, config, mode=mode)
        try:
            self._exec(ctx, _meta_args(self.example_args))
        except exc.HelionOpsError:
            raise
        except (RuntimeError, NotImplementedError) as e:
            if "meta" not in str(e).lower():
                raise
            ctx = RunContext(self, config, mode=mode)
            self._exec(ctx, self.example_args)
        return ctx

    def _dry(self, config: Config) -> RunContext:
        return self.dry_run(config, "codegen")

    def to_triton_code(self, config: Config | None = None) -> str:
        """The generated Triton source of every device loop under ``config``."""
        ctx = self._dry(self.normalize(config) if config is not None else self.config)
        return "import triton\nimport triton.language as tl\n\n\n" + "\n\n".join(ctx.sources)

    def explain(self, config: Config | None = None) -> str:
        """Each device loop as lowered (shared by every Config), its Plan under ``config`` (block sizes,
        masks, rolled reductions, descriptors), and the generated source."""
        cfg = self.normalize(config) if config is not None else self.config
        ctx = self._dry(cfg)
        parts = [f"# {self.kernel.name} under {cfg}"]
        for (ir, layout), src in zip(ctx.irs, ctx.sources):
            with planning():
                passes.run(ir, cfg, layout, dump="")
                planned = I.format_ir(ir)
            parts += ["# lowered", I.format_ir(ir), "# planned", planned, "# generated", src]
        return "\n".join(parts)

    def compile_specs(self, config: Config) -> list[dict]:
        return self._dry(self.normalize(config)).specs

    def compile_for_target(self, config: Config, target: tuple = ("cuda", 90, 32)) -> list:
        """Compile every device loop for ``target`` (no GPU needed); returns CompiledKernels."""
        return compile_specs_for_target(self.compile_specs(config), target)

def target() -> Target:
    """What this process generates code for, built once: the current GPU's arch and SM count (Hopper's
    132 SMs without a GPU), and whether Triton's interpreter runs it."""
    global _TARGET
    if _TARGET is None:
        interp = interpret_mode()
        if torch.cuda.is_available() and not interp:
            p = torch.cuda.get_device_properties(0)
            _TARGET = Target("cuda", p.major * 10 + p.minor, p.multi_processor_count, False)
        else:
            _TARGET = Target(num_sms=132, interpreter=interp)
    return _TARGET

def num_sms() -> int:
    """Streaming multiprocessors of the current GPU (persistent grids launch one program each)."""
    return target().num_sms

_TARGET: Target | None = None

def _meta_args(args: tuple) -> tuple:
    return tuple(torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device="meta")
                 if isinstance(a, torch.Tensor) else a for a in args)

def _scratch(size: int, alignment: int, stream: Any) -> torch.Tensor:
    return torch.empty(size, device="cuda" if torch.cuda.is_available() else "cpu", dtype=torch.int8)

def _allocator_var() -> tuple:
    """Triton's allocator ContextVar and its "none set" value; (None, None) for another layout."""
    try:
        from triton.runtime._allocation import _NULL_ALLOCATOR, _allocator
        return _allocator, _NULL_ALLOCATOR
    except ImportError:
        return None, None

_ALLOCATOR_VAR, _NULL_ALLOCATOR = _allocator_var()

def _ensure_allocator() -> None:
    """Device-side tensor descriptors need scratch memory from a Triton allocator.

    Triton keeps the allocator in a ContextVar, so a thread that never set one
    (autograd's backward thread, a DataLoader worker) starts with none: check on
    every launch of a descriptor kernel rather than once per process (one
    ContextVar read; without the ContextVar, setting it again is harmless)."""
    if _ALLOCATOR_VAR is None or _ALLOCATOR_VAR.get() is _NULL_ALLOCATOR:
        import triton
        triton.set_allocator(_scratch)

def _check_devices(name: str, pk: frontend.ParsedKernel, args: tuple) -> None:
    params = list(inspect.signature(pk.fn).parameters)
    tensors = [(p, a) for p, a in zip(params, args) if isinstance(a, torch.Tensor)]
    interp = interpret_mode()
    for p, a in tensors:
        if a.is_nested:  # strides of a jagged layout are symbolic: no flat index arithmetic applies
            raise exc.InputError(f"{name}(): argument '{p}' is a nested (jagged) tensor, which helion_ops kernels "
                                 f"do not take; pass its values() and offsets() and tile with hl.tile(begin, end)")
        if a.device.type == "cpu" and not interp:
            raise exc.InputError(f"{name}(): argument '{p}' is a CPU tensor; helion_ops kernels run on CUDA "
                                 f"tensors (or on CPU under TRITON_INTERPRET=1)")
        if a.device.type == "cuda" and interp:
            raise exc.InputError(f"{name}(): argument '{p}' is on CUDA but TRITON_INTERPRET=1 runs on CPU tensors")
    devs = {a.device for _, a in tensors}
    if len(devs) > 1:
        desc = ", ".join(f"{p}: {a.device}" for p, a in tensors)
        raise exc.InputError(f"{name}(): tensors are on different devices ({desc})")

def _check_launch(name: str, names: list[str], values: list) -> None:
    devs = {v.device for v in values if isinstance(v, torch.Tensor)}
    if len(devs) > 1:
        raise exc.InputError(f"{name}(): device loop reads tensors on different devices: {sorted(map(str, devs))}")
