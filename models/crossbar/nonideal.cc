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
  for (const auto& p : points_) starts_fx_.push_back(static_cast<int64_t>(std::ceil(p.x * kAnalogScale)));
}

void TransferCurve::apply_row(int64_t* a, size_t count) const {
  const size_t m = points_.size();
  const int64_t* st = starts_fx_.data();
  for (size_t n = 0; n < count; ++n) {
    const int64_t xf = a[n];
    // j = #{1 <= i <= m-2 : x_i <= x} = clamp(#{i : x_i <= x} - 1, 0, m - 2) (x_i increasing).
    size_t j = 0;
    if (m <= 18) {
      for (size_t i = 1; i + 1 < m; ++i) j += xf >= st[i] ? 1 : 0;
    } else {
      size_t lo = 1, hi = m - 1;  // first i in [1, m-1) with st[i] > xf
      while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (st[mid] <= xf) lo = mid + 1; else hi = mid;
      }
      j = lo - 1;
    }
    const double x = static_cast<double>(xf) * 0x1p-16;
    double y = x - points_[j].x;
    y = y * slopes_[j];
    y = points_[j].y + y;
    y = y * kAnalogScale;
    y = std::min(std::max(y, -kAnalogLimitFxD), kAnalogLimitFxD);
    a[n] = rint_to_int(y);
  }
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
  return rint_to_int(y);
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

namespace {
// The monotone state of the conversion of a: the code, for a linear ADC widened to [qmin - 1,
// qmax + 1] (saturation included); for an IDEAL ADC its value (finer than its code when F > 0).
int64_t adc_state(const AdcSpec& adc, uint64_t set, int64_t a) {
  const AnalogAdcResult r = adc_convert_analog(adc, set, a);
  if (adc.kind == AdcKind::kIdeal) return r.value_fx;
  if (adc.kind == AdcKind::kLinear && r.saturated) return r.code == adc.code_min() ? r.code - 1 : r.code + 1;
  return r.code;
}
}  // namespace

std::optional<std::vector<int64_t>> adc_change_points(const AdcSpec& spec, uint64_t set, int64_t a_lo, int64_t a_hi,
                                                      size_t max_points) {
  std::vector<int64_t> change;
  const int64_t top = adc_state(spec, set, a_hi);
  for (int64_t from = a_lo;;) {
    const int64_t s0 = adc_state(spec, set, from);
    if (top <= s0) break;
    int64_t lo = from + 1, hi = a_hi;  // the first a with a higher state
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (adc_state(spec, set, mid) > s0) hi = mid;
      else lo = mid + 1;
    }
    if (change.size() == max_points) return std::nullopt;
    change.push_back(lo);
    from = lo;
  }
  return change;
}

AnalogAdc::AnalogAdc(const AdcSpec& spec)
    : spec_(&spec),
      frac_bits_(spec.frac_bits),
      half_away_(spec.rounding == AdcRounding::kHalfAway),
      qmin_(spec.code_min()),
      qmax_(spec.code_max()) {
  if (spec.kind == AdcKind::kLinear)
    for (int64_t st : spec.step_fx) {
      inv_step_.push_back(1.0 / static_cast<double>(st));
      inv_2step_.push_back(1.0 / static_cast<double>(2 * st));
    }
  if (spec.kind == AdcKind::kNonlinear) n_thresholds_ = spec.levels() - 1;
  if (spec.kind != AdcKind::kIdeal) build_tables();
}

int64_t AnalogAdc::state(uint64_t set, int64_t a) const {
  const AnalogAdcResult r = convert(set, a);
  if (spec_->kind == AdcKind::kLinear && r.saturated) return r.code == qmin_ ? qmin_ - 1 : qmax_ + 1;
  return r.code;
}

