#include "sim/cost/peak.h"

#include <algorithm>

#include "sim/config/component_registry.h"

namespace imcsim::cost {

namespace {
double& at(PerComponent& v, Component c) { return v[static_cast<size_t>(c)]; }
uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
}  // namespace

PeakReport peak_characteristics(const config::ArchConfig& arch, const PeakOptions& options) {
  const auto& comp = arch.components;
  PeakReport r;
  const double clock_hz = arch.clock_mhz * 1e6;
  const uint32_t conv_cycles = config::adc_conversion_cycles(arch.adc, arch.adc.bits);
  // Every column of every array is converted each step; each ADC serves columns_per_adc.
  r.step_cycles = std::max<uint64_t>(arch.array.read_cycles, uint64_t{arch.adc.columns_per_adc} * conv_cycles);
  r.step_ns = double(r.step_cycles) * 1e9 / clock_hz;
  const double steps_per_s = clock_hz / double(r.step_cycles);
  const double arrays = arch.tile.arrays_per_tile;
  const double rows = arch.array.rows, cols = arch.array.cols;
  const double adcs_per_array = double(arch.array.cols / arch.adc.columns_per_adc);
  const double bus_bytes_per_s = double(arch.chip.buffer_bus_bits) / 8.0 * clock_hz;
  constexpr double kPjPerSToMw = 1e-9;  // pJ/s -> mW

  // Event-driven components at their peak rates, per tile.
  PerComponent& p = r.tile_power_mw_by_component;
  at(p, Component::kAdc) = arrays * cols * steps_per_s * comp.adc.energy_pj * kPjPerSToMw;
  at(p, Component::kDac) = arrays * rows * steps_per_s * comp.dac.energy_pj * kPjPerSToMw;
  at(p, Component::kCrossbar) = arrays * rows * cols * steps_per_s * comp.crossbar_cell.energy_pj * kPjPerSToMw;
  at(p, Component::kSampleHold) = arrays * cols * steps_per_s * comp.sample_hold.energy_pj * kPjPerSToMw;
  at(p, Component::kShiftAdd) = arrays * cols * steps_per_s * comp.shift_add.energy_pj * kPjPerSToMw;
  // Buffers: one full-width bus transfer per cycle; the digital ALU: one op per cycle.
  at(p, Component::kInputBuffer) = bus_bytes_per_s * comp.input_buffer.energy_pj * kPjPerSToMw;
  at(p, Component::kOutputBuffer) = bus_bytes_per_s * comp.output_buffer.energy_pj * kPjPerSToMw;
  at(p, Component::kDigital) = clock_hz * comp.digital_op.energy_pj * kPjPerSToMw;

  PerComponent& a = r.tile_area_um2_by_component;
  at(a, Component::kAdc) = arrays * adcs_per_array * comp.adc.area_um2;
  at(a, Component::kDac) = arrays * rows * comp.dac.area_um2;
  at(a, Component::kCrossbar) = arrays * rows * cols * comp.crossbar_cell.area_um2;
  at(a, Component::kSampleHold) = arrays * cols * comp.sample_hold.area_um2;
  at(a, Component::kShiftAdd) = double(arch.tile.shift_add_units) * comp.shift_add.area_um2;
  at(a, Component::kInputBuffer) = double(arch.tile.input_buffer_bytes) * comp.input_buffer.area_um2;
  at(a, Component::kOutputBuffer) = double(arch.tile.output_buffer_bytes) * comp.output_buffer.area_um2;
  at(a, Component::kDigital) = comp.digital_op.area_um2;  // one ALU per tile

  // Leakage of every tile instance (instances as for area).
  at(p, Component::kAdc) += arrays * adcs_per_array * comp.adc.leakage_mw;
  at(p, Component::kDac) += arrays * rows * comp.dac.leakage_mw;
  at(p, Component::kCrossbar) += arrays * rows * cols * comp.crossbar_cell.leakage_mw;
  at(p, Component::kSampleHold) += arrays * cols * comp.sample_hold.leakage_mw;
  at(p, Component::kShiftAdd) += double(arch.tile.shift_add_units) * comp.shift_add.leakage_mw;
  at(p, Component::kInputBuffer) += double(arch.tile.input_buffer_bytes) * comp.input_buffer.leakage_mw;
  at(p, Component::kOutputBuffer) += double(arch.tile.output_buffer_bytes) * comp.output_buffer.leakage_mw;
  at(p, Component::kDigital) += comp.digital_op.leakage_mw;

  for (const auto& b : arch.fixed_blocks) {
    auto& power = b.per_tile ? r.tile_fixed_power_mw : r.chip_fixed_power_mw;
    auto& area = b.per_tile ? r.tile_fixed_area_um2 : r.chip_fixed_area_um2;
    power.push_back({b.name, b.count * b.power_mw});
    area.push_back({b.name, b.count * b.area_um2});
  }
  auto total = [](const std::vector<NamedFigure>& v) {
    double s = 0;
    for (const auto& f : v) s += f.value;
    return s;
  };
  r.tile_power_mw = sum(p) + total(r.tile_fixed_power_mw);
  r.tile_area_um2 = sum(a) + total(r.tile_fixed_area_um2);
  const double gb_bytes_per_s =
      double(arch.chip.global_buffer_ports) * double(arch.chip.global_buffer_port_bits) / 8.0 * clock_hz;
  r.global_buffer_power_mw = gb_bytes_per_s * comp.global_buffer.energy_pj * kPjPerSToMw +
                             double(arch.chip.global_buffer_bytes) * comp.global_buffer.leakage_mw;
  const double global_area_um2 = double(arch.chip.global_buffer_bytes) * comp.global_buffer.area_um2;
  const double links = config::interconnect_model(arch.interconnect.kind).link_count(arch.chip.tiles);
  r.interconnect_power_mw =
      links * double(arch.interconnect.link_bits) * clock_hz * comp.interconnect.energy_pj * kPjPerSToMw +
      links * comp.interconnect.leakage_mw;
  r.interconnect_area_um2 = links * comp.interconnect.area_um2;
  r.chip_power_w = (double(arch.chip.tiles) * r.tile_power_mw + r.global_buffer_power_mw + r.interconnect_power_mw +
                    total(r.chip_fixed_power_mw)) * 1e-3;
  r.chip_area_mm2 = (double(arch.chip.tiles) * r.tile_area_um2 + global_area_um2 + r.interconnect_area_um2 +
                     total(r.chip_fixed_area_um2)) * 1e-6;

  // Peak throughput: a MAC at the given precision needs ceil(Bw/Bc) columns and
  // ceil(Bx/Bdac) steps.
  const double slices = double(ceil_div(options.weight_bits, arch.array.cell_bits));
  const double groups = double(ceil_div(options.input_bits, arch.dac.bits));
  r.peak_macs_per_s = double(arch.chip.tiles) * arrays * rows * cols / (slices * groups) * steps_per_s;
  r.peak_gops = 2.0 * r.peak_macs_per_s * 1e-9;
  r.gops_per_w = r.chip_power_w > 0 ? r.peak_gops / r.chip_power_w : 0;
  r.gops_per_mm2 = r.chip_area_mm2 > 0 ? r.peak_gops / r.chip_area_mm2 : 0;
  return r;
}

}  // namespace imcsim::cost
