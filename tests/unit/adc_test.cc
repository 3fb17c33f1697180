// ADC numerics (docs/SEMANTICS.md step 6): floor_div, IDEAL, LINEAR with FLOOR and HALF_AWAY
// rounding (F = 0 and F > 0), clipping for unsigned and signed codes, value reconstruction,
// NONLINEAR threshold tables at exact boundaries, and parameter-set indexing. Every expected
// value is derived by hand in the comment next to it.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "models/adc/adc.h"

namespace imcsim::kernels {
namespace {

AdcSpec linear(uint32_t bits, uint32_t frac, AdcRounding r, bool signed_codes,
               std::vector<int64_t> step, std::vector<int64_t> centre) {
  AdcSpec s;
  s.kind = AdcKind::kLinear;
  s.bits = bits;
  s.frac_bits = frac;
  s.rounding = r;
  s.signed_codes = signed_codes;
  s.step_fx = std::move(step);
  s.centre_fx = std::move(centre);
  return s;
}

constexpr auto kFloor = AdcRounding::kFloor;
constexpr auto kHalf = AdcRounding::kHalfAway;

TEST(FloorDiv, MatchesPythonFloorDivision) {
  // Python: 7//2 = 3, -7//2 = -4, -6//2 = -3, -1//4 = -1, 1//4 = 0, 0//5 = 0, -8//4 = -2,
  // -9//4 = -3.
  EXPECT_EQ(floor_div(7, 2), 3);
  EXPECT_EQ(floor_div(-7, 2), -4);
  EXPECT_EQ(floor_div(-6, 2), -3);
  EXPECT_EQ(floor_div(-1, 4), -1);
  EXPECT_EQ(floor_div(1, 4), 0);
  EXPECT_EQ(floor_div(0, 5), 0);
  EXPECT_EQ(floor_div(-8, 4), -2);
  EXPECT_EQ(floor_div(-9, 4), -3);
  EXPECT_EQ(floor_div(int64_t{1} << 50, 3), ((int64_t{1} << 50) - 1) / 3);  // 2^50 = 1 mod 3
  EXPECT_EQ(floor_div(-(int64_t{1} << 50), 3), -((int64_t{1} << 50) + 2) / 3);
}

TEST(AdcIdeal, CodeIsPartialSumValueIsScaled) {
  AdcSpec s;  // IDEAL
  EXPECT_EQ(adc_convert(s, 0, 37).code, 37);
  EXPECT_EQ(adc_convert(s, 0, 37).value_fx, 37);
  EXPECT_EQ(adc_convert(s, 0, -5).code, -5);
  s.frac_bits = 3;  // value_fx = p * 2^F
  EXPECT_EQ(adc_convert(s, 0, 37).code, 37);
  EXPECT_EQ(adc_convert(s, 0, 37).value_fx, 296);
  EXPECT_EQ(adc_convert(s, 0, -5).value_fx, -40);
}

TEST(AdcLinear, FloorAndHalfAwayOnHandValuesFracZero) {
  // F = 0, step 4, centre 0, 8-bit signed codes (no clipping here).
  const auto fl = linear(8, 0, kFloor, true, {4}, {0});
  const auto ha = linear(8, 0, kHalf, true, {4}, {0});
  // p = 6: 6/4 = 1.5 -> floor 1; half-away floor_div(12 + 4, 8) = 2.
  EXPECT_EQ(adc_convert(fl, 0, 6).code, 1);
  EXPECT_EQ(adc_convert(ha, 0, 6).code, 2);
  // value_fx = centre + code * step.
  EXPECT_EQ(adc_convert(fl, 0, 6).value_fx, 4);
  EXPECT_EQ(adc_convert(ha, 0, 6).value_fx, 8);
  // p = -6: -1.5 -> floor -2; half-away -(floor_div(12 + 4, 8)) = -2.
  EXPECT_EQ(adc_convert(fl, 0, -6).code, -2);
  EXPECT_EQ(adc_convert(ha, 0, -6).code, -2);
  EXPECT_EQ(adc_convert(ha, 0, -6).value_fx, -8);
  // p = -5: -1.25 -> floor -2; half-away -(floor_div(10 + 4, 8)) = -1.
  EXPECT_EQ(adc_convert(fl, 0, -5).code, -2);
  EXPECT_EQ(adc_convert(ha, 0, -5).code, -1);
  EXPECT_EQ(adc_convert(ha, 0, -5).value_fx, -4);
  // p = 5: 1.25 -> floor 1, half-away floor_div(14, 8) = 1. p = 7: 1.75 -> 1 / floor_div(18,8) = 2.
  EXPECT_EQ(adc_convert(fl, 0, 5).code, 1);
  EXPECT_EQ(adc_convert(ha, 0, 5).code, 1);
  EXPECT_EQ(adc_convert(fl, 0, 7).code, 1);
  EXPECT_EQ(adc_convert(ha, 0, 7).code, 2);
  // p = -2: -0.5 -> floor -1; half-away -(floor_div(4 + 4, 8)) = -1. p = 2: 0 / 1.
  EXPECT_EQ(adc_convert(fl, 0, -2).code, -1);
  EXPECT_EQ(adc_convert(ha, 0, -2).code, -1);
  EXPECT_EQ(adc_convert(fl, 0, 2).code, 0);
  EXPECT_EQ(adc_convert(ha, 0, 2).code, 1);
  // p = 0 -> 0 either way.
  EXPECT_EQ(adc_convert(fl, 0, 0).code, 0);
  EXPECT_EQ(adc_convert(ha, 0, 0).code, 0);
}

TEST(AdcLinear, NonZeroCentre) {
  // F = 0, step 4, centre 10, signed 8-bit.
  const auto fl = linear(8, 0, kFloor, true, {4}, {10});
  const auto ha = linear(8, 0, kHalf, true, {4}, {10});
  // p = 3: num = -7, -1.75 -> floor -2; half-away -(floor_div(14 + 4, 8)) = -2; value 10 - 8 = 2.
  EXPECT_EQ(adc_convert(fl, 0, 3).code, -2);
  EXPECT_EQ(adc_convert(ha, 0, 3).code, -2);
  EXPECT_EQ(adc_convert(fl, 0, 3).value_fx, 2);
  // p = 20: num = 10, 2.5 -> floor 2 (value 18); half-away floor_div(24, 8) = 3 (value 22).
  EXPECT_EQ(adc_convert(fl, 0, 20).code, 2);
  EXPECT_EQ(adc_convert(fl, 0, 20).value_fx, 18);
  EXPECT_EQ(adc_convert(ha, 0, 20).code, 3);
  EXPECT_EQ(adc_convert(ha, 0, 20).value_fx, 22);
  // p = 0: num = -10, -2.5 -> floor -3 (value -2); half-away -3 (value -2).
  EXPECT_EQ(adc_convert(fl, 0, 0).code, -3);
  EXPECT_EQ(adc_convert(ha, 0, 0).code, -3);
  EXPECT_EQ(adc_convert(ha, 0, 0).value_fx, -2);
}

TEST(AdcLinear, FractionalStep) {
  // F = 2: v = 4p. step_fx = 6 (1.5 LSB), centre_fx = 1 (0.25 LSB), signed 8-bit.
  const auto fl = linear(8, 2, kFloor, true, {6}, {1});
  const auto ha = linear(8, 2, kHalf, true, {6}, {1});
  // p = 1: num = 3, 0.5 -> floor 0 (value 1); half-away floor_div(6 + 6, 12) = 1 (value 7).
  EXPECT_EQ(adc_convert(fl, 0, 1).code, 0);
  EXPECT_EQ(adc_convert(fl, 0, 1).value_fx, 1);
  EXPECT_EQ(adc_convert(ha, 0, 1).code, 1);
  EXPECT_EQ(adc_convert(ha, 0, 1).value_fx, 7);
  // p = 5: num = 19, 3.1667 -> floor 3 (value 19); half-away floor_div(38 + 6, 12) = 3.
  EXPECT_EQ(adc_convert(fl, 0, 5).code, 3);
  EXPECT_EQ(adc_convert(fl, 0, 5).value_fx, 19);
  EXPECT_EQ(adc_convert(ha, 0, 5).code, 3);
  // p = 4: num = 15, 2.5 -> floor 2 (value 13); half-away floor_div(30 + 6, 12) = 3 (value 19).
  EXPECT_EQ(adc_convert(fl, 0, 4).code, 2);
  EXPECT_EQ(adc_convert(ha, 0, 4).code, 3);
  EXPECT_EQ(adc_convert(ha, 0, 4).value_fx, 19);
  // p = -1: num = -5, -0.833 -> floor -1 (value -5); half-away -(floor_div(10 + 6, 12)) = -1.
  EXPECT_EQ(adc_convert(fl, 0, -1).code, -1);
  EXPECT_EQ(adc_convert(fl, 0, -1).value_fx, -5);
  EXPECT_EQ(adc_convert(ha, 0, -1).code, -1);
  // p = -2: num = -9, -1.5 -> floor -2 (value -11); half-away -(floor_div(18 + 6, 12)) = -2.
  EXPECT_EQ(adc_convert(fl, 0, -2).code, -2);
  EXPECT_EQ(adc_convert(fl, 0, -2).value_fx, -11);
  EXPECT_EQ(adc_convert(ha, 0, -2).code, -2);
}

TEST(AdcLinear, ClippingUnsignedCodes) {
  // B = 3 unsigned: codes [0, 7]. step 1, centre 0, F = 0.
  for (auto r : {kFloor, kHalf}) {
    const auto s = linear(3, 0, r, false, {1}, {0});
    EXPECT_EQ(s.code_min(), 0);
    EXPECT_EQ(s.code_max(), 7);
    EXPECT_EQ(adc_convert(s, 0, 7).code, 7);
    EXPECT_EQ(adc_convert(s, 0, 8).code, 7);
    EXPECT_EQ(adc_convert(s, 0, 8).value_fx, 7);
    EXPECT_EQ(adc_convert(s, 0, 100000).code, 7);
    EXPECT_EQ(adc_convert(s, 0, -1).code, 0);
    EXPECT_EQ(adc_convert(s, 0, -1).value_fx, 0);
    EXPECT_EQ(adc_convert(s, 0, 0).code, 0);
  }
  // B = 2 unsigned, step 3, centre -2 (value_fx = -2 + 3 code): p = 20 -> r = floor(22/3) = 7
  // -> clipped to 3 -> value 7.
  const auto s = linear(2, 0, kFloor, false, {3}, {-2});
  EXPECT_EQ(adc_convert(s, 0, 20).code, 3);
  EXPECT_EQ(adc_convert(s, 0, 20).value_fx, 7);
  // p = -3 -> r = floor(-1/3) = -1 -> clipped to 0 -> value -2.
  EXPECT_EQ(adc_convert(s, 0, -3).code, 0);
  EXPECT_EQ(adc_convert(s, 0, -3).value_fx, -2);
}

TEST(AdcLinear, ClippingSignedCodes) {
  // B = 3 signed: codes [-4, 3]. step 2, centre 0, F = 0.
  const auto s = linear(3, 0, kFloor, true, {2}, {0});
  EXPECT_EQ(s.code_min(), -4);
  EXPECT_EQ(s.code_max(), 3);
  EXPECT_EQ(adc_convert(s, 0, 7).code, 3);     // floor(3.5) = 3, in range
  EXPECT_EQ(adc_convert(s, 0, 8).code, 3);     // 4 -> clipped to 3
  EXPECT_EQ(adc_convert(s, 0, 8).value_fx, 6);
  EXPECT_EQ(adc_convert(s, 0, -8).code, -4);   // -4, in range
  EXPECT_EQ(adc_convert(s, 0, -9).code, -4);   // floor(-4.5) = -5 -> -4
  EXPECT_EQ(adc_convert(s, 0, -9).value_fx, -8);
  EXPECT_EQ(adc_convert(s, 0, -1000).code, -4);
  // B = 1 signed: codes [-1, 0].
  const auto one = linear(1, 0, kHalf, true, {1}, {0});
  EXPECT_EQ(one.code_min(), -1);
  EXPECT_EQ(one.code_max(), 0);
  EXPECT_EQ(adc_convert(one, 0, 5).code, 0);
  EXPECT_EQ(adc_convert(one, 0, -5).code, -1);
  // B = 16 unsigned / signed bounds.
  EXPECT_EQ(linear(16, 0, kFloor, false, {1}, {0}).code_max(), 65535);
  EXPECT_EQ(linear(16, 0, kFloor, true, {1}, {0}).code_min(), -32768);
  EXPECT_EQ(linear(16, 0, kFloor, true, {1}, {0}).code_max(), 32767);
}

TEST(AdcLinear, ValueIsCentrePlusCodeTimesStepForEveryPartialSum) {
  // Exhaustive consistency over a range: value_fx == centre + code * step and code in range,
  // and FLOOR code == floor((v - c) / step) when not clipped.
  const auto s = linear(4, 1, kFloor, true, {3}, {-5});
  for (int64_t p = -40; p <= 40; ++p) {
    const auto r = adc_convert(s, 0, p);
    EXPECT_EQ(r.value_fx, -5 + r.code * 3);
    EXPECT_GE(r.code, -8);
    EXPECT_LE(r.code, 7);
    const int64_t unclipped = floor_div(2 * p + 5, 3);
    if (unclipped >= -8 && unclipped <= 7) {
      EXPECT_EQ(r.code, unclipped) << p;
    }
  }
}

TEST(AdcLinear, PerSetParameters) {
  // Two sets: set 0 step 2 centre 0, set 1 step 5 centre 1. p = 11:
  // set 0: floor(11/2) = 5 -> value 10; set 1: floor(10/5) = 2 -> value 11.
  const auto s = linear(8, 0, kFloor, false, {2, 5}, {0, 1});
  EXPECT_EQ(adc_convert(s, 0, 11).code, 5);
  EXPECT_EQ(adc_convert(s, 0, 11).value_fx, 10);
  EXPECT_EQ(adc_convert(s, 1, 11).code, 2);
  EXPECT_EQ(adc_convert(s, 1, 11).value_fx, 11);
}

AdcSpec nonlinear(uint32_t bits, uint32_t frac, std::vector<int64_t> thr, std::vector<int64_t> lev) {
  AdcSpec s;
  s.kind = AdcKind::kNonlinear;
  s.bits = bits;
  s.frac_bits = frac;
  s.thresholds_fx = std::move(thr);
  s.levels_fx = std::move(lev);
  return s;
}

TEST(AdcNonlinear, CodeCountsThresholdsAtOrBelowValue) {
  // B = 2: thresholds {-3, 0, 5}, levels {-10, -1, 2, 9}; code = #{i : v >= t_i}.
  const auto s = nonlinear(2, 0, {-3, 0, 5}, {-10, -1, 2, 9});
  struct Case { int64_t p, code, value; };
  for (const Case c : {Case{-100, 0, -10}, Case{-4, 0, -10}, Case{-3, 1, -1}, Case{-1, 1, -1},
                       Case{0, 2, 2}, Case{4, 2, 2}, Case{5, 3, 9}, Case{6, 3, 9}, Case{1000, 3, 9}}) {
    const auto r = adc_convert(s, 0, c.p);
    EXPECT_EQ(r.code, c.code) << "p=" << c.p;
    EXPECT_EQ(r.value_fx, c.value) << "p=" << c.p;
  }
}

TEST(AdcNonlinear, FracBitsScaleTheComparedValue) {
  // F = 1: v = 2p. thresholds {3, 4, 8}: p = 1 (v 2) -> 0; p = 2 (v 4) -> 2 (4 >= 3, 4 >= 4);
  // p = 4 (v 8) -> 3.
  const auto s = nonlinear(2, 1, {3, 4, 8}, {0, 10, 20, 30});
  EXPECT_EQ(adc_convert(s, 0, 1).code, 0);
  EXPECT_EQ(adc_convert(s, 0, 2).code, 2);
  EXPECT_EQ(adc_convert(s, 0, 2).value_fx, 20);
  EXPECT_EQ(adc_convert(s, 0, 4).code, 3);
}

TEST(AdcNonlinear, SecondParameterSetAndEveryBoundaryOf3BitTable) {
  // Two sets of B = 1 (1 threshold, 2 levels): set 0 t = {0}, set 1 t = {10}.
  const auto s = nonlinear(1, 0, {0, 10}, {-1, 1, 100, 200});
  EXPECT_EQ(adc_convert(s, 0, 0).value_fx, 1);
  EXPECT_EQ(adc_convert(s, 1, 0).value_fx, 100);
  EXPECT_EQ(adc_convert(s, 1, 10).value_fx, 200);
  EXPECT_EQ(adc_convert(s, 1, 9).value_fx, 100);
  // B = 3: thresholds t_i = 10 i (i = 0..6), levels 100 + j. At v = t_i exactly the code is
  // i + 1; just below it, i.
  std::vector<int64_t> thr, lev;
  for (int i = 0; i < 7; ++i) thr.push_back(10 * i);
  for (int j = 0; j < 8; ++j) lev.push_back(100 + j);
  const auto b3 = nonlinear(3, 0, thr, lev);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(adc_convert(b3, 0, 10 * i).code, i + 1);
    EXPECT_EQ(adc_convert(b3, 0, 10 * i - 1).code, i);
    EXPECT_EQ(adc_convert(b3, 0, 10 * i).value_fx, 100 + i + 1);
  }
}

TEST(AdcSpec, SetsAndSetIndex) {
  // LAYER: 1 set, index 0; COLUMN: N sets, index n; SLICE_TILE_COLUMN: G*S*N sets,
  // index (g*S + s)*N + n.
  EXPECT_EQ(AdcSpec::sets_for(AdcGranularity::kLayer, 3, 4, 5), 1u);
  EXPECT_EQ(AdcSpec::sets_for(AdcGranularity::kColumn, 3, 4, 5), 5u);
  EXPECT_EQ(AdcSpec::sets_for(AdcGranularity::kSliceTileColumn, 3, 4, 5), 60u);
  AdcSpec s;
  s.granularity = AdcGranularity::kLayer;
  EXPECT_EQ(s.set_index(2, 1, 3, 4, 5), 0u);
  s.granularity = AdcGranularity::kColumn;
  EXPECT_EQ(s.set_index(2, 1, 3, 4, 5), 3u);
  s.granularity = AdcGranularity::kSliceTileColumn;
  EXPECT_EQ(s.set_index(2, 1, 3, 4, 5), 48u);  // (2*4 + 1)*5 + 3
  EXPECT_EQ(s.set_index(0, 0, 0, 4, 5), 0u);
  EXPECT_EQ(s.set_index(2, 3, 4, 4, 5), 59u);  // last of 60
  // All indices over (g, s, n) are distinct and cover [0, G*S*N).
  std::vector<int> seen(60, 0);
  for (uint64_t g = 0; g < 3; ++g)
    for (uint64_t sl = 0; sl < 4; ++sl)
      for (uint64_t n = 0; n < 5; ++n) ++seen[s.set_index(g, sl, n, 4, 5)];
  for (int c : seen) EXPECT_EQ(c, 1);
}

TEST(AdcSpec, NamesAndLevels) {
  EXPECT_STREQ(adc_kind_name(AdcKind::kIdeal), "ideal");
  EXPECT_STREQ(adc_kind_name(AdcKind::kLinear), "linear");
  EXPECT_STREQ(adc_kind_name(AdcKind::kNonlinear), "nonlinear");
  EXPECT_STREQ(adc_rounding_name(AdcRounding::kFloor), "floor");
  EXPECT_STREQ(adc_rounding_name(AdcRounding::kHalfAway), "half_away");
  EXPECT_STREQ(adc_granularity_name(AdcGranularity::kSliceTileColumn), "slice_tile_column");
  AdcSpec s;
  s.bits = 5;
  EXPECT_EQ(s.levels(), 32u);
}

}  // namespace
}  // namespace imcsim::kernels
