// ADC calibration (models/adc/calibration.h, sim/engine/calibration.h, imcsim calibrate):
//  * histogram and nearest-rank percentile on hand cases;
//  * every method on hand-checkable histograms: uniform (linear ~ Lloyd-Max ~ CDF, the optimum
//    (16^2 - 1) / 12 = 21.25 LSB^2 for 16 levels over 256 integers), spikes (k-means centroids at
//    the spikes), boundary piles (BS-KMQ spends more levels on the interior than k-means),
//    few distinct values (strictly increasing thresholds, lossless), Lloyd fixed point;
//  * every method x bits 1..16 x F in {0, 8}: a valid spec whose reported MSE is what the ADC
//    conversion gives;
//  * linear re-derivation at other resolutions (hand values, round trip) and with_adc_bits;
//  * histogram collection equals partial sums computed here from SEMANTICS; sequential
//    (layer-by-layer) calibration; golden regeneration equals the Python reference's goldens;
//  * the CLI: bad options give one-line errors naming the option; a tiny run writes a valid graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "models/adc/calibration.h"
#include "models/crossbar/slicing.h"
#include "sim/engine/calibration.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"
#include "sim/graph/graph_writer.h"
#include "tests/support/cli_runner.h"

namespace imcsim {
namespace {

namespace fs = std::filesystem;
using kernels::AdcKind;
using kernels::AdcRounding;
using kernels::AdcSpec;
using kernels::CalibMethod;
using kernels::FitOptions;
using kernels::PsumHistogram;

const fs::path kSourceDir = IMCSIM_SOURCE_DIR;
const fs::path kDefaultGraph = kSourceDir / "workloads" / "fmnist_cnn" / "fmnist_cnn.imcg";
const fs::path kNonlinearGraph = kSourceDir / "workloads" / "fmnist_cnn" / "fmnist_cnn_adc4_nl.imcg";
const fs::path kTinyGraph = kSourceDir / "tests" / "data" / "graphs" / "tiny_fmnist.imcg.txt";
const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

FitOptions opts(uint32_t bits, uint32_t frac = 8) {
  FitOptions o;
  o.bits = bits;
  o.frac_bits = frac;
  return o;
}

AdcSpec spec_of(const kernels::SetFit& f, const FitOptions& o) {
  AdcSpec s;
  s.kind = f.kind;
  s.bits = o.bits;
  s.frac_bits = o.frac_bits;
  s.rounding = o.rounding;
  s.signed_codes = o.signed_codes;
  s.step_fx = f.kind == AdcKind::kLinear ? std::vector<int64_t>{f.step_fx} : std::vector<int64_t>{};
  s.centre_fx = f.kind == AdcKind::kLinear ? std::vector<int64_t>{f.centre_fx} : std::vector<int64_t>{};
  s.thresholds_fx = f.thresholds_fx;
  s.levels_fx = f.levels_fx;
  return s;
}

// The structural rules the loader enforces, plus the MSE the fit reports.
void expect_valid(const kernels::SetFit& f, const FitOptions& o, const PsumHistogram& h) {
  if (f.kind == AdcKind::kLinear) {
    EXPECT_GE(f.step_fx, 1);
  } else {
    const size_t L = size_t{1} << o.bits;
    ASSERT_EQ(f.thresholds_fx.size(), L - 1);
    ASSERT_EQ(f.levels_fx.size(), L);
    for (size_t i = 1; i < f.thresholds_fx.size(); ++i)
      ASSERT_GT(f.thresholds_fx[i], f.thresholds_fx[i - 1]) << "threshold " << i;
  }
  EXPECT_DOUBLE_EQ(f.mse, kernels::histogram_mse(h, spec_of(f, o), 0));
}

// ---- histogram -------------------------------------------------------------------------------------

TEST(PsumHistogram, CountsGrowAndMerge) {
  PsumHistogram h;
  EXPECT_TRUE(h.empty());
  h.add(5);
  h.add(-3, 2);
  h.add(100);
  h.add(5);
  EXPECT_EQ(h.total(), 5u);
  EXPECT_EQ(h.min(), -3);
  EXPECT_EQ(h.max(), 100);
  EXPECT_EQ(h.count(5), 2u);
  EXPECT_EQ(h.count(-3), 2u);
  EXPECT_EQ(h.count(4), 0u);
  EXPECT_EQ(h.count(1000), 0u);
  PsumHistogram g;
  g.add(-10);
  g.add(5, 3);
  g.merge(h);
  EXPECT_EQ(g.total(), 9u);
  EXPECT_EQ(g.count(5), 5u);
  EXPECT_EQ(g.min(), -10);
  EXPECT_EQ(g.max(), 100);
  const auto bins = g.bins();
  ASSERT_EQ(bins.size(), 4u);
  EXPECT_EQ(bins[0], (std::pair<int64_t, uint64_t>{-10, 1}));
  EXPECT_EQ(bins[3], (std::pair<int64_t, uint64_t>{100, 1}));
}

TEST(PsumHistogram, NearestRankPercentile) {
  // Values 1..10 once each: P(q) = the smallest v with v >= q/100 * 10.
  PsumHistogram h;
  for (int v = 1; v <= 10; ++v) h.add(v);
  EXPECT_EQ(kernels::histogram_percentile(h, 0.0), 1);
  EXPECT_EQ(kernels::histogram_percentile(h, 10.0), 1);
  EXPECT_EQ(kernels::histogram_percentile(h, 10.5), 2);
  EXPECT_EQ(kernels::histogram_percentile(h, 50.0), 5);
  EXPECT_EQ(kernels::histogram_percentile(h, 99.0), 10);
  EXPECT_EQ(kernels::histogram_percentile(h, 100.0), 10);
}

// ---- methods on hand-checkable histograms ------------------------------------------------------------

TEST(Calibration, MethodNamesRoundTrip) {
  for (CalibMethod m : kernels::all_calib_methods())
    EXPECT_EQ(kernels::parse_calib_method(kernels::calib_method_name(m)), m);
  EXPECT_FALSE(kernels::parse_calib_method("kmeans++").has_value());
  EXPECT_EQ(kernels::all_calib_methods().size(), 7u);
}

TEST(Calibration, LinearMinMaxHandValues) {
  // Values 0..30: 2 bits -> 4 levels 0, 10, 20, 30: step 10 LSB = 2560 at F = 8, centre 0.
  PsumHistogram h;
  for (int v = 0; v <= 30; ++v) h.add(v);
  FitOptions o = opts(2);
  auto f = kernels::fit_set(h, CalibMethod::kLinearMinMax, o);
  EXPECT_EQ(f.kind, AdcKind::kLinear);
  EXPECT_EQ(f.step_fx, 2560);
  EXPECT_EQ(f.centre_fx, 0);
  // Half-away rounding: v -> nearest of 0,10,20,30 (5 -> 10, 15 -> 20, 25 -> 30): errors
  // 0,1,2,3,4,-5,4,3,2,1 per decade, 0 for 30: (2*(1+4+9+16)+25)*3 / 31 = 85*3/31.
  EXPECT_NEAR(f.mse, 255.0 / 31.0, 1e-12);
  expect_valid(f, o, h);
  // Signed codes: the same levels, centre moved to the value of code 0 = -2^(B-1) steps above.
  o.signed_codes = true;
  auto s = kernels::fit_set(h, CalibMethod::kLinearMinMax, o);
  EXPECT_EQ(s.step_fx, 2560);
  EXPECT_EQ(s.centre_fx, 2 * 2560);
  EXPECT_DOUBLE_EQ(s.mse, f.mse);
}

TEST(Calibration, LinearPercentileClipsTheTails) {
  // 1000 values at 0..99 (10 each) plus one outlier at 10000: min/max spends the range on the
  // outlier; the 99 % two-sided percentile range is [P(0.5), P(99.5)] = [0, 99].
  PsumHistogram h;
  for (int v = 0; v < 100; ++v) h.add(v, 10);
  h.add(10000);
  FitOptions o = opts(4);
  o.percentile = 99.0;
  const auto mm = kernels::fit_set(h, CalibMethod::kLinearMinMax, o);
  const auto pc = kernels::fit_set(h, CalibMethod::kLinearPercentile, o);
  EXPECT_EQ(mm.step_fx, std::llround(10000.0 * 256 / 15));
  EXPECT_EQ(pc.step_fx, std::llround(99.0 * 256 / 15));
  EXPECT_EQ(pc.centre_fx, 0);
  // Clipping trades the outlier's error for a finer step on the bulk.
  PsumHistogram bulk;
  for (int v = 0; v < 100; ++v) bulk.add(v, 10);
  EXPECT_LT(kernels::histogram_mse(bulk, spec_of(pc, o), 0), kernels::histogram_mse(bulk, spec_of(mm, o), 0) / 100);
  const auto ms = kernels::fit_set(h, CalibMethod::kLinearMse, o);
  EXPECT_LE(ms.mse, pc.mse);
  EXPECT_LE(ms.mse, mm.mse);
}

TEST(Calibration, UniformHistogramLinearLloydMaxAndCdfAgree) {
  // 0..255 equally often, 16 levels: the optimum is 16 bins of 16 integers, levels at their
  // means: MSE (16^2 - 1) / 12 = 21.25.
  PsumHistogram h;
  for (int v = 0; v < 256; ++v) h.add(v, 7);
  const FitOptions o = opts(4);
  const double optimum = 255.0 / 12.0;
  for (CalibMethod m : kernels::all_calib_methods()) {
    SCOPED_TRACE(kernels::calib_method_name(m));
    const auto f = kernels::fit_set(h, m, o);
    expect_valid(f, o, h);
    EXPECT_GE(f.mse, optimum - 1e-9);
    if (m == CalibMethod::kLinearMinMax || m == CalibMethod::kLinearPercentile) {
      // step 17 instead of 16: a little worse.
      EXPECT_LT(f.mse, 1.2 * optimum);
    } else if (m == CalibMethod::kKmeans) {
      // Lloyd from a greedy D^2 seeding stops in a nearby local optimum.
      EXPECT_LT(f.mse, 1.1 * optimum);
    } else if (m == CalibMethod::kBsKmq) {
      // Two of the 16 levels reserved for the single values 0 and 255: 14 bins of ~18 inside,
      // (18^2 - 1) / 12 ~ 27.
      EXPECT_LT(f.mse, 1.35 * optimum);
    } else {
      EXPECT_NEAR(f.mse, optimum, 1e-9);
    }
  }
  // Lloyd-Max and CDF give the same table: thresholds at 16 k - 1/2, levels 16 k + 7.5.
  const auto lm = kernels::fit_set(h, CalibMethod::kLloydMax, o);
  const auto cdf = kernels::fit_set(h, CalibMethod::kCdf, o);
  EXPECT_EQ(lm.thresholds_fx, cdf.thresholds_fx);
  EXPECT_EQ(lm.levels_fx, cdf.levels_fx);
  for (int64_t k = 0; k < 16; ++k) EXPECT_EQ(lm.levels_fx[static_cast<size_t>(k)], (16 * k) * 256 + 1920);
  for (int64_t k = 1; k < 16; ++k) EXPECT_EQ(lm.thresholds_fx[static_cast<size_t>(k - 1)], (16 * k) * 256 - 128);
}

TEST(Calibration, TwoSpikesOneBitKmeansCentroidsAtTheSpikes) {
  PsumHistogram h;
  h.add(10, 100);
  h.add(50, 300);
  const FitOptions o = opts(1);
  for (CalibMethod m : {CalibMethod::kKmeans, CalibMethod::kLloydMax, CalibMethod::kBsKmq, CalibMethod::kCdf}) {
    SCOPED_TRACE(kernels::calib_method_name(m));
    const auto f = kernels::fit_set(h, m, o);
    EXPECT_EQ(f.levels_fx, (std::vector<int64_t>{10 * 256, 50 * 256}));
    ASSERT_EQ(f.thresholds_fx.size(), 1u);
    EXPECT_GT(f.thresholds_fx[0], 10 * 256);
    EXPECT_LE(f.thresholds_fx[0], 50 * 256);
    EXPECT_EQ(f.mse, 0.0);
  }
}

TEST(Calibration, ThreeSpikesOneBitKmeansFindsTheOptimalSplit) {
  // {0, 10} | {100}: centroids 5 and 100, MSE (25 + 25 + 0) / 3. Greedy D^2 seeding starts at
  // the weighted median 10, adds 100 (largest w d^2), and Lloyd moves 10 -> 5.
  PsumHistogram h;
  h.add(0, 100);
  h.add(10, 100);
  h.add(100, 100);
  const FitOptions o = opts(1);
  const auto f = kernels::fit_set(h, CalibMethod::kKmeans, o);
  EXPECT_EQ(f.levels_fx, (std::vector<int64_t>{5 * 256, 100 * 256}));
  EXPECT_EQ(f.thresholds_fx, (std::vector<int64_t>{std::llround(52.5 * 256)}));
  EXPECT_NEAR(f.mse, 50.0 / 3.0, 1e-12);
  expect_valid(f, o, h);
}

TEST(Calibration, BsKmqSpendsMoreLevelsOnTheInteriorThanKmeans) {
  // ReLU-and-clamp shape: big piles at 0 and at the maximum 255, a flat interior 1..254.
  PsumHistogram h, interior;
  h.add(0, 20000);
  h.add(255, 10000);
  for (int v = 1; v < 255; ++v) {
    h.add(v, 20);
    interior.add(v, 20);
  }
  FitOptions o = opts(3);  // 8 levels, 7 reference thresholds
  o.bskmq_levels = kernels::BsKmqLevels::kMean;  // suppression, clustering, conditional-mean levels
  const auto km = kernels::fit_set(h, CalibMethod::kKmeans, o);
  // Reference thresholds in the central region [32, 223] of the range.
  auto central = [](const kernels::SetFit& f) {
    return std::count_if(f.thresholds_fx.begin(), f.thresholds_fx.end(),
                         [](int64_t t) { return t >= 32 * 256 && t <= 223 * 256; });
  };
  // How well the partition serves the interior: MSE of the interior samples, each bin
  // reconstructed at the mean of its interior samples.
  auto interior_partition_mse = [&](const kernels::SetFit& f) {
    const auto bins = interior.bins();
    std::vector<double> sw(f.levels_fx.size()), swv(f.levels_fx.size());
    std::vector<size_t> code(bins.size());
    for (size_t i = 0; i < bins.size(); ++i) {
      code[i] = static_cast<size_t>(kernels::adc_convert(spec_of(f, o), 0, bins[i].first).code);
      sw[code[i]] += static_cast<double>(bins[i].second);
      swv[code[i]] += static_cast<double>(bins[i].second) * static_cast<double>(bins[i].first);
    }
    double err = 0, total = 0;
    for (size_t i = 0; i < bins.size(); ++i) {
      const double e = static_cast<double>(bins[i].first) - swv[code[i]] / sw[code[i]];
      err += static_cast<double>(bins[i].second) * e * e;
      total += static_cast<double>(bins[i].second);
    }
    return err / total;
  };
  // k-means gives each pile its own level (within 1 LSB of 0 and 255), with a narrow bin around it.
  EXPECT_LT(km.levels_fx.front(), 256);
  EXPECT_GT(km.levels_fx.back(), 254 * 256);
  FitOptions drop = o;
  drop.boundary_weight = 0.0;
  for (const FitOptions& bo : {o, drop}) {
    SCOPED_TRACE(bo.boundary_weight ? "boundary weight 0" : "flatten");
    const auto bs = kernels::fit_set(h, CalibMethod::kBsKmq, bo);
    expect_valid(bs, bo, h);
    EXPECT_GT(central(bs), central(km));
    EXPECT_LT(interior_partition_mse(bs), interior_partition_mse(km));
    // Levels are conditional means of all samples per bin: the pile bins stay near the piles.
    EXPECT_LT(bs.levels_fx.front(), 256);
    EXPECT_GT(bs.levels_fx.back(), 254 * 256);
  }
  // Weight 1 = no suppression = plain k-means on the clamped data.
  FitOptions one = o;
  one.boundary_weight = 1.0;
  EXPECT_EQ(kernels::fit_set(h, CalibMethod::kBsKmq, one).thresholds_fx, km.thresholds_fx);
  // Centroid levels: the levels are the cluster centres of the suppressed data (no pile pull).
  FitOptions cent = o;
  cent.bskmq_levels = kernels::BsKmqLevels::kCentroid;
  const auto bc = kernels::fit_set(h, CalibMethod::kBsKmq, cent);
  EXPECT_EQ(bc.thresholds_fx, kernels::fit_set(h, CalibMethod::kBsKmq, o).thresholds_fx);
  EXPECT_GT(bc.levels_fx.front(), 5 * 256);
  expect_valid(bc, cent, h);
  // Pinned: the same thresholds, the bins holding 0 and 255 reconstruct exactly 0 and 255.
  FitOptions pin = o;
  pin.bskmq_levels = kernels::BsKmqLevels::kPinned;
  const auto bp = kernels::fit_set(h, CalibMethod::kBsKmq, pin);
  EXPECT_EQ(bp.thresholds_fx, kernels::fit_set(h, CalibMethod::kBsKmq, o).thresholds_fx);
  EXPECT_EQ(bp.levels_fx.front(), 0);
  EXPECT_EQ(bp.levels_fx.back(), 255 * 256);
  expect_valid(bp, pin, h);
  // Reserved (the default): single-value bins {0} and {255} (thresholds at 0.5 and 254.5), 6
  // clusters inside.
  const FitOptions res = opts(3);
  EXPECT_EQ(res.bskmq_levels, kernels::BsKmqLevels::kReserved);
  const auto br = kernels::fit_set(h, CalibMethod::kBsKmq, res);
  EXPECT_EQ(br.thresholds_fx.front(), 128);
  EXPECT_EQ(br.thresholds_fx.back(), 254 * 256 + 128);
  EXPECT_EQ(br.levels_fx.front(), 0);
  EXPECT_EQ(br.levels_fx.back(), 255 * 256);
  for (size_t j = 1; j + 1 < br.levels_fx.size(); ++j) {
    EXPECT_GT(br.levels_fx[j], 256);
    EXPECT_LT(br.levels_fx[j], 254 * 256);
  }
  expect_valid(br, res, h);
  EXPECT_EQ(kernels::parse_bskmq_levels("reserved"), kernels::BsKmqLevels::kReserved);
  EXPECT_FALSE(kernels::parse_bskmq_levels("median").has_value());
}

TEST(Calibration, FewDistinctValuesStillGiveStrictlyIncreasingThresholds) {
  for (uint32_t F : {0u, 8u}) {
    SCOPED_TRACE("F = " + std::to_string(F));
    // Three values: lossless for every method (each integer of the range gets a level).
    PsumHistogram h3;
    h3.add(5, 10);
    h3.add(6, 1);
    h3.add(7, 1000);
    // A pile plus a sparse tail wider than 2^B: equal-probability bins collapse onto the pile.
    PsumHistogram pile;
    pile.add(0, 100000);
    for (int v = 1; v <= 40; ++v) pile.add(v * 37, 1);
    for (uint32_t bits : {1u, 2u, 4u, 6u}) {
      const FitOptions o = opts(bits, F);
      for (CalibMethod m : kernels::all_calib_methods()) {
        SCOPED_TRACE(std::string(kernels::calib_method_name(m)) + " " + std::to_string(bits) + " bits");
        const auto f3 = kernels::fit_set(h3, m, o);
        expect_valid(f3, o, h3);
        if (!kernels::is_linear_method(m) && bits >= 2) {
          EXPECT_EQ(f3.mse, 0.0);
        }
        const auto fp = kernels::fit_set(pile, m, o);
        expect_valid(fp, o, pile);
      }
    }
  }
}

TEST(Calibration, LloydMaxStopsAtAFixedPoint) {
  // After convergence the partition is stable: re-deriving thresholds as midpoints of the
  // levels puts every integer in the same bin (up to the grid rounding of the levels).
  std::mt19937_64 rng(7);
  std::gamma_distribution<double> gamma(2.0, 20.0);
  PsumHistogram h;
  for (int i = 0; i < 20000; ++i) h.add(static_cast<int64_t>(gamma(rng)));
  const FitOptions o = opts(3);
  for (CalibMethod m : {CalibMethod::kLloydMax, CalibMethod::kKmeans}) {
    const auto f = kernels::fit_set(h, m, o);
    EXPECT_GT(f.iterations, 0u);
    EXPECT_LT(f.iterations, o.max_iterations);
    const AdcSpec s = spec_of(f, o);
    std::vector<int64_t> used;  // codes of non-empty bins
    for (int64_t v = h.min(); v <= h.max(); ++v)
      if (h.count(v)) used.push_back(kernels::adc_convert(s, 0, v).code);
    used.erase(std::unique(used.begin(), used.end()), used.end());
    for (int64_t v = h.min(); v <= h.max(); ++v) {
      if (!h.count(v)) continue;
      const int64_t code = kernels::adc_convert(s, 0, v).code;
      // Nearest used level (ties to the upper one): the same code unless v is within 1 LSB of a midpoint.
      int64_t best = used[0];
      for (int64_t c : used)
        if (std::abs(v * 256 - s.levels_fx[c]) <= std::abs(v * 256 - s.levels_fx[best])) best = c;
      if (best != code) {
        const double mid = static_cast<double>(s.levels_fx[code] + s.levels_fx[best]) / 2.0 / 256.0;
        EXPECT_LE(std::abs(static_cast<double>(v) - mid), 1.0) << "value " << v;
      }
    }
  }
  const auto lm = kernels::fit_set(h, CalibMethod::kLloydMax, o);
  const auto cdf = kernels::fit_set(h, CalibMethod::kCdf, o);
  const auto lin = kernels::fit_set(h, CalibMethod::kLinearMinMax, o);
  EXPECT_LT(lm.mse, cdf.mse);  // Lloyd-Max minimises the MSE; CDF equalises probability
  EXPECT_LT(lm.mse, lin.mse);
}

TEST(Calibration, EveryMethodAtEveryResolutionGivesAValidSpec) {
  std::mt19937_64 rng(1);
  std::geometric_distribution<int> geo(0.02);
  PsumHistogram h;
  h.add(0, 5000);
  for (int i = 0; i < 20000; ++i) h.add(geo(rng));
  for (uint32_t F : {0u, 8u})
    for (uint32_t bits = 1; bits <= 16; ++bits)
      for (CalibMethod m : kernels::all_calib_methods()) {
        SCOPED_TRACE(std::string(kernels::calib_method_name(m)) + " " + std::to_string(bits) + " bits, F " +
                     std::to_string(F));
        const FitOptions o = opts(bits, F);
        const auto f = kernels::fit_set(h, m, o);
        expect_valid(f, o, h);
        if (m == CalibMethod::kBsKmq)
          for (auto lv : {kernels::BsKmqLevels::kCentroid, kernels::BsKmqLevels::kPinned,
                          kernels::BsKmqLevels::kReserved}) {
            FitOptions ov = o;
            ov.bskmq_levels = lv;
            expect_valid(kernels::fit_set(h, m, ov), ov, h);
          }
        if (bits >= 10 && F == 8 && m != CalibMethod::kLinearPercentile) {  // (which clips 0.01 %)
          EXPECT_LT(f.mse, 0.1);  // (range ~ 500 LSB)
        }
      }
}

TEST(Calibration, LinearMseIsNeverWorseThanMinMaxOrPercentile) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 6; ++trial) {
    std::normal_distribution<double> nd(trial * 10.0, 5.0 + 10.0 * trial);
    PsumHistogram h;
    for (int i = 0; i < 5000; ++i) h.add(std::llround(nd(rng)));
    h.add(0, 1000 * trial);
    for (uint32_t bits : {2u, 3u, 5u})
      for (auto rounding : {AdcRounding::kHalfAway, AdcRounding::kFloor}) {
        FitOptions o = opts(bits);
        o.rounding = rounding;
        const auto mse = kernels::fit_set(h, CalibMethod::kLinearMse, o).mse;
        EXPECT_LE(mse, kernels::fit_set(h, CalibMethod::kLinearMinMax, o).mse);
        EXPECT_LE(mse, kernels::fit_set(h, CalibMethod::kLinearPercentile, o).mse);
      }
  }
}

