// The cycle-accurate timing run: builds the SystemC pipeline (models/tile/layer_pipeline.h)
// from the mapped graph's schedule and simulates `images` images layer by layer.
// SystemC elaborates once per process: call run_systemc_timing at most once per process.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/tile/pipeline_timing.h"
#include "sim/config/arch_config.h"
#include "sim/mapping/schedule.h"

namespace imcsim::timing {

struct TimingError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct NodeTimingResult {
  std::string node;
  uint64_t cycles = 0;             // summed over images
  uint64_t analytical_cycles = 0;  // closed form, summed over images
  // Where cycles went (summed over images), see StageStats.
  uint64_t array_read = 0, array_stall_input = 0, array_stall_sample_hold = 0;
  uint64_t adc_busy = 0, adc_idle = 0, bus_busy = 0, fetch_stall_bus = 0, fetch_stall_slot = 0,
           write_stall_bus = 0, digital_busy = 0;
  uint64_t gb_busy = 0, fetch_stall_gb = 0, write_stall_gb = 0;
  uint64_t link_busy = 0, link_hop_cycles = 0, fetch_stall_link = 0, write_stall_link = 0;
};

// The chip's shared resources (global buffer ports, interconnect links) for the run.
struct FabricOptions {
  uint32_t global_buffer_ports = 1;
  std::vector<std::string> link_names;  // one per interconnect link id
};
// From the arch config: chip.global_buffer_ports and the interconnect's links
// (sim/config/component_registry.h).
FabricOptions fabric_options(const config::ArchConfig& arch);

struct LinkUsage {
  std::string link;
  uint64_t busy_cycles = 0;  // all images
};

enum class Execution {
  kLayerByLayer,  // one node at a time on the whole chip; images one after another
  kPipelined,     // ISAAC-style: every node on its own hardware, images stream through
};
const char* execution_name(Execution e);

struct SystemcTimingResult {
  Execution execution = Execution::kLayerByLayer;
  uint64_t images = 0;
  uint64_t total_cycles = 0;         // first node start to last node end, all images
  uint64_t cycles_per_image = 0;     // latency of one image (the first)
  uint64_t interval_cycles = 0;      // steady state: cycles between consecutive image completions
  uint64_t analytical_latency_cycles = 0;   // closed form of the same
  uint64_t analytical_interval_cycles = 0;
  std::vector<NodeTimingResult> nodes;
  uint32_t global_buffer_ports = 0;
  uint64_t global_buffer_port_busy_cycles = 0;  // summed over ports, all images
  std::vector<LinkUsage> links;                 // every link of the interconnect, by id
  std::string data_error;                       // data-carrying mode: the first inconsistency
  double wall_seconds = 0;
};

class GraphDataPath;  // models/tile/layer_datapath.h

struct SystemcTimingOptions {
  Execution execution = Execution::kLayerByLayer;
  uint64_t images = 1;
  std::string vcd_file;            // "" = no waveform; else written (".vcd" appended if missing)
  uint64_t trace_window_start = 0, trace_window_end = UINT64_MAX;
  FabricOptions fabric;
  // Data-carrying mode: the pipeline stages carry image i's values (i < images; the data path
  // holds `images` images) through `data`. Needs every layer's positions on one pipeline (no
  // weight replication).
  GraphDataPath* data = nullptr;
};

SystemcTimingResult run_systemc_timing(const std::vector<mapping::NodeSchedule>& schedule,
                                       const SystemcTimingOptions& options);

}  // namespace imcsim::timing
