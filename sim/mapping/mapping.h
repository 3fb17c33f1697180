// Mapping of a graph's IMC layers onto the arrays and tiles of an architecture: row tiles
// (from the graph's tiling rule, which decides the numerics), column tiles (weight columns x
// physical columns per weight column, i.e. slices x polarity), arrays, tiles, utilisation.
// Pure functions, no SystemC.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "sim/config/arch_config.h"
#include "sim/graph/graph.h"

namespace imcsim::mapping {

struct MappingError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Hardware parameters the mapping needs (taken from the ArchConfig).
struct ArrayGeometry {
  uint32_t rows = 128, cols = 128, cell_bits = 2, dac_bits = 1, adc_bits = 8;
  uint32_t columns_per_adc = 128, arrays_per_tile = 96, tiles = 168;
  std::string arch_source;  // config file, for error messages
  static ArrayGeometry from(const config::ArchConfig& arch);
};

struct LayerMapping {
  size_t node_index = 0;
  std::string node;
  uint32_t rows_k = 0, cols_n = 0;          // weight matrix K x N
  uint32_t positions = 0;                   // input vectors per image (output pixels)
  uint32_t input_groups = 0;                // DAC steps per input vector (T)
  uint32_t slices = 0;                      // ADC-converted slices per weight column (S)
  uint32_t physical_cols_per_weight_col = 0;  // slices x polarity columns
  uint32_t row_tiles = 0;                   // G
  uint32_t max_rows_per_tile = 0;
  uint32_t weight_cols_per_array = 0;
  uint32_t col_tiles = 0;
  uint32_t arrays = 0;                      // G x col_tiles x replication
  uint32_t replication = 1;                 // copies of the weights, each taking 1/r of the positions
  uint32_t tiles = 0;                       // chip tiles this layer occupies
  uint32_t first_tile = 0;
  uint32_t max_used_cols_per_array = 0;     // physical columns used on the fullest array
  uint32_t adc_bits = 0;                    // resolution the layer's ADC runs at
  uint64_t cells_used = 0;                  // K x N x physical cols per weight column
  double utilisation = 0;                   // cells_used / (arrays x rows x cols)
};

struct Mapping {
  ArrayGeometry geometry;
  std::vector<LayerMapping> layers;  // IMC layers in node order
  uint32_t tiles_used = 0;
  uint32_t arrays_used = 0;
  double utilisation = 0;            // over the arrays used
};

// Inter-layer pipelining: replicates the weights of the slowest IMC layer (by the closed-form
// cycles of build_schedule) one copy at a time while the chip has tiles for the copy, the
// slowest node is an IMC layer and its copies do not exceed its positions. Copies split the
// layer's positions (each takes ceil(P / r)). Returns the mapping with replication set.
Mapping replicate_for_pipeline(const graph::Graph& graph, Mapping mapping, const config::ArchConfig& arch);

// Maps every IMC layer; checks that the architecture can run the graph as trained (array rows
// >= the layer's trained rows, equal cell and DAC bits, ADC bits >= the layer's) and that the
// mapping fits the chip. Throws MappingError naming the node and the mismatch.
Mapping map_graph(const graph::Graph& graph, const ArrayGeometry& geometry);

}  // namespace imcsim::mapping
