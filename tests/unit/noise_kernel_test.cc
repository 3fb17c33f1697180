// ADC-noise kernels (models/crossbar/noise_kernel.h) against the scalar definitions of
// models/crossbar/nonideal.h (splitmix64, gaussian_sample, noise_fx, adc_convert_analog): the
// block Irwin-Hall sums on every path (incl. the AVX2 one) at many offsets and lengths
// (vector-chunk edges, tails); the noise table over S for many sigma values; the fused kernel
// (NoiseMvmKernel) against a direct evaluation on random layers (every ADC kind, rounding,
// frac_bits, granularity; partial chunks); the nibble kernel's affine noise path against a
// direct evaluation; and the engine's noise mode on the native path, one
// and two threads per image, against the reference path (outputs and event counters) on the
// random-layer corpus.
#include <gtest/gtest.h>

#include <cstdint>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <fstream>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/crossbar/crossbar.h"
#include "models/crossbar/fast_mvm.h"
#include "models/crossbar/noise_kernel.h"
#include "tests/support/engine_checks.h"
#include "tests/support/kernel_paths.h"
#include "models/crossbar/nonideal.h"
#include "models/crossbar/slicing.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"

namespace imcsim::kernels {
namespace {

std::vector<KernelPath> fast_paths() { return test::fast_kernel_paths(); }

uint64_t scalar_sum(uint64_t key, uint64_t n) {
  return irwin_hall_fields(gauss32_output(key, static_cast<uint32_t>(2 * n))) +
         irwin_hall_fields(gauss32_output(key, static_cast<uint32_t>(2 * n + 1)));
}

TEST(NoiseKernel, IrwinHallBlockEqualsScalarStream) {
  std::mt19937_64 rng(11);
  const uint64_t keys[] = {0, 1, rng_key({5, kStreamAdcNoise, 3, 17}), ~uint64_t{0}, rng()};
  const uint64_t firsts[] = {0, 1, 7, 15, 16, 17, 31, 33, 1000003, (uint64_t{1} << 31) - 5000};
  const size_t counts[] = {0, 1, 3, 15, 16, 17, 31, 32, 33, 100, 4096 + 5};
  for (const auto path : fast_paths())
    for (uint64_t key : keys)
      for (uint64_t first : firsts)
        for (size_t count : counts) {
          SCOPED_TRACE(std::string(kernel_path_name(path)) + " first " + std::to_string(first) + " count " +
                       std::to_string(count));
          std::vector<uint16_t> out(count + 1, 0xBEEF);
          irwin_hall_block(key, first, count, out.data(), path);
          for (size_t j = 0; j < count; ++j) ASSERT_EQ(out[j], scalar_sum(key, first + j)) << "element " << j;
          EXPECT_EQ(out[count], 0xBEEF) << "wrote past the block";
        }
}

TEST(NoiseKernel, IrwinHallSumsCoverTheirRange) {
  // The sum of twelve 5-bit fields: mean 12 * 15.5 = 186, within [0, kIrwinHallMax].
  std::vector<uint16_t> s(1 << 16);
  irwin_hall_block(42, 0, s.size(), s.data(), native_kernels_supported() ? KernelPath::kNative : KernelPath::kPortable);
  double mean = 0;
  for (uint16_t v : s) {
    ASSERT_LE(v, kIrwinHallMax);
    mean += v;
  }
  EXPECT_NEAR(mean / static_cast<double>(s.size()), 186.0, 0.2);
}

TEST(NoiseKernel, NoiseTableEqualsDirectFormula) {
  std::mt19937_64 rng(3);
  std::vector<double> sigmas = {1.0, 0.7, 0.35, 0.5, 1e-3, 3.0, 1.0 / 3, 255.5, 1048576.0, 5e-324, 1e-310};
  for (int i = 0; i < 40; ++i) sigmas.push_back(std::ldexp(static_cast<double>(rng() >> 11) * 0x1p-53, -10 + i));
  const uint64_t key = rng_key({9, kStreamAdcNoise, 2, 5});
  for (double sigma : sigmas) {
    SCOPED_TRACE("sigma " + std::to_string(sigma));
    const auto table = noise_table(sigma);
    ASSERT_EQ(table.size(), kIrwinHallMax + 1);
    for (uint32_t s = 0; s <= kIrwinHallMax; ++s)
      ASSERT_EQ(table[s], noise_fx(sigma, (static_cast<double>(s) - 186.0) * 0x1p-5)) << "S " << s;
    for (uint64_t n = 0; n < 2000; ++n)
      ASSERT_EQ(table[scalar_sum(key, n)], noise_fx(sigma, gaussian_sample(key, n))) << "element " << n;
  }
}

TEST(NoiseKernel, AffineNoiseFormByHand) {
  AdcSpec ideal;  // IDEAL, F = 0: a change point at every half LSB, none is the top before the partial sums end
  ideal.kind = AdcKind::kIdeal;
  // sigma 1: K = 2048 = 2^11, u = (p << 5) + S in units of 2^11 (2^-5 LSB), a = 2048 u - 186 2048.
  auto f = AffineNoiseForm::make(1.0, 384, ideal, 1);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->p_shift, 5u);
  EXPECT_EQ(f->s_mult, 1u);
  EXPECT_EQ(f->r, 11u);
  EXPECT_EQ(f->nu_offset, 186);
  EXPECT_EQ(f->p_clamp, 384);
  EXPECT_EQ(f->u_max, 384 * 32 + 372);
  EXPECT_EQ(f->analog((7 << 5) + 186), 7 * 65536);  // S = 186: no noise
  // sigma 1.5: K = 3072 = 3 2^10: u = (p << 6) + 3 S.
  f = AffineNoiseForm::make(1.5, 100, ideal, 1);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->p_shift, 6u);
  EXPECT_EQ(f->s_mult, 3u);
  EXPECT_EQ(f->analog((5 << 6) + 3 * 190), 5 * 65536 + 4 * 3072);  // S = 190: z = 4/32, 1.5 z 2^16 = 12288
  // sigma 64: K = 2^17: whole LSBs, u = p + 2 S.
  f = AffineNoiseForm::make(64.0, 100, ideal, 1);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->p_shift, 0u);
  EXPECT_EQ(f->s_mult, 2u);
  EXPECT_EQ(f->r, 16u);
  // Not an integer K, or u beyond the signed 16-bit lanes.
  EXPECT_FALSE(AffineNoiseForm::make(0.3, 100, ideal, 1));
  EXPECT_TRUE(AffineNoiseForm::make(1.0, 1012, ideal, 1));   // 1012 * 32 + 372 = 32756 fits ...
  EXPECT_FALSE(AffineNoiseForm::make(1.0, 1013, ideal, 1));  // ... 1013 * 32 + 372 = 32788 does not
  // ... unless the ADC's range ends first: a 4-bit FLOOR ADC of 1-LSB steps changes its result
  // last at a = 16 LSB (code 15 becomes saturated), so from p = 16 + 5.8125 (rounded up: 22) on
  // every conversion gives code 15, saturated: u = (min(p, 22) << 5) + S.
  AdcSpec small;
  small.kind = AdcKind::kLinear, small.bits = 4, small.frac_bits = 0, small.rounding = AdcRounding::kFloor;
  small.step_fx = {1}, small.centre_fx = {0};
  f = AffineNoiseForm::make(1.0, 1013, small, 1);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->p_clamp, 22);
  EXPECT_EQ(f->u_max, 22 * 32 + 372);
  // sigma 0.37 on that ADC (change points at whole LSBs: r = 16): the blocked form, u =
  // min(p, p_clamp) + nu(S), nu the staircase (noise(S) >> 16) - (noise(0) >> 16).
  f = AffineNoiseForm::make_blocked(0.37, 1013, small, 1);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->p_shift, 0u);
  EXPECT_EQ(f->s_mult, 0u);
  const auto noise = noise_table(0.37);
  const int64_t nu0 = noise[0] >> 16;  // floor(-0.37 * 5.8125) = -3
  EXPECT_EQ(nu0, -3);
  EXPECT_EQ(static_cast<int64_t>(f->s_thresholds.size()), (noise[kIrwinHallMax] >> 16) - nu0);  // 2 - (-3) = 5
  for (uint32_t S = 0; S <= kIrwinHallMax; ++S) {
    int64_t nu = 0;
    for (uint16_t t : f->s_thresholds) nu += S >= t;
    ASSERT_EQ(nu, (noise[S] >> 16) - nu0) << "S " << S;
  }
  EXPECT_EQ(f->r, 16u);
  EXPECT_FALSE(f->half);
  EXPECT_EQ(f->nu_offset, 3);
  EXPECT_EQ(f->p_clamp, 16 + 3);  // ceil((16 2^16 - noise(0)) / 2^16), noise(0) = -2.15 LSB
  EXPECT_EQ(f->u_max, 19 + 5);
  // A HALF_AWAY ADC with signed codes changes its result at m + 1/2 LSB above zero and one
  // 2^-16 above -(m + 1/2) LSB below: "half" blocks of 2^15, t = 2 (a >> 15) + [a mod 2^15 != 0],
  // u = (min(p, p_clamp) << 2) + nu(S); sigma 0.2 (noise within +-1.16 LSB = +-2.3 half LSB):
  // t(noise) from -5 to 5, ten thresholds.
  AdcSpec half = small;
  half.rounding = AdcRounding::kHalfAway, half.signed_codes = true;
  f = AffineNoiseForm::make_blocked(0.2, 1013, half, 1);
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->half);
  EXPECT_EQ(f->r, 15u);
  EXPECT_EQ(f->p_shift, 2u);
  EXPECT_EQ(f->s_thresholds.size(), 10u);
  EXPECT_EQ(f->nu_offset, 5);
  for (int64_t a : {int64_t{-5} * 32768, int64_t{-5} * 32768 + 1, int64_t{7} * 32768, int64_t{7} * 32768 + 5}) {
    const int64_t t = 2 * (a >> 15) + ((a & 32767) != 0);
    const int64_t rep = f->analog(t + f->nu_offset);  // (u = t - nu0 = t + nu_offset)
    EXPECT_EQ(rep >> 15, a >> 15);
    EXPECT_EQ((rep & 32767) != 0, (a & 32767) != 0);
  }
}

