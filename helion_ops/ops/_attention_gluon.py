"""Which backend attention's forward (``attention.attn_fwd``) and backward kernels (``attention.attn_bwd_dq``,
``attention.attn_bwd_dkdv``) compile through: the DSL's Gluon backend on sm_90 for the calls it covers, Triton for
the rest (the policy's last step, ``choose``; ``attention.py``'s module notes say where it sits in the op layer's
policy, docs/decisions/gluon-attention.md why).

``HELION_OPS_GLUON=0`` keeps every call on Triton (read when a signature's Config is chosen).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Callable, Iterator, Optional

import torch

from helion_ops import _oplib as C
from helion_ops.dsl import Config
from helion_ops.dsl.space import gluon_runs_on

HEAD_DIMS = (128,)  # the head dim whose Gluon forward the H100 checked and timed (D=64 builds; unchecked there)
MIN_SEQ = 128  # a sequence shorter than one 128-row block takes clamped tiles no GPU run has checked yet
BLOCK = 128
ENV = "HELION_OPS_GLUON"
CAUSAL_DKDV_MIN_KEYS = 8192  # causal dK/dV below this stays on Triton: the H100 harness ran it faster there
_TRITON_ONLY: contextvars.ContextVar = contextvars.ContextVar("attention_triton_only", default=False)


@contextlib.contextmanager
def triton_only() -> Iterator[None]:
    """Inside the block the policy picks Triton for every call (``attention.triton_config``)."""
    token = _TRITON_ONLY.set(True)
    try:
        yield
    finally:
        _TRITON_ONLY.reset(token)


def _sm90(device: torch.device) -> bool:
    """A CUDA device of compute capability 9.0 running compiled kernels (not Triton's interpreter), with a
    Triton that has Gluon's Hopper module."""
    return device.type == "cuda" and not C._interpreting() and gluon_runs_on(device)


def _tma_loadable(t: torch.Tensor) -> bool:
    """Last stride 1, the others positive multiples of 16 bytes: what a TMA descriptor takes."""
    return t.stride(-1) == 1 and all(st > 0 and st * t.element_size() % 16 == 0 for st in t.stride()[:-1])


def refusal(args: tuple) -> Optional[str]:
    """Why ``attn_fwd(*args)`` (q, k, v, causal, qk_scale) compiles through Triton, or None when the Gluon
    backend takes it: an sm_90 GPU, fp16/bf16, a head dim in ``HEAD_DIMS``, both sequences at least
    ``MIN_SEQ`` long (and equal when causal), q/k/v loadable by TMA (last
    stride 1, the others positive multiples of 16 bytes; a misaligned data pointer, which the choice made
    once per signature cannot see, is refused by the backend at the launch, and that signature falls back
    to Triton), fewer than 2**31 elements each, and no opt-out."""
    q, k, v = args[:3]
    if _TRITON_ONLY.get():
        return "the Triton choice was asked for"
    if os.environ.get(ENV, "1") == "0":
        return f"{ENV}=0"
    if not _sm90(q.device):
        return "not an sm_90 CUDA device"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {q.dtype} (wgmma takes fp16/bf16)"
    if q.shape[-1] not in HEAD_DIMS:
        return f"head dim {q.shape[-1]} (the Gluon forward is GPU-checked at {HEAD_DIMS})"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.numel() >= 2**31:
            return f"'{name}' has 2**31 elements or more (int64 indexing, untested on the Gluon backend)"
        if not _tma_loadable(t):
            return f"'{name}' strides {tuple(t.stride())} (TMA needs positive 16-byte multiples)"
    if min(q.shape[-2], k.shape[-2]) < MIN_SEQ:
        return f"a sequence shorter than {MIN_SEQ} (the Gluon forward is GPU-checked from one full block)"
    if args[3] and q.shape[-2] != k.shape[-2]:
        return "causal with S_q != S_k (unchecked on a GPU through the Gluon forward)"
    return None


def refusal_bwd(args: tuple, kernel: str = "attn_bwd_dq") -> Optional[str]:
    """Why a backward kernel (``attn_bwd_dq`` or ``attn_bwd_dkdv``) on ``args`` (q, k, v, dout, lse, delta, causal,
    ...) compiles through Triton, or None when the Gluon backend takes it: the forward's conditions (``refusal``)
    on q, k, v, dout loadable by TMA too, and the calls the GPU tests checked the Gluon backward at: equal
    sequence lengths, multiples of 128. Causal dK/dV also needs ``CAUSAL_DKDV_MIN_KEYS`` keys: below that the
    Triton kernel ran faster on the H100 (docs/decisions/gluon-attention.md)."""
    q, k, v, dout = args[:4]
    why = refusal((q, k, v, args[6]))
    if why is not None:
        return why
    if not _tma_loadable(dout):
        return f"'dout' strides {tuple(dout.stride())} (TMA needs positive 16-byte multiples)"
    if q.shape[-2] % BLOCK or k.shape[-2] % BLOCK:
        return f"a sequence length not a multiple of {BLOCK} (the Gluon backward is GPU-checked on full blocks)"
    if q.shape[-2] != k.shape[-2]:
        return "S_q != S_k (the Gluon backward is GPU-checked with equal lengths)"
    if kernel == "attn_bwd_dkdv" and args[6] and k.shape[-2] < CAUSAL_DKDV_MIN_KEYS:
        return f"causal dK/dV under {CAUSAL_DKDV_MIN_KEYS} keys (the Triton kernel ran faster there)"
    return None


def config(args: tuple) -> Config:
    """The forward's Gluon Config: 128x128 score tiles, two consumer warpgroups of 64 query rows beside the
    TMA producer warp, and ``gluon_overlap`` (the next block's QK^T issued before this block's PV) where the
    key length is a multiple of the block: the schedule the H100 run checked and timed fastest (bf16, D=128,
    4K and 16K tokens, causal and not; results/H100/sweeps/gluon_dsl_attention_2026-12-07.json). With a
    ragged last key block the GPU tests checked the schedule without overlap, so that one is used there.
    Causal calls take the query blocks longest-first (``attention._longest_first``)."""
    return Config(block_sizes=[BLOCK, BLOCK], backend="gluon", gluon_consumers=2,
                  gluon_overlap=args[1].shape[-2] % BLOCK == 0)


def config_bwd(kernel: str, cfg: Config) -> Config:
    """A backward kernel's Gluon Config from its Triton choice ``cfg`` (grid order and tunables kept): two consumer
    warpgroups of 64 rows each. dQ: 128x128 tiles. dK/dV: 128 keys by 64 queries with ``keys_rows`` (P^T and dP^T,
    so each warpgroup's wgmmas read the query-side tiles from shared memory): its two fp32 accumulators fill 128
    of a consumer's 240 registers, and 128 queries spill. ``gluon_mma_ahead``: dP's wgmma is issued beside S's, so
    the tensor cores stay busy while a consumer waits on S. What the H100 runs measured and GPU-tested
    (docs/decisions/attention-backward.md)."""
    blocks = [BLOCK, BLOCK] if kernel == "attn_bwd_dq" else [BLOCK, BLOCK // 2]
    extra = {"keys_rows": True} if kernel == "attn_bwd_dkdv" else {}
    return Config(**{**dict(cfg), "backend": "gluon", "block_sizes": blocks, "gluon_consumers": 2,
                       "gluon_mma_ahead": True, **extra})


def is_gluon(cfg: Config) -> bool:
    return cfg.get("backend", "triton") == "gluon"


def choose(kernel: str, cfg: Config, args: tuple, default: Callable[[tuple], Config]) -> Config:
    """The backend of ``kernel`` (``attn_fwd``, ``attn_bwd_dq`` or ``attn_bwd_dkdv``), the policy's last step
    (after the table entry or the analytic default): the Gluon Config where the kernel's refusal finds nothing (a
    Gluon table entry is kept there), else a Triton Config (the analytic ``default(args)`` in place of a Gluon
    entry)."""
    gluon = (refusal(args) if kernel == "attn_fwd" else refusal_bwd(args, kernel)) is None
    if is_gluon(cfg):
        return cfg if gluon else Config(**dict(default(args)))
    if not gluon:
        return cfg
    return config(args) if kernel == "attn_fwd" else config_bwd(kernel, cfg)
