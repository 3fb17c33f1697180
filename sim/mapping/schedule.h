// The per-node timing schedule of a mapped graph: for every node, the pipeline parameters
// (models/tile/pipeline_timing.h) or the digital-unit cycles. Shared by the analytical cost
// model and the SystemC timing model, so both time the same work. Pure, no SystemC.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/tile/pipeline_timing.h"
#include "sim/config/arch_config.h"
#include "sim/graph/graph.h"
#include "sim/mapping/mapping.h"

namespace imcsim::mapping {

struct NodeSchedule {
  size_t node_index = 0;
  std::string node;
  std::string op;
  bool is_imc = false;
  timing::LayerTimingParams imc;   // IMC layers
  uint32_t arrays = 0;             // arrays working in lock-step on this layer
  uint32_t adc_conversion_cycles = 0;
  // IMC layers: transfers between the global buffer and the layer's first tile (home_tile):
  // per position, a share ceil(input tensor bytes / positions) in and the output vector out.
  uint32_t home_tile = 0;
  uint64_t gb_bytes_in_per_position = 0, gb_bytes_out_per_position = 0;
  std::vector<uint32_t> link_path_in, link_path_out;  // interconnect link ids (hops = size)
  // Weight copies (replication r): copy c's home tile is the tile holding its first array
  // (copies are laid out one after another from first_tile); copy 0 is link_path_in/out.
  // The pipelined SystemC model runs each copy as its own pipeline (imc.positions each).
  std::vector<std::vector<uint32_t>> copy_paths_in, copy_paths_out;  // one per copy
  double mean_hops_in = 0, mean_hops_out = 0;                         // over the copies
  uint64_t digital_ops = 0;        // digital nodes
  uint64_t digital_macs = 0;       // digital nodes: multiply-accumulates (digital layers, attention)
  uint64_t digital_cycles = 0;     // digital nodes: ceil(ops / lanes)
  uint64_t analytical_cycles() const {
    return is_imc ? timing::analytical_layer_cycles(imc) : digital_cycles;
  }
};

// Work of a non-IMC node per image in the digital unit (docs/cost_model.md): ALU operations
// (a multiply-accumulate counts 2) and multiply-accumulates.
struct DigitalWork {
  uint64_t ops = 0;
  uint64_t macs = 0;
};
DigitalWork digital_node_work(const graph::Graph& graph, const graph::Node& node);

std::vector<NodeSchedule> build_schedule(const graph::Graph& graph, const Mapping& mapping,
                                         const config::ArchConfig& arch);

}  // namespace imcsim::mapping
