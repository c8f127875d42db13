"""The compiler's stage contracts: lowering is Config-free (one lowering per specialization serves every
Config), block-size branches resolve per Config, and the modules form no import cycle."""
from __future__ import annotations

import ast
import pathlib

import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import Config, pipeline

from . import kernels as K

DSL = pathlib.Path(helion.__file__).parent


@helion.kernel()
def branch_on_block_host(x: torch.Tensor) -> torch.Tensor:
    (n,) = x.size()
    bs = hl.register_block_size(n)
    small = hl.constexpr(bs < 64)
    out = torch.empty_like(x)
    for t in hl.tile(n, block_size=bs):
        if small:
            out[t] = x[t] + 1
        else:
            out[t] = x[t] + 2
    return out


@helion.kernel()
def branch_on_block_device(x: torch.Tensor) -> torch.Tensor:
    (n,) = x.size()
    bs = hl.register_block_size(n)
    out = torch.empty_like(x)
    for t in hl.tile(n, block_size=bs):
        if hl.constexpr(bs < 64):
            out[t] = x[t] + 1
        else:
            out[t] = x[t] + 2
    return out


@pytest.mark.parametrize("kernel", [branch_on_block_host, branch_on_block_device], ids=["host", "device"])
@pytest.mark.parametrize("block,added", [(16, 1.0), (32, 1.0), (64, 2.0), (128, 2.0)])
def test_constexpr_branch_on_block_size_follows_the_config(kernel, block, added):
    x = torch.randn(257)
    out = kernel.bind((x,)).run(Config(block_sizes=[block]), x)
    torch.testing.assert_close(out, x + added)


def test_each_device_loop_is_lowered_once_for_every_config():
    x = torch.randn(37, 300)
    bound = K.softmax.bind((x,))
    bound.config_space  # the space's dry run lowers each loop once
    before = pipeline.LOWERINGS[0]
    sources = {bound.to_triton_code(Config(block_sizes=[b], reduction_loops=[r], num_warps=w))
               for b in (1, 2, 8) for r in (None, 64) for w in (4, 8)}
    out = bound.run(Config(block_sizes=[4], reduction_loops=[128]), x)
    assert pipeline.LOWERINGS[0] == before, "a new Config lowered a device loop again"
    assert len(sources) == 6  # block size and chunking change the code; num_warps only the launch
    torch.testing.assert_close(out, torch.softmax(x.double(), 1).float(), rtol=1e-5, atol=1e-6)


def test_a_block_size_used_as_a_number_relowers_only_for_other_sizes():
    @helion.kernel()
    def scaled(x: torch.Tensor) -> torch.Tensor:
        (n,) = x.size()
        bs = hl.register_block_size(n)
        out = torch.empty_like(x)
        for t in hl.tile(n, block_size=bs):
            out[t] = x[t] * bs
        return out

    x = torch.randn(100)
    b = scaled.bind((x,))
    for block in (16, 32, 16, 32):
        torch.testing.assert_close(b.run(Config(block_sizes=[block]), x), x * block)
    assert len(b._lowered) == 1 and len(next(iter(b._lowered.values()))) == 2  # one lowering per size read


# ---- the import graph ---------------------------------------------------------------------------

