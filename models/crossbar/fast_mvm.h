// Fast bit-exact crossbar kernels (docs/fast_kernels.md): the integer partial sums of
// docs/SEMANTICS.md steps 2-4 computed on bit planes with popcount, and a fused kernel that
// also applies the ADC (a lookup table over the partial sum) and the shift-add of step 7 for
// a batch of output positions. Results equal ProgrammedCrossbar::partial_sums and the
// reference engine's ADC / shift-add loop bit for bit on every input. Plain C++, no SystemC.
//
// Layout. A row tile g of R_g rows is W_g = ceil(R_g / 64) 64-bit words per bit plane (row
// r of the tile is bit r % 64 of word r / 64; bits past the tile are 0).
// - Cells: every integer cell level c(k, s, n) (any sign: an analog differential pair is
//   d+ - d-) is split into c+ = max(c, 0) and c- = max(-c, 0); the planes of slice s in tile g
//   are bit b of c+ (coefficient +2^b) then bit b of c- (coefficient -2^b), as many as the
//   largest level of that (tile, slice) needs. Block (g, s) holds [n][plane][word].
// - Inputs: per output position, group t's value u_t[k] is split into its nbits_t bit planes
//   (coefficient 2^j); words [g][t][j][w].
// Then p(g, s, t, n) = sum_j sum_q 2^j coef_q popcount(U[g][t][j] & D[g][s][n][q]).
//
// Dispatch: `native` is the same code compiled for x86-64-v3 (AVX2, BMI1/2, POPCNT: one
// instruction per popcount, auto-vectorised packing) through a target attribute, chosen at
// run time when the CPU has those; `portable` is baseline code for any CPU. The environment
// variable IMCSIM_KERNEL (reference | portable | native | auto) overrides the choice.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "models/adc/adc.h"
#include "models/crossbar/crossbar.h"
#include "models/crossbar/slicing.h"