// ---- fused kernel -------------------------------------------------------------------------------

AdcSpec linear_adc(uint32_t bits, uint32_t frac, AdcRounding r, bool signed_codes, AdcGranularity gran, uint64_t sets,
                   std::mt19937_64& rng, int64_t step_lo, int64_t step_hi) {
  AdcSpec a;
  a.kind = AdcKind::kLinear, a.bits = bits, a.frac_bits = frac, a.rounding = r, a.signed_codes = signed_codes;
  a.granularity = gran;
  for (uint64_t i = 0; i < sets; ++i) {
    a.step_fx.push_back(step_lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(step_hi - step_lo + 1)));
    a.centre_fx.push_back(static_cast<int64_t>(rng() % 64) - 16);
  }
  return a;
}

AdcSpec nonlinear_adc(uint32_t bits, uint32_t frac, AdcGranularity gran, uint64_t sets, std::mt19937_64& rng) {
  AdcSpec a;
  a.kind = AdcKind::kNonlinear, a.bits = bits, a.frac_bits = frac, a.granularity = gran;
  for (uint64_t i = 0; i < sets; ++i) {
    int64_t t = -static_cast<int64_t>(rng() % 8);
    for (uint32_t j = 0; j + 1 < (1u << bits); ++j) a.thresholds_fx.push_back(t += 1 + static_cast<int64_t>(rng() % (12u << frac)));
    for (uint32_t j = 0; j < (1u << bits); ++j) a.levels_fx.push_back(static_cast<int64_t>(rng() % 4000) - 1000);
  }
  return a;
}

