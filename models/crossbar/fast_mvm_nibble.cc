// The native nibble-table kernel of BitPlaneCrossbar (docs/fast_kernels.md) and the arithmetic
// form of ADC tables (fit_affine_adc) with which it converts partial sums without lookups.
#include <algorithm>
#include <numeric>
#include <vector>

#include "models/crossbar/fast_mvm.h"
#include "models/crossbar/noise_kernel.h"
#include "models/crossbar/nonideal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "models/crossbar/gauss_simd.h"
#include "models/crossbar/nibble_simd.h"
#define IMCSIM_NIBBLE_X86 1
#endif

namespace imcsim::kernels {

namespace {

constexpr int64_t kMaxAffinePsum = 32766;  // partial sums and sat_lo fit signed 16-bit lanes

// One parameter set; `e` points at the packed entry (value_fx * 2 + saturated) of p = 0.
std::optional<AffineAdc::Set> fit_affine_set(const int64_t* e, int64_t p_max) {
  AffineAdc::Set set;
  // The non-saturating partial sums must form one interval [sat_lo, sat_hi].
  int64_t first = -1, last = -1;
  for (int64_t p = 0; p <= p_max; ++p)
    if (!(e[p] & 1)) {
      if (first < 0) first = p;
      last = p;
    }
  if (first < 0) {
    set.sat_lo = static_cast<int32_t>(p_max + 1);  // every p saturates
    set.sat_hi = static_cast<int32_t>(p_max);
  } else {
    for (int64_t p = first; p <= last; ++p)
      if (e[p] & 1) return std::nullopt;
    set.sat_lo = static_cast<int32_t>(first);
    set.sat_hi = static_cast<int32_t>(last);
  }
  // Values: non-decreasing, value_base + value_step * code with integer codes.
  const int64_t v0 = e[0] >> 1;
  int64_t step = 0;
  for (int64_t p = 1; p <= p_max; ++p) {
    const int64_t d = (e[p] >> 1) - (e[p - 1] >> 1);
    if (d < 0) return std::nullopt;
    step = std::gcd(step, d);
  }
  set.value_base = v0;
  set.value_step = step;
  if (step == 0) return set;  // a constant table: code 0 everywhere (mult 0)
  const int64_t code_max = ((e[p_max] >> 1) - v0) / step;
  if (code_max > 32767) return std::nullopt;
  // th[i]: the first p whose code is >= i (i = 1 .. code_max).
  std::vector<int64_t> th(static_cast<size_t>(code_max) + 1, 0);
  for (int64_t p = 1, c = 0; p <= p_max; ++p)
    for (const int64_t code = ((e[p] >> 1) - v0) / step; c < code;) th[static_cast<size_t>(++c)] = p;
  // Partial sums from th[C] on all have code C: clamped there, which leaves more bits for x.
  const int64_t C = code_max, p_clamp = th[static_cast<size_t>(C)], span = p_clamp - th[1];
  uint32_t sh = 0;
  while (sh < 15 && (p_clamp << (sh + 1)) <= 32767) ++sh;
  const int64_t o_max = 65535 - (p_clamp << sh);
  // code(p) = floor(((p << sh) + O) * M / 2^(16 + k2)): M and O satisfy, for every i,
  // ((th_i << sh) + O) M >= i 2^(16+k2) > (((th_i - 1) << sh) + O) M. The first and last
  // thresholds bound M; the O interval of a given M is the intersection over i.
  for (int k2 = 15; k2 >= 0; --k2) {
    const int64_t K = int64_t{1} << (16 + k2);
    int64_t m_lo = 1, m_hi = 65535;
    if (C >= 2) {
      m_lo = std::max<int64_t>(m_lo, (C - 1) * K / ((span + 1) << sh) + 1);
      if (span >= 2) m_hi = std::min<int64_t>(m_hi, ((C - 1) * K + ((span - 1) << sh) - 1) / ((span - 1) << sh) - 1);
    }
    if (m_lo > m_hi) continue;
    const int64_t mid = (m_lo + m_hi) / 2;
    for (int64_t tries = 0; tries < 4096; ++tries) {
      const int64_t M = tries % 2 ? mid + (tries + 1) / 2 : mid - tries / 2;
      if (M < m_lo || M > m_hi) {
        if (mid - tries / 2 < m_lo && mid + (tries + 1) / 2 > m_hi) break;
        continue;
      }
      int64_t o_lo = -65535, o_hi = o_max;  // (x clamps at 0 below: code 0 there)
      for (int64_t i = 1; i <= C && o_lo <= o_hi; ++i) {
        const int64_t q = (i * K + M - 1) / M;  // ceil(i K / M)
        o_lo = std::max(o_lo, q - (th[static_cast<size_t>(i)] << sh));
        o_hi = std::min(o_hi, q - 1 - ((th[static_cast<size_t>(i)] - 1) << sh));
      }
      if (o_lo > o_hi) continue;
      set.mult = static_cast<uint16_t>(M);
      set.offset = static_cast<int32_t>(o_lo);
      set.code_max = static_cast<uint16_t>(C);
      set.in_shift = static_cast<uint8_t>(sh);
      set.p_clamp = static_cast<uint16_t>(p_clamp);
      set.out_shift = static_cast<uint8_t>(k2);
      // Exact on every p (what the kernel computes, lane for lane).
      for (int64_t p = 0; p <= p_max; ++p) {
        const uint64_t x = static_cast<uint64_t>(std::max<int64_t>((std::min(p, p_clamp) << sh) + set.offset, 0));
        const int64_t code = std::min<int64_t>(static_cast<int64_t>(((x * M) >> 16) >> k2), C);
        if (v0 + step * code != (e[p] >> 1)) return std::nullopt;
      }
      return set;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<AffineAdc> fit_affine_adc(const PackedAdcLut& lut, uint64_t sets, int64_t p_max) {
  if (lut.granularity == AdcGranularity::kSliceTileColumn || !lut.entries || p_max < 0 || p_max > kMaxAffinePsum ||
      lut.min > 0 || lut.min + static_cast<int64_t>(lut.size) - 1 < p_max)
    return std::nullopt;
  AffineAdc out;
  out.p_max = p_max;
  out.sets.reserve(sets);
  for (uint64_t set = 0; set < sets; ++set) {
    auto fit = fit_affine_set(lut.entries + set * lut.size - lut.min, p_max);
    if (!fit) return std::nullopt;
    out.sets.push_back(*fit);
  }
  return out;
}

namespace {

// Sum over slices of 2^bitlo_s (the largest shift-add weight of a tile's codes or values).
int64_t slice_shift_sum(const std::vector<WeightSlice>& slices) {
  int64_t sum = 0;
  for (const auto& sl : slices) sum += int64_t{1} << sl.bit_lo;
  return sum;
}

// Whether the affine path serves `lut`: sets per column shared by tiles and slices, covering
// every input up to `p_needed` (the partial sums' bound, or u_max with noise), and one tile's
// shifted codes within a signed 16-bit lane.
bool affine_serves(const PackedAdcLut& lut, const std::vector<WeightSlice>& slices, int64_t p_needed,
                   uint32_t n_cols) {
  if (!lut.affine || lut.affine->p_max < p_needed) return false;
  const size_t want = lut.granularity == AdcGranularity::kLayer ? 1 : lut.granularity == AdcGranularity::kColumn
                                                                          ? n_cols : 0;
  if (want == 0 || lut.affine->sets.size() != want) return false;
  int64_t code_max = 0;
  for (const auto& s : lut.affine->sets) code_max = std::max<int64_t>(code_max, s.code_max);
  return code_max * slice_shift_sum(slices) <= 32767;
}

}  // namespace

bool BitPlaneCrossbar::nibble_serves(const PackedAdcLut& lut) const {
  if (lut.min > 0) return false;
  if (affine_serves(lut, slices_, psum_bound_, n_cols_)) return true;
  // 32-bit lanes: the sum over tiles and slices of |value| * 2^bitlo_s must stay below 2^31.
  return lut.entries32 &&
         lut.max_abs_value * slice_shift_sum(slices_) * static_cast<int64_t>(tiles_.size()) < (int64_t{1} << 31);
}

namespace {
// Partial sums from p_clamp on give every conversion the ADC's top result (a = p 2^16 + noise >=
// the last input at which the result changes, for every parameter set and noise): u clamps p
// there, which keeps u narrow for ADCs whose range is small against the partial sums. Sets
// f.p_clamp and f.u_max; false if u does not fit the kernel's lanes or the ADC has too many
// change points. `change_points`: those of every set over the reachable range, if known.
bool limit_u(AffineNoiseForm& f, const std::vector<int64_t>& noise, int64_t psum_bound, const AdcSpec& adc,
             uint64_t sets, const std::vector<int64_t>* top_points = nullptr) {
  const int64_t a_lo = noise.front(), a_hi = psum_bound * 65536 + noise.back();
  int64_t top = a_lo;
  if (top_points) {
    for (int64_t cp : *top_points) top = std::max(top, cp);
  } else {
    for (uint64_t set = 0; set < sets; ++set) {
      const auto points = adc_change_points(adc, set, a_lo, a_hi, 1u << 16);
      if (!points) return false;
      if (!points->empty()) top = std::max(top, points->back());
    }
  }
  f.p_clamp = std::clamp<int64_t>((top - a_lo + 65535) / 65536, 0, psum_bound);
  f.u_max = (f.p_clamp << f.p_shift) + f.nu_max();
  return f.u_max <= kMaxAffinePsum;
}
}  // namespace

std::optional<AffineNoiseForm> AffineNoiseForm::make(double sigma, int64_t psum_bound, const AdcSpec& adc,
                                                     uint64_t sets) {
  const double k11 = sigma * 2048.0;
  if (!(k11 >= 1 && k11 <= 1048576 && k11 == std::floor(k11)) || psum_bound < 0 || psum_bound > kMaxAffinePsum)
    return std::nullopt;
  const int64_t K = static_cast<int64_t>(k11);
  const std::vector<int64_t> noise = noise_table(sigma);
  for (uint32_t S = 0; S <= kIrwinHallMax; ++S)  // (S - 186) K is the definition's noise_fx
    if ((static_cast<int64_t>(S) - kIrwinHallMean) * K != noise[S]) return std::nullopt;
  AffineNoiseForm f;
  f.r = std::min<uint32_t>(static_cast<uint32_t>(std::countr_zero(static_cast<uint64_t>(K))), 16);
  f.p_shift = 16 - f.r;
  f.s_mult = static_cast<uint32_t>(K >> f.r);
  f.nu_offset = int64_t{f.s_mult} * kIrwinHallMean;
  // (u without clamping first: most layers fit, and then no change points are needed)
  f.p_clamp = psum_bound;
  f.u_max = (psum_bound << f.p_shift) + f.nu_max();
  if (f.u_max <= kMaxAffinePsum || limit_u(f, noise, psum_bound, adc, sets)) return f;
  return std::nullopt;
}

int64_t AffineNoiseForm::nu_max() const {
  if (s_mult) return int64_t{s_mult} * kIrwinHallMax;
  if (nu_affine)
    return nu_affine->value_step * nu_affine->code_max +
           (nu_affine2 ? nu_affine2->value_step * nu_affine2->code_max : 0);
  return static_cast<int64_t>(s_thresholds.size());
}

std::optional<AffineNoiseForm> AffineNoiseForm::make_blocked(double sigma, int64_t psum_bound, const AdcSpec& adc,
                                                             uint64_t sets) {
  if (psum_bound < 0 || psum_bound > kMaxAffinePsum) return std::nullopt;
  const std::vector<int64_t> noise = noise_table(sigma);
  const int64_t a_lo = noise.front(), a_hi = psum_bound * 65536 + noise.back();
  // r_whole: every change point a multiple of 2^r; r_half: each one m 2^r or m 2^r + 1.
  uint32_t r_whole = 16, r_half = 16;
  std::vector<int64_t> tops;  // each set's last change point
  auto ctz = [](int64_t v) { return v == 0 ? 64u : static_cast<uint32_t>(std::countr_zero(static_cast<uint64_t>(v))); };
  for (uint64_t set = 0; set < sets; ++set) {
    const auto points = adc_change_points(adc, set, a_lo, a_hi, 1u << 16);
    if (!points) return std::nullopt;
    for (int64_t cp : *points) {
      r_whole = std::min(r_whole, ctz(cp));
      r_half = std::min(r_half, ctz(cp & 1 ? cp - 1 : cp));
    }
    if (!points->empty()) tops.push_back(points->back());
  }
  AffineNoiseForm f;
  f.s_mult = 0;
  f.half = r_half >= 1 && r_half > r_whole + 1;  // (half blocks: one bit more per u, 2^(r_half - r_whole) coarser)
  f.r = f.half ? r_half : r_whole;
  f.p_shift = (f.half ? 17 : 16) - f.r;
  // t(S) = noise(S) >> r, or 2 (noise(S) >> r) + [noise(S) mod 2^r != 0]: a staircase in S.
  auto t_of = [&](int64_t n) {
    return f.half ? 2 * (n >> f.r) + ((n & ((int64_t{1} << f.r) - 1)) != 0 ? 1 : 0) : n >> f.r;
  };
  const int64_t nu0 = t_of(noise.front()), steps = t_of(noise.back()) - nu0;
  f.nu_offset = -nu0;
  if (steps <= static_cast<int64_t>(kMaxThresholds)) {
    for (uint32_t S = 1; S <= kIrwinHallMax; ++S)
      for (int64_t v = t_of(noise[S - 1]) + 1; v <= t_of(noise[S]); ++v) f.s_thresholds.push_back(static_cast<uint16_t>(S));
  } else {
    // Many steps: nu(S) in the arithmetic form of an ADC table (fit_affine_adc over S, verified
    // on every S), one multiply-high per 16 lanes. Half blocks: t = floor(noise / 2^r) +
    // ceil(noise / 2^r), the two staircases in two such forms (nu_affine, nu_affine2), summed.
    auto fit_staircase = [](auto&& value_of) -> std::optional<AffineAdc::Set> {
      std::vector<int64_t> table(kIrwinHallMax + 1);
      for (uint32_t S = 0; S <= kIrwinHallMax; ++S) table[S] = (value_of(S) - value_of(0)) * 2;
      const auto fit = fit_affine_adc(PackedAdcLut{table.data(), 0, table.size()}, 1, kIrwinHallMax);
      if (!fit || fit->sets[0].value_base != 0 || fit->sets[0].value_step * fit->sets[0].code_max > kMaxAffinePsum / 2)
        return std::nullopt;
      return fit->sets[0];
    };
    const uint32_t r = f.r;
    f.nu_affine = fit_staircase([&](uint32_t S) { return f.half ? noise[S] >> r : t_of(noise[S]); });
    if (f.half) f.nu_affine2 = fit_staircase([&](uint32_t S) { return -((-noise[S]) >> r); });
    if (!f.nu_affine || (f.half && !f.nu_affine2)) return std::nullopt;
  }
  if (!limit_u(f, noise, psum_bound, adc, sets, &tops)) return std::nullopt;
  return f;
}

std::optional<AffineAdc> fit_affine_noise_adc(const AdcSpec& adc, uint64_t sets, const AffineNoiseForm& form) {
  AffineAdc out;
  out.p_max = form.u_max;
  std::vector<int64_t> table(static_cast<size_t>(form.u_max + 1));
  for (uint64_t set = 0; set < sets; ++set) {
    for (int64_t u = 0; u <= form.u_max; ++u) {
      const AnalogAdcResult r = adc_convert_analog(adc, set, form.analog(u));
      table[static_cast<size_t>(u)] = r.value_fx * 2 + (r.saturated ? 1 : 0);
    }
    const auto one = fit_affine_adc(PackedAdcLut{table.data(), 0, table.size()}, 1, form.u_max);
    if (!one) return std::nullopt;
    out.sets.push_back(one->sets[0]);
  }
  return out;
}

bool BitPlaneCrossbar::serves_affine_noise(const PackedAdcLut& lut, const AffineNoiseForm& form) const {
  return nibble_ok_ && lut.min <= 0 && form.p_clamp >= 0 && form.p_clamp <= psum_bound_ &&
         form.u_max >= (form.p_clamp << form.p_shift) + form.nu_max() && form.p_shift <= 16 &&
         form.s_thresholds.size() <= AffineNoiseForm::kMaxThresholds && affine_serves(lut, slices_, form.u_max, n_cols_);
}

#if IMCSIM_NIBBLE_X86
namespace {

// Byte of a chunk's 64 input bytes that carries lane j: widening the two 32-byte vectors with
// unpacklo / unpackhi then yields the lanes in order (16-bit vector k holds lanes 16k .. 16k+15).
constexpr uint32_t lane_byte(uint32_t j) {
  const uint32_t v = j / 32, h = (j % 32) / 16, e = j % 16;
  return v * 32 + (e < 8 ? h * 8 + e : 16 + h * 8 + (e - 8));
}

// Adds the sign-extended 16-bit lanes of v[0..3] to the int32 lanes acc32[0..63].
IMCSIM_AVX2_INLINE void add_lanes16(const __m256i v[4], int32_t* acc32) {
  for (uint32_t k = 0; k < 4; ++k) {
    __m256i* a = reinterpret_cast<__m256i*>(acc32 + 16 * k);
    a[0] = _mm256_add_epi32(a[0], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v[k])));
    a[1] = _mm256_add_epi32(a[1], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(v[k], 1)));
  }
}

// Everything the column kernels need about the layer and the batch.
struct NibbleArgs {
  const uint8_t* nibbles;          // [n][column bytes]
  size_t column_bytes;
  const size_t* block_offset;      // [g * S + s]
  const uint32_t* row_groups;      // [g]
  uint32_t flush;
  const std::vector<WeightSlice>* slices;
  uint32_t G, S, T, N, per_chunk, chunks, batch;
  const uint8_t* idx;              // [chunk][g][r][64]
  const size_t* gofs;              // [g]: offset of tile g in a chunk
  size_t chunk_bytes;
  const int64_t* wt;               // [T]
  const PackedAdcLut* lut;
  int64_t* acc;                    // [batch][N]
  // Affine path.
  const uint16_t* invalid16;       // [chunk][64]: 0xFFFF for lanes past the batch
  uint32_t tiles_per_flush;
  int64_t base_factor;             // G * sum_s sign_s 2^bitlo_s * sum_t wt_t
  int64_t psum_bound;
  // Lookup path.
  const int32_t* valid32;          // [chunk][64]: -1 for lanes within the batch
  // ADC noise (affine path): per chunk the lanes' stream bases and key halves in the order of
  // gauss::irwin_hall_sums' vectors (noise_lane), and the form of u.
  const uint32_t* noise_base;      // [chunk][64]: lo32(H(key, pos)) + 2 t N kGamma32
  const uint32_t* noise_hi;        // [chunk][64]: hi32(H(key, pos))
  const AffineNoiseForm* noise;
};

// Lane (0 .. 63) of element l of noise vector v: PACKUSDW of vectors 2k and 2k + 1 yields the
// 16-bit lanes 16k .. 16k + 15 in order.
constexpr uint32_t noise_lane(uint32_t v, uint32_t l) { return (v / 2) * 16 + (v % 2) * 4 + (l < 4 ? l : l + 4); }

struct NibbleCounters {
  __m256i sat32, min16, max16, min32, max32;
  __m256i smin16, smax16;  // ADC noise: floor(a / 2^16) as signed 16-bit
};

// Folds one column's lanes of chunk c into the positions' accumulators: acc += scale *
// sum_t wt_t lanes[b * T + t] + base.
inline void fold_lanes(const NibbleArgs& a, uint32_t c, uint32_t n, const int32_t* lanes, int64_t scale, int64_t base) {
  const uint32_t positions = std::min(a.per_chunk, a.batch - c * a.per_chunk);
  for (uint32_t bl = 0; bl < positions; ++bl) {
    int64_t sum = 0;
    for (uint32_t t = 0; t < a.T; ++t) sum += a.wt[t] * lanes[bl * a.T + t];
    a.acc[size_t{c * a.per_chunk + bl} * a.N + n] += scale * sum + base;
  }
}

// value_step code(x) of an AffineAdc::Set on 16 lanes (the ADC conversion of affine_columns).
struct StaircaseForm {
  __m256i mult, off, cmax, pclamp, step;
  __m128i in, out;
  bool negative, step1;
  IMCSIM_AVX2_INLINE static StaircaseForm of(const AffineAdc::Set& s) {
    return {_mm256_set1_epi16(static_cast<int16_t>(s.mult)),
            _mm256_set1_epi16(static_cast<int16_t>(s.offset < 0 ? -s.offset : s.offset)),
            _mm256_set1_epi16(static_cast<int16_t>(s.code_max)),
            _mm256_set1_epi16(static_cast<int16_t>(s.p_clamp)),
            _mm256_set1_epi16(static_cast<int16_t>(s.value_step)),
            _mm_cvtsi32_si128(s.in_shift),
            _mm_cvtsi32_si128(s.out_shift),
            s.offset < 0,
            s.value_step == 1};
  }
  IMCSIM_AVX2_INLINE __m256i eval(__m256i x) const {
    const __m256i xs = _mm256_sll_epi16(_mm256_min_epu16(x, pclamp), in);
    const __m256i y = negative ? _mm256_subs_epu16(xs, off) : _mm256_add_epi16(xs, off);
    const __m256i code = _mm256_min_epu16(_mm256_srl_epi16(_mm256_mulhi_epu16(y, mult), out), cmax);
    return step1 ? code : _mm256_mullo_epi16(code, step);
  }
};

// Columns n0 .. n0 + NC - 1 with the ADC in arithmetic form.
template <uint32_t NC, bool kCount, bool kNoise>
__attribute__((target("avx2,bmi,bmi2,popcnt"))) void affine_columns(const NibbleArgs& a, uint32_t n0,
                                                                    NibbleCounters& ct) {
  const __m256i zero = _mm256_setzero_si256(), ones16 = _mm256_set1_epi16(1);
  const AffineAdc& aff = *a.lut->affine;
  const bool per_column = a.lut->granularity == AdcGranularity::kColumn;
  struct Col {
    __m256i mult, off, cmax, pclamp, sat_hi, sat_lo;
    __m128i in_shift, out_shift;
    bool negative_offset, low_sat, high_sat;
    const AffineAdc::Set* set;
  } cols[NC];
  const uint8_t* col_base[NC];
  for (uint32_t q = 0; q < NC; ++q) {
    const AffineAdc::Set& as = aff.sets[per_column ? n0 + q : 0];
    Col& cl = cols[q];
    cl.mult = _mm256_set1_epi16(static_cast<int16_t>(as.mult));
    cl.off = _mm256_set1_epi16(static_cast<int16_t>(as.offset < 0 ? -as.offset : as.offset));
    cl.cmax = _mm256_set1_epi16(static_cast<int16_t>(as.code_max));
    cl.pclamp = _mm256_set1_epi16(static_cast<int16_t>(as.p_clamp));
    cl.sat_hi = _mm256_set1_epi16(static_cast<int16_t>(std::min<int32_t>(as.sat_hi, 32767)));
    cl.sat_lo = _mm256_set1_epi16(static_cast<int16_t>(as.sat_lo));
    cl.in_shift = _mm_cvtsi32_si128(as.in_shift);
    cl.out_shift = _mm_cvtsi32_si128(as.out_shift);
    cl.negative_offset = as.offset < 0;
    cl.low_sat = as.sat_lo > 0;
    cl.high_sat = as.sat_hi < (kNoise ? a.noise->u_max : a.psum_bound);  // (with noise: over u)
    cl.set = &as;
    col_base[q] = a.nibbles + size_t{n0 + q} * a.column_bytes;
  }
  __m128i pshift = _mm_setzero_si128();
  __m256i smult = zero;
  bool smult1 = true;
  uint32_t nthr = 0;  // blocked form: nu(S) = #{j : S > thr[j]}
  const bool blocked = kNoise && a.noise->s_mult == 0;
  // blocked form with many steps: nu(S) = value_step code(S), code in the arithmetic form
  std::optional<StaircaseForm> nu1, nu2;  // nu(S) in arithmetic form (half blocks: floor + ceiling parts)
  __m256i thr[kNoise ? AffineNoiseForm::kMaxThresholds : 1];
  __m256i pclampv = zero, nu_offset = zero;
  bool clamp = false;
  if constexpr (kNoise) {
    clamp = a.noise->p_clamp < a.psum_bound;
    pclampv = _mm256_set1_epi16(static_cast<int16_t>(a.noise->p_clamp));
    nu_offset = _mm256_set1_epi16(static_cast<int16_t>(a.noise->nu_offset));
    pshift = _mm_cvtsi32_si128(static_cast<int>(a.noise->p_shift));
    smult = _mm256_set1_epi16(static_cast<int16_t>(a.noise->s_mult));
    smult1 = a.noise->s_mult == 1;
    if (a.noise->s_mult == 0) {
      nthr = static_cast<uint32_t>(a.noise->s_thresholds.size());
      for (uint32_t j = 0; j < nthr; ++j) thr[j] = _mm256_set1_epi16(static_cast<int16_t>(a.noise->s_thresholds[j] - 1));
    }
    if (const auto& na = a.noise->nu_affine) nu1 = StaircaseForm::of(*na);
    if (const auto& na2 = a.noise->nu_affine2) nu2 = StaircaseForm::of(*na2);
  }
  alignas(32) int32_t acc32[NC][64];
  for (uint32_t c = 0; c < a.chunks; ++c) {
    for (uint32_t q = 0; q < NC; ++q)
      for (uint32_t k = 0; k < 64; k += 8) _mm256_store_si256(reinterpret_cast<__m256i*>(acc32[q] + k), zero);
    const uint8_t* ic = a.idx + c * a.chunk_bytes;
    const __m256i* inv = reinterpret_cast<const __m256i*>(a.invalid16 + size_t{c} * 64);
    const bool full = a.per_chunk * a.T == 64 && (c + 1) * a.per_chunk <= a.batch;  // every lane valid
    const __m256i* nb = kNoise ? reinterpret_cast<const __m256i*>(a.noise_base + size_t{c} * 64) : nullptr;
    const __m256i* nh = kNoise ? reinterpret_cast<const __m256i*>(a.noise_hi + size_t{c} * 64) : nullptr;
    __m256i codes[NC][4], sat16 = zero;
    for (uint32_t q = 0; q < NC; ++q) codes[q][0] = codes[q][1] = codes[q][2] = codes[q][3] = zero;
    for (uint32_t g = 0; g < a.G; ++g) {
      for (uint32_t s = 0; s < a.S; ++s) {
        const uint8_t* tabs[NC];
        for (uint32_t q = 0; q < NC; ++q) tabs[q] = col_base[q] + a.block_offset[size_t{g} * a.S + s];
        // Noise first (before the partial sums occupy the registers): nu(S), S of conversion
        // ((g S + s) T + t) N + n of each lane's position stream, 16-bit, lanes in order.
        alignas(32) __m256i s16[kNoise ? NC : 1][4];
        if constexpr (kNoise)
          for (uint32_t q = 0; q < NC; ++q) {
            const uint32_t elem = ((g * a.S + s) * a.T) * a.N + n0 + q;
            const __m256i off = _mm256_set1_epi32(static_cast<int32_t>(2 * elem * kGamma32));
            for (uint32_t k = 0; k < 4; ++k) {
              __m256i sums[2];
              gauss::irwin_hall_sums<2>(nb + 2 * k, nh + 2 * k, off, sums);
              __m256i v = _mm256_packus_epi32(sums[0], sums[1]);
              if (nu1) {  // blocked form, many steps: nu(S) in arithmetic form
                const __m256i sv = v;
                v = nu1->eval(sv);
                if (nu2) v = _mm256_add_epi16(v, nu2->eval(sv));
              } else if (blocked) {  // blocked form: the staircase nu(S) by its thresholds
                __m256i nu = zero;
                for (uint32_t j = 0; j < nthr; ++j) nu = _mm256_sub_epi16(nu, _mm256_cmpgt_epi16(v, thr[j]));
                v = nu;
              } else if (!smult1) {
                v = _mm256_mullo_epi16(v, smult);
              }
              s16[q][k] = v;  // nu(S)
            }
          }
        __m256i w[NC][4];
        nibble::psums<NC>(tabs, ic + a.gofs[g], a.row_groups[g], a.flush, w);
        const WeightSlice& sl = (*a.slices)[s];
        const __m128i vbit = _mm_cvtsi32_si128(static_cast<int>(sl.bit_lo));
        for (uint32_t q = 0; q < NC; ++q) {
          const Col& cl = cols[q];
          if constexpr (kNoise) {
            // u = (min(p, p_clamp) << p_shift) + nu(S) (lanes past the batch: u = 0, as their p).
            for (uint32_t k = 0; k < 4; ++k) {
              if (kCount && clamp) {
                // floor(a / 2^16) = p + ((nu - nu_offset) >> p_shift) (AffineNoiseForm; without
                // clamping it is (u - nu_offset) >> p_shift, from the range of u below)
                const __m256i v = _mm256_add_epi16(w[q][k], _mm256_sra_epi16(_mm256_sub_epi16(s16[q][k], nu_offset), pshift));
                if (full) {
                  ct.smin16 = _mm256_min_epi16(ct.smin16, v);
                  ct.smax16 = _mm256_max_epi16(ct.smax16, v);
                } else {
                  const __m256i m = _mm256_loadu_si256(inv + k);
                  ct.smin16 = _mm256_min_epi16(ct.smin16, _mm256_blendv_epi8(v, _mm256_set1_epi16(32767), m));
                  ct.smax16 = _mm256_max_epi16(ct.smax16, _mm256_blendv_epi8(v, _mm256_set1_epi16(-32768), m));
                }
              }
              const __m256i p = clamp ? _mm256_min_epu16(w[q][k], pclampv) : w[q][k];
              const __m256i u = _mm256_add_epi16(_mm256_sll_epi16(p, pshift), s16[q][k]);
              w[q][k] = full ? u : _mm256_andnot_si256(_mm256_loadu_si256(inv + k), u);
            }
          }
          for (uint32_t k = 0; k < 4; ++k) {
            const __m256i ps = _mm256_sll_epi16(_mm256_min_epu16(w[q][k], cl.pclamp), cl.in_shift);
            const __m256i x = cl.negative_offset ? _mm256_subs_epu16(ps, cl.off) : _mm256_add_epi16(ps, cl.off);
            const __m256i code =
                _mm256_min_epu16(_mm256_srl_epi16(_mm256_mulhi_epu16(x, cl.mult), cl.out_shift), cl.cmax);
            const __m256i shifted = _mm256_sll_epi16(code, vbit);
            codes[q][k] = sl.sign < 0 ? _mm256_sub_epi16(codes[q][k], shifted) : _mm256_add_epi16(codes[q][k], shifted);
            if constexpr (kCount) {
              if (cl.high_sat) sat16 = _mm256_sub_epi16(sat16, _mm256_cmpgt_epi16(w[q][k], cl.sat_hi));
              // (an invalid lane's p = 0 must not count: masked in a partial chunk)
              if (cl.low_sat) {
                const __m256i low = _mm256_cmpgt_epi16(cl.sat_lo, w[q][k]);
                sat16 = _mm256_sub_epi16(sat16, full ? low : _mm256_andnot_si256(_mm256_loadu_si256(inv + k), low));
              }
              if (!kNoise || !clamp) {  // (with clamped noise: the range of floor(a / 2^16) above)
                ct.min16 = _mm256_min_epu16(ct.min16, full ? w[q][k] : _mm256_or_si256(w[q][k], _mm256_loadu_si256(inv + k)));
                ct.max16 = _mm256_max_epu16(ct.max16, w[q][k]);
              }
            }
          }
        }
      }
      if ((g + 1) % a.tiles_per_flush == 0 || g + 1 == a.G) {
        for (uint32_t q = 0; q < NC; ++q) {
          add_lanes16(codes[q], acc32[q]);
          codes[q][0] = codes[q][1] = codes[q][2] = codes[q][3] = zero;
        }
        if constexpr (kCount) {
          ct.sat32 = _mm256_add_epi32(ct.sat32, _mm256_madd_epi16(sat16, ones16));
          sat16 = zero;
        }
      }
    }
    // acc += value_step * sum_t wt_t lanes + value_base * G * sum_s sign_s 2^bitlo_s * sum_t wt_t.
    for (uint32_t q = 0; q < NC; ++q)
      fold_lanes(a, c, n0 + q, acc32[q], cols[q].set->value_step, cols[q].set->value_base * a.base_factor);
  }
}

// Columns n0 .. n0 + NC - 1 with table lookups (one VPGATHERDD per 8 lanes).
template <uint32_t NC, bool kCount>
__attribute__((target("avx2,bmi,bmi2,popcnt"))) void lookup_columns(const NibbleArgs& a, uint32_t n0,
                                                                    NibbleCounters& ct) {
  const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
  const PackedAdcLut& lut = *a.lut;
  const size_t col_stride = lut.granularity == AdcGranularity::kLayer ? 0 : lut.size;
  const uint8_t* col_base[NC];
  for (uint32_t q = 0; q < NC; ++q) col_base[q] = a.nibbles + size_t{n0 + q} * a.column_bytes;
  alignas(32) int32_t acc32[NC][64];
  for (uint32_t c = 0; c < a.chunks; ++c) {
    for (uint32_t q = 0; q < NC; ++q)
      for (uint32_t k = 0; k < 64; k += 8) _mm256_store_si256(reinterpret_cast<__m256i*>(acc32[q] + k), zero);
    const uint8_t* ic = a.idx + c * a.chunk_bytes;
    const __m256i* vmask = reinterpret_cast<const __m256i*>(a.valid32 + size_t{c} * 64);
    for (uint32_t g = 0; g < a.G; ++g)
      for (uint32_t s = 0; s < a.S; ++s) {
        const uint8_t* tabs[NC];
        for (uint32_t q = 0; q < NC; ++q) tabs[q] = col_base[q] + a.block_offset[size_t{g} * a.S + s];
        __m256i w[NC][4];
        nibble::psums<NC>(tabs, ic + a.gofs[g], a.row_groups[g], a.flush, w);
        const uint64_t set0 = lut.granularity == AdcGranularity::kSliceTileColumn ? (uint64_t{g} * a.S + s) * a.N : 0;
        const WeightSlice& sl = (*a.slices)[s];
        const __m128i sh = _mm_cvtsi32_si128(static_cast<int>(sl.bit_lo));
        for (uint32_t q = 0; q < NC; ++q) {
          const int32_t* L = lut.entries32 + set0 * lut.size - lut.min + (n0 + q) * col_stride;
          for (uint32_t k = 0; k < 8; ++k) {
            const __m256i p = _mm256_cvtepu16_epi32(k % 2 ? _mm256_extracti128_si256(w[q][k / 2], 1)
                                                           : _mm256_castsi256_si128(w[q][k / 2]));
            const __m256i e = _mm256_i32gather_epi32(L, p, 4);
            const __m256i v = _mm256_sll_epi32(_mm256_srai_epi32(e, 1), sh);
            __m256i* acc = reinterpret_cast<__m256i*>(acc32[q] + 8 * k);
            *acc = sl.sign < 0 ? _mm256_sub_epi32(*acc, v) : _mm256_add_epi32(*acc, v);
            if constexpr (kCount) {
              const __m256i m = _mm256_loadu_si256(vmask + k);
              ct.sat32 = _mm256_add_epi32(ct.sat32, _mm256_and_si256(_mm256_and_si256(e, one), m));
              ct.min32 = _mm256_min_epu32(ct.min32, _mm256_or_si256(p, _mm256_andnot_si256(m, _mm256_set1_epi32(-1))));
              ct.max32 = _mm256_max_epu32(ct.max32, _mm256_and_si256(p, m));
            }
          }
        }
      }
    for (uint32_t q = 0; q < NC; ++q) fold_lanes(a, c, n0 + q, acc32[q], 1, 0);
  }
}

template <bool kAffine, bool kCount, bool kNoise = false>
__attribute__((target("avx2,bmi,bmi2,popcnt"))) void nibble_all_columns(const NibbleArgs& a, NibbleCounters& ct) {
  constexpr uint32_t kCols = 4;  // columns per pass: 8 byte accumulators + 2 input vectors + 1 table
  uint32_t n = 0;
  for (; n + kCols <= a.N; n += kCols) {
    if constexpr (kAffine) affine_columns<kCols, kCount, kNoise>(a, n, ct);
    else lookup_columns<kCols, kCount>(a, n, ct);
  }
  for (; n < a.N; ++n) {
    if constexpr (kAffine) affine_columns<1, kCount, kNoise>(a, n, ct);
    else lookup_columns<1, kCount>(a, n, ct);
  }
}

}  // namespace

// Lanes are (position, group) pairs, lane j = b * T + t of a chunk of 64 (64 / T positions).
// Per group of four columns and chunk, each (tile, slice) block's 64 partial sums per column
// come from nibble::psums; then either (affine table) the codes are computed arithmetically in
// 16-bit lanes and summed as sign_s 2^bitlo_s code, the value map value_base + value_step *
// code applied once per position at the fold, or (any other table) one VPGATHERDD per 8 lanes
// reads value * 2 + saturated from the int32 table and the lanes sum sign_s 2^bitlo_s value in
// 32 bits. The fold adds each position's lanes with their groups' weights sign_t 2^bitlo_t.
__attribute__((target("avx2,bmi,bmi2,popcnt"))) void BitPlaneCrossbar::accumulate_nibble(
    const uint64_t* words, uint32_t batch, const PackedAdcLut& lut, int64_t* acc, FastStats* stats,
    const NoiseCall* noise) const {
  const uint32_t G = static_cast<uint32_t>(tiles_.size()), S = static_cast<uint32_t>(slices_.size()),
                 T = static_cast<uint32_t>(groups_.size()), N = n_cols_;
  const uint32_t per_chunk = 64 / T, chunks = (batch + per_chunk - 1) / per_chunk, used = per_chunk * T;
  // Per-thread scratch, reused across calls (no allocation per batch).
  thread_local std::vector<size_t> gofs;
  thread_local std::vector<uint8_t> idx;
  thread_local std::vector<uint16_t> invalid16;
  thread_local std::vector<int32_t> valid32;
  thread_local std::vector<int64_t> wt;
  thread_local std::vector<uint32_t> noise_lanes;
  thread_local std::vector<uint64_t> pos_keys;
  gofs.assign(G + 1, 0);
  for (uint32_t g = 0; g < G; ++g) gofs[g + 1] = gofs[g] + size_t{row_groups_[g]} * 64;
  const size_t chunk_bytes = gofs[G];
  // Input nibbles [chunk][g][r][byte]; unused lanes 0 (their partial sums are 0). Per block of
  // 8 lanes (8 consecutive bytes) and 8 row groups: each lane's 8 nibbles spread into 8 bytes,
  // then an 8 x 8 byte transpose gives the 8 row groups' 8-byte rows.
  idx.assign(chunks * chunk_bytes + 32, 0);
  for (uint32_t c = 0; c < chunks; ++c)
    for (uint32_t g = 0; g < G; ++g) {
      const uint32_t RG = row_groups_[g];
      for (uint32_t j0 = 0; j0 < used; j0 += 8) {
        const uint64_t* u[8];
        for (uint32_t i = 0; i < 8; ++i) {
          const uint32_t j = j0 + i, b = c * per_chunk + j / T;
          u[i] = j < used && b < batch ? words + size_t{b} * input_words_ + input_offset_[size_t{g} * T + j % T]
                                       : nullptr;
        }
        uint8_t* dst = idx.data() + c * chunk_bytes + gofs[g] + lane_byte(j0);
        for (uint32_t r8 = 0; r8 < RG; r8 += 8) {
          __m128i x[8];
          for (uint32_t i = 0; i < 8; ++i) {
            uint64_t v = u[i] ? (u[i][r8 / 16] >> (32 * ((r8 % 16) / 8))) & 0xFFFFFFFFull : 0;
            v = (v | (v << 16)) & 0x0000FFFF0000FFFFull;
            v = (v | (v << 8)) & 0x00FF00FF00FF00FFull;
            v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0Full;  // byte k = nibble of row group r8 + k
            x[i] = _mm_cvtsi64_si128(static_cast<long long>(v));
          }
          const __m128i t0 = _mm_unpacklo_epi8(x[0], x[1]), t1 = _mm_unpacklo_epi8(x[2], x[3]),
                        t2 = _mm_unpacklo_epi8(x[4], x[5]), t3 = _mm_unpacklo_epi8(x[6], x[7]);
          const __m128i u0 = _mm_unpacklo_epi16(t0, t1), u1 = _mm_unpackhi_epi16(t0, t1),
                        u2 = _mm_unpacklo_epi16(t2, t3), u3 = _mm_unpackhi_epi16(t2, t3);
          const __m128i rows[4] = {_mm_unpacklo_epi32(u0, u2), _mm_unpackhi_epi32(u0, u2), _mm_unpacklo_epi32(u1, u3),
                                   _mm_unpackhi_epi32(u1, u3)};
          for (uint32_t k = 0; k < 8 && r8 + k < RG; ++k) {
            const __m128i row = k % 2 ? _mm_unpackhi_epi64(rows[k / 2], rows[k / 2]) : rows[k / 2];
            _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + size_t{r8 + k} * 64), row);
          }
        }
      }
    }
  wt.assign(T, 0);
  int64_t wt_sum = 0;
  for (uint32_t t = 0; t < T; ++t) {
    wt[t] = int64_t{groups_[t].sign} * (int64_t{1} << groups_[t].bit_lo);
    wt_sum += wt[t];
  }
  NibbleArgs a{};
  a.nibbles = nibbles_.data();
  a.column_bytes = nibble_column_;
  a.block_offset = nibble_offset_.data();
  a.row_groups = row_groups_.data();
  a.flush = nibble_flush_;
  a.slices = &slices_;
  a.G = G, a.S = S, a.T = T, a.N = N, a.per_chunk = per_chunk, a.chunks = chunks, a.batch = batch;
  a.idx = idx.data();
  a.gofs = gofs.data();
  a.chunk_bytes = chunk_bytes;
  a.wt = wt.data();
  a.lut = &lut;
  a.acc = acc;
  a.psum_bound = psum_bound_;
  // Lane j of chunk c is valid when j < used and its position j / T is within the batch.
  uint32_t lane_b[64];
  for (uint32_t j = 0; j < 64; ++j) lane_b[j] = j < used ? j / T : per_chunk;
  auto lane_valid = [&](uint32_t c, uint32_t j) { return c * per_chunk + lane_b[j] < batch && lane_b[j] < per_chunk; };
  const bool count = stats != nullptr;
  NibbleCounters ct{_mm256_setzero_si256(), _mm256_set1_epi16(-1),        _mm256_setzero_si256(),
                    _mm256_set1_epi32(-1),   _mm256_setzero_si256(),        _mm256_set1_epi16(32767),
                    _mm256_set1_epi16(-32768)};
  // (with noise: serves_affine_noise, checked by accumulate)
  const bool affine = noise != nullptr || affine_serves(lut, slices_, psum_bound_, n_cols_);
  if (affine) {
    invalid16.resize(size_t{chunks} * 64);  // (every element written below)
    for (uint32_t c = 0; c < chunks; ++c)
      for (uint32_t j = 0; j < 64; ++j) invalid16[size_t{c} * 64 + j] = lane_valid(c, j) ? 0 : 0xFFFF;
    a.invalid16 = invalid16.data();
    int64_t signed_shift_sum = 0, code_max = 1;
    for (const auto& sl : slices_) signed_shift_sum += int64_t{sl.sign} * (int64_t{1} << sl.bit_lo);
    for (const auto& s : lut.affine->sets) code_max = std::max<int64_t>(code_max, s.code_max);
    a.base_factor = int64_t{G} * signed_shift_sum * wt_sum;
    // Tiles whose shifted codes a 16-bit lane holds before they are added to the int32 lanes
    // (and whose saturation counts, at most 4 S per tile and lane, a 16-bit counter holds).
    a.tiles_per_flush = static_cast<uint32_t>(
        std::max<int64_t>(1, std::min<int64_t>(32767 / (code_max * slice_shift_sum(slices_)), 8191 / S)));
    if (noise) {
      // Each lane's stream: position pos0 + c per_chunk + j / T, first counter 2 t N (t = j % T).
      noise_lanes.resize(size_t{chunks} * 128 + 8);
      uint32_t* base = noise_lanes.data() + ((32 - reinterpret_cast<uintptr_t>(noise_lanes.data()) % 32) % 32) / 4;
      uint32_t* hi = base + size_t{chunks} * 64;
      pos_keys.resize(batch);  // H(image key, pos), once per position
      for (uint32_t b = 0; b < batch; ++b) pos_keys[b] = rng_extend(noise->image_key, noise->pos0 + b);
      for (uint32_t c = 0; c < chunks; ++c)
        for (uint32_t v = 0; v < 8; ++v)
          for (uint32_t l = 0; l < 8; ++l) {
            const uint32_t j = noise_lane(v, l), b = j < used ? c * per_chunk + j / T : c * per_chunk;
            const uint64_t key = pos_keys[std::min(b, batch - 1)];
            base[size_t{c} * 64 + v * 8 + l] = static_cast<uint32_t>(key) + 2 * (j % T) * N * kGamma32;
            hi[size_t{c} * 64 + v * 8 + l] = static_cast<uint32_t>(key >> 32);
          }
      a.noise_base = base, a.noise_hi = hi, a.noise = noise->form;
      if (count) nibble_all_columns<true, true, true>(a, ct);
      else nibble_all_columns<true, false, true>(a, ct);
    } else if (count) {
      nibble_all_columns<true, true>(a, ct);
    } else {
      nibble_all_columns<true, false>(a, ct);
    }
  } else {
    valid32.resize(size_t{chunks} * 64);  // (every element written below)
    for (uint32_t c = 0; c < chunks; ++c)
      for (uint32_t j = 0; j < 64; ++j) valid32[size_t{c} * 64 + j] = lane_valid(c, j) ? -1 : 0;
    a.valid32 = valid32.data();
    if (count) nibble_all_columns<false, true>(a, ct);
    else nibble_all_columns<false, false>(a, ct);
  }
  if (count && batch > 0) {
    alignas(32) uint32_t sv[8], mn32[8], mx32[8];
    alignas(32) uint16_t mn16[16], mx16[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sv), ct.sat32);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mn32), ct.min32);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mx32), ct.max32);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mn16), ct.min16);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mx16), ct.max16);
    uint64_t saturations = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < 8; ++i) {
      saturations += sv[i];
      lo = std::min(lo, mn32[i]);
      hi = std::max(hi, mx32[i]);
    }
    for (int i = 0; i < 16; ++i) {
      lo = std::min<uint32_t>(lo, mn16[i]);
      hi = std::max<uint32_t>(hi, mx16[i]);
    }
    stats->saturations += saturations;
    int64_t lo_p = lo, hi_p = hi;
    if (noise && noise->form->p_clamp >= psum_bound_) {  // floor(a_fx16 / 2^16) of u, monotone
      lo_p = (lo_p - noise->form->nu_offset) >> noise->form->p_shift;
      hi_p = (hi_p - noise->form->nu_offset) >> noise->form->p_shift;
    } else if (noise) {  // the range of floor(a_fx16 / 2^16) from p and nu
      alignas(32) int16_t smn[16], smx[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(smn), ct.smin16);
      _mm256_store_si256(reinterpret_cast<__m256i*>(smx), ct.smax16);
      lo_p = *std::min_element(smn, smn + 16);
      hi_p = *std::max_element(smx, smx + 16);
    }
    stats->psum_min = std::min<int64_t>(stats->psum_min, lo_p);
    stats->psum_max = std::max<int64_t>(stats->psum_max, hi_p);
  }
}
#else
void BitPlaneCrossbar::accumulate_nibble(const uint64_t*, uint32_t, const PackedAdcLut&, int64_t*, FastStats*,
                                         const NoiseCall*) const {}
#endif

}  // namespace imcsim::kernels
