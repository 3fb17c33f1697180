#include "models/crossbar/crossbar.h"

#include <algorithm>

namespace imcsim::kernels {

std::vector<RowTile> contiguous_row_tiles(uint32_t k_rows, uint32_t array_rows) {
  std::vector<RowTile> tiles;
  for (uint32_t begin = 0; begin < k_rows; begin += array_rows)
    tiles.push_back({begin, std::min(begin + array_rows, k_rows)});
  return tiles;
}

std::vector<RowTile> channel_aligned_row_tiles(uint32_t channels, uint32_t taps_per_channel,
                                               uint32_t array_rows) {
  const uint32_t per_tile = std::min(array_rows / taps_per_channel, channels);
  std::vector<RowTile> tiles;
  for (uint32_t c = 0; c < channels; c += per_tile) {
    const uint32_t c_end = std::min(c + per_tile, channels);
    tiles.push_back({c * taps_per_channel, c_end * taps_per_channel});
  }
  return tiles;
}

ProgrammedCrossbar::ProgrammedCrossbar(std::span<const int32_t> weights, uint32_t k_rows,
                                       uint32_t n_cols, uint32_t weight_bits,
                                       uint32_t cell_bits, WeightEncoding encoding,
                                       std::vector<RowTile> tiles)
    : k_rows_(k_rows),
      n_cols_(n_cols),
      tiles_(std::move(tiles)),
      slices_(weight_slices(encoding, weight_bits, cell_bits)) {
  const size_t n_slices = slices_.size();
  cells_.assign(static_cast<size_t>(k_rows) * n_slices * n_cols, 0);
  for (uint32_t n = 0; n < n_cols; ++n) {
    for (uint32_t k = 0; k < k_rows; ++k) {
      const int32_t w = weights[static_cast<size_t>(n) * k_rows + k];
      for (size_t s = 0; s < n_slices; ++s) {
        const WeightSlice& slice = slices_[s];
        int32_t value;
        if (encoding == WeightEncoding::kDifferentialAnalog) {
          value = static_cast<int32_t>(
                      slice_value(stored_weight_pattern(encoding, weight_bits, w, 0), slice)) -
                  static_cast<int32_t>(
                      slice_value(stored_weight_pattern(encoding, weight_bits, w, 1), slice));
        } else {
          value = static_cast<int32_t>(slice_value(
              stored_weight_pattern(encoding, weight_bits, w, slice.polarity), slice));
        }
        cells_[(static_cast<size_t>(k) * n_slices + s) * n_cols + n] = static_cast<int16_t>(value);
      }
    }
  }
}

void ProgrammedCrossbar::partial_sums(uint32_t tile, std::span<const uint16_t> group_values,
                                      std::span<int32_t> psum) const {
  const size_t width = slices_.size() * n_cols_;
  std::fill(psum.begin(), psum.end(), 0);
  int32_t* __restrict out = psum.data();
  const RowTile& t = tiles_[tile];
  for (uint32_t k = t.row_begin; k < t.row_end; ++k) {
    const int32_t u = group_values[k];
    if (u == 0) continue;  // an undriven row adds nothing
    const int16_t* __restrict row = cells_.data() + static_cast<size_t>(k) * width;
    if (u == 1) {
      for (size_t i = 0; i < width; ++i) out[i] += row[i];
    } else {
      for (size_t i = 0; i < width; ++i) out[i] += u * row[i];
    }
  }
}

}  // namespace imcsim::kernels
