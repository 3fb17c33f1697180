// The arch config's ADC-resolution override (adc.layer_bits_override, sim/engine/adc_override.h):
//  * config keys: defaults, range (at most adc.bits), unknown reference rule, JSON round trip;
//  * off: the graph is simulated as written; "rescale": every linear layer re-derived exactly as
//    with_adc_bits, a non-linear graph refused naming the config field and the node;
//    a calibration method: the graph imcsim calibrate writes, bit for bit;
//  * the CLI: `imcsim run` with an override config reports adc_override, simulates the overridden
//    resolution (SAR conversion cycles = bits) and the same accuracy as running the calibrated
//    graph written by `imcsim calibrate`.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "sim/config/arch_config.h"
#include "sim/engine/adc_override.h"
#include "sim/engine/calibration.h"
#include "sim/graph/graph_loader.h"
#include "sim/graph/graph_writer.h"
#include "tests/support/cli_runner.h"

namespace imcsim {
namespace {

namespace fs = std::filesystem;
const fs::path kSourceDir = IMCSIM_SOURCE_DIR;
const fs::path kDefaultGraph = kSourceDir / "workloads/fmnist_cnn/fmnist_cnn.imcg";
const fs::path kNonlinearGraph = kSourceDir / "workloads/fmnist_cnn/fmnist_cnn_adc4_nl.imcg";
const fs::path kTinyGraph = kSourceDir / "tests/data/graphs/tiny_fmnist.imcg.txt";
const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

class AdcOverrideTest : public testing_support::TempDirTest {
 protected:
  fs::path write_config(const std::string& name, const std::string& text) {
    const fs::path p = dir / name;
    std::ofstream(p) << text;
    return p;
  }
  std::string config_error(const std::string& text) {
    try {
      config::load_arch_config(write_config("c.json", text));
    } catch (const config::ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  }
};

TEST_F(AdcOverrideTest, ConfigKeysDefaultsRangesAndRoundTrip) {
  const auto def = config::load_arch_config(write_config("d.json", "{}"));
  EXPECT_EQ(def.adc.layer_bits_override, 0u);
  EXPECT_EQ(def.adc.override_references, "rescale");
  EXPECT_EQ(def.adc.override_calibration_images, 512u);
  const auto cfg = config::load_arch_config(write_config(
      "o.json", R"({"adc": {"layer_bits_override": 3, "override_references": "bs-kmq",
                            "override_calibration_images": 64}})"));
  EXPECT_EQ(cfg.adc.layer_bits_override, 3u);
  EXPECT_EQ(cfg.adc.override_references, "bs-kmq");
  EXPECT_EQ(cfg.adc.override_calibration_images, 64u);
  // The effective config written to reports re-loads to the same config.
  const auto again = config::load_arch_config(write_config("r.json", config::to_json(cfg).dump()));
  EXPECT_EQ(again.adc, cfg.adc);

