// Graph loader (sim/graph/graph_loader.h): the bad-input catalog at unit level. Every invalid
// graph must be rejected with a GraphError whose message names the source (file name), the
// node and the field; the binary .imcg container (header, payload, FNV-1a checksum) must
// detect every truncation, corruption and padding.
#include <gtest/gtest.h>
#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "sim/graph/graph_loader.h"
#include "sim/graph/imcsim_graph.pb.h"
#include "tests/unit/graph_text.h"

namespace imcsim::graph {
namespace {

namespace fs = std::filesystem;
using namespace imcsim::testing_graphs;

constexpr const char* kSource = "bad_graph.imcg.txt";

// A valid three-node graph; tests break exactly one thing.
//   x: 1x4x4, 4-bit codes
//   conv1: Conv2d 1 -> 2, 3x3, stride 1, pad 0 -> 2x2x2; Bw 4, Bc 2 (S = 2), Bdac 1, OFFSET,
//          R = 4 contiguous (K = 9 -> G = 3); LINEAR ADC 4 bits, LAYER
//   flat:  Flatten -> [8]
//   fc:    Linear 8 -> 3, float output; NONLINEAR ADC 2 bits (3 thresholds, 4 levels)
struct Base {
  GraphT g;
  ImcT conv, fc;
  NodeT conv_node, flat_node, fc_node;
  bool include_nodes = true;

