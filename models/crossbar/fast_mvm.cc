#include "models/crossbar/fast_mvm.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <stdexcept>

#include "models/digital/requant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define IMCSIM_X86 1
#endif

namespace imcsim::kernels {

const char* kernel_path_name(KernelPath path) {
  switch (path) {
    case KernelPath::kReference: return "reference";
    case KernelPath::kPortable: return "portable";
    case KernelPath::kNative: return "native";
  }
  return "?";
}

std::optional<KernelPath> parse_kernel_path(const std::string& name) {
  if (name == "reference") return KernelPath::kReference;
  if (name == "portable") return KernelPath::kPortable;
  if (name == "native") return KernelPath::kNative;
  return std::nullopt;
}

bool native_kernels_supported() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("popcnt");
#else
  return false;
#endif
}

KernelPath select_kernel_path(std::optional<KernelPath> requested) {
  KernelPath path = native_kernels_supported() ? KernelPath::kNative : KernelPath::kPortable;
  if (requested) {
    path = *requested;
  } else if (const char* env = std::getenv("IMCSIM_KERNEL"); env && *env && std::string(env) != "auto") {
    const auto p = parse_kernel_path(env);
    if (!p)
      throw std::invalid_argument(std::string("environment variable IMCSIM_KERNEL: expected reference, portable, "
                                              "native or auto, got '") + env + "'");
    path = *p;
  }
  if (path == KernelPath::kNative && !native_kernels_supported())
    throw std::invalid_argument("kernel path 'native' needs an x86-64 CPU with AVX2, BMI1, BMI2 and POPCNT");
  return path;
}

BitPlaneCrossbar::BitPlaneCrossbar(std::span<const int16_t> cells, uint32_t k_rows, uint32_t n_cols,
                                   std::vector<WeightSlice> slices, std::vector<RowTile> tiles,
                                   std::vector<InputGroup> groups, uint32_t input_bits, KernelPath path)
    : k_rows_(k_rows),
      n_cols_(n_cols),
      input_bits_(input_bits),
      slices_(std::move(slices)),
      tiles_(std::move(tiles)),
      groups_(std::move(groups)),
      path_(path == KernelPath::kReference ? KernelPath::kPortable : path) {
  const size_t G = tiles_.size(), S = slices_.size(), T = groups_.size(), N = n_cols_;
  if (T > 32) throw std::invalid_argument("fast kernels: more than 32 input groups");
  uint32_t max_group = 0;
  // Every group gets the widest group's plane count in the input layout (the planes past its
  // own width stay 0), so that the fixed-size kernels serve uneven groups too.
  uniform_group_bits_ = 0;
  for (const auto& gr : groups_) uniform_group_bits_ = std::max(uniform_group_bits_, gr.nbits);
  for (const auto& gr : groups_) {
    single_bit_groups_ = single_bit_groups_ && gr.nbits == 1;
    max_group = std::max(max_group, (1u << gr.nbits) - 1u);
  }
  words_per_tile_.resize(G);
  input_offset_.resize(G * T);
  for (size_t g = 0; g < G; ++g) {
    words_per_tile_[g] = (tiles_[g].rows() + 63) / 64;
    for (size_t t = 0; t < T; ++t) {
      input_offset_[g * T + t] = input_words_;
      input_words_ += size_t{uniform_group_bits_} * words_per_tile_[g];
    }
  }
  // Cell planes per (tile, slice).
  blocks_.resize(G * S);
  size_t total = 0;
  for (size_t g = 0; g < G; ++g) {
    const RowTile& tile = tiles_[g];
    for (size_t s = 0; s < S; ++s) {
      int32_t max_pos = 0, max_neg = 0;
      for (uint32_t k = tile.row_begin; k < tile.row_end; ++k)
        for (size_t n = 0; n < N; ++n) {
          const int32_t c = cells[(size_t{k} * S + s) * N + n];
          max_pos = std::max(max_pos, c);
          max_neg = std::max(max_neg, -c);
        }
      Block& b = blocks_[g * S + s];
      const uint32_t qp = static_cast<uint32_t>(std::bit_width(static_cast<uint32_t>(max_pos)));
      const uint32_t qn = static_cast<uint32_t>(std::bit_width(static_cast<uint32_t>(max_neg)));
      b.planes = qp + qn;
      b.unsigned_planes = qn == 0;
      for (uint32_t q = 0; q < qp; ++q) b.coef.push_back(int32_t{1} << q);
      for (uint32_t q = 0; q < qn; ++q) b.coef.push_back(-(int32_t{1} << q));
      b.offset = total;
      total += N * b.planes * words_per_tile_[g];
      psum_bound_ = std::max(psum_bound_, int64_t{tile.rows()} * max_group * std::max(max_pos, max_neg));
    }
  }
  planes_.assign(total, 0);
  for (size_t g = 0; g < G; ++g) {
    const RowTile& tile = tiles_[g];
    const uint32_t W = words_per_tile_[g];
    for (size_t s = 0; s < S; ++s) {
      const Block& b = blocks_[g * S + s];
      const uint32_t qp = b.planes - static_cast<uint32_t>(std::count_if(b.coef.begin(), b.coef.end(),
                                                                         [](int32_t c) { return c < 0; }));
      // Per word (64 rows) and block of 32 columns, the planes' words are built in a buffer
      // ([q][n]) from the rows' contiguous cells, then stored.
      const uint32_t Q = b.planes;
      if (Q == 0) continue;
      std::vector<uint64_t> acc(size_t{Q} * 32);
      for (uint32_t w = 0; w < W; ++w) {
        const uint32_t r0 = tile.row_begin + 64 * w, r1 = std::min(tile.row_end, r0 + 64);
        for (size_t n0 = 0; n0 < N; n0 += 32) {
          const size_t nb = std::min<size_t>(32, N - n0);
          std::fill(acc.begin(), acc.end(), 0);
          for (uint32_t k = r0; k < r1; ++k) {
            const int16_t* crow = cells.data() + (size_t{k} * S + s) * N + n0;
            const uint32_t sh = k - r0;
            for (uint32_t q = 0; q < Q; ++q) {
              uint64_t* aq = acc.data() + size_t{q} * 32;
              if (q < qp)
                for (size_t n = 0; n < nb; ++n)
                  aq[n] |= uint64_t{(static_cast<uint32_t>(std::max<int32_t>(crow[n], 0)) >> q) & 1u} << sh;
              else
                for (size_t n = 0; n < nb; ++n)
                  aq[n] |= uint64_t{(static_cast<uint32_t>(std::max<int32_t>(-crow[n], 0)) >> (q - qp)) & 1u} << sh;
            }
          }
          for (size_t n = 0; n < nb; ++n) {
            uint64_t* d = planes_.data() + b.offset + (n0 + n) * Q * W;
            for (uint32_t q = 0; q < Q; ++q) d[size_t{q} * W + w] = acc[size_t{q} * 32 + n];
          }
        }
      }
    }
  }
  build_nibbles(cells);
}