  EXPECT_NE(config_error(R"({"adc": {"layer_bits_override": 9}})")
                .find("/adc/layer_bits_override: must not exceed /adc/bits = 8"),
            std::string::npos);
  EXPECT_EQ(config_error(R"({"adc": {"bits": 10, "layer_bits_override": 10}})"), "(no error)");
  const std::string unknown = config_error(R"({"adc": {"override_references": "kmeans++"}})");
  EXPECT_NE(unknown.find("/adc/override_references: unknown reference rule \"kmeans++\" (expected one of: rescale, "
                         "linear-minmax"),
            std::string::npos)
      << unknown;
  EXPECT_NE(config_error(R"({"adc": {"override_calibration_images": 0}})").find("/adc/override_calibration_images"),
            std::string::npos);
}

TEST_F(AdcOverrideTest, OffKeepsTheGraph) {
  const graph::Graph g = graph::load_graph(kDefaultGraph);
  const auto ov = engine::apply_adc_override(g, config::AdcConfig{}, "x.json", kFashionMnist, 1);
  EXPECT_TRUE(ov.report.is_null());
  EXPECT_EQ(graph::graph_to_text(ov.graph), graph::graph_to_text(g));
  EXPECT_EQ(engine::adc_override_summary(ov.report), "");
}

TEST_F(AdcOverrideTest, RescaleIsWithAdcBitsAndReportsEveryLayer) {
  const graph::Graph g = graph::load_graph(kDefaultGraph);
  config::AdcConfig adc;
  adc.bits = 8;
  adc.layer_bits_override = 5;
  const auto ov = engine::apply_adc_override(g, adc, "x.json", kFashionMnist, 1);
  graph::Graph want = calibration::with_adc_bits(g, 5);
  EXPECT_EQ(ov.graph.name, g.name + "_adc5b_rescale");
  want.name = ov.graph.name;
  // (a boolean: gtest's diff of two whole graph texts would take gigabytes)
  EXPECT_TRUE(graph::graph_to_text(ov.graph) == graph::graph_to_text(want));
  EXPECT_EQ(ov.report["layer_bits"], 5);
  EXPECT_EQ(ov.report["references"], "rescale");
  size_t imc_layers = 0;
  for (const auto& n : g.nodes) imc_layers += std::holds_alternative<graph::ImcLayer>(n.op);
  ASSERT_EQ(ov.report["layers"].size(), imc_layers);
  EXPECT_EQ(ov.report["layers"][0]["graph_adc"], "linear 8b layer");
  EXPECT_EQ(ov.report["layers"][0]["simulated_adc"], "linear 5b layer");
  EXPECT_NE(engine::adc_override_summary(ov.report).find("every IMC layer converts at 5 bits"), std::string::npos);
}

TEST_F(AdcOverrideTest, RescaleRefusesANonlinearAdcNamingFieldAndNode) {
  config::AdcConfig adc;
  adc.bits = 8;
  adc.layer_bits_override = 3;
  try {
    engine::apply_adc_override(graph::load_graph(kNonlinearGraph), adc, "sweep.json", kFashionMnist, 1);
    ADD_FAILURE() << "a non-linear ADC cannot be rescaled";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("sweep.json: /adc/override_references: \"rescale\" cannot re-derive the non-linear ADC of node "
                      "'conv1' (#0)",
                      0),
              0u)
        << m;
  }
}

TEST_F(AdcOverrideTest, CalibrationMethodGivesTheGraphImcsimCalibrateWrites) {
  if (!fs::exists(fs::path(kFashionMnist) / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "no Fashion-MNIST";
  config::AdcConfig adc;
  adc.bits = 8;
  adc.layer_bits_override = 3;
  adc.override_references = "kmeans";
  adc.override_calibration_images = 16;
  const graph::Graph g = graph::load_graph(kTinyGraph);
  const auto ov = engine::apply_adc_override(g, adc, "x.json", kFashionMnist, 1);
  EXPECT_EQ(ov.report["calibration_images"], 16);
  // Same fit as calibrating directly (provenance aside: timestamps differ).
  const auto r = testing_support::run_imcsim(
      {"calibrate", "--graph", kTinyGraph.string(), "--method", "kmeans", "--bits", "3", "--images", "16", "--out",
       (dir / "cal.imcg").string(), "--quiet"},
      dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  graph::Graph calibrated = graph::load_graph(dir / "cal.imcg");
  graph::Graph simulated = ov.graph;
  calibrated.provenance = simulated.provenance = {};
  calibrated.source_file = simulated.source_file = "";
  calibrated.name = simulated.name = "";  // imcsim calibrate renames the graph
  EXPECT_EQ(graph::graph_to_text(simulated), graph::graph_to_text(calibrated));
  EXPECT_EQ(std::get<graph::ImcLayer>(ov.graph.nodes.back().op).adc.kind, kernels::AdcKind::kNonlinear);
}

TEST_F(AdcOverrideTest, RunReportsTheOverrideAndSimulatesIt) {
  if (!fs::exists(fs::path(kFashionMnist) / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "no Fashion-MNIST";
  const fs::path cfg = write_config(
      "o.json", R"({"adc": {"layer_bits_override": 3, "override_references": "kmeans",
                            "override_calibration_images": 16}})");
  auto r = testing_support::run_imcsim({"run", "--graph", kTinyGraph.string(), "--arch", cfg.string(), "--images",
                                        "200", "--threads", "1", "--quiet", "--out", (dir / "ov").string()},
                                       dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rep = nlohmann::json::parse(testing_support::slurp_file(dir / "ov/report.json"));
  ASSERT_TRUE(rep["adc_override"].is_object());
  EXPECT_EQ(rep["adc_override"]["layer_bits"], 3);
  EXPECT_EQ(rep["adc_override"]["layers"][0]["simulated_adc"].get<std::string>().substr(0, 12), "nonlinear 3b");
  // SAR: one cycle per bit at the overridden resolution.
  for (const auto& n : rep["latency"]["per_node"]) {
    if (n.contains("adc_conversion_cycles")) {
      EXPECT_EQ(n["adc_conversion_cycles"], 3) << n.dump();
    }
  }

  // The same as calibrating first and running the written graph with the plain config.
  r = testing_support::run_imcsim({"calibrate", "--graph", kTinyGraph.string(), "--method", "kmeans", "--bits", "3",
                                   "--images", "16", "--out", (dir / "cal.imcg").string(), "--quiet"},
                                  dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = testing_support::run_imcsim({"run", "--graph", (dir / "cal.imcg").string(), "--images", "200", "--threads", "1",
                                   "--quiet", "--out", (dir / "cal").string()},
                                  dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto plain = nlohmann::json::parse(testing_support::slurp_file(dir / "cal/report.json"));
  EXPECT_TRUE(plain["adc_override"].is_null());
  EXPECT_EQ(rep["accuracy"]["correct"], plain["accuracy"]["correct"]);
  EXPECT_EQ(rep["energy"]["pj_per_image"], plain["energy"]["pj_per_image"]);
  EXPECT_EQ(rep["latency"]["cycles_per_image"], plain["latency"]["cycles_per_image"]);

  // A non-linear graph with "rescale": one-line error naming the config field, exit 1.
  const fs::path bad = write_config("bad.json", R"({"adc": {"layer_bits_override": 3}})");
  r = testing_support::run_imcsim({"run", "--graph", kNonlinearGraph.string(), "--arch", bad.string(), "--images",
                                   "10", "--quiet", "--out", (dir / "bad").string()},
                                  dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/adc/override_references: \"rescale\" cannot re-derive"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "bad/report.json"));
}

}  // namespace
}  // namespace imcsim