// A random layer of the kernel tests (one-bit input groups, A-shifted inputs optional).
struct LayerSpec {
  WeightEncoding encoding;
  uint32_t weight_bits, cell_bits, input_bits, rows, k, n;
  bool ashift;
};
// Its crossbar and P positions of A-shifted inputs (position 1 all zero) with their partial sums
// [p][g][s][t][n] (ProgrammedCrossbar) and DAC row drives.
struct RandomLayer {
  std::vector<RowTile> tiles;
  std::unique_ptr<ProgrammedCrossbar> xbar;
  std::vector<InputGroup> groups;
  uint32_t G = 0, S = 0, T = 0, N = 0, K = 0, P = 0;
  std::vector<int32_t> xs;
  std::vector<int64_t> psums;
  uint64_t drives = 0;
};
RandomLayer random_layer(const LayerSpec& L, uint32_t P, std::mt19937_64& rng) {
  RandomLayer R;
  const int32_t wmax = (1 << (L.weight_bits - 1)) - 1;
  const int32_t wmin = L.encoding == WeightEncoding::kDifferentialDigital ? -wmax : -wmax - 1;
  std::vector<int32_t> w(size_t{L.k} * L.n);
  for (auto& v : w) v = wmin + static_cast<int32_t>(rng() % static_cast<uint64_t>(wmax - wmin + 1));
  R.tiles = contiguous_row_tiles(L.k, L.rows);
  R.xbar = std::make_unique<ProgrammedCrossbar>(w, L.k, L.n, L.weight_bits, L.cell_bits, L.encoding, R.tiles);
  R.groups = input_groups(L.input_bits, 1, L.ashift);
  R.G = static_cast<uint32_t>(R.tiles.size()), R.S = static_cast<uint32_t>(R.xbar->slices().size());
  R.T = static_cast<uint32_t>(R.groups.size()), R.N = L.n, R.K = L.k, R.P = P;
  const int32_t shift = L.ashift ? 1 << (L.input_bits - 1) : 0;
  R.xs.resize(size_t{P} * R.K);
  for (auto& x : R.xs) x = static_cast<int32_t>(rng() % (1u << L.input_bits)) - shift;
  for (uint32_t k = 0; k < R.K; ++k) R.xs[R.K + k] = L.ashift ? -shift : 0;
  R.psums.resize(size_t{P} * R.G * R.S * R.T * R.N);
  std::vector<uint16_t> u(R.K);
  std::vector<int32_t> ps(size_t{R.S} * R.N);
  for (uint32_t p = 0; p < P; ++p)
    for (uint32_t g = 0; g < R.G; ++g)
      for (uint32_t t = 0; t < R.T; ++t) {
        for (uint32_t k = 0; k < R.K; ++k)
          u[k] = static_cast<uint16_t>(group_value(R.xs[size_t{p} * R.K + k], L.input_bits, R.groups[t]));
        for (uint32_t k = R.tiles[g].row_begin; k < R.tiles[g].row_end; ++k) R.drives += u[k] != 0;
        R.xbar->partial_sums(g, u, ps);
        for (uint32_t s = 0; s < R.S; ++s)
          for (uint32_t n = 0; n < R.N; ++n)
            R.psums[(((size_t{p} * R.G + g) * R.S + s) * R.T + t) * R.N + n] = ps[size_t{s} * R.N + n];
      }
  return R;
}