void AnalogAdc::build_tables() {
  constexpr size_t kMaxBuckets = size_t{1} << 20, kMaxBucketsPerSet = 4096;
  const uint64_t sets = spec_->kind == AdcKind::kLinear ? spec_->step_fx.size()
                                                        : spec_->levels_fx.size() / spec_->levels();
  std::vector<SetTable> tables(sets);
  std::vector<Bucket> buckets;
  std::vector<int64_t> change;  // change points of one set: first inputs of a new state
  for (uint64_t set = 0; set < sets; ++set) {
    // First input whose state exceeds state(from), in (from, kAnalogLimitFx]; none: limit + 1.
    auto next_change = [&](int64_t from) {
      const int64_t s0 = state(set, from);
      int64_t lo = from + 1, hi = kAnalogLimitFx + 1;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (state(set, mid) > s0) hi = mid; else lo = mid + 1;
      }
      return lo;
    };
    change.clear();
    for (int64_t c = next_change(-kAnalogLimitFx); c <= kAnalogLimitFx; c = next_change(c)) {
      change.push_back(c);
      if (change.size() > 2 * n_thresholds_ + 8 + (size_t{1} << spec_->bits)) return;  // not monotone-stepped
    }
    SetTable& t = tables[set];
    t.first = buckets.size();
    if (change.empty()) {  // constant: one bucket
      buckets.push_back({INT64_MAX, convert(set, 0).value_fx, 0, convert(set, 0).saturated, 0});
      t.count = 1;
      continue;
    }
    int64_t spacing = INT64_MAX;
    for (size_t i = 1; i < change.size(); ++i) spacing = std::min(spacing, change[i] - change[i - 1]);
    uint32_t shift = 0;
    while (shift < 40 && (int64_t{2} << shift) <= spacing) ++shift;
    t.shift = shift;
    t.base = change.front() - 1;
    const int64_t width = int64_t{1} << shift;
    const size_t count = static_cast<size_t>((change.back() - t.base) / width) + 1;
    if (count > kMaxBucketsPerSet || buckets.size() + count > kMaxBuckets) return;
    t.count = count;
    size_t j = 0;  // next change point
    for (size_t b = 0; b < count; ++b) {
      const int64_t b0 = t.base + static_cast<int64_t>(b) * width, b1 = b0 + width;
      while (j < change.size() && change[j] < b0) ++j;
      Bucket e{};
      if (j < change.size() && change[j] < b1) {
        e.thr = change[j];
        const AnalogAdcResult lo = convert(set, e.thr - 1), hi = convert(set, e.thr);
        e.value_lo = lo.value_fx, e.sat_lo = lo.saturated;
        e.value_hi = hi.value_fx, e.sat_hi = hi.saturated;
      } else {
        const AnalogAdcResult r = convert(set, b0);
        e.thr = INT64_MAX;
        e.value_lo = e.value_hi = r.value_fx;
        e.sat_lo = e.sat_hi = r.saturated;
      }
      buckets.push_back(e);
    }
  }
  tables_ = std::move(tables);
  buckets_ = std::move(buckets);
}

uint64_t AnalogAdc::accumulate_row(const int32_t* x, int64_t scale, const int64_t* noise, size_t count,
                                   uint64_t set0, uint64_t set_step, int64_t w, int64_t* acc, int64_t& lo,
                                   int64_t& hi) const {
  uint64_t saturated = 0;
  int64_t mn = lo, mx = hi;
  for (size_t n = 0; n < count; ++n) {
    const int64_t a = int64_t{x[n]} * scale + (noise ? noise[n] : 0);
    const SetTable& t = tables_[set0 + n * set_step];
    int64_t b = (a - t.base) >> t.shift;
    b = b < 0 ? 0 : (b >= static_cast<int64_t>(t.count) ? static_cast<int64_t>(t.count) - 1 : b);
    const Bucket& e = buckets_[t.first + static_cast<size_t>(b)];
    const int64_t up = -static_cast<int64_t>(a >= e.thr);
    acc[n] += w * (e.value_lo ^ ((e.value_lo ^ e.value_hi) & up));
    saturated += static_cast<uint64_t>((e.sat_lo ^ ((e.sat_lo ^ e.sat_hi) & up)) & 1);
    mn = a < mn ? a : mn;
    mx = a > mx ? a : mx;
  }
  lo = mn, hi = mx;
  return saturated;
}

