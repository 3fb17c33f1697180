// Bit-plane decomposition (docs/SEMANTICS.md steps 2 and 3): input groups (DAC steps), weight
// slices (cells) for every encoding, stored patterns, physical columns per weight column, and
// the reconstruction identities sum sign * 2^bit_lo * value == original for every value in
// range. Expected lists are derived by hand from the contract text (comments give the rule).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "models/crossbar/crossbar.h"
#include "models/crossbar/slicing.h"

namespace imcsim::kernels {
namespace {

struct G { uint32_t bit_lo, nbits; int sign; };
struct S { uint32_t bit_lo, nbits; int sign; uint32_t polarity; };

void expect_groups(const std::vector<InputGroup>& got, const std::vector<G>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].bit_lo, want[i].bit_lo) << "group " << i;
    EXPECT_EQ(got[i].nbits, want[i].nbits) << "group " << i;
    EXPECT_EQ(got[i].sign, want[i].sign) << "group " << i;
  }
}

void expect_slices(const std::vector<WeightSlice>& got, const std::vector<S>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].bit_lo, want[i].bit_lo) << "slice " << i;
    EXPECT_EQ(got[i].nbits, want[i].nbits) << "slice " << i;
    EXPECT_EQ(got[i].sign, want[i].sign) << "slice " << i;
    EXPECT_EQ(got[i].polarity, want[i].polarity) << "slice " << i;
  }
}

constexpr WeightEncoding kAllEncodings[] = {WeightEncoding::kOffset, WeightEncoding::kTwosComplement,
                                            WeightEncoding::kDifferentialDigital,
                                            WeightEncoding::kDifferentialAnalog};

// ---- input groups ----------------------------------------------------------------------------

TEST(InputGroups, Unsigned8Bit1BitDacIsEightSingleBitGroups) {
  // T = ceil(8/1) = 8; group t holds bit t.
  std::vector<G> want;
  for (uint32_t t = 0; t < 8; ++t) want.push_back({t, 1, +1});
  expect_groups(input_groups(8, 1, false), want);
}

TEST(InputGroups, Unsigned8Bit3BitDacLastGroupNarrower) {
  // T = ceil(8/3) = 3: bits [0,3), [3,6), [6,8).
  expect_groups(input_groups(8, 3, false), {{0, 3, +1}, {3, 3, +1}, {6, 2, +1}});
}

TEST(InputGroups, UnsignedDacAsWideAsInputIsOneGroup) {
  expect_groups(input_groups(8, 8, false), {{0, 8, +1}});
  // Bdac > Bx: still one group, clipped to Bx bits.
  expect_groups(input_groups(4, 8, false), {{0, 4, +1}});
}

TEST(InputGroups, Signed8Bit1BitDacIsSevenMagnitudeGroupsPlusSignGroup) {
  // Magnitude bits 0..6 in ceil(7/1) = 7 groups (+1), then bit 7 alone with sign -1.
  std::vector<G> want;
  for (uint32_t t = 0; t < 7; ++t) want.push_back({t, 1, +1});
  want.push_back({7, 1, -1});
  expect_groups(input_groups(8, 1, true), want);
}

TEST(InputGroups, Signed8Bit8BitDacIsOneSevenBitGroupPlusSignGroup) {
  // ceil(7/8) = 1 group of the 7 magnitude bits, then the sign bit.
  expect_groups(input_groups(8, 8, true), {{0, 7, +1}, {7, 1, -1}});
}

TEST(InputGroups, Signed8Bit3BitDac) {
  // Magnitude bits 0..6: [0,3), [3,6), [6,7); sign bit 7.
  expect_groups(input_groups(8, 3, true), {{0, 3, +1}, {3, 3, +1}, {6, 1, +1}, {7, 1, -1}});
}

