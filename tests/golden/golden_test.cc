// Golden tests: the C++ engine against the Python reference (scripts/imcsim_py/reference.py),
// bit-exactly, on every bundled workload. Each .imcg stores golden pairs computed by the
// reference: output codes of every node; digests of partial sums, ADC codes and accumulators
// of every IMC node plus their full values at output position 0; the final logits (float64,
// compared exactly). The dataset test re-measures the whole test set and requires exactly the
// accuracy the reference measured at export time (and, for graphs exported from PyTorch by
// scripts/train_zoo.py, the accuracy PyTorch measured).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "sim/data/idx_dataset.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"
#include "tests/support/kernel_paths.h"

namespace fs = std::filesystem;
using namespace imcsim;

namespace {

std::vector<std::string> bundled_graphs() {
  std::vector<std::string> files;
  const fs::path dir = fs::path(IMCSIM_SOURCE_DIR) / "workloads";
  if (!fs::exists(dir)) return files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".imcg") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

std::string test_name(const testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).stem().string();
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

class GoldenTest : public testing::TestWithParam<std::string> {};

TEST(GoldenWorkloads, AtLeastTwoAdcSettingsAreCovered) {
  // The golden suite must exercise more than one ADC configuration.
  std::set<std::string> settings;
  for (const auto& file : bundled_graphs()) {
    const auto g = graph::load_graph(file);
    if (g.shape_only) continue;  // architecture-only workloads carry no values
    ASSERT_FALSE(g.golden.empty()) << file << " has no golden pairs";
    for (const auto& n : g.nodes)
      if (const auto* l = std::get_if<graph::ImcLayer>(&n.op))
        settings.insert(std::string(kernels::adc_kind_name(l->adc.kind)) + "/" + std::to_string(l->adc.bits) +
                        "/" + kernels::adc_granularity_name(l->adc.granularity) + "/" +
                        kernels::adc_rounding_name(l->adc.rounding));
  }
  EXPECT_GE(settings.size(), 2u);
}

// Every kernel path this machine runs (docs/fast_kernels.md).
std::vector<kernels::KernelPath> kernel_paths() { return test::all_kernel_paths(); }

TEST_P(GoldenTest, EngineMatchesPythonReferenceBitExactly) {
  const graph::Graph g = graph::load_graph(GetParam());
  if (g.shape_only) GTEST_SKIP() << "shape-only workload: no values to compare";
  ASSERT_FALSE(g.golden.empty());
  for (const auto path : kernel_paths()) {
  SCOPED_TRACE(std::string("kernel path ") + kernels::kernel_path_name(path));
  const engine::FunctionalEngine engine(g, {}, 0, path);
  for (size_t gi = 0; gi < g.golden.size(); ++gi) {
    const auto& gp = g.golden[gi];
    SCOPED_TRACE("golden pair " + std::to_string(gi) + " (test image " + std::to_string(gp.dataset_index) + ")");
    std::vector<engine::NodeTrace> traces;
    const auto result = engine.infer(gp.input_codes, nullptr, &traces);
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
      EXPECT_EQ(result.output_values[c], gp.logits[c]) << "logit " << c << " differs (float64, exact)";
    EXPECT_EQ(result.predicted_class, gp.predicted_class);
    // Untraced: the fused kernels.
    const auto fast = engine.infer(gp.input_codes);
    EXPECT_EQ(fast.node_codes, result.node_codes);
    EXPECT_EQ(fast.output_values, result.output_values);
  }
  }
}

TEST_P(GoldenTest, TestSetAccuracyEqualsReference) {
  const graph::Graph g = graph::load_graph(GetParam());
  if (g.provenance.reference_images == 0) GTEST_SKIP() << "no reference accuracy recorded";
  const fs::path dir = data::kDefaultFashionMnistDir;
  if (!fs::exists(dir)) GTEST_SKIP() << "Fashion-MNIST not installed at " << dir;
  const auto ds = data::read_fashion_mnist(dir, false);
  // The reference measured the first reference_images test images (all 10 000 for most graphs).
  const uint64_t count = g.provenance.reference_images;
  ASSERT_LE(count, ds.count);
  const engine::FunctionalEngine engine(g);
  const auto r = engine::run_dataset(engine, ds.pixels, ds.labels, count, 0, nullptr);
  // Same numerics, same images: the count of correct predictions must be identical.
  EXPECT_EQ(r.correct, static_cast<uint64_t>(std::llround(g.provenance.reference_accuracy * double(count))));
  EXPECT_NEAR(r.accuracy(), g.provenance.reference_accuracy, 1e-12);
}

// Graphs exported from PyTorch by scripts/train_zoo.py (torch_imc, exact numerics) record
// PyTorch's own accuracy of the exported model: provenance.fake_quant_accuracy, measured on the
// first `torch_imc_test_images` test images (method_settings_json). The engine must reproduce
// it exactly (the training-side contract test; workloads/zoo/methods/ has one graph per method).
TEST_P(GoldenTest, TestSetAccuracyEqualsPyTorch) {
  const graph::Graph g = graph::load_graph(GetParam());
  const auto settings = nlohmann::json::parse(g.provenance.method_settings_json, nullptr, false);
  if (settings.is_discarded() || !settings.is_object() || !settings.contains("torch_imc_test_images"))
    GTEST_SKIP() << "no PyTorch (torch_imc) accuracy recorded";
  const uint64_t count = settings.at("torch_imc_test_images").get<uint64_t>();
  // Same images as the reference check: measured once there.
  if (g.provenance.reference_images == count) GTEST_SKIP() << "checked by TestSetAccuracyEqualsReference";
  const fs::path dir = data::kDefaultFashionMnistDir;
  if (!fs::exists(dir)) GTEST_SKIP() << "Fashion-MNIST not installed at " << dir;
  const auto ds = data::read_fashion_mnist(dir, false);
  ASSERT_LE(count, ds.count);
  const engine::FunctionalEngine engine(g);
  const auto r = engine::run_dataset(engine, ds.pixels, ds.labels, count, 0, nullptr);
  EXPECT_EQ(r.correct, static_cast<uint64_t>(std::llround(g.provenance.fake_quant_accuracy * double(count))));
  EXPECT_NEAR(r.accuracy(), g.provenance.fake_quant_accuracy, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Bundled, GoldenTest, testing::ValuesIn(bundled_graphs()), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GoldenTest);

}  // namespace
