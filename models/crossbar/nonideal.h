// Analog non-idealities of an IMC layer (docs/SEMANTICS.md step 5): per-cell stuck-at faults
// and conductance variation (programmed once per seed), a transfer-curve non-linearity of the
// bitline value, additive Gaussian noise at the ADC input, and the conversion of the resulting
// real-valued ADC input. Everything here is exact: counter-based RNGs (splitmix64 for keys and
// uniforms, a keyed 32-bit hash for the Gaussian), integer
// arithmetic and correctly rounded float64 operations in a fixed order, so that the numpy
// reference (scripts/imcsim_py/reference.py) reproduces every value bit for bit.
// Plain C++, no SystemC.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "models/adc/adc.h"
#include "models/crossbar/crossbar.h"
#include "models/crossbar/slicing.h"

namespace imcsim::kernels {

// ---- settings ------------------------------------------------------------------------------

// One point of the transfer curve: ideal bitline value x -> analog value y, in partial-sum LSB.
struct TransferPoint {
  double x = 0, y = 0;
  bool operator==(const TransferPoint&) const = default;
};

// The non-idealities of a run (arch config "nonidealities"). All off by default.
struct NonidealSpec {
  double adc_noise_sigma_lsb = 0;            // additive Gaussian noise at the ADC input, sigma in LSB
  double conductance_variation_sigma = 0;    // relative sigma of every cell's conductance
  std::vector<TransferPoint> transfer_curve;  // piecewise-linear; empty = identity
  double stuck_at_rate = 0;                  // fraction of cells stuck (at 0 or at the top level)
  double stuck_at_max_fraction = 0.5;        // of the stuck cells, the fraction stuck at the top level

  bool noise() const { return adc_noise_sigma_lsb > 0; }
  bool variation() const { return conductance_variation_sigma > 0; }
  bool transfer() const { return !transfer_curve.empty(); }
  bool stuck() const { return stuck_at_rate > 0; }
  bool active() const { return noise() || variation() || transfer() || stuck(); }
  bool operator==(const NonidealSpec&) const = default;
};

// Limits checked by the config validation (and assumed by the kernels).
constexpr double kMaxNoiseSigmaLsb = 1048576.0;    // 2^20 LSB
constexpr double kMaxVariationSigma = 1.0;
constexpr double kMaxTransferAbs = 1073741824.0;   // |x|, |y| of transfer points <= 2^30 LSB
constexpr size_t kMaxTransferPoints = 4096;

// Returns an empty string if `spec` is valid, else what is wrong (the config names the path).
std::string validate_nonideal_spec(const NonidealSpec& spec);

// ---- counter-based RNGs (splitmix64; the Gaussian's 32-bit hash below) --------------------------------------------------------

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // splitmix64 increment

// RNG streams (the second element of every key).
enum RngStream : uint64_t { kStreamAdcNoise = 1, kStreamStuckAt = 2, kStreamVariation = 3 };

// splitmix64's output function.
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Output i (0-based) of a splitmix64 generator seeded with `state`: mix(state + (i+1)*gamma).
inline uint64_t splitmix64_output(uint64_t state, uint64_t i) {
  return splitmix64_mix(state + (i + 1) * kGamma);
}
// Key hashing: H() = 0, H(v_0..v_m) = splitmix64_output(H(v_0..v_{m-1}) ^ v_m, 0).
inline uint64_t rng_extend(uint64_t h, uint64_t v) { return splitmix64_output(h ^ v, 0); }
inline uint64_t rng_key(std::initializer_list<uint64_t> values) {
  uint64_t h = 0;
  for (uint64_t v : values) h = rng_extend(h, v);
  return h;
}

// The Gaussian stream (docs/SEMANTICS.md step 5): a 32-bit counter-based generator keyed by a
// 64-bit H. Output i (< 2^32) of stream h: hash32(((lo32(h) + i * kGamma32) mod 2^32) ^ hi32(h)),
// hash32 a 2-round xorshift-multiply hash (shifts 16, 15, 15; constants from Wellons'
// hash-prospector, an improved set for his "lowbias32").
constexpr uint32_t kGamma32 = 0x9E3779B9u;
inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21F0AAADu;
  x ^= x >> 15;
  x *= 0x735A2D97u;
  return x ^ (x >> 15);
}
inline uint32_t gauss32_output(uint64_t h, uint32_t i) {
  return hash32((static_cast<uint32_t>(h) + i * kGamma32) ^ static_cast<uint32_t>(h >> 32));
}
// Sum of the six 5-bit fields (bits 0-4, 5-9, ..., 25-29) of w, in [0, 186].
inline uint32_t irwin_hall_fields(uint32_t w) {
  constexpr uint32_t kMask = 0x1Fu | (0x1Fu << 10) | (0x1Fu << 20);
  const uint32_t pairs = (w & kMask) + ((w >> 5) & kMask);  // three 10-bit slots, no carries
  return (pairs & 0x3FFu) + ((pairs >> 10) & 0x3FFu) + (pairs >> 20);
}
// The Irwin-Hall sum S of element n (< 2^31) of stream `key`: the twelve 5-bit fields of
// outputs 2n and 2n + 1, summed; in [0, kIrwinHallMax].
constexpr uint32_t kIrwinHallMax = 12 * 31;
constexpr uint32_t kIrwinHallMean = 6 * 31;  // 186
inline uint32_t irwin_hall_sum(uint64_t key, uint64_t n) {
  return irwin_hall_fields(gauss32_output(key, static_cast<uint32_t>(2 * n))) +
         irwin_hall_fields(gauss32_output(key, static_cast<uint32_t>(2 * n + 1)));
}
// Standard-normal approximation of element n of stream `key`: z = (S - 186) * 2^-5, exact in
// float64, z in [-5.8125, 5.8125], mean 0, variance 1 - 2^-10.
inline double gaussian_z(uint32_t sum) {
  return static_cast<double>(static_cast<int32_t>(sum) - static_cast<int32_t>(kIrwinHallMean)) * 0x1p-5;
}
inline double gaussian_sample(uint64_t key, uint64_t n) { return gaussian_z(irwin_hall_sum(key, n)); }
// Uniform in [0, 1) from element n of stream `key`: (output n >> 11) * 2^-53, exact.
inline double uniform_sample(uint64_t key, uint64_t n) {
  return static_cast<double>(splitmix64_output(key, n) >> 11) * 0x1p-53;
}