TEST(Calibration, EmptyHistogramAndPooledFallback) {
  const FitOptions o = opts(2);
  const auto lin = kernels::fit_set(PsumHistogram{}, CalibMethod::kLinearMse, o);
  EXPECT_EQ(lin.step_fx, 256);
  EXPECT_EQ(lin.centre_fx, 0);
  const auto nl = kernels::fit_set(PsumHistogram{}, CalibMethod::kKmeans, o);
  EXPECT_EQ(nl.levels_fx, (std::vector<int64_t>{0, 256, 512, 768}));
  // A layer whose second set saw nothing takes the fit of all sets pooled (here: set 0's).
  std::vector<PsumHistogram> sets(2);
  for (int v = 0; v < 40; ++v) sets[0].add(v);
  const auto lf = kernels::fit_layer(sets, CalibMethod::kLinearMinMax, o, kernels::AdcGranularity::kColumn);
  ASSERT_EQ(lf.spec.step_fx.size(), 2u);
  EXPECT_EQ(lf.spec.step_fx[0], lf.spec.step_fx[1]);
  EXPECT_EQ(lf.spec.centre_fx[0], lf.spec.centre_fx[1]);
  EXPECT_EQ(lf.samples, 40u);
  EXPECT_DOUBLE_EQ(lf.mse, lf.set_mse[0]);
  EXPECT_DOUBLE_EQ(kernels::layer_mse(sets, lf.spec), lf.mse);
}

