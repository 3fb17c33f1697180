// The arch config's ADC-resolution override for sweeps (adc.layer_bits_override,
// docs/arch_config.md): every IMC layer's ADC converts at the configured bits instead of the
// graph's, with references re-derived (linear: full-scale range kept) or re-calibrated on
// training images (docs/calibration.md). No SystemC.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "sim/config/arch_config.h"
#include "sim/graph/graph.h"

namespace imcsim::engine {

struct AdcOverride {
  graph::Graph graph;     // the graph to simulate (a copy of the input when the override is off)
  nlohmann::json report;  // the report's "adc_override" section (docs/report.md); null when off
};

// `arch_file` names the config in errors; `dataset_dir` holds the Fashion-MNIST training set
// (read only when references are re-calibrated). Throws std::runtime_error naming the config
// field and the graph node when the override cannot be applied (e.g. "rescale" on a non-linear
// ADC, which needs data).
AdcOverride apply_adc_override(const graph::Graph& g, const config::AdcConfig& adc, const std::string& arch_file,
                               const std::filesystem::path& dataset_dir, unsigned threads);

// One line for the text summary ("" when off).
std::string adc_override_summary(const nlohmann::json& report);

}  // namespace imcsim::engine
