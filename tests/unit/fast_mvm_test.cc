// Fast bit-plane kernels (models/crossbar/fast_mvm.h) against the row-by-row crossbar
// (ProgrammedCrossbar::partial_sums) and a direct evaluation of the ADC table and shift-add,
// on random layers covering every weight encoding, cell width, DAC width (one-bit and wider
// groups), A-shift, array heights from 9 to 300 rows (1 to 5 words per bit plane), contiguous
// and channel-aligned tiles, signed cells (analog differential pairs) and every ADC granularity,
// on both the portable and (where the CPU has it) the native path. Also the path selection.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "models/crossbar/crossbar.h"
#include "models/crossbar/fast_mvm.h"
#include "models/crossbar/slicing.h"
#include "tests/support/kernel_paths.h"
#include "models/digital/requant.h"

namespace imcsim::kernels {
namespace {

std::vector<KernelPath> fast_paths() { return test::fast_kernel_paths(); }

struct Layer {
  WeightEncoding encoding;
  uint32_t weight_bits, cell_bits, input_bits, dac_bits, rows, k, n;
  bool ashift, channel_aligned;
};

TEST(FastMvm, MatchesRowByRowCrossbarAndDirectShiftAdd) {
  const Layer layers[] = {
      {WeightEncoding::kOffset, 8, 2, 8, 1, 128, 512, 17, false, false},
      {WeightEncoding::kOffset, 8, 2, 8, 1, 64, 200, 9, false, false},
      {WeightEncoding::kTwosComplement, 8, 3, 8, 2, 100, 250, 5, true, false},
      {WeightEncoding::kDifferentialDigital, 6, 2, 5, 3, 256, 600, 7, false, false},
      {WeightEncoding::kDifferentialAnalog, 8, 2, 8, 1, 128, 300, 6, true, false},
      {WeightEncoding::kDifferentialAnalog, 5, 4, 4, 4, 300, 700, 3, false, false},
      {WeightEncoding::kOffset, 4, 1, 8, 8, 9, 40, 4, false, false},
      {WeightEncoding::kOffset, 8, 2, 8, 1, 128, 9 * 20, 8, false, true},  // 3x3 taps, 20 channels
  };
  std::mt19937_64 rng(7);
  for (const auto& L : layers) {
    SCOPED_TRACE("encoding " + std::string(encoding_name(L.encoding)) + " rows " + std::to_string(L.rows) +
                 " dac " + std::to_string(L.dac_bits));
    const int32_t wmax = (1 << (L.weight_bits - 1)) - 1;
    const int32_t wmin = L.encoding == WeightEncoding::kOffset || L.encoding == WeightEncoding::kTwosComplement
                             ? -wmax - 1 : -wmax;
    std::vector<int32_t> w(size_t{L.k} * L.n);
    for (auto& v : w) v = wmin + static_cast<int32_t>(rng() % static_cast<uint64_t>(wmax - wmin + 1));
    auto tiles = L.channel_aligned ? channel_aligned_row_tiles(L.k / 9, 9, L.rows) : contiguous_row_tiles(L.k, L.rows);
    const ProgrammedCrossbar xbar(w, L.k, L.n, L.weight_bits, L.cell_bits, L.encoding, tiles);
    const auto groups = input_groups(L.input_bits, L.dac_bits, L.ashift);
    const uint32_t G = static_cast<uint32_t>(tiles.size()), S = static_cast<uint32_t>(xbar.slices().size()),
                   T = static_cast<uint32_t>(groups.size()), N = L.n;
    // Inputs: A-shifted codes, a third of them zero (and one all-zero position) to exercise skipping.
    const uint32_t P = 5;
    std::vector<std::vector<int32_t>> xs(P, std::vector<int32_t>(L.k));
    const int32_t a = L.ashift ? 1 << (L.input_bits - 1) : 0;
    for (uint32_t p = 1; p < P; ++p)
      for (auto& x : xs[p]) x = rng() % 3 == 0 ? 0 : static_cast<int32_t>(rng() % (1u << L.input_bits)) - a;
    for (auto& x : xs[0]) x = L.ashift ? -a : 0;
    if (L.ashift) xs[0][0] = 0;

    for (const auto path : fast_paths()) {
      SCOPED_TRACE(kernel_path_name(path));
      const BitPlaneCrossbar fast(xbar.cells(), L.k, N, xbar.slices(), tiles, groups, L.input_bits, path);
      std::vector<uint64_t> words(size_t{P} * fast.input_words());
      std::vector<uint32_t> nonzero(size_t{P} * G);
      // Reference partial sums [p][g][s][t][n] and row drives.
      std::vector<int64_t> ref(size_t{P} * G * S * T * N);
      uint64_t want_drives = 0, got_drives = 0;
      int64_t pmin = INT64_MAX, pmax = INT64_MIN;
      for (uint32_t p = 0; p < P; ++p) {
        got_drives += fast.pack_inputs(xs[p].data(), words.data() + p * fast.input_words(), nonzero.data() + p * G);
        std::vector<uint16_t> u(L.k);
        std::vector<int32_t> ps(size_t{S} * N), fs(size_t{S} * N);
        for (uint32_t g = 0; g < G; ++g)
          for (uint32_t t = 0; t < T; ++t) {
            for (uint32_t k = 0; k < L.k; ++k) u[k] = static_cast<uint16_t>(group_value(xs[p][k], L.input_bits, groups[t]));
            for (uint32_t k = tiles[g].row_begin; k < tiles[g].row_end; ++k) want_drives += u[k] != 0;
            xbar.partial_sums(g, u, ps);
            fast.partial_sums(words.data() + p * fast.input_words(), g, t, fs.data());
            ASSERT_EQ(fs, ps) << "position " << p << " tile " << g << " group " << t;
            bool any = false;
            for (uint32_t k = tiles[g].row_begin; k < tiles[g].row_end; ++k) any = any || u[k] != 0;
            EXPECT_EQ((nonzero[p * G + g] >> t) & 1u, any ? 1u : 0u);
            for (uint32_t s = 0; s < S; ++s)
              for (uint32_t n = 0; n < N; ++n) {
                const int64_t v = ps[s * N + n];
                ref[(((size_t{p} * G + g) * S + s) * T + t) * N + n] = v;
                pmin = std::min(pmin, v);
                pmax = std::max(pmax, v);
              }
          }
      }
      EXPECT_EQ(got_drives, want_drives);
      ASSERT_LE(pmax, fast.psum_bound());
      ASSERT_GE(pmin, -fast.psum_bound());
      // A random table per granularity over [-bound, bound]: value in [-2^40, 2^40) (64-bit
      // kernels), or in [-2^20, 2^20) with its int32 copy (the native nibble kernel where it
      // applies: one-bit groups, non-negative cells), saturation bit.
      for (const bool narrow : {false, true})
      for (const auto gran : {AdcGranularity::kLayer, AdcGranularity::kColumn, AdcGranularity::kSliceTileColumn}) {
        SCOPED_TRACE(std::string(adc_granularity_name(gran)) + (narrow ? " int32 table" : ""));
        const int64_t lo = -fast.psum_bound();
        const size_t size = static_cast<size_t>(2 * fast.psum_bound() + 1);
        const uint64_t sets = AdcSpec::sets_for(gran, G, S, N);
        std::vector<int64_t> table(sets * size);
        const uint32_t bits = narrow ? 21 : 41;
        for (auto& e : table) e = static_cast<int64_t>(rng() % (uint64_t{1} << bits)) - (int64_t{1} << (bits - 1));
        std::vector<int32_t> table32(narrow ? table.size() : 0);
        int64_t max_abs = 0;
        for (size_t i = 0; i < table32.size(); ++i) {
          table32[i] = static_cast<int32_t>(table[i]);
          max_abs = std::max(max_abs, std::abs(table[i] >> 1));
        }
        const PackedAdcLut lut{table.data(), lo, size, gran, narrow ? table32.data() : nullptr, max_abs};
        AdcSpec spec;
        spec.granularity = gran;
        std::vector<int64_t> want(size_t{P} * N, 0), got(size_t{P} * N, 0);
        uint64_t want_sat = 0;
        for (uint32_t p = 0; p < P; ++p)
          for (uint32_t g = 0; g < G; ++g)
            for (uint32_t s = 0; s < S; ++s)
              for (uint32_t t = 0; t < T; ++t)
                for (uint32_t n = 0; n < N; ++n) {
                  const int64_t v = ref[(((size_t{p} * G + g) * S + s) * T + t) * N + n];
                  const int64_t e = table[spec.set_index(g, s, n, S, N) * size + static_cast<size_t>(v - lo)];
                  const int64_t wst = int64_t{xbar.slices()[s].sign} * groups[t].sign *
                                      (int64_t{1} << (xbar.slices()[s].bit_lo + groups[t].bit_lo));
                  want[size_t{p} * N + n] += wst * (e >> 1);
                  want_sat += static_cast<uint64_t>(e & 1);
                }
        FastStats stats;
        // Two calls (batches of 3 and 2 positions) accumulate like one.
        fast.accumulate(words.data(), nonzero.data(), 3, lut, got.data(), &stats);
        fast.accumulate(words.data() + 3 * fast.input_words(), nonzero.data() + 3 * G, 2, lut, got.data() + 3 * N,
                        &stats);
        EXPECT_EQ(got, want);
        EXPECT_EQ(stats.saturations, want_sat);
        EXPECT_EQ(stats.psum_min, pmin);
        EXPECT_EQ(stats.psum_max, pmax);
        std::vector<int64_t> quiet(size_t{P} * N, 0);
        fast.accumulate(words.data(), nonzero.data(), P, lut, quiet.data(), nullptr);
        EXPECT_EQ(quiet, want);
      }
    }
  }
}

// pack_gathered (x'[k] = src[offsets[k]], the engine's im2col) and the native AVX2 packing
// equal the portable pack_inputs of the gathered vector: words, group masks, row drives and the
// input sum; on tiles of 1..300 rows (tails of 8, 32 and 64 rows), inputs of 1 to 16 bits,
// one-bit and wider DAC groups, A-shifted (negative) values and values wider than the input
// (masked), and all-zero tiles.
TEST(FastMvm, PackGatheredEqualsPortablePackInputs) {
  struct Case {
    uint32_t input_bits, dac_bits, rows, k;
    bool ashift;
  };
  const Case cases[] = {{8, 1, 128, 72, false},  {8, 1, 64, 200, true},   {8, 2, 100, 250, false},
                        {4, 3, 9, 40, true},     {1, 1, 31, 95, false},   {9, 1, 300, 700, false},
                        {12, 4, 33, 130, true},  {16, 8, 72, 144, false}, {16, 1, 128, 511, true},
                        {8, 8, 65, 66, false},   {5, 2, 7, 7, false}};
  std::mt19937_64 rng(11);
  for (const auto& c : cases) {
    SCOPED_TRACE("bits " + std::to_string(c.input_bits) + " dac " + std::to_string(c.dac_bits) + " rows " +
                 std::to_string(c.rows) + " k " + std::to_string(c.k));
    const uint32_t N = 3;
    std::vector<int32_t> w(size_t{c.k} * N);
    for (auto& v : w) v = static_cast<int32_t>(rng() % 255) - 127;
    const auto tiles = contiguous_row_tiles(c.k, c.rows);
    const ProgrammedCrossbar xbar(w, c.k, N, 8, 2, WeightEncoding::kOffset, tiles);
    const auto groups = input_groups(c.input_bits, c.dac_bits, c.ashift);
    const uint32_t G = static_cast<uint32_t>(tiles.size());
    // Source: 3K elements; offsets: a random permutation-like choice of them.
    std::vector<int32_t> src(size_t{3} * c.k), offsets(c.k), xs(c.k);
    const int32_t a = c.ashift ? 1 << (c.input_bits - 1) : 0;
    for (int trial = 0; trial < 6; ++trial) {
      for (auto& x : src) {
        const uint64_t r = rng() % 8;
        x = r < 3 ? -a : r < 7 ? static_cast<int32_t>(rng() % (1u << c.input_bits)) - a
                               : static_cast<int32_t>(rng() % (1u << 24)) - (1 << 23);  // wider than the input
        if (trial == 0) x = c.ashift ? -a : 0;  // all-zero patterns (nonzero masks 0)
      }
      int64_t want_sum = 0;
      for (uint32_t k = 0; k < c.k; ++k) {
        offsets[k] = static_cast<int32_t>(rng() % src.size());
        xs[k] = src[static_cast<size_t>(offsets[k])];
        want_sum += xs[k];
      }
      const BitPlaneCrossbar portable(xbar.cells(), c.k, N, xbar.slices(), tiles, groups, c.input_bits,
                                      KernelPath::kPortable);
      std::vector<uint64_t> want(portable.input_words(), ~0ull);
      std::vector<uint32_t> want_nz(G, ~0u);
      const uint64_t want_drives = portable.pack_inputs(xs.data(), want.data(), want_nz.data());
      for (const auto path : fast_paths()) {
        SCOPED_TRACE(kernel_path_name(path));
        const BitPlaneCrossbar fast(xbar.cells(), c.k, N, xbar.slices(), tiles, groups, c.input_bits, path);
        ASSERT_EQ(fast.input_words(), want.size());
        std::vector<uint64_t> words(want.size(), ~0ull);  // stale contents must be overwritten
        std::vector<uint32_t> nz(G, ~0u);
        EXPECT_EQ(fast.pack_inputs(xs.data(), words.data(), nz.data()), want_drives);
        EXPECT_EQ(words, want);
        EXPECT_EQ(nz, want_nz);
        std::fill(words.begin(), words.end(), ~0ull);
        std::fill(nz.begin(), nz.end(), ~0u);
        int64_t sum = 0;
        EXPECT_EQ(fast.pack_gathered(src.data(), offsets.data(), words.data(), nz.data(), &sum), want_drives);
        EXPECT_EQ(words, want);
        EXPECT_EQ(nz, want_nz);
        EXPECT_EQ(sum, want_sum);
      }
    }
  }
}

// The array requantisation and the fused kernel's output step equal the scalar formulas
// (kernels::requantize; the engine's a -> y -> code) on every path: ties (half to even),
// negative and NaN values, clamps at 0 and 2^bits - 1, widths 1 to 31 bits, strided outputs,
// column counts not a multiple of 4, accumulators beyond 2^51 (the native path's exact
// int64 -> double range).
TEST(FastMvm, RequantisationEqualsScalarFormula) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  for (const uint32_t bits : {1u, 4u, 8u, 16u, 31u}) {
    const double scale = bits == 31 ? 0.5 : 0.37 * (1 + bits);
    const int32_t zp = bits == 1 ? 0 : static_cast<int32_t>(rng() % (uint64_t{1} << (bits - 1)));
    std::vector<double> y(203);
    for (size_t i = 0; i < y.size(); ++i) {
      const uint64_t kind = rng() % 4;
      y[i] = kind == 0   ? (std::floor(unit(rng) * 40) + 0.5) * scale  // exact ties
             : kind == 1 ? unit(rng) * scale * double(uint64_t{1} << std::min(bits + 1, 40u))
             : kind == 2 ? unit(rng) * 1e12
                         : -unit(rng) * scale;
    }
    y[7] = std::nan(""), y[8] = -0.0, y[9] = 1e300;
    for (const auto path : fast_paths()) {
      SCOPED_TRACE(std::string(kernel_path_name(path)) + " bits " + std::to_string(bits));
      std::vector<int32_t> got(y.size() * 3, -7);
      requantize_array(y.data(), y.size(), scale, zp, bits, got.data(), 3, path);
      for (size_t i = 0; i < y.size(); ++i) {
        EXPECT_EQ(got[i * 3], requantize(y[i], scale, zp, bits)) << y[i];
        EXPECT_EQ(got[i * 3 + 1], -7);
      }
    }
  }
  for (const uint32_t N : {1u, 4u, 7u, 13u})
    for (const bool relu : {false, true}) {
      const uint32_t batch = 5, P = 9;
      std::vector<int64_t> acc(size_t{batch} * N), corr(N), xsum(batch);
      std::vector<double> mult(N), bias(N);
      for (auto& a : acc) a = static_cast<int64_t>(rng() % 2000001) - 1000000;
      acc[1] = (int64_t{1} << 51) - 3;  // at and beyond the exact-conversion range
      acc[2] = int64_t{1} << 53;
      acc[acc.size() - 1] = -(int64_t{1} << 52) - 1;
      for (auto& c : corr) c = static_cast<int64_t>(rng() % 20001) - 10000;
      for (auto& x : xsum) x = static_cast<int64_t>(rng() % 2001);
      for (auto& m : mult) m = std::ldexp(0.5 + 0.5 * unit(rng), -12);
      for (auto& b : bias) b = unit(rng);
      const OutputStep step{corr.data(), 3, mult.data(), bias.data(), relu, 0.0625, 3, 8};
      for (const auto path : fast_paths()) {
        SCOPED_TRACE(std::string(kernel_path_name(path)) + " N " + std::to_string(N));
        std::vector<int32_t> out(size_t{N} * P, -1);
        requantize_outputs(step, acc.data(), xsum.data(), batch, N, out.data() + 2, P, path);
        for (uint32_t b = 0; b < batch; ++b)
          for (uint32_t n = 0; n < N; ++n) {
            const int64_t a = acc[size_t{b} * N + n] + corr[n] - 3 * xsum[b];
            double yv = static_cast<double>(a) * mult[n] + bias[n];
            if (relu) yv = std::max(yv, 0.0);
            EXPECT_EQ(out[size_t{n} * P + 2 + b], requantize(yv, 0.0625, 3, 8)) << b << " " << n;
          }
        EXPECT_EQ(out[0], -1);
        EXPECT_EQ(out[1], -1);
      }
    }
}

TEST(FastMvm, PathSelection) {
  EXPECT_EQ(select_kernel_path(KernelPath::kPortable), KernelPath::kPortable);
  EXPECT_EQ(select_kernel_path(KernelPath::kReference), KernelPath::kReference);
  EXPECT_EQ(parse_kernel_path("native"), KernelPath::kNative);
  EXPECT_FALSE(parse_kernel_path("avx9").has_value());
  const char* old = std::getenv("IMCSIM_KERNEL");
  const std::string saved = old ? old : "";
  setenv("IMCSIM_KERNEL", "portable", 1);
  EXPECT_EQ(select_kernel_path(), KernelPath::kPortable);
  setenv("IMCSIM_KERNEL", "reference", 1);
  EXPECT_EQ(select_kernel_path(), KernelPath::kReference);
  setenv("IMCSIM_KERNEL", "auto", 1);
  EXPECT_EQ(select_kernel_path(), native_kernels_supported() ? KernelPath::kNative : KernelPath::kPortable);
  setenv("IMCSIM_KERNEL", "fastest", 1);
  EXPECT_THROW(select_kernel_path(), std::invalid_argument);
  if (!native_kernels_supported()) {
    EXPECT_THROW(select_kernel_path(KernelPath::kNative), std::invalid_argument);
  }
  if (old) setenv("IMCSIM_KERNEL", saved.c_str(), 1);
  else unsetenv("IMCSIM_KERNEL");
}

}  // namespace
}  // namespace imcsim::kernels