TEST(InputGroups, GroupValueHandValues) {
  const InputGroup lo{0, 3, +1}, mid{3, 3, +1}, top{6, 2, +1}, sign{7, 1, -1};
  // 0b1011'0110 = 182: bits [0,3) = 0b110 = 6, [3,6) = 0b110 = 6, [6,8) = 0b10 = 2.
  EXPECT_EQ(group_value(182, 8, lo), 6u);
  EXPECT_EQ(group_value(182, 8, mid), 6u);
  EXPECT_EQ(group_value(182, 8, top), 2u);
  // x' = -1: 8-bit two's complement pattern 0xFF: all groups full, sign bit 1.
  EXPECT_EQ(group_value(-1, 8, lo), 7u);
  EXPECT_EQ(group_value(-1, 8, top), 3u);
  EXPECT_EQ(group_value(-1, 8, sign), 1u);
  // x' = -128: pattern 0x80: magnitude bits 0, sign bit 1.
  EXPECT_EQ(group_value(-128, 8, lo), 0u);
  EXPECT_EQ(group_value(-128, 8, InputGroup{0, 7, +1}), 0u);
  EXPECT_EQ(group_value(-128, 8, sign), 1u);
  // x' = 127: pattern 0x7F: magnitude 127, sign 0.
  EXPECT_EQ(group_value(127, 8, InputGroup{0, 7, +1}), 127u);
  EXPECT_EQ(group_value(127, 8, sign), 0u);
}

// Sum over groups of sign * 2^bit_lo * group_value(x') reproduces x'.
int64_t reconstruct_input(int32_t xs, uint32_t bx, const std::vector<InputGroup>& groups) {
  int64_t v = 0;
  for (const auto& g : groups) v += int64_t{g.sign} * (int64_t{1} << g.bit_lo) * group_value(xs, bx, g);
  return v;
}

TEST(InputGroups, UnsignedReconstructionIdentityForEveryCode) {
  for (uint32_t bx = 1; bx <= 10; ++bx)
    for (uint32_t bdac = 1; bdac <= bx + 1; ++bdac) {
      const auto groups = input_groups(bx, bdac, false);
      ASSERT_EQ(groups.size(), (bx + bdac - 1) / bdac);
      for (int32_t x = 0; x < (1 << bx); ++x)
        ASSERT_EQ(reconstruct_input(x, bx, groups), x) << "Bx=" << bx << " Bdac=" << bdac;
    }
}

TEST(InputGroups, SignedReconstructionIdentityForEveryShiftedCode) {
  // x in [0, 2^Bx - 1], a = 2^(Bx-1): x' = x - a covers [-2^(Bx-1), 2^(Bx-1) - 1].
  for (uint32_t bx = 2; bx <= 10; ++bx)
    for (uint32_t bdac = 1; bdac <= bx; ++bdac) {
      const auto groups = input_groups(bx, bdac, true);
      ASSERT_EQ(groups.size(), (bx - 1 + bdac - 1) / bdac + 1);
      const int32_t a = 1 << (bx - 1);
      for (int32_t x = 0; x < (1 << bx); ++x)
        ASSERT_EQ(reconstruct_input(x - a, bx, groups), x - a) << "Bx=" << bx << " Bdac=" << bdac;
    }
}

TEST(InputGroups, SixteenBitInputsSixteenBitDac) {
  // Widest input the loader allows: one group of 16 bits; values up to 65535.
  const auto g = input_groups(16, 16, false);
  expect_groups(g, {{0, 16, +1}});
  EXPECT_EQ(group_value(65535, 16, g[0]), 65535u);
  const auto gs = input_groups(16, 16, true);
  expect_groups(gs, {{0, 15, +1}, {15, 1, -1}});
  EXPECT_EQ(reconstruct_input(-32768, 16, gs), -32768);
  EXPECT_EQ(reconstruct_input(32767, 16, gs), 32767);
}

// ---- weight slices ---------------------------------------------------------------------------

