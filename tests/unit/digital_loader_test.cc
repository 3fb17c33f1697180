// Graph loader on the digital-unit operations: valid corpus graphs (tests/data/digital_ops/)
// with exactly one field broken must be rejected with a one-line GraphError naming the source,
// the node and the field; also the kernels' integer square root and the digital cost counts.
#include <gtest/gtest.h>
#include <google/protobuf/text_format.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>

#include "models/digital/ops.h"
#include "sim/graph/graph_loader.h"
#include "sim/graph/imcsim_graph.pb.h"
#include "sim/mapping/schedule.h"

namespace imcsim::graph {
namespace {

namespace fs = std::filesystem;
constexpr const char* kSource = "bad_digital.imcg.txt";

// The protobuf payload of a corpus graph (the .imcg container: 24-byte header, payload, 8-byte checksum).
pb::Graph corpus_graph(const std::string& name) {
  const fs::path file = fs::path(IMCSIM_SOURCE_DIR) / "tests" / "data" / "digital_ops" / (name + ".imcg");
  std::ifstream f(file, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  pb::Graph g;
  EXPECT_GT(bytes.size(), 32u) << file;
  EXPECT_TRUE(g.ParseFromArray(bytes.data() + 24, static_cast<int>(bytes.size() - 32))) << file;
  return g;
}

pb::Node* node(pb::Graph& g, const std::string& name) {
  for (auto& n : *g.mutable_nodes())
    if (n.name() == name) return &n;
  ADD_FAILURE() << "no node " << name;
  return nullptr;
}

void expect_error(const std::string& graph, const std::function<void(pb::Graph&)>& breakit,
                  std::initializer_list<std::string> parts) {
  pb::Graph g = corpus_graph(graph);
  g.clear_golden();
  breakit(g);
  std::string text;
  google::protobuf::TextFormat::PrintToString(g, &text);
  try {
    parse_graph_text(text, kSource);
    ADD_FAILURE() << "no GraphError";
  } catch (const GraphError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(std::string(kSource) + ": ", 0), 0u) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(DigitalLoader, CorpusGraphsAreValid) {
  for (const char* name : {"attention", "concat", "dw_conv", "ties"}) {
    pb::Graph g = corpus_graph(name);
    std::string text;
    google::protobuf::TextFormat::PrintToString(g, &text);
    EXPECT_NO_THROW(parse_graph_text(text, kSource)) << name;
  }
}

TEST(DigitalLoader, SoftmaxTable) {
  expect_error("attention", [](pb::Graph& g) { node(g, "softmax")->mutable_softmax()->mutable_exp_table()->RemoveLast(); },
               {"node 'softmax'", "softmax.exp_table", "expected 2^8 = 256 entries", "got 255"});
  expect_error("attention", [](pb::Graph& g) { node(g, "softmax")->mutable_softmax()->set_exp_table(0, 0); },
               {"node 'softmax'", "softmax.exp_table[0]", "> 0"});
  expect_error("attention", [](pb::Graph& g) { node(g, "softmax")->mutable_softmax()->set_exp_table(7, -1); },
               {"node 'softmax'", "softmax.exp_table[7]", "[0, 2^31)"});
}

TEST(DigitalLoader, LutTable) {
  expect_error("attention", [](pb::Graph& g) { node(g, "gelu")->mutable_lut()->add_table(0); },
               {"node 'gelu'", "lut.table", "expected 2^8 = 256", "got 257"});
  expect_error("attention", [](pb::Graph& g) { node(g, "gelu")->mutable_lut()->set_table(3, 256); },
               {"node 'gelu'", "lut.table[3]", "[0, 255]"});
  expect_error("attention", [](pb::Graph& g) { node(g, "gelu")->mutable_output_quant()->set_bits(4); },
               {"node 'gelu'", "lut.table[", "[0, 15]"});
}

TEST(DigitalLoader, LayerNorm) {
  expect_error("attention", [](pb::Graph& g) { node(g, "ln")->mutable_layer_norm()->mutable_gamma()->RemoveLast(); },
               {"node 'ln'", "layer_norm.gamma", "expected 12 values", "got 11"});
  expect_error("attention", [](pb::Graph& g) { node(g, "ln")->mutable_layer_norm()->set_beta(2, 1.0 / 0.0); },
               {"node 'ln'", "layer_norm.beta[2]", "finite"});
  expect_error("attention", [](pb::Graph& g) { node(g, "ln")->mutable_layer_norm()->set_eps_int(uint64_t{1} << 62); },
               {"node 'ln'", "layer_norm", "2^62"});
}

TEST(DigitalLoader, Attention) {
  expect_error("attention", [](pb::Graph& g) { node(g, "scores")->mutable_attention_scores()->set_heads(5); },
               {"node 'scores'", "attention_scores.heads", "5 heads must divide the 12 features"});
  expect_error("attention", [](pb::Graph& g) { node(g, "scores")->mutable_attention_scores()->set_scale(0.0); },
               {"node 'scores'", "attention_scores.scale", "> 0"});
  expect_error("attention", [](pb::Graph& g) { node(g, "scores")->mutable_inputs()->RemoveLast(); },
               {"node 'scores'", "inputs", "expected 2 input tensor(s), got 1"});
  expect_error("attention", [](pb::Graph& g) { node(g, "scores")->set_output_shape(0, 4); },
               {"node 'scores'", "output_shape", "expected [3, 8, 8]", "got [4, 8, 8]"});
  expect_error("attention", [](pb::Graph& g) { node(g, "context")->set_inputs(0, "q"); },
               {"node 'context'", "inputs[0]", "[heads, T, T2]", "[8, 12]"});
  expect_error("attention", [](pb::Graph& g) { node(g, "context")->set_inputs(1, "scores"); },
               {"node 'context'", "inputs[1]", "tokens [8, D]"});
}

TEST(DigitalLoader, DigitalLayers) {
  expect_error("attention", [](pb::Graph& g) { node(g, "q")->mutable_digital()->mutable_weights()->RemoveLast(); },
               {"node 'q'", "digital.weights", "expected N*(K/groups) = 12*12 = 144 values", "got 143"});
  expect_error("attention", [](pb::Graph& g) { node(g, "q")->mutable_digital()->set_weights(5, 128); },
               {"node 'q'", "digital.weights[5]", "outside [-128, 127]"});
  expect_error("attention", [](pb::Graph& g) { node(g, "q")->mutable_digital()->set_in_channels(13); },
               {"node 'q'", "digital.in_channels", "13 does not match the input's 12 features"});
  expect_error("dw_conv", [](pb::Graph& g) { node(g, "dw2")->mutable_digital()->set_groups(3); },
               {"node 'dw2'", "digital.groups", "3 groups must divide"});
  expect_error("dw_conv", [](pb::Graph& g) { node(g, "fc")->mutable_digital()->set_groups(2); },
               {"node 'fc'", "digital.groups", "1 group"});
  expect_error("dw_conv", [](pb::Graph& g) { node(g, "conv1")->mutable_digital()->mutable_weight_scale()->Add(1.0); },
               {"node 'conv1'", "digital.weight_scale", "expected 1 (per tensor) or 4"});
  expect_error("attention", [](pb::Graph& g) { node(g, "ffn1")->mutable_imc()->set_in_channels(11); },
               {"node 'ffn1'", "imc.in_channels", "11 does not match the input's 12 features"});
}

TEST(DigitalLoader, ShapesOfMovesAndPools) {
  expect_error("attention", [](pb::Graph& g) { node(g, "tok")->mutable_to_tokens()->set_patch_w(5); },
               {"node 'tok'", "to_tokens.patch_h", "patch 1x5 must divide"});
  expect_error("attention", [](pb::Graph& g) { node(g, "tok")->mutable_output_quant()->set_zero_point(3); },
               {"node 'tok'", "output_quant", "to_tokens"});
  expect_error("dw_conv", [](pb::Graph& g) {
    pb::Node* n = node(g, "gap");
    n->mutable_concat();
    n->add_inputs("conv1");
  }, {"node 'gap'", "inputs[1]", "differ only in the first dimension", "[4, 4, 4]", "[4, 7, 8]"});
  expect_error("concat", [](pb::Graph& g) { node(g, "cat")->mutable_inputs()->RemoveLast(); node(g, "cat")->mutable_inputs()->RemoveLast(); },
               {"node 'cat'", "inputs", "2 or more"});
  expect_error("attention", [](pb::Graph& g) { node(g, "pos")->mutable_add_constant()->mutable_values()->RemoveLast(); },
               {"node 'pos'", "add_constant.values", "expected 192 values"});
  // [heads, T, T2] is pooled like C x H x W: one value per head.
  expect_error("attention", [](pb::Graph& g) { node(g, "mean")->set_inputs(0, "scores"); },
               {"node 'mean'", "output_shape", "expected [3]", "got [12]"});
}

TEST(DigitalKernels, IntegerSquareRootIsExact) {
  using kernels::digital::isqrt;
  for (uint64_t v : {0ull, 1ull, 2ull, 3ull, 4ull, 15ull, 16ull, 17ull, 99ull, 100ull}) {
    const uint64_t r = isqrt(v);
    EXPECT_LE(r * r, v);
    EXPECT_GT((r + 1) * (r + 1), v);
  }
  // Around perfect squares near 2^62, where a double estimate is off by one.
  for (uint64_t r : {3037000499ull, 2147483647ull, 2147483648ull, 1518500249ull}) {
    EXPECT_EQ(isqrt(r * r), r);
    EXPECT_EQ(isqrt(r * r - 1), r - 1);
    EXPECT_EQ(isqrt(r * r + 2 * r), r);
  }
}

TEST(DigitalCost, OpsAndMacsOfTheAttentionGraph) {
  pb::Graph p = corpus_graph("attention");
  std::string text;
  google::protobuf::TextFormat::PrintToString(p, &text);
  const Graph g = parse_graph_text(text, kSource);
  auto work = [&](const std::string& name) {
    for (const auto& n : g.nodes)
      if (n.name == name) return mapping::digital_node_work(g, n);
    ADD_FAILURE() << name;
    return mapping::DigitalWork{};
  };
  // q: 8 tokens x 12 x 12 MACs; ops 2 per MAC + 4 per output.
  EXPECT_EQ(work("q").macs, 8u * 12 * 12);
  EXPECT_EQ(work("q").ops, 2u * 8 * 12 * 12 + 4u * 8 * 12);
  // scores: [3][8][8] outputs of 4 terms; context: [8][12] outputs of 8 terms.
  EXPECT_EQ(work("scores").macs, 3u * 8 * 8 * 4);
  EXPECT_EQ(work("context").macs, 8u * 12 * 8);
  EXPECT_EQ(work("softmax").ops, 5u * 3 * 8 * 8);
  EXPECT_EQ(work("ln").ops, 8u * (10 * 12 + 64));
  EXPECT_EQ(work("gelu").ops, 8u * 24);
  EXPECT_EQ(work("tok").ops, 0u);
  EXPECT_EQ(work("mean").ops, 8u * 12 + 2 * 12);
}

}  // namespace
}  // namespace imcsim::graph