// Nibble tables for the native kernel (see accumulate_nibble).
void BitPlaneCrossbar::build_nibbles(std::span<const int16_t> cells) {
  const size_t G = tiles_.size(), S = slices_.size(), N = n_cols_;
  int32_t max_level = 0;
  for (const Block& b : blocks_) {
    if (!b.unsigned_planes) return;
    max_level = std::max(max_level, (int32_t{1} << b.planes) - 1);
  }
  if (path_ != KernelPath::kNative || !single_bit_groups_ || groups_.size() > 64 || max_level > 63 ||
      psum_bound_ >= 32768)
    return;
  row_groups_.resize(G);
  nibble_offset_.resize(G * S);
  nibble_column_ = 0;
  for (size_t g = 0; g < G; ++g) {
    row_groups_[g] = (tiles_[g].rows() + 3) / 4;
    for (size_t s = 0; s < S; ++s) {
      nibble_offset_[g * S + s] = nibble_column_;
      nibble_column_ += size_t{row_groups_[g]} * 16;
    }
  }
  nibbles_.resize(nibble_column_ * N);  // every byte is written below
  // Entry pat of a table = sum of the cells c_j (0 <= c_j <= 63) of the rows j with bit j of pat
  // set: bytes pat = 0..7 of c0 * M0 + c1 * M1 + c2 * M2 (M_j: byte pat = bit j of pat), no carry
  // between bytes since the sum is <= 252; bytes 8..15 add c3. Columns in blocks of 32, so that
  // the cells read (32 int16 per row) and the tables written stay in cache.
  constexpr uint64_t kM0 = 0x0100010001000100ull, kM1 = 0x0101000001010000ull, kM2 = 0x0101010100000000ull,
                     kOnes = 0x0101010101010101ull;
  for (size_t n0 = 0; n0 < N; n0 += 32) {
    const size_t n1 = std::min(N, n0 + 32);
    for (size_t g = 0; g < G; ++g) {
      const RowTile& tile = tiles_[g];
      for (size_t s = 0; s < S; ++s) {
        const size_t off = nibble_offset_[g * S + s];
        for (uint32_t r = 0; r < row_groups_[g]; ++r) {
          const int16_t* rowp[4];
          for (uint32_t j = 0; j < 4; ++j) {
            const uint32_t row = tile.row_begin + 4 * r + j;
            rowp[j] = row < tile.row_end ? cells.data() + (size_t{row} * S + s) * N : nullptr;
          }
          for (size_t n = n0; n < n1; ++n) {
            uint64_t c[4];
            for (uint32_t j = 0; j < 4; ++j) c[j] = rowp[j] ? static_cast<uint64_t>(rowp[j][n]) : 0;
            const uint64_t lo = c[0] * kM0 + c[1] * kM1 + c[2] * kM2, hi = lo + c[3] * kOnes;
            uint8_t* t = nibbles_.data() + n * nibble_column_ + off + size_t{r} * 16;
            for (uint32_t b = 0; b < 8; ++b) {
              t[b] = static_cast<uint8_t>(lo >> (8 * b));
              t[8 + b] = static_cast<uint8_t>(hi >> (8 * b));
            }
          }
        }
      }
    }
  }
  nibble_flush_ = std::max<uint32_t>(1, 255 / std::max<uint32_t>(1, 4 * static_cast<uint32_t>(max_level)));
  nibble_ok_ = true;
}