TEST(WeightSlices, Offset8Bit2BitCellsIsFourSlices) {
  // ceil(8/2) = 4 slices of 2 bits, LSB first.
  expect_slices(weight_slices(WeightEncoding::kOffset, 8, 2),
                {{0, 2, +1, 0}, {2, 2, +1, 0}, {4, 2, +1, 0}, {6, 2, +1, 0}});
}

TEST(WeightSlices, Offset8Bit3BitCellsIsThreeSlicesLastNarrower) {
  // ceil(8/3) = 3: bits [0,3), [3,6), [6,8).
  expect_slices(weight_slices(WeightEncoding::kOffset, 8, 3),
                {{0, 3, +1, 0}, {3, 3, +1, 0}, {6, 2, +1, 0}});
}

TEST(WeightSlices, TwosComplement8Bit2BitCells) {
  // Magnitude bits 0..6 in ceil(7/2) = 4 slices of 2,2,2,1 bits, then the 1-bit sign slice
  // (bit 7, sign -1).
  expect_slices(weight_slices(WeightEncoding::kTwosComplement, 8, 2),
                {{0, 2, +1, 0}, {2, 2, +1, 0}, {4, 2, +1, 0}, {6, 1, +1, 0}, {7, 1, -1, 0}});
}

TEST(WeightSlices, TwosComplement8Bit3BitCells) {
  // Magnitude bits 0..6: [0,3), [3,6), [6,7); sign bit 7.
  expect_slices(weight_slices(WeightEncoding::kTwosComplement, 8, 3),
                {{0, 3, +1, 0}, {3, 3, +1, 0}, {6, 1, +1, 0}, {7, 1, -1, 0}});
}

TEST(WeightSlices, DifferentialDigital8Bit2BitCells) {
  // W+ in ceil(7/2) = 4 slices (2,2,2,1 bits, sign +1, polarity 0), then W- likewise with
  // sign -1, polarity 1.
  expect_slices(weight_slices(WeightEncoding::kDifferentialDigital, 8, 2),
                {{0, 2, +1, 0}, {2, 2, +1, 0}, {4, 2, +1, 0}, {6, 1, +1, 0},
                 {0, 2, -1, 1}, {2, 2, -1, 1}, {4, 2, -1, 1}, {6, 1, -1, 1}});
}

TEST(WeightSlices, DifferentialAnalog8Bit2BitCells) {
  // One entry per W+/W- column pair: ceil(7/2) = 4 entries, sign +1.
  expect_slices(weight_slices(WeightEncoding::kDifferentialAnalog, 8, 2),
                {{0, 2, +1, 0}, {2, 2, +1, 0}, {4, 2, +1, 0}, {6, 1, +1, 0}});
}

TEST(WeightSlices, CellWiderThanWeight) {
  // Bw=4, Bc=8: offset 1 slice of 4 bits; two's complement 1 magnitude slice of 3 bits + sign.
  expect_slices(weight_slices(WeightEncoding::kOffset, 4, 8), {{0, 4, +1, 0}});
  expect_slices(weight_slices(WeightEncoding::kTwosComplement, 4, 8), {{0, 3, +1, 0}, {3, 1, -1, 0}});
  expect_slices(weight_slices(WeightEncoding::kDifferentialDigital, 4, 8), {{0, 3, +1, 0}, {0, 3, -1, 1}});
}

TEST(WeightSlices, PhysicalColumnsPerWeightColumn) {
  // OFFSET: S; TWOS: S (incl. sign slice); DIFF_DIGITAL: S (W+ and W- slices are listed);
  // DIFF_ANALOG: 2 x S (each entry is a W+/W- column pair).
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kOffset, 8, 2), 4u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kOffset, 8, 3), 3u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kOffset, 8, 1), 8u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kTwosComplement, 8, 2), 5u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kTwosComplement, 8, 1), 8u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kDifferentialDigital, 8, 2), 8u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kDifferentialDigital, 8, 1), 14u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kDifferentialAnalog, 8, 2), 8u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kDifferentialAnalog, 8, 3), 6u);
  EXPECT_EQ(physical_columns_per_weight_column(WeightEncoding::kDifferentialAnalog, 4, 2), 4u);
}

