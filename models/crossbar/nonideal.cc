#include "models/crossbar/nonideal.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace imcsim::kernels {

namespace {
std::string g17(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

std::string validate_nonideal_spec(const NonidealSpec& s) {
  auto bad_range = [](double v, double lo, double hi) { return !(v >= lo && v <= hi); };
  if (bad_range(s.adc_noise_sigma_lsb, 0.0, kMaxNoiseSigmaLsb))
    return "adc_noise_sigma_lsb must be in [0, 1048576] (2^20 LSB), got " + g17(s.adc_noise_sigma_lsb);
  if (bad_range(s.conductance_variation_sigma, 0.0, kMaxVariationSigma))
    return "conductance_variation_sigma must be in [0, 1], got " + g17(s.conductance_variation_sigma);
  if (bad_range(s.stuck_at_rate, 0.0, 1.0))
    return "stuck_at_rate must be in [0, 1], got " + g17(s.stuck_at_rate);
  if (bad_range(s.stuck_at_max_fraction, 0.0, 1.0))
    return "stuck_at_max_fraction must be in [0, 1], got " + g17(s.stuck_at_max_fraction);
  const auto& t = s.transfer_curve;
  if (t.size() == 1) return "transfer_curve needs at least 2 points (or none)";
  if (t.size() > kMaxTransferPoints)
    return "transfer_curve has " + std::to_string(t.size()) + " points, at most " +
           std::to_string(kMaxTransferPoints) + " allowed";
  for (size_t i = 0; i < t.size(); ++i) {
    if (bad_range(t[i].x, -kMaxTransferAbs, kMaxTransferAbs) || bad_range(t[i].y, -kMaxTransferAbs, kMaxTransferAbs))
      return "transfer_curve point " + std::to_string(i) + " must be finite with |x|, |y| <= 2^30";
    if (i > 0 && !(t[i].x > t[i - 1].x))
      return "transfer_curve x values must be strictly increasing (sorted): point " + std::to_string(i) +
             " has x = " + g17(t[i].x) + " after x = " + g17(t[i - 1].x);
  }
  return {};
}

// ---- transfer curve --------------------------------------------------------------------------

TransferCurve::TransferCurve(std::vector<TransferPoint> points) : points_(std::move(points)) {
  if (points_.size() < 2) throw std::invalid_argument("transfer curve needs at least 2 points");
  for (size_t j = 0; j + 1 < points_.size(); ++j)
    slopes_.push_back((points_[j + 1].y - points_[j].y) / (points_[j + 1].x - points_[j].x));
}

int64_t TransferCurve::apply(int64_t x_fx) const {
  const double x = static_cast<double>(x_fx) * 0x1p-16;
  // j = #{i : x_i <= x} - 1, clamped to [0, m - 2].
  const size_t m = points_.size();
  size_t lo = 0, hi = m;  // count of points with x_i <= x
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (points_[mid].x <= x) lo = mid + 1; else hi = mid;
  }
  const size_t j = lo == 0 ? 0 : std::min(lo - 1, m - 2);
  double y = x - points_[j].x;
  y = y * slopes_[j];
  y = points_[j].y + y;
  y = y * kAnalogScale;
  y = std::min(std::max(y, -kAnalogLimitFxD), kAnalogLimitFxD);
  return static_cast<int64_t>(std::nearbyint(y));
}

// ---- ADC of an analog value ----------------------------------------------------------------

AnalogAdcResult adc_convert_analog(const AdcSpec& spec, uint64_t set, int64_t a) {
  const uint32_t F = spec.frac_bits;
  // vf = floor(a * 2^F); hf, hc = floor, ceil of a * 2^(F+1).
  int64_t vf, hf, hc;
  if (F >= kAnalogFracBits) {
    vf = a * (int64_t{1} << (F - kAnalogFracBits));
    hf = hc = 2 * vf;
  } else {
    const uint32_t sh = kAnalogFracBits - F;
    vf = a >> sh;
    hf = a >> (sh - 1);
    hc = -((-a) >> (sh - 1));
  }
  switch (spec.kind) {
    case AdcKind::kIdeal: {
      // code = floor(a + 1/2), value_fx = floor(a * 2^F + 1/2) = floor((hf + 1) / 2).
      const int64_t code = (a + (int64_t{1} << (kAnalogFracBits - 1))) >> kAnalogFracBits;
      return {code, floor_div(hf + 1, 2), false};
    }
    case AdcKind::kLinear: {
      const int64_t st = spec.step_fx[set], c = spec.centre_fx[set];
      int64_t r;
      if (spec.rounding == AdcRounding::kFloor) {
        r = floor_div(vf - c, st);
      } else if (hf - 2 * c >= 0) {
        r = floor_div(hf - 2 * c + st, 2 * st);
      } else {
        r = -floor_div(2 * c - hc + st, 2 * st);
      }
      const bool sat = r < spec.code_min() || r > spec.code_max();
      const int64_t code = std::clamp(r, spec.code_min(), spec.code_max());
      return {code, c + code * st, sat};
    }
    case AdcKind::kNonlinear: {
      const uint32_t n_thresholds = spec.levels() - 1;
      const int64_t* t = spec.thresholds_fx.data() + set * n_thresholds;
      uint32_t lo = 0, hi = n_thresholds;
      while (lo < hi) {
        const uint32_t mid = (lo + hi) / 2;
        if (vf >= t[mid]) lo = mid + 1; else hi = mid;
      }
      return {lo, spec.levels_fx[set * spec.levels() + lo], false};
    }
  }
  return {0, 0, false};
}

// ---- programmed cells ----------------------------------------------------------------------

NonidealCrossbar::NonidealCrossbar(const ProgrammedCrossbar& ideal, std::span<const int32_t> weights,
                                   uint32_t weight_bits, uint32_t cell_bits, WeightEncoding encoding,
                                   const NonidealSpec& spec, uint64_t seed, uint64_t node_index)
    : k_rows_(ideal.k_rows()),
      n_cols_(ideal.n_cols()),
      n_slices_(static_cast<uint32_t>(ideal.slices().size())),
      tiles_(ideal.tiles()),
      integer_(!spec.variation()) {
  const auto& slices = ideal.slices();
  const size_t total = size_t{k_rows_} * n_slices_ * n_cols_;
  if (integer_) levels_.assign(total, 0); else fx_.assign(total, 0);
  const bool analog_pair = encoding == WeightEncoding::kDifferentialAnalog;
  const uint32_t pols = analog_pair ? 2 : 1;
  const int64_t top = (int64_t{1} << cell_bits) - 1;
  const double t0 = spec.stuck_at_rate * (1.0 - spec.stuck_at_max_fraction), t1 = spec.stuck_at_rate;
  const double sigma = spec.conductance_variation_sigma;
  std::vector<int64_t> level(n_cols_);
  for (uint32_t k = 0; k < k_rows_; ++k)
    for (uint32_t s = 0; s < n_slices_; ++s)
      for (uint32_t pol = 0; pol < pols; ++pol) {
        const WeightSlice& sl = slices[s];
        const uint32_t pattern_pol = analog_pair ? pol : sl.polarity;
        for (uint32_t n = 0; n < n_cols_; ++n)
          level[n] = slice_value(
              stored_weight_pattern(encoding, weight_bits, weights[size_t{n} * k_rows_ + k], pattern_pol), sl);
        if (spec.stuck()) {
          const uint64_t key = rng_key({seed, kStreamStuckAt, node_index, k, s, pol});
          for (uint32_t n = 0; n < n_cols_; ++n) {
            const double u = uniform_sample(key, n);
            if (u < t0) {
              level[n] = 0;
              ++stuck_zero_;
            } else if (u < t1) {
              level[n] = top;
              ++stuck_max_;
            }
          }
        }
        const int64_t sign = pol == 1 ? -1 : 1;
        const size_t base = (size_t{k} * n_slices_ + s) * n_cols_;
        if (integer_) {
          for (uint32_t n = 0; n < n_cols_; ++n)
            levels_[base + n] = static_cast<int16_t>(levels_[base + n] + sign * level[n]);
        } else {
          const uint64_t key = rng_key({seed, kStreamVariation, node_index, k, s, pol});
          for (uint32_t n = 0; n < n_cols_; ++n) {
            double g = sigma * gaussian_sample(key, n);
            g = 1.0 + g;
            g = std::max(g, 0.0);
            g = static_cast<double>(level[n]) * g;
            g = g * kAnalogScale;
            fx_[base + n] = static_cast<int32_t>(fx_[base + n] + sign * static_cast<int64_t>(std::nearbyint(g)));
          }
        }
        physical_cells_ += n_cols_;
      }
}

int64_t NonidealCrossbar::psum_bound(uint32_t max_group_value) const {
  int64_t best = 0;
  const size_t width = size_t{n_slices_} * n_cols_;
  for (const auto& t : tiles_) {
    for (size_t i = 0; i < width; ++i) {
      int64_t pos = 0, neg = 0;
      for (uint32_t k = t.row_begin; k < t.row_end; ++k) {
        const int64_t c = integer_ ? levels_[k * width + i] : fx_[k * width + i];
        (c > 0 ? pos : neg) += c;
      }
      best = std::max({best, pos * max_group_value, -neg * int64_t{max_group_value}});
    }
  }
  return best;
}

void NonidealCrossbar::partial_sums(uint32_t tile, std::span<const uint16_t> group_values,
                                    std::span<int32_t> psum) const {
  const size_t width = size_t{n_slices_} * n_cols_;
  std::fill(psum.begin(), psum.end(), 0);
  int32_t* __restrict out = psum.data();
  const RowTile& t = tiles_[tile];
  for (uint32_t k = t.row_begin; k < t.row_end; ++k) {
    const int32_t u = group_values[k];
    if (u == 0) continue;
    const int16_t* __restrict row = levels_.data() + size_t{k} * width;
    if (u == 1) {
      for (size_t i = 0; i < width; ++i) out[i] += row[i];
    } else {
      for (size_t i = 0; i < width; ++i) out[i] += u * row[i];
    }
  }
}

void NonidealCrossbar::partial_sums_fx(uint32_t tile, std::span<const uint16_t> group_values,
                                       std::span<int64_t> x_fx) const {
  const size_t width = size_t{n_slices_} * n_cols_;
  std::fill(x_fx.begin(), x_fx.end(), 0);
  int64_t* __restrict out = x_fx.data();
  const RowTile& t = tiles_[tile];
  for (uint32_t k = t.row_begin; k < t.row_end; ++k) {
    const int64_t u = group_values[k];
    if (u == 0) continue;
    const int32_t* __restrict row = fx_.data() + size_t{k} * width;
    if (u == 1) {
      for (size_t i = 0; i < width; ++i) out[i] += row[i];
    } else {
      for (size_t i = 0; i < width; ++i) out[i] += u * row[i];
    }
  }
}

int64_t NonidealCrossbar::cell(uint32_t k, uint32_t s, uint32_t n) const {
  const size_t i = (size_t{k} * n_slices_ + s) * n_cols_ + n;
  return integer_ ? levels_[i] : fx_[i];
}

}  // namespace imcsim::kernels
