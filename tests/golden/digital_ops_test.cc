// Digital-unit operations (docs/SEMANTICS.md "Digital nodes"): the C++ engine against the numpy
// reference, bit-exactly, on the corpus tests/data/digital_ops/ (make_digital_ops.py): digital and
// depthwise convs, digital linear layers (first / last layers kept digital), global average
// pooling, concatenation, tokens, attention scores and context, softmax, layer norm, GELU table,
// constant add, IMC linear layers on tokens; random images plus constant, all-zero and all-255
// images (equal softmax scores, constant layer-norm rows), round-half-even ties and saturation.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"

namespace fs = std::filesystem;
using namespace imcsim;

namespace {

const fs::path kDir = fs::path(IMCSIM_SOURCE_DIR) / "tests" / "data" / "digital_ops";

std::vector<std::string> corpus() {
  std::vector<std::string> files;
  if (!fs::exists(kDir)) return files;
  for (const auto& e : fs::directory_iterator(kDir))
    if (e.path().extension() == ".imcg") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

std::string test_name(const testing::TestParamInfo<std::string>& info) { return fs::path(info.param).stem().string(); }

TEST(DigitalOpsCorpus, CoversEveryDigitalOperation) {
  std::set<std::string> ops;
  bool token_imc = false, depthwise = false;
  for (const auto& file : corpus()) {
    const auto g = graph::load_graph(file);
    for (const auto& n : g.nodes) {
      ops.insert(graph::op_name(n.op));
      if (const auto* l = std::get_if<graph::ImcLayer>(&n.op)) token_imc |= l->tokens;
      if (const auto* d = std::get_if<graph::DigitalLayer>(&n.op)) depthwise |= d->groups == d->in_channels && d->groups > 1;
    }
  }
  for (const char* op : {"digital_conv2d", "digital_conv2d_grouped", "digital_linear", "global_avg_pool", "concat",
                         "to_tokens", "attention_scores", "softmax", "attention_context", "layer_norm", "lut",
                         "add_constant", "add", "avg_pool", "max_pool", "linear"})
    EXPECT_TRUE(ops.count(op)) << op << " is not in the corpus";
  EXPECT_TRUE(token_imc) << "no IMC linear layer on tokens";
  EXPECT_TRUE(depthwise) << "no depthwise conv";
}

class DigitalOpsGolden : public testing::TestWithParam<std::string> {};

TEST_P(DigitalOpsGolden, EngineMatchesReferenceBitExactly) {
  const graph::Graph g = graph::load_graph(GetParam());
  ASSERT_GE(g.golden.size(), 4u);
  const engine::FunctionalEngine engine(g);
  for (size_t gi = 0; gi < g.golden.size(); ++gi) {
    const auto& gp = g.golden[gi];
    SCOPED_TRACE("golden pair " + std::to_string(gi));
    std::vector<engine::NodeTrace> traces;
    const auto r = engine.infer(gp.input_codes, nullptr, &traces);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      SCOPED_TRACE("node " + g.nodes[i].name);
      if (!g.nodes[i].output_quant.is_float()) {
        ASSERT_EQ(r.node_codes[i].size(), gp.nodes[i].output_codes.size());
        EXPECT_EQ(r.node_codes[i], gp.nodes[i].output_codes);
      }
      if (std::holds_alternative<graph::ImcLayer>(g.nodes[i].op)) {
        EXPECT_EQ(traces[i].psum.count(), gp.nodes[i].psum_count);
        EXPECT_EQ(traces[i].psum.value(), gp.nodes[i].psum_digest);
        EXPECT_EQ(traces[i].adc_code.value(), gp.nodes[i].adc_code_digest);
        EXPECT_EQ(traces[i].acc.value(), gp.nodes[i].acc_digest);
      }
    }
    ASSERT_EQ(r.output_values.size(), gp.logits.size());
    for (size_t c = 0; c < gp.logits.size(); ++c) EXPECT_EQ(r.output_values[c], gp.logits[c]) << "output " << c;
    EXPECT_EQ(r.predicted_class, gp.predicted_class);
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, DigitalOpsGolden, testing::ValuesIn(corpus()), test_name);

}  // namespace
