// Data-carrying mode: the SystemC model carries the bundled CNN's golden inputs through its
// stages and every node output equals the functional engine's; an injected fault is reported
// with its node, position and column; a stage order that would corrupt a value is caught.
// Own executable: SystemC elaborates once per process.
#include <gtest/gtest.h>

#include <filesystem>

#include "models/tile/layer_datapath.h"
#include "sim/config/arch_config.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "sim/mapping/schedule.h"
#include "sim/timing/carry_data.h"
#include "sim/timing/systemc_timing.h"

using namespace imcsim;

namespace {
const std::filesystem::path kRoot = IMCSIM_SOURCE_DIR;
}

TEST(CarryData, SystemcCarriedValuesEqualTheEngineAndAFaultIsLocated) {
  const auto graph = graph::load_graph(kRoot / "workloads/fmnist_cnn/fmnist_cnn.imcg");
  ASSERT_GE(graph.golden.size(), 2u);
  const auto arch = config::load_arch_config(kRoot / "arch_configs/default.json");
  const auto mapping = mapping::map_graph(graph, mapping::ArrayGeometry::from(arch));
  const auto schedule = mapping::build_schedule(graph, mapping, arch);
  // Two data paths in one run would need two elaborations: carry 2 images (pipelined, so the
  // two images overlap in time) with a fault in conv2 (node 2), position 5, column 3.
  timing::GraphDataPath data(graph);
  for (size_t i = 0; i < 2; ++i) data.add_image(graph.golden[i].input_codes);
  data.inject_fault(2, 5, 3, +1);
  timing::SystemcTimingOptions options;
  options.images = 2;
  options.execution = timing::Execution::kPipelined;
  options.fabric = timing::fabric_options(arch);
  options.data = &data;
  const auto r = timing::run_systemc_timing(schedule, options);
  EXPECT_EQ(r.data_error, "");
  const engine::FunctionalEngine engine(graph);
  const auto check = timing::check_carried_data(data, engine, r.data_error);
  EXPECT_EQ(check.images, 2u);
  // Every node output of both images: 2 x (16*28*28 + 16*14*14 + 32*14*14 + 32*7*7 + 1568 + 64 + 10).
  EXPECT_EQ(check.values_checked, 2u * (12544 + 3136 + 6272 + 1568 + 1568 + 64 + 10));
  ASSERT_GE(check.mismatches, 2u);  // the fault, in each image (and whatever it changed downstream)
  const auto& m = check.first_mismatches.front();
  EXPECT_EQ(m.image, 0u);
  EXPECT_EQ(m.node, "conv2");
  EXPECT_EQ(m.position, 5u);
  EXPECT_EQ(m.column, 3u);
  EXPECT_EQ(m.systemc, m.engine + 1);
  EXPECT_FALSE(check.ok());
  EXPECT_NE(check.summary().find("node 'conv2', position 5, column 3"), std::string::npos) << check.summary();
  // Without the fault, conv1 (computed before it) agrees everywhere: no mismatch is in conv1.
  for (const auto& mm : check.first_mismatches) EXPECT_NE(mm.node, "conv1");
  // conv1 (before the fault) carried every value exactly as the engine computes it.
  const auto ref = engine.infer(graph.golden[0].input_codes);
  EXPECT_EQ(data.image(0).codes[0], ref.node_codes[0]);
}

TEST(CarryData, AStageOrderThatWouldCorruptAValueIsReported) {
  const auto graph = graph::load_graph(kRoot / "workloads/fmnist_cnn/fmnist_cnn.imcg");
  timing::GraphDataPath data(graph);
  data.add_image(graph.golden[0].input_codes);
  // A third fetch while position 0 is still in the register pair overwrites its slot.
  data.fetched(0, 0, 0);
  data.fetched(0, 0, 1);
  data.fetched(0, 0, 2);
  try {
    data.sampled(0, 0, 0, 0);
    FAIL() << "overwritten input register not detected";
  } catch (const timing::DataPathError& e) {
    EXPECT_NE(std::string(e.what()).find("holds position 2"), std::string::npos) << e.what();
  }
  // Converting a step the sample-and-hold does not hold.
  data.sampled(0, 0, 1, 0);
  EXPECT_THROW(data.converted(0, 0, 1, 1), timing::DataPathError);
  // Writing an output vector that was never computed.
  EXPECT_THROW(data.written(0, 0, 7), timing::DataPathError);
}
