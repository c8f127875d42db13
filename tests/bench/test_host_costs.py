"""Host-side costs on CPU (pytest-benchmark, DESIGN §6): codegen time of every catalog kernel and
the autotuner's per-candidate overhead. `pytest --benchmark-only tests/bench/` runs these with the
dispatch benchmark of test_host_overhead.py; scripts/test compares them with the stored baseline
tests/bench/data/benchmarks/baseline.json (see the README).

Codegen: each catalog kernel (every helion_ops.dsl kernel object in ``helion_ops.ops.<op>``) is bound to the
arguments the op itself passes it on its first SMALL_SHAPES case (forward, and backward for ops with
gradients), then a fresh copy of the kernel (nothing parsed or bound yet) generates its Triton source
for the default config: parse + specialise + lower + emit, no Triton compile.

Autotuner: a search over the real config space of the matmul kernel, where each candidate costs what
the tuner does on the host per candidate (search step, normalise, generate the candidate's code) and
a synthetic time instead of a GPU measurement.
"""
import copy
import functools
import random
import zlib

import pytest
import torch

ROUNDS = dict(rounds=5, iterations=1, warmup_rounds=1)


def _discover():
    """(ops by NAME, [(op, kernel attribute name)]) for the catalog; empty while it does not import."""
    try:
        import importlib

        from bench import catalog
        from helion_ops.dsl.runtime import Kernel

        ops, _ = catalog.discover()
        kernels = {op: importlib.import_module(f"helion_ops.ops.{op}") for op in ops}
    except Exception:
        return {}, [], {}
    return ops, [(op, name) for op, mod in kernels.items() for name, k in vars(mod).items()
                 if isinstance(k, Kernel)], kernels


OPS, KERNELS, OP_MODS = _discover()



@functools.lru_cache(maxsize=None)
def _exercise(op: str) -> str | None:
    """Run op once (fwd, and bwd when it has gradients) on its first SMALL_SHAPES case; None or why not."""
    from bench import case

    mod = OPS[op]
    try:
        inputs = mod.make_inputs(mod.SMALL_SHAPES[0], torch.float32, "cpu")
        case.prepare(mod.impl, inputs, "fwd", [])
        idx = case.grad_indices(mod, inputs)
        if idx:
            case.prepare(mod.impl, inputs, "bwd", idx)
    except Exception as e:  # the op's correctness is tests/ops' job
        return f"{type(e).__name__}: {e}"
    return None


def _bound_args(op: str, kernel):
    """The arguments op bound kernel to (skip when it never launched it on SMALL_SHAPES)."""
    why = _exercise(op)
    if why:
        pytest.skip(f"{op} does not run on SMALL_SHAPES[0]: {why}")
    bound = list(getattr(kernel, "_bound", {}).values())
    if not bound:
        pytest.skip(f"{op}.{kernel.name} is not launched on SMALL_SHAPES[0]")
    return bound[0].example_args


def _fresh(kernel):
    """A copy of kernel with nothing parsed, bound or compiled."""
    k = copy.copy(kernel)
    for attr, empty in (("_parsed", None), ("_bound", {})):
        if attr in vars(k):
            setattr(k, attr, copy.copy(empty))
    return k


@pytest.mark.skipif(not KERNELS, reason="the op catalog does not import")
@pytest.mark.parametrize("op,name", KERNELS or [(None, None)], ids=[f"{o}.{n}" for o, n in KERNELS] or ["none"])
@pytest.mark.benchmark(group="codegen")
def test_codegen_time(benchmark, op, name):
    kernel = getattr(OP_MODS[op], name)
    args = _bound_args(op, kernel)

    def codegen():
        b = _fresh(kernel).bind(args)
        return b.to_triton_code(b.default_config())

    code = benchmark.pedantic(codegen, **ROUNDS)
    assert "@triton.jit" in code


@pytest.mark.skipif("matmul" not in OPS, reason="no matmul op in the catalog")
@pytest.mark.benchmark(group="autotune")
def test_autotuner_overhead_per_candidate(benchmark):
    from helion_ops.dsl.autotune import Effort, autotune

    kernel = next(getattr(OP_MODS[o], n) for o, n in KERNELS if o == "matmul")
    bound = _fresh(kernel).bind(_bound_args("matmul", kernel))
    seen = []

    def objective(cfg):  # host work per candidate, synthetic device time
        seen.append(cfg)
        bound.to_triton_code(cfg)
        return 1e-3 * (1 + zlib.crc32(repr(cfg).encode()) % 1000 / 1000)

    effort = Effort("bench", population=6, generations=1, pattern_evals=4, max_evals=12, reps=1)

    def tune():
        seen.clear()
        return autotune(bound, bound.example_args, effort, objective=objective, cache=False,
                        progress=False, rng=random.Random(0))

    cfg = benchmark.pedantic(tune, rounds=3, iterations=1, warmup_rounds=0)
    assert cfg is not None and seen
    benchmark.extra_info["candidates"] = len(seen)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ms_per_candidate"] = round(benchmark.stats.stats.median / len(seen) * 1e3, 3)
