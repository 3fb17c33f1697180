// First cost model: analytical (closed-form) latency, event-count energy and instance-count
// area, per node and per component class. Model and assumptions: docs/cost_model.md.
// The cycle-accurate SystemC model (a later issue) must equal this latency where there is no
// contention.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/config/arch_config.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph.h"
#include "sim/mapping/mapping.h"

namespace imcsim::cost {

// Component classes, in report order.
enum class Component {
  kAdc, kDac, kCrossbar, kSampleHold, kShiftAdd, kInputBuffer, kOutputBuffer, kGlobalBuffer,
  kInterconnect, kDigital, kFixedBlocks, kCount
};
inline constexpr size_t kComponentCount = static_cast<size_t>(Component::kCount);
const char* component_name(Component c);

using PerComponent = std::array<double, kComponentCount>;
double sum(const PerComponent& v);

// Events of one node for one image (averaged over the images run where data-dependent).
struct NodeEvents {
  double adc_conversions = 0;
  double dac_row_drives = 0;       // data-dependent: rows driven with a non-zero value
  double cell_reads = 0;           // driven rows x physical columns they cross
  double sample_holds = 0;
  double shift_adds = 0;
  double input_buffer_bytes = 0;   // tile input buffer reads
  double output_buffer_bytes = 0;  // tile output buffer writes
  double global_buffer_bytes = 0;  // node input read + output written
  double interconnect_bit_hops = 0;  // IMC: bits moved global buffer <-> home tile x links crossed
  double digital_ops = 0;
  double macs = 0;                 // multiply-accumulates of the layer's math (K x N x P)
};

struct NodeCost {
  std::string node;
  std::string op;
  uint64_t cycles = 0;             // latency of this node for one image
  uint64_t input_steps = 0;        // IMC: positions x input groups (array activations in sequence)
  uint64_t step_cycles = 0;        // IMC: cycles per step in steady state
  uint32_t adc_conversion_cycles = 0;  // IMC: one conversion at the layer's bits
  NodeEvents events;
  PerComponent energy_pj{};        // per image
};

struct CostReport {
  std::vector<NodeCost> nodes;         // one per graph node
  uint64_t cycles_per_image = 0;       // layer by layer, no overlap between nodes
  double latency_ns_per_image = 0;
  double energy_pj_per_image = 0;
  PerComponent energy_pj_per_image_by_component{};
  double macs_per_image = 0;
  PerComponent chip_area_um2{};        // all configured tiles
  double chip_area_um2_total = 0;
  double used_area_um2 = 0;            // tiles the mapping occupies (+ global buffer)
  double static_power_mw = 0;          // fixed blocks of the used tiles + chip-level blocks
  // Dynamic (event) energy per image by component; energy_pj_per_image_by_component adds the
  // leakage energy (leakage power x latency) and the fixed blocks' energy to it.
  PerComponent dynamic_energy_pj_per_image_by_component{};
  // Leakage power of the powered instances: those of the tiles used + chip-level ones.
  PerComponent leakage_power_mw_by_component{};
  PerComponent leakage_energy_pj_per_image_by_component{};
  uint32_t interconnect_links = 0;
  double tops = 0;                     // 2 x MACs / latency
  double tops_per_watt = 0;
  double tops_per_mm2 = 0;             // over the chip area
};

// Energy per conversion at `bits` for the configured ADC: the configured figure (at adc.bits)
// scaled by the default cost model's ratio between `bits` and adc.bits (a reconfigurable ADC).
double adc_energy_pj_at(const config::ArchConfig& arch, uint32_t bits);

// Sets the report's latency (e.g. the cycle-accurate model's) and what derives from it: the
// fixed blocks' energy (static power x latency), each component's leakage energy (leakage
// power x latency), total energy, TOPS, TOPS/W, TOPS/mm2.
void set_latency(CostReport& report, uint64_t cycles_per_image, double clock_mhz);

CostReport analytical_cost(const graph::Graph& graph, const mapping::Mapping& mapping,
                           const config::ArchConfig& arch, const engine::EngineCounters& counters);

}  // namespace imcsim::cost