# Stages in pipeline order; a module may import its own stage and earlier ones, never a later one.
STAGE = {
    "exc": 0, "plan": 0, "target": 0, "fragments": 0, "config": 0, "language": 1, "autotuner": 1,
    "frontend": 2, "types": 2, "ir": 2, "opdefs": 2, "inline": 3, "ops": 3, "ops_extra": 3, "ops_dispatch": 3,
    "indexing": 3, "lower": 3, "passes": 4, "space": 4, "backends": 5, "pipeline": 6,
    "replay": 6, "compile_op": 6, "runtime": 7, "__init__": 9,
}


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for p in DSL.rglob("*.py"):
        rel = p.relative_to(DSL).with_suffix("")
        mod = ".".join(rel.parts)
        pkg = rel.parts[:-1]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):  # function-level imports count
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(pkg[: len(pkg) - (node.level - 1)]) + ([node.module] if node.module else [])
                elif (node.module or "").startswith("helion_ops.dsl"):
                    base = (node.module or "").split(".")[2:]
                else:
                    continue
                for a in node.names:
                    cand = ".".join(base + [a.name])
                    deps.add(cand if (DSL / (cand.replace(".", "/") + ".py")).exists() else ".".join(base))
            elif isinstance(node, ast.Import):
                deps.update(".".join(a.name.split(".")[2:]) for a in node.names if a.name.startswith("helion_ops.dsl."))
        graph[mod] = {d for d in deps if d and d != mod and d != "__init__"}
    return graph


def test_no_import_cycles_in_the_dsl():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]) if d in path
                                     else f"import cycle through {d}")
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_no_module_imports_a_later_stage():
    for mod, deps in _imports().items():
        top = mod.split(".")[0]
        if top == "autotune":
            continue  # the tuner sits beside the runtime, after codegen
        for d in deps:
            dtop = d.split(".")[0]
            if dtop == "autotune":
                assert top in ("runtime", "__init__", "autotuner"), f"{mod} imports the tuner"
                continue
            assert STAGE[dtop] <= STAGE[top], f"{mod} (stage {STAGE[top]}) imports the later stage {d}"


def test_language_imports_nothing_of_the_compiler():
    assert _imports()["language"] <= {"exc"}


def test_explain_shows_the_lowered_ir_the_plan_and_the_source():
    x = torch.randn(5, 300)
    text = K.softmax.bind((x,)).explain(Config(block_sizes=[2], reduction_loops=[64]))
    lowered, planned = text.split("# lowered")[1].split("# planned")
    assert "block_sizes[0]" in lowered and "r0: extent 300\n" in lowered  # no Config in the lowered IR
    assert "block 2, masked" in planned and "rolled in 64" in planned.split("# generated")[0]
    assert "tl.range(0, 300, 64)" in text


def test_dump_ir_after_a_named_pass(monkeypatch, capfd):
    monkeypatch.setenv("HELION_OPS_DUMP_IR", "lower,decide_masks")
    x = torch.randn(3, 17)
    K.softmax.bind((x,)).to_triton_code(Config(block_sizes=[4]))
    err = capfd.readouterr().err
    assert "# after lower" in err and "# after decide_masks" in err and "# after assign_indexing" not in err
    assert "block 4, masked" in err.split("# after decide_masks")[1]


def test_bound_kernels_implement_the_tuner_protocol_and_launches_can_be_recorded():
    from helion_ops.dsl.autotune import Tunable
    from helion_ops.dsl.runtime import record_launches

    x = torch.randn(3, 17)
    bound = K.softmax.bind((x,))
    for name in [n for n in vars(Tunable) if not n.startswith("_")] + list(Tunable.__annotations__):
        assert hasattr(bound, name), name
    with record_launches() as log:
        K.softmax(x)
        K.softmax(x)  # a replayed call is recorded too
    assert [(b.name, type(c).__name__) for b, c, _ in log] == [("softmax", "Config")] * 2
    assert log[0][2][0] is x


def test_every_op_lowering_emits_is_declared_and_has_triton_code():
    import re
    from helion_ops.dsl.backends.triton.ops import EMIT
    from helion_ops.dsl.opdefs import OPS

    emitted = set()
    for p in DSL.glob("*.py"):
        emitted |= set(re.findall(r'(?:emit|Value)\("([a-z_0-9]+)"', p.read_text()))
    assert emitted and emitted <= set(OPS), sorted(emitted - set(OPS))
    assert set(OPS) <= set(EMIT) | {"phi", "atomic_result"}, sorted(set(OPS) - set(EMIT))  # those two are named, never emitted