// ---- analog values -------------------------------------------------------------------------

// Analog quantities are int64 in units of 2^-16 partial-sum LSB.
constexpr uint32_t kAnalogFracBits = 16;
constexpr double kAnalogScale = 65536.0;
constexpr int64_t kAnalogLimitFx = int64_t{1} << 46;   // |ADC input| <= 2^30 LSB
constexpr double kAnalogLimitFxD = 70368744177664.0;  // 2^46

// rint (round half to even, the IEEE default mode) of |x| < 2^51 as an integer, without a libm
// call: adding and subtracting 1.5 * 2^52 rounds to an integer in the current (nearest) mode.
// (The sum's bit pattern minus the magic number's is the integer: no float-to-int conversion,
// so loops of it vectorise.)
inline int64_t rint_to_int(double x) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return std::bit_cast<int64_t>(x + kMagic) - std::bit_cast<int64_t>(kMagic);
}

// Noise in analog units: rint((sigma * z) * 2^16).
inline int64_t noise_fx(double sigma, double z) { return rint_to_int((sigma * z) * kAnalogScale); }

inline int64_t clamp_analog(int64_t a) {
  return a < -kAnalogLimitFx ? -kAnalogLimitFx : (a > kAnalogLimitFx ? kAnalogLimitFx : a);
}

// Piecewise-linear transfer curve through points with strictly increasing x (>= 2 points),
// extrapolated with the first / last segment.
class TransferCurve {
 public:
  explicit TransferCurve(std::vector<TransferPoint> points);
  // y_fx = rint(clamp((y_j + (x - x_j) * slope_j) * 2^16, -2^46, 2^46)), x = x_fx * 2^-16,
  // j = the last segment whose x_j <= x (0 if none), slope_j = (y_j+1 - y_j) / (x_j+1 - x_j).
  int64_t apply(int64_t x_fx) const;
  // apply() on a[0 .. count-1] in place (same results; the segment found by integer compares).
  void apply_row(int64_t* a, size_t count) const;
  const std::vector<TransferPoint>& points() const { return points_; }

 private:
  std::vector<TransferPoint> points_;
  std::vector<double> slopes_;
  std::vector<int64_t> starts_fx_;  // ceil(x_j * 2^16): x_j <= x_fx * 2^-16  <=>  x_fx >= starts_fx_[j]
};

