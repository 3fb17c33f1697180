// Randomised bit-exactness: the C++ engine against the numpy reference on small random layers
// covering every weight encoding x DAC width x ADC (ideal, linear floor, linear half-away with
// signed codes, non-linear) x granularity x row tiling, plus layers with each analog
// non-ideality for a fixed seed (tests/data/random_layers/, written by make_random_layers.py;
// manifest.json lists each graph's combination and its non-idealities and seed). Every golden
// pair must match exactly: output codes, partial-sum / ADC-code / accumulator digests, their
// values at output position 0, logits and the predicted class. Every kernel path (reference,
// portable and, where the CPU has it, native: docs/fast_kernels.md) is checked, traced and
// untraced (the fused kernels), and all give the reference path's event counters exactly.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/config/arch_config.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"
#include "tests/support/engine_checks.h"
#include "tests/support/kernel_paths.h"

namespace fs = std::filesystem;
using namespace imcsim;
using nlohmann::json;

namespace {

const fs::path kDir = fs::path(IMCSIM_SOURCE_DIR) / "tests" / "data" / "random_layers";

json manifest() {
  std::ifstream in(kDir / "manifest.json");
  if (!in) return json::object();
  return json::parse(in);
}

struct Case {
  std::string file;
  json entry;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.file; }

std::vector<Case> cases() {
  std::vector<Case> out;
  const json m = manifest();
  if (!m.contains("cases")) return out;
  for (const auto& c : m["cases"]) out.push_back({c["file"].get<std::string>(), c});
  return out;
}

std::string case_name(const testing::TestParamInfo<Case>& info) {
  std::string n = fs::path(info.param.file).stem().string();
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

// The non-idealities of a case, through the arch-config parser (the same JSON section).
kernels::NonidealSpec nonideal_of(const json& entry) {
  if (entry["nonidealities"].is_null()) return {};
  return config::parse_arch_config(json{{"nonidealities", entry["nonidealities"]}}, "manifest.json").nonidealities;
}

TEST(RandomLayers, CorpusCoversEveryCombinationAndNonideality) {
  const json m = manifest();
  ASSERT_TRUE(m.contains("cases")) << "missing " << (kDir / "manifest.json");
  std::set<std::tuple<std::string, std::string, std::string, std::string, std::string>> combos;
  std::set<std::string> modes;
  for (const auto& c : m["cases"]) {
    ASSERT_TRUE(fs::exists(kDir / c["file"].get<std::string>())) << c["file"];
    if (c["nonidealities"].is_null()) {
      auto str = [&](const char* key) { return c[key].get<std::string>(); };
      combos.insert({str("encoding"), str("dac"), str("adc"), str("granularity"), str("tiling")});
    } else {
      const auto spec = nonideal_of(c);
      if (spec.noise()) modes.insert("noise");
      if (spec.variation()) modes.insert("variation");
      if (spec.transfer()) modes.insert("transfer");
      if (spec.stuck()) modes.insert("stuck");
      if (spec.noise() && spec.variation() && spec.transfer() && spec.stuck()) modes.insert("all");
    }
  }
  EXPECT_EQ(combos.size(), 4u * 3u * 4u * 3u * 2u);
  EXPECT_EQ(modes, (std::set<std::string>{"noise", "variation", "transfer", "stuck", "all"}));
}

// The kernel paths this machine runs.
std::vector<kernels::KernelPath> kernel_paths() { return test::all_kernel_paths(); }

using test::expect_same_counters;

class RandomLayerTest : public testing::TestWithParam<Case> {};

TEST_P(RandomLayerTest, EngineMatchesPythonReferenceBitExactly) {
  const graph::Graph g = graph::load_graph((kDir / GetParam().file).string());
  ASSERT_FALSE(g.golden.empty());
  const auto& entry = GetParam().entry;
  engine::EngineCounters reference_counters;
  for (const auto path : kernel_paths()) {
  SCOPED_TRACE(std::string("kernel path ") + kernels::kernel_path_name(path));
  engine::FunctionalEngine engine(g, nonideal_of(entry), entry["seed"].get<uint64_t>(), path);
  ASSERT_EQ(engine.kernel_path(), path);
  // The noise_affine cases are built for the nibble kernel's affine noise path: they must take it.
  if (path == kernels::KernelPath::kNative && GetParam().file.find("_noise_affine_") != std::string::npos)
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      if (std::holds_alternative<graph::ImcLayer>(g.nodes[i].op)) {
        EXPECT_STREQ(engine.layer_kernel(i), "fused-noise-affine") << g.nodes[i].name;
      }
    }
  engine::EngineCounters counters;
  for (size_t gi = 0; gi < g.golden.size(); ++gi) {
    const auto& gp = g.golden[gi];
    SCOPED_TRACE("golden pair " + std::to_string(gi) + " (image " + std::to_string(gp.dataset_index) + ")");
    std::vector<engine::NodeTrace> traces;
    const auto result = engine.infer(gp.input_codes, nullptr, &traces, nullptr, gp.dataset_index);
    ASSERT_EQ(gp.nodes.size(), g.nodes.size());
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const auto& want = gp.nodes[i];
      SCOPED_TRACE("node " + g.nodes[i].name);
      if (!g.nodes[i].output_quant.is_float()) {
        EXPECT_EQ(result.node_codes[i], want.output_codes);
      }
      if (!std::holds_alternative<graph::ImcLayer>(g.nodes[i].op)) continue;
      const auto& t = traces[i];
      EXPECT_EQ(t.psum.count(), want.psum_count);
      EXPECT_EQ(t.psums_position0, want.psums_position0) << "partial sums at output position 0";
      EXPECT_EQ(t.adc_codes_position0, want.adc_codes_position0) << "ADC codes at output position 0";
      EXPECT_EQ(t.acc_position0, want.acc_position0) << "accumulators at output position 0";
      EXPECT_EQ(t.psum.value(), want.psum_digest) << "partial-sum digest";
      EXPECT_EQ(t.adc_code.value(), want.adc_code_digest) << "ADC code digest";
      EXPECT_EQ(t.acc.value(), want.acc_digest) << "accumulator digest";
    }
    ASSERT_EQ(result.output_values.size(), gp.logits.size());
    for (size_t c = 0; c < gp.logits.size(); ++c)
      EXPECT_EQ(result.output_values[c], gp.logits[c]) << "logit " << c << " (float64, exact)";
    EXPECT_EQ(result.predicted_class, gp.predicted_class);
    // The same image without traces takes the fast paths (lookup tables, vectorised noise,
    // fused kernels), with counters, and on two threads per image.
    const auto fast = engine.infer(gp.input_codes, &counters, nullptr, nullptr, gp.dataset_index);
    EXPECT_EQ(fast.node_codes, result.node_codes);
    EXPECT_EQ(fast.output_values, result.output_values);
    engine.set_image_threads(2);
    const auto split = engine.infer(gp.input_codes, nullptr, nullptr, nullptr, gp.dataset_index);
    engine.set_image_threads(1);
    EXPECT_EQ(split.node_codes, result.node_codes);
    EXPECT_EQ(split.output_values, result.output_values);
  }
  if (path == kernels::KernelPath::kReference) reference_counters = counters;
  else expect_same_counters(counters, reference_counters);
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, RandomLayerTest, testing::ValuesIn(cases()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RandomLayerTest);

}  // namespace
