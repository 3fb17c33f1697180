// The bundled workload on the default architecture: the SystemC model's cycles equal the
// analytical closed form node by node (no contention in this configuration), and the VCD
// trace is written. Own executable: SystemC elaborates once per process.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "sim/config/arch_config.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "sim/mapping/schedule.h"
#include "sim/timing/systemc_timing.h"

using namespace imcsim;
namespace fs = std::filesystem;

TEST(WorkloadTiming, SystemcEqualsAnalyticalWithoutContention) {
  const fs::path root = IMCSIM_SOURCE_DIR;
  const auto graph = graph::load_graph(root / "workloads/fmnist_cnn/fmnist_cnn.imcg");
  const auto arch = config::load_arch_config(root / "arch_configs/default.json");
  const auto mapping = mapping::map_graph(graph, mapping::ArrayGeometry::from(arch));
  const auto schedule = mapping::build_schedule(graph, mapping, arch);
  const fs::path vcd = fs::temp_directory_path() / ("imcsim_workload_timing_" + std::to_string(::getpid()) + ".vcd");
  timing::SystemcTimingOptions options;
  options.images = 2;
  options.vcd_file = vcd.string();
  options.trace_window_start = 0;
  options.trace_window_end = 5000;
  const auto r = timing::run_systemc_timing(schedule, options);
  ASSERT_EQ(r.nodes.size(), schedule.size());
  uint64_t analytical = 0;
  for (size_t i = 0; i < schedule.size(); ++i) {
    EXPECT_EQ(r.nodes[i].cycles, 2 * schedule[i].analytical_cycles()) << schedule[i].node;
    // The array only ever waits for the first input vector of each image.
    EXPECT_EQ(r.nodes[i].array_stall_input, 2 * schedule[i].imc.input_delivery_cycles()) << schedule[i].node;
    EXPECT_EQ(r.nodes[i].fetch_stall_link + r.nodes[i].write_stall_link + r.nodes[i].fetch_stall_gb +
                  r.nodes[i].write_stall_gb + r.nodes[i].fetch_stall_bus + r.nodes[i].write_stall_bus,
              0u) << schedule[i].node;
    analytical += schedule[i].analytical_cycles();
  }
  EXPECT_EQ(r.cycles_per_image, analytical);
  // conv1 by hand: 784 positions x 8 groups; 16 columns x 4 slices = 64 conversions on the
  // array's single 8-bit SAR ADC = 512 cycles per step > 120 read cycles; fetch 9 bytes = 1
  // cycle, write 16 bytes = 1 cycle. Its input (784 bytes over 784 positions: 1 byte each)
  // comes from the global buffer: 1 port cycle + over the bus interconnect 1 hop + 1 cycle;
  // its output vector goes back: 1 hop + 1 cycle + 1 port cycle.
  // (1 + 2 + 1) + 120 + (6272 - 1) * 512 + 512 + (1 + 2 + 1) = 3211392.
  EXPECT_EQ(schedule[0].imc.input_delivery_cycles(), 4u);
  EXPECT_EQ(schedule[0].imc.output_delivery_cycles(), 4u);
  EXPECT_EQ(r.nodes[0].cycles / 2, 3211392u);
  ASSERT_TRUE(fs::exists(vcd));
  std::ifstream f(vcd);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("adc_busy"), std::string::npos);
  EXPECT_NE(text.find("interconnect_busy"), std::string::npos);
  EXPECT_NE(text.find("global_buffer_busy"), std::string::npos);
  EXPECT_NE(text.find("$enddefinitions"), std::string::npos);
  fs::remove(vcd);
}
