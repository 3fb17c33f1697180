// The Gaussian noise stream of docs/SEMANTICS.md step 5 (gauss32_output, irwin_hall_fields of
// models/crossbar/nonideal.h) on eight 32-bit lanes, shared by the native kernels
// (noise_kernel.cc, fast_mvm_nibble.cc): AVX2 inline code for x86-64 with GCC / Clang only;
// include under that guard. No SystemC.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <cstdint>

#include "models/crossbar/nibble_simd.h"

namespace imcsim::kernels::gauss {

// hash32 of kN vectors, step by step (kN independent dependency chains side by side).
template <int kN>
IMCSIM_AVX2_INLINE void hash32(__m256i* x) {
  const __m256i c1 = _mm256_set1_epi32(static_cast<int32_t>(0x21F0AAADu));
  const __m256i c2 = _mm256_set1_epi32(static_cast<int32_t>(0x735A2D97u));
#pragma GCC unroll 16
  for (int i = 0; i < kN; ++i) x[i] = _mm256_xor_si256(x[i], _mm256_srli_epi32(x[i], 16));
#pragma GCC unroll 16
  for (int i = 0; i < kN; ++i) x[i] = _mm256_mullo_epi32(x[i], c1);
#pragma GCC unroll 16
  for (int i = 0; i < kN; ++i) x[i] = _mm256_xor_si256(x[i], _mm256_srli_epi32(x[i], 15));
#pragma GCC unroll 16
  for (int i = 0; i < kN; ++i) x[i] = _mm256_mullo_epi32(x[i], c2);
#pragma GCC unroll 16
  for (int i = 0; i < kN; ++i) x[i] = _mm256_xor_si256(x[i], _mm256_srli_epi32(x[i], 15));
}

// S = irwin_hall_fields(w0) + irwin_hall_fields(w1) per 32-bit lane (in [0, 372]).
IMCSIM_AVX2_INLINE __m256i irwin_hall_pair(__m256i w0, __m256i w1) {
  const __m256i m = _mm256_set1_epi32(0x1F | (0x1F << 10) | (0x1F << 20));
  // Fields 0, 2, 4 and 1, 3, 5 of both words in three 10-bit slots (each slot <= 124).
  const __m256i a = _mm256_add_epi32(_mm256_and_si256(w0, m), _mm256_and_si256(_mm256_srli_epi32(w0, 5), m));
  const __m256i b = _mm256_add_epi32(_mm256_and_si256(w1, m), _mm256_and_si256(_mm256_srli_epi32(w1, 5), m));
  const __m256i p = _mm256_add_epi32(a, b);
  // p (1 + 2^10 + 2^20) holds the three slots' sum (<= 372) in bits 20-29 (no carries into them).
  const __m256i s = _mm256_mullo_epi32(p, _mm256_set1_epi32(1 | (1 << 10) | (1 << 20)));
  return _mm256_srli_epi32(_mm256_slli_epi32(s, 2), 22);
}

// The Irwin-Hall sums of kN vectors of elements: lane l of vector v is element n of stream
// (lo, hi) with base[v] = lo + 2 n kGamma32 (mod 2^32) and hi[v] its key's high half, offset
// by `off` (2 dn kGamma32: every lane dn elements further). out[v] = S per lane.
template <int kN>
IMCSIM_AVX2_INLINE void irwin_hall_sums(const __m256i* base, const __m256i* hi, __m256i off, __m256i* out) {
  const __m256i gamma = _mm256_set1_epi32(static_cast<int32_t>(0x9E3779B9u));
  __m256i x[2 * kN];
#pragma GCC unroll 16
  for (int v = 0; v < kN; ++v) {
    const __m256i b = _mm256_add_epi32(base[v], off);
    x[2 * v] = _mm256_xor_si256(b, hi[v]);
    x[2 * v + 1] = _mm256_xor_si256(_mm256_add_epi32(b, gamma), hi[v]);
  }
  hash32<2 * kN>(x);
#pragma GCC unroll 16
  for (int v = 0; v < kN; ++v) out[v] = irwin_hall_pair(x[2 * v], x[2 * v + 1]);
}

}  // namespace imcsim::kernels::gauss
#endif
