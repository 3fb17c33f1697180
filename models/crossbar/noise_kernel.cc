#include "models/crossbar/noise_kernel.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>

#include "models/crossbar/nonideal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "models/crossbar/gauss_simd.h"
#include "models/crossbar/nibble_simd.h"
#define IMCSIM_NOISE_X86 1
#endif

namespace imcsim::kernels {

std::vector<int64_t> noise_table(double sigma) {
  std::vector<int64_t> table(kIrwinHallMax + 1);
  for (uint32_t s = 0; s <= kIrwinHallMax; ++s) table[s] = noise_fx(sigma, gaussian_z(s));  // as gaussian_sample
  return table;
}

namespace {

void irwin_hall_scalar(uint64_t key, uint64_t first, size_t count, uint16_t* out) {
  for (size_t j = 0; j < count; ++j) out[j] = static_cast<uint16_t>(irwin_hall_sum(key, first + j));
}

#if IMCSIM_NOISE_X86
[[gnu::target("avx2")]] void irwin_hall_avx2(uint64_t key, uint64_t first, size_t count, uint16_t* out) {
  // Four vectors of eight elements (32 per step); PACKUS interleaves 128-bit halves, so vector
  // pair (0, 1) holds elements {0-3, 8-11} and {4-7, 12-15}, pair (2, 3) the same + 16.
  __m256i base[4], hi[4];
  const uint32_t lo32 = static_cast<uint32_t>(key);
  for (int v = 0; v < 4; ++v) {
    alignas(32) uint32_t e[8];
    for (uint32_t l = 0; l < 8; ++l) {
      const uint32_t k = (v / 2) * 16 + (l < 4 ? l : l + 4) + (v % 2) * 4;
      e[l] = lo32 + static_cast<uint32_t>(2 * (first + k)) * kGamma32;
    }
    base[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(e));
    hi[v] = _mm256_set1_epi32(static_cast<int32_t>(key >> 32));
  }
  size_t j = 0;
  __m256i off = _mm256_setzero_si256();
  const __m256i step = _mm256_set1_epi32(static_cast<int32_t>(64u * kGamma32));  // 32 elements ahead
  for (; j + 32 <= count; j += 32) {
    __m256i s[4];
    gauss::irwin_hall_sums<4>(base, hi, off, s);
    off = _mm256_add_epi32(off, step);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), _mm256_packus_epi32(s[0], s[1]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j + 16), _mm256_packus_epi32(s[2], s[3]));
  }
  irwin_hall_scalar(key, first + j, count - j, out + j);
}
#endif

}  // namespace

void irwin_hall_block(uint64_t key, uint64_t first, size_t count, uint16_t* out, KernelPath path) {
#if IMCSIM_NOISE_X86
  if (path == KernelPath::kNative) return irwin_hall_avx2(key, first, count, out);
#endif
  (void)path;
  irwin_hall_scalar(key, first, count, out);
}

// ---- the fused kernel ---------------------------------------------------------------------------

namespace {
constexpr uint32_t kMaxStates = 511;             // state index in 9 bits
constexpr uint32_t kMaxShift = 22;               // bucket offsets in 23 bits
constexpr uint32_t kMaxBucketsPerSet = 1u << 16;
constexpr size_t kMaxBuckets = size_t{1} << 22;

// Slot k of the four widened 16-bit partial-sum vectors -> lane (as the noiseless nibble kernel).
uint32_t lane_of_slot(uint32_t k) {
  const uint32_t w = k / 16, e = k % 16, v = w / 2, h = w % 2;
  return v * 32 + (e < 8 ? h * 8 + e : 16 + h * 8 + (e - 8));
}
// Lane of element i of the kernel's vector q (k = 8q + i): vector q holds the partial sums
// p << 16 of slots UNPACK{LO,HI}_EPI16(0, w[q / 2]), i.e. elements 4h .. 4h + 3 and 8 + 4h ..
// 8 + 4h + 3 (h = q % 2) of the widened vector w[q / 2].
uint32_t lane_of_element(uint32_t k) {
  const uint32_t q = k / 8, i = k % 8, h = q % 2;
  const uint32_t e = i < 4 ? 4 * h + i : 8 + 4 * h + (i - 4);
  return lane_of_slot((q / 2) * 16 + e);
}
}  // namespace

