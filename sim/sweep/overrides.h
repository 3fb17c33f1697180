// Settings of a run that override its inputs: `--set KEY=VALUE` of `imcsim run` and the axes of
// `imcsim sweep` (docs/sweep.md). Three kinds of key:
//   - an architecture-config key: a JSON pointer into the arch config ("/adc/bits"), or the same
//     path dotted ("adc.bits"); applied to the config's JSON BEFORE its two-layer validation,
//     so an unknown key or a bad value is reported by the config parser naming the key;
//     "graph.adc_bits", "graph.adc_method" and "graph.calib_images" are short names of the ADC-
//     resolution override /adc/layer_bits_override, /adc/override_references and
//     /adc/override_calibration_images (every IMC layer's ADC at N bits, references re-derived by
//     "rescale" or a calibration method; engine::apply_adc_override);
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

enum class KeyKind { kArch, kGraphFile, kRunOption };

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

// Whether the settings have the ADC override re-calibrate references on training images
// (/adc/override_references set to a calibration method): the run then reads the dataset.
bool recalibrates_references(const std::vector<Setting>& settings);

}  // namespace imcsim::sweep
