"""Shipped GEMM tables (helion_ops/configs/sm90/{matmul,grouped_gemm}.json): every entry validates
against its kernel's ConfigSpace at its own shape, lookup returns it for that shape, and one entry
per kernel compiles for sm_90 (no GPU needed). The norm tables are covered in tests/test_api.py."""
import json

import pytest
import torch

from helion_ops import pretuned
from helion_ops.dsl import Config
from helion_ops.ops import grouped_gemm, matmul


def _meta(*shape, dtype=torch.bfloat16):
    return torch.empty(*shape, dtype=dtype, device="meta")


def _args(kernel: str, shape: list, variant=None) -> tuple:
    if kernel == "matmul_kernel":  # variant: which operands are passed transposed ("NT", "TN")
        m, n, k = shape
        ta, tb = variant in ("TN", "TT"), variant in ("NT", "TT")
        return (_meta(k, m) if ta else _meta(m, k), _meta(n, k) if tb else _meta(k, n), None, None, ta, tb)
    g, m, n, k = shape
    offsets = _meta(g, dtype=torch.int32)
    if kernel == "grouped_gemm_kernel":  # variant "T": backward's dx, w read transposed ([G, N, K] storage)
        if variant == "T":
            return (_meta(m, k), _meta(g, n, k), offsets, True)
        return (_meta(m, k), _meta(g, k, n), offsets, False)
    return (_meta(m, k), _meta(m, n), offsets)  # grouped_gemm_dw_kernel


@pytest.mark.parametrize("mod", [matmul, grouped_gemm], ids=lambda m: m.NAME)
def test_shipped_gemm_tables(mod):
    path = pretuned.config_path(mod.NAME, "sm90")
    if not path.exists():
        pytest.skip(f"no {path}")
    data = json.loads(path.read_text())
    assert data["gpu"].startswith("NVIDIA H100") and data["entries"]
    assert all(k in data for k in ("torch", "triton", "date"))
    compiled = set()
    for e in data["entries"]:
        assert e["ms"] > 0
        variant = e["key"].get("variant")
        bound = getattr(mod, e["kernel"]).bind(_args(e["kernel"], e["key"]["shape"], variant))
        cfg = bound.config_space.normalize(Config(**e["config"]))
        assert pretuned.lookup(mod.NAME, e["kernel"], torch.bfloat16, e["key"]["shape"], arch="sm90",
                               variant=variant) == Config(**e["config"])
        if (e["kernel"], variant) not in compiled:
            compiled.add((e["kernel"], variant))
            assert bound.compile_for_target(cfg, ("cuda", 90, 32))


def test_shipped_attention_table():
    """configs/sm90/attention.json: keyed [B*H, S_q, S_k, D, 1 + causal]; each entry validates for
    its kernel at that shape (B=1 stands in for B*H heads: the config does not depend on the split)
    and lookup returns it."""
    from helion_ops.ops import attention

    path = pretuned.config_path("attention", "sm90")
    if not path.exists():
        pytest.skip(f"no {path}")
    data = json.loads(path.read_text())
    assert data["gpu"].startswith("NVIDIA H100") and data["entries"]
    for e in data["entries"]:
        bh, s_q, s_k, d, c = e["key"]["shape"]
        q, k = _meta(1, bh, s_q, d), _meta(1, bh, s_k, d)
        assert e["kernel"] == "attn_fwd" and e["ms"] > 0
        bound = attention.attn_fwd.bind((q, k, k, c == 2, 0.1))
        bound.config_space.normalize(Config(**e["config"]))
        assert pretuned.lookup("attention", "attn_fwd", torch.bfloat16, [bh, s_q, s_k, d, c], arch="sm90") == \
            Config(**e["config"])
