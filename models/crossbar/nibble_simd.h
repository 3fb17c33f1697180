// The nibble-table partial sums shared by the native kernels (fast_mvm_nibble.cc, noise_kernel.cc):
// AVX2 inline code for x86-64 with GCC / Clang only; include under that guard. No SystemC.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#define IMCSIM_AVX2_INLINE [[gnu::always_inline, gnu::target("avx2")]] inline

namespace imcsim::kernels::nibble {

// The exact partial sums of 64 lanes for one (tile, slice) block of NC columns: p = sum over row
// groups r of tab_q[r][nibble r of the lane], 32 lanes per VPSHUFB (the lanes' nibbles loaded
// once for the NC columns), summed in bytes for `flush` row groups at a time (no overflow),
// then widened into w[q][0..3] (16-bit, lanes in order).
template <uint32_t NC>
IMCSIM_AVX2_INLINE void psums(const uint8_t* const* tabs, const uint8_t* ig, uint32_t row_groups,
                                     uint32_t flush, __m256i (*w)[4]) {
  const __m256i zero = _mm256_setzero_si256();
  for (uint32_t q = 0; q < NC; ++q) w[q][0] = w[q][1] = w[q][2] = w[q][3] = zero;
  for (uint32_t r0 = 0; r0 < row_groups; r0 += flush) {
    const uint32_t r1 = std::min(row_groups, r0 + flush);
    __m256i a[NC][2];
    for (uint32_t q = 0; q < NC; ++q) a[q][0] = a[q][1] = zero;
    for (uint32_t r = r0; r < r1; ++r) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ig + size_t{r} * 64));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ig + size_t{r} * 64 + 32));
      for (uint32_t q = 0; q < NC; ++q) {
        const __m256i tb =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tabs[q] + size_t{r} * 16)));
        a[q][0] = _mm256_add_epi8(a[q][0], _mm256_shuffle_epi8(tb, x0));
        a[q][1] = _mm256_add_epi8(a[q][1], _mm256_shuffle_epi8(tb, x1));
      }
    }
    for (uint32_t q = 0; q < NC; ++q) {
      w[q][0] = _mm256_add_epi16(w[q][0], _mm256_unpacklo_epi8(a[q][0], zero));
      w[q][1] = _mm256_add_epi16(w[q][1], _mm256_unpackhi_epi8(a[q][0], zero));
      w[q][2] = _mm256_add_epi16(w[q][2], _mm256_unpacklo_epi8(a[q][1], zero));
      w[q][3] = _mm256_add_epi16(w[q][3], _mm256_unpackhi_epi8(a[q][1], zero));
    }
  }
}

// Four columns with named accumulators (GCC keeps an array of them in registers only with
// extra register moves per row group).
template <>
IMCSIM_AVX2_INLINE void psums<4>(const uint8_t* const* tabs, const uint8_t* ig, uint32_t row_groups,
                                        uint32_t flush, __m256i (*w)[4]) {
  const __m256i zero = _mm256_setzero_si256();
  for (uint32_t q = 0; q < 4; ++q) w[q][0] = w[q][1] = w[q][2] = w[q][3] = zero;
  const uint8_t *t0 = tabs[0], *t1 = tabs[1], *t2 = tabs[2], *t3 = tabs[3];
  for (uint32_t r0 = 0; r0 < row_groups; r0 += flush) {
    const uint32_t r1 = std::min(row_groups, r0 + flush);
    __m256i a00 = zero, a01 = zero, a10 = zero, a11 = zero, a20 = zero, a21 = zero, a30 = zero, a31 = zero;
    uint32_t r = r0;
    do {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ig + size_t{r} * 64));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ig + size_t{r} * 64 + 32));
#define IMCSIM_NIBBLE_COLUMN(T, A0, A1)                                                                      \
  {                                                                                                          \
    const __m256i tb = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(T + size_t{r} * 16))); \
    A0 = _mm256_add_epi8(_mm256_shuffle_epi8(tb, x0), A0);                                                   \
    A1 = _mm256_add_epi8(_mm256_shuffle_epi8(tb, x1), A1);                                                   \
  }
      IMCSIM_NIBBLE_COLUMN(t0, a00, a01)
      IMCSIM_NIBBLE_COLUMN(t1, a10, a11)
      IMCSIM_NIBBLE_COLUMN(t2, a20, a21)
      IMCSIM_NIBBLE_COLUMN(t3, a30, a31)
#undef IMCSIM_NIBBLE_COLUMN
      // (Keeps each accumulator in one register: GCC otherwise copies all eight per row group.)
      asm("" : "+x"(a00), "+x"(a01), "+x"(a10), "+x"(a11), "+x"(a20), "+x"(a21), "+x"(a30), "+x"(a31));
    } while (++r < r1);
    const __m256i a[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    for (uint32_t q = 0; q < 4; ++q) {
      w[q][0] = _mm256_add_epi16(w[q][0], _mm256_unpacklo_epi8(a[q][0], zero));
      w[q][1] = _mm256_add_epi16(w[q][1], _mm256_unpackhi_epi8(a[q][0], zero));
      w[q][2] = _mm256_add_epi16(w[q][2], _mm256_unpacklo_epi8(a[q][1], zero));
      w[q][3] = _mm256_add_epi16(w[q][3], _mm256_unpackhi_epi8(a[q][1], zero));
    }
  }
}

}  // namespace imcsim::kernels::nibble
#endif
