// Analog non-idealities (models/crossbar/nonideal.h, docs/SEMANTICS.md step 5), with values
// derived by hand from the documented formulas:
//  * the counter-based RNG (splitmix64 outputs, key hashing), the Irwin-Hall Gaussian and the
//    uniform transform; rint ties to even;
//  * the transfer curve and the ADC of an analog value (hand cases; equal to the integer ADC on
//    integer inputs; the table-driven fast conversion equal to the direct one);
//  * each non-ideality on a one-row layer through the engine; stuck-at rates over a large array
//    within a binomial bound;
//  * determinism: same seed -> same results, independent of threads; different seed -> different;
//  * the "nonidealities" config section: defaults, round trip, every bad input naming its path;
//  * Monte-Carlo statistics (Student t quantiles) and `imcsim run --seed/--mc` end to end.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/adc/adc.h"
#include "models/crossbar/nonideal.h"
#include "sim/config/arch_config.h"
#include "sim/data/idx_dataset.h"
#include "sim/engine/functional_engine.h"
#include "sim/engine/monte_carlo.h"
#include "sim/graph/graph_loader.h"
#include "tests/unit/graph_text.h"

namespace imcsim {
namespace {

using namespace imcsim::kernels;
using namespace imcsim::testing_graphs;
using nlohmann::json;

// ---- RNG -------------------------------------------------------------------------------------

TEST(NonidealRng, Splitmix64KnownOutputs) {
  // The reference splitmix64 generator seeded with 0 (Vigna's splitmix64.c) starts with:
  EXPECT_EQ(splitmix64_output(0, 0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64_output(0, 1), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(splitmix64_output(0, 2), 0x06C45D188009454Full);
  // Counter-based: output i does not depend on outputs before it.
  EXPECT_EQ(splitmix64_output(12345, 1000), splitmix64_mix(12345 + 1001 * kGamma));
}

TEST(NonidealRng, KeyHashing) {
  // H(v) = output 0 of the generator seeded with 0 ^ v; H(1, 2, 3) chains three steps.
  EXPECT_EQ(rng_key({0}), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng_key({1, 2, 3}), rng_extend(rng_extend(rng_extend(0, 1), 2), 3));
  EXPECT_EQ(rng_key({1, 2, 3}), 0xD0734750FDE362B3ull);  // computed with a plain Python splitmix64
  EXPECT_NE(rng_key({1, 2, 3}), rng_key({1, 3, 2}));
}

TEST(NonidealRng, IrwinHallGaussianByHand) {
  // hash32 (xorshift-multiply, constants 0x21F0AAAD / 0x735A2D97, shifts 16, 15, 15) and the
  // keyed stream out32(h, i) = hash32((lo32(h) + i * 0x9E3779B9) ^ hi32(h)); values computed with
  // plain Python integers.
  EXPECT_EQ(hash32(1), 0x86D2FA73u);
  EXPECT_EQ(hash32(0x12345678), 0x16E776BDu);
  const uint64_t key = rng_key({0});  // 0xE220A8397B1DCDAF
  EXPECT_EQ(gauss32_output(key, 0), 0x43A23B46u);
  EXPECT_EQ(gauss32_output(key, 1), 0x3542F1AAu);
  EXPECT_EQ(gauss32_output(key, 5), 0x7FCE73D1u);
  // Element 0: the twelve 5-bit fields (bits 0-4, ..., 25-29) of outputs 0 and 1.
  auto fields = [](uint32_t o) {
    uint32_t s = 0;
    for (int i = 0; i < 6; ++i) s += (o >> (5 * i)) & 0x1F;
    return s;
  };
  EXPECT_EQ(irwin_hall_fields(0x43A23B46u), fields(0x43A23B46u));
  EXPECT_EQ(fields(0x43A23B46u) + fields(0x3542F1AAu), 179u);
  EXPECT_EQ(irwin_hall_sum(key, 0), 179u);
  EXPECT_EQ(gaussian_sample(key, 0), (179.0 - 186.0) / 32.0);  // -0.21875
  EXPECT_EQ(gaussian_sample(key, 1), 1.78125);
  EXPECT_EQ(gaussian_sample(key, 2), 2.65625);
  // Uniform: (splitmix64 output >> 11) * 2^-53.
  EXPECT_EQ(uniform_sample(0, 0), static_cast<double>(0xE220A8397B1DCDAFull >> 11) * 0x1p-53);
}

TEST(NonidealRng, GaussianMoments) {
  // Irwin-Hall of twelve 5-bit uniforms: mean 0, variance 1 - 2^-10, support [-5.8125, 5.8125],
  // E z^4 = 3 var^2 + kappa_4, kappa_4 ~ -12 / 120: ~ 2.894.
  const uint64_t key = rng_key({42});
  const int n = 400000;
  double sum = 0, sum2 = 0, sum4 = 0, lo = 0, hi = 0, lag1 = 0, prev = 0;
  for (int i = 0; i < n; ++i) {
    const double z = gaussian_sample(key, i);
    sum += z, sum2 += z * z, sum4 += z * z * z * z, lag1 += z * prev, prev = z;
    lo = std::min(lo, z), hi = std::max(hi, z);
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(var, 1.0 - 0x1p-10, 0.01);
  EXPECT_NEAR(sum4 / n, 2.894, 0.05);
  EXPECT_NEAR(lag1 / n, 0.0, 5.0 / std::sqrt(n));  // consecutive elements uncorrelated
  EXPECT_GE(lo, -5.8125);
  EXPECT_LE(hi, 5.8125);
}

TEST(NonidealRng, NoCorrelationAtTheKernelsStrides) {
  // Conversions of one position at the strides of the canonical [G][S][T][N] order (next column,
  // next group t at N = 64 / 512 columns, next slice) draw uncorrelated noise.
  const uint64_t key = rng_key({11, kStreamAdcNoise, 4, 2, 77});
  const int n = 300000;
  std::vector<double> z(n + 4096 * 8);
  for (size_t i = 0; i < z.size(); ++i) z[i] = gaussian_sample(key, i);
  for (const int lag : {1, 2, 64, 512, 4096, 8 * 512}) {
    double c = 0;
    for (int i = 0; i < n; ++i) c += z[i] * z[i + lag];
    EXPECT_NEAR(c / n, 0.0, 5.0 / std::sqrt(n)) << "lag " << lag;
  }
}

TEST(NonidealRng, NeighbouringStreamsUncorrelated) {
  // Streams of neighbouring keys (positions pos and pos + 1 of an image) share no structure: the
  // correlation of their elements and of shifted elements is within noise.
  const uint64_t image = rng_key({7, kStreamAdcNoise, 3, 11});
  const int n = 200000;
  for (uint64_t pos : {0ull, 1ull, 1000ull}) {
    const uint64_t a = rng_extend(image, pos), b = rng_extend(image, pos + 1);
    double same = 0, shifted = 0;
    for (int i = 0; i + 1 < n; ++i) {
      same += gaussian_sample(a, i) * gaussian_sample(b, i);
      shifted += gaussian_sample(a, i + 1) * gaussian_sample(b, i);
    }
    EXPECT_NEAR(same / n, 0.0, 5.0 / std::sqrt(n)) << pos;
    EXPECT_NEAR(shifted / n, 0.0, 5.0 / std::sqrt(n)) << pos;
  }
}

TEST(NonidealRng, RintTiesToEven) {
  EXPECT_EQ(rint_to_int(2.5), 2);
  EXPECT_EQ(rint_to_int(3.5), 4);
  EXPECT_EQ(rint_to_int(-2.5), -2);
  EXPECT_EQ(rint_to_int(-3.5), -4);
  EXPECT_EQ(rint_to_int(0.49999999999999994), 0);
  EXPECT_EQ(rint_to_int(-1e12 - 0.5), -1000000000000);
  EXPECT_EQ(noise_fx(0.5, -0.19140625), -6272);  // rint(-0.095703125 * 65536) = -6272
  EXPECT_EQ(noise_fx(0.37, -0.21875), -5304);     // rint(-0.0809375 * 65536) = rint(-5304.32)
}

// ---- transfer curve and analog ADC -----------------------------------------------------------

TEST(NonidealTransfer, PiecewiseLinearByHand) {
  const TransferCurve c({{0, 0}, {2, 1}, {4, 4}});
  EXPECT_EQ(c.apply(1 * 65536), 32768);        // 0 + 1 * 0.5
  EXPECT_EQ(c.apply(3 * 65536), 163840);       // 1 + (3 - 2) * 1.5 = 2.5
  EXPECT_EQ(c.apply(2 * 65536), 65536);        // on a point: the segment starting there
  EXPECT_EQ(c.apply(6 * 65536), 7 * 65536);    // extrapolated: 4 + 2 * 1.5
  EXPECT_EQ(c.apply(-2 * 65536), -65536);      // extrapolated: 0 - 2 * 0.5
  EXPECT_EQ(c.apply(1), 0);                    // 2^-16 * 0.5 * 2^16 = 0.5 -> rint 0 (even)
  EXPECT_EQ(c.apply(3), 2);                    // 1.5 -> 2
  const TransferCurve steep({{0, 0}, {1, 1e9}});
  EXPECT_EQ(steep.apply(int64_t{1} << 40), kAnalogLimitFx);  // saturates at 2^46
}

TEST(NonidealTransfer, RowEqualsScalar) {
  // Short curves (counted segment) and long ones (binary search); points off the 2^-16 grid.
  std::mt19937_64 rng(2);
  for (size_t m : {2, 3, 7, 18, 19, 40}) {
    std::vector<TransferPoint> pts;
    double x = -50.123456789;
    for (size_t i = 0; i < m; ++i) {
      pts.push_back({x, std::uniform_real_distribution<double>(-80, 80)(rng)});
      x += std::uniform_real_distribution<double>(1e-6, 7.0)(rng);
    }
    const TransferCurve c(pts);
    std::vector<int64_t> a;
    for (const auto& p : pts)
      for (int64_t d : {-1, 0, 1}) a.push_back(static_cast<int64_t>(std::floor(p.x * 65536)) + d);
    for (int i = 0; i < 2000; ++i) a.push_back(static_cast<int64_t>(rng() % (300 * 65536)) - 150 * 65536);
    std::vector<int64_t> row = a;
    c.apply_row(row.data(), row.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(row[i], c.apply(a[i])) << "m " << m << " x_fx " << a[i];
  }
}

AdcSpec linear_spec(uint32_t bits, uint32_t frac, AdcRounding r, bool is_signed, int64_t step, int64_t centre) {
  AdcSpec s;
  s.kind = AdcKind::kLinear, s.bits = bits, s.frac_bits = frac, s.rounding = r, s.signed_codes = is_signed;
  s.step_fx = {step}, s.centre_fx = {centre};
  return s;
}

TEST(NonidealAdc, AnalogValuesByHand) {
  constexpr int64_t one = 65536;
  // FLOOR, F = 0, step 2, centre 0, 3 bits: a = 3.5 -> floor(1.75) = 1 (value 2).
  const AdcSpec fl = linear_spec(3, 0, AdcRounding::kFloor, false, 2, 0);
  EXPECT_EQ(adc_convert_analog(fl, 0, 7 * one / 2).code, 1);
  EXPECT_EQ(adc_convert_analog(fl, 0, 7 * one / 2).value_fx, 2);
  // a = 3.99998 -> 1; a = 4 -> 2; a = -0.25 -> floor(-0.125) = -1: clipped to 0, saturated.
  EXPECT_EQ(adc_convert_analog(fl, 0, 4 * one - 1).code, 1);
  EXPECT_EQ(adc_convert_analog(fl, 0, 4 * one).code, 2);
  const auto neg = adc_convert_analog(fl, 0, -one / 4);
  EXPECT_EQ(neg.code, 0);
  EXPECT_TRUE(neg.saturated);
  // HALF_AWAY signed, F = 0, step 2: x = a / 2; a = 1 -> 0.5 -> 1; a = -1 -> -1; a = -0.99 -> 0;
  // a = 2.99 -> 1.495 -> 1; a = 3 -> 1.5 -> 2.
  const AdcSpec ha = linear_spec(3, 0, AdcRounding::kHalfAway, true, 2, 0);
  EXPECT_EQ(adc_convert_analog(ha, 0, one).code, 1);
  EXPECT_EQ(adc_convert_analog(ha, 0, -one).code, -1);
  EXPECT_EQ(adc_convert_analog(ha, 0, -one + 656).code, 0);
  EXPECT_EQ(adc_convert_analog(ha, 0, 3 * one - 656).code, 1);
  EXPECT_EQ(adc_convert_analog(ha, 0, 3 * one).code, 2);
  EXPECT_EQ(adc_convert_analog(ha, 0, -3 * one).code, -2);
  EXPECT_EQ(adc_convert_analog(ha, 0, -3 * one + 1).code, -1);
  // Sub-LSB steps: F = 2, step 1 (a quarter LSB), FLOOR, centre 0: a = 0.3 -> floor(1.2) = 1.
  const AdcSpec q = linear_spec(4, 2, AdcRounding::kFloor, false, 1, 0);
  EXPECT_EQ(adc_convert_analog(q, 0, static_cast<int64_t>(0.3 * one)).code, 1);
  EXPECT_EQ(adc_convert_analog(q, 0, static_cast<int64_t>(0.3 * one)).value_fx, 1);
  // F >= 16: a * 2^F is an integer, the integer formulas apply directly.
  const AdcSpec w = linear_spec(4, 18, AdcRounding::kFloor, false, 3, 0);
  EXPECT_EQ(adc_convert_analog(w, 0, 5).code, 6);  // floor(5 * 4 / 3)
  // IDEAL, F = 1: code = floor(a + 1/2), value = floor(2a + 1/2): a = 1.25 -> 1, 3 (2.5 + .5).
  AdcSpec id;
  id.frac_bits = 1;
  EXPECT_EQ(adc_convert_analog(id, 0, one + one / 4).code, 1);
  EXPECT_EQ(adc_convert_analog(id, 0, one + one / 4).value_fx, 3);
  EXPECT_EQ(adc_convert_analog(id, 0, -one / 2).code, 0);  // floor(0) = 0
  // NONLINEAR, 2 bits, F = 2, thresholds (1, 4, 9) in quarter LSB, levels (0, 10, 20, 30):
  // a = 0.3 -> v = floor(1.2) = 1 >= 1 -> code 1; a = 2.2 -> v = 8 -> code 2; a = 2.25 -> 9 -> 3.
  AdcSpec nl;
  nl.kind = AdcKind::kNonlinear, nl.bits = 2, nl.frac_bits = 2;
  nl.thresholds_fx = {1, 4, 9}, nl.levels_fx = {0, 10, 20, 30};
  EXPECT_EQ(adc_convert_analog(nl, 0, static_cast<int64_t>(0.3 * one)).code, 1);
  EXPECT_EQ(adc_convert_analog(nl, 0, static_cast<int64_t>(2.2 * one)).code, 2);
  EXPECT_EQ(adc_convert_analog(nl, 0, 2 * one + one / 4).value_fx, 30);
}

// Random ADC specs of every kind / rounding / sign / granularity-like set count.
std::vector<AdcSpec> random_specs(std::mt19937_64& rng) {
  std::vector<AdcSpec> specs;
  for (int i = 0; i < 60; ++i) {
    AdcSpec s;
    s.kind = static_cast<AdcKind>(i % 3);
    s.bits = 1 + static_cast<uint32_t>(rng() % 6);
    s.frac_bits = std::array<uint32_t, 6>{0, 3, 8, 15, 16, 20}[rng() % 6];
    s.rounding = rng() % 2 ? AdcRounding::kFloor : AdcRounding::kHalfAway;
    s.signed_codes = rng() % 2;
    const int sets = 1 + static_cast<int>(rng() % 3);
    const int64_t one = int64_t{1} << s.frac_bits;
    for (int k = 0; k < sets; ++k) {
      s.step_fx.push_back(1 + static_cast<int64_t>(rng() % (4 * one)));
      s.centre_fx.push_back(static_cast<int64_t>(rng() % (40 * one)) - 20 * one);
      int64_t t = -30 * one + static_cast<int64_t>(rng() % (5 * one));
      for (uint32_t j = 0; j + 1 < s.levels(); ++j) {
        s.thresholds_fx.push_back(t);
        t += 1 + static_cast<int64_t>(rng() % (6 * one));
      }
      for (uint32_t j = 0; j < s.levels(); ++j) s.levels_fx.push_back(static_cast<int64_t>(rng() % 1000) - 500);
    }
    if (s.kind != AdcKind::kLinear) {
      s.step_fx.clear();
      s.centre_fx.clear();
    }
    if (s.kind != AdcKind::kNonlinear) {
      s.thresholds_fx.clear();
      s.levels_fx.clear();
    }
    if (s.kind == AdcKind::kNonlinear) s.granularity = AdcGranularity::kColumn;
    specs.push_back(s);
  }
  return specs;
}

TEST(NonidealAdc, AnalogEqualsIntegerAdcOnIntegers) {
  std::mt19937_64 rng(5);
  for (const auto& s : random_specs(rng)) {
    const uint64_t sets = s.kind == AdcKind::kLinear ? s.step_fx.size()
                          : s.kind == AdcKind::kNonlinear ? s.levels_fx.size() / s.levels() : 1;
    for (uint64_t set = 0; set < sets; ++set)
      for (int64_t p = -70; p <= 70; ++p) {
        const auto a = adc_convert_analog(s, set, p * 65536);
        const auto b = adc_convert(s, set, p);
        ASSERT_EQ(a.code, b.code) << p;
        ASSERT_EQ(a.value_fx, b.value_fx) << p;
        if (s.kind == AdcKind::kLinear) {
          ASSERT_EQ(a.saturated, linear_saturates(s, set, p));
        }
      }
  }
}

TEST(NonidealAdc, FastConversionEqualsDirect) {
  std::mt19937_64 rng(9);
  for (const auto& s : random_specs(rng)) {
    const AnalogAdc fast(s);
    const uint64_t sets = s.kind == AdcKind::kLinear ? s.step_fx.size()
                          : s.kind == AdcKind::kNonlinear ? s.levels_fx.size() / s.levels() : 1;
    std::vector<int64_t> a(4000), v(a.size());
    for (size_t i = 0; i < a.size(); ++i)
      a[i] = i < 8 ? std::array<int64_t, 8>{kAnalogLimitFx, -kAnalogLimitFx, 0, 1, -1, 65535, 65536, -65537}[i]
                   : static_cast<int64_t>(rng() % (100 * 65536)) - 50 * 65536;
    for (uint64_t set = 0; set < sets; ++set) {
      const uint64_t sat = fast.convert_row(a.data(), a.size(), set, 0, v.data());
      uint64_t want_sat = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        const auto r = adc_convert_analog(s, set, a[i]);
        ASSERT_EQ(v[i], r.value_fx) << "input " << a[i] << " set " << set;
        ASSERT_EQ(fast.convert(set, a[i]).code, r.code);
        want_sat += r.saturated;
      }
      EXPECT_EQ(sat, want_sat);
    }
  }
}

// ---- one-row layers through the engine -------------------------------------------------------

// Input [1,1,1] (Bx = 1, scale 1, zero point 0) -> flatten -> Linear 1 -> 1, Bw = 2 OFFSET on one
// 2-bit cell (D = W + 2), Bdac = 1, IDEAL ADC with F frac bits, float output, scale 1.
// x = 1: p = D; acc_fx = value_fx - 2^F * 2 (offset correction); y = acc_fx * 2^-F.
graph::Graph one_row(int32_t w, uint32_t frac_bits = 0) {
  ImcT l;
  l.conv = false;
  l.in_channels = 1, l.out_channels = 1, l.weight_bits = 2, l.cell_bits = 2, l.dac_bits = 1;
  l.weights = {w};
  l.adc.frac_bits = frac_bits;
  GraphT g;
  g.input_shape = {1, 1, 1};
  g.input_quant = QuantT{1, 0, 1};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {1}, g.input_quant, true, "flatten {}"});
  g.nodes.push_back(NodeT{"fc", {"f"}, "y", {1}, QuantT{1, 0, 0}, true, l.str()});
  g.num_classes = 1;
  return graph::parse_graph_text(g.str(), "one_row.imcg.txt");
}

struct OneRow {
  double y;
  int64_t psum, code;
};
OneRow run_one_row(const engine::FunctionalEngine& e, uint64_t image = 0) {
  std::vector<engine::NodeTrace> traces;
  const auto r = e.infer(std::vector<int32_t>{1}, nullptr, &traces, nullptr, image);
  return {r.output_values[0], traces[1].psums_position0.at(0), traces[1].adc_codes_position0.at(0)};
}

TEST(NonidealOneRow, IdealWhenOff) {
  const auto g = one_row(1);  // D = 3, p = 3, acc = 3 - 2 = 1
  const engine::FunctionalEngine e(g, NonidealSpec{}, 99);
  EXPECT_EQ(e.nonideal_crossbar(1), nullptr);
  const auto r = run_one_row(e);
  EXPECT_EQ(r.y, 1.0);
  EXPECT_EQ(r.psum, 3);  // integer partial sum: the ideal trace
}

TEST(NonidealOneRow, AdcNoise) {
  const auto g = one_row(1);
  NonidealSpec ni;
  ni.adc_noise_sigma_lsb = 0.8;
  const engine::FunctionalEngine e(g, ni, 5);
  for (uint64_t image : {0, 1, 7}) {
    // Noise of conversion 0 of position 0 of node 1 for this image: z = gaussian of H(5, 1, 1, image, 0)[0].
    const double z = gaussian_sample(rng_key({5, kStreamAdcNoise, 1, image, 0}), 0);
    const int64_t a = 3 * 65536 + static_cast<int64_t>(std::nearbyint((0.8 * z) * 65536));
    const auto r = run_one_row(e, image);
    EXPECT_EQ(r.psum, a);                                    // the ADC input, 2^-16 LSB
    const int64_t value = (a + 32768) >> 16;                 // IDEAL, F = 0: floor(a + 1/2)
    EXPECT_EQ(r.code, value);
    EXPECT_EQ(r.y, static_cast<double>(value - 2));
  }
  // Same seed and image: same; another image: another draw.
  EXPECT_EQ(run_one_row(e, 1).psum, run_one_row(e, 1).psum);
  EXPECT_NE(run_one_row(e, 1).psum, run_one_row(e, 2).psum);
}

TEST(NonidealOneRow, ConductanceVariation) {
  const auto g = one_row(1, 8);  // F = 8
  NonidealSpec ni;
  ni.conductance_variation_sigma = 0.1;
  const engine::FunctionalEngine e(g, ni, 3);
  // Cell (k 0, slice 0, column 0): 3 * max(0, 1 + 0.1 z) * 2^16, z = gaussian of H(3, 3, 1, 0, 0, 0)[0].
  const double z = gaussian_sample(rng_key({3, kStreamVariation, 1, 0, 0, 0}), 0);
  const int64_t cell = static_cast<int64_t>(std::nearbyint((3.0 * std::max(0.0, 1.0 + 0.1 * z)) * 65536.0));
  ASSERT_NE(e.nonideal_crossbar(1), nullptr);
  EXPECT_FALSE(e.nonideal_crossbar(1)->integer_cells());
  EXPECT_EQ(e.nonideal_crossbar(1)->cell(0, 0, 0), cell);
  const auto r = run_one_row(e, 0);
  EXPECT_EQ(r.psum, cell);
  const int64_t value = (cell + 128) >> 8;  // floor(a * 2^8 + 1/2) with a = cell * 2^-16
  EXPECT_EQ(r.y, static_cast<double>(value - 512) / 256.0);
  // Programmed once: every image sees the same cell.
  EXPECT_EQ(run_one_row(e, 12345).psum, cell);
}

TEST(NonidealOneRow, TransferCurve) {
  const auto g = one_row(1, 1);  // F = 1; p = 3
  NonidealSpec ni;
  ni.transfer_curve = {{0, 0}, {2, 1}, {4, 4}};  // 3 -> 2.5
  const engine::FunctionalEngine e(g, ni, 0);
  const auto r = run_one_row(e);
  EXPECT_EQ(r.psum, 163840);  // 2.5 LSB
  EXPECT_EQ(r.code, 3);       // IDEAL code floor(2.5 + 0.5)
  // value_fx = floor(2.5 * 2 + 1/2) = 5; acc = 5 - 2^1 * 2 = 1; y = 1 * 2^-1 (ideal: 1.0).
  EXPECT_EQ(r.y, 0.5);
}

TEST(NonidealOneRow, StuckAt) {
  NonidealSpec zero;
  zero.stuck_at_rate = 1.0, zero.stuck_at_max_fraction = 0.0;
  const auto g = one_row(1);  // D = 3
  const engine::FunctionalEngine ez(g, zero, 0);
  EXPECT_EQ(run_one_row(ez).psum, 0);
  EXPECT_EQ(run_one_row(ez).y, -2.0);  // 0 - 2
  EXPECT_EQ(ez.nonideal_crossbar(1)->stuck_at_zero(), 1u);
  NonidealSpec top = zero;
  top.stuck_at_max_fraction = 1.0;
  const auto g2 = one_row(-1);  // D = 1, stuck at 2^Bc - 1 = 3
  const engine::FunctionalEngine et(g2, top, 0);
  EXPECT_EQ(run_one_row(et).psum, 3 * 65536);  // analog units (2^-16 LSB) once non-ideal
  EXPECT_EQ(run_one_row(et).y, 1.0);           // ideal: 1 - 2 = -1
  EXPECT_EQ(et.nonideal_crossbar(1)->stuck_at_max(), 1u);
}

TEST(NonidealStuckAt, RatesWithinBinomialBounds) {
  // 200 rows x 50 columns x 4 slices (8-bit OFFSET weights on 2-bit cells) = 40000 cells.
  const uint32_t K = 200, N = 50;
  std::vector<int32_t> w(size_t{K} * N);
  std::mt19937 rng(1);
  for (auto& v : w) v = static_cast<int32_t>(rng() % 256) - 128;
  const ProgrammedCrossbar ideal(w, K, N, 8, 2, WeightEncoding::kOffset, contiguous_row_tiles(K, 128));
  for (const auto& [rate, frac] : std::vector<std::pair<double, double>>{{0.1, 0.5}, {0.02, 0.25}, {0.5, 0.9}}) {
    NonidealSpec ni;
    ni.stuck_at_rate = rate, ni.stuck_at_max_fraction = frac;
    const NonidealCrossbar x(ideal, w, 8, 2, WeightEncoding::kOffset, ni, 11, 0);
    const double n = static_cast<double>(x.physical_cells());
    ASSERT_EQ(n, 40000.0);
    auto within = [&](uint64_t count, double p) {
      const double sd = std::sqrt(n * p * (1 - p));
      EXPECT_NEAR(static_cast<double>(count), n * p, 5 * sd) << "rate " << rate << " fraction " << frac;
    };
    within(x.stuck_at_zero(), rate * (1 - frac));
    within(x.stuck_at_max(), rate * frac);
  }
  // DIFFERENTIAL_ANALOG: two physical cells per (k, s, n).
  std::vector<int32_t> wd(w);
  for (auto& v : wd) v = std::max(v, -127);
  const ProgrammedCrossbar ideal_d(wd, K, N, 8, 2, WeightEncoding::kDifferentialAnalog, contiguous_row_tiles(K, 128));
  NonidealSpec ni;
  ni.stuck_at_rate = 0.1;
  const NonidealCrossbar xd(ideal_d, wd, 8, 2, WeightEncoding::kDifferentialAnalog, ni, 11, 0);
  EXPECT_EQ(xd.physical_cells(), 2u * K * N * 4);
}

// ---- determinism over a dataset --------------------------------------------------------------

graph::Graph small_conv() {
  ImcT l;
  l.in_channels = 1, l.out_channels = 4, l.kernel_h = 3, l.kernel_w = 3, l.pad_h = 1, l.pad_w = 1;
  l.weight_bits = 4, l.cell_bits = 2, l.dac_bits = 1;
  std::mt19937 rng(3);
  for (int i = 0; i < 36; ++i) l.weights.push_back(static_cast<int32_t>(rng() % 15) - 7);
  l.adc.kind = "KIND_LINEAR", l.adc.bits = 4, l.adc.frac_bits = 4, l.adc.step_fx = {24}, l.adc.centre_fx = {0};
  l.adc.rounding = "ROUNDING_HALF_AWAY";
  GraphT g;
  g.input_shape = {1, 4, 4};
  g.input_quant = QuantT{1.0 / 255.0, 0, 4};
  g.nodes.push_back(NodeT{"conv", {"x"}, "c", {4, 4, 4}, QuantT{0.05, 0, 8}, true, l.str()});
  g.nodes.push_back(NodeT{"flat", {"c"}, "f", {64}, QuantT{0.05, 0, 8}, true, "flatten {}"});
  g.num_classes = 64;
  return graph::parse_graph_text(g.str(), "small_conv.imcg.txt");
}

TEST(NonidealDataset, SameSeedSameResultsWhateverTheThreads) {
  const auto g = small_conv();
  std::vector<uint8_t> pixels(300 * 16), labels(300);
  std::mt19937 rng(7);
  for (auto& p : pixels) p = static_cast<uint8_t>(rng());
  for (auto& l : labels) l = static_cast<uint8_t>(rng() % 64);
  NonidealSpec ni;
  ni.adc_noise_sigma_lsb = 0.6, ni.conductance_variation_sigma = 0.05, ni.stuck_at_rate = 0.02;
  ni.transfer_curve = {{0, 0}, {20, 18}, {60, 45}};
  const engine::FunctionalEngine a(g, ni, 17), b(g, ni, 17), c(g, ni, 18);
  const auto r1 = engine::run_dataset(a, pixels, labels, 300, 1, nullptr);
  const auto r2 = engine::run_dataset(b, pixels, labels, 300, 2, nullptr);
  const auto r3 = engine::run_dataset(c, pixels, labels, 300, 2, nullptr);
  EXPECT_EQ(r1.predictions, r2.predictions);
  EXPECT_EQ(r1.counters.per_node[0].adc_saturations, r2.counters.per_node[0].adc_saturations);
  EXPECT_NE(r1.predictions, r3.predictions);  // another chip and other noise
  // Image i of the dataset run is infer(..., image_index = i).
  std::vector<int32_t> codes(16);
  for (uint64_t i : {0, 123, 299}) {
    engine::pixels_to_codes(g.input, std::span<const uint8_t>(pixels).subspan(i * 16, 16), codes);
    EXPECT_EQ(a.infer(codes, nullptr, nullptr, nullptr, i).predicted_class, r1.predictions[i]);
  }
}

// ---- config ----------------------------------------------------------------------------------

constexpr const char* kCfg = "arch_configs/x.json";

void expect_config_error(const json& ni, std::initializer_list<std::string> parts) {
  try {
    config::parse_arch_config(json{{"nonidealities", ni}}, kCfg);
    FAIL() << "no ConfigError for " << ni.dump();
  } catch (const config::ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(std::string(kCfg) + ": ", 0), 0u) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }
}

TEST(NonidealConfig, DefaultsOffAndRoundTrip) {
  const auto c = config::parse_arch_config(json::object(), kCfg);
  EXPECT_FALSE(c.nonidealities.active());
  EXPECT_EQ(c.nonidealities.stuck_at_max_fraction, 0.5);
  const json j = {{"adc_noise_sigma_lsb", 0.5}, {"conductance_variation_sigma", 0.02},
                  {"transfer_curve", {{0, 0}, {100, 97.5}}}, {"stuck_at_rate", 1e-3},
                  {"stuck_at_max_fraction", 0.25}};
  const auto d = config::parse_arch_config(json{{"nonidealities", j}}, kCfg);
  EXPECT_TRUE(d.nonidealities.active());
  EXPECT_EQ(d.nonidealities.transfer_curve.size(), 2u);
  EXPECT_EQ(d.nonidealities.transfer_curve[1].y, 97.5);
  EXPECT_EQ(config::to_json(d)["nonidealities"], j);
  EXPECT_EQ(config::parse_arch_config(config::to_json(d), kCfg).nonidealities, d.nonidealities);
  // An empty table is no curve.
  EXPECT_FALSE(config::parse_arch_config(json{{"nonidealities", {{"transfer_curve", json::array()}}}}, kCfg)
                   .nonidealities.transfer());
}

TEST(NonidealConfig, BadInputsNameTheirPath) {
  expect_config_error({{"adc_noise_sigma_lsb", -0.1}}, {"/nonidealities/adc_noise_sigma_lsb", "out of range", "-0.1"});
  expect_config_error({{"conductance_variation_sigma", -1}}, {"/nonidealities/conductance_variation_sigma"});
  expect_config_error({{"conductance_variation_sigma", 1.5}}, {"/nonidealities/conductance_variation_sigma", "[0, 1]"});
  expect_config_error({{"adc_noise_sigma_lsb", "big"}}, {"/nonidealities/adc_noise_sigma_lsb", "expected a number"});
  expect_config_error({{"noise_sigma", 1}}, {"/nonidealities/noise_sigma", "unknown key"});
  expect_config_error({{"stuck_at_rat", 0.1}}, {"/nonidealities/stuck_at_rat", "did you mean \"stuck_at_rate\""});
  expect_config_error({{"stuck_at_rate", 1.01}}, {"/nonidealities/stuck_at_rate", "[0, 1]"});
  expect_config_error({{"stuck_at_rate", -0.5}}, {"/nonidealities/stuck_at_rate"});
  expect_config_error({{"stuck_at_max_fraction", 2}}, {"/nonidealities/stuck_at_max_fraction", "[0, 1]"});
  expect_config_error({{"transfer_curve", {{0, 0}, {5, 4}, {3, 2}}}},
                      {"/nonidealities/transfer_curve/2/0", "not sorted", "strictly increasing"});
  expect_config_error({{"transfer_curve", {{0, 0}, {0, 1}}}}, {"/nonidealities/transfer_curve/1/0", "not sorted"});
  expect_config_error({{"transfer_curve", {{0, 0}}}}, {"/nonidealities/transfer_curve", "at least 2 points"});
  expect_config_error({{"transfer_curve", {{0, 0}, {1, 2, 3}}}}, {"/nonidealities/transfer_curve/1", "[x, y]"});
  expect_config_error({{"transfer_curve", {{0, 0}, {1, "a"}}}}, {"/nonidealities/transfer_curve/1/1", "expected a number"});
  expect_config_error({{"transfer_curve", {{0, 0}, {1e12, 0}}}}, {"/nonidealities/transfer_curve/1/0", "2^30"});
  expect_config_error({{"transfer_curve", 3}}, {"/nonidealities/transfer_curve", "array"});
  expect_config_error(json::array(), {"/nonidealities", "expected an object"});
  // The engine refuses an invalid spec built in code, too.
  NonidealSpec bad;
  bad.adc_noise_sigma_lsb = -1;
  EXPECT_THROW(engine::FunctionalEngine(one_row(1), bad, 0), std::invalid_argument);
  EXPECT_FALSE(validate_nonideal_spec(bad).empty());
}

// ---- Monte Carlo -----------------------------------------------------------------------------

TEST(MonteCarlo, StudentTQuantiles) {
  // Two-sided 95 % quantiles (standard tables).
  EXPECT_NEAR(engine::student_t_quantile(1), 12.706204736, 1e-8);
  EXPECT_NEAR(engine::student_t_quantile(2), 4.302652730, 1e-8);
  EXPECT_NEAR(engine::student_t_quantile(4), 2.776445105, 1e-8);
  EXPECT_NEAR(engine::student_t_quantile(9), 2.262157163, 1e-8);
  EXPECT_NEAR(engine::student_t_quantile(29), 2.045229642, 1e-8);
  EXPECT_NEAR(engine::student_t_quantile(1000), 1.962339081, 1e-7);
  EXPECT_NEAR(engine::student_t_quantile(1, 0.5), 1.0, 1e-10);  // Cauchy: P(|T| <= 1) = 1/2
}

TEST(MonteCarlo, SummaryByHand) {
  // {0.5, 0.6, 0.7}: mean 0.6, sample std 0.1, half-width t(2) * 0.1 / sqrt(3).
  const auto m = engine::summarize_monte_carlo({0.5, 0.6, 0.7});
  EXPECT_EQ(m.runs, 3u);
  EXPECT_NEAR(m.mean, 0.6, 1e-15);
  EXPECT_NEAR(*m.std_dev, 0.1, 1e-15);
  const double half = 4.302652729749464 * 0.1 / std::sqrt(3.0);
  EXPECT_NEAR(*m.ci95_low, 0.6 - half, 1e-9);
  EXPECT_NEAR(*m.ci95_high, 0.6 + half, 1e-9);
  const auto one = engine::summarize_monte_carlo({0.9});
  EXPECT_EQ(one.mean, 0.9);
  EXPECT_FALSE(one.std_dev.has_value());
  EXPECT_FALSE(one.ci95_low.has_value());
}

// `imcsim run --mc` on the tiny Fashion-MNIST graph: the same seed reproduces the same numbers
// (also with another thread count); another seed gives others.
std::string run_cli(const std::string& args, const std::filesystem::path& out) {
  const std::string cmd = std::string(IMCSIM_BINARY) + " run -q --timing analytical --graph " + IMCSIM_SOURCE_DIR +
                          "/tests/data/graphs/tiny_fmnist.imcg.txt " + args + " --out " + out.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string text;
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) text += buf;
  const int status = p ? pclose(p) : -1;
  return status == 0 ? std::string() : "exit " + std::to_string(status) + ": " + text;
}

TEST(MonteCarloCli, SameSeedSameNumbers) {
  if (!std::filesystem::exists(data::kDefaultFashionMnistDir)) GTEST_SKIP() << "no Fashion-MNIST";
  const auto dir = std::filesystem::temp_directory_path() / ("imcsim_mc_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "noise.json") << R"({"nonidealities": {"adc_noise_sigma_lsb": 3.0, "stuck_at_rate": 0.05}})";
    std::ofstream(dir / "bad.json") << R"({"nonidealities": {"adc_noise_sigma_lsb": -3.0}})";
  }
  const std::string common = "--images 400 --arch " + (dir / "noise.json").string();
  ASSERT_EQ(run_cli(common + " --seed 10 --mc 3 -j 1", dir / "a"), "");
  ASSERT_EQ(run_cli(common + " --seed 10 --mc 3 -j 2", dir / "b"), "");
  ASSERT_EQ(run_cli(common + " --seed 11 --mc 3", dir / "c"), "");
  auto load = [&](const char* sub) { return json::parse(std::ifstream(dir / sub / "report.json")); };
  const json a = load("a"), b = load("b"), c = load("c");
  const json& ma = a["accuracy"]["monte_carlo"];
  EXPECT_EQ(ma, b["accuracy"]["monte_carlo"]);
  EXPECT_EQ(ma["seeds"], json({10, 11, 12}));
  EXPECT_EQ(ma["runs"], 3);
  EXPECT_EQ(a["run"]["seed"], 10);
  EXPECT_TRUE(a["nonidealities"]["active"].get<bool>());
  EXPECT_EQ(a["config"]["nonidealities"]["adc_noise_sigma_lsb"], 3.0);
  // Seeds 11 and 12 overlap: their accuracies are the same in both runs.
  EXPECT_EQ(c["accuracy"]["monte_carlo"]["top1"][0], ma["top1"][1]);
  EXPECT_EQ(c["accuracy"]["monte_carlo"]["top1"][1], ma["top1"][2]);
  EXPECT_EQ(a["accuracy"]["top1"], ma["top1"][0]);
  const double mean = ma["mean"].get<double>();
  EXPECT_LE(ma["ci95"][0].get<double>(), mean);
  EXPECT_GE(ma["ci95"][1].get<double>(), mean);
  // A bad section: exit 1 with one line naming the file and the path.
  const std::string err = run_cli("--images 10 --arch " + (dir / "bad.json").string(), dir / "d");
  EXPECT_NE(err.find("exit"), std::string::npos);
  EXPECT_NE(err.find("/nonidealities/adc_noise_sigma_lsb"), std::string::npos) << err;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace imcsim
