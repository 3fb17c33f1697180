#include "models/adc/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace imcsim::kernels {

// ---- methods -----------------------------------------------------------------------------------

const char* calib_method_name(CalibMethod method) {
  switch (method) {
    case CalibMethod::kLinearMinMax: return "linear-minmax";
    case CalibMethod::kLinearPercentile: return "linear-percentile";
    case CalibMethod::kLinearMse: return "linear-mse";
    case CalibMethod::kLloydMax: return "lloyd-max";
    case CalibMethod::kCdf: return "cdf";
    case CalibMethod::kKmeans: return "kmeans";
    case CalibMethod::kBsKmq: return "bs-kmq";
  }
  return "?";
}

const std::vector<CalibMethod>& all_calib_methods() {
  static const std::vector<CalibMethod> methods = {
      CalibMethod::kLinearMinMax, CalibMethod::kLinearPercentile, CalibMethod::kLinearMse, CalibMethod::kLloydMax,
      CalibMethod::kCdf,          CalibMethod::kKmeans,           CalibMethod::kBsKmq};
  return methods;
}

std::optional<CalibMethod> parse_calib_method(std::string_view name) {
  for (CalibMethod m : all_calib_methods())
    if (name == calib_method_name(m)) return m;
  return std::nullopt;
}

std::string calib_method_list() {
  std::string s;
  for (CalibMethod m : all_calib_methods()) s += (s.empty() ? "" : ", ") + std::string(calib_method_name(m));
  return s;
}

const char* bskmq_levels_name(BsKmqLevels levels) {
  switch (levels) {
    case BsKmqLevels::kMean: return "mean";
    case BsKmqLevels::kCentroid: return "centroid";
    case BsKmqLevels::kPinned: return "pinned";
    case BsKmqLevels::kReserved: return "reserved";
  }
  return "?";
}

std::optional<BsKmqLevels> parse_bskmq_levels(std::string_view name) {
  for (BsKmqLevels l : {BsKmqLevels::kMean, BsKmqLevels::kCentroid, BsKmqLevels::kPinned, BsKmqLevels::kReserved})
    if (name == bskmq_levels_name(l)) return l;
  return std::nullopt;
}

bool is_linear_method(CalibMethod method) {
  return method == CalibMethod::kLinearMinMax || method == CalibMethod::kLinearPercentile ||
         method == CalibMethod::kLinearMse;
}

// ---- histogram ---------------------------------------------------------------------------------

void PsumHistogram::grow(int64_t value) {
  if (counts_.empty()) {
    offset_ = value;
    counts_.assign(1, 0);
    return;
  }
  const int64_t old_lo = offset_, old_hi = offset_ + static_cast<int64_t>(counts_.size()) - 1;
  // Grow geometrically in the direction of the new value, so that a stream of new extremes
  // costs amortised O(1) per value.
  const int64_t slack = static_cast<int64_t>(counts_.size());
  int64_t lo = old_lo, hi = old_hi;
  if (value < old_lo) lo = std::min(value, old_lo - slack);
  if (value > old_hi) hi = std::max(value, old_hi + slack);
  const uint64_t needed = static_cast<uint64_t>(std::max(value, old_hi) - std::min(value, old_lo)) + 1;
  if (needed > kMaxRange)
    throw std::length_error("partial-sum histogram: observed values span " + std::to_string(needed) +
                            " integers, more than the " + std::to_string(kMaxRange) + " a dense histogram holds");
  if (static_cast<uint64_t>(hi - lo) + 1 > kMaxRange) {  // the slack alone must not exceed the cap
    lo = std::max(lo, std::min(value, old_lo));
    hi = lo + static_cast<int64_t>(kMaxRange) - 1;
  }
  std::vector<uint64_t> counts(static_cast<size_t>(hi - lo + 1), 0);
  std::copy(counts_.begin(), counts_.end(), counts.begin() + (old_lo - lo));
  counts_ = std::move(counts);
  offset_ = lo;
}

void PsumHistogram::merge(const PsumHistogram& other) {
  if (other.total_ == 0) return;
  const int64_t lo = other.min(), hi = other.max();
  add(lo, 0);
  add(hi, 0);
  for (int64_t v = lo; v <= hi; ++v) {
    const uint64_t c = other.counts_[static_cast<size_t>(v - other.offset_)];
    if (c) counts_[static_cast<size_t>(v - offset_)] += c;
  }
  total_ += other.total_;
}

