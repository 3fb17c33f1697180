// Peak characteristics of an architecture, independent of any workload: power and area per
// tile and per chip with every array busy every step, and peak throughput and efficiency
// (ISAAC's Table I and its peak GOPS/W, GOPS/(s*mm2)). Component power = events at peak
// rate x energy + instances x leakage. Model: docs/cost_model.md, "Peak".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/config/arch_config.h"
#include "sim/cost/analytical.h"

namespace imcsim::cost {

struct PeakOptions {
  uint32_t weight_bits = 16;  // operand precision an "operation" is counted at
  uint32_t input_bits = 16;
};

struct NamedFigure {
  std::string name;
  double value = 0;
};

struct PeakReport {
  uint64_t step_cycles = 0;          // one array step: max(read, conversions of all columns)
  double step_ns = 0;
  PerComponent tile_power_mw_by_component{};  // event-driven components at peak rates
  std::vector<NamedFigure> tile_fixed_power_mw, tile_fixed_area_um2;  // fixed blocks, per tile
  double tile_power_mw = 0;          // total per tile
  PerComponent tile_area_um2_by_component{};
  double tile_area_um2 = 0;          // total per tile
  std::vector<NamedFigure> chip_fixed_power_mw, chip_fixed_area_um2;  // chip-level blocks
  double global_buffer_power_mw = 0;   // one full port width per port per cycle + leakage
  double interconnect_power_mw = 0;    // every link carrying link_bits per cycle + leakage
  double interconnect_area_um2 = 0;
  double chip_power_w = 0;           // tiles + global buffer + chip blocks
  double chip_area_mm2 = 0;
  double peak_macs_per_s = 0;        // at PeakOptions precision
  double peak_gops = 0;              // 2 ops per MAC
  double gops_per_w = 0;
  double gops_per_mm2 = 0;
};

PeakReport peak_characteristics(const config::ArchConfig& arch, const PeakOptions& options);

}  // namespace imcsim::cost
