"""Generated code: masks only where needed, source comments, sm_90 compile, printing."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from helion_ops.dsl import Config

from . import kernels as K


def test_no_mask_when_blocks_divide():
    x = torch.randn(64, 128)
    b = K.add_bias.bind((x, torch.randn(128)))
    code = b.to_triton_code(Config(block_sizes=[16, 32]))
    assert "mask" not in code
    assert "other=0" not in code


def test_mask_when_blocks_do_not_divide():
    x = torch.randn(65, 100)
    b = K.add_bias.bind((x, torch.randn(100)))
    code = b.to_triton_code(Config(block_sizes=[16, 32]))
    assert "mask_0 = indices_0 < 65" in code
    assert "mask_1 = indices_1 < 100" in code


def test_partial_masks():
    x = torch.randn(64, 100)  # rows divide, columns don't
    b = K.add_bias.bind((x, torch.randn(100)))
    code = b.to_triton_code(Config(block_sizes=[16, 32]))
    assert "mask_0" not in code and "mask_1 = indices_1 < 100" in code


def test_reduction_mask_only_for_non_pow2():
    assert "rmask" not in K.softmax.bind((torch.randn(4, 1024),)).to_triton_code()
    code = K.softmax.bind((torch.randn(4, 1000),)).to_triton_code()
    assert "rmask_0 = rindex_0 < 1000" in code
    assert "float('-inf')" in code  # masked lanes filled with max's neutral element


def test_src_comments_point_at_kernel_source():
    code = K.rms_norm.bind((torch.randn(4, 64), torch.randn(64))).to_triton_code()
    lines = re.findall(r"# src\[kernels\.py:(\d+)\]: (.*)", code)
    assert lines
    src = open(K.__file__).read().splitlines()
    for ln, text in lines:
        assert src[int(ln) - 1].strip() == text.strip()


def test_strides_make_non_contiguous_work():
    x = torch.randn(40, 8).t()
    code = K.softmax.bind((x,)).to_triton_code()
    assert "* 8" not in code.split("def ")[1].split("tl.store")[0] or "* 1" not in code
    assert "indices_0[:, None] + rindex_0[None, :] * 8" in code


def test_print_output_code_env(tmp_path):
    script = (
        "import os; os.environ['TRITON_INTERPRET']='1'\n"
        "import torch\nfrom tests.dsl import kernels as K\n"
        "K.row_sum(torch.randn(3, 17))\n"
    )
    env = dict(os.environ, HELION_PRINT_OUTPUT_CODE="1", HELION_OPS_CACHE_DIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "@triton.jit" in r.stderr and "tl.sum" in r.stderr


SM90_CASES = [
    ("add", lambda d: (torch.randn(64, 100, dtype=d), torch.randn(100, dtype=d)), None),
    ("add_bias", lambda d: (torch.randn(64, 100, dtype=d), torch.randn(100, dtype=d)), None),
    ("softmax", lambda d: (torch.randn(64, 4097, dtype=d),), None),
    ("softmax", lambda d: (torch.randn(64, 4097, dtype=d),), {"reduction_loops": [1024]}),
    ("softmax_decomposed", lambda d: (torch.randn(64, 1000, dtype=d),), None),
    ("softmax_two_pass", lambda d: (torch.randn(64, 1000, dtype=d),), {"block_sizes": [4, 256]}),
    ("rms_norm", lambda d: (torch.randn(64, 4096, dtype=d), torch.randn(4096, dtype=d)), None),
    ("layer_norm", lambda d: (torch.randn(64, 1000, dtype=d), torch.randn(1000, dtype=d), torch.randn(1000, dtype=d)), None),
    ("matmul", lambda d: (torch.randn(256, 128, dtype=d), torch.randn(128, 256, dtype=d)), None),
    ("row_sum", lambda d: (torch.randn(64, 1000, dtype=d),), None),
    ("grid_scale_add", lambda d: (torch.randn(64, 1000, dtype=d), torch.randn(64, 1000, dtype=d), 2.0), None),
]


@pytest.mark.parametrize("name,make,extra", SM90_CASES, ids=[c[0] + ("_looped" if c[2] else "") for c in SM90_CASES])
def test_compiles_for_sm90(name, make, extra):
    b = K.KERNELS[name].bind(make(torch.bfloat16))
    cfg = b.config.replace(**extra) if extra else b.config
    compiled = b.compile_for_target(cfg, ("cuda", 90, 32))
    assert compiled and all("ptx" in c.asm for c in compiled)


def test_matmul_tma_wgmma_in_ptx():
    x, y = torch.randn(256, 128, dtype=torch.bfloat16), torch.randn(128, 256, dtype=torch.bfloat16)
    b = K.matmul.bind((x, y))
    cfg = b.config.replace(block_sizes=[128, 128, 64], indexing="tensor_descriptor",
                           pid_type="persistent_interleaved", num_warps=8, num_stages=3)
    ptx = b.compile_for_target(cfg)[0].asm["ptx"]
    assert "wgmma" in ptx
    assert "cp.async.bulk.tensor" in ptx


def test_to_triton_code_after_a_call():
    x = torch.randn(3, 17)
    b = K.row_sum.bind((x,))
    before = b.to_triton_code()
    K.row_sum(x)
    assert b.to_triton_code() == before and "@triton.jit" in before


def test_sampled_configs_compile_for_sm90():
    """Random points of each acceptance kernel's ConfigSpace (and their mutations) generate code
    that compiles for Hopper: the tuner never searches a knob codegen cannot honour. One
    subprocess compiles them all; a failure names the kernel and config."""
    import random

    from helion_ops.dsl.backends.triton import compile_specs_for_target

    rng = random.Random(0)
    specs, labels = [], []
    for name, make, _ in SM90_CASES[::3] + [SM90_CASES[4], SM90_CASES[8]]:
        b = K.KERNELS[name].bind(make(torch.bfloat16))
        space = b.config_space
        cfg = space.random(rng)
        for c in (cfg, space.mutate(cfg, rng)):
            for s in b.compile_specs(c):
                specs.append(s)
                labels.append(f"{name} {c!r}")
    out = compile_specs_for_target(specs, ("cuda", 90, 32), keep_going=True)
    bad = [f"{lab}: {str(o)[-300:]}" for lab, o in zip(labels, out) if isinstance(o, str)]
    assert not bad, "\n".join(bad)


def _causal_row_sum_ref(x: torch.Tensor, bm: int) -> torch.Tensor:
    m, n = x.shape
    ends = [min((i // bm) * bm + bm, m, n) for i in range(m)]
    return torch.stack([x[i, :e].double().sum() for i, e in enumerate(ends)]).float()


@pytest.mark.parametrize("m,n,bm,bn,masked", [
    (64, 64, 32, 16, False),   # both bounds multiples of 16: no mask on either inner loop
    (64, 96, 32, 32, False),
    (64, 64, 16, 32, True),    # tile_m.begin is a multiple of 16 only
    (70, 70, 32, 16, True),    # min(tile_m.end, 70): 70 is not a multiple of 16
])
def test_device_bounded_loop_masks_only_when_blocks_may_not_divide(m, n, bm, bn, masked):
    x = torch.randn(m, n)
    b = K.causal_row_sum.bind((x,))
    cfg = Config(block_sizes=[bn, bm])  # block_n is registered first
    code = b.to_triton_code(cfg)
    inner = [ln for ln in code.splitlines() if "mask_1" in ln or "mask_2" in ln]
    assert bool(inner) == masked, code
    torch.testing.assert_close(b.run(b.normalize(cfg), x), _causal_row_sum_ref(x, bm), rtol=1e-5, atol=1e-4)


def test_grid_reverses_only_where_programs_differ_in_work():
    x = torch.randn(70, 70)
    assert "grid_reverses" in K.causal_row_sum.bind((x,)).config_space.fragments
    assert "grid_reverses" not in K.matmul.bind((x, x)).config_space.fragments  # every program: full K
    assert "grid_reverses" not in K.softmax.bind((x,)).config_space.fragments


@pytest.mark.parametrize("pid_type", ["flat", "xyz", "persistent_blocked", "persistent_interleaved"])
def test_grid_reverses_takes_the_tiles_last_first(pid_type):
    """70 rows in blocks of 16: five programs, tile 4 first. An off-by-one reversal would read past the
    last tile or skip tile 0; ignoring the knob fails the code check."""
    x = torch.randn(70, 70)
    b = K.causal_row_sum.bind((x,))
    cfg = b.normalize(Config(block_sizes=[16, 16], pid_type=pid_type, grid_reverses=[True]))
    code = b.to_triton_code(cfg)
    assert re.search(r"pid(_0)? = 4 - (tl\.program_id\(0\)|virtual_pid)", code), code
    assert " = 4 - " not in b.to_triton_code(cfg.replace(grid_reverses=[False]))
    torch.testing.assert_close(b.run(cfg, x), _causal_row_sum_ref(x, 16), rtol=1e-5, atol=1e-4)


_TWO_PASS = """@helion.kernel
def k(x: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    out = torch.zeros_like(x)
    bn = hl.register_block_size(n)
    for tm in hl.tile(m):
        acc = hl.zeros([tm], dtype=torch.float32)
        for tn in hl.tile(n, block_size=bn):
            acc = acc + torch.sum(x[tm, tn], dim=1)
        for tn in hl.tile(n, block_size=bn):
            out[tm, tn] = x[tm, tn] - acc[:, None]
        for tn in hl.tile(tm.begin, n, block_size=bn):
            out[tm, tn] = out[tm, tn] * 2.0
        for tn in hl.tile(tm.begin, n, block_size=bn):
            hl.atomic_add(out, [tm, tn], x[tm, tn])
    return out
"""


def _two_pass_ref(x: torch.Tensor, bm: int) -> torch.Tensor:
    out = x.double() - x.double().sum(1, keepdim=True)
    for i in range(x.shape[0]):
        out[i, (i // bm) * bm:] *= 2
    return out.float()


def test_range_reverses_only_for_loops_whose_iterations_are_independent(tmp_path):
    """The sum loop carries acc and the last loop adds atomically: neither may turn around. The output
    loop and the device-bounded rescale loop (it reads out only where it writes it) may."""
    from .source_kernels import kernel_from_source
    x = torch.randn(70, 70)
    space = kernel_from_source(tmp_path / "k.py", _TWO_PASS).bind((x,)).config_space
    assert [f.choices for f in space.fragments["range_reverses"].items] == [[False], [False, True],
                                                                           [False, True], [False]]
    assert "range_reverses" not in K.matmul.bind((x, x)).config_space.fragments  # carries its accumulator


@pytest.mark.parametrize("bn", [16, 32, 128])
def test_range_reverses_takes_the_tiles_last_first(tmp_path, bn):
    """70 columns in tiles of 16 (five, the first partial), 32 (three) or 128 (one): the same result,
    and the loop counts down from the last tile; the device-bounded loop's trip count is computed on
    the device. Also built for sm_90."""
    from .source_kernels import kernel_from_source
    x = torch.randn(70, 70)
    fixed = _TWO_PASS.replace("        for tn in hl.tile(tm.begin, n, block_size=bn):\n"
                              "            hl.atomic_add(out, [tm, tn], x[tm, tn])\n", "")
    b = kernel_from_source(tmp_path / "k.py", fixed).bind((x,))
    cfg = b.normalize(Config(block_sizes=[bn, 16], range_reverses=[False, True, True]))
    code = b.to_triton_code(cfg)
    trips = -(-70 // bn)
    assert f"_r in tl.range(0, {trips}):" in code and f"({trips} - 1 - offset_" in code, code
    assert re.search(rf"_r in tl\.range\(0, tl\.cdiv\(70 - offset_0, {bn}\)\)", code), code
    assert "_r in" not in b.to_triton_code(cfg.replace(range_reverses=[False, False, False]))
    torch.testing.assert_close(b.run(cfg, x.clone()), _two_pass_ref(x, 16), rtol=1e-5, atol=1e-4)
    assert b.compile_for_target(cfg, ("cuda", 90, 32))


@pytest.mark.parametrize("loop,line", [(0, 12), (3, 18)])
def test_range_reverses_refuses_order_dependent_loops(tmp_path, loop, line):
    """Refused by the Config check (which loop, and why), and by the pass itself at the loop's line."""
    from helion_ops.dsl import exc, passes
    from helion_ops.dsl.plan import planning
    from .source_kernels import kernel_from_source
    x = torch.randn(20, 20)
    b = kernel_from_source(tmp_path / "k.py", _TWO_PASS).bind((x,))
    cfg = Config(block_sizes=[16, 16], range_reverses=[i == loop for i in range(4)])
    with pytest.raises(ValueError, match=rf"range_reverses: \[{loop}\]: True: this loop cannot run in reverse"):
        b.to_triton_code(cfg)
    d = b.dry_run(Config(block_sizes=[16, 16]), "facts").irs[0]
    with planning(), pytest.raises(exc.NotSupported, match=rf"k\.py:{line}: range_reverses: this loop cannot run in reverse"):
        passes.decide_reverses(d, cfg, passes.Layout())


_INNER_GRID_AND_2D = """@helion.kernel
def k(x: torch.Tensor) -> torch.Tensor:
    b, m, n = x.size()
    out = torch.empty_like(x)
    for tb in hl.tile(b):
        for i in hl.grid(m):
            out[tb, i, :] = x[tb, i, :] * 2.0
        for tm, tn in hl.tile([m, n]):
            out[tb, tm, tn] = out[tb, tm, tn] + 1.0
    return out
"""


def test_range_reverses_on_inner_grid_and_2d_tile_loops(tmp_path):
    """An hl.grid loop counts its indices down; a 2-D tile loop turns both of its dims around."""
    from .source_kernels import kernel_from_source
    x = torch.randn(3, 7, 37)
    b = kernel_from_source(tmp_path / "k.py", _INNER_GRID_AND_2D).bind((x,))
    assert [f.choices for f in b.config_space.fragments["range_reverses"].items] == [[False, True]] * 2
    cfg = b.normalize(Config(block_sizes=[2, 4, 16], range_reverses=[True, True]))
    code = b.to_triton_code(cfg)
    assert code.count("_r in tl.range(0, ") == 3, code
    torch.testing.assert_close(b.run(cfg, x), x * 2 + 1)


_SLICE_INDEX = """\
@helion.kernel()
def k(x: torch.Tensor, rows: torch.Tensor):
    m, n = x.size()
    out = torch.zeros([4, n], dtype=torch.float32, device=x.device)
    for tm in hl.tile(m):
        hl.atomic_add(out, [rows[tm], slice(None)], hl.load(x, [tm, slice(None)]).to(torch.float32))
        hl.store(x, [tm, slice(None)], x[tm, :] * 2.0)
    return out
"""


@pytest.mark.parametrize("m", [1, 17, 100])
def test_slice_none_takes_a_whole_dim_in_store_and_atomic_indices(tmp_path, m):
    """``slice(None)`` in an ``hl.load`` / ``hl.store`` / ``hl.atomic_*`` index list is ``:`` (a list literal
    cannot hold ``:``): rows loaded and scattered by atomic adds into 4 buckets, every column; the input
    doubled in place."""
    from .source_kernels import kernel_from_source
    x, rows = torch.randn(m, 33), torch.randint(0, 4, (m,))
    want = torch.zeros(4, 33, dtype=torch.float64).index_add_(0, rows, x.double())
    x2 = x.clone()
    b = kernel_from_source(tmp_path / "k.py", _SLICE_INDEX).bind((x2, rows))
    out = b.run(b.normalize(Config(block_sizes=[16])), x2, rows)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x2, x * 2)