TEST(Calibration, BadOptionsAreRejected) {
  PsumHistogram h;
  h.add(1);
  FitOptions o = opts(0);
  EXPECT_THROW(kernels::fit_set(h, CalibMethod::kKmeans, o), std::invalid_argument);
  o = opts(17);
  EXPECT_THROW(kernels::fit_set(h, CalibMethod::kKmeans, o), std::invalid_argument);
  o = opts(4);
  o.percentile = 0.0;
  EXPECT_THROW(kernels::fit_set(h, CalibMethod::kLinearPercentile, o), std::invalid_argument);
  o.percentile = 100.5;
  EXPECT_THROW(kernels::fit_set(h, CalibMethod::kLinearPercentile, o), std::invalid_argument);
  o.percentile = 100.0;
  o.boundary_weight = -0.1;
  EXPECT_THROW(kernels::fit_set(h, CalibMethod::kBsKmq, o), std::invalid_argument);
}

// ---- linear re-derivation at another resolution --------------------------------------------------------

AdcSpec linear_spec(uint32_t bits, AdcRounding r, bool signed_codes, int64_t step, int64_t centre) {
  AdcSpec s;
  s.kind = AdcKind::kLinear;
  s.bits = bits;
  s.frac_bits = 8;
  s.rounding = r;
  s.signed_codes = signed_codes;
  s.step_fx = {step};
  s.centre_fx = {centre};
  return s;
}

