// Crossbar numerics: the weight matrix of one IMC layer programmed into cells, and the ideal
// integer partial sums p = sum_{k in tile} u_t[k] * d_s[k][n] (docs/SEMANTICS.md steps 3-4).
// Plain C++, no SystemC.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "models/crossbar/slicing.h"

namespace imcsim::kernels {

// Rows [row_begin, row_end) of the K-row weight matrix that one array holds.
struct RowTile {
  uint32_t row_begin = 0;
  uint32_t row_end = 0;
  uint32_t rows() const { return row_end - row_begin; }
};

// Contiguous tiles of `array_rows` rows.
std::vector<RowTile> contiguous_row_tiles(uint32_t k_rows, uint32_t array_rows);
// Channel-aligned tiles: min(floor(R / taps), channels) whole channels per array.
// Requires taps_per_channel <= array_rows (the caller validates).
std::vector<RowTile> channel_aligned_row_tiles(uint32_t channels, uint32_t taps_per_channel,
                                               uint32_t array_rows);

// The cells of one layer, as effective signed cell values per slice:
// cell(k, s, n) = d_s[k][n], or d+_s - d-_s for DIFFERENTIAL_ANALOG. Stored [k][s][n] so that
// one active input row adds one contiguous run of S*N values.
class ProgrammedCrossbar {
 public:
  // weights: [N][K] signed integers; validated to fit weight_bits and the encoding.
  ProgrammedCrossbar(std::span<const int32_t> weights, uint32_t k_rows, uint32_t n_cols,
                     uint32_t weight_bits, uint32_t cell_bits, WeightEncoding encoding,
                     std::vector<RowTile> tiles);

  uint32_t k_rows() const { return k_rows_; }
  uint32_t n_cols() const { return n_cols_; }
  const std::vector<RowTile>& tiles() const { return tiles_; }
  const std::vector<WeightSlice>& slices() const { return slices_; }
  int16_t cell(uint32_t k, uint32_t s, uint32_t n) const {
    return cells_[(static_cast<size_t>(k) * slices_.size() + s) * n_cols_ + n];
  }
  // All cells, [k][s][n].
  std::span<const int16_t> cells() const { return cells_; }

  // Partial sums of tile g for one input group: psum[s * N + n] = sum_k u[k] * cell(k, s, n).
  // `group_values` holds u_t[k] for all K rows; psum must have S*N entries.
  void partial_sums(uint32_t tile, std::span<const uint16_t> group_values,
                    std::span<int32_t> psum) const;

 private:
  uint32_t k_rows_, n_cols_;
  std::vector<RowTile> tiles_;
  std::vector<WeightSlice> slices_;
  std::vector<int16_t> cells_;
};

}  // namespace imcsim::kernels
