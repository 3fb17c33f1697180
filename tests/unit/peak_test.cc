// Peak characteristics: the ISAAC-like preset reproduces ISAAC's Table I (corrected version):
// tile 330 mW / 0.372 mm2 and chip 65.8 W / 85.4 mm2 within 5 %, peak 627.5 GOPS/W and
// 478.95 GOPS/(s*mm2) within 10 %. Plus a hand-derived peak of a small config.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sim/config/arch_config.h"
#include "sim/cost/peak.h"

using namespace imcsim;

namespace {
void expect_within(double got, double published, double tolerance, const char* what) {
  EXPECT_LE(std::abs(got - published) / published, tolerance)
      << what << ": " << got << " vs published " << published;
}
}  // namespace

TEST(Peak, IsaacLikePresetReproducesTableI) {
  const auto arch = config::load_arch_config(std::string(IMCSIM_SOURCE_DIR) + "/arch_configs/isaac_like.json");
  const auto r = cost::peak_characteristics(arch, {16, 16});
  EXPECT_EQ(r.step_cycles, 128u);  // 100 ns crossbar read at 1.28 GHz; 128 columns x 1 cycle per conversion
  expect_within(r.tile_power_mw, 330.0, 0.05, "tile power (mW)");
  expect_within(r.tile_area_um2 * 1e-6, 0.372, 0.05, "tile area (mm2)");
  expect_within(r.chip_power_w, 65.8, 0.05, "chip power (W)");
  expect_within(r.chip_area_mm2, 85.4, 0.05, "chip area (mm2)");
  expect_within(r.gops_per_w, 627.5, 0.10, "GOPS/W");
  expect_within(r.gops_per_mm2, 478.95, 0.10, "GOPS/(s*mm2)");
  // ADCs: 58 % of tile power and 31 % of tile area in ISAAC.
  const double adc_power = r.tile_power_mw_by_component[static_cast<size_t>(cost::Component::kAdc)];
  const double adc_area = r.tile_area_um2_by_component[static_cast<size_t>(cost::Component::kAdc)];
  EXPECT_NEAR(adc_power / r.tile_power_mw, 0.58, 0.01);
  EXPECT_NEAR(adc_area / r.tile_area_um2, 0.31, 0.01);
}

TEST(Peak, HandDerivedSmallConfig) {
  // 2 tiles x 1 array of 4x8 cells (2-bit), one 4-bit SAR ADC per 4 columns (2 per array),
  // read 10 cycles; step = max(10, 4 columns x 4 cycles) = 16 cycles at 1000 MHz = 16 ns.
  nlohmann::json j = {{"clock_mhz", 1000.0},
                      {"array", {{"rows", 4}, {"cols", 8}, {"cell_bits", 2}, {"read_cycles", 10}}},
                      {"adc", {{"kind", "sar"}, {"bits", 4}, {"columns_per_adc", 4}}},
                      {"tile", {{"arrays_per_tile", 1}, {"shift_add_units", 1}, {"input_buffer_bytes", 1},
                                {"output_buffer_bytes", 1}}},
                      {"chip", {{"tiles", 2}, {"global_buffer_bytes", 1}, {"buffer_bus_bits", 8}}},
                      {"components", {{"adc", {{"energy_pj", 2.0}, {"area_um2", 100.0}}}}},
                      {"fixed_blocks", {{{"name", "router"}, {"count", 0.5}, {"power_mw", 4.0}, {"area_um2", 10.0}},
                                        {{"name", "io"}, {"per", "chip"}, {"power_mw", 1.0}, {"area_um2", 1000.0}}}}};
  const auto arch = config::parse_arch_config(j, "small.json");
  const auto r = cost::peak_characteristics(arch, {8, 8});
  EXPECT_EQ(r.step_cycles, 16u);
  // ADC: 8 conversions per 16 ns x 2 pJ = 1 mW per tile.
  EXPECT_DOUBLE_EQ(r.tile_power_mw_by_component[static_cast<size_t>(cost::Component::kAdc)], 1.0);
  EXPECT_DOUBLE_EQ(r.tile_area_um2_by_component[static_cast<size_t>(cost::Component::kAdc)], 200.0);
  ASSERT_EQ(r.tile_fixed_power_mw.size(), 1u);
  EXPECT_DOUBLE_EQ(r.tile_fixed_power_mw[0].value, 2.0);  // half a 4 mW router per tile
  ASSERT_EQ(r.chip_fixed_area_um2.size(), 1u);
  EXPECT_DOUBLE_EQ(r.chip_fixed_area_um2[0].value, 1000.0);
  // MACs at 8-bit x 8-bit: 2 tiles x 4 x 8 cells / (4 slices x 8 groups) per 16 ns = 0.125 G MAC/s.
  EXPECT_DOUBLE_EQ(r.peak_macs_per_s, 2.0 * 4 * 8 / (4.0 * 8.0) / 16e-9);
  EXPECT_DOUBLE_EQ(r.peak_gops, 2 * r.peak_macs_per_s * 1e-9);
}
