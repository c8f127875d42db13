"""The compat cases: kernel, input maker, torch reference, dtypes, and a pinned config.

Each ``Case.make(dtype, size)`` returns fresh random inputs; ``size`` is one of the case's
``sizes`` (odd sizes on purpose). ``ref`` computes the expected outputs in fp32/fp64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import k_breadth as B, k_elementwise as E, k_matmul as MM, k_misc as X, k_reduce as R

F32, F16 = torch.float32, torch.float16


@dataclass
class Case:
    name: str
    kernel: Any
    make: Callable[[torch.dtype, Any], tuple]
    ref: Callable[..., Any]
    sizes: list = field(default_factory=lambda: [17])
    dtypes: list = field(default_factory=lambda: [F32, F16])
    config: dict | None = None          # pinned Config fields (None: the kernel's default)
    exact: bool = False                 # integer outputs: compare exactly


def rn(*shape, dtype=F32):
    return torch.randn(*shape, dtype=dtype)


def nc(m, n, dtype):
    """A non-contiguous [m, n] view (every other column of a wider tensor)."""
    return torch.randn(m, 2 * n, dtype=dtype)[:, ::2]


def _stepped_ref(x):
    out = torch.zeros_like(x.float())
    out[0::2, 1::3] = x.float()[0::2, 1::3] * 2
    out[:, 2::4] = x.float()[:, 2::4] - 1
    return out


def _slices_ref(x, v):
    xf, vf = x.float(), v.float()
    a = xf[:, 2:7]
    head = a.clamp_min(0) + xf[:, -4:].sum(-1, keepdim=True) / 5
    full = xf * vf[:, None]
    return head, torch.stack([full, full], dim=1)


def _int4_inputs(dt, n):
    w = torch.randint(-8, 8, (64, n))
    packed = ((w[0::2] & 15) | (w[1::2] << 4)).to(torch.int8)  # low nibble: even rows
    return rn(n + 3, 64, dtype=dt) / 8, packed


def _int4_ref(a, packed):
    p = packed.int()
    lo = torch.where((p & 15) >= 8, (p & 15) - 16, p & 15)
    w = torch.stack([lo, p >> 4], dim=1).reshape(-1, p.shape[1])
    return a.float() @ w.float()


def _decode_inputs(dt, n):
    q, kk = rn(3, n, 16, dtype=dt), rn(24, 16, dtype=dt)
    q[0, 5, 0] = float("inf")  # a row of +-inf scores: -inf is zeroed by the isfinite guard
    return q, kk, torch.tensor([1, 0, 1]), 2


def _decode_ref(q, kk, flag, scale):
    s = (q.float() @ kk.float().T).to(q.dtype).float()
    s = torch.minimum(s * scale, torch.tensor(4.0))
    s = torch.where(torch.isfinite(s), s, 0.0)
    s[:, :2] = 0
    out = s * 3 * flag[:, None, None]
    return out, out[:, 2, :] * flag[:, None]


def _jagged_tile_ref(x, lengths):
    keep = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    kept = torch.where(keep, x.float(), 0.0)
    return kept.sum(1), kept


def _jagged_stats_ref(x, lengths):
    keep = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    xf = x.float()
    return torch.where(keep, xf + 1, 0.0).sum(1), torch.where(keep, xf, -100.0).amax(1)


def _skip_ref(x, flag):
    xf = x.float()
    cols = torch.arange(x.shape[1])
    return xf * (flag != 0)[:, None], xf[:, (cols < 8) | (cols >= 16)].sum(1)


def _rope_ref(q, cos, sin):
    h = q.shape[-1] // 2
    qf, c, s = q.float(), cos.float()[:, None, :], sin.float()[:, None, :]
    x1, x2 = qf[..., :h], qf[..., h:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def _welford_ref(w, b, x, eps=1e-5):
    return F.layer_norm(x.float(), [x.shape[-1]], w.float(), b.float(), eps)


def _ln_bwd_inputs(dt, n):
    x = rn(9, n, dtype=dt)
    mean = x.float().mean(-1)
    rstd = torch.rsqrt(x.float().var(-1, unbiased=False) + 1e-5)
    return rn(9, n, dtype=dt), x, rn(n, dtype=dt), mean, rstd


def _ln_bwd_ref(dy, x, w, mean, rstd):
    xf = x.float().requires_grad_()
    wf = w.float().requires_grad_()
    bf = torch.zeros_like(wf, requires_grad=True)
    y = F.layer_norm(xf, [x.shape[-1]], wf, bf, 1e-5)
    gx, gw, gb = torch.autograd.grad(y, (xf, wf, bf), dy.float())
    return gx, gw, gb


def _kl_ref(p, t, log_target=False, eps=1e-10):
    return F.kl_div(p.float(), t.float(), reduction="batchmean", log_target=log_target)


def _jsd_inputs(dt, v):
    return (torch.randn(5, v).log_softmax(-1).to(dt), torch.randn(5, v).log_softmax(-1).to(dt), 0.5)


def _jsd_ref(lq, lp, beta):
    q, p = lq.float().exp(), lp.float().exp()
    m = beta * p + (1 - beta) * q
    lm = m.log()
    loss = (beta * p * lp.float() + (1 - beta) * q * lq.float() - m * lm) / lq.shape[0]
    return loss.sum(), (1 - beta) * q * (lq.float() - lm) / lq.shape[0]


def _segment_inputs(dt, e):
    ids = torch.randint(0, 7, (e,)).sort()[0]
    return ids, rn(e, 5, dtype=dt), 7


def _segment_ref(ids, data, n):
    out = torch.zeros(n, data.shape[1])
    return out.index_add_(0, ids, data.float())


def _jagged(dt, rows):
    lens = torch.randint(0, 6, (rows,))
    offs = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)])
    return rn(int(offs[-1]), 5, dtype=dt), offs


def _jagged_sum_ref(v, offs):
    return torch.stack([v[offs[i]:offs[i + 1]].float().sum(0) for i in range(len(offs) - 1)])


def _jagged_mean_inputs(dt, rows):
    v, offs = _jagged(dt, rows)
    return v, offs, 6


def _jagged_mean_ref(v, offs, _m):
    out = []
    for i in range(len(offs) - 1):
        seg = v[offs[i]:offs[i + 1]].float()
        out.append(seg.mean(0) if len(seg) else torch.zeros(v.shape[1]))
    return torch.stack(out)


def _view_ref(x):
    b, m, n = x.shape
    pairs = x.reshape(b, m, n // 2, 2)
    swapped = torch.stack([pairs[..., 1], pairs[..., 0]], -1).reshape(b, m, n)
    return x.permute(0, 2, 1), swapped - x.amax(-1, keepdim=True) + x


def _int_ref(a, b):
    o1 = (a & 0xF) | ((b >> 4) << 8) ^ 3
    o2 = torch.where(b != 0, torch.div(a, torch.where(b == 0, 1, b), rounding_mode="floor"), 0) + a % 7
    return o1, o2, a.long() * 65536 + (a > b).long()


def _int_inputs(dt, n):
    return torch.randint(-1000, 1000, (n,), dtype=torch.int32), torch.randint(-300, 300, (n,), dtype=torch.int32)


def _atomics_ref(x, bins):
    b = x % bins
    counts = torch.bincount(b, minlength=bins).int()
    hi = torch.full([bins], -2**31, dtype=torch.int32).scatter_reduce(0, b.long(), x, "amax")
    bits = torch.zeros(bins, dtype=torch.int32)
    for i in range(bins):
        for v in x[b == i].tolist():
            bits[i] |= 1 << (v % 16)
    return counts, hi, bits


def _i8(dt, n):
    return (torch.randint(-8, 8, (n, 64), dtype=torch.int8), torch.randint(-8, 8, (64, 33), dtype=torch.int8))


def _split_k_inputs(dt, k):
    return rn(20, k, dtype=dt), rn(k, 24, dtype=dt)


CASES = [
    Case("exp", E.exp_fwd, lambda dt, n: (rn(3, n, dtype=dt),), torch.exp, sizes=[1, 1000]),
    Case("exp_noncontig", E.exp_fwd, lambda dt, n: (rn(n, 6, dtype=dt).t(),), torch.exp, dtypes=[F32]),
    Case("scale_shift", E.scale_shift, lambda dt, n: (rn(5, n, dtype=dt), 0.5, 3.0),
         lambda x, s, b: (2.0 - x.float() * s) / (1 + b)),
    Case("swiglu", E.swiglu_fwd, lambda dt, n: (rn(4, n, dtype=dt), rn(4, n, dtype=dt)),
         lambda g, u: F.silu(g.float()) * u.float(), sizes=[1000]),
    Case("geglu", E.geglu_fwd, lambda dt, n: (rn(3, n, dtype=dt), rn(3, n, dtype=dt)),
         lambda a, b: F.gelu(a.float(), approximate="tanh") * b.float()),
    Case("geglu_manual", E.geglu_manual, lambda dt, n: (rn(3, n, dtype=dt), rn(3, n, dtype=dt)),
         lambda a, b: F.gelu(a.float(), approximate="tanh") * b.float()),
    Case("rope", E.rope_fwd, lambda dt, n: (rn(n, 3, 16, dtype=dt), rn(n, 8, dtype=dt), rn(n, 8, dtype=dt)),
         _rope_ref),
    Case("embedding", E.embedding_fwd, lambda dt, n: (torch.randint(0, 11, (3, n)), rn(11, 24, dtype=dt)),
         lambda i, w: F.embedding(i, w.float())),
    Case("concatenate", E.concat_cols, lambda dt, n: (rn(6, n, dtype=dt), rn(6, 9, dtype=dt)),
         lambda x, y: torch.cat([x, y], 1).float()),
    Case("row_sum", R.row_sum, lambda dt, n: (rn(7, n, dtype=dt),), lambda x: x.float().sum(-1), sizes=[1, 1000]),
    Case("long_sum", R.long_sum_looped, lambda dt, n: (rn(5, n, dtype=dt),), lambda x: x.float().sum(-1),
         sizes=[1000], config={"block_sizes": [128, 4]}),
    Case("cross_entropy", R.cross_entropy_fwd, lambda dt, n: (rn(9, n, dtype=dt), torch.randint(0, n, (9,))),
         lambda lg, lb: F.cross_entropy(lg.float(), lb, reduction="none"), sizes=[17, 1000]),
    Case("welford", R.welford_layer_norm, lambda dt, n: (rn(n, dtype=dt), rn(n, dtype=dt), rn(6, n, dtype=dt)),
         _welford_ref, sizes=[17, 1000], config={"block_sizes": [4, 16, 16]}),
    Case("layer_norm_var_mean", R.layer_norm_var_mean,
         lambda dt, n: (rn(6, n, dtype=dt), rn(n, dtype=dt), rn(n, dtype=dt)),
         lambda x, w, b: F.layer_norm(x.float(), [x.shape[1]], w.float(), b.float(), 1e-5)),
    Case("layer_norm_bwd", R.layer_norm_bwd, _ln_bwd_inputs, _ln_bwd_ref, config={"block_sizes": [4]}),
    Case("softmax_two_pass", R.softmax_two_pass, lambda dt, n: (rn(5, n, dtype=dt),),
         lambda x: torch.softmax(x.float(), -1), sizes=[17, 1000], config={"block_sizes": [2, 16]}),
    Case("kl_div", R.kl_div_fwd, lambda dt, n: (rn(6, n).log_softmax(-1).to(dt), rn(6, n).softmax(-1).to(dt)),
         _kl_ref, config={"block_sizes": [16, 2]}),
    Case("jsd", R.jsd_fwd, _jsd_inputs, _jsd_ref),
    Case("reduce_combine", R.custom_reduce, lambda dt, n: (rn(6, n, dtype=dt),),
         lambda x: (x.float().amax(-1), x.argmax(-1)), dtypes=[F32]),
    Case("segment_reduction", R.segment_sum, _segment_inputs, _segment_ref, sizes=[37], dtypes=[F32],
         config={"block_sizes": [16, 8]}),
    Case("cumsum", R.prefix_sums, lambda dt, n: (rn(4, n, dtype=dt),),
         lambda x: (x.float().cumsum(1), x.float().flip(1).cumsum(1).flip(1)), dtypes=[F32]),
    Case("split_k", MM.matmul_split_k, _split_k_inputs, lambda x, y: x.float() @ y.float(), sizes=[100],
         config={"block_sizes": [16, 16, 16], "split_k": 4}),
    Case("split_k_bias_epilogue", MM.split_k_with_bias, lambda dt, n: _split_k_inputs(dt, n) + (rn(24, dtype=dt),),
         lambda x, y, b: x.float() @ y.float() + b.float(), sizes=[100]),
    Case("bmm", MM.bmm, lambda dt, n: (rn(2, n, 24, dtype=dt), rn(2, 24, 20, dtype=dt)),
         lambda a, b: a.float() @ b.float(), config={"block_sizes": [1, 16, 16, 16]}),
    Case("bmm_grid", MM.bmm_grid, lambda dt, n: (rn(3, n, 40, dtype=dt), rn(3, 40, 16, dtype=dt)),
         lambda a, b: a.float() @ b.float(), config={"block_sizes": [16, 16, 16]}),
    Case("se_net_fwd", MM.se_net_fwd, lambda dt, n: (rn(n, 32, dtype=dt), rn(32, 16, dtype=dt) / 4, rn(16, 32, dtype=dt) / 4),
         lambda x, a, b: _se_ref(x, a, b), config={"block_sizes": [16, 16, 16, 16]}),
    Case("se_net_bwd_db", MM.se_net_bwd_db,
         lambda dt, n: (rn(n, 32, dtype=dt), rn(n, 32, dtype=dt), torch.rand(n, 32).to(dt), rn(n, 16, dtype=dt)),
         lambda g, x, d, c: c.float().T @ (g.float() * x.float() * d.float() * (1 - d.float())),
         config={"block_sizes": [16, 16, 16, 16, 16]}),
    Case("matmul_bias_relu", MM.matmul_bias_relu, lambda dt, n: (rn(n, 32, dtype=dt), rn(32, 24, dtype=dt), rn(24, dtype=dt)),
         lambda x, w, b: torch.relu(x.float() @ w.float() + b.float())),
    Case("int_matmul", MM.int_matmul, _i8, lambda a, b: a.int() @ b.int(), dtypes=[torch.int8], exact=True,
         config={"block_sizes": [32, 32, 32]}),
    Case("attention", MM.attention, lambda dt, n: (rn(1, 2, n, 16, dtype=dt), rn(1, 2, 24, 16, dtype=dt),
                                                   rn(1, 2, 24, 16, dtype=dt)),
         lambda q, k, v: F.scaled_dot_product_attention(q.float(), k.float(), v.float()),
         config={"block_sizes": [1, 16, 16]}),
    Case("attention_causal", MM.attention, lambda dt, n: (rn(2, n, 16, dtype=dt), rn(2, n, 16, dtype=dt),
                                                          rn(2, n, 16, dtype=dt), True),
         lambda q, k, v, c: F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True),
         dtypes=[F32], config={"block_sizes": [2, 16, 16]}),
    Case("jagged_sum", X.jagged_row_sum, _jagged, _jagged_sum_ref, sizes=[6], config={"block_sizes": [8, 4]}),
    Case("jagged_mean", X.jagged_mean, _jagged_mean_inputs, _jagged_mean_ref, sizes=[7],
         config={"block_sizes": [4, 8, 4]}),
    Case("tiles_of_tiles", X.tiles_of_tiles, lambda dt, n: (rn(n, 12, dtype=dt),),
         lambda x: x.float() * 2 + torch.arange(x.shape[0])[:, None], sizes=[70], config={"block_sizes": [16]}),
    Case("int_ops", X.int_bit_ops, _int_inputs, _int_ref, sizes=[100], dtypes=[torch.int32], exact=True),
    Case("atomics", X.atomics, lambda dt, n: (torch.randint(0, 1000, (n,), dtype=torch.int32), 7), _atomics_ref,
         sizes=[300], dtypes=[torch.int32], exact=True),
    Case("view_ops", X.view_ops, lambda dt, n: (rn(2, n, 8, dtype=dt),), _view_ref, config={"block_sizes": [2, 8]}),
    Case("inline_triton", X.inline_triton_add, lambda dt, n: (rn(n, dtype=dt), rn(n, dtype=dt)),
         lambda x, y: x.float() * 2 + y.float()),
    Case("helper_fn", X.rms_norm_helper, lambda dt, n: (rn(5, n, dtype=dt), rn(n, dtype=dt)),
         lambda x, w: x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()),
    Case("broadcast_bias", X.broadcast_bias,
         lambda dt, n: (rn(n, 24, dtype=dt), rn(1, 24, dtype=dt), rn(n, 1, dtype=dt)),
         lambda x, b, s: x.float() * s.float() + b.float(), sizes=[1, 17]),
    Case("slices_and_methods", X.slices_and_methods, lambda dt, n: (rn(n, 12, dtype=dt), rn(n, dtype=dt)),
         _slices_ref, sizes=[1, 17]),
    Case("size_from_item", X.prefix_by_item,
         lambda dt, n: (rn(n + 5, dtype=dt), torch.tensor([0, n // 2, n])), lambda x, o: x[:int(o[-1])].float() + 1,
         sizes=[1, 17]),
    Case("interleave", X.interleave, lambda dt, n: (rn(n, dtype=dt), rn(n, dtype=dt)),
         lambda a, b: torch.stack([a, b], 1).reshape(-1).float(), sizes=[64], config={"block_sizes": [16]}),
    Case("int4_matmul", MM.int4_matmul, _int4_inputs, _int4_ref, sizes=[17, 48],
         config={"block_sizes": [16, 16, 16]}),
    Case("device_slice", X.pairs_scaled, lambda dt, n: (rn(10, n, dtype=dt),), lambda x: x.float() * 2,
         sizes=[15, 1000], config={"block_sizes": [4, 8]}),
    Case("decode_mix", X.decode_mix, _decode_inputs, _decode_ref, sizes=[17], config={"block_sizes": [16, 16]}),
    Case("jagged_tile", X.jagged_tile_rows,
         lambda dt, n: (rn(9, n, dtype=dt), torch.tensor([0, 1, n, n // 2, 3, n - 1, 0, 2, n])),
         _jagged_tile_ref, sizes=[17, 100], config={"block_sizes": [4, 16]}),
    Case("jagged_tile_stats", X.jagged_tile_stats,
         lambda dt, n: (-rn(9, n, dtype=dt).abs() - 1, torch.tensor([0, 1, n, n // 2, 3, n - 1, 0, 2, n]).clamp(max=n)),
         _jagged_stats_ref, sizes=[1, 17, 100], config={"block_sizes": [4, 16]}),
    Case("continue", X.skip_with_continue, lambda dt, n: (rn(6, n, dtype=dt), torch.tensor([1, 0, 1, 1, 0, 1])),
         _skip_ref, sizes=[17, 100]),
    Case("rope_rotate_half", X.rope_rotate_half,
         lambda dt, n: (rn(n, 3, 32, dtype=dt), rn(n, 32, dtype=dt), rn(n, 32, dtype=dt)),
         lambda q, c, s: q.float() * c.float()[:, None] + torch.cat([-q.float()[..., 16:], q.float()[..., :16]], -1)
         * s.float()[:, None]),
    Case("packed_swiglu", X.packed_swiglu, lambda dt, n: (rn(n, 64, dtype=dt),),
         lambda x: F.silu(x.float()[:, :32]) * x.float()[:, 32:], sizes=[1, 17]),
    Case("sum_over_middle", X.sum_over_middle, lambda dt, n: (rn(5, 19, n, dtype=dt),),
         lambda x: x.float().sum(1), sizes=[1, 17]),
    Case("grid_2d", X.grid_2d_scalar, lambda dt, n: (rn(3, 4, n, dtype=dt),),
         lambda x: x.float().amax(-1) + x.float()[..., 0]),
    # language breadth, round two; the ``nc`` inputs are non-contiguous views
    Case("new_zeros_accumulate", B.new_zeros_accumulate, lambda dt, n: (nc(n, 37, dt),),
         lambda x: x.float().sum(1) + (x.float() ** 2).sum(1), sizes=[1, 17, 1000], config={"block_sizes": [16, 16]}),
    Case("gather_rows", B.gather_rows, lambda dt, n: (nc(n, 8, dt), torch.randint(0, 8, (n, 8))),
         lambda x, i: torch.gather(x.float(), 1, i), sizes=[1, 17, 1000], config={"block_sizes": [16]}),
    Case("strided_columns", B.strided_columns, lambda dt, n: (nc(n, 11, dt),),
         lambda x: (x.float()[:, ::2] * 2, x.float()[:, 1::3]), sizes=[1, 17, 1000], config={"block_sizes": [16]}),
    Case("stepped_grid", B.stepped_grid, lambda dt, n: (nc(n, 10, dt),), _stepped_ref, sizes=[1, 17],
         config={"block_sizes": [8]}),
    Case("torch_associative_scan", B.torch_associative_scan, lambda dt, n: (nc(n, 9, dt),),
         lambda x: (x.float().cumsum(1), x.float().cummax(1).values, (2 * x.float()).cumsum(1)),
         sizes=[1, 17, 1000], config={"block_sizes": [16]}),
    Case("list_of_accumulators", B.list_of_accumulators, lambda dt, n: (nc(n, 23, dt),),
         lambda x: torch.stack([x.float().sum(1), x.float().amax(1).clamp_min(0), (x.float() ** 2).sum(1)], 1),
         sizes=[1, 17, 1000], config={"block_sizes": [16, 8]}),
    Case("module_tensor_helper", B.module_tensor_helper, lambda dt, n: (nc(n, 8, dt),),
         lambda x: x.float() * B.SCALE, sizes=[1, 17, 1000], config={"block_sizes": [16]}),
    Case("gather_sum", B.gather_sum, lambda dt, n: (nc(10, n, dt), torch.randint(0, 10, (n, 5))),
         lambda b, c: b.float()[c].sum(1), sizes=[1, 17, 1000], config={"block_sizes": [8, 16]}),
    Case("row_bias_expand", B.row_bias_expand, lambda dt, n: (rn(2 * n, dtype=dt)[::2], nc(n, 12, dt)),
         lambda x, y: y.float() + x.float()[:, None], sizes=[1, 17, 1000], config={"block_sizes": [16, 8]}),
    Case("row_sums_empty_dim", B.row_sums, lambda dt, n: (rn(n, 0, dtype=dt),), lambda x: x.float().sum(1),
         sizes=[1, 17], config={"block_sizes": [16]}),
]


# kernels whose outputs are random: checked in test_compat_random.py, compiled for sm_90 here
COMPILE_ONLY = [
    Case("dropout_seeded", E.dropout_seeded, lambda dt, n: (rn(n, dtype=dt), 0.3, 5), None, sizes=[1000]),
    Case("dropout_rand_like", E.dropout_rand_like, lambda dt, n: (rn(7, n, dtype=dt), 0.3), None),
]


def _se_ref(x, a, b):
    xf, af, bf = x.float(), a.float(), b.float()
    c = torch.relu(xf @ af).to(x.dtype).float()
    d = torch.sigmoid((c @ bf).to(x.dtype).float())
    return xf * d, c, d