// Linear ADC by division (frac_bits <= 16 for FLOOR, <= 15 for HALF_AWAY): with sh = 16 - F and
// D = step 2^sh, FLOOR gives r = floor((a - C) / D), C = centre 2^sh; HALF_AWAY (sh1 = sh - 1)
// r = floor((a - C - [a < T0]) / D), C = (2 centre - step) 2^sh1, T0 = 2 centre 2^sh1 (the
// branch hf - 2 centre >= 0 is a >= T0, and the other branch's ceiling is this floor shifted by
// one). The kernel evaluates x = a - C - [a < T0] + m D in [0, 2^31) and floor(x / D) =
// (x * magic) >> (31 + l) (Granlund-Montgomery, exact for every x < 2^31), r = that - m.
bool NoiseMvmKernel::build_linear(NoiseMvmKernel& k, const AdcSpec& adc, size_t G, size_t S, size_t N, int64_t a_min,
                                  int64_t a_max, int64_t& max_value) {
  if (adc.kind != AdcKind::kLinear) return false;
  const bool half = adc.rounding == AdcRounding::kHalfAway;
  if (adc.frac_bits > (half ? 15u : 16u)) return false;
  const uint32_t sh = 16 - adc.frac_bits;
  const uint64_t sets = AdcSpec::sets_for(adc.granularity, G, S, N);
  std::vector<LinearSet> out;
  int64_t vmax = 0;
  for (uint64_t set = 0; set < sets; ++set) {
    const int64_t st = adc.step_fx[set], c = adc.centre_fx[set];
    if (st <= 0 || st >= (int64_t{1} << 29) || c >= (int64_t{1} << 29) || c <= -(int64_t{1} << 29)) return false;
    const int64_t D = st << sh;
    if (D < 2 || D >= (int64_t{1} << 31)) return false;  // (D >= 2: the quotient shift is >= 32)
    const int64_t C = half ? (2 * c - st) << (sh - 1) : c << sh;
    const int64_t T0 = half ? (2 * c) << (sh - 1) : INT64_MIN;
    // m: x >= 0 for every a >= a_min (minus one for the tie term).
    const int64_t lowest = a_min - C - 1;
    const int64_t m = lowest >= 0 ? 0 : (-lowest + D - 1) / D;
    if (a_max - C + m * D >= (int64_t{1} << 31) || m >= (int64_t{1} << 30)) return false;
    uint32_t l = 0;
    while ((int64_t{1} << l) < D) ++l;
    const uint64_t two = uint64_t{1} << (31 + l);
    const uint64_t magic = (two + static_cast<uint64_t>(D) - 1) / static_cast<uint64_t>(D);
    if (magic >= (uint64_t{1} << 32) || magic * static_cast<uint64_t>(D) - two > (uint64_t{1} << l)) return false;
    LinearSet ls;
    ls.offset = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(C - m * D)));
    ls.tie = T0 <= INT32_MIN ? INT32_MIN : (T0 >= INT32_MAX ? INT32_MAX : static_cast<int32_t>(T0));
    ls.m = static_cast<int32_t>(m);
    ls.magic = static_cast<uint32_t>(magic);
    ls.shift = 31 + l;
    ls.centre = static_cast<int32_t>(c);
    ls.step = static_cast<int32_t>(st);
    // floor(x / (step 2^sh)) = floor((x >> sh) / step); with v = x >> sh < 2^15 a 32-bit
    // multiply-shift divides exactly (verified on every v up to the largest reachable one).
    ls.sh = sh;
    const int64_t vmax_x = (a_max - C + m * D) >> sh;
    if (vmax_x < (int64_t{1} << 15)) {
      // ks = 15 + ceil(log2 step) is exact for every v < 2^15 (Granlund-Montgomery); verified.
      uint32_t l2 = 0;
      while ((int64_t{1} << l2) < st) ++l2;
      for (uint32_t ks = 15 + l2; ks < 32 && ls.small_magic == 0; ++ks) {
        const uint64_t mg = ((uint64_t{1} << ks) + static_cast<uint64_t>(st) - 1) / static_cast<uint64_t>(st);
        if (mg == 0 || mg * static_cast<uint64_t>(vmax_x) >= (uint64_t{1} << 32)) continue;
        bool exact = true;
        for (int64_t v = 0; v <= vmax_x && exact; ++v)
          exact = static_cast<int64_t>((static_cast<uint64_t>(v) * mg) >> ks) == v / st;
        if (exact) ls.small_magic = static_cast<uint32_t>(mg), ls.small_shift = ks;
      }
    }
    out.push_back(ls);
    for (const int64_t code : {adc.code_min(), adc.code_max()}) vmax = std::max(vmax, std::abs(c + code * st));
  }
  if (vmax >= (int64_t{1} << 29)) return false;
  k.linear_small_ = std::all_of(out.begin(), out.end(), [](const LinearSet& x) { return x.small_magic != 0; });
  k.linear_ = std::move(out);
  k.qmin_ = static_cast<int32_t>(adc.code_min());
  k.qmax_ = static_cast<int32_t>(adc.code_max());
  max_value = vmax;
  return true;
}

