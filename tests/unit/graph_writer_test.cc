// Graph writer (sim/graph/graph_writer.h): load(save(load(x))) == load(x), field for field
// (doubles bit for bit), for every bundled workload and for a hand-made graph using every op,
// encoding, tiling, ADC kind and granularity, with golden pairs; binary container and text
// format; writing is idempotent and atomic.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sim/engine/calibration.h"
#include "sim/graph/graph_loader.h"
#include "sim/graph/graph_writer.h"
#include "tests/support/cli_runner.h"
#include "tests/unit/graph_text.h"

namespace imcsim::graph {
namespace {

namespace fs = std::filesystem;
using namespace imcsim::testing_graphs;

const fs::path kSourceDir = IMCSIM_SOURCE_DIR;

void expect_same(double a, double b, const std::string& what) {
  EXPECT_EQ(std::bit_cast<uint64_t>(a), std::bit_cast<uint64_t>(b)) << what << ": " << a << " vs " << b;
}
void expect_same(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) expect_same(a[i], b[i], what + "[" + std::to_string(i) + "]");
}
void expect_same(const Quant& a, const Quant& b, const std::string& what) {
  expect_same(a.scale, b.scale, what + ".scale");
  EXPECT_EQ(a.zero_point, b.zero_point) << what;
  EXPECT_EQ(a.bits, b.bits) << what;
}

void expect_same(const kernels::AdcSpec& a, const kernels::AdcSpec& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.bits, b.bits);
  EXPECT_EQ(a.frac_bits, b.frac_bits);
  EXPECT_EQ(a.rounding, b.rounding);
  EXPECT_EQ(a.signed_codes, b.signed_codes);
  EXPECT_EQ(a.granularity, b.granularity);
  EXPECT_EQ(a.step_fx, b.step_fx);
  EXPECT_EQ(a.centre_fx, b.centre_fx);
  EXPECT_EQ(a.thresholds_fx, b.thresholds_fx);
  EXPECT_EQ(a.levels_fx, b.levels_fx);
}

template <typename W>
void expect_same_window(const W& a, const W& b) {
  EXPECT_EQ(a.kernel_h, b.kernel_h);
  EXPECT_EQ(a.kernel_w, b.kernel_w);
  EXPECT_EQ(a.stride_h, b.stride_h);
  EXPECT_EQ(a.stride_w, b.stride_w);
  EXPECT_EQ(a.pad_h, b.pad_h);
  EXPECT_EQ(a.pad_w, b.pad_w);
}

