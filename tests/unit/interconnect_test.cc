// The component registry (ADC and interconnect kinds), the interconnect topologies' paths,
// the global buffer / interconnect keys of the arch config, and the schedule's delivery
// cycles at each boundary (link width +-1, hops, port width), all hand-derived.
#include <cmath>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/config/arch_config.h"
#include "sim/config/component_registry.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "sim/mapping/schedule.h"

using namespace imcsim;
using namespace imcsim::config;
using nlohmann::json;

namespace {

std::string config_error(const json& j) {
  try {
    parse_arch_config(j, "a.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for " << j.dump();
  return {};
}

}  // namespace

TEST(ComponentRegistry, NamesAndUnknownNamesComeFromTheRegistry) {
  EXPECT_EQ(adc_registry().expected(), "sar, flash, ramp, nl-imc");
  EXPECT_EQ(interconnect_registry().expected(), "bus, htree, mesh");
  try {
    adc_registry().get("x");
    FAIL();
  } catch (const UnknownComponent& e) {
    EXPECT_STREQ(e.what(), "unknown ADC kind \"x\" (expected one of: sar, flash, ramp, nl-imc)");
  }
  try {
    interconnect_registry().get("ring");
    FAIL();
  } catch (const UnknownComponent& e) {
    EXPECT_STREQ(e.what(), "unknown interconnect kind \"ring\" (expected one of: bus, htree, mesh)");
  }
  // The config reports the registry's message with the file and the JSON pointer.
  EXPECT_EQ(config_error(json{{"adc", {{"kind", "x"}}}}),
            "a.json: /adc/kind: unknown ADC kind \"x\" (expected one of: sar, flash, ramp, nl-imc)");
  EXPECT_EQ(config_error(json{{"interconnect", {{"kind", "ring"}}}}),
            "a.json: /interconnect/kind: unknown interconnect kind \"ring\" (expected one of: bus, htree, mesh)");
  for (const auto& name : adc_registry().names())
    EXPECT_EQ(to_string(adc_registry().get(name).kind()), name);
  for (const auto& name : interconnect_registry().names())
    EXPECT_EQ(to_string(interconnect_registry().get(name).kind()), name);
}

TEST(ComponentRegistry, AdcKindsTimingAndCost) {
  const AdcModel& nl = adc_registry().get("nl-imc");
  EXPECT_EQ(nl.conversion_cycles(4), 16u);  // 2^4 reference-row steps
  EXPECT_EQ(adc_registry().get("sar").conversion_cycles(6), 6u);
  EXPECT_EQ(adc_registry().get("flash").conversion_cycles(6), 1u);
  EXPECT_EQ(adc_registry().get("ramp").conversion_cycles(6), 64u);
  // NL-ADC: 2^N comparator decisions of 1.67/256 pJ, one comparator of 1200/256 um^2.
  EXPECT_DOUBLE_EQ(nl.default_cost(4).energy_pj, 16 * 1.67 / 256);
  EXPECT_DOUBLE_EQ(nl.default_cost(4).area_um2, 1200.0 / 256);
  const ArchConfig c = parse_arch_config(json{{"adc", {{"kind", "nl-imc"}, {"bits", 4}}}}, "a.json");
  EXPECT_EQ(c.adc.kind, AdcKind::kNlImc);
  EXPECT_EQ(adc_conversion_cycles(c.adc, 3), 8u);
  EXPECT_EQ(to_json(c)["adc"]["kind"], "nl-imc");
}

TEST(Interconnect, BusHtreeAndMeshPaths) {
  const auto& bus = interconnect_registry().get("bus");
  EXPECT_EQ(bus.link_count(168), 1u);
  EXPECT_EQ(bus.path(100, 168, true), std::vector<uint32_t>{0});
  EXPECT_EQ(bus.path(100, 168, false), std::vector<uint32_t>{0});

  // H-tree over 168 tiles: 2^8 = 256 leaves, 8 levels, 510 edges, each with a down and an up link.
  const auto& htree = interconnect_registry().get("htree");
  EXPECT_EQ(htree.link_count(168), 1020u);
  // Tile 5 = leaf 256 + 5 = 261 (binary 1 0000 0101): children 2, 4, 8, 16, 32, 65, 130, 261.
  const std::vector<uint32_t> down = {0, 2, 6, 14, 30, 63, 128, 259};
  EXPECT_EQ(htree.path(5, 168, true), down);
  const std::vector<uint32_t> up = {510 + 259, 510 + 128, 510 + 63, 510 + 30, 510 + 14, 510 + 6, 510 + 2, 510 + 0};
  EXPECT_EQ(htree.path(5, 168, false), up);
  // Tiles 0 and 1 share every link but the last.
  EXPECT_EQ(htree.path(0, 168, true).back(), 254u);
  EXPECT_EQ(htree.path(1, 168, true).back(), 255u);
  EXPECT_EQ(htree.path(1, 2, true), std::vector<uint32_t>{1});  // 2 tiles: one level
  EXPECT_EQ(htree.link_count(1), 4u);                           // at least one level

  // Mesh over 168 tiles: 13 x 13 routers; tile 14 = (1, 1).
  const auto& mesh = interconnect_registry().get("mesh");
  EXPECT_EQ(mesh.link_count(168), 4u * 169 + 2);
  // Injection (676), east from router (0,0) (id 0), south from router (1,0) (id 4*1+2).
  EXPECT_EQ(mesh.path(14, 168, true), (std::vector<uint32_t>{676, 0, 6}));
  // North from router (1,1) (4*14+3), west from router (1,0) (4*1+1), ejection (677).
  EXPECT_EQ(mesh.path(14, 168, false), (std::vector<uint32_t>{59, 5, 677}));
  EXPECT_EQ(mesh.path(0, 168, true), std::vector<uint32_t>{676});
  EXPECT_EQ(mesh.link_name(6, 168), "mesh router (1,0) -> S");
  EXPECT_EQ(mesh.path(167, 168, true).size(), 1u + 11 + 12);  // (11, 12)
}

TEST(Interconnect, ConfigKeysDefaultsAndErrors) {
  const ArchConfig c = parse_arch_config(json::object(), "a.json");
  EXPECT_EQ(c.interconnect.kind, InterconnectKind::kBus);
  EXPECT_EQ(c.interconnect.link_bits, 256u);
  EXPECT_EQ(c.interconnect.hop_cycles, 1u);
  EXPECT_EQ(c.chip.global_buffer_ports, 2u);
  EXPECT_EQ(c.chip.global_buffer_port_bits, 256u);
  EXPECT_EQ(c.technology_nm, 32u);
  EXPECT_EQ(parse_arch_config(to_json(c), "a.json").interconnect, c.interconnect);

  EXPECT_EQ(config_error(json{{"interconnect", {{"link_bits", 0}}}}),
            "a.json: /interconnect/link_bits: out of range: expected an integer in 1..4294967295, got 0");
  EXPECT_NE(config_error(json{{"chip", {{"global_buffer_port_bits", 0}}}})
                .find("/chip/global_buffer_port_bits: out of range"), std::string::npos);
  EXPECT_NE(config_error(json{{"chip", {{"global_buffer_ports", 0}}}}).find("/chip/global_buffer_ports: out of range"),
            std::string::npos);
  EXPECT_NE(config_error(json{{"chip", {{"buffer_bus_bits", 0}}}}).find("/chip/buffer_bus_bits: out of range"),
            std::string::npos);
  EXPECT_NE(config_error(json{{"interconnect", {{"hops", 1}}}}).find("/interconnect/hops: unknown key"),
            std::string::npos);
  EXPECT_NE(config_error(json{{"adc", {{"columns_per_adc", 3}}}}).find("/adc/columns_per_adc: must divide"),
            std::string::npos);
  EXPECT_NE(config_error(json{{"technology_nm", 0}}).find("/technology_nm: out of range"), std::string::npos);
}

TEST(ComponentLibrary, TechnologyScalingLeakageOverridesAndMurmannEnvelope) {
  // 16 nm: default energies x 16/32, areas x (16/32)^2; a user figure is kept as given.
  const ArchConfig c = parse_arch_config(
      json{{"technology_nm", 16}, {"components", {{"dac", {{"energy_pj", 1.0}, {"leakage_mw", 0.25}}}}}}, "a.json");
  EXPECT_DOUBLE_EQ(c.components.adc.energy_pj, 1.67 * 0.5);
  EXPECT_DOUBLE_EQ(c.components.adc.area_um2, 1200.0 * 0.25);
  EXPECT_NE(c.components.adc.source.find("scaled from 32 nm to 16 nm"), std::string::npos);
  EXPECT_DOUBLE_EQ(c.components.dac.energy_pj, 1.0);
  EXPECT_DOUBLE_EQ(c.components.dac.leakage_mw, 0.25);
  EXPECT_DOUBLE_EQ(c.components.dac.area_um2, 0.166 * 0.25);
  EXPECT_DOUBLE_EQ(c.components.interconnect.energy_pj, 0.2 * 610 * 1e-3 * 0.5);
  // Clock as a parameter: the default read is ISAAC's 100 ns at the configured clock.
  EXPECT_EQ(parse_arch_config(json{{"clock_mhz", 1000.0}}, "a.json").array.read_cycles, 100u);
  EXPECT_EQ(parse_arch_config(json{{"clock_mhz", 1001.0}}, "a.json").array.read_cycles, 101u);
  // Murmann envelope: 0.669 fJ x sqrt(1 + (1/1.221)^2) x 2^8 = 0.2214 pJ at 8 bits, 1 GS/s.
  EXPECT_NEAR(murmann_envelope_energy_pj(8, 1e9), 0.669e-3 * std::sqrt(1 + std::pow(1 / 1.221, 2)) * 256, 1e-12);
  EXPECT_NEAR(murmann_envelope_energy_pj(8, 1e9), 0.2214, 1e-4);
  // A configured ADC energy below the envelope is flagged in the notes.
  const ArchConfig low = parse_arch_config(json{{"components", {{"adc", {{"energy_pj", 0.01}}}}}}, "a.json");
  bool flagged = false;
  for (const auto& n : low.notes) flagged |= n.find("Murmann") != std::string::npos;
  EXPECT_TRUE(flagged);
}

// Delivery cycles of the bundled CNN's layers (conv1 on tile 0: 1 input byte per position,
// 16 output bytes; conv2 on tile 1; fc1 on tile 2: 1568 input bytes, 64 output bytes).
TEST(Interconnect, ScheduleDeliveryCyclesAtEachBoundary) {
  const std::filesystem::path root = IMCSIM_SOURCE_DIR;
  const auto graph = graph::load_graph(root / "workloads/fmnist_cnn/fmnist_cnn.imcg");
  auto schedule_for = [&](const json& j) {
    const ArchConfig arch = parse_arch_config(j, "a.json");
    return mapping::build_schedule(graph, mapping::map_graph(graph, mapping::ArrayGeometry::from(arch)), arch);
  };
  struct Expect {
    const char* what;
    json config;
    size_t node;
    uint64_t gb_read, link_in, link_out, gb_write;
  };
  const std::vector<Expect> cases = {
      // default: bus, 256-bit links, 1 cycle per hop, 256-bit ports.
      {"default conv1", json::object(), 0, 1, 1 + 1, 1 + 1, 1},
      {"default fc1", json::object(), 5, 49, 1 + 49, 1 + 2, 2},  // 12544 bits / 256 = 49; 512 / 256 = 2
      // link width at the output vector's 128 bits: 128 -> 1 cycle, 127 -> 2, 129 -> 1.
      {"link 128", json{{"interconnect", {{"link_bits", 128}}}}, 0, 1, 2, 1 + 1, 1},
      {"link 127", json{{"interconnect", {{"link_bits", 127}}}}, 0, 1, 2, 1 + 2, 1},
      {"link 129", json{{"interconnect", {{"link_bits", 129}}}}, 0, 1, 2, 1 + 1, 1},
      // link width at the 8-bit input share: 8 -> 1 cycle, 7 -> 2; output 128 / 7 -> 19.
      {"link 8", json{{"interconnect", {{"link_bits", 8}}}}, 0, 1, 1 + 1, 1 + 16, 1},
      {"link 7", json{{"interconnect", {{"link_bits", 7}}}}, 0, 1, 1 + 2, 1 + 19, 1},
      {"hop 3", json{{"interconnect", {{"hop_cycles", 3}}}}, 0, 1, 3 + 1, 3 + 1, 1},
      {"hop 0", json{{"interconnect", {{"hop_cycles", 0}}}}, 0, 1, 1, 1, 1},
      // H-tree over 168 tiles: 8 hops for every tile.
      {"htree conv1", json{{"interconnect", {{"kind", "htree"}}}}, 0, 1, 8 + 1, 8 + 1, 1},
      // Mesh 13 x 13: tile 0 one hop (injection), tile 1 two, tile 2 three.
      {"mesh conv1", json{{"interconnect", {{"kind", "mesh"}}}}, 0, 1, 1 + 1, 1 + 1, 1},
      {"mesh conv2", json{{"interconnect", {{"kind", "mesh"}}}}, 2, 1, 2 + 1, 2 + 1, 1},
      {"mesh fc1", json{{"interconnect", {{"kind", "mesh"}}}}, 5, 49, 3 + 49, 3 + 2, 2},
      // Port width at the output vector's 128 bits: 128 -> 1, 127 -> 2; 8 bits -> 16.
      {"port 128", json{{"chip", {{"global_buffer_port_bits", 128}}}}, 0, 1, 2, 2, 1},
      {"port 127", json{{"chip", {{"global_buffer_port_bits", 127}}}}, 0, 1, 2, 2, 2},
      {"port 8", json{{"chip", {{"global_buffer_port_bits", 8}}}}, 0, 1, 2, 2, 16},
      {"port 7", json{{"chip", {{"global_buffer_port_bits", 7}}}}, 0, 2, 2, 2, 19},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const auto s = schedule_for(c.config);
    const auto& p = s.at(c.node).imc;
    ASSERT_TRUE(s[c.node].is_imc);
    EXPECT_EQ(p.gb_read_cycles, c.gb_read);
    EXPECT_EQ(p.link_in_cycles, c.link_in);
    EXPECT_EQ(p.link_out_cycles, c.link_out);
    EXPECT_EQ(p.gb_write_cycles, c.gb_write);
    EXPECT_EQ(p.input_delivery_cycles(), c.gb_read + c.link_in + p.fetch_cycles);
    EXPECT_EQ(p.output_delivery_cycles(), p.write_cycles + c.link_out + c.gb_write);
  }
}
