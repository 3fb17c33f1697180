// Weight replication for inter-layer pipelining, on the bundled workload and the default
// architecture, with the replication factors derived by hand.
#include <gtest/gtest.h>

#include "sim/config/arch_config.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "sim/mapping/schedule.h"

using namespace imcsim;

TEST(Replication, BalancesThePipelineUntilTheSlowestNodeCannotBeReplicated) {
  const std::string root = IMCSIM_SOURCE_DIR;
  const auto graph = graph::load_graph(root + "/workloads/fmnist_cnn/fmnist_cnn.imcg");
  const auto arch = config::load_arch_config(root + "/arch_configs/default.json");
  const auto base = mapping::map_graph(graph, mapping::ArrayGeometry::from(arch));
  const auto m = mapping::replicate_for_pipeline(graph, base, arch);
  ASSERT_EQ(m.layers.size(), 4u);
  // fc1 (one position, cannot be split) takes 49 fetch + 120 + 7 x 1024 + 1024 + 2 write =
  // 8363 cycles; it is the bound once conv1 and conv2 are faster:
  // conv1 (784 positions, 512 cycles per step): 2 positions per copy -> 16 steps ->
  //   1 + 120 + 15 x 512 + 512 + 1 = 8314 <= 8363, 3 positions -> 12410: 392 copies.
  // conv2 (196 positions, 1024 cycles per step): 1 position per copy -> 8 steps ->
  //   5 + 120 + 7 x 1024 + 1024 + 1 = 8318 <= 8363, 2 positions -> 16510: 196 copies.
  EXPECT_EQ(m.layers[0].replication, 392u);
  EXPECT_EQ(m.layers[1].replication, 196u);
  EXPECT_EQ(m.layers[2].replication, 1u);
  EXPECT_EQ(m.layers[3].replication, 1u);
  const auto schedule = mapping::build_schedule(graph, m, arch);
  uint64_t slowest = 0;
  for (const auto& s : schedule) slowest = std::max(slowest, s.analytical_cycles());
  EXPECT_EQ(slowest, schedule[5].analytical_cycles()) << "fc1 paces the pipeline";
  EXPECT_EQ(schedule[0].imc.positions, 2u);
  EXPECT_EQ(schedule[2].imc.positions, 1u);
  // Arrays and tiles: conv1 1 array x 392 = 392 arrays = 5 tiles; conv2 2 x 196 = 392 = 5.
  EXPECT_EQ(m.layers[0].arrays, 392u);
  EXPECT_EQ(m.layers[0].tiles, 5u);
  EXPECT_EQ(m.layers[1].tiles, 5u);
  EXPECT_EQ(m.tiles_used, 12u);
  EXPECT_LE(m.tiles_used, arch.chip.tiles);
}
