// Leakage x time and interconnect energy in the analytical cost model, by hand, on the
// bundled CNN (4 tiles used; conv1: 784 positions, 1 input byte and 16 output bytes each).
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/config/arch_config.h"
#include "sim/cost/analytical.h"
#include "sim/cost/peak.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "tests/support/cli_runner.h"

using namespace imcsim;
using nlohmann::json;

namespace {
double at(const cost::PerComponent& v, cost::Component c) { return v[static_cast<size_t>(c)]; }
}  // namespace

TEST(Leakage, PowerOfTheUsedInstancesTimesLatency) {
  const std::filesystem::path root = IMCSIM_SOURCE_DIR;
  const auto graph = graph::load_graph(root / "workloads/fmnist_cnn/fmnist_cnn.imcg");
  const auto arch = config::parse_arch_config(
      json{{"components", {{"adc", {{"leakage_mw", 0.001}}},
                           {"global_buffer", {{"leakage_mw", 1e-6}}},
                           {"interconnect", {{"leakage_mw", 0.5}}}}}},
      "a.json");
  const auto mapping = mapping::map_graph(graph, mapping::ArrayGeometry::from(arch));
  ASSERT_EQ(mapping.tiles_used, 4u);
  auto r = cost::analytical_cost(graph, mapping, arch, {});
  // 4 tiles x 96 arrays x 1 ADC x 0.001 mW; 1 MiB x 1e-6 mW; 1 bus link x 0.5 mW.
  EXPECT_DOUBLE_EQ(at(r.leakage_power_mw_by_component, cost::Component::kAdc), 4 * 96 * 0.001);
  EXPECT_DOUBLE_EQ(at(r.leakage_power_mw_by_component, cost::Component::kGlobalBuffer), 1048576 * 1e-6);
  EXPECT_DOUBLE_EQ(at(r.leakage_power_mw_by_component, cost::Component::kInterconnect), 0.5);
  EXPECT_DOUBLE_EQ(at(r.leakage_power_mw_by_component, cost::Component::kDac), 0.0);
  // mW x ns = pJ, over the latency; a different (e.g. SystemC) latency rescales it.
  for (const uint64_t cycles : {r.cycles_per_image, uint64_t{1200}}) {
    cost::set_latency(r, cycles, arch.clock_mhz);
    const double ns = double(cycles) / 1.2;
    EXPECT_NEAR(at(r.leakage_energy_pj_per_image_by_component, cost::Component::kAdc), 0.384 * ns, 1e-9 * ns);
    EXPECT_DOUBLE_EQ(at(r.energy_pj_per_image_by_component, cost::Component::kAdc),
                     at(r.dynamic_energy_pj_per_image_by_component, cost::Component::kAdc) +
                         at(r.leakage_energy_pj_per_image_by_component, cost::Component::kAdc));
  }
  // Interconnect energy of conv1: 784 x 8 x (1 byte x 1 hop + 16 bytes x 1 hop) bit-hops x 0.122 pJ.
  EXPECT_DOUBLE_EQ(r.nodes[0].events.interconnect_bit_hops, 784.0 * 8 * (1 + 16));
  EXPECT_NEAR(at(r.nodes[0].energy_pj, cost::Component::kInterconnect), 784.0 * 8 * 17 * 0.122, 1e-6);
  // Peak: every instance of a tile leaks; the links leak at chip level.
  const auto peak = cost::peak_characteristics(arch, {});
  const auto peak0 = cost::peak_characteristics(config::parse_arch_config(json::object(), "a.json"), {});
  EXPECT_NEAR(peak.tile_power_mw - peak0.tile_power_mw, 96 * 0.001, 1e-9);
  EXPECT_NEAR(peak.interconnect_power_mw - peak0.interconnect_power_mw, 0.5, 1e-9);
  EXPECT_NEAR(peak.global_buffer_power_mw - peak0.global_buffer_power_mw, 1048576 * 1e-6, 1e-9);
}

// The report: leakage per component class and per node (static power x the node's SystemC
// cycles); layer by layer the nodes' leakage sums to the run's.
class LeakageReport : public testing_support::TempDirTest {};

TEST_F(LeakageReport, PerNodeLeakageSumsToTheRunsLeakage) {
  const std::string root = IMCSIM_SOURCE_DIR;
  const auto r = testing_support::run_imcsim(
      {"run", "--timing-only", "--graph", root + "/workloads/fmnist_cnn/fmnist_cnn.imcg", "--arch",
       root + "/arch_configs/default.json", "--set", "components.adc.leakage_mw=0.001", "-q", "--out",
       (dir / "out").string()},
      dir);
  ASSERT_TRUE(r.exited && r.exit_code == 0) << r.err;
  const auto rep = json::parse(testing_support::slurp_file(dir / "out" / "report.json"));
  const auto& e = rep["energy"];
  const double ns = rep["latency"]["ns_per_image"].get<double>();
  EXPECT_NEAR(e["leakage_power_mw_by_component"]["adc"].get<double>(), 4 * 96 * 0.001, 1e-12);
  EXPECT_NEAR(e["leakage_by_component_pj"]["adc"].get<double>(), 0.384 * ns, 1e-6 * ns);
  double nodes = 0;
  for (const auto& n : e["per_node"]) nodes += n["leakage_pj"].get<double>();
  EXPECT_NEAR(nodes, 0.384 * ns, 1e-6 * ns);
  EXPECT_NEAR(e["by_component_pj"]["adc"].get<double>(),
              e["dynamic_by_component_pj"]["adc"].get<double>() + e["leakage_by_component_pj"]["adc"].get<double>(),
              1e-6);
}
