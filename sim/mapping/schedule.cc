#include "sim/mapping/schedule.h"

#include <algorithm>

#include "sim/config/component_registry.h"

namespace imcsim::mapping {

namespace {
uint64_t element_bytes(const graph::Quant& q) { return q.is_float() ? 4 : timing::ceil_div(q.bits, 8); }
}  // namespace

DigitalWork digital_node_work(const graph::Graph& graph, const graph::Node& node) {
  const uint64_t out = node.output_shape.elements();
  const graph::Shape& in0 = graph.tensor_shape(node.inputs[0]);
  DigitalWork w;
  if (const auto* mp = std::get_if<graph::MaxPool>(&node.op)) {
    w.ops = out * (uint64_t{mp->kernel_h} * mp->kernel_w - 1);
  } else if (const auto* ap = std::get_if<graph::AvgPool>(&node.op)) {
    w.ops = out * (uint64_t{ap->kernel_h} * ap->kernel_w + 2);
  } else if (std::holds_alternative<graph::Add>(node.op) || std::holds_alternative<graph::AddConstant>(node.op)) {
    w.ops = out * 3;
  } else if (std::holds_alternative<graph::Relu>(node.op)) {
    w.ops = out * 2;
  } else if (const auto* l = std::get_if<graph::DigitalLayer>(&node.op)) {
    const uint64_t positions = out / l->out_channels;  // output pixels, tokens or 1
    w.macs = positions * l->rows_per_group() * l->out_channels;
    w.ops = 2 * w.macs + 4 * out;  // MACs, then scale, bias, activation, requantise
  } else if (std::holds_alternative<graph::GlobalAvgPool>(node.op)) {
    w.ops = in0.elements() + 2 * out;
  } else if (std::holds_alternative<graph::Concat>(node.op)) {
    for (int id : node.inputs)  // requantised parts: scale and requantise; equal quants: a move
      if (!(graph.tensor_quant(id) == node.output_quant)) w.ops += 2 * graph.tensor_shape(id).elements();
  } else if (const auto* a = std::get_if<graph::AttentionScores>(&node.op)) {
    w.macs = out * (in0.dims[1] / a->heads);  // [heads][T][T2] outputs of head size each
    w.ops = 2 * w.macs + 2 * out;
  } else if (std::holds_alternative<graph::AttentionContext>(node.op)) {
    w.macs = out * in0.dims[2];  // [T][D] outputs, T2 terms each
    w.ops = 2 * w.macs + 2 * out;
  } else if (std::holds_alternative<graph::Softmax>(node.op)) {
    w.ops = 5 * out;  // max, difference, table, sum, divide + requantise
  } else if (std::holds_alternative<graph::LayerNorm>(node.op)) {
    const uint64_t d = in0.dims.back();
    w.ops = (out / d) * (10 * d + 64);  // statistics 5D, integer square root 64, normalise + affine 5D
  } else if (std::holds_alternative<graph::Lut>(node.op)) {
    w.ops = out;
  }
  return w;  // Flatten and ToTokens are re-indexings
}

std::vector<NodeSchedule> build_schedule(const graph::Graph& graph, const Mapping& mapping,
                                         const config::ArchConfig& arch) {
  std::vector<NodeSchedule> out;
  const uint32_t adcs_per_array = arch.array.cols / arch.adc.columns_per_adc;
  size_t next_layer = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const graph::Node& node = graph.nodes[i];
    NodeSchedule s;
    s.node_index = i;
    s.node = node.name;
    s.op = graph::op_name(node.op);
    if (std::holds_alternative<graph::ImcLayer>(node.op)) {
      const LayerMapping& lm = mapping.layers.at(next_layer++);
      s.is_imc = true;
      s.arrays = lm.arrays;
      s.adc_conversion_cycles = config::adc_conversion_cycles(arch.adc, lm.adc_bits);
      timing::LayerTimingParams& p = s.imc;
      p.positions = timing::ceil_div(lm.positions, lm.replication);  // copies split the positions
      p.groups = lm.input_groups;
      p.read_cycles = arch.array.read_cycles;
      p.convert_cycles = timing::adc_bank_cycles(uint64_t{lm.weight_cols_per_array} * lm.slices,
                                                 adcs_per_array, s.adc_conversion_cycles);
      const auto& in_q = graph.tensor_quant(node.inputs[0]);
      p.fetch_cycles = timing::bus_transfer_cycles(uint64_t{lm.rows_k} * element_bytes(in_q),
                                                   arch.chip.buffer_bus_bits);
      p.write_cycles = timing::bus_transfer_cycles(uint64_t{lm.cols_n} * element_bytes(node.output_quant),
                                                   arch.chip.buffer_bus_bits);
      // Global buffer <-> home tile over the interconnect (docs/timing_model.md).
      const auto& net = config::interconnect_model(arch.interconnect.kind);
      s.home_tile = lm.first_tile;
      const uint64_t arrays_per_copy = uint64_t{lm.row_tiles} * lm.col_tiles;
      for (uint32_t c = 0; c < std::max<uint32_t>(lm.replication, 1); ++c) {
        const auto home = static_cast<uint32_t>(lm.first_tile + c * arrays_per_copy / arch.tile.arrays_per_tile);
        s.copy_paths_in.push_back(net.path(home, arch.chip.tiles, true));
        s.copy_paths_out.push_back(net.path(home, arch.chip.tiles, false));
        s.mean_hops_in += double(s.copy_paths_in.back().size()) / double(std::max<uint32_t>(lm.replication, 1));
        s.mean_hops_out += double(s.copy_paths_out.back().size()) / double(std::max<uint32_t>(lm.replication, 1));
      }
      s.link_path_in = s.copy_paths_in.front();
      s.link_path_out = s.copy_paths_out.front();
      const uint64_t in_bytes = graph.tensor_shape(node.inputs[0]).elements() * element_bytes(in_q);
      s.gb_bytes_in_per_position = timing::ceil_div(in_bytes, std::max<uint64_t>(lm.positions, 1));
      s.gb_bytes_out_per_position = uint64_t{lm.cols_n} * element_bytes(node.output_quant);
      const auto& ic = arch.interconnect;
      p.gb_read_cycles = timing::bus_transfer_cycles(s.gb_bytes_in_per_position, arch.chip.global_buffer_port_bits);
      p.link_in_cycles = timing::link_transfer_cycles(s.gb_bytes_in_per_position, s.link_path_in.size(),
                                                      ic.hop_cycles, ic.link_bits);
      p.link_out_cycles = timing::link_transfer_cycles(s.gb_bytes_out_per_position, s.link_path_out.size(),
                                                       ic.hop_cycles, ic.link_bits);
      p.gb_write_cycles = timing::bus_transfer_cycles(s.gb_bytes_out_per_position, arch.chip.global_buffer_port_bits);
    } else {
      const DigitalWork work = digital_node_work(graph, node);
      s.digital_ops = work.ops;
      s.digital_macs = work.macs;
      s.digital_cycles = timing::ceil_div(s.digital_ops, arch.tile.shift_add_units);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace imcsim::mapping