namespace imcsim::kernels {

// reference: the row-by-row int16 crossbar of the reference engine; portable / native: the
// bit-plane kernels compiled for baseline / x86-64-v3.
enum class KernelPath { kReference, kPortable, kNative };

const char* kernel_path_name(KernelPath path);
// Parses "reference" | "portable" | "native"; nullopt for anything else.
std::optional<KernelPath> parse_kernel_path(const std::string& name);
// Whether this CPU runs the native kernels (x86-64 with AVX2, BMI1, BMI2, POPCNT).
bool native_kernels_supported();
// The path to use: `requested` if set, else the environment variable IMCSIM_KERNEL if set
// (auto = unset), else native when supported, else portable. Throws std::invalid_argument
// for an unknown IMCSIM_KERNEL value or for native on a CPU that lacks it.
KernelPath select_kernel_path(std::optional<KernelPath> requested = std::nullopt);

// The arithmetic form of an ADC lookup table over the partial sums 0 .. p_max, per parameter
// set: with x = max((min(p, p_clamp) << in_shift) + offset, 0) (< 2^16; offset may be negative),
//   code(p)   = min((x * mult) >> (16 + out_shift), code_max)        (unsigned 16-bit lanes)
//   value_fx  = value_base + value_step * code(p)
//   saturated = p < sat_lo || p > sat_hi.
// Linear ADCs (floor or round-half-away, any clamp, through integer cells) have this form; the
// native nibble kernel then converts 16 partial sums in five vector operations instead of
// gathering from the table. fit_affine_adc verifies the form on every p before returning it.
struct AffineAdc {
  struct Set {
    uint16_t mult = 0, code_max = 0, p_clamp = 0;  // p_clamp: the first p of code code_max
    int32_t offset = 0;
    uint8_t in_shift = 0, out_shift = 0;
    int64_t value_base = 0, value_step = 0;
    int32_t sat_lo = 0, sat_hi = -1;
  };
  std::vector<Set> sets;  // [set]: one (LAYER) or one per column (COLUMN)
  int64_t p_max = 0;
};

// ADC lookup table for the fused kernel: entry (set, p) at
// entries[set * size + (p - min)] = value_fx(set, p) * 2 + saturated(set, p).
struct PackedAdcLut {
  const int64_t* entries = nullptr;
  int64_t min = 0;
  size_t size = 0;
  AdcGranularity granularity = AdcGranularity::kLayer;
  // The same table as int32 (null if a value needs more than 30 bits) and the largest
  // |value_fx| in it: the native nibble kernel's 32-bit lanes.
  const int32_t* entries32 = nullptr;
  int64_t max_abs_value = 0;
  // The same table in arithmetic form (fit_affine_adc), or null: the nibble kernel needs no
  // lookups then.
  const AffineAdc* affine = nullptr;
};

// ADC noise in the native nibble kernel (docs/SEMANTICS.md step 5d, docs/fast_kernels.md "ADC
// noise"): a conversion's ADC input a_fx16 = p 2^16 + noise(S) is represented by a small
// integer u = (min(p, p_clamp) << p_shift) + nu(S) that determines the ADC's result, so the
// layer's ADC table can be built over u (not p) and fitted to the arithmetic form
// (PackedAdcLut::affine over u in [0, u_max]). With t = u + nu0 (nu0 = -nu_offset):
// - lattice form (make): K = sigma 2^11 an integer, noise = K (S - 186) exactly, nu = s_mult S,
//   a = t 2^r (r = min(ctz K, 16), p_shift = 16 - r);
// - blocked form (make_blocked): every input at which the ADC's result changes is a multiple
//   of 2^r (r <= 16), so only t = a >> r matters (p_shift = 16 - r); or, "half" blocks, every
//   such input is m 2^r or m 2^r + 1 (a HALF_AWAY ADC's ties below zero), and t = 2 (a >> r) +
//   [a mod 2^r != 0] (p_shift = 17 - r). nu(S) is then a staircase in S: #{thresholds <= S}
//   (at most kMaxThresholds), or value_step code(S) in the arithmetic form of an ADC table over
//   S (nu_affine; half blocks: t = floor(noise / 2^r) + ceil(noise / 2^r), one form each).
// In every form floor(a / 2^16) = min(p, ...) + ((nu(S) - nu_offset) >> p_shift) for unclamped p,
// and partial sums above p_clamp (every conversion there has the ADC's top result whatever its
// noise) enter u as p_clamp, which keeps u narrow where the ADC's range is small against the
// partial sums.
struct AffineNoiseForm {
  static constexpr size_t kMaxThresholds = 16;
  uint32_t r = 16, p_shift = 0;
  bool half = false;
  uint32_t s_mult = 1;                      // lattice: nu = s_mult S; 0: the blocked form
  std::vector<uint16_t> s_thresholds;       // blocked: nu(S) = #{j : S >= s_thresholds[j]}, or
  std::optional<AffineAdc::Set> nu_affine;  //          nu(S) = value_step code(S) in this form
  std::optional<AffineAdc::Set> nu_affine2; //          (half blocks: plus the ceiling part's)
  int64_t nu_offset = 0;                    // -nu0
  int64_t p_clamp = 0;
  int64_t u_max = 0;
  // The forms for sigma, partial sums in [0, psum_bound] and the ADC `adc` (`sets` parameter
  // sets), or nullopt (not of that form, or u_max > 32766: the nibble kernel's signed 16-bit
  // lanes).
  static std::optional<AffineNoiseForm> make(double sigma, int64_t psum_bound, const AdcSpec& adc, uint64_t sets);
  static std::optional<AffineNoiseForm> make_blocked(double sigma, int64_t psum_bound, const AdcSpec& adc,
                                                     uint64_t sets);
  // An ADC input a_fx16 with u's result.
  int64_t analog(int64_t u) const {
    const int64_t t = u - nu_offset;
    if (!half) return t * (int64_t{1} << r);
    return (t >> 1) * (int64_t{1} << r) + (t & 1);
  }
  // The largest noise term nu(S).
  int64_t nu_max() const;
};
// The layer's ADC table over u of `form` in arithmetic form (adc_convert_analog of
// form.analog(u) for every u <= u_max, one parameter set at a time), or nullopt if some set does
// not have the form.
std::optional<AffineAdc> fit_affine_noise_adc(const AdcSpec& adc, uint64_t sets, const AffineNoiseForm& form);

// One call's noise streams: position pos0 + b uses stream H(image_key, pos0 + b).
struct NoiseCall {
  const AffineNoiseForm* form = nullptr;
  uint64_t image_key = 0;  // H(seed, 1, node, image)
  uint64_t pos0 = 0;
};

// The table's arithmetic form over p in [0, p_max] (the nibble kernel's partial sums), or
// nullopt when some set is not of that form, the table does not cover [0, p_max], p_max >= 2^15
// or the granularity is SLICE_TILE_COLUMN. `sets`: the table's parameter sets.
std::optional<AffineAdc> fit_affine_adc(const PackedAdcLut& lut, uint64_t sets, int64_t p_max);

// Event statistics of a fused call (the engine's ImcNodeCounters fields).
struct FastStats {
  uint64_t saturations = 0;
  int64_t psum_min = INT64_MAX, psum_max = INT64_MIN;
};

// Requantisation (docs/SEMANTICS.md step 8, kernels::requantize) of many values: out[i * stride]
// = requantize(y[i], scale, zero_point, bits). The native path (AVX2: the same IEEE divisions,
// round-to-nearest-even and clamps, 4 lanes) gives the same codes as the scalar formula.
void requantize_array(const double* y, size_t count, double scale, int32_t zero_point, uint32_t bits, int32_t* out,
                      size_t stride, KernelPath path);

// The fused kernel's output step for `batch` positions b of a layer with N columns:
// a = acc[b * N + n] + column_correction[n] - offset_correction * xsum[b];
// y = double(a) * multiplier[n] + bias[n] (then max(y, 0) if relu);
// out[n * out_stride + b] = requantize(y, out_scale, out_zero_point, out_bits), exactly the
// engine's scalar formula (the native path vectorises over columns).
struct OutputStep {
  const int64_t* column_correction = nullptr;
  int64_t offset_correction = 0;
  const double* multiplier = nullptr;
  const double* bias = nullptr;
  bool relu = false;
  double out_scale = 1;
  int32_t out_zero_point = 0;
  uint32_t out_bits = 8;
};
void requantize_outputs(const OutputStep& step, const int64_t* acc, const int64_t* xsum, uint32_t batch, uint32_t N,
                        int32_t* out, size_t out_stride, KernelPath path);

class BitPlaneCrossbar {
 public:
  // cells: [k][s][n] integer levels, |level| < 2^15; slices / groups as in slicing.h.
  BitPlaneCrossbar(std::span<const int16_t> cells, uint32_t k_rows, uint32_t n_cols,
                   std::vector<WeightSlice> slices, std::vector<RowTile> tiles,
                   std::vector<InputGroup> groups, uint32_t input_bits, KernelPath path);