// The direct evaluation of R's positions p under ADC noise: a = p 2^16 + noise_fx of element
// ((g S + s) T + t) N + n of stream H(key, pos_offset + p), converted by adc_convert_analog and
// shift-added; with the saturations and the range of floor(a / 2^16).
struct DirectResult {
  std::vector<int64_t> acc;
  uint64_t saturations = 0;
  int64_t lo = INT64_MAX, hi = INT64_MIN;
};
DirectResult direct_evaluation(const RandomLayer& R, const AdcSpec& adc, double sigma, uint64_t key,
                               uint64_t pos_offset) {
  DirectResult out;
  out.acc.assign(size_t{R.P} * R.N, 0);
  const size_t per_position = size_t{R.G} * R.S * R.T * R.N;
  for (uint32_t p = 0; p < R.P; ++p) {
    const uint64_t pos_key = rng_extend(key, pos_offset + p);
    for (uint32_t g = 0; g < R.G; ++g)
      for (uint32_t s = 0; s < R.S; ++s)
        for (uint32_t t = 0; t < R.T; ++t)
          for (uint32_t n = 0; n < R.N; ++n) {
            const uint64_t c = ((uint64_t{g} * R.S + s) * R.T + t) * R.N + n;
            const int64_t a = R.psums[p * per_position + c] * 65536 + noise_fx(sigma, gaussian_sample(pos_key, c));
            const AnalogAdcResult r = adc_convert_analog(adc, adc.set_index(g, s, n, R.S, R.N), a);
            const WeightSlice& sl = R.xbar->slices()[s];
            out.acc[size_t{p} * R.N + n] +=
                int64_t{sl.sign} * R.groups[t].sign * (int64_t{1} << (sl.bit_lo + R.groups[t].bit_lo)) * r.value_fx;
            out.saturations += r.saturated;
            out.lo = std::min(out.lo, a >> 16);
            out.hi = std::max(out.hi, a >> 16);
          }
  }
  return out;
}