TEST(StoredWeightPattern, HandValuesForEveryEncoding) {
  using E = WeightEncoding;
  // OFFSET: w + 128 for 8 bits.
  EXPECT_EQ(stored_weight_pattern(E::kOffset, 8, -128, 0), 0u);
  EXPECT_EQ(stored_weight_pattern(E::kOffset, 8, -1, 0), 127u);
  EXPECT_EQ(stored_weight_pattern(E::kOffset, 8, 0, 0), 128u);
  EXPECT_EQ(stored_weight_pattern(E::kOffset, 8, 127, 0), 255u);
  EXPECT_EQ(stored_weight_pattern(E::kOffset, 4, -3, 0), 5u);  // -3 + 8
  // TWOS_COMPLEMENT: w mod 2^Bw.
  EXPECT_EQ(stored_weight_pattern(E::kTwosComplement, 8, -1, 0), 255u);
  EXPECT_EQ(stored_weight_pattern(E::kTwosComplement, 8, -128, 0), 128u);
  EXPECT_EQ(stored_weight_pattern(E::kTwosComplement, 8, 127, 0), 127u);
  EXPECT_EQ(stored_weight_pattern(E::kTwosComplement, 8, 0, 0), 0u);
  EXPECT_EQ(stored_weight_pattern(E::kTwosComplement, 4, -3, 0), 13u);  // 16 - 3
  // DIFFERENTIAL: W+ = max(w,0) on polarity 0, W- = max(-w,0) on polarity 1.
  for (E e : {E::kDifferentialDigital, E::kDifferentialAnalog}) {
    EXPECT_EQ(stored_weight_pattern(e, 8, 5, 0), 5u);
    EXPECT_EQ(stored_weight_pattern(e, 8, 5, 1), 0u);
    EXPECT_EQ(stored_weight_pattern(e, 8, -5, 0), 0u);
    EXPECT_EQ(stored_weight_pattern(e, 8, -5, 1), 5u);
    EXPECT_EQ(stored_weight_pattern(e, 8, -127, 1), 127u);
    EXPECT_EQ(stored_weight_pattern(e, 8, 127, 0), 127u);
    EXPECT_EQ(stored_weight_pattern(e, 8, 0, 0), 0u);
    EXPECT_EQ(stored_weight_pattern(e, 8, 0, 1), 0u);
  }
}

TEST(StoredWeightPattern, SliceValuesHandExample) {
  // w = -1 two's complement 8 bits = 0b1111'1111 with 2-bit cells: magnitude slices 3,3,3,1
  // (bit 6 alone), sign slice 1: 3 + 12 + 48 + 64 - 128 = -1.
  const auto slices = weight_slices(WeightEncoding::kTwosComplement, 8, 2);
  const uint32_t pat = stored_weight_pattern(WeightEncoding::kTwosComplement, 8, -1, 0);
  std::vector<uint32_t> v;
  for (const auto& s : slices) v.push_back(slice_value(pat, s));
  EXPECT_EQ(v, (std::vector<uint32_t>{3, 3, 3, 1, 1}));
  // w = 45 offset 8 bits: 45 + 128 = 173 = 0b10'10'11'01 -> slices 1, 3, 2, 2.
  const auto off = weight_slices(WeightEncoding::kOffset, 8, 2);
  const uint32_t p2 = stored_weight_pattern(WeightEncoding::kOffset, 8, 45, 0);
  v.clear();
  for (const auto& s : off) v.push_back(slice_value(p2, s));
  EXPECT_EQ(v, (std::vector<uint32_t>{1, 3, 2, 2}));
}

