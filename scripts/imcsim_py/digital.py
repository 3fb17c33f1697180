"""Numpy reference of the digital-unit operations (docs/SEMANTICS.md "Digital nodes").

Batched over a leading image axis B. Integer quantities are exact int64 (products are computed
as float64 matmuls only where the loader's bounds make every partial sum < 2^53, hence exact);
every float64 operation is one IEEE operation in the contract's order, element-wise, so the
results equal the C++ kernels (models/digital/ops.cc) bit for bit. Functions return real
values y (float64, before requantisation) or, for moves and tables, codes.
"""

from __future__ import annotations

import numpy as np

_F64_EXACT = 1 << 53


def _exact_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """Integer a @ b (int64), through float64 when every partial sum is below 2^53."""
    if bound < _F64_EXACT:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) of int64 values in [0, 2^62], exact: a float estimate then integer
    corrections (the result does not depend on the library's sqrt)."""
    v = np.asarray(v, dtype=np.int64)
    r = np.sqrt(v.astype(np.float64)).astype(np.int64)
    while True:
        over = r * r > v
        if not over.any():
            break
        r = r - over
    while True:
        under = (r + 1) * (r + 1) <= v
        if not under.any():
            break
        r = r + under
    return r


def digital_conv(x, zx, sx, W, sw, bias, relu, kh, kw, sh, sw_, ph, pw, groups):
    """Grouped Conv2d: x [B][Cin][H][W] codes, W int [Cout][Cin/g][kh][kw]; y [B][Cout][Ho][Wo]."""
    B, Cin, H, Wd = x.shape
    Cout = W.shape[0]
    cin_g, cout_g = Cin // groups, Cout // groups
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (Wd + 2 * pw - kw) // sw_ + 1
    xs = x.astype(np.int64) - zx
    if ph or pw:
        xp = np.zeros((B, Cin, H + 2 * ph, Wd + 2 * pw), dtype=np.int64)
        xp[:, :, ph:ph + H, pw:pw + Wd] = xs
    else:
        xp = xs
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, :sh * (Ho - 1) + 1:sh, :sw_ * (Wo - 1) + 1:sw_]      # [B][C][Ho][Wo][kh][kw]
    m = np.float64(sx) * np.asarray(sw, dtype=np.float64)               # [Cout]
    acc = np.empty((B, Cout, Ho, Wo), dtype=np.int64)
    kg = cin_g * kh * kw
    bound = kg * int(np.abs(xs).max(initial=0)) * int(np.abs(W).max(initial=0))
    for grp in range(groups):
        cols = win[:, grp * cin_g:(grp + 1) * cin_g].transpose(0, 2, 3, 1, 4, 5).reshape(B * Ho * Wo, kg)
        wg = W[grp * cout_g:(grp + 1) * cout_g].reshape(cout_g, kg).T
        a = _exact_matmul(cols, wg, bound)                               # [B*P][cout_g]
        acc[:, grp * cout_g:(grp + 1) * cout_g] = a.reshape(B, Ho, Wo, cout_g).transpose(0, 3, 1, 2)
    y = acc.astype(np.float64) * m[None, :, None, None] + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return np.maximum(y, 0.0) if relu else y


def digital_linear(x, zx, sx, W, sw, bias, relu):
    """x [B][K] or [B][T][K] codes, W int [N][K]; y [B][N] or [B][T][N]."""
    xs = x.astype(np.int64) - zx
    K = W.shape[1]
    bound = K * int(np.abs(xs).max(initial=0)) * int(np.abs(W).max(initial=0))
    acc = _exact_matmul(xs.reshape(-1, K), W.T, bound).reshape(x.shape[:-1] + (W.shape[0],))
    m = np.float64(sx) * np.asarray(sw, dtype=np.float64)
    y = acc.astype(np.float64) * m + np.asarray(bias, dtype=np.float64)
    return np.maximum(y, 0.0) if relu else y


def global_avg_pool(x, zx, sx):
    """[B][C][H][W] -> [B][C]; tokens [B][T][D] -> [B][D] (mean over T)."""
    x = x.astype(np.int64)
    if x.ndim == 4:
        s, cnt = x.sum(axis=(2, 3)), x.shape[2] * x.shape[3]
    else:
        s, cnt = x.sum(axis=1), x.shape[1]
    return ((s - cnt * zx).astype(np.float64) * np.float64(sx)) / np.float64(cnt)


