// The global buffer and the interconnect in the SystemC model, layer by layer: the bundled
// CNN scheduled on several architectures (link width +-1, hop latency, H-tree and mesh hops,
// port width) runs as one job sequence; every node's SystemC cycles equal the closed form
// (no contention: fetches and writes never meet on a link or a port here), conv1's by hand.
// Own executable: SystemC elaborates once per process.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "sim/config/arch_config.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "sim/mapping/schedule.h"
#include "sim/timing/systemc_timing.h"

using namespace imcsim;
using nlohmann::json;

TEST(InterconnectCycles, SystemcEqualsClosedFormAndHandCountsAtEachBoundary) {
  const std::filesystem::path root = IMCSIM_SOURCE_DIR;
  const auto graph = graph::load_graph(root / "workloads/fmnist_cnn/fmnist_cnn.imcg");
  // conv1: (gb read + link in + tile bus 1) + 120 + (6272 - 1) * 512 + 512 + (1 + link out + gb write).
  constexpr uint64_t kCore = 120 + 6271 * 512 + 512;
  struct Case {
    const char* what;
    json config;
    uint64_t conv1_cycles;
  };
  const std::vector<Case> cases = {
      {"default bus", json::object(), (1 + 2 + 1) + kCore + (1 + 2 + 1)},
      {"link 127 bits", json{{"interconnect", {{"link_bits", 127}}}}, (1 + 2 + 1) + kCore + (1 + 3 + 1)},
      {"link 7 bits", json{{"interconnect", {{"link_bits", 7}}}}, (1 + 3 + 1) + kCore + (1 + 20 + 1)},
      {"hop 3 cycles", json{{"interconnect", {{"hop_cycles", 3}}}}, (1 + 4 + 1) + kCore + (1 + 4 + 1)},
      {"htree 8 hops", json{{"interconnect", {{"kind", "htree"}}}}, (1 + 9 + 1) + kCore + (1 + 9 + 1)},
      {"mesh", json{{"interconnect", {{"kind", "mesh"}}}}, (1 + 2 + 1) + kCore + (1 + 2 + 1)},
      {"port 127 bits", json{{"chip", {{"global_buffer_port_bits", 127}}}}, (1 + 2 + 1) + kCore + (1 + 2 + 2)},
      {"port 7 bits, 1 port", json{{"chip", {{"global_buffer_port_bits", 7}, {"global_buffer_ports", 1}}}},
       (2 + 2 + 1) + kCore + (1 + 2 + 19)},
  };
  std::vector<mapping::NodeSchedule> all;
  std::vector<size_t> first_node;
  for (const auto& c : cases) {
    const auto arch = config::parse_arch_config(c.config, "a.json");
    const auto s = mapping::build_schedule(graph, mapping::map_graph(graph, mapping::ArrayGeometry::from(arch)), arch);
    first_node.push_back(all.size());
    for (auto n : s) {
      n.node = std::string(c.what) + "/" + n.node;
      all.push_back(std::move(n));
    }
  }
  timing::SystemcTimingOptions options;
  // The H-tree has the most links (2 x 510; the mesh 4 x 13 x 13 + 2); one port, as the last case.
  options.fabric = timing::fabric_options(config::parse_arch_config(
      json{{"interconnect", {{"kind", "htree"}}}, {"chip", {{"global_buffer_ports", 1}}}}, "a.json"));
  const auto r = timing::run_systemc_timing(all, options);
  ASSERT_EQ(r.nodes.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i].node);
    EXPECT_EQ(r.nodes[i].cycles, all[i].analytical_cycles());
    EXPECT_EQ(r.nodes[i].fetch_stall_link + r.nodes[i].write_stall_link + r.nodes[i].fetch_stall_gb +
                  r.nodes[i].write_stall_gb,
              0u);
    if (all[i].is_imc) {
      // Every position's share crosses the links: P transfers in, P out.
      const uint64_t P = all[i].imc.positions;
      EXPECT_EQ(r.nodes[i].link_busy, P * (all[i].imc.link_in_cycles + all[i].imc.link_out_cycles));
      EXPECT_EQ(r.nodes[i].gb_busy, P * (all[i].imc.gb_read_cycles + all[i].imc.gb_write_cycles));
    }
  }
  for (size_t k = 0; k < cases.size(); ++k) {
    SCOPED_TRACE(cases[k].what);
    EXPECT_EQ(r.nodes[first_node[k]].cycles, cases[k].conv1_cycles);
  }
  // Link usage is reported per link, summed over every transfer that held it.
  uint64_t busy_sum = 0, expected = 0;
  for (const auto& l : r.links) busy_sum += l.busy_cycles;
  for (size_t i = 0; i < all.size(); ++i) expected += r.nodes[i].link_hop_cycles;
  EXPECT_EQ(busy_sum, expected);
  EXPECT_EQ(r.links.size(), 1020u);
}