// Sum over slices of sign * 2^bit_lo * cell value; the cell value of a DIFFERENTIAL_ANALOG
// entry is (W+ slice) - (W- slice).
int64_t reconstruct_weight(WeightEncoding e, uint32_t bw, uint32_t bc, int32_t w) {
  int64_t v = 0;
  for (const auto& s : weight_slices(e, bw, bc)) {
    int64_t cell;
    if (e == WeightEncoding::kDifferentialAnalog)
      cell = int64_t{slice_value(stored_weight_pattern(e, bw, w, 0), s)} -
             int64_t{slice_value(stored_weight_pattern(e, bw, w, 1), s)};
    else
      cell = slice_value(stored_weight_pattern(e, bw, w, s.polarity), s);
    v += int64_t{s.sign} * (int64_t{1} << s.bit_lo) * cell;
  }
  return v;
}

TEST(WeightSlices, ReconstructionIdentityForEveryWeightAndEncoding) {
  for (WeightEncoding e : kAllEncodings)
    for (uint32_t bw = 2; bw <= 10; ++bw)
      for (uint32_t bc = 1; bc <= 8; ++bc) {
        const bool diff = e == WeightEncoding::kDifferentialDigital ||
                          e == WeightEncoding::kDifferentialAnalog;
        const int32_t lo = -(1 << (bw - 1)) + (diff ? 1 : 0), hi = (1 << (bw - 1)) - 1;
        // OFFSET reconstructs D = W + 2^(Bw-1); the others reconstruct W itself.
        const int64_t bias = e == WeightEncoding::kOffset ? (int64_t{1} << (bw - 1)) : 0;
        for (int32_t w = lo; w <= hi; ++w)
          ASSERT_EQ(reconstruct_weight(e, bw, bc, w) - bias, w)
              << encoding_name(e) << " Bw=" << bw << " Bc=" << bc;
      }
}

TEST(WeightSlices, SliceCountsFollowCeilFormula) {
  for (uint32_t bw = 2; bw <= 16; ++bw)
    for (uint32_t bc = 1; bc <= 8; ++bc) {
      const size_t mag = (bw - 1 + bc - 1) / bc;
      EXPECT_EQ(weight_slices(WeightEncoding::kOffset, bw, bc).size(), (bw + bc - 1) / bc);
      EXPECT_EQ(weight_slices(WeightEncoding::kTwosComplement, bw, bc).size(), mag + 1);
      EXPECT_EQ(weight_slices(WeightEncoding::kDifferentialDigital, bw, bc).size(), 2 * mag);
      EXPECT_EQ(weight_slices(WeightEncoding::kDifferentialAnalog, bw, bc).size(), mag);
    }
}

TEST(EncodingName, Names) {
  EXPECT_STREQ(encoding_name(WeightEncoding::kOffset), "offset");
  EXPECT_STREQ(encoding_name(WeightEncoding::kTwosComplement), "twos_complement");
  EXPECT_STREQ(encoding_name(WeightEncoding::kDifferentialDigital), "differential_digital");
  EXPECT_STREQ(encoding_name(WeightEncoding::kDifferentialAnalog), "differential_analog");
}

// ---- row tiles and the programmed crossbar (steps 3-4) ----------------------------------------

TEST(RowTiles, ContiguousAndChannelAligned) {
  // K = 576, R = 128: [0,128) [128,256) [256,384) [384,512) [512,576).
  const auto c = contiguous_row_tiles(576, 128);
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[4].row_begin, 512u);
  EXPECT_EQ(c[4].row_end, 576u);
  // 64 channels of 9 taps, R = 128: cpt = 14 -> channels 14,14,14,14,8 -> rows 126 x4, 72.
  const auto a = channel_aligned_row_tiles(64, 9, 128);
  ASSERT_EQ(a.size(), 5u);
  for (int g = 0; g < 4; ++g) {
    EXPECT_EQ(a[g].row_begin, 126u * g);
    EXPECT_EQ(a[g].rows(), 126u);
  }
  EXPECT_EQ(a[4].row_begin, 504u);
  EXPECT_EQ(a[4].row_end, 576u);
  // cpt capped at Cin: 3 channels of 1 tap in 128 rows -> one tile of 3 rows.
  const auto one = channel_aligned_row_tiles(3, 1, 128);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].rows(), 3u);
  // K exactly a multiple of R.
  EXPECT_EQ(contiguous_row_tiles(256, 128).size(), 2u);
}