std::unique_ptr<NoiseMvmKernel> NoiseMvmKernel::make(std::span<const int16_t> cells, uint32_t k_rows,
                                                     uint32_t n_cols, const std::vector<WeightSlice>& slices,
                                                     const std::vector<RowTile>& tiles,
                                                     const std::vector<InputGroup>& groups, uint32_t input_bits,
                                                     const AdcSpec& adc, double sigma, KernelPath path) {
#if !IMCSIM_NOISE_X86
  (void)cells, (void)k_rows, (void)n_cols, (void)slices, (void)tiles, (void)groups, (void)input_bits, (void)adc,
      (void)sigma, (void)path;
  return nullptr;
#else
  const size_t G = tiles.size(), S = slices.size(), T = groups.size(), N = n_cols;
  if (path != KernelPath::kNative || !native_kernels_supported() || !(sigma > 0)) return nullptr;
  if (G == 0 || S == 0 || T == 0 || T > 64 || N == 0 || cells.size() != size_t{k_rows} * S * N) return nullptr;
  for (const auto& gr : groups)
    if (gr.nbits != 1) return nullptr;
  int32_t max_level = 0;
  for (int16_t c : cells) {
    if (c < 0 || c > 63) return nullptr;
    max_level = std::max<int32_t>(max_level, c);
  }
  // Largest partial sum: a tile's column sum of cells (one-bit inputs).
  int64_t pbound = 0;
  {
    std::vector<int64_t> colsum(S * N);
    for (const auto& tile : tiles) {
      std::fill(colsum.begin(), colsum.end(), 0);
      for (uint32_t k = tile.row_begin; k < tile.row_end; ++k)
        for (size_t i = 0; i < S * N; ++i) colsum[i] += cells[size_t{k} * S * N + i];
      for (int64_t v : colsum) pbound = std::max(pbound, v);
    }
  }
  if (pbound >= 32768) return nullptr;
  if (adc.kind == AdcKind::kIdeal && adc.frac_bits > 15) return nullptr;

  std::unique_ptr<NoiseMvmKernel> k(new NoiseMvmKernel());
  k->k_rows_ = k_rows, k->n_cols_ = n_cols, k->input_bits_ = input_bits;
  k->slices_ = slices, k->tiles_ = tiles, k->groups_ = groups;
  k->granularity_ = adc.granularity;

  // Noise: the table (the definition) as int32; (S - 186) K exactly when sigma 2^11 = K is an
  // integer that reproduces it (no lookup then). Every a = p 2^16 + noise must fit in 32 bits.
  const std::vector<int64_t> table = noise_table(sigma);
  for (int64_t v : table)
    if (v <= INT32_MIN || v >= INT32_MAX) return nullptr;
  k->noise_values_.assign(table.begin(), table.end());
  {
    const double k11 = sigma * 2048.0;
    if (k11 == std::floor(k11) && k11 >= 1 && k11 <= 1048576) {
      k->noise_int_ = static_cast<int32_t>(k11);
      for (uint32_t s = 0; s <= kIrwinHallMax; ++s)
        if ((static_cast<int64_t>(s) - kIrwinHallMean) * k->noise_int_ != table[s]) k->noise_int_ = 0;
    }
  }
  const int64_t a_min = table[0], a_max = pbound * 65536 + table[kIrwinHallMax];
  if (a_min <= INT32_MIN + 1 || a_max >= INT32_MAX - 1 || a_max - a_min >= INT32_MAX) return nullptr;

  // ADC tables (or the ideal ADC's arithmetic) and the largest |value_fx|.
  int64_t max_value = 0;
  if (adc.kind == AdcKind::kIdeal) {
    k->mode_ = Mode::kIdeal;
    k->ideal_shift_ = 15 - adc.frac_bits;
    max_value = (std::max(-a_min, a_max) >> k->ideal_shift_) + 1;
  } else if (build_linear(*k, adc, G, S, N, a_min, a_max, max_value)) {
    k->mode_ = Mode::kLinear;
  } else {
    k->mode_ = Mode::kTable;
    max_value = 0;
    const uint64_t sets = AdcSpec::sets_for(adc.granularity, G, S, N);
    for (uint64_t set = 0; set < sets; ++set) {
      // Change points: the first inputs of a higher state, in (a_min, a_max].
      const auto points = adc_change_points(adc, set, a_min, a_max, kMaxStates - 1);
      if (!points) return nullptr;
      const std::vector<int64_t>& change = *points;
      // Buckets of 2^shift inputs from base = (first change point) - 1 to the last change point, no
      // wider than the closest two change points: each holds at most one. Inputs outside are
      // clamped to the first / last bucket, beyond every change point.
      SetTable st;
      int64_t spacing = INT64_MAX;
      for (size_t i = 1; i < change.size(); ++i) spacing = std::min(spacing, change[i] - change[i - 1]);
      st.shift = kMaxShift;
      while (st.shift > 0 && (int64_t{1} << st.shift) > spacing) --st.shift;
      const int64_t base = change.empty() ? a_min : change.front() - 1;
      const int64_t width = int64_t{1} << st.shift;
      const int64_t count = change.empty() ? 1 : ((change.back() - base) >> st.shift) + 1;
      if (count > kMaxBucketsPerSet || k->buckets_.size() + static_cast<size_t>(count) > kMaxBuckets) return nullptr;
      st.base = static_cast<int32_t>(base);
      st.dmax = static_cast<int32_t>(std::min<int64_t>(count * width - 1, INT32_MAX));
      st.first = static_cast<uint32_t>(k->buckets_.size());
      st.values = static_cast<uint32_t>(k->values_.size());
      for (size_t i = 0; i <= change.size(); ++i) {
        const AnalogAdcResult r = adc_convert_analog(adc, set, i == 0 ? a_min : change[i - 1]);
        if (r.value_fx >= (int64_t{1} << 29) || r.value_fx < -(int64_t{1} << 29)) return nullptr;
        max_value = std::max(max_value, r.value_fx < 0 ? -r.value_fx : r.value_fx);
        k->values_.push_back(static_cast<int32_t>(r.value_fx * 2 + (r.saturated ? 1 : 0)));
      }
      size_t next = 0;  // first change point > the bucket's start
      for (int64_t b = 0; b < count; ++b) {
        const int64_t b0 = base + b * width;
        while (next < change.size() && change[next] <= b0) ++next;
        const uint32_t state_lo = static_cast<uint32_t>(next);
        const uint32_t om1 = next < change.size() && change[next] < b0 + width
                                 ? static_cast<uint32_t>(change[next] - b0 - 1)
                                 : static_cast<uint32_t>(width - 1);
        k->buckets_.push_back(static_cast<int32_t>((state_lo << 23) | om1));
      }
      k->sets_.push_back(st);
    }
  }
  int64_t shift_sum = 0;
  for (const auto& sl : slices) shift_sum += int64_t{1} << sl.bit_lo;
  if (static_cast<double>(max_value) * static_cast<double>(shift_sum) * static_cast<double>(G) >= 0x1p31)
    return nullptr;

  // Nibble tables.
  k->row_groups_.resize(G);
  k->nibble_offset_.resize(G * S);
  for (size_t g = 0; g < G; ++g) {
    k->row_groups_[g] = (tiles[g].rows() + 3) / 4;
    for (size_t s = 0; s < S; ++s) {
      k->nibble_offset_[g * S + s] = k->nibble_column_;
      k->nibble_column_ += size_t{k->row_groups_[g]} * 16;
    }
  }
  // (Rows of cells are contiguous over n: the four rows of a group are read once per (g, s, r)
  // for every column; entry pat = entry (pat without its top bit) + that bit's row.)
  k->nibbles_.assign(k->nibble_column_ * N, 0);
  for (size_t g = 0; g < G; ++g)
    for (size_t s = 0; s < S; ++s)
      for (uint32_t r = 0; r < k->row_groups_[g]; ++r) {
        const int16_t* rowp[4] = {nullptr, nullptr, nullptr, nullptr};
        for (uint32_t j = 0; j < 4; ++j) {
          const uint32_t row = tiles[g].row_begin + 4 * r + j;
          if (row < tiles[g].row_end) rowp[j] = cells.data() + (size_t{row} * S + s) * N;
        }
        uint8_t* t0 = k->nibbles_.data() + k->nibble_offset_[g * S + s] + size_t{r} * 16;
        for (size_t n = 0; n < N; ++n) {
          uint8_t c[4];
          for (uint32_t j = 0; j < 4; ++j) c[j] = rowp[j] ? static_cast<uint8_t>(rowp[j][n]) : uint8_t{0};
          uint8_t* t = t0 + n * k->nibble_column_;
          t[0] = 0;
          for (uint32_t pat = 1; pat < 16; ++pat) {
            const uint32_t top = 31u - static_cast<uint32_t>(std::countl_zero(pat));
            t[pat] = static_cast<uint8_t>(t[pat & ~(1u << top)] + c[top]);
          }
        }
      }
  k->flush_ = std::max<uint32_t>(1, 255 / std::max<uint32_t>(1, 4 * static_cast<uint32_t>(max_level)));
  return k;
#endif
}

