"""hl.inline_asm_elementwise: the generated Triton call (broadcast args, one or several outputs), its sm_90
build (the PTX carries the asm), clear errors for malformed calls, and the numbers on a GPU. Triton's
interpreter cannot run inline PTX, so CPU checks stop at codegen and the offline build."""
import pytest
import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl
from helion_ops.dsl import exc
from tests.dsl.source_kernels import one_loop_kernel


@helion.kernel(config=helion.Config(block_sizes=[32]))
def shift_left_3(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for tile in hl.tile(x.size(0)):
        out[tile] = hl.inline_asm_elementwise("shl.b32 $0, $1, 3;", "=r,r", [x[tile]], dtype=torch.int32,
                                              is_pure=True, pack=1)
    return out


@helion.kernel(config=helion.Config(block_sizes=[16, 32]))
def add_and_sub(x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s, d = torch.empty_like(x), torch.empty_like(x)
    for tm, tn in hl.tile(x.size()):
        # bias[tm][:, None] is [tm, 1] against x's [tm, tn]: broadcast before the asm.
        s[tm, tn], d[tm, tn] = hl.inline_asm_elementwise(
            "add.s32 $0, $2, $3; sub.s32 $1, $2, $3;", "=r,=r,r,r", [x[tm, tn], bias[tm][:, None]],
            dtype=(torch.int32, torch.int32), is_pure=True, pack=1)
    return s, d


def _ints(*shape):
    return torch.randint(-1000, 1000, shape, dtype=torch.int32)


def test_codegen_and_sm90_build():
    b = shift_left_3.bind((_ints(100),))
    code = b.to_triton_code(b.config)
    assert "tl.inline_asm_elementwise('shl.b32 $0, $1, 3;', '=r,r', [" in code
    assert "dtype=tl.int32, is_pure=True, pack=1)" in code
    assert "shl.b32" in b.compile_for_target(b.config, ("cuda", 90, 32))[0].asm["ptx"]


def test_broadcast_args_and_tuple_outputs():
    b = add_and_sub.bind((_ints(40, 70), _ints(40)))
    code = b.to_triton_code(b.config)
    assert "tl.broadcast_to(" in code and "dtype=(tl.int32, tl.int32,)" in code
    ptx = b.compile_for_target(b.config, ("cuda", 90, 32))[0].asm["ptx"]
    assert "add.s32" in ptx and "sub.s32" in ptx


@pytest.mark.parametrize("call,match", [
    ('hl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x[t]], torch.int32, True)', "needs pack"),
    ('hl.inline_asm_elementwise(1, "=r,r", [x[t]], torch.int32, True, 1)', "must be str literals"),
    ('hl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [], torch.int32, True, 1)', "non-empty list"),
    ('hl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x[t]], "int32", True, 1)', "torch.dtype"),
])
def test_malformed_calls_are_refused_at_the_line(tmp_path, call, match):
    k = one_loop_kernel(tmp_path / "bad_asm.py", f"out[t] = {call}", block=32)
    with pytest.raises(exc.NotSupported, match=match) as info:
        k.bind((_ints(64),)).to_triton_code(helion.Config(block_sizes=[32]))
    assert "bad_asm.py:9" in str(info.value)


@pytest.mark.gpu
def test_numbers_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (Triton's interpreter cannot run inline PTX)")
    x, bias = _ints(1000, 17).cuda(), _ints(1000).cuda()
    torch.testing.assert_close(shift_left_3(x.view(-1)), x.view(-1) << 3)
    s, d = add_and_sub(x, bias)
    torch.testing.assert_close(s, x + bias[:, None])
    torch.testing.assert_close(d, x - bias[:, None])


def test_interpreter_says_it_cannot_run_it():
    if torch.cuda.is_available():
        pytest.skip("runs on the GPU there")
    with pytest.raises(exc.NotSupported, match="needs a CUDA GPU") as info:
        shift_left_3(_ints(100))
    line = next(i for i, ln in enumerate(open(__file__).read().splitlines(), 1) if '"shl.b32 $0, $1, 3;"' in ln)
    assert f"test_inline_asm.py:{line}" in str(info.value)