TEST(RescaleLinearAdc, KeepsTheFullScaleRange) {
  // Unsigned, half away, 1-LSB step, 8 bits: codes 0..255 cover [-0.5, 255.5) LSB. At 4 bits the
  // step is 16 LSB = 4096 and code 0 sits at -0.5 + 8 = 7.5 LSB = 1920: [7.5 - 8, 7.5 + 15*16 + 8).
  auto s = kernels::rescale_linear_adc(linear_spec(8, AdcRounding::kHalfAway, false, 256, 0), 4);
  EXPECT_EQ(s.bits, 4u);
  EXPECT_EQ(s.step_fx, (std::vector<int64_t>{4096}));
  EXPECT_EQ(s.centre_fx, (std::vector<int64_t>{1920}));
  // ... and back: exact.
  auto back = kernels::rescale_linear_adc(s, 8);
  EXPECT_EQ(back.step_fx, (std::vector<int64_t>{256}));
  EXPECT_EQ(back.centre_fx, (std::vector<int64_t>{0}));
  // Floor: the range [centre, centre + 2^B step) keeps its lower edge: centre unchanged.
  s = kernels::rescale_linear_adc(linear_spec(6, AdcRounding::kFloor, false, 100, -300), 8);
  EXPECT_EQ(s.step_fx, (std::vector<int64_t>{25}));
  EXPECT_EQ(s.centre_fx, (std::vector<int64_t>{-300}));
  // Signed, half away, 6 bits, step 64, centre 1000: code -32 at 1000 - 2048 = -1048, lower edge
  // -1080. At 5 bits: step 128, code -16 at -1080 + 64 = -1016, centre -1016 + 16*128 = 1032.
  s = kernels::rescale_linear_adc(linear_spec(6, AdcRounding::kHalfAway, true, 64, 1000), 5);
  EXPECT_EQ(s.step_fx, (std::vector<int64_t>{128}));
  EXPECT_EQ(s.centre_fx, (std::vector<int64_t>{1032}));
  // Going up with an odd step rounds half away (3 / 2 = 1.5 -> 2), never below 1.
  s = kernels::rescale_linear_adc(linear_spec(4, AdcRounding::kFloor, false, 3, 0), 5);
  EXPECT_EQ(s.step_fx, (std::vector<int64_t>{2}));
  s = kernels::rescale_linear_adc(linear_spec(4, AdcRounding::kFloor, false, 1, 0), 8);
  EXPECT_EQ(s.step_fx, (std::vector<int64_t>{1}));
  // The covered range really is the same (half away, unsigned, a few resolutions).
  const AdcSpec base = linear_spec(6, AdcRounding::kHalfAway, false, 512, 256);
  for (uint32_t b : {3u, 6u, 7u}) {
    const AdcSpec r = kernels::rescale_linear_adc(base, b);
    const double lo = (static_cast<double>(r.centre_fx[0]) - static_cast<double>(r.step_fx[0]) / 2.0) / 256.0;
    const double width = std::ldexp(static_cast<double>(r.step_fx[0]), static_cast<int>(b)) / 256.0;
    EXPECT_DOUBLE_EQ(lo, (256 - 256) / 256.0);
    EXPECT_DOUBLE_EQ(width, 64 * 2.0);
  }
  // IDEAL unchanged; NONLINEAR refused; bits checked.
  AdcSpec ideal;
  EXPECT_EQ(kernels::rescale_linear_adc(ideal, 3).kind, AdcKind::kIdeal);
  AdcSpec nl;
  nl.kind = AdcKind::kNonlinear;
  nl.bits = 1;
  nl.thresholds_fx = {0};
  nl.levels_fx = {0, 1};
  EXPECT_THROW(kernels::rescale_linear_adc(nl, 2), std::invalid_argument);
  EXPECT_THROW(kernels::rescale_linear_adc(base, 0), std::invalid_argument);
  EXPECT_THROW(kernels::rescale_linear_adc(base, 17), std::invalid_argument);
}