// Every field of the in-memory graph except source_file (the path it was read from).
void expect_same(const Graph& a, const Graph& b) {
  EXPECT_EQ(a.name, b.name);
  const Provenance &p = a.provenance, &q = b.provenance;
  EXPECT_EQ(p.exporter, q.exporter);
  EXPECT_EQ(p.command, q.command);
  EXPECT_EQ(p.method, q.method);
  EXPECT_EQ(p.method_settings_json, q.method_settings_json);
  EXPECT_EQ(p.dataset, q.dataset);
  EXPECT_EQ(p.created_utc, q.created_utc);
  EXPECT_EQ(p.torch_version, q.torch_version);
  EXPECT_EQ(p.seed, q.seed);
  expect_same(p.float_accuracy, q.float_accuracy, "float_accuracy");
  expect_same(p.fake_quant_accuracy, q.fake_quant_accuracy, "fake_quant_accuracy");
  expect_same(p.reference_accuracy, q.reference_accuracy, "reference_accuracy");
  EXPECT_EQ(p.reference_images, q.reference_images);

  EXPECT_EQ(a.input.tensor, b.input.tensor);
  EXPECT_EQ(a.input.shape, b.input.shape);
  EXPECT_EQ(a.input.dataset_format, b.input.dataset_format);
  expect_same(a.input.pixel_scale, b.input.pixel_scale, "pixel_scale");
  expect_same(a.input.mean, b.input.mean, "mean");
  expect_same(a.input.std, b.input.std, "std");
  expect_same(a.input.quant, b.input.quant, "input.quant");

  ASSERT_EQ(a.nodes.size(), b.nodes.size());
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    const Node &m = a.nodes[i], &n = b.nodes[i];
    SCOPED_TRACE("node " + m.name);
    EXPECT_EQ(m.name, n.name);
    EXPECT_EQ(m.inputs, n.inputs);
    EXPECT_EQ(m.output_shape, n.output_shape);
    expect_same(m.output_quant, n.output_quant, "output_quant");
    ASSERT_EQ(m.op.index(), n.op.index());
    if (const auto* x = std::get_if<ImcLayer>(&m.op)) {
      const auto& y = std::get<ImcLayer>(n.op);
      EXPECT_EQ(x->is_conv, y.is_conv);
      EXPECT_EQ(x->in_channels, y.in_channels);
      EXPECT_EQ(x->out_channels, y.out_channels);
      EXPECT_EQ(x->kernel_h, y.kernel_h);
      EXPECT_EQ(x->kernel_w, y.kernel_w);
      EXPECT_EQ(x->stride_h, y.stride_h);
      EXPECT_EQ(x->stride_w, y.stride_w);
      EXPECT_EQ(x->pad_h, y.pad_h);
      EXPECT_EQ(x->pad_w, y.pad_w);
      EXPECT_EQ(x->weight_bits, y.weight_bits);
      EXPECT_EQ(x->cell_bits, y.cell_bits);
      EXPECT_EQ(x->dac_bits, y.dac_bits);
      EXPECT_EQ(x->encoding, y.encoding);
      EXPECT_EQ(x->row_tiling, y.row_tiling);
      EXPECT_EQ(x->array_rows, y.array_rows);
      EXPECT_EQ(x->array_cols, y.array_cols);
      EXPECT_EQ(x->weights, y.weights);
      expect_same(x->weight_scale, y.weight_scale, "weight_scale");
      expect_same(x->psum_scale, y.psum_scale, "psum_scale");
      expect_same(x->bias, y.bias, "bias");
      EXPECT_EQ(x->ashift_offset, y.ashift_offset);
      expect_same(x->adc, y.adc);
      EXPECT_EQ(x->activation, y.activation);
    } else if (const auto* mp = std::get_if<MaxPool>(&m.op)) {
      expect_same_window(*mp, std::get<MaxPool>(n.op));
    } else if (const auto* ap = std::get_if<AvgPool>(&m.op)) {
      expect_same_window(*ap, std::get<AvgPool>(n.op));
    } else if (const auto* ad = std::get_if<Add>(&m.op)) {
      EXPECT_EQ(ad->activation, std::get<Add>(n.op).activation);
    }
  }
  EXPECT_EQ(a.num_classes, b.num_classes);
  EXPECT_EQ(a.shape_only, b.shape_only);

  ASSERT_EQ(a.golden.size(), b.golden.size());
  for (size_t i = 0; i < a.golden.size(); ++i) {
    const GoldenPair &g = a.golden[i], &h = b.golden[i];
    SCOPED_TRACE("golden " + std::to_string(i));
    EXPECT_EQ(g.dataset_index, h.dataset_index);
    EXPECT_EQ(g.label, h.label);
    EXPECT_EQ(g.input_codes, h.input_codes);
    expect_same(g.logits, h.logits, "logits");
    EXPECT_EQ(g.predicted_class, h.predicted_class);
    ASSERT_EQ(g.nodes.size(), h.nodes.size());
    for (size_t k = 0; k < g.nodes.size(); ++k) {
      const NodeGolden &x = g.nodes[k], &y = h.nodes[k];
      EXPECT_EQ(x.node, y.node);
      EXPECT_EQ(x.output_codes, y.output_codes);
      EXPECT_EQ(x.psum_count, y.psum_count);
      EXPECT_EQ(x.psum_digest, y.psum_digest);
      EXPECT_EQ(x.adc_code_digest, y.adc_code_digest);
      EXPECT_EQ(x.acc_digest, y.acc_digest);
      EXPECT_EQ(x.psums_position0, y.psums_position0);
      EXPECT_EQ(x.adc_codes_position0, y.adc_codes_position0);
      EXPECT_EQ(x.acc_position0, y.acc_position0);
    }
  }
}