namespace {

#define IMCSIM_INLINE [[gnu::always_inline]] inline

// Population count: one instruction on the native path, a SWAR sequence on the portable one
// (baseline x86-64 has no POPCNT; std::popcount would call libgcc).
template <bool kPopcnt>
IMCSIM_INLINE uint32_t popcount64(uint64_t x) {
  if constexpr (kPopcnt) {
    return static_cast<uint32_t>(__builtin_popcountll(x));
  } else {
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return static_cast<uint32_t>((x * 0x0101010101010101ull) >> 56);
  }
}

// p = sum_j 2^j sum_q coef_q popcount(U[j] & D[q]) over W words: the partial sum of one group
// (J input planes u[j * W ..]) and one column (Q cell planes d[q * W ..]).
template <bool kPopcnt>
IMCSIM_INLINE int64_t plane_psum(const uint64_t* u, const uint64_t* d, uint32_t J, uint32_t Q, uint32_t W,
                                 const int32_t* coef) {
  int64_t p = 0;
  for (uint32_t j = 0; j < J; ++j) {
    int64_t pj = 0;
    for (uint32_t q = 0; q < Q; ++q) {
      uint32_t c = 0;
      for (uint32_t w = 0; w < W; ++w) c += popcount64<kPopcnt>(u[j * W + w] & d[q * W + w]);
      pj += int64_t{coef[q]} * c;
    }
    p += pj * (int64_t{1} << j);
  }
  return p;
}

// Everything the block kernels need about one (tile, slice) block and the batch.
struct BlockArgs {
  const uint64_t* planes;    // block (g, s): [n][Q][W]
  uint32_t Q, W, N, T;
  const int32_t* coef;       // [Q]
  const uint32_t* nbits;     // [T] group widths
  const uint64_t* words;     // [batch][stride]
  size_t stride;
  const size_t* uoff;        // [T]: offset of U[g][t] in a position's words
  const uint32_t* nonzero;   // [batch]: mask of non-zero groups of tile g
  const int64_t* zsum;       // [batch]: sum of wt[t] over the zero groups
  const uint32_t* nzero;     // [batch]: count of zero groups
  const uint8_t* list;       // [batch][32]: the non-zero groups t of tile g, ascending
  const int64_t* list_wt;    // [batch][32]: wt of those groups
  const uint64_t* const* ubase;  // [batch]: words of tile g's first group (J = 1 layout: group t at + t * W)
  uint32_t batch;
  const int64_t* wt;         // [T]: sign_t 2^bitlo_t
  int64_t ws;                // sign_s 2^bitlo_s
  const int64_t* lut;        // entry of (set of column 0, p = 0)
  size_t lut_col_stride;     // entries between the tables of columns n and n + 1
  int64_t* acc;              // [batch][N]
};

// Every group J bits wide, W words and Q planes fixed (coefficients +-2^b at run time). Per
// (column, position): the partial sums of the non-zero groups first (independent popcounts),
// then their table lookups and shift-add; the zero groups add zsum * value(p = 0).
template <bool kPopcnt, bool kCount, uint32_t W, uint32_t Q, uint32_t J>
IMCSIM_INLINE void block_fixed(const BlockArgs& a, FastStats& st) {
  uint64_t sat = 0;
  int64_t lo = st.psum_min, hi = st.psum_max;
  int32_t coef[Q];
  for (uint32_t q = 0; q < Q; ++q) coef[q] = a.coef[q];
  for (uint32_t n = 0; n < a.N; ++n) {
    uint64_t d[Q][W];
    const uint64_t* dp = a.planes + size_t{n} * Q * W;
    for (uint32_t q = 0; q < Q; ++q)
      for (uint32_t w = 0; w < W; ++w) d[q][w] = dp[q * W + w];
    const int64_t* L = a.lut + n * a.lut_col_stride;
    const int64_t e0 = L[0];
    for (uint32_t b = 0; b < a.batch; ++b) {
      const uint64_t* ub = a.ubase[b];
      const uint8_t* list = a.list + size_t{b} * 32;
      const int64_t* lwt = a.list_wt + size_t{b} * 32;
      const uint32_t cnt = a.T - a.nzero[b];
      int32_t p[32];
      for (uint32_t i = 0; i < cnt; ++i) {
        const uint64_t* u = ub + size_t{list[i]} * (J * W);
        int32_t v = 0;
        for (uint32_t j = 0; j < J; ++j) {
          int32_t vj = 0;
          for (uint32_t q = 0; q < Q; ++q) {
            int32_t c = 0;
            for (uint32_t w = 0; w < W; ++w) c += static_cast<int32_t>(popcount64<kPopcnt>(u[j * W + w] & d[q][w]));
            vj += c * coef[q];
          }
          v += vj * (int32_t{1} << j);
        }
        p[i] = v;
      }
      int64_t acc = a.zsum[b] * (e0 >> 1);
      for (uint32_t i = 0; i < cnt; ++i) acc += lwt[i] * (L[p[i]] >> 1);
      if constexpr (kCount) {
        sat += a.nzero[b] * static_cast<uint64_t>(e0 & 1);
        uint32_t s1 = 0;
        int32_t pl = INT32_MAX, ph = INT32_MIN;
        for (uint32_t i = 0; i < cnt; ++i) {
          s1 += static_cast<uint32_t>(L[p[i]] & 1);
          pl = std::min(pl, p[i]);
          ph = std::max(ph, p[i]);
        }
        sat += s1;
        if (cnt) {
          lo = std::min<int64_t>(lo, pl);
          hi = std::max<int64_t>(hi, ph);
        }
      }
      a.acc[size_t{b} * a.N + n] += a.ws * acc;
    }
  }
  st.saturations += sat;
  st.psum_min = lo;
  st.psum_max = hi;
}

// Any block: runtime W, Q, group widths and signed coefficients.
template <bool kPopcnt, bool kCount>
IMCSIM_INLINE void block_generic(const BlockArgs& a, FastStats& st) {
  uint64_t sat = 0;
  int64_t lo = st.psum_min, hi = st.psum_max;
  const uint32_t Q = a.Q, W = a.W;
  for (uint32_t n = 0; n < a.N; ++n) {
    const uint64_t* d = a.planes + size_t{n} * Q * W;
    const int64_t* L = a.lut + n * a.lut_col_stride;
    const int64_t e0 = L[0];
    for (uint32_t b = 0; b < a.batch; ++b) {
      const uint64_t* ub = a.words + b * a.stride;
      int64_t acc = a.zsum[b] * (e0 >> 1);
      if constexpr (kCount) sat += a.nzero[b] * static_cast<uint64_t>(e0 & 1);
      for (uint32_t m = a.nonzero[b]; m; m &= m - 1) {
        const uint32_t t = static_cast<uint32_t>(std::countr_zero(m));
        const uint64_t* u = ub + a.uoff[t];
        const int64_t p = plane_psum<kPopcnt>(u, d, a.nbits[t], Q, W, a.coef);
        const int64_t e = L[p];
        acc += a.wt[t] * (e >> 1);
        if constexpr (kCount) {
          sat += static_cast<uint64_t>(e & 1);
          lo = std::min(lo, p);
          hi = std::max(hi, p);
        }
      }
      a.acc[size_t{b} * a.N + n] += a.ws * acc;
    }
  }
  st.saturations += sat;
  st.psum_min = lo;
  st.psum_max = hi;
}

// fixed_j: every group's width (0 if they differ).
template <bool kPopcnt, bool kCount>
IMCSIM_INLINE void run_block(const BlockArgs& a, uint32_t fixed_j, FastStats& st) {
  if (fixed_j >= 1 && fixed_j <= 2 && a.W <= 4 && a.Q <= 4) {
    switch ((fixed_j * 8 + a.W) * 8 + a.Q) {
      case (1 * 8 + 1) * 8 + 1: return block_fixed<kPopcnt, kCount, 1, 1, 1>(a, st);
      case (1 * 8 + 1) * 8 + 2: return block_fixed<kPopcnt, kCount, 1, 2, 1>(a, st);
      case (1 * 8 + 1) * 8 + 3: return block_fixed<kPopcnt, kCount, 1, 3, 1>(a, st);
      case (1 * 8 + 1) * 8 + 4: return block_fixed<kPopcnt, kCount, 1, 4, 1>(a, st);
      case (1 * 8 + 2) * 8 + 1: return block_fixed<kPopcnt, kCount, 2, 1, 1>(a, st);
      case (1 * 8 + 2) * 8 + 2: return block_fixed<kPopcnt, kCount, 2, 2, 1>(a, st);
      case (1 * 8 + 2) * 8 + 3: return block_fixed<kPopcnt, kCount, 2, 3, 1>(a, st);
      case (1 * 8 + 2) * 8 + 4: return block_fixed<kPopcnt, kCount, 2, 4, 1>(a, st);
      case (1 * 8 + 4) * 8 + 1: return block_fixed<kPopcnt, kCount, 4, 1, 1>(a, st);
      case (1 * 8 + 4) * 8 + 2: return block_fixed<kPopcnt, kCount, 4, 2, 1>(a, st);
      case (1 * 8 + 4) * 8 + 3: return block_fixed<kPopcnt, kCount, 4, 3, 1>(a, st);
      case (1 * 8 + 4) * 8 + 4: return block_fixed<kPopcnt, kCount, 4, 4, 1>(a, st);
      case (2 * 8 + 1) * 8 + 1: return block_fixed<kPopcnt, kCount, 1, 1, 2>(a, st);
      case (2 * 8 + 1) * 8 + 2: return block_fixed<kPopcnt, kCount, 1, 2, 2>(a, st);
      case (2 * 8 + 1) * 8 + 3: return block_fixed<kPopcnt, kCount, 1, 3, 2>(a, st);
      case (2 * 8 + 1) * 8 + 4: return block_fixed<kPopcnt, kCount, 1, 4, 2>(a, st);
      case (2 * 8 + 2) * 8 + 1: return block_fixed<kPopcnt, kCount, 2, 1, 2>(a, st);
      case (2 * 8 + 2) * 8 + 2: return block_fixed<kPopcnt, kCount, 2, 2, 2>(a, st);
      case (2 * 8 + 2) * 8 + 3: return block_fixed<kPopcnt, kCount, 2, 3, 2>(a, st);
      case (2 * 8 + 2) * 8 + 4: return block_fixed<kPopcnt, kCount, 2, 4, 2>(a, st);
      case (2 * 8 + 4) * 8 + 1: return block_fixed<kPopcnt, kCount, 4, 1, 2>(a, st);
      case (2 * 8 + 4) * 8 + 2: return block_fixed<kPopcnt, kCount, 4, 2, 2>(a, st);
      case (2 * 8 + 4) * 8 + 3: return block_fixed<kPopcnt, kCount, 4, 3, 2>(a, st);
      case (2 * 8 + 4) * 8 + 4: return block_fixed<kPopcnt, kCount, 4, 4, 2>(a, st);
      default: break;
    }
  }
  block_generic<kPopcnt, kCount>(a, st);
}

template <bool kPopcnt>
IMCSIM_INLINE void run_block_any(const BlockArgs& a, uint32_t fixed_j, bool count, FastStats& st) {
  if (count) run_block<kPopcnt, true>(a, fixed_j, st);
  else run_block<kPopcnt, false>(a, fixed_j, st);
}

// The block loops are short (T groups, a handful of planes): scalar code beats GCC's
// vectorisation of them (emulated 64-bit gathers and multiplies), so it is turned off here.
__attribute__((optimize("no-tree-vectorize"))) void run_block_portable(const BlockArgs& a, uint32_t fixed_j, bool count,
                                                                      FastStats& st) {
  run_block_any<false>(a, fixed_j, count, st);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,bmi,bmi2,popcnt"), optimize("no-tree-vectorize"))) void run_block_native(
    const BlockArgs& a, uint32_t fixed_j, bool count, FastStats& st) {
  run_block_any<true>(a, fixed_j, count, st);
}
#else
void run_block_native(const BlockArgs& a, uint32_t fixed_j, bool count, FastStats& st) {
  run_block_any<false>(a, fixed_j, count, st);
}
#endif

// Partial sums of one (g, t) for every (s, n).
template <bool kPopcnt>
IMCSIM_INLINE void psums_body(const uint64_t* planes, const std::vector<BitPlaneCrossbar::Block>& blocks,
                              uint32_t g, uint32_t S, uint32_t N, uint32_t W, const uint64_t* u, uint32_t J,
                              int32_t* psum) {
  for (uint32_t s = 0; s < S; ++s) {
    const auto& blk = blocks[size_t{g} * S + s];
    const uint32_t Q = blk.planes;
    const uint64_t* d0 = planes + blk.offset;
    for (uint32_t n = 0; n < N; ++n) {
      const uint64_t* d = d0 + size_t{n} * Q * W;
      psum[size_t{s} * N + n] = static_cast<int32_t>(plane_psum<kPopcnt>(u, d, J, Q, W, blk.coef.data()));
    }
  }
}
void psums_portable(const uint64_t* planes, const std::vector<BitPlaneCrossbar::Block>& blocks, uint32_t g,
                    uint32_t S, uint32_t N, uint32_t W, const uint64_t* u, uint32_t J, int32_t* psum) {
  psums_body<false>(planes, blocks, g, S, N, W, u, J, psum);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,bmi,bmi2,popcnt"))) void psums_native(const uint64_t* planes,
                                                                 const std::vector<BitPlaneCrossbar::Block>& blocks,
                                                                 uint32_t g, uint32_t S, uint32_t N, uint32_t W,
                                                                 const uint64_t* u, uint32_t J, int32_t* psum) {
  psums_body<true>(planes, blocks, g, S, N, W, u, J, psum);
}
#else
void psums_native(const uint64_t* planes, const std::vector<BitPlaneCrossbar::Block>& blocks, uint32_t g, uint32_t S,
                  uint32_t N, uint32_t W, const uint64_t* u, uint32_t J, int32_t* psum) {
  psums_body<false>(planes, blocks, g, S, N, W, u, J, psum);
}
#endif

}  // namespace