// The ADC of a real-valued input a = a_fx * 2^-16 (docs/SEMANTICS.md step 5 "ADC of an analog
// value"): the step-6 formulas evaluated exactly on the real number. For a = p integer this is
// adc_convert(spec, set, p).
struct AnalogAdcResult {
  int64_t code;
  int64_t value_fx;
  bool saturated;  // linear ADC only: the unclipped code lay outside [qmin, qmax]
};
AnalogAdcResult adc_convert_analog(const AdcSpec& spec, uint64_t set, int64_t a_fx);
// The ADC inputs a in (a_lo, a_hi] at which the result (value_fx, saturated) of parameter set
// `set` changes, ascending (the first input of each new result); nullopt if more than
// max_points. (The result is a monotone function of a: a code, for a linear ADC widened by
// one on each side for saturation.)
std::optional<std::vector<int64_t>> adc_change_points(const AdcSpec& spec, uint64_t set, int64_t a_lo, int64_t a_hi,
                                                      size_t max_points);

// The same conversion, prepared for speed (division by multiplication with a corrected floor,
// branchless threshold search); equal to adc_convert_analog for every input.
class AnalogAdc {
 public:
  explicit AnalogAdc(const AdcSpec& spec);
  // value_fx[n] of inputs a[n], n < count, with parameter set set0 + n * set_step; returns the
  // number of saturated conversions.
  uint64_t convert_row(const int64_t* a, size_t count, uint64_t set0, uint64_t set_step, int64_t* value_fx) const;
  // Fused row for the common case (tables built): a_n = x[n] * scale + noise[n] (noise may be
  // null), acc[n] += w * value_fx(a_n), [lo, hi] widened to cover every a_n; returns the number
  // of saturated conversions.
  bool has_tables() const { return !tables_.empty(); }
  uint64_t accumulate_row(const int32_t* x, int64_t scale, const int64_t* noise, size_t count, uint64_t set0,
                          uint64_t set_step, int64_t w, int64_t* acc, int64_t& lo, int64_t& hi) const;

  AnalogAdcResult convert(uint64_t set, int64_t a) const {
    int64_t vf, hf, hc;
    if (frac_bits_ >= kAnalogFracBits) {
      vf = a * (int64_t{1} << (frac_bits_ - kAnalogFracBits));
      hf = hc = 2 * vf;
    } else {
      const uint32_t sh = kAnalogFracBits - frac_bits_;
      vf = a >> sh;
      hf = a >> (sh - 1);
      hc = -((-a) >> (sh - 1));
    }
    switch (spec_->kind) {
      case AdcKind::kIdeal:
        return {(a + (int64_t{1} << (kAnalogFracBits - 1))) >> kAnalogFracBits, (hf + 1) >> 1, false};
      case AdcKind::kLinear: {
        const int64_t st = spec_->step_fx[set], c = spec_->centre_fx[set];
        int64_t r;
        if (!half_away_) {
          r = div_floor(vf - c, st, inv_step_[set]);
        } else {
          // |2 num| rounded away from zero's side: hf - 2c if num >= 0, else 2c - hc (branchless).
          const int64_t up = hf - 2 * c, down = 2 * c - hc;
          const bool negative = up < 0;
          const int64_t q = div_floor((negative ? down : up) + st, 2 * st, inv_2step_[set]);
          r = negative ? -q : q;
        }
        const bool sat = r < qmin_ || r > qmax_;
        const int64_t code = r < qmin_ ? qmin_ : (r > qmax_ ? qmax_ : r);
        return {code, c + code * st, sat};
      }
      case AdcKind::kNonlinear: {
        const int64_t* b = spec_->thresholds_fx.data() + set * n_thresholds_;
        const int64_t* const t0 = b;
        size_t len = n_thresholds_;
        while (len > 1) {
          const size_t half = len / 2;
          b = b[half] <= vf ? b + half : b;
          len -= half;
        }
        const int64_t code = (b - t0) + (*b <= vf ? 1 : 0);
        return {code, spec_->levels_fx[set * (n_thresholds_ + 1) + static_cast<size_t>(code)], false};
      }
    }
    return {0, 0, false};
  }