  Base() {
    g.input_shape = {1, 4, 4};
    g.input_quant = QuantT{0.1, 0, 4};
    conv.in_channels = 1, conv.out_channels = 2, conv.kernel_h = 3, conv.kernel_w = 3;
    conv.weight_bits = 4, conv.cell_bits = 2, conv.dac_bits = 1, conv.array_rows = 4;
    conv.weights = {-8, 7, 0, 1, 2, 3, -1, -2, -3, 4, 5, 6, -4, -5, -6, 0, 0, 1};
    conv.weight_scale = {0.1};
    conv.adc.kind = "KIND_LINEAR", conv.adc.bits = 4, conv.adc.step_fx = {2}, conv.adc.centre_fx = {0};
    conv_node = NodeT{"conv1", {"x"}, "c1", {2, 2, 2}, QuantT{0.5, 0, 4}, true, ""};
    flat_node = NodeT{"flat", {"c1"}, "f", {8}, QuantT{0.5, 0, 4}, true, "flatten {}"};
    fc.conv = false;
    fc.in_channels = 8, fc.out_channels = 3, fc.weight_bits = 4, fc.cell_bits = 2, fc.dac_bits = 1;
    for (int i = 0; i < 24; ++i) fc.weights.push_back(i % 15 - 7);
    fc.weight_scale = {0.1, 0.2, 0.3};
    fc.bias = {0.0, 0.5, -0.5};
    fc.adc.kind = "KIND_NONLINEAR", fc.adc.bits = 2, fc.adc.thresholds_fx = {1, 2, 3};
    fc.adc.levels_fx = {0, 1, 2, 3};
    fc_node = NodeT{"fc", {"f"}, "logits", {3}, QuantT{1, 0, 0}, true, ""};
    g.num_classes = 3;
  }
  std::string text() const {
    GraphT out = g;
    out.nodes.clear();
    if (include_nodes) {
      NodeT c = conv_node, f = fc_node;
      if (c.op.empty()) c.op = conv.str();
      if (f.op.empty()) f.op = fc.str();
      if (c.op == "none") c.op = "";
      out.nodes = {c, flat_node, f};
    }
    return out.str();
  }
};

// Expects a GraphError whose message starts with the source name and contains every part.
void expect_error(const std::string& text, std::initializer_list<std::string> parts) {
  try {
    parse_graph_text(text, kSource);
    ADD_FAILURE() << "no GraphError for:\n" << text;
  } catch (const GraphError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(std::string(kSource) + ": ", 0), 0u) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

TEST(GraphLoader, BaseGraphIsValidAndConverted) {
  const Base b;
  const Graph g = parse_graph_text(b.text(), kSource);
  EXPECT_EQ(g.source_file, kSource);
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(g.nodes[0].inputs, std::vector<int>{-1});
  EXPECT_EQ(g.nodes[1].inputs, std::vector<int>{0});
  EXPECT_EQ(g.nodes[2].inputs, std::vector<int>{1});
  const auto& conv = std::get<ImcLayer>(g.nodes[0].op);
  EXPECT_TRUE(conv.is_conv);
  EXPECT_EQ(conv.rows_k(), 9u);
  EXPECT_EQ(conv.weights.size(), 18u);
  // A per-tensor weight scale is expanded to N values; absent psum_scale/bias become 1/0.
  EXPECT_EQ(conv.weight_scale, (std::vector<double>{0.1, 0.1}));
  EXPECT_EQ(conv.psum_scale, (std::vector<double>{1.0, 1.0}));
  EXPECT_EQ(conv.bias, (std::vector<double>{0.0, 0.0}));
  const auto& fc = std::get<ImcLayer>(g.nodes[2].op);
  EXPECT_FALSE(fc.is_conv);
  EXPECT_EQ(fc.adc.kind, kernels::AdcKind::kNonlinear);
  EXPECT_TRUE(g.nodes[2].output_quant.is_float());
  EXPECT_EQ(g.num_classes, 3u);
  EXPECT_STREQ(op_name(g.nodes[0].op), "conv2d");
  EXPECT_STREQ(op_name(g.nodes[1].op), "flatten");
  EXPECT_STREQ(op_name(g.nodes[2].op), "linear");
}

TEST(GraphLoader, WindowOutputSize) {
  EXPECT_EQ(window_output_size(28, 3, 1, 1), 28u);
  EXPECT_EQ(window_output_size(28, 2, 2, 0), 14u);
  EXPECT_EQ(window_output_size(5, 3, 2, 1), 3u);
  EXPECT_EQ(window_output_size(2, 3, 1, 0), 0u);  // does not fit
  EXPECT_EQ(window_output_size(4, 0, 1, 0), 0u);
  EXPECT_EQ(window_output_size(4, 2, 0, 0), 0u);
}

// ---- missing fields ---------------------------------------------------------------------------

TEST(GraphLoaderErrors, FormatVersion2) {
  Base b;
  b.g.format_version = 2;
  expect_error(b.text(), {"format_version", "version 2"});
}

TEST(GraphLoaderErrors, MissingInput) {
  Base b;
  b.g.has_input = false;
  expect_error(b.text(), {"input", "missing"});
}

TEST(GraphLoaderErrors, NoNodes) {
  Base b;
  b.include_nodes = false;
  expect_error(b.text(), {"nodes", "no nodes"});
}

TEST(GraphLoaderErrors, NodeWithoutOp) {
  Base b;
  b.conv_node.op = "none";
  expect_error(b.text(), {"node 'conv1' (#0)", "op"});
}

TEST(GraphLoaderErrors, MissingOutputQuant) {
  Base b;
  b.flat_node.has_output_quant = false;
  expect_error(b.text(), {"node 'flat' (#1)", "output_quant", "missing"});
}

TEST(GraphLoaderErrors, MissingNodeNameAndOutputName) {
  Base b;
  b.flat_node.name = "";
  expect_error(b.text(), {"(#1)", "name", "missing"});
  Base c;
  c.flat_node.output = "";
  expect_error(c.text(), {"node 'flat'", "output", "missing"});
}

TEST(GraphLoaderErrors, MissingInputTensorNameAndBadInputSpec) {
  Base b;
  b.g.input_tensor = "";
  expect_error(b.text(), {"input", "tensor"});
  Base c;
  c.g.input_shape = {1, 4};
  expect_error(c.text(), {"input", "shape", "3 values"});
  Base d;
  d.g.input_shape = {1, 0, 4};
  expect_error(d.text(), {"input", "shape", "> 0"});
  Base e;
  e.g.std = 0;
  expect_error(e.text(), {"input", "std"});
  Base f;
  f.g.pixel_scale = -1;
  expect_error(f.text(), {"input", "pixel_scale"});
  Base q;
  q.g.input_quant.bits = 0;
  expect_error(q.text(), {"input", "quant.bits"});
}

TEST(GraphLoaderErrors, DatasetFormat) {
  Base b;
  std::string t = b.text();
  t.replace(t.find("\"idx-u8\""), 8, "\"png\"");
  expect_error(t, {"input", "dataset_format", "png"});
}

// ---- tensor sizes -----------------------------------------------------------------------------

TEST(GraphLoaderErrors, WeightsCount) {
  Base b;
  b.conv.weights.pop_back();
  expect_error(b.text(), {"node 'conv1' (#0)", "imc.weights", "2*9 = 18", "got 17"});
  Base c;
  c.fc.weights.push_back(0);
  expect_error(c.text(), {"node 'fc' (#2)", "imc.weights", "got 25"});
}

TEST(GraphLoaderErrors, WeightScaleCount) {
  Base b;
  b.fc.weight_scale = {0.1, 0.2};
  expect_error(b.text(), {"node 'fc'", "imc.weight_scale", "got 2"});
  Base c;
  c.conv.weight_scale.clear();
  expect_error(c.text(), {"node 'conv1'", "imc.weight_scale", "got 0"});
  Base d;
  d.fc.weight_scale = {0.1, 0.0, 0.3};
  expect_error(d.text(), {"node 'fc'", "imc.weight_scale[1]", "> 0"});
}

TEST(GraphLoaderErrors, BiasAndPsumScaleCount) {
  Base b;
  b.fc.bias = {1.0, 2.0};
  expect_error(b.text(), {"node 'fc'", "imc.bias", "expected 0 or 3", "got 2"});
  Base c;
  c.conv.psum_scale = {1.0, 1.0, 1.0};
  expect_error(c.text(), {"node 'conv1'", "imc.psum_scale", "got 3"});
  Base d;
  d.conv.psum_scale = {1.0, -1.0};
  expect_error(d.text(), {"node 'conv1'", "imc.psum_scale[1]"});
}

TEST(GraphLoaderErrors, AdcStepCountForEveryGranularity) {
  // conv1: G = 3 row tiles (K = 9, R = 4), S = 2 slices, N = 2 columns.
  Base layer;
  layer.conv.adc.step_fx = {2, 2};
  expect_error(layer.text(), {"node 'conv1'", "imc.adc.step_fx", "expected 1 values", "got 2"});
  Base column;
  column.conv.adc.granularity = "GRANULARITY_COLUMN";
  expect_error(column.text(), {"node 'conv1'", "imc.adc.step_fx", "expected 2 values", "got 1"});
  Base stc;
  stc.conv.adc.granularity = "GRANULARITY_SLICE_TILE_COLUMN";
  stc.conv.adc.step_fx.assign(12, 2);
  stc.conv.adc.centre_fx.assign(11, 0);
  expect_error(stc.text(), {"node 'conv1'", "imc.adc.centre_fx", "expected 12 values", "got 11"});
  stc.conv.adc.step_fx.assign(2, 2);
  expect_error(stc.text(), {"node 'conv1'", "imc.adc.step_fx", "expected 12 values", "tiles 3, slices 2, columns 2"});
  // Correct counts are accepted.
  stc.conv.adc.step_fx.assign(12, 2);
  stc.conv.adc.centre_fx.assign(12, 0);
  EXPECT_NO_THROW(parse_graph_text(stc.text(), kSource));
  column.conv.adc.step_fx = {2, 3};
  column.conv.adc.centre_fx = {0, 1};
  EXPECT_NO_THROW(parse_graph_text(column.text(), kSource));
}

TEST(GraphLoaderErrors, AdcStepValues) {
  Base b;
  b.conv.adc.step_fx = {0};
  expect_error(b.text(), {"node 'conv1'", "imc.adc.step_fx[0]", "got 0"});
  b.conv.adc.step_fx = {-3};
  expect_error(b.text(), {"node 'conv1'", "imc.adc.step_fx[0]", "got -3"});
}

TEST(GraphLoaderErrors, NonlinearThresholdAndLevelCounts) {
  Base b;
  b.fc.adc.thresholds_fx = {1, 2};
  expect_error(b.text(), {"node 'fc'", "imc.adc.thresholds_fx", "expected 3", "got 2"});
  Base c;
  c.fc.adc.levels_fx = {0, 1, 2};
  expect_error(c.text(), {"node 'fc'", "imc.adc.levels_fx", "expected 4", "got 3"});
  Base d;  // levels for bits 3 with a 2-bit table
  d.fc.adc.bits = 3;
  expect_error(d.text(), {"node 'fc'", "imc.adc.thresholds_fx", "expected 7"});
}

TEST(GraphLoaderErrors, NonMonotonicThresholds) {
  Base b;
  b.fc.adc.thresholds_fx = {1, 3, 2};
  expect_error(b.text(), {"node 'fc'", "imc.adc.thresholds_fx[2]", "strictly increasing"});
  Base c;  // equal thresholds are not strictly increasing
  c.fc.adc.thresholds_fx = {1, 1, 2};
  expect_error(c.text(), {"node 'fc'", "imc.adc.thresholds_fx[1]", "strictly increasing"});
  Base d;  // per-set: each column's table is checked on its own; the 2nd set decreases
  d.fc.adc.granularity = "GRANULARITY_COLUMN";
  d.fc.adc.thresholds_fx = {1, 2, 3, 10, 20, 30, 5, 4, 6};
  d.fc.adc.levels_fx = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  expect_error(d.text(), {"node 'fc'", "imc.adc.thresholds_fx[7]", "set 2"});
  // ... but a set may start below the previous set's last threshold.
  d.fc.adc.thresholds_fx = {1, 2, 3, -10, 20, 30, 5, 6, 7};
  EXPECT_NO_THROW(parse_graph_text(d.text(), kSource));
}

TEST(GraphLoaderErrors, AdcKindFieldMix) {
  Base b;  // IDEAL takes no parameters
  b.conv.adc.kind = "KIND_IDEAL";
  expect_error(b.text(), {"node 'conv1'", "imc.adc", "IDEAL"});
  Base c;  // LINEAR takes no thresholds
  c.conv.adc.thresholds_fx = {1};
  expect_error(c.text(), {"node 'conv1'", "imc.adc.thresholds_fx"});
  Base d;  // NONLINEAR takes no step
  d.fc.adc.step_fx = {1};
  expect_error(d.text(), {"node 'fc'", "imc.adc.step_fx"});
}

// ---- value ranges -----------------------------------------------------------------------------

TEST(GraphLoaderErrors, WeightsOutOfRange) {
  Base b;
  b.conv.weights[5] = 8;  // 4-bit weights: [-8, 7]
  expect_error(b.text(), {"node 'conv1'", "imc.weights[5]", "value 8", "[-8, 7]"});
  b.conv.weights[5] = -9;
  expect_error(b.text(), {"node 'conv1'", "imc.weights[5]", "value -9"});
  // Row / column in the message: index 10 = column 1, row 1.
  Base c;
  c.conv.weights[10] = 100;
  expect_error(c.text(), {"imc.weights[10]", "column 1, row 1"});
}

TEST(GraphLoaderErrors, MostNegativeWeightRejectedForDifferentialOnly) {
  // weights[0] = -8 = -2^(Bw-1): valid for OFFSET and TWOS_COMPLEMENT, not for differential
  // encodings (|W| <= 2^(Bw-1) - 1).
  for (const char* enc : {"WEIGHT_ENCODING_OFFSET", "WEIGHT_ENCODING_TWOS_COMPLEMENT"}) {
    Base b;
    b.conv.encoding = enc;
    EXPECT_NO_THROW(parse_graph_text(b.text(), kSource)) << enc;
  }
  for (const char* enc : {"WEIGHT_ENCODING_DIFFERENTIAL_DIGITAL", "WEIGHT_ENCODING_DIFFERENTIAL_ANALOG"}) {
    Base b;
    b.conv.encoding = enc;
    b.conv.adc.signed_codes = true;
    expect_error(b.text(), {"node 'conv1'", "imc.weights[0]", "value -8", "[-7, 7]"});
  }
}

TEST(GraphLoaderErrors, AdcBits) {
  for (uint32_t bits : {0u, 17u}) {
    Base b;
    b.conv.adc.bits = bits;
    expect_error(b.text(), {"node 'conv1'", "imc.adc.bits", "[1, 16]", "got " + std::to_string(bits)});
  }
  Base nl;
  nl.fc.adc.bits = 0;
  expect_error(nl.text(), {"node 'fc'", "imc.adc.bits"});
  Base f;
  f.conv.adc.frac_bits = 25;
  expect_error(f.text(), {"node 'conv1'", "imc.adc.frac_bits", "got 25"});
}

TEST(GraphLoaderErrors, BitWidths) {
  Base a;
  a.conv.weight_bits = 1;
  expect_error(a.text(), {"node 'conv1'", "imc.weight_bits", "got 1"});
  Base b;
  b.conv.weight_bits = 17;
  expect_error(b.text(), {"node 'conv1'", "imc.weight_bits", "got 17"});
  Base c;
  c.fc.cell_bits = 9;
  expect_error(c.text(), {"node 'fc'", "imc.cell_bits", "got 9"});
  Base d;
  d.fc.dac_bits = 0;
  expect_error(d.text(), {"node 'fc'", "imc.dac_bits", "got 0"});
  Base e;
  e.g.input_quant.bits = 17;
  expect_error(e.text(), {"input", "quant.bits", "got 17"});
}

TEST(GraphLoaderErrors, ZeroSizes) {
  {
    Base b;
    b.conv.kernel_h = 0;
    expect_error(b.text(), {"node 'conv1'", "imc.kernel_h", "> 0"});
  }
  {
    Base b;
    b.conv.stride_w = 0;
    expect_error(b.text(), {"node 'conv1'", "imc.stride_w", "> 0"});
  }
  {
    Base b;
    b.conv.in_channels = 0;
    expect_error(b.text(), {"node 'conv1'", "imc.in_channels", "> 0"});
  }
  {
    Base b;
    b.fc.out_channels = 0;
    expect_error(b.text(), {"node 'fc'", "imc.out_channels", "> 0"});
  }
  {
    Base b;
    b.conv.array_rows = 0;
    expect_error(b.text(), {"node 'conv1'", "imc.array_rows", "> 0"});
  }
  {
    Base b;  // max_pool with kernel 0
    b.flat_node = NodeT{"pool", {"c1"}, "f", {2, 1, 1}, QuantT{0.5, 0, 4}, true, pool_op("max_pool", 0, 2, 0)};
    expect_error(b.text(), {"node 'pool' (#1)", "max_pool.kernel_h", "> 0"});
  }
  {
    Base b;  // avg_pool with stride 0
    b.flat_node = NodeT{"pool", {"c1"}, "f", {2, 1, 1}, QuantT{0.5, 0, 4}, true, pool_op("avg_pool", 2, 0, 0)};
    expect_error(b.text(), {"node 'pool' (#1)", "avg_pool.stride_h", "> 0"});
  }
}

TEST(GraphLoaderErrors, NegativeSizesAreTextParseErrors) {
  // uint32 fields cannot hold a negative number: the text parser rejects it with a position.
  Base b;
  std::string t = b.text();
  t.replace(t.find("kernel_h: 3"), 11, "kernel_h: -3");
  expect_error(t, {"not a valid imcsim text graph", "line"});
}

TEST(GraphLoaderErrors, TextSyntaxAndUnknownField) {
  expect_error("format_version: 1 input {", {"not a valid imcsim text graph", "line 1"});
  Base b;
  std::string t = b.text();
  t.replace(t.find("kernel_h: 3"), 11, "kernal_h: 3");
  expect_error(t, {"not a valid imcsim text graph", "kernal_h"});
}

TEST(GraphLoaderErrors, KernelDoesNotFitAndPadding) {
  Base b;
  b.conv.kernel_h = 5;  // 4 + 0 < 5
  expect_error(b.text(), {"node 'conv1'", "imc.kernel_h", "does not fit"});
  Base c;  // pooling padding must be smaller than its kernel
  c.flat_node = NodeT{"pool", {"c1"}, "f", {2, 2, 2}, QuantT{0.5, 0, 4}, true, pool_op("max_pool", 2, 2, 2)};
  expect_error(c.text(), {"node 'pool'", "max_pool.pad_h"});
}

TEST(GraphLoaderErrors, ChannelAlignedNeedsKernelWithinRows) {
  Base b;  // 3x3 = 9 taps > R = 4
  b.conv.row_tiling = "ROW_TILING_CHANNEL_ALIGNED";
  expect_error(b.text(), {"node 'conv1'", "imc.row_tiling", "9", "array_rows = 4"});
}

TEST(GraphLoaderErrors, AshiftOffset) {
  Base b;
  b.conv.ashift_offset = 3;  // Bx = 4: must be 0 or 8
  expect_error(b.text(), {"node 'conv1'", "imc.ashift_offset", "2^(Bx-1) = 8", "got 3"});
  b.conv.ashift_offset = 16;
  expect_error(b.text(), {"node 'conv1'", "imc.ashift_offset", "got 16"});
  b.conv.ashift_offset = 8;
  EXPECT_NO_THROW(parse_graph_text(b.text(), kSource));
}

TEST(GraphLoaderErrors, QuantRanges) {
  Base b;
  b.conv_node.output_quant.bits = 0;  // float output only for the last node
  expect_error(b.text(), {"node 'conv1'", "output_quant.bits", "last node"});
  Base c;
  c.conv_node.output_quant.scale = 0;
  c.flat_node.output_quant.scale = 0;
  expect_error(c.text(), {"node 'conv1'", "output_quant.scale"});
  Base d;
  d.conv_node.output_quant.zero_point = 16;
  expect_error(d.text(), {"node 'conv1'", "output_quant.zero_point", "[0, 15]", "got 16"});
  Base e;
  e.g.input_quant.zero_point = -1;
  expect_error(e.text(), {"input", "quant.zero_point", "got -1"});
}

// ---- references and shapes --------------------------------------------------------------------

TEST(GraphLoaderErrors, UnknownInputTensor) {
  Base b;
  b.flat_node.inputs = {"nope"};
  expect_error(b.text(), {"node 'flat' (#1)", "inputs", "'nope'"});
  Base c;  // a node may not read a later node's output
  c.conv_node.inputs = {"f"};
  expect_error(c.text(), {"node 'conv1' (#0)", "inputs", "'f'"});
}

TEST(GraphLoaderErrors, InputCount) {
  Base b;
  b.flat_node.inputs = {"c1", "c1"};
  expect_error(b.text(), {"node 'flat'", "inputs", "expected 1", "got 2"});
  Base c;
  c.flat_node.inputs = {};
  expect_error(c.text(), {"node 'flat'", "inputs", "got 0"});
}

// BUG (sim/graph/graph_loader.cc, convert_graph): node names may contain control characters
// and are embedded raw in every error message, so a name with a newline breaks the one-line
// error contract of the CLI (the message below spans two lines; expect_error checks for '\n').
// Fix: reject names with control characters in convert_graph, or escape them in messages.
TEST(GraphLoaderErrors, NodeNameWithNewlineKeepsTheMessageOnOneLine) {
  Base b;
  b.conv_node.name = "conv\\n1";  // text-format escape: the parsed name holds a newline
  // Rejected as a name; the message shows the newline escaped (expect_error checks one line).
  expect_error(b.text(), {"node 'conv\\x0a1' (#0)", "name", "control characters"});
}

TEST(GraphLoaderErrors, DuplicateNodeNamesAndTensorNames) {
  Base b;
  b.fc_node.name = "conv1";
  expect_error(b.text(), {"node 'conv1' (#2)", "name", "duplicate"});
  Base c;
  c.fc_node.output = "c1";
  expect_error(c.text(), {"node 'fc' (#2)", "output", "'c1'", "already used"});
  Base d;  // the graph input's name is taken too
  d.flat_node.output = "x";
  d.fc_node.inputs = {"x"};
  expect_error(d.text(), {"node 'flat'", "output", "'x'"});
}

TEST(GraphLoaderErrors, OutputShapeMismatch) {
  Base b;
  b.conv_node.output_shape = {2, 3, 3};
  expect_error(b.text(), {"node 'conv1'", "output_shape", "expected [2, 2, 2]", "got [2, 3, 3]"});
  Base c;
  c.flat_node.output_shape = {4};
  expect_error(c.text(), {"node 'flat'", "output_shape", "expected [8]"});
}

TEST(GraphLoaderErrors, ChannelAndShapeConsistency) {
  Base b;
  b.conv.in_channels = 2;
  b.conv.weights.resize(36, 0);
  expect_error(b.text(), {"node 'conv1'", "imc.in_channels", "does not match"});
  Base c;  // Linear on a C x H x W tensor
  c.fc_node.inputs = {"c1"};
  expect_error(c.text(), {"node 'fc'", "inputs", "Flatten"});
  Base d;  // Conv2d on a vector
  d.fc = d.conv;
  d.fc.in_channels = 8;
  d.fc_node.output_shape = {2, 1, 1};
  expect_error(d.text(), {"node 'fc'", "inputs", "C x H x W"});
}

TEST(GraphLoaderErrors, DigitalNodeQuantRules) {
  Base b;  // flatten must keep its input's quant
  b.flat_node.output_quant = QuantT{0.25, 0, 4};
  expect_error(b.text(), {"node 'flat'", "output_quant", "flatten"});
  Base c;  // max_pool works on codes
  c.flat_node = NodeT{"pool", {"c1"}, "p", {2, 1, 1}, QuantT{0.25, 0, 4}, true, pool_op("max_pool", 2, 2, 0)};
  expect_error(c.text(), {"node 'pool'", "output_quant", "max_pool"});
}

TEST(GraphLoaderErrors, AddShapes) {
  Base b;  // add of c1 (2x2x2) and the input x (1x4x4)
  b.flat_node = NodeT{"add", {"c1", "x"}, "a", {2, 2, 2}, QuantT{0.5, 0, 4}, true, "add {}"};
  expect_error(b.text(), {"node 'add'", "inputs", "equal shapes"});
}

TEST(GraphLoaderErrors, NumClasses) {
  Base b;
  b.g.num_classes = 4;
  expect_error(b.text(), {"num_classes", "4", "3 outputs"});
  Base c;
  c.g.num_classes = 0;
  expect_error(c.text(), {"num_classes"});
}

TEST(GraphLoaderErrors, PartialSumRange) {
  // 16-bit inputs applied 16 bits at a time, 8-bit cells, 200 rows in one tile:
  // 200 * 65535 * 255 = 3.34e9 >= 2^31.
  ImcT l;
  l.conv = false;
  l.in_channels = 200, l.out_channels = 1, l.weight_bits = 9, l.cell_bits = 8, l.dac_bits = 16;
  l.array_rows = 200;
  l.weights.assign(200, 0);
  GraphT g;
  g.input_shape = {1, 1, 200};
  g.input_quant = QuantT{1, 0, 16};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {200}, g.input_quant, true, "flatten {}"});
  g.nodes.push_back(NodeT{"big", {"f"}, "y", {1}, QuantT{1, 0, 0}, true, l.str()});
  g.num_classes = 1;
  expect_error(g.str(), {"node 'big'", "imc.array_rows", "32-bit"});
  // 128 rows: 128 * 65535 * 255 = 2.14e9 < 2^31 - 1: accepted.
  l.array_rows = 128;
  g.nodes[1].op = l.str();
  EXPECT_NO_THROW(parse_graph_text(g.str(), kSource));
}

// ---- binary container -------------------------------------------------------------------------

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// The .imcg container of scripts/imcsim_py/imcg_file.py around `payload`.
std::string container(const std::string& payload, uint32_t version = 1) {
  std::string out = "IMCGRAPH";
  put_le(out, version, 4);
  put_le(out, 0, 4);
  put_le(out, payload.size(), 8);
  out += payload;
  put_le(out, fnv1a64(payload), 8);
  return out;
}

std::string binary_payload(const std::string& text) {
  pb::Graph g;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &g));
  return g.SerializeAsString();
}

