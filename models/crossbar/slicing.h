// Bit-plane decomposition of inputs (DAC groups) and weights (cell slices).
// Contract: docs/SEMANTICS.md steps 2 and 3. Plain C++, no SystemC.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace imcsim::kernels {

enum class WeightEncoding { kOffset, kTwosComplement, kDifferentialDigital, kDifferentialAnalog };

const char* encoding_name(WeightEncoding encoding);

// One DAC step: bits [bit_lo, bit_lo + nbits) of the input pattern, weighted sign * 2^bit_lo.
struct InputGroup {
  uint32_t bit_lo = 0;
  uint32_t nbits = 0;
  int sign = +1;
};

// One cell slice: bits [bit_lo, bit_lo + nbits) of the stored pattern, weighted sign * 2^bit_lo.
// polarity: 0 for OFFSET/TWOS_COMPLEMENT and the W+ half of differential, 1 for the W- half
// (DIFFERENTIAL_DIGITAL); for DIFFERENTIAL_ANALOG each slice stands for a W+/W- column pair.
struct WeightSlice {
  uint32_t bit_lo = 0;
  uint32_t nbits = 0;
  int sign = +1;
  uint32_t polarity = 0;
};

// Groups for Bx-bit inputs applied Bdac bits at a time; signed_inputs = A-shifted (two's
// complement, the sign bit in its own last group).
std::vector<InputGroup> input_groups(uint32_t input_bits, uint32_t dac_bits, bool signed_inputs);

// Slices for Bw-bit signed weights in Bc-bit cells under the given encoding.
std::vector<WeightSlice> weight_slices(WeightEncoding encoding, uint32_t weight_bits,
                                       uint32_t cell_bits);

// Physical array columns one logical weight column occupies (slices x polarity columns).
uint32_t physical_columns_per_weight_column(WeightEncoding encoding, uint32_t weight_bits,
                                            uint32_t cell_bits);

// Unsigned pattern stored for weight w under an encoding, for the given polarity.
// OFFSET: w + 2^(Bw-1); TWOS_COMPLEMENT: w mod 2^Bw; DIFFERENTIAL: max(w,0) / max(-w,0).
uint32_t stored_weight_pattern(WeightEncoding encoding, uint32_t weight_bits, int32_t w,
                               uint32_t polarity);

// Cell value of slice s for weight w: (pattern >> bit_lo) & (2^nbits - 1).
inline uint32_t slice_value(uint32_t pattern, const WeightSlice& s) {
  return (pattern >> s.bit_lo) & ((1u << s.nbits) - 1u);
}

// Group value of input x' (already A-shifted, may be negative): bits of its Bx-bit pattern.
inline uint32_t group_value(int32_t x_shifted, uint32_t input_bits, const InputGroup& g) {
  const uint32_t pattern = static_cast<uint32_t>(x_shifted) & ((input_bits >= 32) ? ~0u : ((1u << input_bits) - 1u));
  return (pattern >> g.bit_lo) & ((1u << g.nbits) - 1u);
}

}  // namespace imcsim::kernels