  KernelPath path() const { return path_; }
  uint32_t tiles() const { return static_cast<uint32_t>(tiles_.size()); }
  // 64-bit words of one position's packed input.
  size_t input_words() const { return input_words_; }

  // Packs the A-shifted inputs x'[0 .. K-1] of one position into `words` (input_words()),
  // sets nonzero[g] = bitmask of the groups t with a non-zero value in tile g (T <= 32), and
  // returns the number of (tile, group, row) with a non-zero value (the DAC row drives).
  uint64_t pack_inputs(const int32_t* x_shifted, uint64_t* words, uint32_t* nonzero) const;
  // pack_inputs of the gathered inputs x'[k] = src[offsets[k]] (k < K, every one readable);
  // also sets *xsum = sum_k x'[k] (if xsum is not null). The native path gathers with VPGATHERDD.
  uint64_t pack_gathered(const int32_t* src, const int32_t* offsets, uint64_t* words, uint32_t* nonzero,
                         int64_t* xsum) const;

  // psum[s * N + n] for tile g and group t of one packed position (= ProgrammedCrossbar::
  // partial_sums of the same cells).
  void partial_sums(const uint64_t* words, uint32_t g, uint32_t t, int32_t* psum) const;

  // The fused kernel for `batch` positions: acc[b * N + n] += sum_{g,s,t} w(s,t) *
  // value_fx(set(g,s,n), p(b,g,s,t,n)), w(s,t) = sign_s sign_t 2^(bitlo_s + bitlo_t);
  // words: [batch][input_words()], nonzero: [batch][G] from pack_inputs. Partial sums must lie
  // in the table's range (the caller sizes it from the cells' bound). Adds to `stats` if set.
  // With `noise` (needs serves_affine_noise(lut, *noise->form)): the table is over u of the form and every
  // conversion's u carries its noise; stats then bound floor(a_fx16 / 2^16).
  void accumulate(const uint64_t* words, const uint32_t* nonzero, uint32_t batch, const PackedAdcLut& lut,
                  int64_t* acc, FastStats* stats, const NoiseCall* noise = nullptr) const;
  // Whether accumulate() takes ADC noise of `form` with this table (the native nibble kernel's
  // affine path; the table's arithmetic form must cover every u up to form.u_max).
  bool serves_affine_noise(const PackedAdcLut& lut, const AffineNoiseForm& form) const;

