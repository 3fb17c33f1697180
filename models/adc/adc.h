// ADC numerics: ideal, linear (floor / round-half-away, clipped) and non-linear
// (threshold table) conversion of an integer partial sum. Contract: docs/SEMANTICS.md step 6.
// All parameters are integers in units of 2^-frac_bits partial-sum LSB, so conversion is exact.
#pragma once

#include <cstdint>
#include <vector>

namespace imcsim::kernels {

enum class AdcKind { kIdeal, kLinear, kNonlinear };
enum class AdcRounding { kFloor, kHalfAway };
enum class AdcGranularity { kLayer, kColumn, kSliceTileColumn };

const char* adc_kind_name(AdcKind kind);
const char* adc_rounding_name(AdcRounding rounding);
const char* adc_granularity_name(AdcGranularity granularity);

// One conversion result: the output code and its reconstructed value (units 2^-F).
struct AdcResult {
  int64_t code;
  int64_t value_fx;
};

// The ADC specification of one layer, holding every parameter set.
struct AdcSpec {
  AdcKind kind = AdcKind::kIdeal;
  uint32_t bits = 8;
  uint32_t frac_bits = 0;
  AdcRounding rounding = AdcRounding::kFloor;
  bool signed_codes = false;
  AdcGranularity granularity = AdcGranularity::kLayer;
  std::vector<int64_t> step_fx, centre_fx;        // linear: one per set
  std::vector<int64_t> thresholds_fx, levels_fx;  // non-linear: (2^B - 1) and 2^B per set

  // Number of parameter sets for a layer with G row tiles, S slices and N columns.
  static uint64_t sets_for(AdcGranularity g, uint64_t tiles, uint64_t slices, uint64_t cols) {
    switch (g) {
      case AdcGranularity::kLayer: return 1;
      case AdcGranularity::kColumn: return cols;
      case AdcGranularity::kSliceTileColumn: return tiles * slices * cols;
    }
    return 1;
  }
  // Parameter-set index of (tile g, slice s, column n).
  uint64_t set_index(uint64_t g, uint64_t s, uint64_t n, uint64_t slices, uint64_t cols) const {
    switch (granularity) {
      case AdcGranularity::kLayer: return 0;
      case AdcGranularity::kColumn: return n;
      case AdcGranularity::kSliceTileColumn: return (g * slices + s) * cols + n;
    }
    return 0;
  }
  int64_t code_min() const {
    return signed_codes ? -(int64_t{1} << (bits - 1)) : 0;
  }
  int64_t code_max() const {
    return signed_codes ? (int64_t{1} << (bits - 1)) - 1 : (int64_t{1} << bits) - 1;
  }
  uint32_t levels() const { return 1u << bits; }
};

// Mathematical floor division (Python //), b > 0.
inline int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Linear ADC: the rounded code of partial sum p before clipping to [code_min, code_max].
inline int64_t linear_unclipped_code(const AdcSpec& spec, uint64_t set, int64_t p) {
  const int64_t step = spec.step_fx[set];
  const int64_t num = p * (int64_t{1} << spec.frac_bits) - spec.centre_fx[set];
  if (spec.rounding == AdcRounding::kFloor) return floor_div(num, step);
  const int64_t mag = floor_div(2 * (num < 0 ? -num : num) + step, 2 * step);
  return num < 0 ? -mag : mag;
}

// Whether a linear conversion of p clips (saturates) at the ADC's code range.
inline bool linear_saturates(const AdcSpec& spec, uint64_t set, int64_t p) {
  const int64_t r = linear_unclipped_code(spec, set, p);
  return r < spec.code_min() || r > spec.code_max();
}

// Converts partial sum p with parameter set `set`.
inline AdcResult adc_convert(const AdcSpec& spec, uint64_t set, int64_t p) {
  const int64_t v = p * (int64_t{1} << spec.frac_bits);
  switch (spec.kind) {
    case AdcKind::kIdeal:
      return {p, v};
    case AdcKind::kLinear: {
      const int64_t r = linear_unclipped_code(spec, set, p);
      const int64_t code = r < spec.code_min() ? spec.code_min()
                                                : (r > spec.code_max() ? spec.code_max() : r);
      return {code, spec.centre_fx[set] + code * spec.step_fx[set]};
    }
    case AdcKind::kNonlinear: {
      const uint32_t n_thresholds = spec.levels() - 1;
      const int64_t* t = spec.thresholds_fx.data() + set * n_thresholds;
      // Thresholds are strictly increasing: binary search for #{i : v >= t[i]}.
      uint32_t lo = 0, hi = n_thresholds;
      while (lo < hi) {
        const uint32_t mid = (lo + hi) / 2;
        if (v >= t[mid]) lo = mid + 1; else hi = mid;
      }
      return {lo, spec.levels_fx[set * spec.levels() + lo]};
    }
  }
  return {0, 0};
}

}  // namespace imcsim::kernels