int64_t PsumHistogram::min() const {
  for (size_t i = 0; i < counts_.size(); ++i)
    if (counts_[i]) return offset_ + static_cast<int64_t>(i);
  throw std::logic_error("PsumHistogram::min of an empty histogram");
}

int64_t PsumHistogram::max() const {
  for (size_t i = counts_.size(); i-- > 0;)
    if (counts_[i]) return offset_ + static_cast<int64_t>(i);
  throw std::logic_error("PsumHistogram::max of an empty histogram");
}

uint64_t PsumHistogram::count(int64_t value) const {
  if (counts_.empty() || value < offset_ || value >= offset_ + static_cast<int64_t>(counts_.size())) return 0;
  return counts_[static_cast<size_t>(value - offset_)];
}

std::vector<std::pair<int64_t, uint64_t>> PsumHistogram::bins() const {
  std::vector<std::pair<int64_t, uint64_t>> out;
  for (size_t i = 0; i < counts_.size(); ++i)
    if (counts_[i]) out.emplace_back(offset_ + static_cast<int64_t>(i), counts_[i]);
  return out;
}

int64_t histogram_percentile(const PsumHistogram& hist, double q) {
  const auto bins = hist.bins();
  if (bins.empty()) throw std::logic_error("histogram_percentile of an empty histogram");
  const double target = q / 100.0 * static_cast<double>(hist.total());
  uint64_t cum = 0;
  for (const auto& [v, c] : bins) {
    cum += c;
    if (static_cast<double>(cum) >= target) return v;
  }
  return bins.back().first;
}

void check_fit_options(const FitOptions& o) {
  if (o.bits < 1 || o.bits > 16)
    throw std::invalid_argument("bits must be in [1, 16], got " + std::to_string(o.bits));
  if (o.frac_bits > 24) throw std::invalid_argument("frac_bits must be in [0, 24], got " + std::to_string(o.frac_bits));
  if (!(o.percentile > 0.0 && o.percentile <= 100.0))
    throw std::invalid_argument("percentile must be in (0, 100], got " + std::to_string(o.percentile));
  if (o.boundary_weight && !(*o.boundary_weight >= 0.0 && *o.boundary_weight <= 1.0))
    throw std::invalid_argument("boundary weight must be in [0, 1], got " + std::to_string(*o.boundary_weight));
  if (o.max_iterations < 1) throw std::invalid_argument("max_iterations must be >= 1");
}

namespace {

// Weighted distinct values in increasing order, with prefix sums for bin statistics.
struct Data {
  std::vector<int64_t> v;
  std::vector<double> w;
  std::vector<long double> cw, cwv;  // prefix sums, size n + 1