class GraphWriter : public testing_support::TempDirTest {
 protected:
  // load(save(g)) == g for the binary container and the text format; saving is idempotent.
  void round_trip(const Graph& g) {
    const fs::path bin = dir / "sub" / "g.imcg", txt = dir / "g.imcg.txt";
    save_graph(g, bin);
    const Graph b = load_graph(bin);
    {
      SCOPED_TRACE("binary");
      expect_same(g, b);
    }
    EXPECT_EQ(serialize_graph(b), serialize_graph(g));
    save_graph(g, txt);
    const Graph t = load_graph(txt);
    {
      SCOPED_TRACE("text");
      expect_same(g, t);
    }
    EXPECT_EQ(graph_to_text(t), graph_to_text(g));
    // No temporary files left behind.
    size_t files = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) files += e.is_regular_file();
    EXPECT_EQ(files, 2u);
  }
};

TEST_F(GraphWriter, EveryBundledWorkloadRoundTrips) {
  size_t n = 0, shape_only = 0;
  for (const auto& e : fs::recursive_directory_iterator(kSourceDir / "workloads")) {
    if (e.path().extension() != ".imcg") continue;
    SCOPED_TRACE(e.path().string());
    const Graph g = load_graph(e.path());
    ASSERT_TRUE(g.shape_only || !g.golden.empty());
    round_trip(g);
    ++n;
    shape_only += g.shape_only;
  }
  EXPECT_GE(n, 5u);
  EXPECT_GE(shape_only, 1u) << "the shape-only workloads round-trip too";
}

// Every op, encoding, tiling, ADC kind and granularity; a node named like the input tensor;
// -0.0 in a bias; per-column psum scales; float logits; a golden pair from the engine.
Graph every_op_graph() {
  GraphT g;
  g.name = "every_op";
  g.input_tensor = "x";
  g.input_shape = {1, 6, 6};
  g.input_quant = {0.02, 3, 8};
  g.mean = 0.25;
  g.std = 0.5;

  ImcT conv;
  conv.in_channels = 1;
  conv.out_channels = 2;
  conv.kernel_h = conv.kernel_w = 3;
  conv.pad_h = conv.pad_w = 1;
  conv.weight_bits = 4;
  conv.cell_bits = 2;
  conv.dac_bits = 2;
  conv.encoding = "WEIGHT_ENCODING_DIFFERENTIAL_ANALOG";
  conv.row_tiling = "ROW_TILING_CHANNEL_ALIGNED";
  conv.array_rows = 16;
  conv.weights = {1, -2, 3, -4, 5, -6, 7, -7, 0, 0, 1, 2, 3, 4, 5, 6, 7, -1};
  conv.weight_scale = {0.125, 0.0625};
  conv.psum_scale = {0.5, 2.0};
  conv.bias = {-0.0, 1.5};
  conv.ashift_offset = 128;
  conv.activation = "ACTIVATION_RELU";
  conv.adc.kind = "KIND_NONLINEAR";
  conv.adc.bits = 2;
  conv.adc.frac_bits = 4;
  conv.adc.granularity = "GRANULARITY_SLICE_TILE_COLUMN";  // 1 tile x 2 slices x 2 columns
  conv.adc.thresholds_fx = {-40, 0, 40, -30, 1, 50, -20, 2, 60, -10, 3, 70};
  conv.adc.levels_fx = {-60, -20, 20, 60, -50, -10, 30, 70, -40, 0, 40, 80, -30, 10, 50, 90};
  const QuantT q{0.05, 0, 8};
  g.nodes.push_back({"x", {"x"}, "c", {2, 6, 6}, q, true, conv.str()});
  g.nodes.push_back({"pool", {"x:out"}, "p", {2, 3, 3}, q, true, pool_op("max_pool", 2, 2, 0)});
  g.nodes.push_back({"avg", {"x:out"}, "a", {2, 3, 3}, {0.04, 1, 7}, true, pool_op("avg_pool", 3, 2, 1)});
  g.nodes.push_back({"sum", {"p", "a"}, "s", {2, 3, 3}, {0.1, 0, 8}, true, "add { activation: ACTIVATION_RELU }"});
  g.nodes.push_back({"r", {"s"}, "r", {2, 3, 3}, {0.1, 0, 6}, true, "relu {}"});
  g.nodes.push_back({"flat", {"r"}, "f", {18}, {0.1, 0, 6}, true, "flatten {}"});
  ImcT fc;
  fc.conv = false;
  fc.in_channels = 18;
  fc.out_channels = 3;
  fc.weight_bits = 3;
  fc.cell_bits = 1;
  fc.dac_bits = 3;
  fc.encoding = "WEIGHT_ENCODING_TWOS_COMPLEMENT";
  fc.array_rows = 8;  // 3 row tiles
  for (int i = 0; i < 54; ++i) fc.weights.push_back(i % 8 - 4);
  fc.weight_scale = {0.3};  // per tensor: expanded to 3 on load
  fc.adc.kind = "KIND_LINEAR";
  fc.adc.bits = 5;
  fc.adc.frac_bits = 2;
  fc.adc.rounding = "ROUNDING_FLOOR";
  fc.adc.signed_codes = true;
  fc.adc.granularity = "GRANULARITY_COLUMN";
  fc.adc.step_fx = {3, 4, 5};
  fc.adc.centre_fx = {-2, 0, 7};
  g.nodes.push_back({"fc", {"f"}, "logits", {3}, {1.0, 0, 0}, true, fc.str()});
  g.num_classes = 3;
  // Rename the conv's output tensor so that it collides with nothing but is not the node name.
  g.nodes[0].output = "x:out";
  std::string text = g.str();
  text += "provenance { exporter: \"hand\" command: \"make \\\"it\\\"\\n twice\" seed: 42 method: \"m\" "
          "method_settings_json: \"{\\\"a\\\": 1}\" dataset: \"d\" float_accuracy: 0.1 "
          "fake_quant_accuracy: 0.30000000000000004 reference_accuracy: 1e-300 reference_images: 7 "
          "created_utc: \"now\" torch_version: \"t\" }\n";
  Graph graph = parse_graph_text(text, "every_op.imcg.txt");
  std::mt19937 rng(3);
  for (uint32_t k = 0; k < 2; ++k) {
    GoldenPair gp;
    gp.dataset_index = 10 + k;
    gp.label = k;
    for (int i = 0; i < 36; ++i) gp.input_codes.push_back(static_cast<int32_t>(rng() % 256));
    graph.golden.push_back(gp);
  }
  calibration::regenerate_goldens(graph);
  return graph;
}