namespace {
// Transposes an 8x8 bit matrix: bit 8i + j <-> bit 8j + i (byte i = row i).
inline uint64_t transpose8x8(uint64_t x) {
  uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
  x = x ^ t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
  x = x ^ t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
  return x ^ t ^ (t << 28);
}
}  // namespace

namespace {

// The engine's scalar output step (functional_engine.cc run_imc).
IMCSIM_INLINE int32_t output_code(const OutputStep& st, int64_t a, size_t n) {
  double y = static_cast<double>(a) * st.multiplier[n] + st.bias[n];
  if (st.relu) y = std::max(y, 0.0);
  return requantize(y, st.out_scale, st.out_zero_point, st.out_bits);
}

#if IMCSIM_X86
// requantize() on 4 lanes: q = round_half_even(y / scale) + zero_point; 0 if !(q >= 0) (NaN
// too); max_code if q > max_code; truncated to int32 (bits <= 31).
__attribute__((target("avx2,bmi,bmi2,popcnt"))) IMCSIM_INLINE __m128i requantize4(__m256d y, __m256d scale,
                                                                                 __m256d zp, __m256d max_code) {
  __m256d q = _mm256_add_pd(_mm256_round_pd(_mm256_div_pd(y, scale), _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC),
                            zp);
  q = _mm256_and_pd(q, _mm256_cmp_pd(q, _mm256_setzero_pd(), _CMP_GE_OQ));
  q = _mm256_min_pd(max_code, q);  // (max_code < q) ? max_code : q
  return _mm256_cvttpd_epi32(q);
}

__attribute__((target("avx2,bmi,bmi2,popcnt"))) void requantize_array_native(const double* y, size_t count,
                                                                            double scale, int32_t zero_point,
                                                                            uint32_t bits, int32_t* out,
                                                                            size_t stride) {
  const __m256d sv = _mm256_set1_pd(scale), zv = _mm256_set1_pd(static_cast<double>(zero_point)),
                mv = _mm256_set1_pd(static_cast<double>((int64_t{1} << bits) - 1));
  size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    alignas(16) int32_t c[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(c), requantize4(_mm256_loadu_pd(y + i), sv, zv, mv));
    for (size_t j = 0; j < 4; ++j) out[(i + j) * stride] = c[j];
  }
  for (; i < count; ++i) out[i * stride] = requantize(y[i], scale, zero_point, bits);
}