TEST(WithAdcBits, RederivesEveryLinearLayerAndDropsGoldens) {
  const graph::Graph g = graph::load_graph(kDefaultGraph);
  const graph::Graph g4 = calibration::with_adc_bits(g, 4);
  EXPECT_TRUE(g4.golden.empty());
  EXPECT_EQ(g4.provenance.reference_images, 0u);
  ASSERT_EQ(g4.nodes.size(), g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto* a = std::get_if<graph::ImcLayer>(&g.nodes[i].op);
    if (!a) continue;
    const auto& b = std::get<graph::ImcLayer>(g4.nodes[i].op);
    EXPECT_EQ(b.adc.bits, 4u);
    EXPECT_EQ(b.adc.step_fx[0], a->adc.step_fx[0] * 16);
    EXPECT_EQ(b.weights, a->weights);
  }
  // 8 -> 4 -> 8 gives the steps back; and the result is a valid graph (the loader accepts it).
  const graph::Graph g8 = calibration::with_adc_bits(g4, 8);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (const auto* a = std::get_if<graph::ImcLayer>(&g.nodes[i].op)) {
      EXPECT_EQ(std::get<graph::ImcLayer>(g8.nodes[i].op).adc.step_fx, a->adc.step_fx);
      // The lower edge of an odd step is a half grid unit: the centre comes back within 1 unit.
      const auto c8 = std::get<graph::ImcLayer>(g8.nodes[i].op).adc.centre_fx[0];
      EXPECT_LE(std::abs(c8 - a->adc.centre_fx[0]), a->adc.step_fx[0] % 2);
    }
  EXPECT_NO_THROW(graph::parse_graph_text(graph::graph_to_text(g4), "g4.txt"));
  EXPECT_THROW(calibration::with_adc_bits(g, 0), std::invalid_argument);
  try {
    calibration::with_adc_bits(graph::load_graph(kNonlinearGraph), 5);
    ADD_FAILURE() << "a non-linear graph must be refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("node 'conv1'"), std::string::npos) << e.what();
  }
}