#if IMCSIM_NOISE_X86
namespace {

// Everything the inner loop needs about one call.
struct NoiseRun {
  uint32_t G, S, T, N, chunks, per_chunk, flush;
  const uint32_t* row_groups;
  const size_t* gofs;            // [G + 1]: byte offsets of tile g in a chunk's input nibbles
  size_t chunk_bytes;
  const uint8_t* idx;            // [chunk][g][r][64 lanes]
  const uint32_t* zbase;         // [chunk][64 elements]: lo32(position key) + 2 c0 kGamma32
  const uint32_t* zhi;           // [chunk][64 elements]: hi32(position key)
  const int32_t* masks;          // [chunk][3][64]: valid (1 / 0), min fill, max fill
  const uint8_t* full;           // [chunk]: every lane valid
  const uint8_t* nibbles;
  size_t nibble_column;
  const size_t* nibble_offset;
  const WeightSlice* slices;
  const NoiseMvmKernel::SetTable* sets;
  AdcGranularity granularity;
  const int32_t* buckets;
  const int32_t* values;
  uint32_t ideal_shift;
  const NoiseMvmKernel::LinearSet* linear;
  int32_t qmin, qmax;
  const int32_t* noise_values;   // [S]: noise_table as int32
  int32_t noise_int;             // sigma 2^11 if an integer that reproduces the table, else 0
  const int64_t* wt;             // [T]
  int64_t* acc;                  // [batch][N]
  uint32_t batch;
};

// Partial sums of kNS consecutive slices (tables tab + i * stride) for the 64 lanes of a chunk's
// tile (input nibbles ig[r][64]): w[i][0..3] = 16-bit sums in slot order (nibble_simd.h).
template <uint32_t kNS>
IMCSIM_AVX2_INLINE void psums_slices(const uint8_t* tab, size_t stride, const uint8_t* ig, uint32_t RG, uint32_t flush,
                                     __m256i (*w)[4]) {
  const uint8_t* tabs[kNS];
  for (uint32_t i = 0; i < kNS; ++i) tabs[i] = tab + i * stride;
  nibble::psums<kNS>(tabs, ig, RG, flush, w);
}

enum { kModeIdeal, kModeLinear, kModeTable, kModeLinearSmall };


template <int kMode, bool kCount>
[[gnu::target("avx2")]] void noise_run(const NoiseRun& R, uint64_t& sat_out, int32_t& min_out, int32_t& max_out) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i low23 = _mm256_set1_epi32((1 << 23) - 1);
  const __m256i kint = _mm256_set1_epi32(R.noise_int),
                kint_bias = _mm256_set1_epi32(R.noise_int * static_cast<int32_t>(kIrwinHallMean));
  const __m256i one = _mm256_set1_epi32(1);
  __m256i satv = zero, minv = _mm256_set1_epi32(INT32_MAX), maxv = _mm256_set1_epi32(INT32_MIN);
  alignas(32) int32_t acc32[64];
  // Fold order: the elements of position bl of a chunk are fold_k[bl * T + t], t < T (group t,
  // weight sign_t 2^bitlo_t = (x << fold_shift[t]) negated if fold_neg[t]).
  uint8_t fold_k[64];
  uint32_t fold_shift[64];
  int64_t fold_neg[64];
  for (uint32_t k = 0; k < 64; ++k) {
    const uint32_t lane = lane_of_element(k), bl = lane / R.T, t = lane % R.T;
    if (bl < R.per_chunk) fold_k[bl * R.T + t] = static_cast<uint8_t>(k);
  }
  for (uint32_t t = 0; t < R.T; ++t) {
    fold_shift[t] = static_cast<uint32_t>(std::countr_zero(static_cast<uint64_t>(R.wt[t] < 0 ? -R.wt[t] : R.wt[t])));
    fold_neg[t] = R.wt[t] < 0 ? -1 : 0;
  }
  for (uint32_t n = 0; n < R.N; ++n) {
    const uint8_t* col = R.nibbles + size_t{n} * R.nibble_column;
    for (uint32_t c = 0; c < R.chunks; ++c) {
      for (uint32_t k = 0; k < 64; k += 8) _mm256_store_si256(reinterpret_cast<__m256i*>(acc32 + k), zero);
      const uint8_t* ic = R.idx + c * R.chunk_bytes;
      const __m256i* zb = reinterpret_cast<const __m256i*>(R.zbase + size_t{c} * 64);
      const __m256i* zh = reinterpret_cast<const __m256i*>(R.zhi + size_t{c} * 64);
      const __m256i* mk = reinterpret_cast<const __m256i*>(R.masks + size_t{c} * 192);
      const bool full = R.full[c] != 0;  // every lane of the chunk in use: no masks
      for (uint32_t g = 0; g < R.G; ++g) {
        const uint32_t RG = R.row_groups[g];
        const uint8_t* ig = ic + R.gofs[g];
        // Partial sums of the 64 lanes (16-bit, slot order), up to four slices at a time.
        alignas(32) __m256i wbuf[4][4];
        for (uint32_t s = 0; s < R.S; ++s) {
          if (s % 4 == 0) {
            const uint8_t* tab = col + R.nibble_offset[size_t{g} * R.S + s];
            const size_t stride = size_t{RG} * 16;
            switch (std::min<uint32_t>(4, R.S - s)) {
              case 1: psums_slices<1>(tab, stride, ig, RG, R.flush, wbuf); break;
              case 2: psums_slices<2>(tab, stride, ig, RG, R.flush, wbuf); break;
              case 3: psums_slices<3>(tab, stride, ig, RG, R.flush, wbuf); break;
              default: psums_slices<4>(tab, stride, ig, RG, R.flush, wbuf); break;
            }
          }
          const __m256i* w = wbuf[s % 4];
          // Parameter set and noise stream offset of this (g, s, n).
          const uint64_t set = R.granularity == AdcGranularity::kLayer    ? 0
                               : R.granularity == AdcGranularity::kColumn ? n
                                                                           : (uint64_t{g} * R.S + s) * R.N + n;
          const __m256i zoff = _mm256_set1_epi32(
              static_cast<int32_t>(2 * static_cast<uint32_t>(((g * R.S + s) * R.T) * R.N + n) * kGamma32));
          __m256i base = zero, dmax = zero, bmask = zero;
          __m128i bshift = _mm_setzero_si128();
          const int32_t* bk = nullptr;
          const int32_t* vt = nullptr;
          __m256i tiev = zero, offv = zero, magicv = zero, centrev = zero, stepv = zero;
          __m128i dshift = _mm_setzero_si128(), dshift32 = _mm_setzero_si128();
          __m256i qminv = zero, qmaxv = zero;
          __m128i vshift = _mm_setzero_si128(), sshift = _mm_setzero_si128();
          __m256i smagic = zero;
          if constexpr (kMode == kModeLinear || kMode == kModeLinearSmall) {
            const NoiseMvmKernel::LinearSet& ls = R.linear[set];
            vshift = _mm_cvtsi32_si128(static_cast<int>(ls.sh));
            sshift = _mm_cvtsi32_si128(static_cast<int>(ls.small_shift));
            smagic = _mm256_set1_epi32(static_cast<int32_t>(ls.small_magic));
            tiev = _mm256_set1_epi32(ls.tie);
            offv = _mm256_set1_epi32(ls.offset);
            magicv = _mm256_set1_epi64x(static_cast<long long>(ls.magic));
            dshift = _mm_cvtsi32_si128(static_cast<int>(ls.shift));
            dshift32 = _mm_cvtsi32_si128(static_cast<int>(ls.shift - 32));
            // code' = code + m in [qmin + m, qmax + m]; the slice's signed, shifted value
            // sign_s 2^bitlo_s (centre + code step) = centre' + code' step' (mod 2^32, exact as
            // the result fits).
            const uint32_t sgn = R.slices[s].sign < 0 ? ~0u : 0u, lo = R.slices[s].bit_lo;
            const uint32_t step_s = static_cast<uint32_t>(ls.step) << lo;
            const uint32_t centre_s = (static_cast<uint32_t>(ls.centre) - static_cast<uint32_t>(ls.m) *
                                                                             static_cast<uint32_t>(ls.step)) << lo;
            centrev = _mm256_set1_epi32(static_cast<int32_t>((centre_s ^ sgn) - sgn));
            stepv = _mm256_set1_epi32(static_cast<int32_t>((step_s ^ sgn) - sgn));
            qminv = _mm256_set1_epi32(R.qmin + ls.m);
            qmaxv = _mm256_set1_epi32(R.qmax + ls.m);
          }
          if constexpr (kMode == kModeTable) {
            const NoiseMvmKernel::SetTable& st = R.sets[set];
            base = _mm256_set1_epi32(st.base);
            dmax = _mm256_set1_epi32(st.dmax);
            bmask = _mm256_set1_epi32(static_cast<int32_t>((1u << st.shift) - 1));
            bshift = _mm_cvtsi32_si128(static_cast<int>(st.shift));
            bk = R.buckets + st.first;
            vt = R.values + st.values;
          }
          const __m128i ishift = _mm_cvtsi32_si128(static_cast<int>(R.ideal_shift));
          const __m128i lshift = _mm_cvtsi32_si128(static_cast<int>(R.slices[s].bit_lo));
          const bool negative = R.slices[s].sign < 0;
          // The noise of the 64 lanes first (independent of the partial sums: long dependency
          // chains the out-of-order core overlaps across slot groups), then their conversions.
          alignas(32) int32_t nzbuf[64];
          for (uint32_t q0 = 0; q0 < 8; q0 += 2) {
            __m256i sums[2];
            gauss::irwin_hall_sums<2>(zb + q0, zh + q0, zoff, sums);  // (four hash chains: no spills)
            for (uint32_t h = 0; h < 2; ++h) {
              const __m256i nz = R.noise_int != 0  // sigma 2^11 an integer: (S - 186) sigma 2^11 exactly
                                     ? _mm256_sub_epi32(_mm256_mullo_epi32(sums[h], kint), kint_bias)
                                     : _mm256_i32gather_epi32(R.noise_values, sums[h], 4);
              _mm256_store_si256(reinterpret_cast<__m256i*>(nzbuf + 8 * (q0 + h)), nz);
            }
          }
          for (uint32_t q = 0; q < 8; ++q) {
            const __m256i wq = w[q / 2];
            const __m256i p16 = q & 1 ? _mm256_unpackhi_epi16(zero, wq) : _mm256_unpacklo_epi16(zero, wq);  // p << 16
            const __m256i a = _mm256_add_epi32(p16, _mm256_load_si256(reinterpret_cast<const __m256i*>(nzbuf + 8 * q)));
            __m256i value, e;
            if constexpr (kMode == kModeIdeal) {
              value = _mm256_srai_epi32(_mm256_add_epi32(_mm256_sra_epi32(a, ishift), one), 1);
              e = zero;
            } else if constexpr (kMode == kModeLinearSmall) {
              // As below, the quotient as ((x >> sh) * magic) >> shift in 32 bits.
              const __m256i x = _mm256_add_epi32(_mm256_sub_epi32(a, offv), _mm256_cmpgt_epi32(tiev, a));
              const __m256i r = _mm256_srl_epi32(_mm256_mullo_epi32(_mm256_srl_epi32(x, vshift), smagic), sshift);
              const __m256i code = _mm256_min_epi32(_mm256_max_epi32(r, qminv), qmaxv);
              value = _mm256_add_epi32(centrev, _mm256_mullo_epi32(code, stepv));  // already signed, shifted
              e = _mm256_andnot_si256(_mm256_cmpeq_epi32(r, code), one);  // saturated in bit 0
            } else if constexpr (kMode == kModeLinear) {
              // x = a - C - [a < T0] + m D; r' = floor(x / D) = r + m (the odd lanes' quotient is
              // the high half of their product shifted by shift - 32); code' = clamp(r') in
              // [qmin + m, qmax + m]; saturated: r' != code'.
              const __m256i x = _mm256_add_epi32(_mm256_sub_epi32(a, offv), _mm256_cmpgt_epi32(tiev, a));
              const __m256i qe = _mm256_srl_epi64(_mm256_mul_epu32(x, magicv), dshift);
              const __m256i qo = _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srli_epi64(x, 32), magicv), dshift32);
              const __m256i r = _mm256_blend_epi32(qe, qo, 0xAA);
              const __m256i code = _mm256_min_epi32(_mm256_max_epi32(r, qminv), qmaxv);
              value = _mm256_add_epi32(centrev, _mm256_mullo_epi32(code, stepv));  // already signed, shifted
              e = _mm256_andnot_si256(_mm256_cmpeq_epi32(r, code), one);  // saturated in bit 0
            } else {
              const __m256i d = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(a, base), zero), dmax);
              const __m256i b = _mm256_srl_epi32(d, bshift);
              const __m256i ent = _mm256_i32gather_epi32(bk, b, 4);
              const __m256i up = _mm256_cmpgt_epi32(_mm256_and_si256(d, bmask), _mm256_and_si256(ent, low23));
              const __m256i state = _mm256_sub_epi32(_mm256_srli_epi32(ent, 23), up);
              e = _mm256_i32gather_epi32(vt, state, 4);
              value = _mm256_srai_epi32(e, 1);
            }
            __m256i* ap = reinterpret_cast<__m256i*>(acc32 + 8 * q);
            if constexpr (kMode == kModeLinear || kMode == kModeLinearSmall) {
              *ap = _mm256_add_epi32(*ap, value);
            } else {
              const __m256i v = _mm256_sll_epi32(value, lshift);
              *ap = negative ? _mm256_sub_epi32(*ap, v) : _mm256_add_epi32(*ap, v);
            }
            if constexpr (kCount) {
              if (full) {
                if constexpr (kMode == kModeLinear || kMode == kModeLinearSmall) satv = _mm256_add_epi32(satv, e);
                if constexpr (kMode == kModeTable) satv = _mm256_add_epi32(satv, _mm256_and_si256(e, one));
                minv = _mm256_min_epi32(minv, a);
                maxv = _mm256_max_epi32(maxv, a);
              } else {
                if constexpr (kMode != kModeIdeal)
                  satv = _mm256_add_epi32(satv, _mm256_and_si256(e, _mm256_load_si256(mk + q)));
                minv = _mm256_min_epi32(minv, _mm256_max_epi32(a, _mm256_load_si256(mk + 8 + q)));
                maxv = _mm256_max_epi32(maxv, _mm256_min_epi32(a, _mm256_load_si256(mk + 16 + q)));
              }
            }
          }
        }
      }
      // Fold the lanes into the positions' accumulators.
      const uint32_t positions = std::min(R.per_chunk, R.batch - c * R.per_chunk);
      for (uint32_t bl = 0; bl < positions; ++bl) {
        int64_t sum = 0;
        const uint8_t* ks = fold_k + bl * R.T;
        for (uint32_t t = 0; t < R.T; ++t)
          sum += ((int64_t{acc32[ks[t]]} * (int64_t{1} << fold_shift[t])) ^ fold_neg[t]) - fold_neg[t];
        R.acc[size_t{c * R.per_chunk + bl} * R.N + n] += sum;
      }
    }
  }
  if constexpr (kCount) {
    alignas(32) int32_t sv[8], mn[8], mx[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sv), satv);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mn), minv);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mx), maxv);
    for (int i = 0; i < 8; ++i) {
      sat_out += static_cast<uint32_t>(sv[i]);
      min_out = std::min(min_out, mn[i]);
      max_out = std::max(max_out, mx[i]);
    }
  }
}

}  // namespace
#endif