__attribute__((target("avx2,bmi,bmi2,popcnt"))) void requantize_outputs_native(const OutputStep& st,
                                                                              const int64_t* acc,
                                                                              const int64_t* xsum, uint32_t batch,
                                                                              uint32_t N, int32_t* out,
                                                                              size_t out_stride) {
  const __m256d sv = _mm256_set1_pd(st.out_scale), zv = _mm256_set1_pd(static_cast<double>(st.out_zero_point)),
                mv = _mm256_set1_pd(static_cast<double>((int64_t{1} << st.out_bits) - 1)), zero = _mm256_setzero_pd();
  // int64 -> double for |a| < 2^51: the bits of 2^52 + 2^51 + a, minus 2^52 + 2^51 (exact).
  const __m256i magic_i = _mm256_set1_epi64x(0x4338000000000000ll);
  const __m256d magic_d = _mm256_set1_pd(0x1.8p52);
  const __m256i lim_hi = _mm256_set1_epi64x((int64_t{1} << 51) - 1), lim_lo = _mm256_set1_epi64x(-(int64_t{1} << 51) + 1);
  for (uint32_t b = 0; b < batch; ++b) {
    const int64_t off = st.offset_correction * xsum[b];
    const int64_t* ab = acc + size_t{b} * N;
    const __m256i offv = _mm256_set1_epi64x(off);
    uint32_t n = 0;
    for (; n + 4 <= N; n += 4) {
      const __m256i a = _mm256_sub_epi64(
          _mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab + n)),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.column_correction + n))),
          offv);
      alignas(16) int32_t c[4];
      if (_mm256_movemask_pd(_mm256_castsi256_pd(
              _mm256_or_si256(_mm256_cmpgt_epi64(a, lim_hi), _mm256_cmpgt_epi64(lim_lo, a)))) != 0) {
        for (uint32_t j = 0; j < 4; ++j) c[j] = output_code(st, ab[n + j] + st.column_correction[n + j] - off, n + j);
      } else {
        const __m256d d = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(a, magic_i)), magic_d);
        __m256d y = _mm256_add_pd(_mm256_mul_pd(d, _mm256_loadu_pd(st.multiplier + n)), _mm256_loadu_pd(st.bias + n));
        if (st.relu) y = _mm256_max_pd(zero, y);  // (0 > y) ? 0 : y, as std::max(y, 0.0)
        _mm_store_si128(reinterpret_cast<__m128i*>(c), requantize4(y, sv, zv, mv));
      }
      for (uint32_t j = 0; j < 4; ++j) out[(n + j) * out_stride + b] = c[j];
    }
    for (; n < N; ++n) out[n * out_stride + b] = output_code(st, ab[n] + st.column_correction[n] - off, n);
  }
}
#endif

}  // namespace