TEST(NoiseKernel, FusedKernelEqualsDirectEvaluation) {
  if (!native_kernels_supported()) GTEST_SKIP() << "the fused noise kernel is native-only";
  const LayerSpec layers[] = {
      {WeightEncoding::kOffset, 8, 2, 8, 128, 300, 5, false},
      {WeightEncoding::kTwosComplement, 6, 3, 5, 64, 150, 3, true},      // T = 5: lanes unused per chunk
      {WeightEncoding::kDifferentialDigital, 8, 2, 7, 100, 130, 4, false},
  };
  std::mt19937_64 rng(5);
  const uint64_t key = rng_key({3, kStreamAdcNoise, 0, 12});
  for (const auto& L : layers) {
    SCOPED_TRACE(std::string("encoding ") + encoding_name(L.encoding));
    // 70 positions (one full batch of 64 and a partial one).
    const RandomLayer R = random_layer(L, 70, rng);
    const ProgrammedCrossbar& xbar = *R.xbar;
    const auto& tiles = R.tiles;
    const auto& groups = R.groups;
    const auto& xs = R.xs;
    const uint64_t want_drives = R.drives;
    const uint32_t G = R.G, S = R.S, N = R.N, K = R.K, P = R.P;
    for (const auto gran : {AdcGranularity::kLayer, AdcGranularity::kColumn, AdcGranularity::kSliceTileColumn}) {
      const uint64_t sets = AdcSpec::sets_for(gran, G, S, N);
      std::vector<std::pair<std::string, AdcSpec>> adcs;
      adcs.emplace_back("linear half-away F0 step 6", linear_adc(6, 0, AdcRounding::kHalfAway, false, gran, sets, rng, 6, 6));
      adcs.emplace_back("linear floor signed F2", linear_adc(5, 2, AdcRounding::kFloor, true, gran, sets, rng, 3, 40));
      adcs.emplace_back("linear half-away signed F4", linear_adc(4, 4, AdcRounding::kHalfAway, true, gran, sets, rng, 20, 300));
      adcs.emplace_back("linear floor F17", linear_adc(4, 17, AdcRounding::kFloor, false, gran, sets, rng, 1 << 12, 1 << 16));
      adcs.emplace_back("linear floor F16", linear_adc(4, 16, AdcRounding::kFloor, false, gran, sets, rng, 1 << 12, 1 << 16));
      adcs.emplace_back("non-linear F1", nonlinear_adc(5, 1, gran, sets, rng));
      AdcSpec ideal;
      ideal.kind = AdcKind::kIdeal, ideal.frac_bits = 3, ideal.granularity = gran;
      adcs.emplace_back("ideal F3", ideal);
      for (const auto& [name, adc] : adcs)
        for (const double sigma : {1.0, 0.37, 4.5}) {
          SCOPED_TRACE(name + " " + adc_granularity_name(gran) + " sigma " + std::to_string(sigma));
          const auto kern = NoiseMvmKernel::make(xbar.cells(), K, N, xbar.slices(), tiles, groups, L.input_bits, adc,
                                                 sigma, KernelPath::kNative);
          ASSERT_NE(kern, nullptr);
          const DirectResult d = direct_evaluation(R, adc, sigma, key, 0);
          const std::vector<int64_t>& want = d.acc;
          const uint64_t want_sat = d.saturations;
          const int64_t want_lo = d.lo, want_hi = d.hi;
          std::vector<int64_t> got(size_t{P} * N, 0);
          FastStats stats;
          uint64_t drives = kern->run(xs.data(), 64, 0, key, got.data(), &stats);
          drives += kern->run(xs.data() + size_t{64} * K, P - 64, 64, key, got.data() + size_t{64} * N, &stats);
          EXPECT_EQ(drives, want_drives);
          ASSERT_EQ(got, want);
          EXPECT_EQ(stats.saturations, want_sat);
          EXPECT_EQ(stats.psum_min, want_lo);
          EXPECT_EQ(stats.psum_max, want_hi);
          // Without statistics: the same sums.
          std::vector<int64_t> again(size_t{P} * N, 0);
          kern->run(xs.data(), P, 0, key, again.data(), nullptr);
          EXPECT_EQ(again, want);
        }
    }
  }
}