uint64_t NoiseMvmKernel::run(const int32_t* x_shifted, uint32_t batch, uint64_t pos0, uint64_t key, int64_t* acc,
                             FastStats* stats) const {
#if !IMCSIM_NOISE_X86
  (void)x_shifted, (void)batch, (void)pos0, (void)key, (void)acc, (void)stats;
  return 0;
#else
  const uint32_t G = static_cast<uint32_t>(tiles_.size()), S = static_cast<uint32_t>(slices_.size()),
                 T = static_cast<uint32_t>(groups_.size()), N = n_cols_, K = k_rows_;
  if (batch == 0) return 0;
  const uint32_t per_chunk = 64 / T, chunks = (batch + per_chunk - 1) / per_chunk;
  std::vector<size_t> gofs(G + 1, 0);
  for (uint32_t g = 0; g < G; ++g) gofs[g + 1] = gofs[g] + size_t{row_groups_[g]} * 64;
  const size_t chunk_bytes = gofs[G];
  // Input nibbles [chunk][g][r][lane], lane = b * T + t (unused lanes 0), and the row drives.
  std::vector<uint8_t> idx(chunks * chunk_bytes + 32, 0);
  const uint32_t in_mask = input_bits_ >= 32 ? ~0u : ((1u << input_bits_) - 1u);
  uint64_t drives = 0;
  for (uint32_t b = 0; b < batch; ++b) {
    const uint32_t c = b / per_chunk, bl = b % per_chunk;
    const int32_t* x = x_shifted + size_t{b} * K;
    for (uint32_t g = 0; g < G; ++g) {
      const RowTile& tile = tiles_[g];
      for (uint32_t t = 0; t < T; ++t) {
        uint8_t* dst = idx.data() + c * chunk_bytes + gofs[g] + bl * T + t;
        const uint32_t bit_lo = groups_[t].bit_lo;
        for (uint32_t r = 0; r < row_groups_[g]; ++r) {
          uint32_t nib = 0;
          for (uint32_t j = 0; j < 4; ++j) {
            const uint32_t row = tile.row_begin + 4 * r + j;
            if (row < tile.row_end) nib |= ((static_cast<uint32_t>(x[row]) & in_mask) >> bit_lo & 1u) << j;
          }
          drives += static_cast<uint64_t>(std::popcount(nib));
          dst[size_t{r} * 64] = static_cast<uint8_t>(nib);
        }
      }
    }
  }
  // Noise stream of every element k (lane lane_of_element(k)): its position's key H(key, pos)
  // and the element's first counter 2 t N (the conversion index within the position is
  // ((g S + s) T + t) N + n), and the counter masks per element.
  std::vector<uint32_t> zstore(size_t{chunks} * 128 + 8);
  std::vector<int32_t> mstore(size_t{chunks} * 192 + 8);
  uint32_t* zbase = reinterpret_cast<uint32_t*>((reinterpret_cast<uintptr_t>(zstore.data()) + 31) & ~uintptr_t{31});
  uint32_t* zhi = zbase + size_t{chunks} * 64;
  int32_t* masks = reinterpret_cast<int32_t*>((reinterpret_cast<uintptr_t>(mstore.data()) + 31) & ~uintptr_t{31});
  std::vector<uint8_t> full(chunks, 1);
  std::vector<uint64_t> pos_keys(batch);  // H(key, pos), once per position
  for (uint32_t b = 0; b < batch; ++b) pos_keys[b] = rng_extend(key, pos0 + b);
  for (uint32_t c = 0; c < chunks; ++c)
    for (uint32_t k = 0; k < 64; ++k) {
      const uint32_t lane = lane_of_element(k), bl = lane / T, t = lane % T;
      const bool valid = bl < per_chunk && c * per_chunk + bl < batch;
      const uint64_t pos_key = pos_keys[c * per_chunk + (valid ? bl : 0)];
      zbase[size_t{c} * 64 + k] = static_cast<uint32_t>(pos_key) + 2 * t * N * kGamma32;
      zhi[size_t{c} * 64 + k] = static_cast<uint32_t>(pos_key >> 32);
      masks[size_t{c} * 192 + k] = valid ? 1 : 0;
      masks[size_t{c} * 192 + 64 + k] = valid ? INT32_MIN : INT32_MAX;
      masks[size_t{c} * 192 + 128 + k] = valid ? INT32_MAX : INT32_MIN;
      if (!valid) full[c] = 0;
    }
  std::vector<int64_t> wt(T);
  for (uint32_t t = 0; t < T; ++t) wt[t] = int64_t{groups_[t].sign} * (int64_t{1} << groups_[t].bit_lo);
  NoiseRun R{G, S, T, N, chunks, per_chunk, flush_, row_groups_.data(), gofs.data(), chunk_bytes, idx.data(),
             zbase, zhi, masks, full.data(), nibbles_.data(), nibble_column_, nibble_offset_.data(), slices_.data(), sets_.data(),
             granularity_, buckets_.data(), values_.data(), ideal_shift_, linear_.data(), qmin_, qmax_, noise_values_.data(), noise_int_,
             wt.data(), acc, batch};
  uint64_t sat = 0;
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  auto dispatch = [&]<bool kCount>() {
    switch (mode_) {
      case Mode::kIdeal: return noise_run<kModeIdeal, kCount>(R, sat, lo, hi);
      case Mode::kLinear:
        if (linear_small_) return noise_run<kModeLinearSmall, kCount>(R, sat, lo, hi);
        return noise_run<kModeLinear, kCount>(R, sat, lo, hi);
      case Mode::kTable: return noise_run<kModeTable, kCount>(R, sat, lo, hi);
    }
  };
  if (stats) {
    dispatch.template operator()<true>();
    stats->saturations += sat;
    stats->psum_min = std::min<int64_t>(stats->psum_min, lo >> kAnalogFracBits);
    stats->psum_max = std::max<int64_t>(stats->psum_max, hi >> kAnalogFracBits);
  } else {
    dispatch.template operator()<false>();
  }
  return drives;
#endif
}

}  // namespace imcsim::kernels
