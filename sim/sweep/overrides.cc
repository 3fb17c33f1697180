#include "sim/sweep/overrides.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>


namespace imcsim::sweep {

using json = nlohmann::json;

namespace {

// Short names of the arch config's ADC-resolution override (docs/arch_config.md: every IMC
// layer's ADC at N bits, references re-derived): the same keys, not a second mechanism.
const std::pair<const char*, const char*> kAdcAliases[] = {
    {"graph.adc_bits", "/adc/layer_bits_override"},
    {"graph.adc_method", "/adc/override_references"},
    {"graph.calib_images", "/adc/override_calibration_images"}};
const char* const kRunKeys[] = {"run.execution", "run.timing", "run.replication", "run.stream_images", "run.seed"};

std::string known_sweep_keys() {
  std::string s = "graph";
  for (const auto& [alias, pointer] : kAdcAliases) s += std::string(", ") + alias;
  for (const char* k : kRunKeys) s += std::string(", ") + k;
  return s;
}

}  // namespace

std::string canonical_key(const std::string& key, bool allow_sweep_keys) {
  if (key.empty()) throw SpecError("empty key (expected a JSON pointer such as /adc/bits, or adc.bits)");
  for (const auto& [alias, pointer] : kAdcAliases)
    if (key == alias) return pointer;
  if (key == "graph" || key.rfind("graph.", 0) == 0 || key.rfind("run.", 0) == 0) {
    bool known = false;
    if (allow_sweep_keys) {
      known = known || key == "graph";
      for (const char* k : kRunKeys) known = known || key == k;
    }
    if (!known)
      throw SpecError(fmt::format("{}: unknown key (expected an arch-config JSON pointer or one of: {})", key,
                                  allow_sweep_keys ? known_sweep_keys()
                                                   : "graph.adc_bits, graph.adc_method, graph.calib_images"));
    return key;
  }
  std::string pointer;
  if (key[0] == '/') {
    pointer = key;
  } else {
    // Dotted path: each dot separates a token; '/' and '~' inside a token are escaped.
    for (size_t start = 0;;) {
      const size_t dot = key.find('.', start);
      const std::string token = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (token.empty()) throw SpecError(fmt::format("{}: empty path component in key", key));
      pointer += "/";
      for (char c : token) pointer += c == '~' ? std::string("~0") : c == '/' ? std::string("~1") : std::string(1, c);
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
  }
  try {
    const json::json_pointer p(pointer);
    if (p.empty()) throw SpecError(fmt::format("{}: the key names the whole config (expected a key inside it)", key));
  } catch (const json::exception& e) {
    throw SpecError(fmt::format("{}: not a JSON pointer ({})", key, e.what()));
  }
  return pointer;
}

KeyKind key_kind(const std::string& k) {
  if (k == "graph") return KeyKind::kGraphFile;
  if (k.rfind("run.", 0) == 0) return KeyKind::kRunOption;
  return KeyKind::kArch;
}

json parse_value(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::exception&) {
    return json(text);
  }
}

Setting parse_setting(const std::string& text, const std::string& option, bool allow_sweep_keys) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    throw SpecError(fmt::format("{} '{}': expected KEY=VALUE (e.g. /adc/bits=4)", option, text));
  const std::string value = text.substr(eq + 1);
  if (value.empty()) throw SpecError(fmt::format("{} {}: empty value", option, text.substr(0, eq)));
  try {
    return {canonical_key(text.substr(0, eq), allow_sweep_keys), parse_value(value)};
  } catch (const SpecError& e) {
    throw SpecError(fmt::format("{} {}", option, e.what()));
  }
}

std::string value_text(const json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

json read_arch_json(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream buffer;
  if (in) buffer << in.rdbuf();
  if (!in || in.bad() || std::filesystem::is_directory(file)) {
    config::load_arch_config(file);  // throws the reader's message (no such file, directory, ...)
    throw SpecError(fmt::format("{}: cannot read config", file.string()));
  }
  try {
    return json::parse(buffer.str());
  } catch (const json::exception&) {
    config::load_arch_config(file);  // throws "FILE:LINE:COL: JSON syntax error: ..."
    throw;
  }
}

void apply_arch_settings(json& arch_json, const std::vector<Setting>& settings, const std::string& file) {
  for (const auto& s : settings) {
    if (key_kind(s.key) != KeyKind::kArch) continue;
    const json::json_pointer p(s.key);
    // Every existing ancestor must be an object: the config has no arrays a key could index
    // except fixed_blocks / transfer_curve, which are set whole.
    json::json_pointer parent = p.parent_pointer();
    std::vector<json::json_pointer> chain;
    for (; !parent.empty(); parent = parent.parent_pointer()) chain.push_back(parent);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      if (!arch_json.contains(*it)) break;
      if (!arch_json.at(*it).is_object())
        throw SpecError(fmt::format("{}: {}: cannot set {}: {} is not an object", file, s.key, s.key, it->to_string()));
    }
    if (!arch_json.is_object()) throw SpecError(fmt::format("{}: /: expected a JSON object", file));
    arch_json[p] = s.value;
  }
}

config::ArchConfig load_arch_config_with(const std::filesystem::path& file, const std::vector<Setting>& settings) {
  std::string applied;
  for (const auto& s : settings)
    if (key_kind(s.key) == KeyKind::kArch) applied += fmt::format("{}{}={}", applied.empty() ? "" : " ", s.key, value_text(s.value));
  if (applied.empty()) return config::load_arch_config(file);
  json j = read_arch_json(file);
  const std::string source = fmt::format("{} (with --set {})", file.string(), applied);
  apply_arch_settings(j, settings, source);
  config::ArchConfig c = config::parse_arch_config(j, source);
  c.source_file = file.string();
  c.notes.push_back(fmt::format("overridden with --set: {}", applied));
  return c;
}

bool recalibrates_references(const std::vector<Setting>& settings) {
  for (const auto& s : settings)
    if (s.key == "/adc/override_references" && !(s.value.is_string() && s.value.get<std::string>() == "rescale"))
      return true;
  return false;
}

}  // namespace imcsim::sweep