  size_t size() const { return v.size(); }
  void finish() {
    cw.assign(v.size() + 1, 0.0L);
    cwv.assign(v.size() + 1, 0.0L);
    for (size_t i = 0; i < v.size(); ++i) {
      cw[i + 1] = cw[i] + w[i];
      cwv[i + 1] = cwv[i] + static_cast<long double>(w[i]) * static_cast<long double>(v[i]);
    }
  }
  long double weight(size_t a, size_t b) const { return cw[b] - cw[a]; }
  long double mean(size_t a, size_t b) const { return (cwv[b] - cwv[a]) / (cw[b] - cw[a]); }
  // First index with v >= t.
  size_t lower(double t) const {
    return static_cast<size_t>(
        std::lower_bound(v.begin(), v.end(), t, [](int64_t x, double y) { return static_cast<double>(x) < y; }) -
        v.begin());
  }
};

Data data_of(const PsumHistogram& hist) {
  Data d;
  for (const auto& [v, c] : hist.bins()) {
    d.v.push_back(v);
    d.w.push_back(static_cast<double>(c));
  }
  d.finish();
  return d;
}

int64_t round_half_away(double x) { return std::llround(x); }

// ceil(t * 2^F) as int64, saturated far outside any partial sum.
int64_t ceil_fx(double t, uint32_t F) {
  const double x = std::ceil(std::ldexp(t, static_cast<int>(F)));
  const double lim = 0x1p60;
  return static_cast<int64_t>(std::clamp(x, -lim, lim));
}

AdcSpec single_set_spec(const SetFit& f, const FitOptions& o) {
  AdcSpec s;
  s.kind = f.kind;
  s.bits = o.bits;
  s.frac_bits = o.frac_bits;
  s.rounding = o.rounding;
  s.signed_codes = o.signed_codes;
  s.granularity = AdcGranularity::kLayer;
  if (f.kind == AdcKind::kLinear) {
    s.step_fx = {f.step_fx};
    s.centre_fx = {f.centre_fx};
  } else {
    s.thresholds_fx = f.thresholds_fx;
    s.levels_fx = f.levels_fx;
  }
  return s;
}

double data_mse(const Data& d, const AdcSpec& spec, uint64_t set) {
  long double sum = 0, total = 0;
  const uint32_t F = spec.frac_bits;
  for (size_t i = 0; i < d.size(); ++i) {
    const int64_t err_fx = adc_convert(spec, set, d.v[i]).value_fx - d.v[i] * (int64_t{1} << F);
    const long double e = std::ldexp(static_cast<long double>(err_fx), -static_cast<int>(F));
    sum += static_cast<long double>(d.w[i]) * e * e;
    total += d.w[i];
  }
  return total > 0 ? static_cast<double>(sum / total) : 0.0;
}

// ---- linear ------------------------------------------------------------------------------------

// Linear quantiser with first level a_fx (the value of code_min) and step step_fx.
SetFit linear_fit(int64_t step_fx, int64_t a_fx, const FitOptions& o) {
  SetFit f;
  f.kind = AdcKind::kLinear;
  f.step_fx = std::max<int64_t>(1, step_fx);
  f.centre_fx = o.signed_codes ? a_fx + (int64_t{1} << (o.bits - 1)) * f.step_fx : a_fx;
  return f;
}

// Maps [lo, hi] (LSB, real) onto the first and last code.
SetFit linear_range(double lo, double hi, const FitOptions& o) {
  const double one = std::ldexp(1.0, static_cast<int>(o.frac_bits));
  const double levels = std::ldexp(1.0, static_cast<int>(o.bits));
  const int64_t step = hi > lo ? round_half_away((hi - lo) * one / (levels - 1.0)) : round_half_away(one);
  return linear_fit(step, round_half_away(lo * one), o);
}

class LinearSearch {
 public:
  LinearSearch(const Data& d, const FitOptions& o) : d_(d), o_(o) {}
  double eval(int64_t step, int64_t a_fx) {
    if (step < 1) return std::numeric_limits<double>::infinity();
    SetFit f = linear_fit(step, a_fx, o_);
    ++evals_;
    const double j = data_mse(d_, single_set_spec(f, o_), 0);
    if (j < best_mse_) {
      best_mse_ = j;
      best_step_ = f.step_fx;
      best_a_ = a_fx;
    }
    return j;
  }
  void eval(const SetFit& f) {
    const int64_t a = o_.signed_codes ? f.centre_fx - (int64_t{1} << (o_.bits - 1)) * f.step_fx : f.centre_fx;
    eval(f.step_fx, a);
  }
  double best_mse() const { return best_mse_; }
  int64_t best_step() const { return best_step_; }
  int64_t best_a() const { return best_a_; }
  uint64_t evals() const { return evals_; }