// ---- the nibble kernel's affine noise path -----------------------------------------------------

// BitPlaneCrossbar::accumulate with a NoiseCall == a direct evaluation (ProgrammedCrossbar partial
// sums, noise_fx of gaussian_sample of each position's stream, adc_convert_analog, shift-add) and
// its counters: the lattice form for K = sigma 2^11 in {2^10, 2^11, 3 2^10, 2^17} (p_shift 6, 5,
// 6, 0; s_mult 1, 1, 3, 2) and the blocked form (sigma 0.2, 0.37, 0.8, 1.3, 2.3: thresholds on S
// or nu in arithmetic form, whole and half blocks), group counts
// with unused lanes (T = 5, 7), a column tail (N % 4 != 0), LAYER and COLUMN parameters, batches
// of 64 / 64 / 22 positions at an offset.
TEST(NoiseKernel, AffineNoisePathEqualsDirectEvaluation) {
  if (!native_kernels_supported()) GTEST_SKIP() << "the affine noise path is native-only";
  const std::pair<LayerSpec, AdcGranularity> layers[] = {
      {{WeightEncoding::kOffset, 8, 2, 8, 128, 260, 6, false}, AdcGranularity::kLayer},
      {{WeightEncoding::kTwosComplement, 6, 3, 5, 64, 150, 5, false}, AdcGranularity::kColumn},
      {{WeightEncoding::kDifferentialDigital, 8, 2, 7, 100, 130, 9, false}, AdcGranularity::kLayer},
  };
  std::mt19937_64 rng(21);
  const uint64_t key = rng_key({4, kStreamAdcNoise, 2, 99});
  const uint64_t pos_offset = 1000;
  int served = 0, half_forms = 0, nu_fits = 0;
  for (const auto& [L, gran] : layers) {
    SCOPED_TRACE(std::string("encoding ") + encoding_name(L.encoding));
    const RandomLayer R = random_layer(L, 150, rng);
    const ProgrammedCrossbar& xbar = *R.xbar;
    const auto& groups = R.groups;
    const uint32_t G = R.G, S = R.S, N = R.N, K = R.K, P = R.P;
    const BitPlaneCrossbar fast(xbar.cells(), L.k, L.n, xbar.slices(), R.tiles, groups, L.input_bits,
                                KernelPath::kNative);
    std::vector<uint64_t> words(size_t{P} * fast.input_words());
    std::vector<uint32_t> nonzero(size_t{P} * G);
    for (uint32_t p = 0; p < P; ++p)
      fast.pack_inputs(R.xs.data() + size_t{p} * K, words.data() + p * fast.input_words(), nonzero.data() + p * G);
    const uint64_t sets = AdcSpec::sets_for(gran, G, S, N);
    for (const double sigma : {0.5, 1.0, 1.5, 64.0, 0.37, 1.3, 0.2, 0.8, 2.3}) {
      // 0: FLOOR, F = 0, unsigned; 1: HALF_AWAY, F = 2, signed; 2: HALF_AWAY, F = 0, unsigned.
      for (const int kind : {0, 1, 2}) {
        const AdcRounding rounding = kind == 0 ? AdcRounding::kFloor : AdcRounding::kHalfAway;
        SCOPED_TRACE("sigma " + std::to_string(sigma) + " ADC kind " + std::to_string(kind));
        const AdcSpec adc = linear_adc(6, kind == 1 ? 2 : 0, rounding, kind == 1, gran, sets, rng, 3, 30);
        // sigma 2^11 an integer: the lattice form; else the blocked one: a FLOOR ADC with F = 0
        // changes its result only at whole LSBs (r = 16, u = a >> 16 - noise(0) >> 16); an
        // unsigned HALF_AWAY one at half LSBs and (its low saturation, a tie below the centre)
        // one 2^-16 above a half LSB: half blocks (r = 15, t = 2 (a >> 15) + [a mod 2^15 != 0]).
        const bool lattice = sigma * 2048 == std::floor(sigma * 2048);
        const auto form = lattice ? AffineNoiseForm::make(sigma, fast.psum_bound(), adc, sets)
                                  : AffineNoiseForm::make_blocked(sigma, fast.psum_bound(), adc, sets);
        if (lattice || kind != 1) {
          ASSERT_TRUE(form);
        }
        if (!form) continue;
        if (!lattice && kind == 0) {
          EXPECT_EQ(form->p_shift, 0u);
          EXPECT_FALSE(form->half);
        }
        half_forms += form->half;  // (kind 2 when its low saturation lies within the noise's reach)
        nu_fits += form->nu_affine.has_value();
        const auto affine = fit_affine_noise_adc(adc, sets, *form);
        // (Signed HALF_AWAY tables whose ties fall on u's lattice break the form at the centre: ties
        // go up above it and down below.)
        if (kind != 1) {
          ASSERT_TRUE(affine);
        }
        if (!affine) continue;
        PackedAdcLut lut{nullptr, 0, static_cast<size_t>(form->u_max + 1), gran};
        lut.affine = &*affine;
        ASSERT_TRUE(fast.serves_affine_noise(lut, *form));
        ++served;
        const DirectResult d = direct_evaluation(R, adc, sigma, key, pos_offset);
        const std::vector<int64_t>& want = d.acc;
        const uint64_t want_sat = d.saturations;
        const int64_t want_lo = d.lo, want_hi = d.hi;
        std::vector<int64_t> got(size_t{P} * N, 0), quiet(size_t{P} * N, 0);
        FastStats stats;
        for (uint32_t p0 = 0; p0 < P; p0 += 64) {
          const uint32_t nb = std::min<uint32_t>(64, P - p0);
          const NoiseCall call{&*form, key, pos_offset + p0};
          fast.accumulate(words.data() + p0 * fast.input_words(), nonzero.data() + p0 * G, nb, lut,
                          got.data() + size_t{p0} * N, &stats, &call);
          fast.accumulate(words.data() + p0 * fast.input_words(), nonzero.data() + p0 * G, nb, lut,
                          quiet.data() + size_t{p0} * N, nullptr, &call);
        }
        ASSERT_EQ(got, want);
        EXPECT_EQ(quiet, want);
        EXPECT_EQ(stats.saturations, want_sat);
        EXPECT_EQ(stats.psum_min, want_lo);
        EXPECT_EQ(stats.psum_max, want_hi);
      }
    }
  }
  EXPECT_GE(served, 50);  // of 81 (layer, sigma, ADC) cases: every FLOOR and unsigned HALF_AWAY one
  EXPECT_GE(half_forms, 3);
  EXPECT_GE(nu_fits, 3);
}