void requantize_array(const double* y, size_t count, double scale, int32_t zero_point, uint32_t bits, int32_t* out,
                      size_t stride, KernelPath path) {
#if IMCSIM_X86
  if (path == KernelPath::kNative && bits <= 31)
    return requantize_array_native(y, count, scale, zero_point, bits, out, stride);
#endif
  for (size_t i = 0; i < count; ++i) out[i * stride] = requantize(y[i], scale, zero_point, bits);
}

void requantize_outputs(const OutputStep& step, const int64_t* acc, const int64_t* xsum, uint32_t batch, uint32_t N,
                        int32_t* out, size_t out_stride, KernelPath path) {
#if IMCSIM_X86
  if (path == KernelPath::kNative && step.out_bits <= 31)
    return requantize_outputs_native(step, acc, xsum, batch, N, out, out_stride);
#endif
  for (uint32_t b = 0; b < batch; ++b) {
    const int64_t off = step.offset_correction * xsum[b];
    for (uint32_t n = 0; n < N; ++n)
      out[n * out_stride + b] = output_code(step, acc[size_t{b} * N + n] + step.column_correction[n] - off, n);
  }
}

// Portable packing: 8 rows x 8 bits at a time by a bit transpose. Row k of the layer is
// x'[k] = src[k] (kGather false) or src[offsets[k]]; *xsum = sum_k x'[k] over the tiles' rows.
template <bool kGather>
uint64_t BitPlaneCrossbar::pack_portable(const int32_t* src, const int32_t* offsets, uint64_t* words,
                                         uint32_t* nonzero, int64_t* xsum) const {
  std::fill(words, words + input_words_, 0);
  const size_t T = groups_.size();
  const uint32_t in_bits = std::min<uint32_t>(input_bits_, 32);
  const uint32_t in_mask = in_bits >= 32 ? ~0u : ((1u << in_bits) - 1u);
  uint64_t drives = 0;
  int64_t sum = 0;
  uint64_t plane[32];  // bit b of the input pattern of 64 rows
  for (size_t g = 0; g < tiles_.size(); ++g) {
    const RowTile& tile = tiles_[g];
    const uint32_t W = words_per_tile_[g];
    uint32_t nz = 0;
    for (uint32_t r0 = 0; r0 < tile.rows(); r0 += 64) {
      const uint32_t rows = std::min(tile.rows() - r0, 64u);
      for (uint32_t b = 0; b < in_bits; ++b) plane[b] = 0;
      for (uint32_t r8 = 0; r8 < rows; r8 += 8) {
        const uint32_t n8 = std::min(rows - r8, 8u);
        uint32_t x8[8];
        for (uint32_t i = 0; i < n8; ++i) {
          const uint32_t k = tile.row_begin + r0 + r8 + i;
          const int32_t x = kGather ? src[offsets[k]] : src[k];
          sum += x;
          x8[i] = static_cast<uint32_t>(x) & in_mask;
        }
        for (uint32_t b0 = 0; b0 < in_bits; b0 += 8) {
          uint64_t m = 0;
          for (uint32_t i = 0; i < n8; ++i) m |= uint64_t{(x8[i] >> b0) & 0xFFu} << (8 * i);
          m = transpose8x8(m);
          for (uint32_t b = b0; b < std::min(b0 + 8, in_bits); ++b) plane[b] |= ((m >> (8 * (b - b0))) & 0xFFu) << r8;
        }
      }
      for (size_t t = 0; t < T; ++t) {
        const InputGroup& gr = groups_[t];
        uint64_t* u = words + input_offset_[g * T + t];
        uint64_t active = 0;
        for (uint32_t j = 0; j < gr.nbits; ++j) {
          const uint64_t word = gr.bit_lo + j < in_bits ? plane[gr.bit_lo + j] : 0;
          u[size_t{j} * W + r0 / 64] = word;
          active |= word;
        }
        drives += popcount64<false>(active);
        if (active) nz |= 1u << t;
      }
    }
    nonzero[g] = nz;
  }
  if (xsum) *xsum = sum;
  return drives;
}

