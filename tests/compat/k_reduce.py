"""Compat kernels: reductions and normalisations (sum, long_sum, cross_entropy, welford,
layer_norm fwd/bwd, softmax, kl_div, jsd, reduce/scan with combine functions)."""
from __future__ import annotations

import torch

import helion_ops.dsl as helion
import helion_ops.dsl.language as hl


@helion.kernel()
def row_sum(x: torch.Tensor) -> torch.Tensor:
    m, _ = x.size()
    out = torch.empty([m], dtype=x.dtype, device=x.device)
    for tm in hl.tile(m):
        out[tm] = x[tm, :].sum(-1)
    return out


@helion.kernel()
def long_sum_looped(x: torch.Tensor) -> torch.Tensor:
    """A reduction loop written by hand, with the accumulator shaped by a registered block size."""
    m, n = x.size()
    out = torch.empty([m], dtype=x.dtype, device=x.device)
    bn = hl.register_block_size(n)
    for tm in hl.tile(m):
        acc = hl.zeros([tm, bn], dtype=torch.float32)
        for tn in hl.tile(n, block_size=bn):
            acc += x[tm, tn]
        out[tm] = acc.sum(-1)
    return out


@helion.kernel()
def cross_entropy_fwd(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    n, v = logits.shape
    losses = torch.zeros([n], dtype=logits.dtype, device=logits.device)
    flat = logits.view(-1)
    for tn in hl.tile(n):
        target = hl.load(flat, [tn.index * v + labels[tn]])
        rows = logits[tn, :]
        mx = torch.amax(rows, dim=-1, keepdim=True)
        lse = mx.squeeze(-1) + torch.log(torch.exp(rows - mx).sum(-1, keepdim=True).squeeze(-1))
        losses[tn] = lse - target
    return losses


@helion.kernel()
def welford_layer_norm(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty_like(x)
    for tm in hl.tile(m):
        cnt = torch.zeros_like(x[tm, 0], dtype=torch.float32)
        mean = torch.zeros_like(cnt)
        m2 = torch.zeros_like(cnt)
        for tn in hl.tile(n):
            chunk = x[tm, tn].to(torch.float32)
            k = (tn.index < n).to(torch.int32).sum()
            s1 = torch.sum(chunk, dim=-1)
            s2 = torch.sum(chunk * chunk, dim=-1)
            cmean = s1 / k
            cm2 = s2 - s1 * s1 / k
            delta = cmean - mean
            total = cnt + k
            mean = mean + delta * (k / total)
            m2 = m2 + cm2 + delta * delta * (cnt * k / total)
            cnt = total
        rstd = torch.rsqrt(m2 / cnt + eps)
        for tn in hl.tile(n):
            y = (x[tm, tn].float() - mean[:, None]) * rstd[:, None]
            out[tm, tn] = (y * w[tn][None, :].float() + b[tn][None, :].float()).to(x.dtype)
    return out


@helion.kernel(static_shapes=True)
def layer_norm_var_mean(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tm in hl.tile(m):
        row = x[tm, :].to(torch.float32)
        var, mean = torch.var_mean(row, dim=-1, keepdim=True, correction=0)
        y = (row - mean) * torch.rsqrt(var + 1e-5)
        out[tm, :] = y * weight[:].to(torch.float32) + bias[:].to(torch.float32)
    return out


@helion.kernel()
def layer_norm_bwd(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                   rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dx per row; dweight/dbias as per-row-tile partial sums (indexed by tile.id), summed on the host."""
    m, n = x.shape
    n = hl.specialize(n)
    bm = hl.register_block_size(m)
    tiles = helion.cdiv(m, bm)
    grad_x = torch.empty_like(x)
    dw_part = x.new_empty([tiles, n], dtype=torch.float32)
    db_part = x.new_empty([tiles, n], dtype=torch.float32)
    for tm in hl.tile(m, block_size=bm):
        xs = x[tm, :].float()
        dy = grad_out[tm, :].float()
        xhat = (xs - mean[tm][:, None]) * rstd[tm][:, None]
        dw_part[tm.id, :] = torch.sum(dy * xhat, dim=0)
        db_part[tm.id, :] = torch.sum(dy, dim=0)
        wdy = weight[None, :].float() * dy
        c1 = torch.sum(xhat * wdy, dim=-1, keepdim=True) / n
        c2 = torch.sum(wdy, dim=-1, keepdim=True) / n
        grad_x[tm, :] = ((wdy - (xhat * c1 + c2)) * rstd[tm][:, None]).to(x.dtype)
    return grad_x, dw_part.sum(0), db_part.sum(0)


@helion.kernel()
def softmax_two_pass(x: torch.Tensor) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty_like(x)
    bm = hl.register_block_size(m)
    bn = hl.register_block_size(n)
    for tm in hl.tile(m, block_size=bm):
        mi = hl.full([tm], float("-inf"), dtype=torch.float32)
        di = hl.zeros([tm], dtype=torch.float32)
        for tn in hl.tile(n, block_size=bn):
            v = x[tm, tn]
            local = torch.amax(v, dim=1)
            new_m = torch.maximum(mi, local)
            di = di * torch.exp(mi - new_m) + torch.exp(v - new_m[:, None]).sum(dim=1)
            mi = new_m
        for tn in hl.tile(n, block_size=bn):
            out[tm, tn] = torch.exp(x[tm, tn] - mi[:, None]) / di[:, None]
    return out


@helion.kernel()
def kl_div_fwd(y_pred: torch.Tensor, y_true: torch.Tensor, log_target: bool = False,
               eps: float = 1e-10) -> torch.Tensor:
    bt, v = y_pred.shape
    loss = torch.zeros((bt,), dtype=torch.float32, device=y_pred.device)
    bv = hl.register_block_size(v)
    bm = hl.register_block_size(bt)
    for tb in hl.tile(bt, block_size=bm):
        acc = hl.zeros([tb, bv], dtype=torch.float32)
        for tv in hl.tile(v, block_size=bv):
            kl = hl.zeros([bm, bv], dtype=torch.float32)
            p = y_pred[tb, tv]
            t = y_true[tb, tv]
            if log_target:
                kl += torch.exp(t) * (t - p)
            else:
                kl += t * (torch.log(torch.clamp(t, min=eps)) - p)
            acc += kl
        loss[tb] = acc.sum(dim=-1)
    return torch.sum(loss) / bt


@helion.kernel()
def jsd_fwd(log_q: torch.Tensor, log_p: torch.Tensor, beta: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    bt, v = log_q.shape
    loss = torch.zeros(log_q.shape, dtype=torch.float32, device=log_q.device)
    dx = torch.empty_like(log_q)
    for tb in hl.tile(bt, block_size=1):
        for tv in hl.tile(v):
            xq = log_q[tb, tv].float()
            yp = log_p[tb, tv].float()
            q = torch.exp(xq)
            p = torch.exp(yp)
            mix = beta * p + (1 - beta) * q
            log_m = torch.log(mix)
            loss[tb, tv] = (beta * p * yp + (1 - beta) * q * xq - mix * log_m) / bt
            dx[tb, tv] = ((1 - beta) * q * (xq - log_m) / bt).to(dx.dtype)
    return torch.sum(loss), dx


def _max_combine(a, b):
    return torch.maximum(a, b)


@helion.kernel()
def custom_reduce(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hl.reduce with a Python combine function and with torch.max; torch.argmax."""
    m, _ = x.size()
    mx = torch.empty([m], dtype=x.dtype, device=x.device)
    arg = torch.empty([m], dtype=torch.int64, device=x.device)
    for tm in hl.tile(m):
        row = x[tm, :]
        mx[tm] = hl.reduce(_max_combine, row, dim=1, other=float("-inf"))
        arg[tm] = torch.argmax(row, dim=-1)
    return mx, arg


def _add_pair(lv, li, rv, ri):
    return torch.where(li == ri, lv + rv, rv), ri


@helion.kernel()
def segment_sum(ids: torch.Tensor, data: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sorted-segment reduction: a segmented scan per tile, then atomics at segment ends."""
    e, f = data.shape
    out = torch.zeros((num_segments, f), dtype=data.dtype, device=data.device)
    for te, tf in hl.tile([e, f]):
        vals = data[te, tf]
        idx = ids[te]
        nxt = hl.load(ids, [te.index + 1], extra_mask=te.index < e - 1)
        summed, _ = hl.associative_scan(_add_pair, (vals, idx.unsqueeze(1).expand_as(vals)), dim=0)
        last = (idx != nxt) | (te.index % te.block_size == te.block_size - 1) | (te.index == e - 1)
        hl.atomic_add(out, [idx, tf], torch.where(last.unsqueeze(1), summed, 0.0))
    return out


@helion.kernel()
def prefix_sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = x.shape
    a = torch.empty_like(x)
    b = torch.empty_like(x)
    for tm in hl.tile(m):
        row = x[tm, :]
        a[tm, :] = torch.cumsum(row, dim=1)
        b[tm, :] = hl.cumsum(row, dim=1, reverse=True)
    return a, b
