"""BS-KMQ non-linear ADC fit, a line-for-line mirror of imcsim's C++ fit
(models/adc/calibration.cc: fit_set for CalibMethod::kBsKmq with the default level rule
`reserved`; docs/calibration.md "bs-kmq"), so that `torch_imc` calibrates the same NL-ADC
references as `imcsim calibrate --method bs-kmq` on the same partial-sum histograms.

Exactness: the C++ keeps weight / weighted-value prefix sums in `long double` (x86-64: 80-bit);
here they are numpy.longdouble (the same format, the same sequential additions), and every
other step is the same IEEE double operation. tests/python/test_torch_methods.py compares the
tables with `imcsim calibrate` on an exported graph.
"""

from __future__ import annotations

import math

import numpy as np

LD = np.longdouble


def _round_half_away(x: float) -> int:
    """std::llround of a double."""
    if x >= 0:
        r = math.floor(x)
        return int(r + 1) if x - r >= 0.5 else int(r)
    return -_round_half_away(-x)


class _Data:
    """Weighted distinct values (increasing, positive weights) with long-double prefix sums."""

    def __init__(self, v, w):
        self.v = np.asarray(v, dtype=np.int64)
        self.w = np.asarray(w, dtype=np.float64)
        n = len(self.v)
        self.cw = np.zeros(n + 1, dtype=LD)
        self.cwv = np.zeros(n + 1, dtype=LD)
        if n:
            self.cw[1:] = np.cumsum(self.w.astype(LD))
            self.cwv[1:] = np.cumsum(self.w.astype(LD) * self.v.astype(LD))
        self.vd = self.v.astype(np.float64)

    def __len__(self):
        return len(self.v)

    def weight(self, a, b):
        return self.cw[b] - self.cw[a]

    def mean(self, a, b):                     # long double
        return (self.cwv[b] - self.cwv[a]) / (self.cw[b] - self.cw[a])

    def lower(self, t: float) -> int:
        return int(np.searchsorted(self.vd, t, side="left"))


def percentile(values, counts, q: float) -> int:
    """histogram_percentile: the smallest observed v with cum >= q/100 · total (q in %)."""
    nz = counts > 0
    v, c = values[nz], counts[nz]
    target = q / 100.0 * float(int(c.sum()))
    cum = np.cumsum(c).astype(np.float64)
    i = int(np.searchsorted(cum, target, side="left"))
    return int(v[min(i, len(v) - 1)])


def _midpoints(c):
    return [(c[i] + c[i + 1]) / 2.0 for i in range(len(c) - 1)]


def _pad(values, L):
    values = list(values)
    top = values[-1] if values else -1.0
    while len(values) < L:
        top += 1.0
        values.append(top)
    return values


def _lloyd(d: _Data, c, max_iterations):
    L = len(c)
    prev = None
    for it in range(max_iterations):
        edges = [0] + [d.lower((c[j - 1] + c[j]) / 2.0) for j in range(1, L)] + [len(d)]
        if edges == prev:
            return it
        prev = edges
        for j in range(L):
            if edges[j + 1] > edges[j] and d.weight(edges[j], edges[j + 1]) > 0:
                c[j] = float(d.mean(edges[j], edges[j + 1]))
    return max_iterations


def _greedy_d2_init(d: _Data, L):
    half = d.cw[-1] / 2
    first = 0
    while first + 1 < len(d) and d.cw[first + 1] < half:
        first += 1
    dist2 = np.full(len(d), np.inf)
    chosen = []
    pick = first
    for _ in range(L):
        chosen.append(float(d.v[pick]))
        diff = (d.v - d.v[pick]).astype(np.float64)
        dist2 = np.minimum(dist2, diff * diff)
        score = d.w * dist2
        pick = int(np.argmax(score))
    return sorted(chosen)


def _kmeans(d: _Data, L, max_iterations):
    c = _greedy_d2_init(d, L)
    _lloyd(d, c, max_iterations)
    return c


def _ceil_fx(t: float, F: int) -> int:
    x = math.ceil(math.ldexp(t, F)) if math.isfinite(t) else t
    lim = float(1 << 60)
    return int(min(max(x, -lim), lim))


def assemble_nonlinear(thresholds, full: _Data, F: int):
    """(thresholds_fx, levels_fx) of the common table assembly (docs/calibration.md)."""
    one = 1 << F
    n = len(thresholds)
    t = [_ceil_fx(x, F) for x in thresholds]
    for i in range(1, n):
        t[i] = max(t[i], t[i - 1])
    i = 0
    while i < n:
        j = i
        while j + 1 < n and t[j + 1] == t[i]:
            j += 1
        k = j - i + 1
        if k > 1:
            x = t[i]
            gap_lo = ((x - 1) // one) * one + 1
            gap_hi = gap_lo + one - 1
            start = max(gap_lo, min(x, gap_hi - k + 1))
            for m in range(k):
                t[i + m] = start + m
        i = j + 1
    for i in range(1, n):
        t[i] = max(t[i], t[i - 1] + 1)
    levels = [0] * (n + 1)
    begin = 0
    vfx = [int(v) * one for v in full.v]
    for j in range(n + 1):
        end = len(full)
        if j < n:
            end = begin
            while end < len(full) and vfx[end] < t[j]:
                end += 1
        if end > begin and full.weight(begin, end) > 0:
            levels[j] = _round_half_away(float(np.ldexp(full.mean(begin, end), F)))
        else:
            e_lo = t[0] - one if j == 0 else t[j - 1]
            e_hi = t[n - 1] + one if j == n else t[j]
            levels[j] = (e_lo + e_hi) // 2
        begin = end
    return np.asarray(t, dtype=np.int64), np.asarray(levels, dtype=np.int64)


def fit_bskmq(values, counts, bits: int, F: int, percentile_q: float = 99.99,
              max_iterations: int = 10000):
    """(thresholds_fx [2^B - 1], levels_fx [2^B]) of one parameter set's histogram
    (values: int64 ascending; counts >= 0) by BS-KMQ with reserved boundary bins."""
    values = np.asarray(values, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    L = 1 << bits
    nz = counts > 0
    d = _Data(values[nz], counts[nz])
    if len(d) == 0:
        return assemble_nonlinear(_midpoints([float(k) for k in range(L)]), d, F)
    lo, hi = int(d.v[0]), int(d.v[-1])
    if hi - lo + 1 <= L:
        thr = _midpoints([float(lo + k) for k in range(L)])
    elif len(d) <= L:
        thr = _midpoints(_pad([float(v) for v in d.v], L))
    else:
        x_lo = percentile(values, counts, (100.0 - percentile_q) / 2.0)
        x_hi = percentile(values, counts, (100.0 + percentile_q) / 2.0)
        sv = np.clip(d.v, x_lo, x_hi)
        uv, inv = np.unique(sv, return_inverse=True)
        uw = np.bincount(inv, weights=d.w)          # sums of integer counts: exact
        if len(uv) > L:
            if L == 2:
                thr = [(float(x_lo) + float(x_hi)) / 2.0]
            else:
                keep = (uv != x_lo) & (uv != x_hi)
                c = _kmeans(_Data(uv[keep], uw[keep]), L - 2, max_iterations)
                thr = [float(x_lo) + 0.5] + _midpoints(c) + [float(x_hi) - 0.5]
        else:
            thr = _midpoints(_pad([float(v) for v in uv], L))
    return assemble_nonlinear(thr, d, F)
