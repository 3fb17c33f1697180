#include "sim/sweep/overrides.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "models/adc/calibration.h"
#include "sim/data/idx_dataset.h"
#include "sim/engine/calibration.h"

namespace imcsim::sweep {

using json = nlohmann::json;

namespace {

const char* const kGraphVariantKeys[] = {"graph.adc_bits", "graph.adc_method", "graph.calib_images"};
const char* const kRunKeys[] = {"run.execution", "run.timing", "run.replication", "run.stream_images", "run.seed"};

std::string known_sweep_keys() {
  std::string s = "graph";
  for (const char* k : kGraphVariantKeys) s += std::string(", ") + k;
  for (const char* k : kRunKeys) s += std::string(", ") + k;
  return s;
}

}  // namespace

std::string canonical_key(const std::string& key, bool allow_sweep_keys) {
  if (key.empty()) throw SpecError("empty key (expected a JSON pointer such as /adc/bits, or adc.bits)");
  if (key == "graph" || key.rfind("graph.", 0) == 0 || key.rfind("run.", 0) == 0) {
    bool known = false;
    for (const char* k : kGraphVariantKeys) known = known || key == k;
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
  if (k.rfind("graph.", 0) == 0) return KeyKind::kGraphVariant;
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

GraphVariant graph_variant(const std::vector<Setting>& settings) {
  GraphVariant v;
  bool method_set = false, images_set = false;
  for (const auto& s : settings) {
    if (s.key == "graph.adc_bits") {
      if (!s.value.is_number_integer() || s.value.get<int64_t>() < 1 || s.value.get<int64_t>() > 16)
        throw SpecError(fmt::format("graph.adc_bits: expected an integer in [1, 16], got {}", s.value.dump()));
      v.adc_bits = s.value.get<uint32_t>();
    } else if (s.key == "graph.adc_method") {
      const std::string m = s.value.is_string() ? s.value.get<std::string>() : s.value.dump();
      if (m != "rescale" && !kernels::parse_calib_method(m))
        throw SpecError(fmt::format("graph.adc_method: unknown method '{}' (expected rescale or one of {})", m,
                                    kernels::calib_method_list()));
      v.method = m;
      method_set = true;
    } else if (s.key == "graph.calib_images") {
      if (!s.value.is_number_integer() || s.value.get<int64_t>() < 1)
        throw SpecError(fmt::format("graph.calib_images: expected an integer >= 1, got {}", s.value.dump()));
      v.calib_images = s.value.get<uint64_t>();
      images_set = true;
    }
  }
  if ((method_set || images_set) && !v.active())
    throw SpecError(fmt::format("{}: needs graph.adc_bits (the resolution to re-derive the references at)",
                                method_set ? "graph.adc_method" : "graph.calib_images"));
  return v;
}

graph::Graph apply_graph_variant(const graph::Graph& g, const GraphVariant& v, const std::string& dataset_dir,
                                 unsigned threads) {
  if (!v.active()) return g;
  if (v.method == "rescale") {
    graph::Graph out = calibration::with_adc_bits(g, v.adc_bits);
    out.name = fmt::format("{}_adc{}b_rescale", g.name, v.adc_bits);
    return out;
  }
  if (g.shape_only)
    throw SpecError(fmt::format("{}: graph.adc_method {}: a shape_only graph has no weights to calibrate with "
                                "(use graph.adc_method=rescale)", g.source_file, v.method));
  calibration::Options opt;
  opt.methods = {*kernels::parse_calib_method(v.method)};
  opt.bits = v.adc_bits;
  opt.threads = threads;
  calibration::check_options(opt);
  const auto dataset = data::read_fashion_mnist(dataset_dir, true);
  if (v.calib_images > dataset.count)
    throw SpecError(fmt::format("graph.calib_images: must be at most the {} training images of {}, got {}",
                                dataset.count, dataset.images_file, v.calib_images));
  const auto& shape = g.input.shape.dims;
  if (shape[0] != 1 || shape[1] != dataset.rows || shape[2] != dataset.cols)
    throw std::runtime_error(fmt::format("{}: graph input shape [{}, {}, {}] does not match the dataset's 1x{}x{} "
                                         "images ({})", g.source_file, shape[0], shape[1], shape[2], dataset.rows,
                                         dataset.cols, dataset.images_file));
  auto result = calibration::calibrate(g, dataset.pixels, v.calib_images, opt);
  const std::string source =
      fmt::format("first {} images of the training set ({})", v.calib_images, dataset.images_file);
  calibration::record_provenance(result.graph, result, opt,
                                 fmt::format("--set graph.adc_bits={} --set graph.adc_method={} "
                                             "--set graph.calib_images={}", v.adc_bits, v.method, v.calib_images),
                                 source);
  result.graph.name = fmt::format("{}_calib_{}_{}b", g.name, v.method, v.adc_bits);
  result.graph.source_file = g.source_file;
  return result.graph;
}

}  // namespace imcsim::sweep
