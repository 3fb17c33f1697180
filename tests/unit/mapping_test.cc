// Mapping of IMC layers onto arrays and tiles (sim/mapping/mapping.h): row tiles, column tiles,
// arrays, chip tiles and utilisation hand-counted for small graphs, and every MappingError
// (each must name the node and the architecture field).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/config/arch_config.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "tests/unit/graph_text.h"

namespace imcsim::mapping {
namespace {

using namespace imcsim::testing_graphs;
using nlohmann::json;

// conv1: 3x3, Cin = 64, Cout = 32, pad 1, on a 64x8x8 input -> 32x8x8 (64 positions);
// K = 64*9 = 576, N = 32. Bx = 8 (input quant bits).
struct ConvOpts {
  std::string encoding = "WEIGHT_ENCODING_OFFSET";
  std::string tiling = "ROW_TILING_CONTIGUOUS";
  uint32_t rows = 128, bw = 8, bc = 2, bdac = 1, ashift = 0;
  AdcT adc;
};

NodeT conv_node(const ConvOpts& o, const std::string& name = "conv1") {
  ImcT l;
  l.in_channels = 64, l.out_channels = 32, l.kernel_h = 3, l.kernel_w = 3, l.pad_h = 1, l.pad_w = 1;
  l.weight_bits = o.bw, l.cell_bits = o.bc, l.dac_bits = o.bdac;
  l.encoding = o.encoding, l.row_tiling = o.tiling, l.array_rows = o.rows, l.ashift_offset = o.ashift;
  l.weights.assign(576 * 32, 0);
  l.adc = o.adc;
  return NodeT{name, {"x"}, "c1", {32, 8, 8}, QuantT{0.5, 0, 8}, true, l.str()};
}

GraphT conv_graph(const ConvOpts& o) {
  GraphT g;
  g.input_shape = {64, 8, 8};
  g.input_quant = QuantT{1.0 / 64, 0, 8};
  g.nodes.push_back(conv_node(o));
  g.num_classes = 32 * 64;
  return g;
}

graph::Graph parse(const GraphT& g) { return graph::parse_graph_text(g.str(), "mapping_test.imcg.txt"); }

ArrayGeometry geometry(const json& arch = json::object()) {
  return ArrayGeometry::from(config::parse_arch_config(arch, "mapping_test_arch.json"));
}

TEST(Mapping, GeometryFromDefaultConfig) {
  const auto geo = geometry();
  EXPECT_EQ(geo.rows, 128u);
  EXPECT_EQ(geo.cols, 128u);
  EXPECT_EQ(geo.cell_bits, 2u);
  EXPECT_EQ(geo.dac_bits, 1u);
  EXPECT_EQ(geo.adc_bits, 8u);
  EXPECT_EQ(geo.arrays_per_tile, 96u);
  EXPECT_EQ(geo.tiles, 168u);
}

TEST(Mapping, Conv3x3OffsetContiguous) {
  const auto g = parse(conv_graph({}));
  const auto m = map_graph(g, geometry());
  ASSERT_EQ(m.layers.size(), 1u);
  const auto& l = m.layers[0];
  EXPECT_EQ(l.node, "conv1");
  EXPECT_EQ(l.node_index, 0u);
  EXPECT_EQ(l.rows_k, 576u);
  EXPECT_EQ(l.cols_n, 32u);
  EXPECT_EQ(l.positions, 64u);       // 8x8 output
  EXPECT_EQ(l.input_groups, 8u);     // Bx = 8, Bdac = 1
  EXPECT_EQ(l.slices, 4u);           // ceil(8/2)
  EXPECT_EQ(l.physical_cols_per_weight_col, 4u);
  EXPECT_EQ(l.row_tiles, 5u);        // 576 = 4*128 + 64
  EXPECT_EQ(l.max_rows_per_tile, 128u);
  EXPECT_EQ(l.weight_cols_per_array, 32u);  // 128 / 4 = 32 = N
  EXPECT_EQ(l.col_tiles, 1u);
  EXPECT_EQ(l.arrays, 5u);
  EXPECT_EQ(l.tiles, 1u);            // ceil(5 / 96)
  EXPECT_EQ(l.first_tile, 0u);
  EXPECT_EQ(l.max_used_cols_per_array, 128u);
  EXPECT_EQ(l.adc_bits, 8u);         // IDEAL: runs at the architecture's resolution
  EXPECT_EQ(l.cells_used, 576u * 32u * 4u);
  EXPECT_DOUBLE_EQ(l.utilisation, 576.0 * 32 * 4 / (5.0 * 128 * 128));  // = 0.9
  EXPECT_DOUBLE_EQ(l.utilisation, 0.9);
  EXPECT_EQ(m.arrays_used, 5u);
  EXPECT_EQ(m.tiles_used, 1u);
  EXPECT_DOUBLE_EQ(m.utilisation, 0.9);
}

TEST(Mapping, Conv3x3ChannelAligned) {
  // cpt = floor(128 / 9) = 14 channels per array: 14,14,14,14,8 -> rows 126 x 4, 72.
  ConvOpts o;
  o.tiling = "ROW_TILING_CHANNEL_ALIGNED";
  const auto m = map_graph(parse(conv_graph(o)), geometry());
  const auto& l = m.layers[0];
  EXPECT_EQ(l.row_tiles, 5u);
  EXPECT_EQ(l.max_rows_per_tile, 126u);
  EXPECT_EQ(l.col_tiles, 1u);
  EXPECT_EQ(l.arrays, 5u);
  EXPECT_DOUBLE_EQ(l.utilisation, 576.0 * 32 * 4 / (5.0 * 128 * 128));
}

TEST(Mapping, ChannelAlignedWithSmallTrainedRowsNeedsMoreTiles) {
  // R = 64: cpt = floor(64/9) = 7 -> ceil(64/7) = 10 tiles (9 x 7 channels + 1), rows 63 max.
  ConvOpts o;
  o.tiling = "ROW_TILING_CHANNEL_ALIGNED";
  o.rows = 64;
  const auto m = map_graph(parse(conv_graph(o)), geometry());
  EXPECT_EQ(m.layers[0].row_tiles, 10u);
  EXPECT_EQ(m.layers[0].max_rows_per_tile, 63u);
  EXPECT_EQ(m.layers[0].arrays, 10u);
  // Contiguous R = 64: ceil(576 / 64) = 9 tiles.
  o.tiling = "ROW_TILING_CONTIGUOUS";
  EXPECT_EQ(map_graph(parse(conv_graph(o)), geometry()).layers[0].row_tiles, 9u);
}

TEST(Mapping, DifferentialAnalogDoublesPhysicalColumns) {
  // S = ceil(7/2) = 4 entries, each a W+/W- column pair: 8 physical columns per weight column;
  // 128 / 8 = 16 weight columns per array -> 2 column tiles -> 10 arrays.
  ConvOpts o;
  o.encoding = "WEIGHT_ENCODING_DIFFERENTIAL_ANALOG";
  const auto& l = map_graph(parse(conv_graph(o)), geometry()).layers[0];
  EXPECT_EQ(l.slices, 4u);
  EXPECT_EQ(l.physical_cols_per_weight_col, 8u);
  EXPECT_EQ(l.weight_cols_per_array, 16u);
  EXPECT_EQ(l.col_tiles, 2u);
  EXPECT_EQ(l.arrays, 10u);
  EXPECT_EQ(l.cells_used, 576u * 32u * 8u);
  EXPECT_DOUBLE_EQ(l.utilisation, 576.0 * 32 * 8 / (10.0 * 128 * 128));  // 0.9
}

TEST(Mapping, DifferentialDigitalListsBothPolarities) {
  // 4 W+ slices + 4 W- slices = 8 ADC-converted slices and 8 physical columns.
  ConvOpts o;
  o.encoding = "WEIGHT_ENCODING_DIFFERENTIAL_DIGITAL";
  const auto& l = map_graph(parse(conv_graph(o)), geometry()).layers[0];
  EXPECT_EQ(l.slices, 8u);
  EXPECT_EQ(l.physical_cols_per_weight_col, 8u);
  EXPECT_EQ(l.col_tiles, 2u);
  EXPECT_EQ(l.arrays, 10u);
}

TEST(Mapping, TwosComplementFiveColumnsPerWeight) {
  // 4 magnitude slices + 1 sign slice = 5 columns; floor(128/5) = 25 weight columns per array
  // -> ceil(32/25) = 2 column tiles, 125 columns used on the fullest array.
  ConvOpts o;
  o.encoding = "WEIGHT_ENCODING_TWOS_COMPLEMENT";
  const auto& l = map_graph(parse(conv_graph(o)), geometry()).layers[0];
  EXPECT_EQ(l.slices, 5u);
  EXPECT_EQ(l.physical_cols_per_weight_col, 5u);
  EXPECT_EQ(l.weight_cols_per_array, 25u);
  EXPECT_EQ(l.col_tiles, 2u);
  EXPECT_EQ(l.arrays, 10u);
  EXPECT_EQ(l.max_used_cols_per_array, 125u);
  EXPECT_DOUBLE_EQ(l.utilisation, 576.0 * 32 * 5 / (10.0 * 128 * 128));  // 0.5625
}

TEST(Mapping, DacAndAshiftDecideInputGroups) {
  // Bx = 8, Bdac = 3, A-shift: magnitude bits 0..6 in ceil(7/3) = 3 groups + sign = 4.
  ConvOpts o;
  o.bdac = 3;
  o.ashift = 128;
  const auto& l = map_graph(parse(conv_graph(o)), geometry({{"dac", {{"bits", 3}}}})).layers[0];
  EXPECT_EQ(l.input_groups, 4u);
  o.ashift = 0;  // unsigned: ceil(8/3) = 3
  EXPECT_EQ(map_graph(parse(conv_graph(o)), geometry({{"dac", {{"bits", 3}}}})).layers[0].input_groups, 3u);
}

TEST(Mapping, LargerArchitectureArraysKeepTrainedRowTiles) {
  // Trained for 128 rows, run on 256-row arrays: the numerics (5 row tiles) are unchanged,
  // utilisation is over the architecture's 256 x 128 cells.
  const auto m = map_graph(parse(conv_graph({})), geometry({{"array", {{"rows", 256}}}}));
  EXPECT_EQ(m.layers[0].row_tiles, 5u);
  EXPECT_EQ(m.layers[0].arrays, 5u);
  EXPECT_DOUBLE_EQ(m.layers[0].utilisation, 576.0 * 32 * 4 / (5.0 * 256 * 128));  // 0.45
}

TEST(Mapping, LinearAdcBitsAreTheLayersOwn) {
  ConvOpts o;
  o.adc.kind = "KIND_LINEAR";
  o.adc.bits = 6;
  o.adc.step_fx = {4};
  o.adc.centre_fx = {0};
  EXPECT_EQ(map_graph(parse(conv_graph(o)), geometry()).layers[0].adc_bits, 6u);
  // Equal to the architecture's bits is fine.
  o.adc.bits = 8;
  EXPECT_EQ(map_graph(parse(conv_graph(o)), geometry()).layers[0].adc_bits, 8u);
}

// conv1 (5 arrays) -> flatten (2048) -> fc: Linear 2048 -> 10, offset 8/2: K = 2048 -> 16 row
// tiles, N = 10 -> 10 weight columns per array, 1 column tile -> 16 arrays.
GraphT two_layer_graph() {
  GraphT g = conv_graph({});
  g.nodes.push_back(NodeT{"flat", {"c1"}, "f", {2048}, QuantT{0.5, 0, 8}, true, "flatten {}"});
  ImcT fc;
  fc.conv = false;
  fc.in_channels = 2048, fc.out_channels = 10;
  fc.weights.assign(2048 * 10, 1);
  g.nodes.push_back(NodeT{"fc", {"f"}, "logits", {10}, QuantT{1, 0, 0}, true, fc.str()});
  g.num_classes = 10;
  return g;
}

TEST(Mapping, TwoLayersStartOnFreshTiles) {
  // 4 arrays per tile: conv1 5 arrays -> 2 tiles (first 0); fc 16 arrays -> 4 tiles (first 2).
  const auto m = map_graph(parse(two_layer_graph()), geometry({{"tile", {{"arrays_per_tile", 4}}}}));
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers[0].tiles, 2u);
  EXPECT_EQ(m.layers[0].first_tile, 0u);
  const auto& fc = m.layers[1];
  EXPECT_EQ(fc.node, "fc");
  EXPECT_EQ(fc.node_index, 2u);
  EXPECT_EQ(fc.positions, 1u);
  EXPECT_EQ(fc.row_tiles, 16u);
  EXPECT_EQ(fc.weight_cols_per_array, 10u);
  EXPECT_EQ(fc.col_tiles, 1u);
  EXPECT_EQ(fc.arrays, 16u);
  EXPECT_EQ(fc.tiles, 4u);
  EXPECT_EQ(fc.first_tile, 2u);
  EXPECT_EQ(fc.max_used_cols_per_array, 40u);
  EXPECT_DOUBLE_EQ(fc.utilisation, 2048.0 * 10 * 4 / (16.0 * 128 * 128));  // 0.3125
  EXPECT_EQ(m.tiles_used, 6u);
  EXPECT_EQ(m.arrays_used, 21u);
  EXPECT_DOUBLE_EQ(m.utilisation, (576.0 * 32 * 4 + 2048.0 * 10 * 4) / (21.0 * 128 * 128));
  // Exactly 6 tiles on the chip: fits.
  EXPECT_NO_THROW(map_graph(parse(two_layer_graph()),
                            geometry({{"tile", {{"arrays_per_tile", 4}}}, {"chip", {{"tiles", 6}}}})));
}

// Expects map_graph to throw MappingError whose message contains every part, and the names
// of the graph source and the architecture config.
void expect_mapping_error(const graph::Graph& g, const ArrayGeometry& geo, std::vector<std::string> parts) {
  parts.push_back("mapping_test.imcg.txt");
  parts.push_back("mapping_test_arch.json");
  try {
    map_graph(g, geo);
    FAIL() << "no MappingError";
  } catch (const MappingError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(MappingErrors, ArchitectureRowsBelowTrainedRows) {
  expect_mapping_error(parse(conv_graph({})), geometry({{"array", {{"rows", 64}}}}),
                       {"conv1", "128", "64", "array.rows"});
}

TEST(MappingErrors, CellBitsMismatch) {
  expect_mapping_error(parse(conv_graph({})), geometry({{"array", {{"cell_bits", 1}}}}),
                       {"conv1", "2-bit cells", "array.cell_bits"});
  // Wider cells are not accepted either: the slicing is part of the trained numerics.
  expect_mapping_error(parse(conv_graph({})), geometry({{"array", {{"cell_bits", 4}}}}),
                       {"conv1", "array.cell_bits"});
}

TEST(MappingErrors, DacBitsMismatch) {
  expect_mapping_error(parse(conv_graph({})), geometry({{"dac", {{"bits", 2}}}}),
                       {"conv1", "1-bit DACs", "dac.bits"});
}

TEST(MappingErrors, AdcBitsTooHigh) {
  ConvOpts o;
  o.adc.kind = "KIND_LINEAR";
  o.adc.bits = 8;
  o.adc.step_fx = {4};
  o.adc.centre_fx = {0};
  expect_mapping_error(parse(conv_graph(o)), geometry({{"adc", {{"bits", 6}}}}),
                       {"conv1", "8-bit ADC", "6 bits", "adc.bits"});
  // An IDEAL ADC has no resolution requirement.
  EXPECT_NO_THROW(map_graph(parse(conv_graph({})), geometry({{"adc", {{"bits", 1}}}})));
}

TEST(MappingErrors, WeightColumnWiderThanArray) {
  // Differential digital 8-bit on 2-bit cells: 8 physical columns, array has 4.
  ConvOpts o;
  o.encoding = "WEIGHT_ENCODING_DIFFERENTIAL_DIGITAL";
  expect_mapping_error(parse(conv_graph(o)), geometry({{"array", {{"cols", 4}}}}),
                       {"conv1", "8 physical columns", "array.cols"});
}

TEST(MappingErrors, GraphDoesNotFitTheChip) {
  // 6 tiles needed (see TwoLayersStartOnFreshTiles), 5 available.
  expect_mapping_error(parse(two_layer_graph()),
                       geometry({{"tile", {{"arrays_per_tile", 4}}}, {"chip", {{"tiles", 5}}}}),
                       {"'fc'", "6 tiles", "tiles 2..5", "16 arrays", "chip.tiles"});
}

// The error names the first node whose tiles exceed chip.tiles (conv1 occupies tiles 0-1,
// fc needs tiles 2-5 of 5).
TEST(MappingErrors, ChipOverflowNamesTheFirstNodeThatDoesNotFit) {
  expect_mapping_error(parse(two_layer_graph()),
                       geometry({{"tile", {{"arrays_per_tile", 4}}}, {"chip", {{"tiles", 5}}}}),
                       {"'fc'", "chip.tiles"});
}

}  // namespace
}  // namespace imcsim::mapping
