// The cycle-accurate timing run: builds the SystemC pipeline (models/tile/layer_pipeline.h)
// from the mapped graph's schedule and simulates `images` images layer by layer.
// SystemC elaborates once per process: call run_systemc_timing at most once per process.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/tile/pipeline_timing.h"
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
  double wall_seconds = 0;
};

struct SystemcTimingOptions {
  Execution execution = Execution::kLayerByLayer;
  uint64_t images = 1;
  std::string vcd_file;            // "" = no waveform; else written (".vcd" appended if missing)
  uint64_t trace_window_start = 0, trace_window_end = UINT64_MAX;
};

SystemcTimingResult run_systemc_timing(const std::vector<mapping::NodeSchedule>& schedule,
                                       const SystemcTimingOptions& options);

}  // namespace imcsim::timing
