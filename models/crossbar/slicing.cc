#include "models/crossbar/slicing.h"

namespace imcsim::kernels {

const char* encoding_name(WeightEncoding encoding) {
  switch (encoding) {
    case WeightEncoding::kOffset: return "offset";
    case WeightEncoding::kTwosComplement: return "twos_complement";
    case WeightEncoding::kDifferentialDigital: return "differential_digital";
    case WeightEncoding::kDifferentialAnalog: return "differential_analog";
  }
  return "?";
}

namespace {
// Splits bits [0, total_bits) into chunks of chunk_bits, LSB first.
template <typename Part>
void append_chunks(std::vector<Part>& out, uint32_t total_bits, uint32_t chunk_bits, int sign,
                   uint32_t polarity) {
  for (uint32_t lo = 0; lo < total_bits; lo += chunk_bits) {
    Part part;
    part.bit_lo = lo;
    part.nbits = (lo + chunk_bits <= total_bits) ? chunk_bits : total_bits - lo;
    part.sign = sign;
    if constexpr (requires { part.polarity; }) part.polarity = polarity;
    out.push_back(part);
  }
}
}  // namespace

std::vector<InputGroup> input_groups(uint32_t input_bits, uint32_t dac_bits, bool signed_inputs) {
  std::vector<InputGroup> groups;
  if (!signed_inputs) {
    append_chunks(groups, input_bits, dac_bits, +1, 0);
  } else {
    append_chunks(groups, input_bits - 1, dac_bits, +1, 0);
    groups.push_back(InputGroup{input_bits - 1, 1, -1});
  }
  return groups;
}

std::vector<WeightSlice> weight_slices(WeightEncoding encoding, uint32_t weight_bits,
                                       uint32_t cell_bits) {
  std::vector<WeightSlice> slices;
  switch (encoding) {
    case WeightEncoding::kOffset:
      append_chunks(slices, weight_bits, cell_bits, +1, 0);
      break;
    case WeightEncoding::kTwosComplement:
      append_chunks(slices, weight_bits - 1, cell_bits, +1, 0);
      slices.push_back(WeightSlice{weight_bits - 1, 1, -1, 0});
      break;
    case WeightEncoding::kDifferentialDigital:
      append_chunks(slices, weight_bits - 1, cell_bits, +1, 0);
      append_chunks(slices, weight_bits - 1, cell_bits, -1, 1);
      break;
    case WeightEncoding::kDifferentialAnalog:
      append_chunks(slices, weight_bits - 1, cell_bits, +1, 0);
      break;
  }
  return slices;
}

uint32_t physical_columns_per_weight_column(WeightEncoding encoding, uint32_t weight_bits,
                                            uint32_t cell_bits) {
  const auto n = static_cast<uint32_t>(weight_slices(encoding, weight_bits, cell_bits).size());
  return encoding == WeightEncoding::kDifferentialAnalog ? 2 * n : n;
}

uint32_t stored_weight_pattern(WeightEncoding encoding, uint32_t weight_bits, int32_t w,
                               uint32_t polarity) {
  switch (encoding) {
    case WeightEncoding::kOffset:
      return static_cast<uint32_t>(w + (int32_t{1} << (weight_bits - 1)));
    case WeightEncoding::kTwosComplement:
      return static_cast<uint32_t>(w) & ((1u << weight_bits) - 1u);
    case WeightEncoding::kDifferentialDigital:
    case WeightEncoding::kDifferentialAnalog:
      return static_cast<uint32_t>(polarity == 0 ? (w > 0 ? w : 0) : (w < 0 ? -w : 0));
  }
  return 0;
}

}  // namespace imcsim::kernels
