// Settings of a run that override its inputs: `--set KEY=VALUE` of `imcsim run` and the axes of
// `imcsim sweep` (docs/sweep.md). Three kinds of key:
//   - an architecture-config key: a JSON pointer into the arch config ("/adc/bits"), or the same
//     path dotted ("adc.bits"); applied to the config's JSON BEFORE its two-layer validation,
//     so an unknown key or a bad value is reported by the config parser naming the key;
//   - a graph variant: "graph.adc_bits" (every IMC layer's ADC at N bits, references re-derived)
//     with "graph.adc_method" (how: "rescale" = keep each linear ADC's full-scale range,
//     calibration::with_adc_bits; or a calibration method of `imcsim calibrate`, fitted on the
//     first "graph.calib_images" training images, default 512);
//   - sweep-only keys ("graph" = the graph file, "run.*" = run options), see sim/sweep/sweep.h.
// No SystemC here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sim/config/arch_config.h"
#include "sim/graph/graph.h"

namespace imcsim::sweep {

// A bad setting, spec or shard. Message: one line naming the key / field and what was expected.
struct SpecError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class KeyKind { kArch, kGraphVariant, kGraphFile, kRunOption };

struct Setting {
  std::string key;      // canonical: arch keys as JSON pointers ("/adc/bits"), others as named
  nlohmann::json value;
  bool operator==(const Setting&) const = default;
};

// Canonical form of a key: "adc.bits" -> "/adc/bits"; "/adc/bits" kept; graph / run keys kept.
// Throws SpecError for an empty key, a malformed JSON pointer or an unknown graph / run key.
// `allow_sweep_keys`: accept "graph" and "run.*" (sweeps only; `imcsim run` has options for them).
std::string canonical_key(const std::string& key, bool allow_sweep_keys);
KeyKind key_kind(const std::string& canonical);

// A value as written on a command line: JSON if it parses as JSON (3, 2.5, true, null, "x",
// [1,2]), else the plain string ("sar", "bs-kmq").
nlohmann::json parse_value(const std::string& text);

// "KEY=VALUE" -> Setting (canonical key). Throws SpecError naming `option` (e.g. "--set").
Setting parse_setting(const std::string& text, const std::string& option, bool allow_sweep_keys);

// A value as it appears in a command line / CSV cell: strings unquoted, others as compact JSON.
std::string value_text(const nlohmann::json& value);

// Reads the arch config file as JSON (syntax errors as config::load_arch_config reports them).
nlohmann::json read_arch_json(const std::filesystem::path& file);

// Applies the arch settings (others ignored) to the config JSON. Throws SpecError when a
// pointer cannot be set (its parent is not an object).
void apply_arch_settings(nlohmann::json& arch_json, const std::vector<Setting>& settings, const std::string& file);

// load_arch_config with the arch settings applied before validation. Errors name the file
// ("FILE (with --set KEY=V ...)") and the JSON pointer of the offending key.
config::ArchConfig load_arch_config_with(const std::filesystem::path& file, const std::vector<Setting>& settings);

// The graph-variant settings, checked (graph.adc_bits in 1..16, a known graph.adc_method,
// graph.calib_images >= 1; graph.adc_method / graph.calib_images need graph.adc_bits).
struct GraphVariant {
  uint32_t adc_bits = 0;               // 0 = the graph as it is
  std::string method = "rescale";      // "rescale" or a calibration method name
  uint64_t calib_images = 512;
  bool active() const { return adc_bits != 0; }
};
GraphVariant graph_variant(const std::vector<Setting>& settings);

// The graph with the variant applied (returns `g` unchanged if the variant is inactive).
// Calibration methods read the Fashion-MNIST training set from `dataset_dir`. `threads` as
// calibration::Options::threads. Throws (SpecError / std::invalid_argument naming the node).
graph::Graph apply_graph_variant(const graph::Graph& g, const GraphVariant& variant, const std::string& dataset_dir,
                                 unsigned threads);

}  // namespace imcsim::sweep
