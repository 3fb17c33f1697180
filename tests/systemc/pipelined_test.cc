// Inter-layer pipelining with images streamed back to back, against hand-derived cycles.
// Own executable: SystemC elaborates once per process.
#include <gtest/gtest.h>

#include "sim/timing/systemc_timing.h"

using namespace imcsim;

namespace {
mapping::NodeSchedule digital(const char* name, uint64_t cycles) {
  mapping::NodeSchedule s;
  s.node = name;
  s.digital_cycles = cycles;
  return s;
}
}  // namespace

TEST(Pipelined, StagesOverlapAcrossImagesAndTheSlowestStagePaces) {
  // Stage times: a = 5 (digital), b = IMC 1 + 4 + (3-1)*max(4,2) + 2 + 1 = 16, c = 3.
  mapping::NodeSchedule b;
  b.node = "b";
  b.is_imc = true;
  b.imc = {1, 3, 4, 2, 1, 1};
  ASSERT_EQ(b.analytical_cycles(), 16u);
  const std::vector<mapping::NodeSchedule> schedule = {digital("a", 5), b, digital("c", 3)};
  timing::SystemcTimingOptions options;
  options.execution = timing::Execution::kPipelined;
  options.images = 4;
  const auto r = timing::run_systemc_timing(schedule, options);
  // Image 0 passes a, b, c: 5 + 16 + 3 = 24. Stage b finishes images at 21, 37, 53, 69
  // (it starts image i+1 when its own image i is done, since a is faster); c ends each 3
  // later: 24, 40, 56, 72. Interval = (72 - 24) / 3 = 16 = the slowest stage.
  EXPECT_EQ(r.cycles_per_image, 24u);
  EXPECT_EQ(r.total_cycles, 72u);
  EXPECT_EQ(r.interval_cycles, 16u);
  EXPECT_EQ(r.analytical_latency_cycles, 24u);
  EXPECT_EQ(r.analytical_interval_cycles, 16u);
  ASSERT_EQ(r.nodes.size(), 3u);
  EXPECT_EQ(r.nodes[0].cycles, 4u * 5);
  EXPECT_EQ(r.nodes[1].cycles, 4u * 16);
  EXPECT_EQ(r.nodes[2].cycles, 4u * 3);
  EXPECT_EQ(r.total_cycles, r.analytical_latency_cycles + (options.images - 1) * r.analytical_interval_cycles);
}
