"""Numpy reference implementation of docs/SEMANTICS.md (format version 1).

Every integer quantity (partial sums, ADC codes, accumulators, output codes) is computed
exactly; every float64 value follows the operation order of the contract. The C++ engine
must agree with this module bit-exactly.

Speed: partial sums are computed as float matmuls per (row tile, all input groups, all
weight slices) -- exact, since every partial and final sum is an integer whose magnitude is
bounded (asserted) below 2^24 (float32) or 2^53 (float64). The ADC is applied through a
lookup table over the finite range of possible partial sums whenever that table is small,
built by the direct (vectorised) ADC function itself, so both paths agree by construction;
``use_lut=False`` forces the direct path (the tests compare both).

Typical use::

    g = graph_pb.load_graph("workloads/fmnist_cnn/fmnist_cnn.imcg")
    ref = Reference(g)
    codes = ref.input_codes(pixels_u8)           # [B][C][H][W]
    out = ref.run(codes)                          # final outputs [B][num_classes]
    pred = np.argmax(out, axis=1)
    rec = ref.trace(codes[0])                     # one image: everything, for goldens

Analog non-idealities (SEMANTICS.md step 5; off by default) take the arch config's
"nonidealities" keys and a seed; the ADC noise is keyed by each image's dataset index::

    ref = Reference(g, nonideal={"adc_noise_sigma_lsb": 0.5, "stuck_at_rate": 1e-3}, seed=7)
    out = ref.run(codes, images=np.arange(len(codes)))
    rec = ref.trace(codes[0], image_index=0)

With non-idealities the layers take the direct (table-free) ADC path and record the analog
ADC inputs (units 2^-16 LSB) as their partial sums.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import os
from dataclasses import dataclass, field

import numpy as np

from .graph_pb import pb
from . import digital as D

M_DIGEST = 0x100000001B3
_U64 = (1 << 64) - 1
_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_I64_LIMIT = 1 << 62
_MAGIC52 = float(1 << 52)
_MAGIC52_BITS = np.int64(np.array(_MAGIC52).view(np.int64))

ENC_OFFSET = pb.WEIGHT_ENCODING_OFFSET
ENC_TWOS = pb.WEIGHT_ENCODING_TWOS_COMPLEMENT
ENC_DIFF_DIGITAL = pb.WEIGHT_ENCODING_DIFFERENTIAL_DIGITAL
ENC_DIFF_ANALOG = pb.WEIGHT_ENCODING_DIFFERENTIAL_ANALOG
TILING_CONTIGUOUS = pb.ROW_TILING_CONTIGUOUS
TILING_CHANNEL_ALIGNED = pb.ROW_TILING_CHANNEL_ALIGNED
ADC_IDEAL = pb.AdcSpec.KIND_IDEAL
ADC_LINEAR = pb.AdcSpec.KIND_LINEAR
ADC_NONLINEAR = pb.AdcSpec.KIND_NONLINEAR
ROUND_FLOOR = pb.AdcSpec.ROUNDING_FLOOR
ROUND_HALF_AWAY = pb.AdcSpec.ROUNDING_HALF_AWAY
GRAN_LAYER = pb.AdcSpec.GRANULARITY_LAYER
GRAN_COLUMN = pb.AdcSpec.GRANULARITY_COLUMN
GRAN_STC = pb.AdcSpec.GRANULARITY_SLICE_TILE_COLUMN


class GraphError(ValueError):
    """The graph violates the contract (names the node and field)."""


# ---------------------------------------------------------------------------------------
# Small exact helpers
# ---------------------------------------------------------------------------------------

def digest(values) -> int:
    """Golden digest: sum_i uint64(v_i) * M^(i+1) mod 2^64, M = 0x100000001B3."""
    v = np.ascontiguousarray(np.asarray(values, dtype=np.int64)).ravel().view(np.uint64)
    if v.size == 0:
        return 0
    powers = np.full(v.size, M_DIGEST, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.multiply.accumulate(powers, out=powers)          # M^(i+1), wrapping mod 2^64
        return int(np.sum(v * powers, dtype=np.uint64))


def digest_slow(values) -> int:
    """Pure-Python digest (for tests)."""
    acc, p = 0, 1
    for x in values:
        p = (p * M_DIGEST) & _U64
        acc = (acc + ((int(x) & _U64) * p)) & _U64
    return acc


def requantize(y, scale: float, zero_point: int, bits: int) -> np.ndarray:
    """q = clamp(rint(y / s) + z, 0, 2^b - 1), clamp in float64, then int64."""
    y = np.asarray(y, dtype=np.float64)
    q = np.rint(y / np.float64(scale)) + np.float64(zero_point)
    q = np.clip(q, 0.0, np.float64((1 << bits) - 1))
    return q.astype(np.int64)


def floor_div(a, b):
    return np.floor_divide(a, b)


def input_groups(Bx: int, Bdac: int, a: int):
    """[(bit_lo, nbits, sign)] of the DAC steps (SEMANTICS.md step 2)."""
    if Bx < 1 or Bdac < 1:
        raise GraphError(f"input bits {Bx} and dac_bits {Bdac} must be >= 1")
    if a == 0:
        n = -(-Bx // Bdac)
        return [(t * Bdac, min(Bdac, Bx - t * Bdac), 1) for t in range(n)]
    if a == 1 << (Bx - 1):
        mag = Bx - 1
        n = -(-mag // Bdac)
        groups = [(t * Bdac, min(Bdac, mag - t * Bdac), 1) for t in range(n)]
        groups.append((Bx - 1, 1, -1))
        return groups
    raise GraphError(f"ashift_offset {a} must be 0 or 2^(Bx-1) = {1 << (Bx - 1)}")


def weight_slices(encoding: int, Bw: int, Bc: int):
    """[(bit_lo, nbits, sign, polarity)] (SEMANTICS.md step 3). polarity: 'D' the (offset or
    two's complement) pattern, '+' W+, '-' W-, '+-' W+ minus W- (analog difference)."""
    if Bw < 1 or Bc < 1:
        raise GraphError(f"weight_bits {Bw} and cell_bits {Bc} must be >= 1")
    if encoding == ENC_OFFSET:
        n = -(-Bw // Bc)
        return [(s * Bc, min(Bc, Bw - s * Bc), 1, "D") for s in range(n)]
    mag = Bw - 1
    n = -(-mag // Bc)
    mags = [(s * Bc, min(Bc, mag - s * Bc)) for s in range(n)]
    if encoding == ENC_TWOS:
        return [(lo, nb, 1, "D") for lo, nb in mags] + [(Bw - 1, 1, -1, "D")]
    if encoding == ENC_DIFF_DIGITAL:
        return [(lo, nb, 1, "+") for lo, nb in mags] + [(lo, nb, -1, "-") for lo, nb in mags]
    if encoding == ENC_DIFF_ANALOG:
        return [(lo, nb, 1, "+-") for lo, nb in mags]
    raise GraphError(f"unknown weight encoding {encoding}")


def cell_values(W: np.ndarray, encoding: int, Bw: int, slices) -> np.ndarray:
    """d_s[k][n] for every slice: int64 [S][K][N] (analog: d+ - d-)."""
    W = np.asarray(W, dtype=np.int64)
    if encoding == ENC_OFFSET:
        D = W + (1 << (Bw - 1))
    elif encoding == ENC_TWOS:
        D = W & ((1 << Bw) - 1)
    else:
        D = None
    Wp, Wm = np.maximum(W, 0), np.maximum(-W, 0)
    out = np.empty((len(slices),) + W.shape, dtype=np.int64)
    for i, (lo, nb, _sign, pol) in enumerate(slices):
        mask = (1 << nb) - 1
        if pol == "D":
            out[i] = (D >> lo) & mask
        elif pol == "+":
            out[i] = (Wp >> lo) & mask
        elif pol == "-":
            out[i] = (Wm >> lo) & mask
        else:
            out[i] = ((Wp >> lo) & mask) - ((Wm >> lo) & mask)
    return out


def row_tiles(tiling: int, K: int, R: int, Cin: int, kh: int, kw: int):
    """[(row_lo, row_hi)] (SEMANTICS.md step 4)."""
    if R < 1:
        raise GraphError(f"array_rows {R} must be >= 1")
    if tiling == TILING_CONTIGUOUS:
        return [(g * R, min((g + 1) * R, K)) for g in range(-(-K // R))]
    if tiling == TILING_CHANNEL_ALIGNED:
        taps = kh * kw
        if taps > R:
            raise GraphError(f"channel-aligned tiling needs kh*kw = {taps} <= array_rows {R}")
        cpt = min(R // taps, Cin)
        G = -(-Cin // cpt)
        return [(g * cpt * taps, min((g + 1) * cpt, Cin) * taps) for g in range(G)]
    raise GraphError(f"unknown row tiling {tiling}")


def programmed_cells(W, encoding: int, Bw: int, Bc: int, slices, ni: "NonIdeal", seed: int,
                     node_index: int):
    """Cells programmed with stuck-at faults and conductance variation (SEMANTICS.md step 5):
    int64 [S][K][N] levels (no variation) or fixed-point conductances in 2^-16 units, W+ minus
    W- for DIFFERENTIAL_ANALOG; and whether they are integer levels."""
    W = np.asarray(W, dtype=np.int64)
    K, N = W.shape
    S = len(slices)
    if encoding == ENC_DIFF_ANALOG:
        pols = [(0, [(lo, nb, sg, "+") for lo, nb, sg, _ in slices]),
                (1, [(lo, nb, sg, "-") for lo, nb, sg, _ in slices])]
    else:
        pols = [(0, slices)]
    integer = not ni.variation
    out = np.zeros((S, K, N), dtype=np.int64)
    t0 = np.float64(ni.stuck_at_rate) * (np.float64(1.0) - np.float64(ni.stuck_at_max_fraction))
    t1 = np.float64(ni.stuck_at_rate)
    top = (1 << Bc) - 1
    ks = np.arange(K, dtype=np.uint64)[:, None]
    ss = np.arange(S, dtype=np.uint64)[None, :]
    n = np.arange(N, dtype=np.uint64)[None, None, :]
    for pol, sl in pols:
        lev = cell_values(W, encoding, Bw, sl).transpose(1, 0, 2)          # [K][S][N]
        sign = -1 if pol == 1 else 1
        if ni.stuck:
            h = rng_extend(rng_extend(rng_key(seed, STREAM_STUCK_AT, node_index), ks), ss)
            key = rng_extend(h, np.uint64(pol))[:, :, None]                  # [K][S][1]
            u = uniform_sample(key, n)
            lev = np.where(u < t0, 0, np.where(u < t1, top, lev))
        if integer:
            out += sign * lev.transpose(1, 0, 2)
        else:
            h = rng_extend(rng_extend(rng_key(seed, STREAM_VARIATION, node_index), ks), ss)
            key = rng_extend(h, np.uint64(pol))[:, :, None]
            g = np.float64(ni.conductance_variation_sigma) * gaussian_sample(key, n)
            g = np.float64(1.0) + g
            g = np.maximum(g, 0.0)
            g = lev.astype(np.float64) * g
            g = g * np.float64(FX_ONE)
            out += sign * np.rint(g).astype(np.int64).transpose(1, 0, 2)
    return out, integer


def stuck_counts(W, encoding, Bw, Bc, slices, ni, seed, node_index):
    """(stuck at 0, stuck at top, physical cells) of a layer, for tests."""
    W = np.asarray(W, dtype=np.int64)
    K, N = W.shape
    S = len(slices)
    npol = 2 if encoding == ENC_DIFF_ANALOG else 1
    t0 = np.float64(ni.stuck_at_rate) * (np.float64(1.0) - np.float64(ni.stuck_at_max_fraction))
    t1 = np.float64(ni.stuck_at_rate)
    z = m = 0
    for pol in range(npol):
        h = rng_extend(rng_extend(rng_key(seed, STREAM_STUCK_AT, node_index),
                                  np.arange(K, dtype=np.uint64)[:, None]),
                       np.arange(S, dtype=np.uint64)[None, :])
        u = uniform_sample(rng_extend(h, np.uint64(pol))[:, :, None],
                           np.arange(N, dtype=np.uint64)[None, None, :])
        z += int(np.sum(u < t0))
        m += int(np.sum((u >= t0) & (u < t1)))
    return z, m, npol * K * S * N


# ---------------------------------------------------------------------------------------
# Non-idealities (SEMANTICS.md step 5): counter-based RNG, programmed cells, transfer curve,
# ADC noise, ADC of analog values
# ---------------------------------------------------------------------------------------

FX_BITS = 16                      # analog values are int64 in units of 2^-16 LSB
FX_ONE = 1 << FX_BITS
ANALOG_LIMIT = 1 << 46            # |ADC input| <= 2^46 units (2^30 LSB)
_GAMMA = 0x9E3779B97F4A7C15
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
STREAM_ADC_NOISE, STREAM_STUCK_AT, STREAM_VARIATION = 1, 2, 3
MAX_NOISE_SIGMA_LSB = float(1 << 20)
MAX_VARIATION_SIGMA = 1.0
MAX_TRANSFER_ABS = float(1 << 30)
MAX_TRANSFER_POINTS = 4096
_GAMMA32 = 0x9E3779B9
_H1, _H2 = 0x21F0AAAD, 0x735A2D97           # hash32 (a 2-round xorshift-multiply hash from Wellons' hash-prospector)
_IH_MASK = np.uint32(0x1F | (0x1F << 10) | (0x1F << 20))
IRWIN_HALL_MEAN = 186                        # 12 fields of 5 bits: S in [0, 372]


@dataclass(frozen=True)
class NonIdeal:
    """Analog non-idealities; the fields and their JSON names are those of the arch config's
    "nonidealities" section (docs/arch_config.md). All off by default."""
    adc_noise_sigma_lsb: float = 0.0
    conductance_variation_sigma: float = 0.0
    transfer_curve: tuple = ()            # ((x, y), ...) in partial-sum LSB, x increasing
    stuck_at_rate: float = 0.0
    stuck_at_max_fraction: float = 0.5

    KEYS = ("adc_noise_sigma_lsb", "conductance_variation_sigma", "transfer_curve",
            "stuck_at_rate", "stuck_at_max_fraction")

    def __post_init__(self):
        object.__setattr__(self, "transfer_curve",
                           tuple((float(x), float(y)) for x, y in self.transfer_curve))
        problem = self.problem()
        if problem:
            raise ValueError(f"nonidealities: {problem}")

    def problem(self) -> str:
        """'' if valid, else what is wrong (the C++ config's rules)."""
        def bad(v, lo, hi):
            return not (lo <= v <= hi)
        if bad(self.adc_noise_sigma_lsb, 0.0, MAX_NOISE_SIGMA_LSB):
            return f"adc_noise_sigma_lsb must be in [0, 2^20], got {self.adc_noise_sigma_lsb}"
        if bad(self.conductance_variation_sigma, 0.0, MAX_VARIATION_SIGMA):
            return f"conductance_variation_sigma must be in [0, 1], got {self.conductance_variation_sigma}"
        if bad(self.stuck_at_rate, 0.0, 1.0):
            return f"stuck_at_rate must be in [0, 1], got {self.stuck_at_rate}"
        if bad(self.stuck_at_max_fraction, 0.0, 1.0):
            return f"stuck_at_max_fraction must be in [0, 1], got {self.stuck_at_max_fraction}"
        t = self.transfer_curve
        if len(t) == 1:
            return "transfer_curve needs at least 2 points (or none)"
        if len(t) > MAX_TRANSFER_POINTS:
            return f"transfer_curve has {len(t)} points, at most {MAX_TRANSFER_POINTS} allowed"
        for i, (x, y) in enumerate(t):
            if bad(x, -MAX_TRANSFER_ABS, MAX_TRANSFER_ABS) or bad(y, -MAX_TRANSFER_ABS, MAX_TRANSFER_ABS):
                return f"transfer_curve point {i} must be finite with |x|, |y| <= 2^30"
            if i > 0 and not x > t[i - 1][0]:
                return (f"transfer_curve x values must be strictly increasing (sorted): point {i} "
                        f"has x = {x} after x = {t[i - 1][0]}")
        return ""

    @property
    def noise(self):
        return self.adc_noise_sigma_lsb > 0

    @property
    def variation(self):
        return self.conductance_variation_sigma > 0

    @property
    def stuck(self):
        return self.stuck_at_rate > 0

    @property
    def transfer(self):
        return len(self.transfer_curve) > 0

    def active(self) -> bool:
        return self.noise or self.variation or self.stuck or self.transfer

    @classmethod
    def from_dict(cls, d):
        """From a config-style dict (unknown keys are errors)."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"nonidealities: unknown key(s) {unknown} (expected one of {list(cls.KEYS)})")
        return cls(**d)

    def to_dict(self):
        return {"adc_noise_sigma_lsb": self.adc_noise_sigma_lsb,
                "conductance_variation_sigma": self.conductance_variation_sigma,
                "transfer_curve": [list(p) for p in self.transfer_curve],
                "stuck_at_rate": self.stuck_at_rate,
                "stuck_at_max_fraction": self.stuck_at_max_fraction}


def _u64(v):
    return np.asarray(v, dtype=np.uint64)


def splitmix64_mix(z):
    """splitmix64's output function on uint64 arrays (wrapping arithmetic)."""
    z = _u64(z)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    return z ^ (z >> np.uint64(31))


def splitmix64_output(state, i):
    """Output i (0-based) of a splitmix64 generator seeded with `state`:
    mix(state + (i + 1) * gamma) mod 2^64 (arrays broadcast)."""
    with np.errstate(over="ignore"):
        return splitmix64_mix(_u64(state) + (_u64(i) + np.uint64(1)) * np.uint64(_GAMMA))


def rng_extend(h, v):
    """H(..., v) from H(...): splitmix64_output(h ^ v, 0)."""
    return splitmix64_output(_u64(h) ^ _u64(v), 0)


def rng_key(*values) -> int:
    """H(v_0, ..., v_m) with H() = 0 (a Python int)."""
    h = np.uint64(0)
    for v in values:
        h = rng_extend(h, np.uint64(int(v) & _U64))
    return int(h)


def hash32(x):
    """The 32-bit xorshift-multiply finalizer on uint32 arrays (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(_H1)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(_H2)
    return x ^ (x >> np.uint32(15))


def gauss32_output(key, i):
    """Output i (< 2^32) of the Gaussian stream `key` (uint64): hash32(((lo32(key) + i *
    0x9E3779B9) mod 2^32) ^ hi32(key)) (arrays broadcast)."""
    key = _u64(key)
    lo = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (key >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        x = lo + np.asarray(i, dtype=np.uint32) * np.uint32(_GAMMA32)
    return hash32(x ^ hi)


def _irwin_hall_fields(w):
    """Sum of the six 5-bit fields (bits 0-4, ..., 25-29) of each uint32."""
    pairs = (w & _IH_MASK) + ((w >> np.uint32(5)) & _IH_MASK)
    m10 = np.uint32(0x3FF)
    return (pairs & m10) + ((pairs >> np.uint32(10)) & m10) + (pairs >> np.uint32(20))


def irwin_hall_sum(key, n):
    """S of element n (< 2^31) of stream `key`: the twelve 5-bit fields of outputs 2n and 2n + 1."""
    i = np.asarray(n, dtype=np.uint64).astype(np.uint32) * np.uint32(2)
    return _irwin_hall_fields(gauss32_output(key, i)) + _irwin_hall_fields(gauss32_output(key, i + np.uint32(1)))


def gaussian_sample(key, n):
    """z of element n of stream `key`: (S - 186) * 2^-5 (float64, exact; mean 0, variance
    1 - 2^-10, support [-5.8125, 5.8125])."""
    s = irwin_hall_sum(key, n).astype(np.int64) - np.int64(IRWIN_HALL_MEAN)
    return s.astype(np.float64) * np.float64(2.0 ** -5)


def uniform_sample(key, n):
    """(output n >> 11) * 2^-53 in [0, 1) (float64, exact)."""
    return (splitmix64_output(key, n) >> np.uint64(11)).astype(np.float64) * np.float64(2.0 ** -53)


def noise_fx(sigma: float, z):
    """rint((sigma * z) * 2^16) as int64."""
    return np.rint((np.float64(sigma) * z) * np.float64(FX_ONE)).astype(np.int64)


class TransferCurve:
    """Piecewise-linear curve through (x, y) points (LSB), extrapolated by the end segments."""

    def __init__(self, points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 2:
            raise ValueError("transfer curve needs at least 2 points")
        self.x, self.y = pts[:, 0].copy(), pts[:, 1].copy()
        self.slope = (self.y[1:] - self.y[:-1]) / (self.x[1:] - self.x[:-1])

    def apply(self, a_fx):
        """y_fx = rint(clip((y_j + ((x - x_j) * slope_j)) * 2^16, -2^46, 2^46)), x = a_fx * 2^-16,
        j = #{i : x_i <= x} - 1 clipped to [0, m - 2]."""
        a_fx = np.asarray(a_fx, dtype=np.int64)
        x = a_fx.astype(np.float64) * np.float64(2.0 ** -16)
        j = np.clip(np.searchsorted(self.x, x, side="right") - 1, 0, len(self.x) - 2)
        y = x - self.x[j]
        y = y * self.slope[j]
        y = self.y[j] + y
        y = y * np.float64(FX_ONE)
        y = np.clip(y, -float(ANALOG_LIMIT), float(ANALOG_LIMIT))
        return np.rint(y).astype(np.int64)


# ---------------------------------------------------------------------------------------
# ADC
# ---------------------------------------------------------------------------------------

class Adc:
    """One layer's ADC (AdcSpec) with its parameter sets resolved."""

    def __init__(self, spec, G: int, S: int, N: int, where: str):
        self.kind = spec.kind
        self.F = int(spec.frac_bits)
        self.B = int(spec.bits)
        self.gran = spec.granularity
        self.where = where
        if self.F > 30:
            raise GraphError(f"{where}: adc.frac_bits {self.F} too large")
        nsets = {GRAN_LAYER: 1, GRAN_COLUMN: N, GRAN_STC: G * S * N}.get(self.gran)
        if nsets is None:
            raise GraphError(f"{where}: unknown adc.granularity {self.gran}")
        self.nsets = nsets
        self.G, self.S, self.N = G, S, N
        if self.kind == ADC_IDEAL:
            pass
        elif self.kind == ADC_LINEAR:
            if not 1 <= self.B <= 16:
                raise GraphError(f"{where}: adc.bits {self.B} not in 1..16")
            self.step = np.asarray(spec.step_fx, dtype=np.int64)
            self.centre = np.asarray(spec.centre_fx, dtype=np.int64)
            if self.step.size != nsets or self.centre.size != nsets:
                raise GraphError(f"{where}: adc.step_fx / centre_fx need {nsets} values, have "
                                 f"{self.step.size} / {self.centre.size}")
            if np.any(self.step <= 0):
                raise GraphError(f"{where}: adc.step_fx must be > 0")
            self.rounding = spec.rounding
            if self.rounding not in (ROUND_FLOOR, ROUND_HALF_AWAY):
                raise GraphError(f"{where}: unknown adc.rounding {self.rounding}")
            if spec.signed_codes:
                self.qmin, self.qmax = -(1 << (self.B - 1)), (1 << (self.B - 1)) - 1
            else:
                self.qmin, self.qmax = 0, (1 << self.B) - 1
        elif self.kind == ADC_NONLINEAR:
            if not 1 <= self.B <= 16:
                raise GraphError(f"{where}: adc.bits {self.B} not in 1..16")
            L = 1 << self.B
            thr = np.asarray(spec.thresholds_fx, dtype=np.int64)
            lev = np.asarray(spec.levels_fx, dtype=np.int64)
            if thr.size != nsets * (L - 1) or lev.size != nsets * L:
                raise GraphError(f"{where}: adc needs {nsets}x{L - 1} thresholds_fx and "
                                 f"{nsets}x{L} levels_fx, has {thr.size} and {lev.size}")
            self.thr = thr.reshape(nsets, L - 1)
            self.lev = lev.reshape(nsets, L)
            if L > 2 and np.any(np.diff(self.thr, axis=1) <= 0):
                raise GraphError(f"{where}: adc.thresholds_fx not strictly increasing")
        else:
            raise GraphError(f"{where}: unknown adc.kind {self.kind}")

    def set_index(self, g: int) -> np.ndarray:
        """Parameter-set index of (g, s, n) as an int64 [S][N] array."""
        S, N = self.S, self.N
        if self.gran == GRAN_LAYER:
            return np.zeros((S, N), dtype=np.int64)
        if self.gran == GRAN_COLUMN:
            return np.broadcast_to(np.arange(N, dtype=np.int64), (S, N)).copy()
        return (g * S + np.arange(S, dtype=np.int64)[:, None]) * N + np.arange(N)[None, :]

    def value_bound(self, pmax_abs: int) -> int:
        """Upper bound of |value_fx| for |p| <= pmax_abs."""
        if self.kind == ADC_IDEAL:
            return pmax_abs << self.F
        if self.kind == ADC_LINEAR:
            return int(np.max(np.abs(self.centre)) +
                       max(abs(self.qmin), abs(self.qmax)) * np.max(self.step))
        return int(np.max(np.abs(self.lev)))

    def convert(self, p: np.ndarray, sidx: np.ndarray):
        """(code, value_fx) int64 of partial sums p (int64) with parameter sets sidx
        (broadcastable to p). Direct implementation of SEMANTICS.md step 6."""
        p = np.asarray(p, dtype=np.int64)
        v = p << self.F                                          # p * 2^F
        if self.kind == ADC_IDEAL:
            return p.copy(), v
        if self.kind == ADC_LINEAR:
            c = self.centre[sidx]
            st = self.step[sidx]
            num = v - c
            if self.rounding == ROUND_FLOOR:
                r = np.floor_divide(num, st)
            else:
                r = np.sign(num) * np.floor_divide(2 * np.abs(num) + st, 2 * st)
            code = np.clip(r, self.qmin, self.qmax)
            return code, c + code * st
        # NONLINEAR: code = #{i : v >= thr[i]} by binary lifting over the sorted thresholds
        L1 = self.thr.shape[1]
        flat = self.thr.ravel()
        base = np.asarray(sidx, dtype=np.int64) * L1
        code = np.zeros(np.broadcast(v, base).shape, dtype=np.int64)
        for b in reversed(range(self.B)):
            cand = code + (1 << b)
            ok = cand <= L1
            idx = base + np.minimum(cand, L1) - 1
            ok &= flat[idx] <= v
            code = np.where(ok, cand, code)
        value = self.lev.ravel()[np.asarray(sidx, dtype=np.int64) * (L1 + 1) + code]
        return code, value


    def convert_analog(self, a, sidx):
        """(code, value_fx, saturated) of analog inputs a (int64, units 2^-16 LSB): the step-6
        formulas evaluated exactly on the real value a * 2^-16 (SEMANTICS.md step 5)."""
        a = np.asarray(a, dtype=np.int64)
        F = self.F
        if F >= FX_BITS:
            vf = a << (F - FX_BITS)
            hf = hc = 2 * vf
        else:
            sh = FX_BITS - F
            vf = a >> sh
            hf = a >> (sh - 1)
            hc = -((-a) >> (sh - 1))
        if self.kind == ADC_IDEAL:
            code = (a + (1 << (FX_BITS - 1))) >> FX_BITS
            return code, (hf + 1) >> 1, np.zeros(a.shape, dtype=bool)
        if self.kind == ADC_LINEAR:
            c = self.centre[sidx]
            st = self.step[sidx]
            if self.rounding == ROUND_FLOOR:
                r = np.floor_divide(vf - c, st)
            else:
                up = hf - 2 * c
                neg = up < 0
                q = np.floor_divide(np.where(neg, 2 * c - hc, up) + st, 2 * st)
                r = np.where(neg, -q, q)
            sat = (r < self.qmin) | (r > self.qmax)
            code = np.clip(r, self.qmin, self.qmax)
            return code, c + code * st, sat
        L1 = self.thr.shape[1]
        flat = self.thr.ravel()
        base = np.asarray(sidx, dtype=np.int64) * L1
        code = np.zeros(np.broadcast(vf, base).shape, dtype=np.int64)
        for b in reversed(range(self.B)):
            cand = code + (1 << b)
            ok = cand <= L1
            idx = base + np.minimum(cand, L1) - 1
            ok &= flat[idx] <= vf
            code = np.where(ok, cand, code)
        value = self.lev.ravel()[np.asarray(sidx, dtype=np.int64) * (L1 + 1) + code]
        return code, value, np.zeros(code.shape, dtype=bool)


# ---------------------------------------------------------------------------------------
# IMC layer
# ---------------------------------------------------------------------------------------

LUT_MAX_ENTRIES = 1 << 22
CHUNK_ELEMS = 1 << 21          # partial sums per working chunk (~16 MB as float64)


@dataclass
class TensorInfo:
    shape: tuple
    scale: float
    zero_point: int
    bits: int


@dataclass
class _Tile:
    lo: int
    hi: int
    cells: np.ndarray            # [Kg][S*N] float (exact small integers)
    pmin: int
    pmax: int
    sidx: np.ndarray             # [S][N] parameter-set index
    # Pre-weighted ADC table: lut_w[off[t][s][n] + p] = coef[t][s] * value_fx(p, set(g, s, n))
    lut_w: np.ndarray | None = None
    lut_off_magic: np.ndarray | None = None  # [T][S][N] float64: offset + 2^52


class ImcLayer:
    """One IMC node (Conv2d / Linear) of a graph, precomputed for fast batched runs."""

    def __init__(self, node, in_info: TensorInfo, use_lut: bool = True,
                 nonideal: "NonIdeal | None" = None, seed: int = 0, node_index: int = 0):
        L = node.imc
        self.ni = nonideal if nonideal is not None and nonideal.active() else None
        self.seed, self.node_index = int(seed), int(node_index)
        self.name = node.name
        where = f"node '{node.name}' (imc)"
        self.where = where
        self.is_conv = L.kind == pb.ImcLayer.KIND_CONV2D
        self.tokens = False
        if L.kind not in (pb.ImcLayer.KIND_CONV2D, pb.ImcLayer.KIND_LINEAR):
            raise GraphError(f"{where}: unknown kind {L.kind}")
        self.Cin, self.Cout = int(L.in_channels), int(L.out_channels)
        if self.is_conv:
            self.kh, self.kw = int(L.kernel_h), int(L.kernel_w)
            self.sh, self.sw = int(L.stride_h), int(L.stride_w)
            self.ph, self.pw = int(L.pad_h), int(L.pad_w)
            if min(self.kh, self.kw, self.sh, self.sw) < 1:
                raise GraphError(f"{where}: kernel and stride must be >= 1")
            if len(in_info.shape) != 3 or in_info.shape[0] != self.Cin:
                raise GraphError(f"{where}: input shape {in_info.shape} is not "
                                 f"[{self.Cin}][H][W]")
            _, H, Wd = in_info.shape
            self.H, self.W = H, Wd
            self.Hout = (H + 2 * self.ph - self.kh) // self.sh + 1
            self.Wout = (Wd + 2 * self.pw - self.kw) // self.sw + 1
            if self.Hout < 1 or self.Wout < 1:
                raise GraphError(f"{where}: empty output")
            self.P = self.Hout * self.Wout
            self.out_shape = (self.Cout, self.Hout, self.Wout)
        else:
            self.kh = self.kw = 1
            self.sh = self.sw = 1
            self.ph = self.pw = 0
            self.tokens = len(in_info.shape) == 2       # tokens [T, D]: one position per token
            if self.tokens:
                if in_info.shape[1] != self.Cin:
                    raise GraphError(f"{where}: tokens of {in_info.shape[1]} features, "
                                     f"in_features is {self.Cin}")
                self.P = int(in_info.shape[0])
                self.out_shape = (self.P, self.Cout)
            else:
                if int(np.prod(in_info.shape)) != self.Cin:
                    raise GraphError(f"{where}: input of {int(np.prod(in_info.shape))} values, "
                                     f"in_features is {self.Cin}")
                self.P = 1
                self.out_shape = (self.Cout,)
        self.K = self.Cin * self.kh * self.kw
        self.N = self.Cout
        K, N = self.K, self.N

        self.Bx = int(in_info.bits)
        if self.Bx < 1:
            raise GraphError(f"{where}: input tensor is not quantised (bits 0)")
        self.zx = int(in_info.zero_point)
        self.sx = float(in_info.scale)
        self.Bw, self.Bc, self.Bdac = int(L.weight_bits), int(L.cell_bits), int(L.dac_bits)
        self.a = int(L.ashift_offset)
        self.encoding = L.encoding
        self.groups = input_groups(self.Bx, self.Bdac, self.a)
        self.slices = weight_slices(self.encoding, self.Bw, self.Bc)
        self.T, self.S = len(self.groups), len(self.slices)
        if self.S == 0:
            raise GraphError(f"{where}: no weight slices (weight_bits {self.Bw})")

        w = np.asarray(L.weights, dtype=np.int64)
        if w.size != N * K:
            raise GraphError(f"{where}: weights has {w.size} values, needs N*K = {N * K}")
        lo_w, hi_w = -(1 << (self.Bw - 1)), (1 << (self.Bw - 1)) - 1
        if self.encoding in (ENC_DIFF_DIGITAL, ENC_DIFF_ANALOG):
            lo_w = -hi_w
        if w.min() < lo_w or w.max() > hi_w:
            raise GraphError(f"{where}: weights outside [{lo_w}, {hi_w}]")
        self.Wmat = w.reshape(N, K).T.copy()                 # W[k][n]
        self.sumW = self.Wmat.sum(axis=0)                     # [N]
        cells = cell_values(self.Wmat, self.encoding, self.Bw, self.slices)   # [S][K][N]
        self.integer_cells = True
        if self.ni is not None:
            cells, self.integer_cells = programmed_cells(self.Wmat, self.encoding, self.Bw, self.Bc,
                                                         self.slices, self.ni, self.seed,
                                                         self.node_index)
            self.curve = TransferCurve(self.ni.transfer_curve) if self.ni.transfer else None
            self.noise_key = rng_key(self.seed, STREAM_ADC_NOISE, self.node_index)

        tiles = row_tiles(L.row_tiling, K, int(L.array_rows), self.Cin, self.kh, self.kw)
        self.G = len(tiles)
        if self.ni is not None and self.ni.noise and self.G * self.S * self.T * N > 2 ** 31:
            raise ValueError(f"{where}: {self.G * self.S * self.T * N} ADC conversions per output position "
                             "exceed the noise stream's 2^31 (docs/SEMANTICS.md step 5d)")
        self.adc = Adc(L.adc, self.G, self.S, N, where)
        self.F = self.adc.F

        umax = max((1 << nb) - 1 for _, nb, _ in self.groups)
        dmax = max((1 << nb) - 1 for _, nb, _, _ in self.slices)
        signed_cells = self.encoding == ENC_DIFF_ANALOG
        self.tiles = []
        bound_all = 0
        for g, (lo, hi) in enumerate(tiles):
            Kg = hi - lo
            pmax = Kg * umax * dmax
            if self.ni is not None:   # programmed cells: bound from the actual cell values
                pmax = Kg * umax * int(np.abs(cells[:, lo:hi, :]).max(initial=0))
            if pmax >= _F64_EXACT and self.ni is None:
                raise GraphError(f"{where}: partial sums up to {pmax} not exact in float64")
            pmin = -pmax if signed_cells else 0
            bound_all = max(bound_all, pmax)
            cg = cells[:, lo:hi, :].transpose(1, 0, 2).reshape(Kg, self.S * N)
            self.tiles.append(_Tile(lo, hi, cg, pmin, pmax, self.adc.set_index(g)))
        self.mm_dtype = (np.float32 if bound_all < _F32_EXACT else
                         np.float64 if bound_all < _F64_EXACT else np.int64)
        for t in self.tiles:
            t.cells = np.ascontiguousarray(t.cells.astype(self.mm_dtype))

        # shift-add coefficients sign_s * sign_t * 2^(bitlo_s + bitlo_t), [T][S]
        self._glo = np.array([g[0] for g in self.groups], dtype=np.int64)[:, None]
        self._gmask = np.array([(1 << g[1]) - 1 for g in self.groups], dtype=np.int64)[:, None]
        self.coef = np.array([[sg_t * sg_s * (1 << (lo_t + lo_s))
                               for (lo_s, _, sg_s, _) in self.slices]
                              for (lo_t, _, sg_t) in self.groups], dtype=np.int64)
        if self.ni is not None:
            use_lut = False     # analog values: the direct conversion only
            bound_all = max(bound_all >> (0 if self.integer_cells else FX_BITS), 1)
        vb = self.adc.value_bound(bound_all)
        corr = (abs(self.a - self.zx) * int(np.abs(self.Wmat).sum(axis=0).max())
                + (K << (self.Bw - 1 + self.Bx))) << self.F
        if vb * int(np.abs(self.coef).sum()) * self.G + corr >= _I64_LIMIT:
            raise GraphError(f"{where}: accumulator may overflow int64")

        if use_lut:
            self._build_luts()

        # post-processing
        sw = np.asarray(L.weight_scale, dtype=np.float64)
        if sw.size == 1:
            sw = np.full(N, sw[0])
        elif sw.size != N:
            raise GraphError(f"{where}: weight_scale needs 1 or {N} values, has {sw.size}")
        ps = np.asarray(L.psum_scale, dtype=np.float64)
        if ps.size == 0:
            ps = np.ones(N)
        elif ps.size != N:
            raise GraphError(f"{where}: psum_scale needs 0 or {N} values, has {ps.size}")
        b = np.asarray(L.bias, dtype=np.float64)
        if b.size == 0:
            b = np.zeros(N)
        elif b.size != N:
            raise GraphError(f"{where}: bias needs 0 or {N} values, has {b.size}")
        self.m = ((np.float64(self.sx) * sw) * ps) * np.float64(2.0 ** (-self.F))
        self.bias = b
        if L.activation not in (pb.ACTIVATION_NONE, pb.ACTIVATION_RELU):
            raise GraphError(f"{where}: unknown activation {L.activation}")
        self.relu = L.activation == pb.ACTIVATION_RELU

    # -- ADC lookup tables ------------------------------------------------------------
    def _build_luts(self):
        """Per tile, a table over every possible partial sum p in [pmin, pmax] and every
        (t, s, parameter set) of coef[t][s] * value_fx, built with Adc.convert."""
        T, S, N = self.T, self.S, self.N
        for t in self.tiles:
            rng = t.pmax - t.pmin + 1
            # distinct (s, set) pairs
            pairs = np.stack([np.broadcast_to(np.arange(S)[:, None], (S, N)), t.sidx], -1)
            uniq, inv = np.unique(pairs.reshape(-1, 2), axis=0, return_inverse=True)
            rows = T * len(uniq)
            if rows * rng > LUT_MAX_ENTRIES:
                continue
            p = np.arange(t.pmin, t.pmax + 1, dtype=np.int64)
            _, value = self.adc.convert(p[None, :], uniq[:, 1][:, None])      # [U][range]
            w = self.coef[:, uniq[:, 0]]                                       # [T][U]
            t.lut_w = np.ascontiguousarray((w[:, :, None] * value[None, :, :]).ravel())
            row = np.arange(T)[:, None, None] * len(uniq) + inv.reshape(S, N)[None]  # [T][S][N]
            t.lut_off_magic = (row * rng - t.pmin).astype(np.float64) + _MAGIC52

    # -- lowering -----------------------------------------------------------------------
    def im2col(self, x: np.ndarray) -> np.ndarray:
        """Input codes [B][C][H][W] (conv) or [B][...] (linear) -> x [B*P][K] int64."""
        B = x.shape[0]
        if not self.is_conv:
            return x.reshape(B * self.P, self.K).astype(np.int64, copy=False)
        x = x.reshape(B, self.Cin, self.H, self.W)
        if self.ph or self.pw:
            xp = np.full((B, self.Cin, self.H + 2 * self.ph, self.W + 2 * self.pw), self.zx,
                         dtype=np.int64)
            xp[:, :, self.ph:self.ph + self.H, self.pw:self.pw + self.W] = x
        else:
            xp = x.astype(np.int64, copy=False)
        win = np.lib.stride_tricks.sliding_window_view(xp, (self.kh, self.kw), axis=(2, 3))
        win = win[:, :, :self.sh * (self.Hout - 1) + 1:self.sh,
                  :self.sw * (self.Wout - 1) + 1:self.sw]          # [B][C][Ho][Wo][kh][kw]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(B * self.P, self.K)
        return np.ascontiguousarray(cols, dtype=np.int64)

    # -- the layer ----------------------------------------------------------------------
    def accumulate(self, X: np.ndarray, record: bool = False, psum_hook=None, images=None):
        """acc_fx [R][N] int64 of lowered inputs X [R][K] (R = images x positions). With
        record=True also returns psums and ADC codes [R][G][S][T][N] (with non-idealities the
        psums are the analog ADC inputs, units 2^-16 LSB). psum_hook(g, pint [R][T][S][N]) sees
        every tile's partial sums (non-ideal: floor of the ADC inputs). images: the dataset index
        of each image (keys the ADC noise; default 0, 1, ...)."""
        Rn = X.shape[0]
        per_row = self.T * self.S * self.N
        chunk = max(1, CHUNK_ELEMS // per_row)
        acc = np.empty((Rn, self.N), dtype=np.int64)
        ps_rec, code_rec = [], []
        if images is None:
            images = np.arange(-(-Rn // self.P), dtype=np.int64)
        images = np.asarray(images, dtype=np.int64)
        rows = np.arange(Rn, dtype=np.int64)
        row_image, row_pos = images[rows // self.P], rows % self.P
        for r0 in range(0, Rn, chunk):
            r1 = min(Rn, r0 + chunk)
            if self.ni is not None:
                a_, p_, c_ = self._accumulate_chunk_nonideal(X[r0:r1], record, psum_hook,
                                                             row_image[r0:r1], row_pos[r0:r1])
            else:
                a_, p_, c_ = self._accumulate_chunk(X[r0:r1], record, psum_hook)
            acc[r0:r1] = a_
            if record:
                ps_rec.append(p_)
                code_rec.append(c_)
        if record:
            return acc, np.concatenate(ps_rec), np.concatenate(code_rec)
        return acc

    def _accumulate_chunk(self, X, record, psum_hook):
        R = X.shape[0]
        T, S, N, F = self.T, self.S, self.N, self.F
        xs = X - self.a                                           # x' (step 1)
        pattern = xs & ((1 << self.Bx) - 1)                       # Bx-bit two's complement
        acc = np.zeros((R, N), dtype=np.int64)
        ps_tiles, code_tiles = [], []
        for g, t in enumerate(self.tiles):
            # u_t[k] of this tile's rows, laid out [R][T][Kg]   (step 2)
            U = ((pattern[:, None, t.lo:t.hi] >> self._glo) & self._gmask)
            U = U.astype(self.mm_dtype).reshape(R * T, t.hi - t.lo)
            pf = (U @ t.cells).reshape(R, T, S, N)                  # partial sums (exact)
            direct = record or t.lut_w is None
            if direct or psum_hook is not None:
                pint = pf.astype(np.int64)
                if psum_hook is not None:
                    psum_hook(g, pint)
            if not direct:
                # index = p + lut_off[t][s][n], computed exactly in float64 around 2^52 and
                # read back from the mantissa bits (much faster than a float->int cast).
                fi = np.add(pf, t.lut_off_magic)
                idx = fi.view(np.int64)
                idx -= _MAGIC52_BITS
                # every index is in range by construction (|p| bounded by the tile size)
                val = np.take(t.lut_w, idx, mode="clip")
                acc += np.einsum("rkn->rn", val.reshape(R, T * S, N))
            else:
                code, val = self.adc.convert(pint, t.sidx)
                acc += (val * self.coef[None, :, :, None]).reshape(R, T * S, N).sum(axis=1)
                if record:
                    ps_tiles.append(pint)
                    code_tiles.append(code)
        acc += (np.int64(self.a - self.zx) * self.sumW) << F
        if self.encoding == ENC_OFFSET:
            acc -= (xs.sum(axis=1, keepdims=True) << (self.Bw - 1)) << F
        if record:
            # [G][R][T][S][N] -> [R][G][S][T][N]
            ps = np.stack(ps_tiles).transpose(1, 0, 3, 2, 4)
            cd = np.stack(code_tiles).transpose(1, 0, 3, 2, 4)
            return acc, ps, cd
        return acc, None, None

    def _accumulate_chunk_nonideal(self, X, record, psum_hook, row_image, row_pos):
        """_accumulate_chunk with the programmed cells and the analog pipeline of step 5:
        a = clip(curve(x) + noise, -2^46, 2^46), converted by Adc.convert_analog."""
        R = X.shape[0]
        T, S, N, F, G = self.T, self.S, self.N, self.F, self.G
        xs = X - self.a
        pattern = xs & ((1 << self.Bx) - 1)
        acc = np.zeros((R, N), dtype=np.int64)
        ps_tiles, code_tiles = [], []
        if self.ni.noise:
            img_key = rng_extend(np.uint64(self.noise_key), row_image.astype(np.uint64))    # [R]
            pos_key = rng_extend(img_key, row_pos.astype(np.uint64))                     # [R]: H(.., pos)
            # conversion index within the position, in the [G][S][T][N] order, laid out [T][S][N]
            tsn = ((np.arange(S)[None, :, None] * T + np.arange(T)[:, None, None]) * N
                   + np.arange(N)[None, None, :])                                        # [T][S][N]
        for g, t in enumerate(self.tiles):
            U = ((pattern[:, None, t.lo:t.hi] >> self._glo) & self._gmask)
            U = U.astype(self.mm_dtype).reshape(R * T, t.hi - t.lo)
            pf = (U @ t.cells).reshape(R, T, S, N)
            x = pf.astype(np.int64)
            if self.integer_cells:
                x = x << FX_BITS
            if self.curve is not None:
                x = self.curve.apply(x)
            if self.ni.noise:
                idx = (g * (S * T * N) + tsn[None]).astype(np.uint64)
                z = gaussian_sample(pos_key[:, None, None, None], idx)
                x = np.clip(x + noise_fx(self.ni.adc_noise_sigma_lsb, z), -ANALOG_LIMIT, ANALOG_LIMIT)
            if psum_hook is not None:
                psum_hook(g, x >> FX_BITS)
            code, val, _ = self.adc.convert_analog(x, t.sidx[None, None])
            acc += (val * self.coef[None, :, :, None]).reshape(R, T * S, N).sum(axis=1)
            if record:
                ps_tiles.append(x)
                code_tiles.append(code)
        acc += (np.int64(self.a - self.zx) * self.sumW) << F
        if self.encoding == ENC_OFFSET:
            acc -= (xs.sum(axis=1, keepdims=True) << (self.Bw - 1)) << F
        if record:
            ps = np.stack(ps_tiles).transpose(1, 0, 3, 2, 4)
            cd = np.stack(code_tiles).transpose(1, 0, 3, 2, 4)
            return acc, ps, cd
        return acc, None, None

    def ideal_acc(self, X: np.ndarray) -> np.ndarray:
        """2^F * sum_k (x[k] - z_x) * W[k][n], exactly (for checks and calibration)."""
        Xd = (X - self.zx).astype(np.float64)
        bound = int(np.abs(X - self.zx).max(initial=0)) * int(np.abs(self.Wmat).sum(axis=0).max())
        assert bound < _F64_EXACT
        return (Xd @ self.Wmat.astype(np.float64)).astype(np.int64) << self.F

    def post(self, acc: np.ndarray) -> np.ndarray:
        """float64 y [R][N] (before requantisation) of acc_fx [R][N]."""
        y = acc.astype(np.float64) * self.m + self.bias
        if self.relu:
            y = np.maximum(y, 0.0)
        return y

    def to_output_layout(self, y: np.ndarray, B: int) -> np.ndarray:
        """[B*P][N] -> [B][N][Hout][Wout] (conv), [B][T][N] (linear on tokens) or [B][N]."""
        if not self.is_conv and self.tokens:
            return y.reshape(B, self.P, self.N)
        if self.is_conv:
            return np.ascontiguousarray(
                y.reshape(B, self.P, self.N).transpose(0, 2, 1)).reshape((B,) + self.out_shape)
        return y.reshape(B, self.N)


# ---------------------------------------------------------------------------------------
# Digital nodes
# ---------------------------------------------------------------------------------------

def _pool_windows(x, kh, kw, sh, sw, ph, pw, fill):
    B, C, H, W = x.shape
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        raise GraphError("pooling window larger than the padded input")
    if ph or pw:
        xp = np.full((B, C, H + 2 * ph, W + 2 * pw), fill, dtype=x.dtype)
        xp[:, :, ph:ph + H, pw:pw + W] = x
    else:
        xp = x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return win[:, :, :sh * (Ho - 1) + 1:sh, :sw * (Wo - 1) + 1:sw]


def max_pool(x, mp):
    w = _pool_windows(x.astype(np.int64, copy=False), mp.kernel_h, mp.kernel_w, mp.stride_h,
                      mp.stride_w, mp.pad_h, mp.pad_w, -1)
    out = w.max(axis=(4, 5))
    if np.any(out < 0):
        raise GraphError("max pool window entirely in the padding")
    return out


def avg_pool(x, ap, q_in: TensorInfo, q_out: TensorInfo):
    cnt = ap.kernel_h * ap.kernel_w
    w = _pool_windows(x.astype(np.int64, copy=False), ap.kernel_h, ap.kernel_w, ap.stride_h,
                      ap.stride_w, ap.pad_h, ap.pad_w, q_in.zero_point)
    s = w.sum(axis=(4, 5))
    y = ((s - cnt * q_in.zero_point).astype(np.float64) * np.float64(q_in.scale)) / np.float64(cnt)
    return y


DIGITAL_OPS = ("digital", "global_avg_pool", "concat", "to_tokens", "attention_scores", "softmax",
               "attention_context", "layer_norm", "lut", "add_constant")


def digital_op_shape(node, op, ins, oq, where):
    """Output shape of a digital-unit node; checks what the numerics rely on (the C++ loader
    checks every field and bound, sim/graph/graph_loader.cc)."""
    s0 = tuple(ins[0].shape)
    if op == "digital":
        L = node.digital
        N, Cin = int(L.out_channels), int(L.in_channels)
        groups = max(1, int(L.groups))
        if L.kind == pb.DigitalLayer.KIND_CONV2D:
            if len(s0) != 3 or s0[0] != Cin or Cin % groups or N % groups:
                raise GraphError(f"{where}: digital conv input {s0}, in_channels {Cin}, groups {groups}")
            kh, kw = int(L.kernel_h), int(L.kernel_w)
            shape = (N, (s0[1] + 2 * L.pad_h - kh) // L.stride_h + 1,
                     (s0[2] + 2 * L.pad_w - kw) // L.stride_w + 1)
            kg = Cin // groups * kh * kw
        else:
            if len(s0) not in (1, 2) or s0[-1] != Cin:
                raise GraphError(f"{where}: digital linear input {s0}, in_features {Cin}")
            shape = (s0[0], N) if len(s0) == 2 else (N,)
            kg = Cin
        if len(L.weights) != N * kg:
            raise GraphError(f"{where}: digital.weights has {len(L.weights)} values, needs {N * kg}")
        if len(L.weight_scale) not in (1, N) or len(L.bias) not in (0, N):
            raise GraphError(f"{where}: digital weight_scale / bias sizes")
        return shape
    if op == "global_avg_pool":
        return (s0[0],) if len(s0) == 3 else (s0[1],)
    if op == "concat":
        for q in ins[1:]:
            if tuple(q.shape[1:]) != s0[1:]:
                raise GraphError(f"{where}: concat of shapes {s0} and {q.shape}")
        return (sum(q.shape[0] for q in ins),) + s0[1:]
    if op == "to_tokens":
        t = node.to_tokens
        C, H, W = s0
        if H % t.patch_h or W % t.patch_w:
            raise GraphError(f"{where}: patch {t.patch_h}x{t.patch_w} does not divide {H}x{W}")
        return ((H // t.patch_h) * (W // t.patch_w), C * t.patch_h * t.patch_w)
    if op == "attention_scores":
        h = int(node.attention_scores.heads)
        if len(s0) != 2 or tuple(ins[1].shape)[1:] != s0[1:] or h < 1 or s0[1] % h:
            raise GraphError(f"{where}: attention_scores of {s0} and {ins[1].shape}, {h} heads")
        return (h, s0[0], ins[1].shape[0])
    if op == "softmax":
        if len(node.softmax.exp_table) != 1 << ins[0].bits:
            raise GraphError(f"{where}: softmax.exp_table needs 2^{ins[0].bits} entries")
        return s0
    if op == "attention_context":
        sv = tuple(ins[1].shape)
        if len(s0) != 3 or len(sv) != 2 or sv[0] != s0[2] or sv[1] % s0[0]:
            raise GraphError(f"{where}: attention_context of {s0} and {sv}")
        return (s0[1], sv[1])
    if op == "layer_norm":
        d = s0[-1]
        if len(node.layer_norm.gamma) != d or len(node.layer_norm.beta) != d:
            raise GraphError(f"{where}: layer_norm gamma / beta need {d} values")
        return s0
    if op == "lut":
        if len(node.lut.table) != 1 << ins[0].bits or oq.bits == 0:
            raise GraphError(f"{where}: lut.table needs 2^{ins[0].bits} entries, output codes")
        return s0
    if op == "add_constant":
        if len(node.add_constant.values) != int(np.prod(s0)):
            raise GraphError(f"{where}: add_constant.values needs {int(np.prod(s0))} values")
        return s0
    raise GraphError(f"{where}: unknown op {op}")


# ---------------------------------------------------------------------------------------
# Whole graph
# ---------------------------------------------------------------------------------------

@dataclass
class NodeTrace:
    name: str
    output: np.ndarray                 # codes (int64) or real values (float64 if bits == 0)
    psums: np.ndarray | None = None    # [P][G][S][T][N]
    codes: np.ndarray | None = None    # [P][G][S][T][N]
    acc: np.ndarray | None = None      # [P][N]


class Reference:
    """The numpy reference of a whole graph."""

    def __init__(self, graph, use_lut: bool = True, nonideal: "NonIdeal | dict | None" = None,
                 seed: int = 0):
        """nonideal (a NonIdeal or a config-style dict; off by default) and seed select the
        analog non-idealities of SEMANTICS.md step 5."""
        if isinstance(nonideal, dict):
            nonideal = NonIdeal.from_dict(nonideal)
        self.nonideal = nonideal if nonideal is not None else NonIdeal()
        self.seed = int(seed)
        if graph.format_version != 1:
            raise GraphError(f"format_version {graph.format_version}, expected 1")
        self.graph = graph
        inp = graph.input
        if not inp.tensor:
            raise GraphError("input.tensor is empty")
        self.input_name = inp.tensor
        self.input_shape = tuple(int(s) for s in inp.shape)
        iq = inp.quant
        if iq.bits < 1 or iq.bits > 16:
            raise GraphError(f"input.quant.bits {iq.bits} not in 1..16")
        self.infos = {inp.tensor: TensorInfo(self.input_shape, float(iq.scale),
                                             int(iq.zero_point), int(iq.bits))}
        self.nodes = list(graph.nodes)
        if not self.nodes:
            raise GraphError("graph has no nodes")
        self.layers = {}
        for i, node in enumerate(self.nodes):
            where = f"node '{node.name}'"
            for t in node.inputs:
                if t not in self.infos:
                    raise GraphError(f"{where}: unknown input tensor '{t}'")
            if node.output in self.infos:
                raise GraphError(f"{where}: output tensor '{node.output}' defined twice")
            oq = node.output_quant
            if oq.bits == 0 and i != len(self.nodes) - 1:
                raise GraphError(f"{where}: output_quant.bits 0 allowed only on the last node")
            op = node.WhichOneof("op")
            ins = [self.infos[t] for t in node.inputs]
            need = 2 if op in ("add", "attention_scores", "attention_context") else 1
            if op == "concat":
                if len(ins) < 2:
                    raise GraphError(f"{where}: concat takes 2 or more inputs, has {len(ins)}")
            elif len(ins) != need:
                raise GraphError(f"{where}: {op} takes {need} inputs, has {len(ins)}")
            if any(t.bits == 0 for t in ins):
                raise GraphError(f"{where}: consumes a float (bits = 0) tensor")
            if op == "imc":
                layer = ImcLayer(node, ins[0], use_lut, self.nonideal, self.seed, i)
                self.layers[node.name] = layer
                shape = layer.out_shape
            elif op in ("max_pool", "avg_pool"):
                p = getattr(node, op)
                C, H, W = ins[0].shape
                shape = (C, (H + 2 * p.pad_h - p.kernel_h) // p.stride_h + 1,
                         (W + 2 * p.pad_w - p.kernel_w) // p.stride_w + 1)
                if op == "max_pool" and (oq.scale != ins[0].scale or oq.zero_point !=
                                         ins[0].zero_point or oq.bits != ins[0].bits):
                    raise GraphError(f"{where}: max_pool output_quant must equal input quant")
            elif op == "add":
                if ins[0].shape != ins[1].shape:
                    raise GraphError(f"{where}: add of shapes {ins[0].shape} and {ins[1].shape}")
                shape = ins[0].shape
            elif op == "relu":
                shape = ins[0].shape
            elif op == "flatten":
                shape = (int(np.prod(ins[0].shape)),)
            elif op in DIGITAL_OPS:
                shape = digital_op_shape(node, op, ins, oq, where)
            else:
                raise GraphError(f"{where}: unknown op {op}")
            if node.output_shape and tuple(node.output_shape) != tuple(shape):
                raise GraphError(f"{where}: output_shape {tuple(node.output_shape)}, "
                                 f"computed {shape}")
            self.infos[node.output] = TensorInfo(tuple(shape), float(oq.scale),
                                                 int(oq.zero_point), int(oq.bits))
        self.output_info = self.infos[self.nodes[-1].output]

    # ------------------------------------------------------------------------------
    def input_codes(self, pixels) -> np.ndarray:
        """uint8 pixels [B][H][W] or [B][C][H][W] -> codes [B][C][H][W] int64."""
        inp = self.graph.input
        p = np.asarray(pixels)
        p = p.reshape((p.shape[0],) + self.input_shape)
        real = p.astype(np.float64) * np.float64(inp.pixel_scale)
        norm = (real - np.float64(inp.mean)) / np.float64(inp.std)
        q = inp.quant
        return requantize(norm, q.scale, q.zero_point, q.bits)

    def _node_forward(self, node, tensors, record=False, hooks=None, images=None):
        op = node.WhichOneof("op")
        oq = self.infos[node.output]
        x = tensors[node.inputs[0]]
        B = x.shape[0]
        tr = None
        if op == "imc":
            layer = self.layers[node.name]
            X = layer.im2col(x)
            hook = hooks.get(node.name) if hooks else None
            if record:
                acc, ps, cd = layer.accumulate(X, record=True, psum_hook=hook, images=images)
            else:
                acc = layer.accumulate(X, psum_hook=hook, images=images)
            y = layer.post(acc)
            y = layer.to_output_layout(y, B)
            out = y if oq.bits == 0 else requantize(y, oq.scale, oq.zero_point, oq.bits)
            if record:
                tr = NodeTrace(node.name, out, ps, cd, acc)
        elif op == "max_pool":
            out = max_pool(x, node.max_pool)
        elif op == "avg_pool":
            y = avg_pool(x, node.avg_pool, self.infos[node.inputs[0]], oq)
            out = y if oq.bits == 0 else requantize(y, oq.scale, oq.zero_point, oq.bits)
        elif op == "add":
            qa, qb = self.infos[node.inputs[0]], self.infos[node.inputs[1]]
            xb = tensors[node.inputs[1]]
            y = (np.float64(qa.scale) * (x - qa.zero_point).astype(np.float64)) + \
                (np.float64(qb.scale) * (xb - qb.zero_point).astype(np.float64))
            if node.add.activation == pb.ACTIVATION_RELU:
                y = np.maximum(y, 0.0)
            out = y if oq.bits == 0 else requantize(y, oq.scale, oq.zero_point, oq.bits)
        elif op == "relu":
            qi = self.infos[node.inputs[0]]
            y = np.maximum(np.float64(qi.scale) * (x - qi.zero_point).astype(np.float64), 0.0)
            out = y if oq.bits == 0 else requantize(y, oq.scale, oq.zero_point, oq.bits)
        elif op == "flatten":
            out = x.reshape(B, -1)
        elif op in DIGITAL_OPS:
            out = self._digital_forward(node, op, tensors, oq)
        else:
            raise GraphError(f"node '{node.name}': unknown op {op}")
        if record and tr is None:
            tr = NodeTrace(node.name, out)
        return out, tr

    def _digital_forward(self, node, op, tensors, oq):
        """A digital-unit node (SEMANTICS.md "Digital nodes"): codes, or float if bits == 0."""
        xs = [tensors[t] for t in node.inputs]
        qs = [self.infos[t] for t in node.inputs]
        x, qi = xs[0], qs[0]
        B = x.shape[0]

        def emit(y):
            return y if oq.bits == 0 else requantize(y, oq.scale, oq.zero_point, oq.bits)

        if op == "digital":
            L = node.digital
            N = int(L.out_channels)
            sw = np.asarray(L.weight_scale, dtype=np.float64)
            sw = np.full(N, sw[0]) if sw.size == 1 else sw
            bias = np.asarray(L.bias, dtype=np.float64) if len(L.bias) else np.zeros(N)
            relu = L.activation == pb.ACTIVATION_RELU
            W = np.asarray(L.weights, dtype=np.int64)
            if L.kind == pb.DigitalLayer.KIND_CONV2D:
                groups = max(1, int(L.groups))
                W = W.reshape(N, int(L.in_channels) // groups, int(L.kernel_h), int(L.kernel_w))
                y = D.digital_conv(x, qi.zero_point, qi.scale, W, sw, bias, relu, int(L.kernel_h),
                                   int(L.kernel_w), int(L.stride_h), int(L.stride_w), int(L.pad_h),
                                   int(L.pad_w), groups)
            else:
                y = D.digital_linear(x, qi.zero_point, qi.scale, W.reshape(N, -1), sw, bias, relu)
            return emit(y)
        if op == "global_avg_pool":
            return emit(D.global_avg_pool(x, qi.zero_point, qi.scale))
        if op == "concat":
            parts = []
            for xp, q in zip(xs, qs):
                same = (q.scale == oq.scale and q.zero_point == oq.zero_point and q.bits == oq.bits)
                parts.append(xp.astype(np.int64) if same else emit(
                    np.float64(q.scale) * (xp.astype(np.int64) - q.zero_point).astype(np.float64)))
            return np.concatenate(parts, axis=1)
        if op == "to_tokens":
            return D.to_tokens(x, int(node.to_tokens.patch_h), int(node.to_tokens.patch_w))
        if op == "attention_scores":
            a = node.attention_scores
            return emit(D.attention_scores(x, qi.zero_point, qi.scale, xs[1], qs[1].zero_point,
                                           qs[1].scale, int(a.heads), float(a.scale)))
        if op == "softmax":
            return emit(D.softmax(x, node.softmax.exp_table))
        if op == "attention_context":
            return emit(D.attention_context(x, qi.zero_point, qi.scale, xs[1], qs[1].zero_point,
                                            qs[1].scale))
        if op == "layer_norm":
            ln = node.layer_norm
            return emit(D.layer_norm(x, qi.zero_point, ln.gamma, ln.beta, int(ln.eps_int)))
        if op == "lut":
            return D.lut(x, node.lut.table)
        if op == "add_constant":
            ac = node.add_constant
            return emit(D.add_constant(x, qi.zero_point, qi.scale, ac.values,
                                       ac.activation == pb.ACTIVATION_RELU))
        raise GraphError(f"node '{node.name}': unknown op {op}")

    def run(self, codes: np.ndarray, hooks=None, stop_after: str | None = None,
            tensors: dict | None = None, images=None) -> np.ndarray:
        """Run input codes [B][C][H][W]; returns the last node's output [B][...] (or that of
        node `stop_after`). images: the dataset index of each image (keys the ADC noise;
        default 0 .. B-1)."""
        tensors = {} if tensors is None else tensors
        tensors[self.input_name] = np.asarray(codes, dtype=np.int64)
        out = None
        for node in self.nodes:
            out, _ = self._node_forward(node, tensors, hooks=hooks, images=images)
            tensors[node.output] = out
            if stop_after is not None and node.name == stop_after:
                break
        return out

    def trace(self, codes: np.ndarray, image_index: int = 0):
        """Everything for one image (codes [C][H][W], dataset index image_index): list of
        NodeTrace in node order."""
        tensors = {self.input_name: np.asarray(codes, dtype=np.int64)[None]}
        traces = []
        for node in self.nodes:
            out, tr = self._node_forward(node, tensors, record=True,
                                         images=np.array([image_index], dtype=np.int64))
            tensors[node.output] = out
            traces.append(tr)
        return traces

    def predict(self, pixels, batch_size: int = 256, workers: int | None = None,
                progress=None):
        """Final outputs [n][...] and predictions [n] of uint8 pixels [n][H][W]. Batches are
        spread over `workers` processes (default: os.cpu_count()); results do not depend on
        the batch size or the number of workers."""
        n = len(pixels)
        starts = list(range(0, n, batch_size))
        workers = os.cpu_count() if workers is None else workers
        workers = max(1, min(workers, len(starts)))
        outs = []
        if workers == 1:
            for b0 in starts:
                outs.append(self._predict_batch(pixels[b0:b0 + batch_size], b0))
                if progress:
                    progress(min(n, b0 + batch_size), n)
        else:
            global _POOL_STATE
            _POOL_STATE = (self, pixels, batch_size)
            ctx = mp.get_context("fork")
            try:
                with ctx.Pool(workers, initializer=set_blas_threads, initargs=(1,)) as pool:
                    for i, o in enumerate(pool.imap(_pool_batch, starts)):
                        outs.append(o)
                        if progress:
                            progress(min(n, starts[i] + batch_size), n)
            finally:
                _POOL_STATE = None
        out = np.concatenate(outs) if outs else np.zeros((0, 0))
        return out, np.argmax(out, axis=1)

    def _predict_batch(self, pixels, first_index: int = 0):
        codes = self.input_codes(pixels)
        images = np.arange(first_index, first_index + len(codes), dtype=np.int64)
        return self.run(codes, images=images).reshape(len(codes), -1)

    def accuracy(self, pixels, labels, batch_size: int = 256, workers: int | None = None,
                 progress=None) -> float:
        _, pred = self.predict(pixels, batch_size, workers, progress)
        return float(np.mean(pred == np.asarray(labels)))


_POOL_STATE = None


def _pool_batch(b0):
    ref, pixels, bs = _POOL_STATE
    return ref._predict_batch(pixels[b0:b0 + bs], b0)


def set_blas_threads(n: int) -> bool:
    """Best effort: set the number of OpenBLAS threads of this process."""
    try:
        with open("/proc/self/maps") as f:
            libs = {ln.split()[-1] for ln in f if "openblas" in ln and ".so" in ln}
        for lib in libs:
            h = ctypes.CDLL(lib)
            if hasattr(h, "openblas_set_num_threads"):
                h.openblas_set_num_threads(int(n))
                return True
    except OSError:
        pass
    return False


def golden_record(ref: Reference, codes, image_index: int = 0):
    """Per node dict of golden quantities for one image (codes [C][H][W], dataset index
    image_index, which keys the ADC noise)."""
    recs = []
    for tr in ref.trace(codes, image_index):
        info = ref.infos[[n.output for n in ref.nodes if n.name == tr.name][0]]
        r = {"node": tr.name}
        out = tr.output[0]
        r["output"] = out
        r["output_codes"] = out.ravel().astype(np.int64) if info.bits > 0 else None
        if tr.psums is not None:
            r["psum_count"] = int(tr.psums.size)
            r["psum_digest"] = digest(tr.psums)
            r["adc_code_digest"] = digest(tr.codes)
            r["acc_digest"] = digest(tr.acc)
            r["psums_position0"] = tr.psums[0].ravel()
            r["adc_codes_position0"] = tr.codes[0].ravel()
            r["acc_position0"] = tr.acc[0].ravel()
            r["psums"], r["codes"], r["acc"] = tr.psums, tr.codes, tr.acc
        recs.append(r)
    return recs