// ---- graph-level calibration ------------------------------------------------------------------------

std::vector<uint8_t> random_pixels(size_t images, size_t elems, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> px(images * elems);
  for (auto& p : px) p = static_cast<uint8_t>(rng() % 4 == 0 ? 0 : rng() & 0xff);
  return px;
}

TEST(CollectHistograms, EqualsPartialSumsComputedFromTheContract) {
  // tiny_fmnist: avg-pool -> flatten -> Linear(49 -> 10), 4-bit OFFSET weights in 2-bit cells, 1-bit
  // DAC, one 49-row tile. Partial sum of (group t, slice s, column n) = sum_k bit_t(x_k) d_s[k][n].
  const graph::Graph g = graph::load_graph(kTinyGraph);
  const size_t fc = 2;
  const auto& l = std::get<graph::ImcLayer>(g.nodes[fc].op);
  const size_t images = 5, elems = g.input.shape.elements();
  const auto px = random_pixels(images, elems, 11);
  const auto hists =
      calibration::collect_histograms(g, fc, kernels::AdcGranularity::kColumn, px, images, 2);
  ASSERT_EQ(hists.size(), 10u);
  std::vector<PsumHistogram> want(10);
  const engine::FunctionalEngine engine(g);
  const auto groups = kernels::input_groups(8, l.dac_bits, false);
  const auto slices = kernels::weight_slices(l.encoding, l.weight_bits, l.cell_bits);
  for (size_t i = 0; i < images; ++i) {
    std::vector<int32_t> codes(elems);
    engine::pixels_to_codes(g.input, std::span<const uint8_t>(px).subspan(i * elems, elems), codes);
    const auto x = engine.infer(codes).node_codes[1];
    for (const auto& t : groups)
      for (const auto& s : slices)
        for (uint32_t n = 0; n < 10; ++n) {
          int64_t p = 0;
          for (uint32_t k = 0; k < 49; ++k) {
            const int64_t u = (x[k] >> t.bit_lo) & ((1 << t.nbits) - 1);
            const int64_t d = ((l.weights[n * 49 + k] + 8) >> s.bit_lo) & ((1 << s.nbits) - 1);
            p += u * d;
          }
          want[n].add(p);
        }
  }
  for (size_t n = 0; n < 10; ++n) EXPECT_EQ(hists[n].bins(), want[n].bins()) << "column " << n;
  // Layer granularity: the same partial sums, pooled.
  const auto pooled = calibration::collect_histograms(g, fc, kernels::AdcGranularity::kLayer, px, images, 1);
  PsumHistogram all;
  for (const auto& h : want) all.merge(h);
  ASSERT_EQ(pooled.size(), 1u);
  EXPECT_EQ(pooled[0].bins(), all.bins());
}

