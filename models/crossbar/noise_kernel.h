// Fast kernels of the ADC-noise mode (docs/SEMANTICS.md step 5d, docs/fast_kernels.md "ADC
// noise"): the Irwin-Hall sums S of the noise stream for a block of consecutive conversions
// (AVX2 on the native path, scalar on the portable one, the same bits), and the noise value as
// a table over S. Equal to gaussian_sample / noise_fx of models/crossbar/nonideal.h for every
// input. Plain C++, no SystemC.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "models/adc/adc.h"
#include "models/crossbar/crossbar.h"
#include "models/crossbar/fast_mvm.h"
#include "models/crossbar/nonideal.h"
#include "models/crossbar/slicing.h"

namespace imcsim::kernels {

// The noise of a conversion is a function of its Irwin-Hall sum S in [0, kIrwinHallMax] alone
// (models/crossbar/nonideal.h).

// out[j] = irwin_hall_sum(key, first + j) for j < count (first + count <= 2^31). The native path
// evaluates the 32-bit hash eight lanes at a time with AVX2 (needs native_kernels_supported());
// any other path is scalar.
void irwin_hall_block(uint64_t key, uint64_t first, size_t count, uint16_t* out, KernelPath path);

// The noise in 2^-16 LSB as a function of S: table[S] = noise_fx(sigma, gaussian_z(S)),
// S = 0 .. kIrwinHallMax (exactly noise_fx of gaussian_sample for the element with that S).
std::vector<int64_t> noise_table(double sigma);

// The fused ADC-noise kernel (native path, AVX2; docs/fast_kernels.md "ADC noise"): for a batch
// of output positions, the integer partial sums p (nibble tables, as the native noiseless
// kernel), the noise of every conversion (the 32-bit hash eight lanes at a time, S, then
// (S - 186) sigma 2^11 when that is an integer equal to noise_table, else a lookup), the
// analog ADC of a = p 2^16 + noise in 32-bit lanes (per parameter set, a table of buckets of the
// input range, each holding at most one change point of the conversion result) and the
// shift-add. Lanes are (position, group) pairs, 64 per chunk, for one (column, tile, slice) at a
// time, so that every lane of a block uses the same parameter set.
class NoiseMvmKernel {
 public:
  // Null unless: native path, one-bit input groups (T <= 64), integer cell levels in [0, 63]
  // ([k][s][n], as BitPlaneCrossbar), partial sums < 2^15, an IDEAL (frac_bits <= 15), LINEAR or
  // NONLINEAR ADC, every a = p 2^16 + noise of the reachable range within int32, tables within
  // their size limits and the per-lane shift-add within 32 bits (G max|value| sum_s 2^bitlo_s <
  // 2^31).
  static std::unique_ptr<NoiseMvmKernel> make(std::span<const int16_t> cells, uint32_t k_rows, uint32_t n_cols,
                                              const std::vector<WeightSlice>& slices,
                                              const std::vector<RowTile>& tiles,
                                              const std::vector<InputGroup>& groups, uint32_t input_bits,
                                              const AdcSpec& adc, double sigma, KernelPath path);

  // Positions per run() call that use the kernel well.
  uint32_t preferred_batch() const { return 64; }

  // Positions pos0 .. pos0 + batch - 1 of one image (x_shifted: [batch][K], the A-shifted
  // inputs): acc[b * N + n] += sum_{g,s,t} sign_s sign_t 2^(bitlo_s + bitlo_t) value_fx(set(g,s,n),
  // a), a = p(b,g,s,t,n) 2^16 + noise of conversion ((g S + s) T + t) N + n of stream
  // H(key, pos0 + b) (key = H(seed, 1, node, image)). Returns the DAC row drives (non-zero (tile, group, row) inputs); if `stats` is
  // set, adds the saturations and widens [psum_min, psum_max] to cover every floor(a / 2^16).
  uint64_t run(const int32_t* x_shifted, uint32_t batch, uint64_t pos0, uint64_t key, int64_t* acc,
               FastStats* stats) const;

  // A linear ADC's parameter set prepared for division by multiplication (build_linear).
  struct LinearSet {
    int32_t offset = 0;      // C - m D (mod 2^32)
    int32_t tie = INT32_MIN; // T0: HALF_AWAY subtracts [a < T0]
    int32_t m = 0;
    uint32_t magic = 0, shift = 0;
    int32_t centre = 0, step = 0;
    // Small form (0: none): floor(x / D) = ((x >> sh) * small_magic) >> small_shift, 32-bit
    // product, checked at build time on every reachable x >> sh.
    uint32_t sh = 0, small_magic = 0, small_shift = 0;
  };
  // Layout of the ADC tables of one parameter set (public for the kernel's helpers).
  struct SetTable {
    int32_t base = 0;       // first input of bucket 0
    uint32_t shift = 0;     // bucket width 2^shift
    int32_t dmax = 0;       // a - base is clamped to [0, dmax] (within the buckets)
    uint32_t first = 0;     // into buckets_
    uint32_t values = 0;    // into values_
  };

 private:
  NoiseMvmKernel() = default;
  uint32_t k_rows_ = 0, n_cols_ = 0, input_bits_ = 0;
  std::vector<WeightSlice> slices_;
  std::vector<RowTile> tiles_;
  std::vector<InputGroup> groups_;
  AdcGranularity granularity_ = AdcGranularity::kLayer;
  static bool build_linear(NoiseMvmKernel& k, const AdcSpec& adc, size_t G, size_t S, size_t N, int64_t a_min,
                           int64_t a_max, int64_t& max_value);
  // kIdeal: value = floor((floor(a 2^(F-15)) + 1) / 2); kLinear: code by division (linear_);
  // kTable: the bucket tables below.
  enum class Mode { kIdeal, kLinear, kTable };
  Mode mode_ = Mode::kTable;
  uint32_t ideal_shift_ = 0;        // 15 - F
  std::vector<LinearSet> linear_;
  bool linear_small_ = false;       // every set has the small division form
  int32_t qmin_ = 0, qmax_ = 0;
  std::vector<int32_t> noise_values_;  // noise_table as int32
  int32_t noise_int_ = 0;           // sigma * 2^11 when an integer: noise = (S - 186) * it exactly
  // Per column n, tile g, slice s and group of 4 rows r: the 16 sums of the 4 cells each input
  // nibble selects; [n][g][s][r][16].
  std::vector<uint32_t> row_groups_;    // [g]
  std::vector<size_t> nibble_offset_;   // [g * S + s]
  size_t nibble_column_ = 0;
  uint32_t flush_ = 1;                  // row groups summed in bytes before widening
  std::vector<uint8_t> nibbles_;
  // ADC: per parameter set a bucket table over its change points (the inputs where the result
  // changes, within the reachable [a_min, a_max]); entry = state_lo << 23 | (offset of the
  // bucket's change point - 1, or 2^shift - 1 if none); values_ = value_fx * 2 + saturated of
  // each state (the count of change points <= a).
  std::vector<SetTable> sets_;
  std::vector<int32_t> buckets_;
  std::vector<int32_t> values_;
};

}  // namespace imcsim::kernels