TEST_F(GraphWriter, EveryOpGraphRoundTrips) {
  const Graph g = every_op_graph();
  ASSERT_EQ(g.golden.size(), 2u);
  ASSERT_EQ(g.golden[0].nodes.size(), 7u);
  EXPECT_TRUE(std::signbit(std::get<ImcLayer>(g.nodes[0].op).bias[0]));
  round_trip(g);
  // The node named like the graph input gets a distinct output tensor name.
  const std::string text = graph_to_text(g);
  EXPECT_NE(text.find("output: \"x:out1\""), std::string::npos) << text.substr(0, 2000);
  // Goldens written by the engine verify against the engine after the round trip.
  const Graph b = load_graph([&] {
    save_graph(g, dir / "again.imcg");
    return dir / "again.imcg";
  }());
  Graph regen = b;
  calibration::regenerate_goldens(regen);
  expect_same(regen, b);
}

TEST_F(GraphWriter, ContainerLayoutAndErrors) {
  const Graph g = load_graph(kSourceDir / "tests" / "data" / "graphs" / "tiny_fmnist.imcg.txt");
  const std::string bytes = serialize_graph(g);
  ASSERT_GT(bytes.size(), 32u);
  EXPECT_EQ(bytes.substr(0, 8), "IMCGRAPH");
  EXPECT_EQ(bytes[8], 1);
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t{static_cast<unsigned char>(bytes[16 + i])} << (8 * i);
  EXPECT_EQ(len, bytes.size() - 32);
  // Unwritable target: a clear error, nothing left behind.
  std::ofstream(dir / "file") << "x";
  EXPECT_THROW(save_graph(g, dir / "file" / "g.imcg"), std::runtime_error);
}

}  // namespace
}  // namespace imcsim::graph
