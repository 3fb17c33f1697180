#include "sim/mapping/schedule.h"

namespace imcsim::mapping {

namespace {
uint64_t element_bytes(const graph::Quant& q) { return q.is_float() ? 4 : timing::ceil_div(q.bits, 8); }
}  // namespace

uint64_t digital_node_ops(const graph::Node& node) {
  const uint64_t out = node.output_shape.elements();
  if (const auto* mp = std::get_if<graph::MaxPool>(&node.op)) return out * (uint64_t{mp->kernel_h} * mp->kernel_w - 1);
  if (const auto* ap = std::get_if<graph::AvgPool>(&node.op)) return out * (uint64_t{ap->kernel_h} * ap->kernel_w + 2);
  if (std::holds_alternative<graph::Add>(node.op)) return out * 3;
  if (std::holds_alternative<graph::Relu>(node.op)) return out * 2;
  return 0;  // Flatten is a re-indexing
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
    } else {
      s.digital_ops = digital_node_ops(node);
      s.digital_cycles = timing::ceil_div(s.digital_ops, arch.tile.shift_add_units);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace imcsim::mapping
