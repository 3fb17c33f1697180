// Weight copies in the pipelined SystemC model: each copy is its own pipeline with its own
// route to the global buffer; copies sharing a link queue on it, copies on separate links do
// not. Hand-derived cycles. Own executable: SystemC elaborates once per process.
#include <gtest/gtest.h>

#include "sim/timing/systemc_timing.h"

using namespace imcsim;

TEST(Copies, CopiesOnASharedLinkQueueAndTheNodeEndsWithItsLastCopy) {
  // Each copy: 1 position, 1 group, read 1, convert 1, input over the interconnect 2 cycles.
  // Closed form per node: 2 + 1 + 1 = 4.
  mapping::NodeSchedule a;
  a.node = "A";
  a.is_imc = true;
  a.imc = {1, 1, 1, 1, 0, 0};
  a.imc.link_in_cycles = 2;
  a.copy_paths_in = {{0}, {0}};  // both copies through link 0
  a.copy_paths_out = {{}, {}};
  a.link_path_in = {0};
  mapping::NodeSchedule b = a;
  b.node = "B";
  b.copy_paths_in = {{1}, {2}};  // separate links
  b.link_path_in = {1};
  ASSERT_EQ(a.analytical_cycles(), 4u);
  timing::SystemcTimingOptions options;
  options.execution = timing::Execution::kPipelined;
  const auto r = timing::run_systemc_timing({a, b}, options);
  // A: copy 0 link [0,2] read [2,3] convert [3,4]; copy 1 waits for link 0 until 2: link
  // [2,4] read [4,5] convert [5,6]. A ends at 6 (its last copy). B starts at 6; both copies
  // [6,8] [8,9] [9,10]: 4 cycles. Latency 10 against the closed form's 8.
  ASSERT_EQ(r.nodes.size(), 2u);
  EXPECT_EQ(r.nodes[0].cycles, 6u);
  EXPECT_EQ(r.nodes[0].fetch_stall_link, 2u);
  EXPECT_EQ(r.nodes[0].link_busy, 2u * 2);
  EXPECT_EQ(r.nodes[1].cycles, 4u);
  EXPECT_EQ(r.nodes[1].fetch_stall_link, 0u);
  EXPECT_EQ(r.cycles_per_image, 10u);
  EXPECT_EQ(r.analytical_latency_cycles, 8u);
  EXPECT_EQ(r.cycles_per_image - r.analytical_latency_cycles, r.nodes[0].fetch_stall_link);
  ASSERT_EQ(r.links.size(), 3u);
  EXPECT_EQ(r.links[0].busy_cycles, 4u);
  EXPECT_EQ(r.links[1].busy_cycles, 2u);
  EXPECT_EQ(r.links[2].busy_cycles, 2u);
}
