// Analog non-idealities of an IMC layer (docs/SEMANTICS.md step 5): per-cell stuck-at faults
// and conductance variation (programmed once per seed), a transfer-curve non-linearity of the
// bitline value, additive Gaussian noise at the ADC input, and the conversion of the resulting
// real-valued ADC input. Everything here is exact: a counter-based RNG (splitmix64), integer
// arithmetic and correctly rounded float64 operations in a fixed order, so that the numpy
// reference (scripts/imcsim_py/reference.py) reproduces every value bit for bit.
// Plain C++, no SystemC.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
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

// ---- counter-based RNG (splitmix64) --------------------------------------------------------

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

// Standard-normal approximation of element n of stream `key`: the Irwin-Hall sum of twelve
// 16-bit uniforms, the four 16-bit fields of outputs 3n, 3n+1, 3n+2, centred:
// z = (sum + 6) * 2^-16 - 6, exact in float64, z in (-6, 6), mean 0, variance 1 - 2^-32.
inline double gaussian_sample(uint64_t key, uint64_t n) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < 3; ++i) {
    const uint64_t o = splitmix64_output(key, 3 * n + i);
    // Four 16-bit fields added pairwise within the word (no carries cross 32 bits).
    const uint64_t pairs = (o & 0x0000FFFF0000FFFFull) + ((o >> 16) & 0x0000FFFF0000FFFFull);
    sum += (pairs & 0xFFFFFFFFull) + (pairs >> 32);
  }
  return static_cast<double>(sum + 6) * 0x1p-16 - 6.0;
}
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

// Noise in analog units: rint((sigma * z) * 2^16).
inline int64_t noise_fx(double sigma, double z) {
  return static_cast<int64_t>(std::nearbyint((sigma * z) * kAnalogScale));
}
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
  const std::vector<TransferPoint>& points() const { return points_; }

 private:
  std::vector<TransferPoint> points_;
  std::vector<double> slopes_;
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
  // Effective value of cell (k, s, n): a level (integer cells) or 2^-16 units (fixed point);
  // for DIFFERENTIAL_ANALOG the W+ cell minus the W- cell.
  int64_t cell(uint32_t k, uint32_t s, uint32_t n) const;
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
