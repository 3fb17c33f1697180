// The run report: one JSON document (docs/report.md documents every field) and a short text
// summary for people. Written atomically.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "sim/config/arch_config.h"
#include "sim/cost/analytical.h"
#include "sim/cost/peak.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph.h"
#include "sim/mapping/mapping.h"
#include "sim/timing/systemc_timing.h"

namespace imcsim::report {

struct RunInfo {
  std::string command_line;
  std::string graph_file, arch_file, images_file, labels_file;
  unsigned threads = 1;
};

nlohmann::json graph_summary_json(const graph::Graph& graph);
nlohmann::json mapping_json(const mapping::Mapping& mapping);

nlohmann::json build_report(const RunInfo& info, const graph::Graph& graph,
                            const config::ArchConfig& arch, const mapping::Mapping& mapping,
                            const engine::DatasetResult& dataset, const cost::CostReport& cost,
                            const timing::SystemcTimingResult* systemc = nullptr);

// Peak characteristics (imcsim peak --json; results/isaac_validation).
nlohmann::json peak_json(const cost::PeakReport& peak, const cost::PeakOptions& options);

// A few lines for the terminal: accuracy, latency, energy, area, efficiency.
std::string text_summary(const nlohmann::json& report);

// Writes `content` to `file` atomically: a temporary file in the same directory, flushed,
// then renamed over the target. Creates parent directories. Throws std::runtime_error.
void write_file_atomically(const std::filesystem::path& file, const std::string& content);

}  // namespace imcsim::report