 private:
  const Data& d_;
  const FitOptions& o_;
  double best_mse_ = std::numeric_limits<double>::infinity();
  int64_t best_step_ = 1, best_a_ = 0;
  uint64_t evals_ = 0;
};

// Minimises the exact MSE (engine arithmetic, clipping included) over integer (step_fx, a_fx):
// candidates (min/max, percentiles, integer-LSB steps), a 96 x 33 grid, then a pattern search.
SetFit linear_mse(const Data& d, const PsumHistogram& hist, const FitOptions& o) {
  const int64_t one = int64_t{1} << o.frac_bits;
  const int64_t L = int64_t{1} << o.bits;
  const int64_t lo = d.v.front(), hi = d.v.back();
  LinearSearch s(d, o);
  s.eval(linear_range(static_cast<double>(lo), static_cast<double>(hi), o));
  for (double q : {o.percentile, 99.99, 99.9, 99.5, 99.0, 98.0, 95.0, 90.0}) {
    const double plo = static_cast<double>(histogram_percentile(hist, (100.0 - q) / 2.0));
    const double phi = static_cast<double>(histogram_percentile(hist, (100.0 + q) / 2.0));
    s.eval(linear_range(plo, phi, o));
  }
  // Integer steps keep every level on an integer: lossless when the range fits.
  const int64_t span = hi - lo;
  for (int64_t k = 1; k <= std::min<int64_t>(64, span / (L - 1) + 2); ++k) {
    s.eval(k * one, lo * one);
    const int64_t cover = (L - 1) * k;
    if (cover < span) s.eval(k * one, (lo + (span - cover) / 2) * one);
  }
  // Grid: geometric steps up to the min/max step, first level across the useful interval.
  const double s_mm = span > 0 ? static_cast<double>(span * one) / static_cast<double>(L - 1) : double(one);
  const double s_hi = std::max(1.0, s_mm), s_lo = std::max(1.0, s_mm / 1024.0);
  int64_t prev_step = 0;
  for (int i = 0; i < 96; ++i) {
    const int64_t step = std::max<int64_t>(1, round_half_away(s_lo * std::pow(s_hi / s_lo, i / 95.0)));
    if (step == prev_step) continue;
    prev_step = step;
    const double st = static_cast<double>(step), cover = static_cast<double>((L - 1) * step);
    const double lo_fx = static_cast<double>(lo * one), hi_fx = static_cast<double>(hi * one);
    double a0, a1;
    if (cover < hi_fx - lo_fx) {
      a0 = lo_fx - st / 2;
      a1 = hi_fx - cover + st / 2;
    } else {
      a0 = std::max(hi_fx - cover, lo_fx - st) - st / 2;
      a1 = lo_fx + st / 2;
    }
    for (int j = 0; j <= 32; ++j) s.eval(step, round_half_away(a0 + (a1 - a0) * j / 32.0));
  }
  // Pattern search on the integer grid from the best point so far.
  int64_t step = s.best_step(), a = s.best_a();
  double best = s.best_mse();
  int64_t ds = std::max<int64_t>(1, step / 8), da = std::max<int64_t>(1, step / 8);
  const int64_t half = (L - 1) / 2;
  for (int round = 0; round < 20000; ++round) {
    bool improved = false;
    const int64_t moves[6][2] = {{ds, 0}, {-ds, 0}, {0, da}, {0, -da}, {ds, -half * ds}, {-ds, half * ds}};
    for (const auto& m : moves) {
      const double j = s.eval(step + m[0], a + m[1]);
      if (j < best) {
        best = j;
        step += m[0];
        a += m[1];
        improved = true;
        break;
      }
    }
    if (improved) continue;
    if (ds == 1 && da == 1) break;
    ds = std::max<int64_t>(1, ds / 2);
    da = std::max<int64_t>(1, da / 2);
  }
  SetFit f = linear_fit(s.best_step(), s.best_a(), o);
  f.iterations = static_cast<uint32_t>(std::min<uint64_t>(s.evals(), UINT32_MAX));
  return f;
}

// ---- non-linear --------------------------------------------------------------------------------

// Builds the threshold table from real thresholds (L - 1, non-decreasing, in LSB): each becomes
// ceil(t * 2^F), which decides every input on the 2^-F grid exactly as t does; runs of equal
// values are spread inside the same integer gap (a*2^F, (a+1)*2^F] where they fit, so that
// they still decide every integer partial sum as t does; then thresholds are forced strictly
// increasing (t[i] = max(t[i], t[i-1] + 1)). Levels are the conditional means of the data in
// each final bin (rounded half away to the grid); an empty bin takes the midpoint of its edges.
SetFit assemble_nonlinear(const std::vector<double>& thresholds, const Data& full, const FitOptions& o) {
  const uint32_t F = o.frac_bits;
  const int64_t one = int64_t{1} << F;
  const size_t n_thr = thresholds.size();
  std::vector<int64_t> t(n_thr);
  for (size_t i = 0; i < n_thr; ++i) t[i] = ceil_fx(thresholds[i], F);
  for (size_t i = 1; i < n_thr; ++i) t[i] = std::max(t[i], t[i - 1]);
  for (size_t i = 0; i < n_thr;) {
    size_t j = i;
    while (j + 1 < n_thr && t[j + 1] == t[i]) ++j;
    const int64_t k = static_cast<int64_t>(j - i + 1);
    if (k > 1) {
      const int64_t x = t[i];
      const int64_t gap_lo = (floor_div(x - 1, one)) * one + 1;  // (a*2^F, (a+1)*2^F] holds x
      const int64_t gap_hi = gap_lo + one - 1;
      const int64_t start = std::max(gap_lo, std::min(x, gap_hi - k + 1));
      for (int64_t m = 0; m < k; ++m) t[i + static_cast<size_t>(m)] = start + m;
    }
    i = j + 1;
  }
  for (size_t i = 1; i < n_thr; ++i) t[i] = std::max(t[i], t[i - 1] + 1);

  SetFit f;
  f.kind = AdcKind::kNonlinear;
  f.thresholds_fx = t;
  f.levels_fx.resize(n_thr + 1);
  // Bin j holds v_fx in [t[j-1], t[j]); v_fx = v * 2^F.
  size_t begin = 0;
  for (size_t j = 0; j <= n_thr; ++j) {
    size_t end = full.size();
    if (j < n_thr) {
      end = begin;
      while (end < full.size() && full.v[end] * one < t[j]) ++end;
    }
    if (end > begin && full.weight(begin, end) > 0) {
      f.levels_fx[j] = round_half_away(static_cast<double>(std::ldexp(full.mean(begin, end), static_cast<int>(F))));
    } else {
      const int64_t e_lo = j == 0 ? t[0] - one : t[j - 1];
      const int64_t e_hi = j == n_thr ? t[n_thr - 1] + one : t[j];
      f.levels_fx[j] = floor_div(e_lo + e_hi, 2);
    }
    begin = end;
  }
  return f;
}

std::vector<double> midpoints(const std::vector<double>& c) {
  std::vector<double> m(c.size() - 1);
  for (size_t i = 0; i + 1 < c.size(); ++i) m[i] = (c[i] + c[i + 1]) / 2.0;
  return m;
}

// `values` (sorted, distinct) completed to L centroids by the next integers above the largest.
std::vector<double> pad_centroids(std::vector<double> values, size_t L) {
  double top = values.empty() ? -1.0 : values.back();
  while (values.size() < L) values.push_back(top += 1.0);
  return values;
}

// Lloyd iteration (1-D k-means) on weighted data from strictly increasing centroids; stops when
// the partition no longer changes. Bin j holds values in [m_(j-1), m_j), m = midpoints.
uint32_t lloyd(const Data& d, std::vector<double>& c, uint32_t max_iterations) {
  const size_t L = c.size();
  std::vector<size_t> edges(L + 1), prev;
  for (uint32_t it = 0; it < max_iterations; ++it) {
    edges[0] = 0;
    edges[L] = d.size();
    for (size_t j = 1; j < L; ++j) edges[j] = d.lower((c[j - 1] + c[j]) / 2.0);
    if (edges == prev) return it;
    prev = edges;
    for (size_t j = 0; j < L; ++j)
      if (edges[j + 1] > edges[j] && d.weight(edges[j], edges[j + 1]) > 0)
        c[j] = static_cast<double>(d.mean(edges[j], edges[j + 1]));
  }
  return max_iterations;
}

// Deterministic greedy D^2 seeding: the weighted median, then repeatedly the value maximising
// weight x squared distance to the nearest chosen centroid (smallest value on ties).
// Requires more distinct values with positive weight than L.
std::vector<double> greedy_d2_init(const Data& d, size_t L) {
  const long double half = d.cw.back() / 2;
  size_t first = 0;
  while (first + 1 < d.size() && d.cw[first + 1] < half) ++first;
  std::vector<double> dist2(d.size(), std::numeric_limits<double>::infinity());
  std::vector<double> chosen;
  size_t pick = first;
  for (size_t k = 0; k < L; ++k) {
    chosen.push_back(static_cast<double>(d.v[pick]));
    size_t best = 0;
    double best_score = -1.0;
    for (size_t i = 0; i < d.size(); ++i) {
      const double diff = static_cast<double>(d.v[i] - d.v[pick]);
      dist2[i] = std::min(dist2[i], diff * diff);
      const double score = d.w[i] * dist2[i];
      if (score > best_score) {
        best_score = score;
        best = i;
      }
    }
    pick = best;
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

Data drop_zero_weights(const Data& d) {
  Data out;
  for (size_t i = 0; i < d.size(); ++i)
    if (d.w[i] > 0) {
      out.v.push_back(d.v[i]);
      out.w.push_back(d.w[i]);
    }
  out.finish();
  return out;
}

// k-means with L clusters on `d` (more than L distinct values), greedy D^2 initialisation.
std::vector<double> kmeans(const Data& d, size_t L, uint32_t max_iterations, uint32_t& iterations) {
  std::vector<double> c = greedy_d2_init(d, L);
  iterations = lloyd(d, c, max_iterations);
  return c;
}

// Equal-probability thresholds (mid-rank): a value v with cumulative weight (C_before, C_after]
// gets code min(L - 1, floor(L * (C_before + C_after) / (2 * total))); threshold j lies midway
// between the largest value with code < j and the smallest with code >= j (half an LSB below the
// smallest value, or above the largest, when there is none on one side).
std::vector<double> cdf_thresholds(const Data& d, size_t L) {
  const long double total = d.cw.back();
  std::vector<size_t> code(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    const long double mid = (d.cw[i] + d.cw[i + 1]) / (2 * total);
    code[i] = std::min<size_t>(L - 1, static_cast<size_t>(std::floor(static_cast<double>(mid * L))));
  }
  std::vector<double> t(L - 1);
  size_t i = 0;
  for (size_t j = 1; j < L; ++j) {
    while (i < d.size() && code[i] < j) ++i;
    if (i == d.size()) t[j - 1] = static_cast<double>(d.v.back()) + 0.5;
    else if (i == 0) t[j - 1] = static_cast<double>(d.v.front()) - 0.5;
    else t[j - 1] = (static_cast<double>(d.v[i - 1]) + static_cast<double>(d.v[i])) / 2.0;
  }
  return t;
}

SetFit fit_nonlinear(const Data& d, const PsumHistogram& hist, CalibMethod method, const FitOptions& o) {
  const size_t L = size_t{1} << o.bits;
  const int64_t lo = d.v.front(), hi = d.v.back();
  uint32_t iterations = 0;
  std::vector<double> thresholds, centroid_levels;
  std::optional<std::pair<int64_t, int64_t>> pinned;  // BS-KMQ: boundary values whose bins are pinned
  if (static_cast<uint64_t>(hi - lo) + 1 <= L) {
    // Every integer of the observed range gets its own level: lossless for every method.
    std::vector<double> c(L);
    for (size_t k = 0; k < L; ++k) c[k] = static_cast<double>(lo) + static_cast<double>(k);
    thresholds = midpoints(c);
  } else if (d.size() <= L) {
    thresholds = midpoints(pad_centroids(std::vector<double>(d.v.begin(), d.v.end()), L));
  } else {
    switch (method) {
      case CalibMethod::kLloydMax: {
        std::vector<double> c(L);
        const double width = static_cast<double>(hi - lo) / static_cast<double>(L);
        for (size_t k = 0; k < L; ++k) c[k] = static_cast<double>(lo) + (static_cast<double>(k) + 0.5) * width;
        iterations = lloyd(d, c, o.max_iterations);
        thresholds = midpoints(c);
        break;
      }
      case CalibMethod::kKmeans:
        thresholds = midpoints(kmeans(d, L, o.max_iterations, iterations));
        break;
      case CalibMethod::kCdf:
        thresholds = cdf_thresholds(d, L);
        break;
      case CalibMethod::kBsKmq: {
        // Clamp to the two-sided percentile range, suppress the two boundary bins, cluster.
        const int64_t x_lo = histogram_percentile(hist, (100.0 - o.percentile) / 2.0);
        const int64_t x_hi = histogram_percentile(hist, (100.0 + o.percentile) / 2.0);
        Data s;
        for (size_t i = 0; i < d.size(); ++i) {
          const int64_t v = std::clamp(d.v[i], x_lo, x_hi);
          if (!s.v.empty() && s.v.back() == v) s.w.back() += d.w[i];
          else {
            s.v.push_back(v);
            s.w.push_back(d.w[i]);
          }
        }
        const size_t clamped_distinct = s.v.size();
        if (o.bskmq_levels == BsKmqLevels::kReserved && clamped_distinct > L) {
          // Single-value bins {<= x_lo} and {>= x_hi}, L - 2 clusters on the interior.
          if (L == 2) {
            thresholds = {(static_cast<double>(x_lo) + static_cast<double>(x_hi)) / 2.0};
            break;
          }
          Data in;
          for (size_t i = 0; i < s.size(); ++i)
            if (s.v[i] != x_lo && s.v[i] != x_hi) {
              in.v.push_back(s.v[i]);
              in.w.push_back(s.w[i]);
            }
          in.finish();  // more than L - 2 distinct values: clamped_distinct > L
          const std::vector<double> c = kmeans(in, L - 2, o.max_iterations, iterations);
          thresholds.push_back(static_cast<double>(x_lo) + 0.5);
          for (double m : midpoints(c)) thresholds.push_back(m);
          thresholds.push_back(static_cast<double>(x_hi) - 0.5);
          break;
        }
        std::vector<double> boundaries;
        const std::vector<double> w0 = s.w;
        for (size_t i = 0; i < s.size(); ++i)
          if (s.v[i] == x_lo || s.v[i] == x_hi) {
            if (o.boundary_weight) {
              s.w[i] *= *o.boundary_weight;
            } else if (s.size() > 1) {  // flatten: down to the nearest inside value's weight
              const size_t inside = s.v[i] == x_lo ? i + 1 : i - 1;
              s.w[i] = std::min(w0[i], w0[inside]);
            }
            boundaries.push_back(static_cast<double>(s.v[i]));
          }
        s.finish();
        const Data kept = drop_zero_weights(s);
        std::vector<double> c;
        if (clamped_distinct <= L) {
          c.assign(s.v.begin(), s.v.end());
        } else if (kept.size() <= L) {
          c.assign(kept.v.begin(), kept.v.end());
          for (double b : boundaries)
            if (c.size() < L && std::find(c.begin(), c.end(), b) == c.end()) c.push_back(b);
          std::sort(c.begin(), c.end());
        } else {
          c = kmeans(kept, L, o.max_iterations, iterations);
        }
        c = pad_centroids(std::move(c), L);
        thresholds = midpoints(c);
        if (o.bskmq_levels == BsKmqLevels::kCentroid) centroid_levels = c;
        if (o.bskmq_levels == BsKmqLevels::kPinned) pinned = std::make_pair(x_lo, x_hi);
        break;
      }
      default:
        throw std::logic_error("fit_nonlinear: not a non-linear method");
    }
  }
  SetFit f = assemble_nonlinear(thresholds, d, o);
  if (!centroid_levels.empty())
    for (size_t j = 0; j < L; ++j)
      f.levels_fx[j] = round_half_away(std::ldexp(centroid_levels[j], static_cast<int>(o.frac_bits)));
  if (pinned) {
    // The bins holding the boundary values reconstruct exactly those values (x_lo wins if one
    // bin holds both).
    const AdcSpec s = single_set_spec(f, o);
    const int64_t one = int64_t{1} << o.frac_bits;
    const auto code_lo = static_cast<size_t>(adc_convert(s, 0, pinned->first).code);
    const auto code_hi = static_cast<size_t>(adc_convert(s, 0, pinned->second).code);
    f.levels_fx[code_hi] = pinned->second * one;
    f.levels_fx[code_lo] = pinned->first * one;
  }
  f.iterations = iterations;
  return f;
}

}  // namespace

SetFit fit_set(const PsumHistogram& hist, CalibMethod method, const FitOptions& o) {
  check_fit_options(o);
  const Data d = data_of(hist);
  SetFit f;
  if (d.size() == 0) {
    if (is_linear_method(method)) {
      f = linear_range(0.0, 0.0, o);
    } else {
      std::vector<double> c(size_t{1} << o.bits);
      for (size_t k = 0; k < c.size(); ++k) c[k] = static_cast<double>(k);
      f = assemble_nonlinear(midpoints(c), d, o);
    }
    f.mse = 0.0;
    return f;
  }
  switch (method) {
    case CalibMethod::kLinearMinMax:
      f = linear_range(static_cast<double>(d.v.front()), static_cast<double>(d.v.back()), o);
      break;
    case CalibMethod::kLinearPercentile:
      f = linear_range(static_cast<double>(histogram_percentile(hist, (100.0 - o.percentile) / 2.0)),
                       static_cast<double>(histogram_percentile(hist, (100.0 + o.percentile) / 2.0)), o);
      break;
    case CalibMethod::kLinearMse:
      f = linear_mse(d, hist, o);
      break;
    default:
      f = fit_nonlinear(d, hist, method, o);
  }
  f.mse = data_mse(d, single_set_spec(f, o), 0);
  return f;
}

double histogram_mse(const PsumHistogram& hist, const AdcSpec& spec, uint64_t set) {
  return data_mse(data_of(hist), spec, set);
}

LayerFit fit_layer(const std::vector<PsumHistogram>& sets, CalibMethod method, const FitOptions& o,
                   AdcGranularity granularity) {
  check_fit_options(o);
  LayerFit out;
  AdcSpec& s = out.spec;
  s.kind = is_linear_method(method) ? AdcKind::kLinear : AdcKind::kNonlinear;
  s.bits = o.bits;
  s.frac_bits = o.frac_bits;
  s.rounding = o.rounding;
  s.signed_codes = o.signed_codes;
  s.granularity = granularity;
  std::optional<SetFit> pooled;
  long double weighted = 0;
  for (const PsumHistogram& h : sets) {
    SetFit f;
    if (h.empty()) {
      if (!pooled) {
        PsumHistogram all;
        for (const PsumHistogram& x : sets) all.merge(x);
        pooled = fit_set(all, method, o);
      }
      f = *pooled;
      f.mse = 0.0;
    } else {
      f = fit_set(h, method, o);
    }
    if (s.kind == AdcKind::kLinear) {
      s.step_fx.push_back(f.step_fx);
      s.centre_fx.push_back(f.centre_fx);
    } else {
      s.thresholds_fx.insert(s.thresholds_fx.end(), f.thresholds_fx.begin(), f.thresholds_fx.end());
      s.levels_fx.insert(s.levels_fx.end(), f.levels_fx.begin(), f.levels_fx.end());
    }
    out.set_mse.push_back(f.mse);
    weighted += static_cast<long double>(f.mse) * static_cast<long double>(h.total());
    out.samples += h.total();
  }
  out.mse = out.samples ? static_cast<double>(weighted / static_cast<long double>(out.samples)) : 0.0;
  return out;
}

double layer_mse(const std::vector<PsumHistogram>& sets, const AdcSpec& spec) {
  long double weighted = 0;
  uint64_t samples = 0;
  for (size_t i = 0; i < sets.size(); ++i) {
    if (sets[i].empty()) continue;
    weighted += static_cast<long double>(histogram_mse(sets[i], spec, i)) * static_cast<long double>(sets[i].total());
    samples += sets[i].total();
  }
  return samples ? static_cast<double>(weighted / static_cast<long double>(samples)) : 0.0;
}

AdcSpec rescale_linear_adc(const AdcSpec& spec, uint32_t bits) {
  if (bits < 1 || bits > 16) throw std::invalid_argument("ADC bits must be in [1, 16], got " + std::to_string(bits));
  if (spec.kind == AdcKind::kIdeal) return spec;
  if (spec.kind == AdcKind::kNonlinear)
    throw std::invalid_argument("a non-linear ADC cannot be re-derived at another resolution without data; "
                                "re-calibrate it (imcsim calibrate)");
  AdcSpec out = spec;
  out.bits = bits;
  const bool half = spec.rounding == AdcRounding::kHalfAway;
  for (size_t i = 0; i < spec.step_fx.size(); ++i) {
    const int64_t s = spec.step_fx[i];
    // New step: s * 2^B / 2^bits, exact when going down in bits.
    int64_t s2;
    if (bits <= spec.bits) s2 = s << (spec.bits - bits);
    else s2 = std::max<int64_t>(1, round_half_away(std::ldexp(static_cast<double>(s), -static_cast<int>(bits - spec.bits))));
    // Lower edge of the range, doubled to stay integer: 2E = 2(centre + code_min s) - s [half away].
    const int64_t two_edge = 2 * (spec.centre_fx[i] + spec.code_min() * s) - (half ? s : 0);
    // 2 centre' = 2E + s' [half away] - 2 code_min' s'.
    const int64_t two_centre = two_edge + (half ? s2 : 0) - 2 * out.code_min() * s2;
    out.step_fx[i] = s2;
    out.centre_fx[i] = two_centre >= 0 ? (two_centre + 1) / 2 : -((-two_centre + 1) / 2);
  }
  return out;
}

}  // namespace imcsim::kernels