  // Largest |partial sum| of any tile for any input (sizes lookup tables).
  int64_t psum_bound() const { return psum_bound_; }
  // Positions per accumulate() call that use the kernel well (64 for the nibble kernel).
  uint32_t preferred_batch() const { return nibble_ok_ ? 64 : 16; }

  // Layout of cell block (g, s): planes and their coefficients.
  struct Block {
    size_t offset = 0;           // into planes_ ([n][q][w])
    uint32_t planes = 0;         // Q
    bool unsigned_planes = true; // coef_q = 2^q (no negative part)
    std::vector<int32_t> coef;   // Q coefficients (+-2^b)
  };

 private:
  uint32_t k_rows_, n_cols_, input_bits_;
  std::vector<WeightSlice> slices_;
  std::vector<RowTile> tiles_;
  std::vector<InputGroup> groups_;
  KernelPath path_;
  std::vector<uint32_t> words_per_tile_;  // W_g
  std::vector<size_t> input_offset_;      // [g][t] -> word offset of U[g][t][0][0]
  size_t input_words_ = 0;
  bool single_bit_groups_ = true;         // every group has nbits == 1
  uint32_t uniform_group_bits_ = 0;       // the widest group's nbits: planes per group in the input layout
  std::vector<Block> blocks_;             // [g][s]
  std::vector<uint64_t> planes_;
  int64_t psum_bound_ = 0;
  // Native nibble kernel (one-bit groups, non-negative cells): per column n, tile g, slice s and
  // group of 4 rows r, the 16 sums of the 4 cells selected by each input nibble; [n][g][s][r][16].
  bool nibble_ok_ = false;
  uint32_t nibble_flush_ = 1;              // row groups summed in bytes before widening
  std::vector<uint32_t> row_groups_;       // [g]: ceil(rows / 4)
  std::vector<size_t> nibble_offset_;      // [g * S + s]: bytes from the column's start
  size_t nibble_column_ = 0;               // bytes per column
  std::vector<uint8_t> nibbles_;
  void build_nibbles(std::span<const int16_t> cells);
  template <bool kGather>
  uint64_t pack_portable(const int32_t* src, const int32_t* offsets, uint64_t* words, uint32_t* nonzero,
                         int64_t* xsum) const;
  template <bool kGather>
  uint64_t pack_native(const int32_t* src, const int32_t* offsets, uint64_t* words, uint32_t* nonzero,
                       int64_t* xsum) const;
  // Whether the nibble kernel (models/crossbar/fast_mvm_nibble.cc) serves this table.
  bool nibble_serves(const PackedAdcLut& lut) const;
  void accumulate_nibble(const uint64_t* words, uint32_t batch, const PackedAdcLut& lut, int64_t* acc,
                         FastStats* stats, const NoiseCall* noise) const;
};

}  // namespace imcsim::kernels