TEST(Calibrate, LayerByLayerWithRecalibratedUpstreamAndEngineGoldens) {
  const graph::Graph g = graph::load_graph(kDefaultGraph);
  const size_t images = 6, elems = g.input.shape.elements();
  const auto px = random_pixels(images, elems, 5);
  calibration::Options o;
  o.methods = {CalibMethod::kKmeans};
  o.bits = 2;
  o.threads = 2;
  const auto r = calibration::calibrate(g, px, images, o);
  ASSERT_EQ(r.layers.size(), 4u);
  // Each layer holds exactly the fit of the partial sums it sees with the calibrated layers
  // before it; that differs from what it would see behind the original 8-bit ADCs.
  for (const auto& lr : r.layers) {
    SCOPED_TRACE(lr.node);
    const auto& adc = std::get<graph::ImcLayer>(r.graph.nodes[lr.node_index].op).adc;
    EXPECT_EQ(adc.kind, AdcKind::kNonlinear);
    EXPECT_EQ(adc.bits, 2u);
    const auto h = calibration::collect_histograms(r.graph, lr.node_index, adc.granularity, px, images, 1);
    FitOptions fo = opts(2);
    const auto fit = kernels::fit_layer(h, CalibMethod::kKmeans, fo, adc.granularity);
    EXPECT_EQ(fit.spec.thresholds_fx, adc.thresholds_fx);
    EXPECT_EQ(fit.spec.levels_fx, adc.levels_fx);
    EXPECT_DOUBLE_EQ(fit.mse, lr.methods[0].mse);
    ASSERT_TRUE(lr.previous_mse.has_value());
  }
  const auto& fc1 = r.layers[2];
  const auto h_orig = calibration::collect_histograms(g, fc1.node_index, kernels::AdcGranularity::kLayer, px, images, 1);
  const auto h_new =
      calibration::collect_histograms(r.graph, fc1.node_index, kernels::AdcGranularity::kLayer, px, images, 1);
  EXPECT_NE(h_orig[0].bins(), h_new[0].bins()) << "upstream calibration must change fc1's inputs";

  // Golden pairs: regenerated by the engine for the new ADCs, same images.
  ASSERT_EQ(r.graph.golden.size(), g.golden.size());
  const engine::FunctionalEngine engine(r.graph);
  for (size_t gi = 0; gi < g.golden.size(); ++gi) {
    EXPECT_EQ(r.graph.golden[gi].input_codes, g.golden[gi].input_codes);
    EXPECT_EQ(r.graph.golden[gi].dataset_index, g.golden[gi].dataset_index);
    std::vector<engine::NodeTrace> traces;
    const auto res = engine.infer(r.graph.golden[gi].input_codes, nullptr, &traces);
    EXPECT_EQ(res.output_values, r.graph.golden[gi].logits);
    EXPECT_EQ(res.predicted_class, r.graph.golden[gi].predicted_class);
    EXPECT_EQ(traces[0].adc_code.value(), r.graph.golden[gi].nodes[0].adc_code_digest);
  }
}

TEST(Calibrate, AllMethodsWritesTheLowestMsePerLayerUnlessTold) {
  const graph::Graph g = graph::load_graph(kTinyGraph);
  const size_t images = 4, elems = g.input.shape.elements();
  const auto px = random_pixels(images, elems, 9);
  calibration::Options o;
  o.methods = kernels::all_calib_methods();
  o.bits = 3;
  o.granularity = kernels::AdcGranularity::kColumn;
  auto r = calibration::calibrate(g, px, images, o);
  ASSERT_EQ(r.layers.size(), 1u);
  const auto& lr = r.layers[0];
  ASSERT_EQ(lr.methods.size(), 7u);
  double best = lr.methods[0].mse;
  for (const auto& m : lr.methods) best = std::min(best, m.mse);
  for (const auto& m : lr.methods)
    if (m.method == lr.written) {
      EXPECT_EQ(m.mse, best);
    }
  ASSERT_TRUE(lr.previous_mse.has_value());
  EXPECT_EQ(*lr.previous_mse, 0.0) << "the tiny graph's ADC is IDEAL";
  EXPECT_EQ(lr.frac_bits, 0u) << "F kept from the IDEAL ADC";
  const auto& adc = std::get<graph::ImcLayer>(r.graph.nodes[2].op).adc;
  EXPECT_EQ(adc.granularity, kernels::AdcGranularity::kColumn);
  EXPECT_EQ(adc.bits, 3u);
  o.write_method = CalibMethod::kCdf;
  r = calibration::calibrate(g, px, images, o);
  EXPECT_EQ(r.layers[0].written, CalibMethod::kCdf);
  // Provenance: calibration recorded, the reference accuracy cleared.
  calibration::record_provenance(r.graph, r, o, "imcsim calibrate test", "test pixels");
  EXPECT_EQ(r.graph.provenance.reference_images, 0u);
  EXPECT_EQ(r.graph.provenance.command, "imcsim calibrate test");
  const auto settings = nlohmann::json::parse(r.graph.provenance.method_settings_json);
  EXPECT_EQ(settings["adc_calibration"]["method"], "cdf");
  EXPECT_EQ(settings["adc_calibration"]["bits"], 3);
  EXPECT_EQ(settings["adc_calibration"]["images"], 4);
  // Bad options name the option.
  o.bits = 0;
  try {
    calibration::calibrate(g, px, images, o);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--bits"), std::string::npos);
  }
}

