"""ADC calibration from observed partial sums (histograms), for the exporter.

Partial sums are integers in a known range, so each parameter set's observations are kept
as an exact histogram; percentiles and 1-D k-means are computed on the histogram.

Choices (documented in workloads/fmnist_cnn/README.md and in each graph's
Provenance.method_settings_json):

* percentile = nearest-rank: the smallest observed value v with cdf(v) >= q * count;
* LINEAR, unsigned codes, centre 0: ``step_fx = max(1, round(2^F * hi / (2^B - 1)))`` with
  ``hi`` the q-th percentile (q = 99.99 %); ``step_fx = 2^F`` if hi <= 0;
* LINEAR, signed codes: lo / hi the (1-q)/2 and (1+q)/2 percentiles,
  ``centre_fx = round(2^F * (lo + hi) / 2)``, ``step_fx = max(1, round(2^F * (hi - lo) /
  (2^B - 1)))`` (``2^F`` if hi == lo);
* NONLINEAR: observations clipped to [lo, hi] (two-sided q), 1-D k-means (Lloyd, uniform
  initialisation over [lo, hi], at most 300 iterations) with 2^B clusters; if the clipped
  range holds at most 2^B integers the levels are those integers (lossless). Thresholds =
  midpoints of sorted centroids, rounded to the 2^-F grid and forced strictly increasing;
  levels = mean of the observations in each final bin (centroid if the bin is empty),
  rounded to the grid.
"""

from __future__ import annotations

import numpy as np


class PsumHistogram:
    """Exact histograms of partial sums per ADC parameter set, for one IMC layer."""

    def __init__(self, layer):
        self.layer = layer
        self.pmin = min(t.pmin for t in layer.tiles)
        self.pmax = max(t.pmax for t in layer.tiles)
        self.range = self.pmax - self.pmin + 1
        self.nsets = layer.adc.nsets
        self.counts = np.zeros(self.nsets * self.range, dtype=np.int64)
        self._sidx = [t.sidx for t in layer.tiles]

    def __call__(self, g, pint):                         # psum hook: pint [R][T][S][N]
        idx = (self._sidx[g] * self.range - self.pmin) + pint
        self.counts += np.bincount(idx.ravel(), minlength=self.counts.size)

    def hist(self, s: int):
        """(values, counts) of parameter set s."""
        c = self.counts[s * self.range:(s + 1) * self.range]
        return np.arange(self.pmin, self.pmax + 1, dtype=np.int64), c


def percentile(values, counts, q: float) -> int:
    """Nearest-rank percentile (q in [0, 1]) of a histogram."""
    total = counts.sum()
    if total == 0:
        return 0
    cdf = np.cumsum(counts)
    i = int(np.searchsorted(cdf, q * total, side="left"))
    return int(values[min(i, len(values) - 1)])


def fit_linear_unsigned(values, counts, bits: int, F: int, q: float):
    hi = percentile(values, counts, q)
    if hi <= 0:
        return 1 << F, 0
    return max(1, int(round((1 << F) * hi / ((1 << bits) - 1)))), 0


def fit_linear_signed(values, counts, bits: int, F: int, q: float):
    lo = percentile(values, counts, (1.0 - q) / 2)
    hi = percentile(values, counts, (1.0 + q) / 2)
    centre = int(round((1 << F) * (lo + hi) / 2.0))
    if hi <= lo:
        return 1 << F, centre
    return max(1, int(round((1 << F) * (hi - lo) / ((1 << bits) - 1)))), centre


def kmeans_1d(values, counts, k: int, iters: int = 300):
    """Lloyd's algorithm on a weighted 1-D sample; returns sorted centroids (float)."""
    v = values.astype(np.float64)
    w = counts.astype(np.float64)
    lo, hi = v[0], v[-1]
    c = np.linspace(lo, hi, k)
    cw = np.cumsum(w)
    cwv = np.cumsum(w * v)
    for _ in range(iters):
        mids = (c[:-1] + c[1:]) / 2
        # cluster j holds values in [mids[j-1], mids[j])
        edges = np.searchsorted(v, mids, side="left")
        lo_i = np.concatenate([[0], edges])
        hi_i = np.concatenate([edges, [len(v)]])
        sw = np.where(hi_i > 0, cw[np.maximum(hi_i - 1, 0)], 0) - \
            np.where(lo_i > 0, cw[np.maximum(lo_i - 1, 0)], 0)
        swv = np.where(hi_i > 0, cwv[np.maximum(hi_i - 1, 0)], 0) - \
            np.where(lo_i > 0, cwv[np.maximum(lo_i - 1, 0)], 0)
        new = np.where(sw > 0, swv / np.maximum(sw, 1e-300), c)
        new = np.sort(new)
        if np.allclose(new, c, rtol=0, atol=1e-9):
            c = new
            break
        c = new
    return c


def fit_nonlinear(values, counts, bits: int, F: int, q: float):
    """(thresholds_fx [2^B - 1], levels_fx [2^B]) of one parameter set."""
    L = 1 << bits
    one = 1 << F
    if counts.sum() == 0:
        cents = np.arange(L, dtype=np.float64)
        lo = 0
    else:
        lo = percentile(values, counts, (1.0 - q) / 2)
        hi = percentile(values, counts, (1.0 + q) / 2)
        keep = counts > 0
        v = np.clip(values[keep], lo, hi)
        w = counts[keep]
        # merge clipped duplicates
        uv, inv = np.unique(v, return_inverse=True)
        uw = np.bincount(inv, weights=w).astype(np.int64)
        if hi - lo + 1 <= L:
            cents = np.arange(lo, lo + L, dtype=np.float64)
        else:
            cents = kmeans_1d(uv, uw, L)
    thr = np.rint((cents[:-1] + cents[1:]) / 2 * one).astype(np.int64)
    for i in range(1, len(thr)):
        if thr[i] <= thr[i - 1]:
            thr[i] = thr[i - 1] + 1
    # levels: conditional means of the (unclipped) observations per final bin
    vfx = values * one
    code = np.searchsorted(thr, vfx, side="right")            # #{thr <= v}
    sw = np.bincount(code, weights=counts.astype(np.float64), minlength=L)
    swv = np.bincount(code, weights=counts * values.astype(np.float64), minlength=L)
    lev = np.where(sw > 0, swv / np.maximum(sw, 1e-300), cents)
    lev = np.rint(lev * one).astype(np.int64)
    return thr, lev
