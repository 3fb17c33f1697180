// The arithmetic form of ADC tables (fit_affine_adc, models/crossbar/fast_mvm.h) and the native
// nibble kernel's lookup-free path that uses it: every linear ADC table (floor and round-half-
// away, signed and unsigned codes, saturation on either side, steps below and above one LSB)
// has the form and reproduces the table on every partial sum; tables without it are refused;
// the kernel with the form gives the same accumulators and event counters as with lookups.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "models/adc/adc.h"
#include "models/crossbar/crossbar.h"
#include "models/crossbar/fast_mvm.h"
#include "models/crossbar/slicing.h"

namespace imcsim::kernels {
namespace {

// value_fx * 2 + saturated of every p in [lo, hi] and every set.
std::vector<int64_t> packed_table(const AdcSpec& spec, uint64_t sets, int64_t lo, int64_t hi) {
  std::vector<int64_t> t;
  for (uint64_t set = 0; set < sets; ++set)
    for (int64_t p = lo; p <= hi; ++p) {
      const bool sat = spec.kind == AdcKind::kLinear && linear_saturates(spec, set, p);
      t.push_back(adc_convert(spec, set, p).value_fx * 2 + (sat ? 1 : 0));
    }
  return t;
}

AdcSpec random_linear(std::mt19937_64& rng, uint64_t sets, int64_t p_max) {
  AdcSpec spec;
  spec.kind = AdcKind::kLinear;
  spec.bits = 2 + static_cast<uint32_t>(rng() % 7);
  spec.frac_bits = static_cast<uint32_t>(rng() % 9);
  spec.rounding = rng() % 2 ? AdcRounding::kFloor : AdcRounding::kHalfAway;
  spec.signed_codes = rng() % 3 == 0;
  for (uint64_t s = 0; s < sets; ++s) {
    // Full scale from a quarter to twice p_max, in units of 2^-F: steps below and above 1 LSB.
    const int64_t one = int64_t{1} << spec.frac_bits;
    const int64_t full = std::max<int64_t>(1, (p_max * one / 4) + static_cast<int64_t>(rng() % (2 * p_max * one + 1)));
    spec.step_fx.push_back(std::max<int64_t>(1, full >> spec.bits));
    spec.centre_fx.push_back(static_cast<int64_t>(rng() % (p_max * one / 2 + 1)) - (spec.signed_codes ? 0 : one));
  }
  return spec;
}

TEST(AffineAdc, LinearTablesHaveTheFormExactly) {
  std::mt19937_64 rng(11);
  int fitted = 0, small = 0, small_fitted = 0;
  for (int iter = 0; iter < 400; ++iter) {
    const int64_t p_max = std::vector<int64_t>{1, 12, 96, 384, 1152, 4095, 32766}[iter % 7];
    const uint64_t sets = iter % 5 == 0 ? 7 : 1;
    const AdcSpec spec = random_linear(rng, sets, p_max);
    const int64_t lo = -static_cast<int64_t>(rng() % 3);
    const auto table = packed_table(spec, sets, lo, p_max);
    const PackedAdcLut lut{table.data(), lo, static_cast<size_t>(p_max - lo + 1),
                           sets == 1 ? AdcGranularity::kLayer : AdcGranularity::kColumn};
    const auto affine = fit_affine_adc(lut, sets, p_max);
    SCOPED_TRACE("iteration " + std::to_string(iter) + " bits " + std::to_string(spec.bits) + " F " +
                 std::to_string(spec.frac_bits) + " p_max " + std::to_string(p_max));
    // 16-bit lanes limit the slope's precision, and a threshold exactly on an integer partial
    // sum (or a round-half-away tie below the centre) leaves no slack: such a table may have no
    // form (the kernel then uses lookups). Nearly every table over up to 1152 partial sums fits.
    if (p_max <= 1152) ++small;
    if (!affine) continue;
    if (p_max <= 1152) ++small_fitted;
    ++fitted;
    ASSERT_EQ(affine->sets.size(), sets);
    for (uint64_t set = 0; set < sets; ++set) {
      const auto& a = affine->sets[set];
      for (int64_t p = 0; p <= p_max; ++p) {
        const uint64_t x =
            static_cast<uint64_t>(std::max<int64_t>((std::min<int64_t>(p, a.p_clamp) << a.in_shift) + a.offset, 0));
        ASSERT_LT(x, 65536u);
        const int64_t code = std::min<int64_t>(static_cast<int64_t>(((x * a.mult) >> 16) >> a.out_shift), a.code_max);
        const int64_t e = table[set * lut.size + static_cast<size_t>(p - lo)];
        ASSERT_EQ(a.value_base + a.value_step * code, e >> 1) << "p " << p;
        ASSERT_EQ(p < a.sat_lo || p > a.sat_hi, (e & 1) != 0) << "p " << p;
      }
    }
  }
  EXPECT_GE(small_fitted * 100, small * 97);  // 285 of 286 here
  EXPECT_GE(fitted, 300);                      // 369 of 400 here
}

TEST(AffineAdc, TablesWithoutTheFormAreRefused) {
  // Non-linear references (unequal level spacing), a decreasing table, saturation inside the
  // range, a table that does not cover [0, p_max], per-(slice, tile, column) sets, p_max >= 2^15.
  AdcSpec nl;
  nl.kind = AdcKind::kNonlinear;
  nl.bits = 2;
  nl.thresholds_fx = {2, 5, 20};
  nl.levels_fx = {0, 3, 9, 30};
  const auto t_nl = packed_table(nl, 1, 0, 40);
  EXPECT_FALSE(fit_affine_adc(PackedAdcLut{t_nl.data(), 0, t_nl.size()}, 1, 40));
  std::vector<int64_t> decreasing{10, 8, 6}, inner_sat{0, 3, 4, 6};
  EXPECT_FALSE(fit_affine_adc(PackedAdcLut{decreasing.data(), 0, 3}, 1, 2));
  EXPECT_FALSE(fit_affine_adc(PackedAdcLut{inner_sat.data(), 0, 4}, 1, 3));
  std::vector<int64_t> ok{0, 2, 4, 6, 8};
  EXPECT_TRUE(fit_affine_adc(PackedAdcLut{ok.data(), 0, 5}, 1, 4));
  EXPECT_FALSE(fit_affine_adc(PackedAdcLut{ok.data(), 0, 5}, 1, 5));   // p = 5 not covered
  EXPECT_FALSE(fit_affine_adc(PackedAdcLut{ok.data(), 1, 4}, 1, 4));   // p = 0 not covered
  EXPECT_FALSE(fit_affine_adc(PackedAdcLut{ok.data(), 0, 5, AdcGranularity::kSliceTileColumn}, 1, 4));
  EXPECT_FALSE(fit_affine_adc(PackedAdcLut{ok.data(), -40000, 5}, 1, 40000));
  // A constant table (every p one code) and an all-saturated one have the form.
  std::vector<int64_t> flat{7, 7, 7}, all_sat{5, 5, 5};
  const auto f = fit_affine_adc(PackedAdcLut{flat.data(), 0, 3}, 1, 2);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->sets[0].value_base, 3);
  EXPECT_EQ(f->sets[0].code_max, 0);
  const auto s = fit_affine_adc(PackedAdcLut{all_sat.data(), 0, 3}, 1, 2);
  ASSERT_TRUE(s);
  EXPECT_GT(s->sets[0].sat_lo, 2);
}

// The nibble kernel with the arithmetic form == with lookups == a direct evaluation, with
// counters, on layers the nibble kernel serves (one-bit DAC groups, non-negative cells).
TEST(AffineAdc, NibbleKernelWithoutLookupsEqualsLookups) {
  if (!native_kernels_supported()) GTEST_SKIP() << "no native kernels on this CPU";
  struct Case { uint32_t rows, k, n, weight_bits, cell_bits; bool channel_aligned; AdcGranularity gran; };
  const Case cases[] = {
      {128, 512, 17, 8, 2, false, AdcGranularity::kLayer},
      {128, 300, 9, 8, 2, false, AdcGranularity::kColumn},
      {64, 9 * 20, 8, 8, 2, true, AdcGranularity::kLayer},
      {256, 600, 5, 6, 3, false, AdcGranularity::kColumn},
      {9, 40, 4, 4, 1, false, AdcGranularity::kLayer},
  };
  std::mt19937_64 rng(5);
  for (const auto& L : cases) {
    SCOPED_TRACE("rows " + std::to_string(L.rows) + " k " + std::to_string(L.k));
    const int32_t wmax = (1 << (L.weight_bits - 1)) - 1;
    std::vector<int32_t> w(size_t{L.k} * L.n);
    for (auto& v : w) v = -wmax - 1 + static_cast<int32_t>(rng() % static_cast<uint64_t>(2 * wmax + 2));
    auto tiles = L.channel_aligned ? channel_aligned_row_tiles(L.k / 9, 9, L.rows) : contiguous_row_tiles(L.k, L.rows);
    const ProgrammedCrossbar xbar(w, L.k, L.n, L.weight_bits, L.cell_bits, WeightEncoding::kOffset, tiles);
    const auto groups = input_groups(8, 1, false);
    const BitPlaneCrossbar fast(xbar.cells(), L.k, L.n, xbar.slices(), tiles, groups, 8, KernelPath::kNative);
    const uint32_t G = static_cast<uint32_t>(tiles.size()), N = L.n;
    const uint32_t P = 150;  // several chunks, the last one partial
    std::vector<uint64_t> words(size_t{P} * fast.input_words());
    std::vector<uint32_t> nonzero(size_t{P} * G);
    std::vector<int32_t> x(L.k);
    for (uint32_t p = 0; p < P; ++p) {
      for (auto& v : x) v = rng() % 4 == 0 ? 0 : static_cast<int32_t>(rng() % 256);
      fast.pack_inputs(x.data(), words.data() + p * fast.input_words(), nonzero.data() + p * G);
    }
    const int64_t p_max = fast.psum_bound();
    const uint64_t sets = AdcSpec::sets_for(L.gran, G, xbar.slices().size(), N);
    for (int variant = 0; variant < 4; ++variant) {
      AdcSpec spec = random_linear(rng, sets, p_max);
      spec.granularity = L.gran;
      if (variant == 0) spec.centre_fx.assign(sets, p_max << spec.frac_bits >> 3);  // low saturation
      const auto table = packed_table(spec, sets, 0, p_max);
      std::vector<int32_t> table32(table.begin(), table.end());
      int64_t max_abs = 0;
      for (int64_t e : table) max_abs = std::max(max_abs, std::abs(e >> 1));
      PackedAdcLut lut{table.data(), 0, static_cast<size_t>(p_max + 1), L.gran, table32.data(), max_abs};
      const auto affine = fit_affine_adc(lut, sets, p_max);
      ASSERT_TRUE(affine.has_value());
      std::vector<int64_t> with_lookups(size_t{P} * N, 0), without(size_t{P} * N, 0), quiet(size_t{P} * N, 0);
      FastStats s_lookups, s_affine;
      for (uint32_t p0 = 0; p0 < P; p0 += 64) {
        const uint32_t nb = std::min<uint32_t>(64, P - p0);
        lut.affine = nullptr;
        fast.accumulate(words.data() + p0 * fast.input_words(), nonzero.data() + p0 * G, nb, lut,
                        with_lookups.data() + size_t{p0} * N, &s_lookups);
        lut.affine = &*affine;
        fast.accumulate(words.data() + p0 * fast.input_words(), nonzero.data() + p0 * G, nb, lut,
                        without.data() + size_t{p0} * N, &s_affine);
        fast.accumulate(words.data() + p0 * fast.input_words(), nonzero.data() + p0 * G, nb, lut,
                        quiet.data() + size_t{p0} * N, nullptr);
      }
      // The lookup path itself equals the portable bit-plane kernels (fast_mvm_test checks
      // those against the reference crossbar).
      const BitPlaneCrossbar portable(xbar.cells(), L.k, L.n, xbar.slices(), tiles, groups, 8, KernelPath::kPortable);
      std::vector<int64_t> want(size_t{P} * N, 0);
      FastStats s_want;
      lut.affine = nullptr;
      portable.accumulate(words.data(), nonzero.data(), P, lut, want.data(), &s_want);
      EXPECT_EQ(with_lookups, want);
      EXPECT_EQ(without, want);
      EXPECT_EQ(quiet, want);
      EXPECT_EQ(s_affine.saturations, s_want.saturations);
      EXPECT_EQ(s_lookups.saturations, s_want.saturations);
      EXPECT_EQ(s_affine.psum_min, s_want.psum_min);
      EXPECT_EQ(s_affine.psum_max, s_want.psum_max);
      if (variant == 0) {
        EXPECT_GT(s_want.saturations, 0u);
      }
    }
  }
}

}  // namespace
}  // namespace imcsim::kernels