 private:
  // floor(num / d), d > 0: a float64 estimate, floored without libm, corrected to the exact
  // result (the estimate is off by at most one except for huge quotients, hence the loops).
  static int64_t div_floor(int64_t num, int64_t d, double inv_d) {
    const double x = static_cast<double>(num) * inv_d;
    int64_t q = static_cast<int64_t>(x);
    q -= x < static_cast<double>(q) ? 1 : 0;
    while (q * d > num) --q;
    while ((q + 1) * d <= num) ++q;
    return q;
  }
  // Bucket tables (LINEAR / NONLINEAR): per parameter set, the inputs are cut into buckets of
  // 2^shift analog units, no wider than the smallest distance between two inputs where the
  // conversion result changes, so a bucket holds at most one such change point `thr`. Built by
  // the exact conversion itself (binary searches), hence equal to it by construction; inputs
  // outside the table clamp to its first / last bucket, beyond every change point.
  struct Bucket {
    int64_t thr;                // first input of the bucket with the upper result (INT64_MAX: none)
    int64_t value_lo, value_hi;
    uint8_t sat_lo, sat_hi;
  };
  struct SetTable {
    int64_t base = 0;
    uint32_t shift = 0;
    size_t first = 0, count = 0;  // buckets_[first, first + count)
  };
  void build_tables();
  // The monotone state of an input: the code, or for a linear ADC the code clipped to
  // [qmin - 1, qmax + 1] (saturation included).
  int64_t state(uint64_t set, int64_t a) const;

  const AdcSpec* spec_;
  uint32_t frac_bits_;
  bool half_away_;
  int64_t qmin_, qmax_;
  size_t n_thresholds_ = 0;
  std::vector<double> inv_step_, inv_2step_;
  std::vector<SetTable> tables_;  // empty: no tables (convert directly)
  std::vector<Bucket> buckets_;
};

// ---- programmed cells ----------------------------------------------------------------------

// The cells of one IMC layer as programmed on a chip with stuck-at faults and conductance
// variation for one seed. Physical cell (k, s, n, polarity): polarity 1 only for the W- cell of
// a DIFFERENTIAL_ANALOG pair. Level d = the ideal cell value; stuck-at: u = uniform of
// (seed, 2, node, k, s, polarity)[n]: u < rate*(1 - max_fraction) -> 0, else u < rate ->
// 2^Bc - 1. Variation: conductance d * max(0, 1 + sigma * z), z = gaussian of
// (seed, 3, node, k, s, polarity)[n], held as rint(... * 2^16). Without variation the cells
// stay integer levels (and partial sums integers).
class NonidealCrossbar {
 public:
  NonidealCrossbar(const ProgrammedCrossbar& ideal, std::span<const int32_t> weights, uint32_t weight_bits,
                   uint32_t cell_bits, WeightEncoding encoding, const NonidealSpec& spec, uint64_t seed,
                   uint64_t node_index);

  bool integer_cells() const { return integer_; }
  // Largest |partial sum| of any tile for group values up to max_group_value (integer cells: in
  // LSB; fixed-point cells: in 2^-16 LSB).
  int64_t psum_bound(uint32_t max_group_value) const;
  // Integer cells: psum[s*N + n] = sum_{k in tile} u[k] * level(k, s, n).
  void partial_sums(uint32_t tile, std::span<const uint16_t> group_values, std::span<int32_t> psum) const;
  // Fixed-point cells: x_fx[s*N + n] = sum_{k in tile} u[k] * cell_fx(k, s, n) (units 2^-16).
  void partial_sums_fx(uint32_t tile, std::span<const uint16_t> group_values, std::span<int64_t> x_fx) const;
  // The same into 32 bits, valid when psum_bound() < 2^31 (faster).
  void partial_sums_fx32(uint32_t tile, std::span<const uint16_t> group_values, std::span<int32_t> x_fx) const;
  // Effective value of cell (k, s, n): a level (integer cells) or 2^-16 units (fixed point);
  // for DIFFERENTIAL_ANALOG the W+ cell minus the W- cell.
  int64_t cell(uint32_t k, uint32_t s, uint32_t n) const;
  // Integer cells: all levels, [k][s][n] (empty for fixed-point cells).
  std::span<const int16_t> levels() const { return levels_; }
  // Count of physical cells stuck at 0 and at the top level (for reports and tests).
  uint64_t stuck_at_zero() const { return stuck_zero_; }
  uint64_t stuck_at_max() const { return stuck_max_; }
  uint64_t physical_cells() const { return physical_cells_; }

 private:
  uint32_t k_rows_, n_cols_, n_slices_;
  std::vector<RowTile> tiles_;
  bool integer_;
  std::vector<int16_t> levels_;  // [k][s][n] (integer cells)
  std::vector<int32_t> fx_;      // [k][s][n] (fixed point)
  uint64_t stuck_zero_ = 0, stuck_max_ = 0, physical_cells_ = 0;
};

}  // namespace imcsim::kernels
