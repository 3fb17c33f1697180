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
  auto cell = [&](int32_t w, const WeightSlice& slice) -> int16_t {
    if (encoding == WeightEncoding::kDifferentialAnalog)
      return static_cast<int16_t>(
          static_cast<int32_t>(slice_value(stored_weight_pattern(encoding, weight_bits, w, 0), slice)) -
          static_cast<int32_t>(slice_value(stored_weight_pattern(encoding, weight_bits, w, 1), slice)));
    return static_cast<int16_t>(slice_value(stored_weight_pattern(encoding, weight_bits, w, slice.polarity), slice));
  };
  // The cells of every weight in [-2^(Bw-1), 2^(Bw-1)) (others are converted one by one).
  const int32_t w_lo = weight_bits >= 1 && weight_bits <= 16 ? -(int32_t{1} << (weight_bits - 1)) : 0;
  const int32_t w_count = weight_bits >= 1 && weight_bits <= 16 ? int32_t{1} << weight_bits : 0;
  std::vector<int16_t> table(static_cast<size_t>(w_count) * n_slices);
  for (int32_t i = 0; i < w_count; ++i)
    for (size_t s = 0; s < n_slices; ++s) table[static_cast<size_t>(i) * n_slices + s] = cell(w_lo + i, slices_[s]);
  // Columns in blocks of 16: the weights read ([n][k]) and the cells written ([k][s][n]) stay in cache.
  for (uint32_t n0 = 0; n0 < n_cols; n0 += 16) {
    const uint32_t n1 = std::min(n_cols, n0 + 16);
    for (uint32_t k = 0; k < k_rows; ++k) {
      int16_t* row = cells_.data() + static_cast<size_t>(k) * n_slices * n_cols;
      for (uint32_t n = n0; n < n1; ++n) {
        const int32_t w = weights[static_cast<size_t>(n) * k_rows + k];
        const int64_t i = int64_t{w} - w_lo;
        if (i >= 0 && i < w_count)
          for (size_t s = 0; s < n_slices; ++s) row[s * n_cols + n] = table[static_cast<size_t>(i) * n_slices + s];
        else
          for (size_t s = 0; s < n_slices; ++s) row[s * n_cols + n] = cell(w, slices_[s]);
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