#if IMCSIM_X86
// Native packing (AVX2): 32 rows at a time: their (gathered) values are masked to the input
// width, narrowed to bytes (8 bits of the pattern at a time), and VPMOVMSKB of the bytes shifted
// left by 7 - b gives bit plane b of the 32 rows. Rows past the tile are loaded as 0.
template <bool kGather>
__attribute__((target("avx2,bmi,bmi2,popcnt"), optimize("no-tree-vectorize"))) uint64_t BitPlaneCrossbar::pack_native(
    const int32_t* src, const int32_t* offsets, uint64_t* words, uint32_t* nonzero, int64_t* xsum) const {
  const size_t T = groups_.size();
  const uint32_t in_bits = std::min<uint32_t>(input_bits_, 32);
  const uint32_t in_mask = in_bits >= 32 ? ~0u : ((1u << in_bits) - 1u);
  const __m256i maskv = _mm256_set1_epi32(static_cast<int>(in_mask)), bytev = _mm256_set1_epi32(0xFF);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i zero = _mm256_setzero_si256();
  __m256i sumv = zero;  // 4 x int64
  uint64_t drives = 0;
  alignas(32) uint64_t plane[32];  // bit b of the input pattern of 64 rows
  for (size_t g = 0; g < tiles_.size(); ++g) {
    const RowTile& tile = tiles_[g];
    const uint32_t W = words_per_tile_[g];
    uint32_t nz = 0;
    for (uint32_t r0 = 0; r0 < tile.rows(); r0 += 64) {
      const uint32_t rows = std::min(tile.rows() - r0, 64u);
      for (uint32_t b = 0; b < in_bits; ++b) plane[b] = 0;
      // Gathered rows: scalar loads into a buffer (faster than VPGATHERDD on AMD Zen), 0 past the tile.
      alignas(32) int32_t buf[64];
      if constexpr (kGather) {
        const int32_t* off = offsets + tile.row_begin + r0;
        for (uint32_t i = 0; i < rows; ++i) buf[i] = src[off[i]];
        for (uint32_t i = rows; i < ((rows + 31) & ~31u); ++i) buf[i] = 0;
      }
      for (uint32_t h = 0; h * 32 < rows; ++h) {
        const uint32_t k0 = tile.row_begin + r0 + 32 * h;
        const uint32_t n32 = std::min(rows - 32 * h, 32u);
        __m256i v[4];
        for (uint32_t i = 0; i < 4; ++i) {
          const int rem = static_cast<int>(n32) - static_cast<int>(8 * i);
          if constexpr (kGather) {
            v[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf + 32 * h + 8 * i));
          } else if (rem >= 8) {
            v[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k0 + 8 * i));
          } else if (rem > 0) {
            v[i] = _mm256_maskload_epi32(src + k0 + 8 * i, _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), iota));
          } else {
            v[i] = zero;
          }
          sumv = _mm256_add_epi64(sumv, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v[i])));
          sumv = _mm256_add_epi64(sumv, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v[i], 1)));
          v[i] = _mm256_and_si256(v[i], maskv);
        }
        for (uint32_t b0 = 0; b0 < in_bits; b0 += 8) {
          __m256i y[4];
          for (uint32_t i = 0; i < 4; ++i) {
            y[i] = b0 ? _mm256_srl_epi32(v[i], _mm_cvtsi32_si128(static_cast<int>(b0))) : v[i];
            if (in_bits - b0 > 8) y[i] = _mm256_and_si256(y[i], bytev);
          }
          // Bytes of rows 0..31 in order (each value <= 255, so the saturating packs are exact).
          const __m256i bytes = _mm256_permutevar8x32_epi32(
              _mm256_packus_epi16(_mm256_packus_epi32(y[0], y[1]), _mm256_packus_epi32(y[2], y[3])), order);
          // Bit b of the bytes is bit 7 of the bytes shifted left by 7 - b (16-bit shifts move
          // no bit of a byte's own into its bit 7 but its bit 7 - s).
          const uint32_t nb = std::min(8u, in_bits - b0), sh = 32 * h;
          uint64_t* pl = plane + b0;
          pl[0] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 7)))} << sh;
          if (nb > 1) pl[1] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 6)))} << sh;
          if (nb > 2) pl[2] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 5)))} << sh;
          if (nb > 3) pl[3] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 4)))} << sh;
          if (nb > 4) pl[4] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 3)))} << sh;
          if (nb > 5) pl[5] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 2)))} << sh;
          if (nb > 6) pl[6] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 1)))} << sh;
          if (nb > 7) pl[7] |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(bytes))} << sh;
        }
      }
      for (size_t t = 0; t < T; ++t) {
        const InputGroup& gr = groups_[t];
        uint64_t* u = words + input_offset_[g * T + t];
        uint64_t active = 0;
        for (uint32_t j = 0; j < uniform_group_bits_; ++j) {
          const uint64_t word = j < gr.nbits && gr.bit_lo + j < in_bits ? plane[gr.bit_lo + j] : 0;
          u[size_t{j} * W + r0 / 64] = word;
          active |= word;
        }
        drives += static_cast<uint64_t>(__builtin_popcountll(active));
        if (active) nz |= 1u << t;
      }
    }
    nonzero[g] = nz;
  }
  if (xsum) {
    alignas(32) int64_t s4[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(s4), sumv);
    *xsum = s4[0] + s4[1] + s4[2] + s4[3];
  }
  return drives;
}
#endif

uint64_t BitPlaneCrossbar::pack_inputs(const int32_t* x_shifted, uint64_t* words, uint32_t* nonzero) const {
#if IMCSIM_X86
  if (path_ == KernelPath::kNative) return pack_native<false>(x_shifted, nullptr, words, nonzero, nullptr);
#endif
  return pack_portable<false>(x_shifted, nullptr, words, nonzero, nullptr);
}

uint64_t BitPlaneCrossbar::pack_gathered(const int32_t* src, const int32_t* offsets, uint64_t* words,
                                         uint32_t* nonzero, int64_t* xsum) const {
#if IMCSIM_X86
  if (path_ == KernelPath::kNative) return pack_native<true>(src, offsets, words, nonzero, xsum);
#endif
  return pack_portable<true>(src, offsets, words, nonzero, xsum);
}