TEST(NoiseKernel, FusedKernelDeclinesWhatItCannotDo) {
  if (!native_kernels_supported()) GTEST_SKIP() << "the fused noise kernel is native-only";
  const std::vector<int32_t> w(64 * 4, 3);
  const auto tiles = contiguous_row_tiles(64, 64);
  const ProgrammedCrossbar xbar(w, 64, 4, 8, 2, WeightEncoding::kOffset, tiles);
  std::mt19937_64 rng(1);
  const AdcSpec adc = linear_adc(6, 0, AdcRounding::kFloor, false, AdcGranularity::kLayer, 1, rng, 4, 4);
  const auto one_bit = input_groups(8, 1, false);
  auto make = [&](const std::vector<InputGroup>& groups, double sigma, KernelPath path) {
    return NoiseMvmKernel::make(xbar.cells(), 64, 4, xbar.slices(), tiles, groups, 8, adc, sigma, path);
  };
  EXPECT_NE(make(one_bit, 1.0, KernelPath::kNative), nullptr);
  EXPECT_EQ(make(one_bit, 1.0, KernelPath::kPortable), nullptr);
  EXPECT_EQ(make(input_groups(8, 2, false), 1.0, KernelPath::kNative), nullptr);  // two-bit DAC
  EXPECT_EQ(make(one_bit, 20000.0, KernelPath::kNative), nullptr);               // a beyond 32 bits
}

}  // namespace
}  // namespace imcsim::kernels

