#include "sim/cost/analytical.h"

#include <algorithm>
#include <numeric>

#include "sim/config/component_registry.h"
#include "sim/mapping/schedule.h"

namespace imcsim::cost {

const char* component_name(Component c) {
  switch (c) {
    case Component::kAdc: return "adc";
    case Component::kDac: return "dac";
    case Component::kCrossbar: return "crossbar";
    case Component::kSampleHold: return "sample_hold";
    case Component::kShiftAdd: return "shift_add";
    case Component::kInputBuffer: return "input_buffer";
    case Component::kOutputBuffer: return "output_buffer";
    case Component::kGlobalBuffer: return "global_buffer";
    case Component::kInterconnect: return "interconnect";
    case Component::kDigital: return "digital";
    case Component::kFixedBlocks: return "fixed_blocks";
    case Component::kCount: break;
  }
  return "?";
}

double sum(const PerComponent& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

double adc_energy_pj_at(const config::ArchConfig& arch, uint32_t bits) {
  if (bits == arch.adc.bits) return arch.components.adc.energy_pj;
  const double at_config = config::default_adc_cost(arch.adc.kind, arch.adc.bits).energy_pj;
  const double at_bits = config::default_adc_cost(arch.adc.kind, bits).energy_pj;
  return arch.components.adc.energy_pj * (at_bits / at_config);
}

namespace {

double& at(PerComponent& v, Component c) { return v[static_cast<size_t>(c)]; }

// Bytes of one element of a tensor with the given quant (float outputs count 4 bytes).
double element_bytes(const graph::Quant& q) { return q.is_float() ? 4.0 : double(timing::ceil_div(q.bits, 8)); }

}  // namespace

CostReport analytical_cost(const graph::Graph& graph, const mapping::Mapping& mapping,
                           const config::ArchConfig& arch, const engine::EngineCounters& counters) {
  const auto& comp = arch.components;
  CostReport r;
  const uint32_t adcs_per_array = arch.array.cols / arch.adc.columns_per_adc;
  const auto schedule = mapping::build_schedule(graph, mapping, arch);
  size_t next_layer = 0;

  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const graph::Node& node = graph.nodes[i];
    NodeCost nc;
    nc.node = node.name;
    nc.op = graph::op_name(node.op);
    NodeEvents& ev = nc.events;
    const graph::Quant& in_q = graph.tensor_quant(node.inputs[0]);
    double in_elems = 0;
    for (int id : node.inputs) in_elems += double(graph.tensor_shape(id).elements());
    ev.global_buffer_bytes = in_elems * element_bytes(in_q) +
                             double(node.output_shape.elements()) * element_bytes(node.output_quant);

    if (std::holds_alternative<graph::ImcLayer>(node.op)) {
      const mapping::LayerMapping& lm = mapping.layers.at(next_layer++);
      const double P = lm.positions, T = lm.input_groups, S = lm.slices, G = lm.row_tiles;
      const double N = lm.cols_n, K = lm.rows_k;
      const double phys_cols = N * lm.physical_cols_per_weight_col;
      const mapping::NodeSchedule& sched = schedule[i];
      nc.input_steps = sched.imc.steps();
      nc.adc_conversion_cycles = sched.adc_conversion_cycles;
      nc.step_cycles = std::max(sched.imc.read_cycles, sched.imc.convert_cycles);
      nc.cycles = sched.analytical_cycles();

      const engine::ImcNodeCounters* c = i < counters.per_node.size() ? &counters.per_node[i] : nullptr;
      const bool measured = c && c->images > 0;
      // Driven rows per image: measured from the data, else every row every step (worst case).
      const double row_drives_per_col_tile =
          measured ? double(c->row_drives) / double(c->images) : P * T * K;
      ev.adc_conversions = P * G * S * T * N;
      ev.dac_row_drives = row_drives_per_col_tile * lm.col_tiles;
      ev.cell_reads = row_drives_per_col_tile * phys_cols;
      ev.sample_holds = P * T * G * phys_cols;
      ev.shift_adds = ev.adc_conversions;
      ev.input_buffer_bytes = P * K * element_bytes(in_q);
      ev.output_buffer_bytes = P * N * element_bytes(node.output_quant);
      ev.digital_ops = P * N * 4;  // corrections, scale, bias, requantise
      ev.macs = P * K * N;
      // Every position's input share and output vector cross the interconnect (schedule.h),
      // the positions spread over the weight copies.
      ev.interconnect_bit_hops = P * 8.0 * (double(sched.gb_bytes_in_per_position) * sched.mean_hops_in +
                                            double(sched.gb_bytes_out_per_position) * sched.mean_hops_out);
      at(nc.energy_pj, Component::kAdc) = ev.adc_conversions * adc_energy_pj_at(arch, lm.adc_bits);
    } else {
      ev.digital_ops = static_cast<double>(schedule[i].digital_ops);
      ev.macs = static_cast<double>(schedule[i].digital_macs);
      nc.cycles = schedule[i].analytical_cycles();
    }
    at(nc.energy_pj, Component::kDac) = ev.dac_row_drives * comp.dac.energy_pj;
    at(nc.energy_pj, Component::kCrossbar) = ev.cell_reads * comp.crossbar_cell.energy_pj;
    at(nc.energy_pj, Component::kSampleHold) = ev.sample_holds * comp.sample_hold.energy_pj;
    at(nc.energy_pj, Component::kShiftAdd) = ev.shift_adds * comp.shift_add.energy_pj;
    at(nc.energy_pj, Component::kInputBuffer) = ev.input_buffer_bytes * comp.input_buffer.energy_pj;
    at(nc.energy_pj, Component::kOutputBuffer) = ev.output_buffer_bytes * comp.output_buffer.energy_pj;
    at(nc.energy_pj, Component::kGlobalBuffer) = ev.global_buffer_bytes * comp.global_buffer.energy_pj;
    at(nc.energy_pj, Component::kInterconnect) = ev.interconnect_bit_hops * comp.interconnect.energy_pj;
    at(nc.energy_pj, Component::kDigital) = ev.digital_ops * comp.digital_op.energy_pj;

    r.cycles_per_image += nc.cycles;
    r.macs_per_image += ev.macs;
    for (size_t k = 0; k < kComponentCount; ++k) r.energy_pj_per_image_by_component[k] += nc.energy_pj[k];
    r.nodes.push_back(std::move(nc));
  }

  // Area: instances x area per instance.
  const double arrays = double(arch.chip.tiles) * arch.tile.arrays_per_tile;
  auto& a = r.chip_area_um2;
  at(a, Component::kAdc) = arrays * adcs_per_array * comp.adc.area_um2;
  at(a, Component::kDac) = arrays * arch.array.rows * comp.dac.area_um2;
  at(a, Component::kCrossbar) = arrays * arch.array.rows * arch.array.cols * comp.crossbar_cell.area_um2;
  at(a, Component::kSampleHold) = arrays * arch.array.cols * comp.sample_hold.area_um2;
  at(a, Component::kShiftAdd) = double(arch.chip.tiles) * arch.tile.shift_add_units * comp.shift_add.area_um2;
  at(a, Component::kInputBuffer) = double(arch.chip.tiles) * double(arch.tile.input_buffer_bytes) * comp.input_buffer.area_um2;
  at(a, Component::kOutputBuffer) = double(arch.chip.tiles) * double(arch.tile.output_buffer_bytes) * comp.output_buffer.area_um2;
  at(a, Component::kGlobalBuffer) = double(arch.chip.global_buffer_bytes) * comp.global_buffer.area_um2;
  at(a, Component::kDigital) = double(arch.chip.tiles) * comp.digital_op.area_um2;  // one ALU per tile
  r.interconnect_links = config::interconnect_model(arch.interconnect.kind).link_count(arch.chip.tiles);
  at(a, Component::kInterconnect) = double(r.interconnect_links) * comp.interconnect.area_um2;

  // Leakage: instances per tile (as for area) x tiles used, plus the chip-level instances.
  {
    const double arrays_used_tiles = double(mapping.tiles_used) * arch.tile.arrays_per_tile;
    const double tiles_used = mapping.tiles_used;
    auto& l = r.leakage_power_mw_by_component;
    at(l, Component::kAdc) = arrays_used_tiles * adcs_per_array * comp.adc.leakage_mw;
    at(l, Component::kDac) = arrays_used_tiles * arch.array.rows * comp.dac.leakage_mw;
    at(l, Component::kCrossbar) =
        arrays_used_tiles * arch.array.rows * arch.array.cols * comp.crossbar_cell.leakage_mw;
    at(l, Component::kSampleHold) = arrays_used_tiles * arch.array.cols * comp.sample_hold.leakage_mw;
    at(l, Component::kShiftAdd) = tiles_used * arch.tile.shift_add_units * comp.shift_add.leakage_mw;
    at(l, Component::kInputBuffer) = tiles_used * double(arch.tile.input_buffer_bytes) * comp.input_buffer.leakage_mw;
    at(l, Component::kOutputBuffer) =
        tiles_used * double(arch.tile.output_buffer_bytes) * comp.output_buffer.leakage_mw;
    at(l, Component::kGlobalBuffer) = double(arch.chip.global_buffer_bytes) * comp.global_buffer.leakage_mw;
    at(l, Component::kInterconnect) = double(r.interconnect_links) * comp.interconnect.leakage_mw;
    at(l, Component::kDigital) = tiles_used * comp.digital_op.leakage_mw;
  }
  for (const auto& b : arch.fixed_blocks) {
    const double instances = b.per_tile ? b.count * arch.chip.tiles : b.count;
    at(a, Component::kFixedBlocks) += instances * b.area_um2;
    r.static_power_mw += (b.per_tile ? b.count * mapping.tiles_used : b.count) * b.power_mw;
  }
  r.chip_area_um2_total = sum(a);
  double chip_level_area = at(a, Component::kGlobalBuffer) + at(a, Component::kInterconnect);
  for (const auto& b : arch.fixed_blocks)
    if (!b.per_tile) chip_level_area += b.count * b.area_um2;
  const double tile_area = (r.chip_area_um2_total - chip_level_area) / arch.chip.tiles;
  r.used_area_um2 = tile_area * mapping.tiles_used + chip_level_area;

  r.dynamic_energy_pj_per_image_by_component = r.energy_pj_per_image_by_component;
  set_latency(r, r.cycles_per_image, arch.clock_mhz);
  return r;
}

void set_latency(CostReport& r, uint64_t cycles_per_image, double clock_mhz) {
  r.cycles_per_image = cycles_per_image;
  r.latency_ns_per_image = double(cycles_per_image) * 1000.0 / clock_mhz;
  // mW x ns = pJ: the fixed blocks and every leaking instance draw their power for the whole
  // latency.
  for (size_t k = 0; k < kComponentCount; ++k) {
    r.leakage_energy_pj_per_image_by_component[k] = r.leakage_power_mw_by_component[k] * r.latency_ns_per_image;
    r.energy_pj_per_image_by_component[k] =
        r.dynamic_energy_pj_per_image_by_component[k] + r.leakage_energy_pj_per_image_by_component[k];
  }
  r.energy_pj_per_image_by_component[static_cast<size_t>(Component::kFixedBlocks)] =
      r.static_power_mw * r.latency_ns_per_image;
  r.energy_pj_per_image = sum(r.energy_pj_per_image_by_component);
  const double energy_j = r.energy_pj_per_image * 1e-12;
  r.tops_per_watt = energy_j > 0 ? 2.0 * r.macs_per_image / energy_j * 1e-12 : 0;
  const double latency_s = r.latency_ns_per_image * 1e-9;
  r.tops = latency_s > 0 ? 2.0 * r.macs_per_image / latency_s * 1e-12 : 0;
  r.tops_per_mm2 = r.chip_area_um2_total > 0 ? r.tops / (r.chip_area_um2_total * 1e-6) : 0;
}

}  // namespace imcsim::cost
