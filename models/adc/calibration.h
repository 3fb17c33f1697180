// ADC reference calibration: fits linear and non-linear ADC parameters (docs/SEMANTICS.md step 6)
// to an exact histogram of integer partial sums, and measures the quantisation error a fit
// achieves. Pure numerics: no graph, no engine, no SystemC. Every rule is in docs/calibration.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/adc/adc.h"

namespace imcsim::kernels {

// BS-KMQ reconstruction levels (docs/calibration.md): conditional means of all samples per bin;
// the clusters' centroids; conditional means with the two boundary bins pinned to the boundary
// values; or two reserved single-value boundary bins plus 2^B - 2 clusters on the interior.
enum class BsKmqLevels { kMean, kCentroid, kPinned, kReserved };
const char* bskmq_levels_name(BsKmqLevels levels);  // "mean", "centroid", "pinned", "reserved"
std::optional<BsKmqLevels> parse_bskmq_levels(std::string_view name);

enum class CalibMethod {
  kLinearMinMax,      // linear, observed [min, max] onto the first and last code
  kLinearPercentile,  // linear, [P((100-q)/2), P((100+q)/2)] (nearest rank) onto the first and last code
  kLinearMse,         // linear, (step, centre) minimising the exact MSE incl. clipping (search)
  kLloydMax,          // non-linear, Lloyd iteration from a uniform quantiser over [min, max]
  kCdf,               // non-linear, equal-probability bins (mid-rank), levels = conditional means
  kKmeans,            // non-linear, 1-D k-means, deterministic greedy D^2 initialisation
  kBsKmq,             // non-linear, boundary-suppressed k-means (rule: docs/calibration.md)
};

const char* calib_method_name(CalibMethod method);  // "linear-minmax", ..., "bs-kmq"
std::optional<CalibMethod> parse_calib_method(std::string_view name);
const std::vector<CalibMethod>& all_calib_methods();  // in the enum's order
std::string calib_method_list();                      // "linear-minmax, linear-percentile, ..."
bool is_linear_method(CalibMethod method);

// Exact histogram of integer values, stored densely over the observed range.
class PsumHistogram {
 public:
  // Refuses (std::length_error) a histogram spanning more than this many integers.
  static constexpr uint64_t kMaxRange = uint64_t{1} << 26;

  void add(int64_t value, uint64_t count = 1) {
    if (counts_.empty() || value < offset_ || value >= offset_ + static_cast<int64_t>(counts_.size()))
      grow(value);
    counts_[static_cast<size_t>(value - offset_)] += count;
    total_ += count;
  }
  void merge(const PsumHistogram& other);
  uint64_t total() const { return total_; }
  bool empty() const { return total_ == 0; }
  int64_t min() const;  // smallest observed value (requires !empty())
  int64_t max() const;  // largest observed value (requires !empty())
  uint64_t count(int64_t value) const;
  // Non-zero bins (value, count) in increasing value order.
  std::vector<std::pair<int64_t, uint64_t>> bins() const;

 private:
  void grow(int64_t value);
  int64_t offset_ = 0;
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
};

// Nearest-rank percentile, q in [0, 100]: the smallest observed value v with
// count(<= v) >= q/100 * total (the minimum for q = 0). Requires a non-empty histogram.
int64_t histogram_percentile(const PsumHistogram& hist, double q);

struct FitOptions {
  uint32_t bits = 4;                              // B, 1..16
  uint32_t frac_bits = 8;                         // F: parameters in units of 2^-F LSB
  AdcRounding rounding = AdcRounding::kHalfAway;  // linear fits only
  bool signed_codes = false;                      // linear fits only (the same levels either way)
  double percentile = 99.99;                      // q in (0, 100]: linear-percentile and BS-KMQ clamp
  // BS-KMQ suppression of the two boundary bins (after clamping): unset = "flatten" (each boundary
  // bin's weight becomes min(its weight, the weight of the nearest observed value inside)), or a
  // multiplier in [0, 1] of the boundary bins' weight (0 = dropped).
  std::optional<double> boundary_weight;
  BsKmqLevels bskmq_levels = BsKmqLevels::kReserved;  // (boundary_weight applies to the others)
  uint32_t max_iterations = 10000;                // Lloyd iterations (Lloyd-Max, k-means, BS-KMQ)
};

// Checks the options; throws std::invalid_argument naming the offending field.
void check_fit_options(const FitOptions& options);

// The fit of one ADC parameter set.
struct SetFit {
  AdcKind kind = AdcKind::kLinear;
  int64_t step_fx = 0, centre_fx = 0;             // linear
  std::vector<int64_t> thresholds_fx, levels_fx;  // non-linear: 2^B - 1 and 2^B values
  double mse = 0.0;                               // over the histogram, LSB^2
  uint32_t iterations = 0;                        // Lloyd iterations (0 for non-iterative fits)
};

// Fits one parameter set. An empty histogram gives a 1-LSB uniform quantiser starting at 0.
SetFit fit_set(const PsumHistogram& hist, CalibMethod method, const FitOptions& options);

// Mean squared reconstruction error (value_fx * 2^-F - p)^2 over the histogram, in LSB^2, of
// parameter set `set` of `spec`, computed with adc_convert() (exactly what the engine does).
// 0 for an empty histogram.
double histogram_mse(const PsumHistogram& hist, const AdcSpec& spec, uint64_t set);

// The fit of one layer's ADC: every parameter set fitted independently; a set that saw no
// partial sums takes the fit of all the layer's sets pooled.
struct LayerFit {
  AdcSpec spec;
  std::vector<double> set_mse;  // per set
  double mse = 0.0;             // over every conversion of the layer (count-weighted), LSB^2
  uint64_t samples = 0;
};
LayerFit fit_layer(const std::vector<PsumHistogram>& sets, CalibMethod method, const FitOptions& options,
                   AdcGranularity granularity);

// Mean squared error over a layer's histograms (count-weighted) of an existing spec whose
// parameter sets correspond to `sets`.
double layer_mse(const std::vector<PsumHistogram>& sets, const AdcSpec& spec);

// A LINEAR ADC re-derived at `bits` keeping its full-scale input range: the range covered by
// the codes, [value(code_min) - step/2, value(code_max) + step/2) for HALF_AWAY and
// [value(code_min), value(code_max) + step) for FLOOR, i.e. a width of 2^B * step starting at a
// fixed lower edge. New step_fx = round_half_away(step_fx * 2^B / 2^bits) (at least 1); the
// centre is moved so the lower edge stays put (rounded half away to the 2^-F grid). Every
// parameter set alike; rounding, signedness, granularity and F are kept. IDEAL specs are
// returned unchanged; NONLINEAR ones throw std::invalid_argument (they need data to re-fit).
AdcSpec rescale_linear_adc(const AdcSpec& spec, uint32_t bits);

}  // namespace imcsim::kernels