void BitPlaneCrossbar::partial_sums(const uint64_t* words, uint32_t g, uint32_t t, int32_t* psum) const {
  const uint32_t S = static_cast<uint32_t>(slices_.size()), T = static_cast<uint32_t>(groups_.size());
  const uint64_t* u = words + input_offset_[size_t{g} * T + t];
  if (path_ == KernelPath::kNative)
    psums_native(planes_.data(), blocks_, g, S, n_cols_, words_per_tile_[g], u, groups_[t].nbits, psum);
  else
    psums_portable(planes_.data(), blocks_, g, S, n_cols_, words_per_tile_[g], u, groups_[t].nbits, psum);
}

void BitPlaneCrossbar::accumulate(const uint64_t* words, const uint32_t* nonzero, uint32_t batch,
                                  const PackedAdcLut& lut, int64_t* acc, FastStats* stats,
                                  const NoiseCall* noise) const {
  const uint32_t G = static_cast<uint32_t>(tiles_.size()), S = static_cast<uint32_t>(slices_.size()),
                 T = static_cast<uint32_t>(groups_.size()), N = n_cols_;
  if (noise) {
    if (!noise->form || !serves_affine_noise(lut, *noise->form))
      throw std::logic_error("BitPlaneCrossbar::accumulate: ADC noise needs the nibble kernel's affine path");
    return accumulate_nibble(words, batch, lut, acc, stats, noise);
  }
  if (nibble_ok_ && nibble_serves(lut)) return accumulate_nibble(words, batch, lut, acc, stats, nullptr);
  std::vector<int64_t> wt(T), zsum(batch), list_wt(size_t{batch} * 32);
  std::vector<uint32_t> nbits(T), nz(batch), nzero(batch);
  std::vector<uint8_t> list(size_t{batch} * 32);
  std::vector<const uint64_t*> ubase(batch);
  for (uint32_t t = 0; t < T; ++t) {
    wt[t] = int64_t{groups_[t].sign} * (int64_t{1} << groups_[t].bit_lo);
    nbits[t] = groups_[t].nbits;
  }
  FastStats local;
  const bool count = stats != nullptr;
  for (uint32_t g = 0; g < G; ++g) {
    bool any_zero = false;
    for (uint32_t b = 0; b < batch; ++b) {
      nz[b] = nonzero[size_t{b} * G + g];
      int64_t zs = 0;
      uint32_t cnt = 0, listed = 0;
      for (uint32_t t = 0; t < T; ++t) {
        if (!((nz[b] >> t) & 1u)) {
          zs += wt[t];
          ++cnt;
        } else {
          list[size_t{b} * 32 + listed] = static_cast<uint8_t>(t);
          list_wt[size_t{b} * 32 + listed] = wt[t];
          ++listed;
        }
      }
      ubase[b] = words + size_t{b} * input_words_ + input_offset_[size_t{g} * T];
      zsum[b] = zs;
      nzero[b] = cnt;
      any_zero = any_zero || cnt > 0;
    }
    if (count && any_zero) {
      local.psum_min = std::min<int64_t>(local.psum_min, 0);
      local.psum_max = std::max<int64_t>(local.psum_max, 0);
    }
    for (uint32_t s = 0; s < S; ++s) {
      const Block& blk = blocks_[size_t{g} * S + s];
      BlockArgs a;
      a.planes = planes_.data() + blk.offset;
      a.Q = blk.planes;
      a.W = words_per_tile_[g];
      a.N = N;
      a.T = T;
      a.coef = blk.coef.data();
      a.nbits = nbits.data();
      a.words = words;
      a.stride = input_words_;
      a.uoff = input_offset_.data() + size_t{g} * T;
      a.nonzero = nz.data();
      a.zsum = zsum.data();
      a.nzero = nzero.data();
      a.list = list.data();
      a.list_wt = list_wt.data();
      a.ubase = ubase.data();
      a.batch = batch;
      a.wt = wt.data();
      a.ws = int64_t{slices_[s].sign} * (int64_t{1} << slices_[s].bit_lo);
      const uint64_t set0 = lut.granularity == AdcGranularity::kSliceTileColumn ? (uint64_t{g} * S + s) * N : 0;
      a.lut = lut.entries + set0 * lut.size - lut.min;
      a.lut_col_stride = lut.granularity == AdcGranularity::kLayer ? 0 : lut.size;
      a.acc = acc;
      const uint32_t fixed_j = blk.planes >= 1 ? uniform_group_bits_ : 0;
      if (blk.planes == 0) {
        // Every cell of the block is 0: p = 0 for every group.
        std::vector<uint32_t> none(batch, 0);
        std::vector<int64_t> all(batch, 0);
        std::vector<uint32_t> cnt(batch, T);
        int64_t wsum = 0;
        for (uint32_t t = 0; t < T; ++t) wsum += wt[t];
        std::fill(all.begin(), all.end(), wsum);
        a.nonzero = none.data();
        a.zsum = all.data();
        a.nzero = cnt.data();
        block_generic<false, false>(a, local);
        if (count) {
          for (uint32_t n = 0; n < N; ++n) local.saturations += uint64_t{batch} * T * (a.lut[n * a.lut_col_stride] & 1);
          local.psum_min = std::min<int64_t>(local.psum_min, 0);
          local.psum_max = std::max<int64_t>(local.psum_max, 0);
        }
        continue;
      }
      if (path_ == KernelPath::kNative) run_block_native(a, fixed_j, count, local);
      else run_block_portable(a, fixed_j, count, local);
    }
  }
  if (stats) {
    stats->saturations += local.saturations;
    stats->psum_min = std::min(stats->psum_min, local.psum_min);
    stats->psum_max = std::max(stats->psum_max, local.psum_max);
  }
}

}  // namespace imcsim::kernels