class Container : public ::testing::Test {
 protected:
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("imcsim_graph_loader_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path write(const std::string& name, const std::string& bytes) {
    const fs::path p = dir / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  // Expects load_graph(file) to throw GraphError naming the file and containing `part`.
  void expect_load_error(const fs::path& file, const std::string& part) {
    try {
      load_graph(file);
      ADD_FAILURE() << "no GraphError for " << file;
    } catch (const GraphError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
    }
  }
};

TEST_F(Container, ValidFileLoadsLikeTheText) {
  const Base b;
  const auto bytes = container(binary_payload(b.text()));
  const auto file = write("g.imcg", bytes);
  const Graph g = load_graph(file);
  EXPECT_EQ(g.source_file, file.string());
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(std::get<ImcLayer>(g.nodes[0].op).weights, b.conv.weights);
  // The text form loads from a file too (by suffix).
  const auto txt = write("g.imcg.txt", b.text());
  EXPECT_EQ(load_graph(txt).nodes.size(), 3u);
  const auto pbtxt = write("g.pbtxt", b.text());
  EXPECT_EQ(load_graph(pbtxt).nodes.size(), 3u);
}

TEST_F(Container, EmptyFileAndWrongMagic) {
  expect_load_error(write("empty.imcg", ""), "not an imcsim graph");
  std::string bytes = container(binary_payload(Base().text()));
  bytes[0] = 'X';
  expect_load_error(write("magic.imcg", bytes), "not an imcsim graph");
  // A text graph with the binary suffix is not a container.
  expect_load_error(write("text.imcg", Base().text()), "IMCGRAPH");
}

TEST_F(Container, UnsupportedContainerVersion) {
  expect_load_error(write("v2.imcg", container(binary_payload(Base().text()), 2)), "container version 2");
}

TEST_F(Container, TruncatedAnywhere) {
  const std::string bytes = container(binary_payload(Base().text()));
  const size_t payload = bytes.size() - 32;
  // Cuts in the header (< 24 bytes), the payload and the checksum.
  for (size_t cut : {size_t{1}, size_t{7}, size_t{8}, size_t{12}, size_t{16}, size_t{23}, size_t{24}, size_t{25},
                     24 + payload / 3, 24 + payload / 2, 24 + payload - 1, 24 + payload, 24 + payload + 1,
                     24 + payload + 7}) {
    SCOPED_TRACE(cut);
    const auto file = write("cut.imcg", bytes.substr(0, cut));
    expect_load_error(file, cut < 24 ? "not an imcsim graph" : "truncated");
  }
}

TEST_F(Container, FlippedPayloadByteIsAChecksumError) {
  const std::string bytes = container(binary_payload(Base().text()));
  const size_t payload = bytes.size() - 32;
  for (size_t off : {size_t{24}, 24 + payload / 2, 24 + payload - 1}) {
    std::string bad = bytes;
    bad[off] = static_cast<char>(bad[off] ^ 0x01);
    SCOPED_TRACE(off);
    expect_load_error(write("flip.imcg", bad), "checksum");
  }
  // A flipped checksum byte too.
  std::string bad = bytes;
  bad[bytes.size() - 3] = static_cast<char>(bad[bytes.size() - 3] ^ 0x80);
  expect_load_error(write("flipsum.imcg", bad), "checksum");
}

TEST_F(Container, TrailingGarbage) {
  expect_load_error(write("trail.imcg", container(binary_payload(Base().text())) + "garbage"), "padded");
  expect_load_error(write("trail0.imcg", container(binary_payload(Base().text())) + std::string(1, '\0')),
                    "padded");
}

TEST_F(Container, NonexistentFileAndDirectory) {
  expect_load_error(dir / "does_not_exist.imcg", "not found");
  fs::create_directories(dir / "adir.imcg");
  expect_load_error(dir / "adir.imcg", "not found");
}

TEST_F(Container, PayloadThatIsNotProtobuf) {
  // Valid container, matching checksum, but the payload is not a protobuf message.
  expect_load_error(write("junk.imcg", container(std::string("\xff\xff\xff\xff", 4))), "does not parse");
}

TEST_F(Container, ValidContainerInvalidGraphNamesFileNodeField) {
  Base b;
  b.conv.weights.pop_back();
  const auto file = write("invalid.imcg", container(binary_payload(b.text())));
  expect_load_error(file, "node 'conv1' (#0) imc.weights");
}

// BUG (sim/graph/graph_loader.cc, load_graph, the size check
//   `bytes.size() != kHeaderBytes + payload + kTrailerBytes`):
// the payload length L is read from the file and the sum is computed in uint64, so a header
// announcing L = 2^64 - 8 makes 24 + L + 8 wrap around to 24, the size of a header-only file.
// The check passes and fnv1a64(body, L) then reads ~2^64 bytes past the buffer (crash).
// Fix: check `payload > bytes.size() - kHeaderBytes - kTrailerBytes` (after ensuring
// bytes.size() >= kHeaderBytes + kTrailerBytes) instead of adding to the untrusted length.
// The statement runs in a child process so that the crash fails only this test.
TEST_F(Container, HugeAnnouncedLengthDoesNotWrapTheSizeCheck) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (size_t size : {size_t{24}, size_t{28}, size_t{31}}) {
    std::string bytes = "IMCGRAPH";
    put_le(bytes, 1, 4);
    put_le(bytes, 0, 4);
    put_le(bytes, static_cast<uint64_t>(size) - 32, 8);  // wraps: 2^64 - (32 - size)
    bytes.resize(size, '\0');
    const auto file = write("wrap" + std::to_string(size) + ".imcg", bytes);
    EXPECT_EXIT(
        {
          try {
            load_graph(file);
          } catch (const GraphError& e) {
            std::fprintf(stderr, "%s\n", e.what());
            std::exit(0);
          }
          std::exit(1);
        },
        ::testing::ExitedWithCode(0), "truncated")
        << "file of " << size << " bytes";
  }
}

}  // namespace
}  // namespace imcsim::graph