// ---- the engine's noise mode ------------------------------------------------------------------

namespace imcsim {
namespace {

namespace fs = std::filesystem;

using test::expect_same_counters;

// Every random-layer graph with a one-bit DAC and non-negative cells (the fused kernels'
// domain; the others take the row loop), ADC noise of three sigmas (1 and 3, whose sigma 2^11
// are integers: the affine noise path's lattice form where the layer's ADC table over u has the
// arithmetic form; 0.8: its blocked form where the ADC's change points allow, else the fused
// noise kernel; 3 with stuck-at faults): the native and portable paths, on one and on two
// threads per image, give the reference path's outputs and counters.
TEST(NoiseEngine, FastPathsAndThreadsEqualReferencePath) {
  const fs::path dir = fs::path(IMCSIM_SOURCE_DIR) / "tests" / "data" / "random_layers";
  std::ifstream in(dir / "manifest.json");
  ASSERT_TRUE(in) << "tests/data/random_layers/manifest.json";
  const auto manifest = nlohmann::json::parse(in);
  std::vector<kernels::KernelPath> paths{kernels::KernelPath::kPortable};
  if (kernels::native_kernels_supported()) paths.push_back(kernels::KernelPath::kNative);
  size_t checked = 0, affine_layers = 0, fused_layers = 0, blocked_layers = 0;
  for (const auto& c : manifest["cases"]) {
    if (!c["nonidealities"].is_null() || c["dac"] != "1" || c["encoding"] == "differential_analog") continue;
    const std::string file = c["file"].get<std::string>();
    SCOPED_TRACE(file);
    const graph::Graph g = graph::load_graph((dir / file).string());
    ASSERT_FALSE(g.golden.empty());
    for (const double sigma : {0.8, 1.0, 3.0}) {
      kernels::NonidealSpec spec;
      spec.adc_noise_sigma_lsb = sigma;
      if (sigma > 1) spec.stuck_at_rate = 0.05;  // faulty cells (still integer levels)
      engine::FunctionalEngine ref(g, spec, 11, kernels::KernelPath::kReference);
      engine::EngineCounters ref_counters;
      std::vector<engine::InferenceResult> want;
      for (size_t i = 0; i < g.golden.size(); ++i)
        want.push_back(ref.infer(g.golden[i].input_codes, &ref_counters, nullptr, nullptr, 7 + i));
      for (const auto path : paths)
        for (const unsigned threads : {1u, 2u}) {
          SCOPED_TRACE(std::string(kernels::kernel_path_name(path)) + " sigma " + std::to_string(sigma) + " threads " +
                       std::to_string(threads));
          engine::FunctionalEngine eng(g, spec, 11, path);
          eng.set_image_threads(threads);
          if (path == kernels::KernelPath::kNative && threads == 1)
            for (size_t i = 0; i < g.nodes.size(); ++i) {
              const std::string kind = eng.layer_kernel(i);
              affine_layers += kind == "fused-noise-affine";
              fused_layers += kind == "fused-noise";
              blocked_layers += sigma == 0.8 && kind == "fused-noise-affine";  // (sigma 2^11 not an integer)
            }
          engine::EngineCounters counters;
          for (size_t i = 0; i < g.golden.size(); ++i) {
            const auto got = eng.infer(g.golden[i].input_codes, &counters, nullptr, nullptr, 7 + i);
            EXPECT_EQ(got.node_codes, want[i].node_codes);
            EXPECT_EQ(got.output_values, want[i].output_values);
          }
          expect_same_counters(counters, ref_counters);
        }
      ++checked;
    }
  }
  EXPECT_GE(checked, 60u);
  if (kernels::native_kernels_supported()) {
    std::printf("layers: affine noise path %zu (blocked form %zu), fused noise kernel %zu\n", affine_layers,
                blocked_layers, fused_layers);
    EXPECT_GE(affine_layers, 20u);
    EXPECT_GE(blocked_layers, 1u);
    EXPECT_GE(fused_layers, 10u);
  }
}

}  // namespace
}  // namespace imcsim