TEST(ProgrammedCrossbar, PartialSumsHandExample) {
  // K = 3 rows, N = 2 columns, Bw = 4 two's complement, Bc = 2: slices {0,2,+}, {2,1,+}, {3,1,-}.
  // Weights [N][K]: column 0 = (-1, 3, 5), column 1 = (2, -8, 7).
  // Patterns (mod 16): -1 -> 15 = 1111, 3 -> 0011, 5 -> 0101; 2 -> 0010, -8 -> 1000, 7 -> 0111.
  // Cells [slice]: col0: s0 = (3,3,1), s1 = (1,0,1), s2 = (1,0,0);
  //                col1: s0 = (2,0,3), s1 = (0,0,1), s2 = (0,1,0).
  const std::vector<int32_t> w = {-1, 3, 5, 2, -8, 7};
  ProgrammedCrossbar xb(w, 3, 2, 4, 2, WeightEncoding::kTwosComplement, contiguous_row_tiles(3, 2));
  ASSERT_EQ(xb.tiles().size(), 2u);  // rows [0,2), [2,3)
  EXPECT_EQ(xb.cell(0, 0, 0), 3);
  EXPECT_EQ(xb.cell(2, 1, 1), 1);
  EXPECT_EQ(xb.cell(1, 2, 1), 1);
  const std::vector<uint16_t> u = {2, 1, 3};
  std::vector<int32_t> ps(3 * 2);
  // Tile 0 (rows 0,1): s0: col0 = 2*3 + 1*3 = 9, col1 = 2*2 + 0 = 4; s1: col0 = 2, col1 = 0;
  // s2: col0 = 2, col1 = 1.
  xb.partial_sums(0, u, ps);
  EXPECT_EQ(ps, (std::vector<int32_t>{9, 4, 2, 0, 2, 1}));
  // Tile 1 (row 2, u = 3): s0: 3, 9; s1: 3, 3; s2: 0, 0.
  xb.partial_sums(1, u, ps);
  EXPECT_EQ(ps, (std::vector<int32_t>{3, 9, 3, 3, 0, 0}));
}

TEST(ProgrammedCrossbar, DifferentialAnalogCellsAreSigned) {
  // Bw = 4, Bc = 2, differential analog: entries {0,2}, {2,1}. w = -6: W- = 6 = 110 -> cells
  // (0 - 2, 0 - 1) = (-2, -1); w = 5: W+ = 101 -> (1, 1).
  const std::vector<int32_t> w = {-6, 5};
  ProgrammedCrossbar xb(w, 2, 1, 4, 2, WeightEncoding::kDifferentialAnalog, contiguous_row_tiles(2, 8));
  EXPECT_EQ(xb.cell(0, 0, 0), -2);
  EXPECT_EQ(xb.cell(0, 1, 0), -1);
  EXPECT_EQ(xb.cell(1, 0, 0), 1);
  EXPECT_EQ(xb.cell(1, 1, 0), 1);
  const std::vector<uint16_t> u = {3, 1};
  std::vector<int32_t> ps(2);
  xb.partial_sums(0, u, ps);
  // s0: 3*(-2) + 1*1 = -5; s1: 3*(-1) + 1*1 = -2.
  EXPECT_EQ(ps, (std::vector<int32_t>{-5, -2}));
}

}  // namespace
}  // namespace imcsim::kernels