TEST(RegenerateGoldens, ReproducesThePythonReferenceGoldensOfEveryBundledGraph) {
  for (const auto& e : fs::directory_iterator(kSourceDir / "workloads" / "fmnist_cnn")) {
    if (e.path().extension() != ".imcg") continue;
    SCOPED_TRACE(e.path().string());
    const graph::Graph g = graph::load_graph(e.path());
    graph::Graph r = g;
    calibration::regenerate_goldens(r);
    ASSERT_EQ(r.golden.size(), g.golden.size());
    for (size_t i = 0; i < g.golden.size(); ++i) {
      const auto &a = r.golden[i], &b = g.golden[i];
      EXPECT_EQ(a.logits, b.logits);
      EXPECT_EQ(a.predicted_class, b.predicted_class);
      ASSERT_EQ(a.nodes.size(), b.nodes.size());
      for (size_t n = 0; n < a.nodes.size(); ++n) {
        EXPECT_EQ(a.nodes[n].node, b.nodes[n].node);
        EXPECT_EQ(a.nodes[n].output_codes, b.nodes[n].output_codes);
        EXPECT_EQ(a.nodes[n].psum_count, b.nodes[n].psum_count);
        EXPECT_EQ(a.nodes[n].psum_digest, b.nodes[n].psum_digest);
        EXPECT_EQ(a.nodes[n].adc_code_digest, b.nodes[n].adc_code_digest);
        EXPECT_EQ(a.nodes[n].acc_digest, b.nodes[n].acc_digest);
        EXPECT_EQ(a.nodes[n].psums_position0, b.nodes[n].psums_position0);
        EXPECT_EQ(a.nodes[n].adc_codes_position0, b.nodes[n].adc_codes_position0);
        EXPECT_EQ(a.nodes[n].acc_position0, b.nodes[n].acc_position0);
      }
    }
  }
}

// ---- command line ------------------------------------------------------------------------------------

using RunResult = testing_support::CliResult;
using testing_support::slurp_file;

class CalibrateCli : public testing_support::TempDirTest {
 protected:
  RunResult run(std::vector<std::string> args) { return testing_support::run_imcsim(std::move(args), dir); }
  std::vector<std::string> base(const std::string& method, const std::string& bits) {
    return {"calibrate", "--graph", kTinyGraph.string(), "--arch", (kSourceDir / "arch_configs/default.json").string(),
            "--method", method, "--bits", bits, "--images", "3", "--out", (dir / "new.imcg").string(), "--quiet"};
  }
  void expect_error(std::vector<std::string> args, const std::string& part) {
    SCOPED_TRACE(part);
    const RunResult r = run(std::move(args));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("imcsim: error: " + part, 0), 0u) << r.err;
    EXPECT_FALSE(fs::exists(dir / "new.imcg"));
  }
};

TEST_F(CalibrateCli, BadOptionsGiveOneLineErrorsNamingTheOption) {
  expect_error(base("kmeans++", "4"), "--method: unknown method 'kmeans++'");
  expect_error(base("kmeans", "0"), "--bits: must be in [1, 16], got 0");
  expect_error(base("kmeans", "17"), "--bits: must be in [1, 16], got 17");
  auto a = base("linear-percentile", "4");
  a.insert(a.end(), {"--percentile", "0"});
  expect_error(a, "--percentile: must be in (0, 100], got 0");
  a = base("linear-percentile", "4");
  a.insert(a.end(), {"--percentile", "100.5"});
  expect_error(a, "--percentile: must be in (0, 100], got 100.5");
  a = base("bs-kmq", "4");
  a.insert(a.end(), {"--granularity", "row"});
  expect_error(a, "--granularity: unknown granularity 'row'");
  a = base("all", "4");
  a.insert(a.end(), {"--write-method", "best"});
  expect_error(a, "--write-method: unknown method 'best'");
  // A bad command line (unknown option) is exit code 2.
  a = base("kmeans", "4");
  a.push_back("--no-such-option");
  EXPECT_EQ(run(a).exit_code, 2);
}

TEST_F(CalibrateCli, TinyGraphCalibratesToAValidGraphAndReport) {
  if (!fs::exists(fs::path(kFashionMnist) / "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed";
  auto a = base("all", "3");
  a.insert(a.end(), {"--report", (dir / "r.json").string(), "--granularity", "column"});
  const RunResult r = run(a);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const graph::Graph g = graph::load_graph(dir / "new.imcg");
  const auto& adc = std::get<graph::ImcLayer>(g.nodes[2].op).adc;
  EXPECT_EQ(adc.bits, 3u);
  EXPECT_EQ(adc.granularity, kernels::AdcGranularity::kColumn);
  EXPECT_EQ(g.provenance.reference_images, 0u);
  EXPECT_NE(g.provenance.command.find("imcsim calibrate"), std::string::npos);
  const auto rep = nlohmann::json::parse(slurp_file(dir / "r.json"));
  EXPECT_EQ(rep["images"], 3);
  ASSERT_EQ(rep["layers"].size(), 1u);
  EXPECT_EQ(rep["layers"][0]["mse_lsb2"].size(), 7u);
  EXPECT_EQ(rep["layers"][0]["sets"], 10);
}

}  // namespace
}  // namespace imcsim