uint64_t AnalogAdc::convert_row(const int64_t* a, size_t count, uint64_t set0, uint64_t set_step,
                                int64_t* value_fx) const {
  uint64_t saturated = 0;
  if (!tables_.empty()) {
    auto lookup = [&](const SetTable& t, int64_t x, int64_t& value) {
      int64_t b = (x - t.base) >> t.shift;
      b = b < 0 ? 0 : (b >= static_cast<int64_t>(t.count) ? static_cast<int64_t>(t.count) - 1 : b);
      const Bucket& e = buckets_[t.first + static_cast<size_t>(b)];
      const int64_t hi = -static_cast<int64_t>(x >= e.thr);  // all ones or zero: no branch
      value = e.value_lo ^ ((e.value_lo ^ e.value_hi) & hi);
      return static_cast<uint64_t>((e.sat_lo ^ ((e.sat_lo ^ e.sat_hi) & hi)) & 1);
    };
    if (set_step == 0) {
      const SetTable t = tables_[set0];
      for (size_t n = 0; n < count; ++n) saturated += lookup(t, a[n], value_fx[n]);
    } else {
      for (size_t n = 0; n < count; ++n) saturated += lookup(tables_[set0 + n * set_step], a[n], value_fx[n]);
    }
    return saturated;
  }
  // One loop per (kind, rounding, frac_bits >= 16), so that the loop body has no invariant branch.
  auto linear = [&]<bool kHalfAway, bool kWide>() {
    const uint32_t sh = kWide ? frac_bits_ - kAnalogFracBits : kAnalogFracBits - frac_bits_;
    for (size_t n = 0; n < count; ++n) {
      const uint64_t set = set0 + n * set_step;
      const int64_t st = spec_->step_fx[set], c = spec_->centre_fx[set];
      int64_t r;
      if constexpr (!kHalfAway) {
        const int64_t vf = kWide ? a[n] * (int64_t{1} << sh) : a[n] >> sh;
        r = div_floor(vf - c, st, inv_step_[set]);
      } else {
        const int64_t hf = kWide ? a[n] * (int64_t{2} << sh) : a[n] >> (sh - 1);
        const int64_t hc = kWide ? hf : -((-a[n]) >> (sh - 1));
        const int64_t up = hf - 2 * c, down = 2 * c - hc;
        const bool negative = up < 0;
        const int64_t q = div_floor((negative ? down : up) + st, 2 * st, inv_2step_[set]);
        r = negative ? -q : q;
      }
      saturated += (r < qmin_) | (r > qmax_);
      const int64_t code = r < qmin_ ? qmin_ : (r > qmax_ ? qmax_ : r);
      value_fx[n] = c + code * st;
    }
  };
  const bool wide = frac_bits_ >= kAnalogFracBits;
  switch (spec_->kind) {
    case AdcKind::kLinear:
      if (half_away_) {
        if (wide) linear.template operator()<true, true>(); else linear.template operator()<true, false>();
      } else {
        if (wide) linear.template operator()<false, true>(); else linear.template operator()<false, false>();
      }
      break;
    default:
      for (size_t n = 0; n < count; ++n) value_fx[n] = convert(set0 + n * set_step, a[n]).value_fx;
      break;
  }
  return saturated;
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
            fx_[base + n] = static_cast<int32_t>(fx_[base + n] + sign * rint_to_int(g));
          }
        }
        physical_cells_ += n_cols_;
      }
}

int64_t NonidealCrossbar::psum_bound(uint32_t max_group_value) const {
  int64_t best = 0;
  const size_t width = size_t{n_slices_} * n_cols_;
  std::vector<int64_t> pos(width), neg(width);  // per (s, n): sums of the positive / negative cells
  for (const auto& t : tiles_) {
    std::fill(pos.begin(), pos.end(), 0);
    std::fill(neg.begin(), neg.end(), 0);
    for (uint32_t k = t.row_begin; k < t.row_end; ++k)  // (rows are contiguous over (s, n))
      for (size_t i = 0; i < width; ++i) {
        const int64_t c = integer_ ? levels_[k * width + i] : fx_[k * width + i];
        (c > 0 ? pos[i] : neg[i]) += c;
      }
    for (size_t i = 0; i < width; ++i)
      best = std::max({best, pos[i] * max_group_value, -neg[i] * int64_t{max_group_value}});
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

void NonidealCrossbar::partial_sums_fx32(uint32_t tile, std::span<const uint16_t> group_values,
                                         std::span<int32_t> x_fx) const {
  const size_t width = size_t{n_slices_} * n_cols_;
  std::fill(x_fx.begin(), x_fx.end(), 0);
  int32_t* __restrict out = x_fx.data();
  const RowTile& t = tiles_[tile];
  for (uint32_t k = t.row_begin; k < t.row_end; ++k) {
    const int32_t u = group_values[k];
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
