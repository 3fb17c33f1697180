#include "sim/mapping/mapping.h"

#include <fmt/format.h>

#include <algorithm>

#include "models/crossbar/crossbar.h"
#include "models/crossbar/slicing.h"
#include "sim/mapping/schedule.h"

namespace imcsim::mapping {

ArrayGeometry ArrayGeometry::from(const config::ArchConfig& arch) {
  return {arch.array.rows, arch.array.cols, arch.array.cell_bits, arch.dac.bits, arch.adc.bits,
          arch.adc.columns_per_adc, arch.tile.arrays_per_tile, arch.chip.tiles, arch.source_file};
}

namespace {
uint32_t ceil_div(uint64_t a, uint64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }
}  // namespace

Mapping map_graph(const graph::Graph& graph, const ArrayGeometry& geo) {
  Mapping m;
  m.geometry = geo;
  uint64_t cells = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const auto& node = graph.nodes[i];
    const auto* l = std::get_if<graph::ImcLayer>(&node.op);
    if (!l) continue;
    auto fail = [&](const std::string& what) {
      throw MappingError(fmt::format("{}: node '{}' (#{}) does not fit the architecture {}: {}", graph.source_file,
                                     node.name, i, geo.arch_source, what));
    };
    if (geo.rows < l->array_rows)
      fail(fmt::format("trained for {}-row arrays, the architecture has {} rows (array.rows)",
                       l->array_rows, geo.rows));
    if (geo.cell_bits != l->cell_bits)
      fail(fmt::format("trained for {}-bit cells, the architecture has {} (array.cell_bits)",
                       l->cell_bits, geo.cell_bits));
    if (geo.dac_bits != l->dac_bits)
      fail(fmt::format("trained for {}-bit DACs, the architecture has {} (dac.bits)", l->dac_bits,
                       geo.dac_bits));
    const bool ideal = l->adc.kind == kernels::AdcKind::kIdeal;
    if (!ideal && l->adc.bits > geo.adc_bits)
      fail(fmt::format("needs a {}-bit ADC, the architecture's ADC has {} bits (adc.bits)",
                       l->adc.bits, geo.adc_bits));

    LayerMapping lm;
    lm.node_index = i;
    lm.node = node.name;
    lm.rows_k = l->rows_k();
    lm.cols_n = l->cols_n();
    lm.positions = l->is_conv ? node.output_shape.dims[1] * node.output_shape.dims[2]
                              : (l->tokens ? node.output_shape.dims[0] : 1);  // tokens: one per token
    const auto& in_q = graph.tensor_quant(node.inputs[0]);
    lm.input_groups = static_cast<uint32_t>(
        kernels::input_groups(in_q.bits, l->dac_bits, l->ashift_offset != 0).size());
    lm.slices = static_cast<uint32_t>(kernels::weight_slices(l->encoding, l->weight_bits, l->cell_bits).size());
    lm.physical_cols_per_weight_col =
        kernels::physical_columns_per_weight_column(l->encoding, l->weight_bits, l->cell_bits);
    const auto tiles = l->row_tiling == graph::RowTilingRule::kContiguous
                           ? kernels::contiguous_row_tiles(lm.rows_k, l->array_rows)
                           : kernels::channel_aligned_row_tiles(l->in_channels, l->kernel_h * l->kernel_w,
                                                                l->array_rows);
    lm.row_tiles = static_cast<uint32_t>(tiles.size());
    for (const auto& t : tiles) lm.max_rows_per_tile = std::max(lm.max_rows_per_tile, t.rows());
    if (lm.physical_cols_per_weight_col > geo.cols)
      fail(fmt::format("one weight column needs {} physical columns ({} slices), the array has {} "
                       "(array.cols)", lm.physical_cols_per_weight_col, lm.slices, geo.cols));
    lm.weight_cols_per_array = std::min(geo.cols / lm.physical_cols_per_weight_col, lm.cols_n);
    lm.col_tiles = ceil_div(lm.cols_n, lm.weight_cols_per_array);
    lm.arrays = lm.row_tiles * lm.col_tiles;
    lm.max_used_cols_per_array = lm.weight_cols_per_array * lm.physical_cols_per_weight_col;
    lm.adc_bits = ideal ? geo.adc_bits : l->adc.bits;
    lm.cells_used = uint64_t{lm.rows_k} * lm.cols_n * lm.physical_cols_per_weight_col;
    lm.utilisation = double(lm.cells_used) / (double(lm.arrays) * geo.rows * geo.cols);
    lm.tiles = ceil_div(lm.arrays, geo.arrays_per_tile);
    lm.first_tile = m.tiles_used;  // each layer starts on a fresh tile
    m.tiles_used += lm.tiles;
    if (m.tiles_used > geo.tiles)
      fail(fmt::format("it needs tiles {}..{} ({} arrays at {} arrays per tile) but the chip has {} tiles "
                       "(chip.tiles); the layers up to this one need {} tiles",
                       lm.first_tile, m.tiles_used - 1, lm.arrays, geo.arrays_per_tile, geo.tiles,
                       m.tiles_used));
    m.arrays_used += lm.arrays;
    cells += lm.cells_used;
    m.layers.push_back(lm);
  }
  if (m.arrays_used)
    m.utilisation = double(cells) / (double(m.arrays_used) * geo.rows * geo.cols);
  return m;
}

Mapping replicate_for_pipeline(const graph::Graph& graph, Mapping m, const config::ArchConfig& arch) {
  auto relayout = [&](Mapping& mm) {  // recompute tiles and first tiles after a change
    mm.tiles_used = 0;
    mm.arrays_used = 0;
    for (auto& l : mm.layers) {
      l.arrays = l.row_tiles * l.col_tiles * l.replication;
      l.tiles = ceil_div(l.arrays, mm.geometry.arrays_per_tile);
      l.first_tile = mm.tiles_used;
      mm.tiles_used += l.tiles;
      mm.arrays_used += l.arrays;
    }
    uint64_t cells = 0;
    for (auto& l : mm.layers) {
      const double capacity = double(l.arrays) * mm.geometry.rows * mm.geometry.cols;
      l.utilisation = double(l.cells_used) * l.replication / capacity;
      cells += l.cells_used * l.replication;
    }
    mm.utilisation = double(cells) / (double(mm.arrays_used) * mm.geometry.rows * mm.geometry.cols);
  };
  while (true) {
    const auto schedule = build_schedule(graph, m, arch);
    size_t slowest = 0;
    for (size_t i = 1; i < schedule.size(); ++i)
      if (schedule[i].analytical_cycles() > schedule[slowest].analytical_cycles()) slowest = i;
    if (!schedule[slowest].is_imc) break;
    auto it = std::find_if(m.layers.begin(), m.layers.end(),
                           [&](const LayerMapping& l) { return l.node_index == slowest; });
    if (it == m.layers.end() || it->replication >= it->positions) break;
    Mapping trial = m;
    trial.layers[static_cast<size_t>(it - m.layers.begin())].replication += 1;
    relayout(trial);
    if (trial.tiles_used > trial.geometry.tiles) break;
    m = std::move(trial);
  }
  return m;
}

}  // namespace imcsim::mapping
