// Digital post-processing numerics (docs/SEMANTICS.md step 8 and "Digital nodes"):
// requantisation, shift-add weights, golden digests. Plain C++, no SystemC.
#pragma once

#include <cmath>
#include <cstdint>

namespace imcsim::kernels {

// q = clamp(rint(y / scale) + zero_point, 0, 2^bits - 1); rint is round-half-to-even.
inline int32_t requantize(double y, double scale, int32_t zero_point, uint32_t bits) {
  double q = std::nearbyint(y / scale) + static_cast<double>(zero_point);
  const double max_code = static_cast<double>((int64_t{1} << bits) - 1);
  if (!(q >= 0.0)) q = 0.0;  // also maps NaN to 0
  if (q > max_code) q = max_code;
  return static_cast<int32_t>(q);
}

// Shift-add weight of (slice, group): sign_s * sign_t * 2^(bitlo_s + bitlo_t).
inline int64_t shift_add_weight(int slice_sign, uint32_t slice_bit_lo, int group_sign,
                                uint32_t group_bit_lo) {
  return static_cast<int64_t>(slice_sign * group_sign) * (int64_t{1} << (slice_bit_lo + group_bit_lo));
}

// Running digest sum_i uint64(v_i) * M^(i+1) mod 2^64 (docs/SEMANTICS.md "Golden digests").
class Digest {
 public:
  static constexpr uint64_t kMultiplier = 0x100000001B3ull;
  void add(int64_t v) {
    power_ *= kMultiplier;
    value_ += static_cast<uint64_t>(v) * power_;
    ++count_;
  }
  uint64_t value() const { return value_; }
  uint64_t count() const { return count_; }

 private:
  uint64_t value_ = 0, power_ = 1, count_ = 0;
};

}  // namespace imcsim::kernels