def to_tokens(x, ph, pw):
    """[B][C][H][W] -> [B][T][D], T = (H/ph)(W/pw), D = C ph pw (feature (c, i, j))."""
    B, C, H, W = x.shape
    t = x.reshape(B, C, H // ph, ph, W // pw, pw).transpose(0, 2, 4, 1, 3, 5)
    return np.ascontiguousarray(t).reshape(B, (H // ph) * (W // pw), C * ph * pw)


def attention_scores(q, zq, sq, k, zk, sk, heads, scale):
    """q [B][T][D], k [B][T2][D] -> y [B][heads][T][T2]."""
    B, T, D = q.shape
    T2 = k.shape[1]
    dh = D // heads
    qs = (q.astype(np.int64) - zq).reshape(B, T, heads, dh).transpose(0, 2, 1, 3)
    ks = (k.astype(np.int64) - zk).reshape(B, T2, heads, dh).transpose(0, 2, 3, 1)
    bound = dh * int(np.abs(qs).max(initial=0)) * int(np.abs(ks).max(initial=0))
    acc = _exact_matmul(qs, ks, bound)
    m = (np.float64(sq) * np.float64(sk)) * np.float64(scale)
    return acc.astype(np.float64) * m


def attention_context(p, zp, sp, v, zv, sv):
    """p [B][heads][T][T2], v [B][T2][D] -> y [B][T][D]."""
    B, H, T, T2 = p.shape
    D = v.shape[2]
    dh = D // H
    ps = p.astype(np.int64) - zp
    vs = (v.astype(np.int64) - zv).reshape(B, T2, H, dh).transpose(0, 2, 1, 3)   # [B][H][T2][dh]
    bound = T2 * int(np.abs(ps).max(initial=0)) * int(np.abs(vs).max(initial=0))
    acc = _exact_matmul(ps, vs, bound)                                          # [B][H][T][dh]
    acc = acc.transpose(0, 2, 1, 3).reshape(B, T, D)
    return acc.astype(np.float64) * (np.float64(sp) * np.float64(sv))


def softmax(x, exp_table):
    """Softmax over the last axis of codes x; exp_table[d], d = q_max - q."""
    x = x.astype(np.int64)
    tab = np.asarray(exp_table, dtype=np.int64)
    e = tab[x.max(axis=-1, keepdims=True) - x]
    s = e.sum(axis=-1, keepdims=True)
    return e.astype(np.float64) / s.astype(np.float64)


def layer_norm(x, zx, gamma, beta, eps_int):
    """Layer norm over the last axis (D) of codes x with integer statistics."""
    xs = x.astype(np.int64) - zx
    D = xs.shape[-1]
    s1 = xs.sum(axis=-1, keepdims=True)
    c = D * xs - s1                                   # D (x - mean)
    v = (c * c).sum(axis=-1, keepdims=True)           # D^3 var
    r = isqrt(v * D + np.int64(eps_int))              # ~ D^2 sqrt(var + eps)
    rd = r.astype(np.float64)
    safe = np.where(r == 0, 1.0, rd)
    n = np.where(r == 0, 0.0, (D * c).astype(np.float64) / safe)
    return n * np.asarray(gamma, dtype=np.float64) + np.asarray(beta, dtype=np.float64)


def lut(x, table):
    return np.asarray(table, dtype=np.int64)[x.astype(np.int64)]


def add_constant(x, zx, sx, values, relu):
    y = (np.float64(sx) * (x.astype(np.int64) - zx).astype(np.float64)) + \
        np.asarray(values, dtype=np.float64).reshape(x.shape[1:])
    return np.maximum(y, 0.0) if relu else y


def concat(xs, infos, out_info):
    """Concatenation along the first (non-batch) axis: codes moved where the quant is equal,
    else real values s (q - z) to be requantised (returned as float64 with a mask)."""
    parts = []
    for x, qi in zip(xs, infos):
        same = (qi.scale == out_info.scale and qi.zero_point == out_info.zero_point
                and qi.bits == out_info.bits)
        parts.append((x.astype(np.int64), same, qi))
    return parts
