#include "sim/sweep/sweep.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace imcsim::sweep {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr int kKeyFormat = 1;           // bump when point_identity changes meaning
constexpr uint64_t kMaxPoints = 1000000;  // a grid larger than this is a mistake

[[noreturn]] void fail(const std::string& source, const std::string& path, const std::string& what) {
  throw SpecError(fmt::format("{}: {}: {}", source, path, what));
}

std::string describe(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

void check_keys(const json& obj, const std::string& source, const std::string& path,
                const std::set<std::string>& allowed) {
  if (!obj.is_object()) fail(source, path.empty() ? "/" : path, "expected an object, got " + describe(obj));
  for (const auto& [k, v] : obj.items()) {
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) { if (!list.empty()) list += ", "; list += a; }
      fail(source, path + "/" + k, fmt::format("unknown key (expected one of: {})", list));
    }
  }
}

double number_at(const json& obj, const std::string& k, const std::string& source, const std::string& path) {
  const json& v = obj.at(k);
  if (!v.is_number()) fail(source, path + "/" + k, "expected a number, got " + describe(v));
  return v.get<double>();
}

// Arithmetic or geometric expansion of a range; integers stay integers.
std::vector<json> expand_range(const json& r, const std::string& source, const std::string& path) {
  check_keys(r, source, path, {"from", "to", "step", "factor"});
  for (const char* k : {"from", "to"})
    if (!r.contains(k)) fail(source, path + "/" + k, "missing (a range needs from, to and step or factor)");
  if (r.contains("step") == r.contains("factor")) fail(source, path, "give exactly one of step or factor");
  const double from = number_at(r, "from", source, path), to = number_at(r, "to", source, path);
  const bool integers = r.at("from").is_number_integer() && r.at("to").is_number_integer() &&
                        (r.contains("step") ? r.at("step").is_number_integer() : r.at("factor").is_number_integer());
  if (to < from) fail(source, path, fmt::format("empty range: from {} > to {}", r.at("from").dump(), r.at("to").dump()));
  std::vector<json> out;
  auto push = [&](double v) {
    if (out.size() >= kMaxPoints) fail(source, path, "range has too many values");
    out.push_back(integers ? json(static_cast<int64_t>(std::llround(v))) : json(v));
  };
  if (r.contains("step")) {
    const double step = number_at(r, "step", source, path);
    if (!(step > 0)) fail(source, path + "/step", fmt::format("must be > 0, got {}", r.at("step").dump()));
    // Values from + k*step (not accumulated), up to `to` allowing for rounding.
    for (uint64_t k = 0;; ++k) {
      const double v = from + static_cast<double>(k) * step;
      if (v > to + 1e-9 * std::max(1.0, std::abs(to))) break;
      push(v);
    }
  } else {
    const double factor = number_at(r, "factor", source, path);
    if (!(factor > 1)) fail(source, path + "/factor", fmt::format("must be > 1, got {}", r.at("factor").dump()));
    if (!(from > 0)) fail(source, path + "/from", "must be > 0 for a geometric range (factor)");
    for (double v = from; v <= to * (1 + 1e-12); v *= factor) push(v);
  }
  return out;
}

Axis parse_axis_json(const json& a, const std::string& source, const std::string& path) {
  check_keys(a, source, path, {"key", "keys", "values", "range", "min", "max", "log", "integer"});
  Axis axis;
  if (a.contains("key") == a.contains("keys")) fail(source, path, "give exactly one of key or keys");
  std::vector<std::pair<std::string, std::string>> raw;  // (key, its JSON path)
  if (a.contains("key")) {
    if (!a["key"].is_string()) fail(source, path + "/key", "expected a string, got " + describe(a["key"]));
    raw.emplace_back(a["key"].get<std::string>(), path + "/key");
  } else {
    if (!a["keys"].is_array() || a["keys"].empty())
      fail(source, path + "/keys", "expected a non-empty array of key strings");
    for (size_t i = 0; i < a["keys"].size(); ++i) {
      if (!a["keys"][i].is_string()) fail(source, fmt::format("{}/keys/{}", path, i), "expected a string");
      raw.emplace_back(a["keys"][i].get<std::string>(), fmt::format("{}/keys/{}", path, i));
    }
  }
  for (const auto& [k, p] : raw) {
    try {
      axis.keys.push_back(canonical_key(k, true));
    } catch (const SpecError& e) {
      fail(source, p, e.what());
    }
  }
  const int forms = int(a.contains("values")) + int(a.contains("range")) + int(a.contains("min") || a.contains("max"));
  if (forms != 1) fail(source, path, "give exactly one of values, range, or min and max");
  if (a.contains("values")) {
    if (!a["values"].is_array()) fail(source, path + "/values", "expected an array, got " + describe(a["values"]));
    if (a["values"].empty()) fail(source, path + "/values", "empty (expected at least one value)");
    for (size_t i = 0; i < a["values"].size(); ++i) {
      const json& v = a["values"][i];
      if (axis.keys.size() > 1 && v.is_array() && v.size() != axis.keys.size())
        fail(source, fmt::format("{}/values/{}", path, i),
             fmt::format("expected a scalar or an array of {} values (one per key)", axis.keys.size()));
      axis.values.push_back(v);
    }
  } else if (a.contains("range")) {
    axis.values = expand_range(a["range"], source, path + "/range");
  } else {
    if (!a.contains("min") || !a.contains("max")) fail(source, path, "a continuous axis needs both min and max");
    axis.continuous = true;
    axis.min = number_at(a, "min", source, path);
    axis.max = number_at(a, "max", source, path);
    if (!(axis.min <= axis.max)) fail(source, path, fmt::format("empty range: min {} > max {}", axis.min, axis.max));
    for (const char* k : {"log", "integer"})
      if (a.contains(k) && !a[k].is_boolean()) fail(source, path + "/" + k, "expected true or false");
    axis.log = a.value("log", false);
    axis.integer = a.value("integer", false);
    if (axis.log && !(axis.min > 0)) fail(source, path + "/min", "must be > 0 for a log axis");
  }
  if (!axis.continuous && (a.contains("log") || a.contains("integer")))
    fail(source, path, "log and integer apply only to a continuous (min, max) axis");
  return axis;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string shell_quote(const std::string& a) {
  if (!a.empty() && a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./=:,+@%") ==
                        std::string::npos)
    return a;
  std::string q = "'";
  for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The value as written after KEY= so that parse_value gives it back.
std::string setting_arg_value(const json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (!s.empty() && parse_value(s) == v) return s;
  }
  return v.dump();
}

const json* find_path(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* p : path) {
    if (!cur->is_object() || !cur->contains(p)) return nullptr;
    cur = &(*cur)[p];
  }
  return cur;
}

json number_or_null(const json& j, std::initializer_list<const char*> path) {
  const json* v = find_path(j, path);
  return v && v->is_number() ? *v : json(nullptr);
}

const std::vector<std::string>& known_columns() {
  static const std::vector<std::string> cols = {
      "accuracy_top1", "latency_cycles", "latency_ns", "throughput_images_per_s", "energy_pj", "area_mm2",
      "area_used_mm2", "tops", "tops_per_w", "tops_per_mm2", "utilisation", "arrays_used", "tiles_used",
      "adc_saturation_rate"};
  return cols;
}

}  // namespace

std::vector<Setting> Axis::settings_of(const json& value) const {
  std::vector<Setting> out;
  for (size_t k = 0; k < keys.size(); ++k)
    out.push_back({keys[k], keys.size() > 1 && value.is_array() ? value[k] : value});
  return out;
}

SweepSpec parse_spec(const json& j, const std::string& source) {
  check_keys(j, source, "", {"description", "graph", "arch", "images", "dataset_dir", "mode", "samples", "seed",
                             "axes", "objectives", "pareto_group"});
  SweepSpec s;
  auto str = [&](const char* k, std::string& out) {
    if (!j.contains(k)) return;
    if (!j[k].is_string() || j[k].get<std::string>().empty())
      fail(source, std::string("/") + k, "expected a non-empty string, got " + describe(j[k]));
    out = j[k].get<std::string>();
  };
  str("graph", s.graph);
  str("arch", s.arch);
  str("dataset_dir", s.dataset_dir);
  if (j.contains("description") && !j["description"].is_string()) fail(source, "/description", "expected a string");
  if (j.contains("images")) {
    const json& v = j["images"];
    if (v == "all") s.images = -1;
    else if (v.is_number_integer() && v.get<int64_t>() >= 0) s.images = v.get<int64_t>();
    else fail(source, "/images", "expected a count >= 0 (0 = timing only) or \"all\", got " + v.dump());
  }
  if (j.contains("mode")) {
    const json& m = j["mode"];
    if (m == "random") s.random = true;
    else if (m != "grid") fail(source, "/mode", "expected \"grid\" or \"random\", got " + m.dump());
  }
  for (const char* k : {"samples", "seed"}) {
    if (!j.contains(k)) continue;
    if (!j[k].is_number_unsigned()) fail(source, std::string("/") + k, "expected an integer >= 0, got " + j[k].dump());
    (std::string(k) == "samples" ? s.samples : s.seed) = j[k].get<uint64_t>();
  }
  if (j.contains("samples") && !s.random) fail(source, "/samples", "only with \"mode\": \"random\"");
  if (j.contains("axes")) {
    if (!j["axes"].is_array()) fail(source, "/axes", "expected an array of axes, got " + describe(j["axes"]));
    for (size_t i = 0; i < j["axes"].size(); ++i)
      s.axes.push_back(parse_axis_json(j["axes"][i], source, fmt::format("/axes/{}", i)));
  }
  if (j.contains("objectives")) {
    const json& o = j["objectives"];
    if (!o.is_array()) fail(source, "/objectives", "expected an array such as [\"accuracy:max\", \"energy:min\"]");
    for (size_t i = 0; i < o.size(); ++i) {
      if (!o[i].is_string()) fail(source, fmt::format("/objectives/{}", i), "expected a string such as \"energy:min\"");
      try {
        const auto parsed = parse_objectives(o[i].get<std::string>());
        s.objectives.insert(s.objectives.end(), parsed.begin(), parsed.end());
      } catch (const SpecError& e) {
        fail(source, fmt::format("/objectives/{}", i), e.what());
      }
    }
  }
  if (j.contains("pareto_group")) {
    const json& g = j["pareto_group"];
    if (!g.is_array()) fail(source, "/pareto_group", "expected an array of swept keys such as [\"graph\"]");
    for (size_t i = 0; i < g.size(); ++i) {
      if (!g[i].is_string()) fail(source, fmt::format("/pareto_group/{}", i), "expected a key string");
      try {
        s.pareto_group.push_back(canonical_key(g[i].get<std::string>(), true));
      } catch (const SpecError& e) {
        fail(source, fmt::format("/pareto_group/{}", i), e.what());
      }
    }
  }
  return s;
}

SweepSpec load_spec(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in || std::filesystem::is_directory(file)) throw SpecError(fmt::format("{}: cannot read sweep file", file.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  json j;
  try {
    j = json::parse(buffer.str());
  } catch (const json::parse_error& e) {
    throw SpecError(fmt::format("{}: JSON syntax error at byte {}: {}", file.string(), e.byte, e.what()));
  }
  return parse_spec(j, file.string());
}

json spec_json(const SweepSpec& s) {
  json axes = json::array();
  for (const auto& a : s.axes) {
    json aj = a.keys.size() == 1 ? json{{"key", a.keys[0]}} : json{{"keys", a.keys}};
    if (a.continuous) {
      aj["min"] = a.min;
      aj["max"] = a.max;
      if (a.log) aj["log"] = true;
      if (a.integer) aj["integer"] = true;
    } else {
      aj["values"] = a.values;
    }
    axes.push_back(std::move(aj));
  }
  json objectives = json::array();
  for (const auto& o : s.objectives) objectives.push_back(o.column + (o.maximize ? ":max" : ":min"));
  json j = {{"graph", s.graph},
            {"arch", s.arch},
            {"images", s.images < 0 ? json("all") : json(s.images)},
            {"dataset_dir", s.dataset_dir},
            {"mode", s.random ? "random" : "grid"},
            {"seed", s.seed},
            {"axes", axes},
            {"objectives", objectives}};
  if (s.random) j["samples"] = s.samples;
  if (!s.pareto_group.empty()) j["pareto_group"] = s.pareto_group;
  return j;
}

Axis parse_axis_arg(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) throw SpecError(fmt::format("--set '{}': expected KEY=V1,V2,... or KEY=FROM:TO[:STEP]", text));
  const std::string keys = text.substr(0, eq), values = text.substr(eq + 1);
  Axis axis;
  for (size_t start = 0;;) {
    const size_t plus = keys.find('+', start);
    const std::string k = keys.substr(start, plus == std::string::npos ? std::string::npos : plus - start);
    try {
      axis.keys.push_back(canonical_key(k, true));
    } catch (const SpecError& e) {
      throw SpecError(fmt::format("--set {}", e.what()));
    }
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  if (values.empty()) throw SpecError(fmt::format("--set {}: empty value list", keys));
  // FROM:TO[:STEP] or FROM:TO:xF when it is two or three numbers separated by ':'.
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t colon = values.find(':', start);
    parts.push_back(values.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  auto is_number = [](const std::string& p) { return parse_value(p).is_number(); };
  if ((parts.size() == 2 || parts.size() == 3) && is_number(parts[0]) && is_number(parts[1]) &&
      values.find(',') == std::string::npos) {
    json r = {{"from", parse_value(parts[0])}, {"to", parse_value(parts[1])}};
    if (parts.size() == 2) r["step"] = 1;
    else if (!parts[2].empty() && parts[2][0] == 'x' && is_number(parts[2].substr(1))) r["factor"] = parse_value(parts[2].substr(1));
    else if (is_number(parts[2])) r["step"] = parse_value(parts[2]);
    else throw SpecError(fmt::format("--set {}: range '{}': expected FROM:TO[:STEP] or FROM:TO:xFACTOR", keys, values));
    axis.values = expand_range(r, "--set " + keys, "range");
    return axis;
  }
  for (size_t start = 0;;) {
    const size_t comma = values.find(',', start);
    const std::string v = values.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (v.empty()) throw SpecError(fmt::format("--set {}: empty value in '{}'", keys, values));
    axis.values.push_back(parse_value(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return axis;
}

std::vector<Objective> parse_objectives(const std::string& text) {
  static const std::map<std::string, std::string> aliases = {
      {"accuracy", "accuracy_top1"}, {"energy", "energy_pj"}, {"latency", "latency_ns"},
      {"area", "area_mm2"},          {"throughput", "throughput_images_per_s"}};
  std::vector<Objective> out;
  for (size_t start = 0;;) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t colon = item.find(':');
    if (item.empty() || colon == std::string::npos)
      throw SpecError(fmt::format("objective '{}': expected COLUMN:max or COLUMN:min (e.g. energy:min)", item));
    std::string col = item.substr(0, colon);
    const std::string dir = item.substr(colon + 1);
    if (auto it = aliases.find(col); it != aliases.end()) col = it->second;
    const auto& known = known_columns();
    if (std::find(known.begin(), known.end(), col) == known.end() && col.rfind("energy_", 0) != 0) {
      std::string list;
      for (const auto& k : known) { if (!list.empty()) list += ", "; list += k; }
      throw SpecError(fmt::format("objective '{}': unknown column '{}' (expected one of: {}, energy_<component>_pj)",
                                  item, col, list));
    }
    if (dir != "max" && dir != "min")
      throw SpecError(fmt::format("objective '{}': direction must be max or min, got '{}'", item, dir));
    out.push_back({col, dir == "max"});
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<Objective> default_objectives(const SweepSpec& spec) {
  std::vector<Objective> o;
  if (spec.images != 0) o.push_back({"accuracy_top1", true});
  o.push_back({"energy_pj", false});
  o.push_back({"latency_ns", false});
  return o;
}

void check_spec(const SweepSpec& spec) {
  if (spec.axes.empty()) throw SpecError("axes: none (give --set KEY=V1,V2 or a sweep file with \"axes\")");
  std::set<std::string> seen;
  for (const auto& a : spec.axes) {
    for (const auto& k : a.keys) {
      if (!seen.insert(k).second) throw SpecError(fmt::format("{}: key swept twice (one axis per key)", k));
      if (key_kind(k) == KeyKind::kGraphFile || key_kind(k) == KeyKind::kRunOption) {
        const bool integer = k == "run.stream_images" || k == "run.seed";
        for (const auto& v : a.values)
          for (const auto& s : a.settings_of(v)) {
            if (s.key != k) continue;
            if (integer && !s.value.is_number_unsigned())
              throw SpecError(fmt::format("{}: expected integers >= 0, got {}", k, s.value.dump()));
            if (!integer && !s.value.is_string())
              throw SpecError(fmt::format("{}: expected string values, got {}", k, s.value.dump()));
          }
      }
    }
    if (!a.continuous && a.values.empty()) throw SpecError(fmt::format("{}: empty value list", a.keys[0]));
    if (a.continuous && !spec.random)
      throw SpecError(fmt::format("{}: a min/max axis needs \"mode\": \"random\" (a grid needs values or a range)",
                                  a.keys[0]));
  }
  if (spec.random && spec.samples == 0) throw SpecError("samples: random mode needs samples >= 1 (--samples N)");
  for (const auto& o : spec.objectives)
    if (o.column == "accuracy_top1" && spec.images == 0)
      throw SpecError("objectives: accuracy needs measured images (--images N or \"all\"); this sweep is timing only");
  for (const auto& g : spec.pareto_group)
    if (!seen.count(g)) throw SpecError(fmt::format("pareto_group: {} is not a swept key", g));
}

uint64_t file_fnv1a64(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in || std::filesystem::is_directory(file))
    throw SpecError(fmt::format("{}: cannot read (a sweep input)", file.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return fnv1a64(buffer.str());
}

json point_identity(const SweepSpec& spec, const std::vector<Setting>& settings, const std::string& graph,
                    uint64_t graph_hash, uint64_t arch_hash) {
  json set = json::object();
  for (const auto& s : settings)
    if (s.key != "graph") set[s.key] = s.value;
  const bool uses_dataset = spec.images != 0 || recalibrates_references(settings);
  return {{"key_format", kKeyFormat},
          {"graph", graph},
          {"graph_fnv1a64", fmt::format("{:016x}", graph_hash)},
          {"arch", spec.arch},
          {"arch_fnv1a64", fmt::format("{:016x}", arch_hash)},
          {"images", spec.images},
          {"dataset_dir", uses_dataset ? json(spec.dataset_dir) : json(nullptr)},
          {"settings", set}};
}

std::string point_key(const json& identity) { return fmt::format("{:016x}", fnv1a64(identity.dump())); }

std::vector<Point> enumerate_points(const SweepSpec& spec) {
  check_spec(spec);
  std::vector<std::vector<Setting>> combos;
  if (!spec.random) {
    uint64_t total = 1;
    for (const auto& a : spec.axes) {
      total *= a.values.size();
      if (total > kMaxPoints) throw SpecError(fmt::format("axes: the grid has more than {} points", kMaxPoints));
    }
    std::vector<size_t> idx(spec.axes.size(), 0);
    for (uint64_t p = 0; p < total; ++p) {
      std::vector<Setting> s;
      for (size_t a = 0; a < spec.axes.size(); ++a) {
        auto part = spec.axes[a].settings_of(spec.axes[a].values[idx[a]]);
        s.insert(s.end(), part.begin(), part.end());
      }
      combos.push_back(std::move(s));
      for (size_t a = spec.axes.size(); a-- > 0;) {  // last axis fastest
        if (++idx[a] < spec.axes[a].values.size()) break;
        idx[a] = 0;
      }
    }
  } else {
    if (spec.samples > kMaxPoints) throw SpecError(fmt::format("samples: more than {}", kMaxPoints));
    uint64_t state = spec.seed;
    for (uint64_t p = 0; p < spec.samples; ++p) {
      std::vector<Setting> s;
      for (const auto& a : spec.axes) {
        json v;
        if (a.continuous) {
          const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
          double x = a.log ? std::exp(std::log(a.min) + u * (std::log(a.max) - std::log(a.min)))
                           : a.min + u * (a.max - a.min);
          v = a.integer ? json(static_cast<int64_t>(std::llround(x))) : json(x);
        } else {
          v = a.values[splitmix64(state) % a.values.size()];
        }
        auto part = a.settings_of(v);
        s.insert(s.end(), part.begin(), part.end());
      }
      combos.push_back(std::move(s));
    }
  }
  const uint64_t arch_hash = file_fnv1a64(spec.arch);
  std::map<std::string, uint64_t> graph_hashes;
  std::set<std::string> keys;
  std::vector<Point> points;
  for (auto& settings : combos) {
    Point p;
    p.graph = spec.graph;
    for (const auto& s : settings)
      if (s.key == "graph") p.graph = s.value.get<std::string>();
    auto it = graph_hashes.find(p.graph);
    if (it == graph_hashes.end()) it = graph_hashes.emplace(p.graph, file_fnv1a64(p.graph)).first;
    p.key = point_key(point_identity(spec, settings, p.graph, it->second, arch_hash));
    if (!keys.insert(p.key).second) continue;  // random duplicates (or a repeated grid value)
    p.settings = std::move(settings);
    p.index = points.size();
    points.push_back(std::move(p));
  }
  return points;
}

Shard parse_shard(const std::string& text) {
  auto env = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v && *v ? std::optional<std::string>(v) : std::nullopt;
  };
  auto number = [&](const std::string& s, const std::string& what) -> uint64_t {
    try {
      size_t used = 0;
      if (s.empty() || s[0] == '-') throw std::invalid_argument(s);
      const uint64_t v = std::stoull(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
      return v;
    } catch (const std::exception&) {
      throw SpecError(fmt::format("--shard: {} '{}' is not a non-negative integer", what, s));
    }
  };
  Shard s;
  if (text == "auto") {
    if (auto id = env("SLURM_ARRAY_TASK_ID")) {
      const auto count = env("SLURM_ARRAY_TASK_COUNT");
      if (!count) throw SpecError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
      const uint64_t min = env("SLURM_ARRAY_TASK_MIN") ? number(*env("SLURM_ARRAY_TASK_MIN"), "SLURM_ARRAY_TASK_MIN") : 0;
      s.index = number(*id, "SLURM_ARRAY_TASK_ID") - min;
      s.count = number(*count, "SLURM_ARRAY_TASK_COUNT");
    } else if (auto rank = env("OMPI_COMM_WORLD_RANK")) {
      s.index = number(*rank, "OMPI_COMM_WORLD_RANK");
      s.count = number(env("OMPI_COMM_WORLD_SIZE").value_or(""), "OMPI_COMM_WORLD_SIZE");
    } else if (auto pmi = env("PMI_RANK")) {
      s.index = number(*pmi, "PMI_RANK");
      s.count = number(env("PMI_SIZE").value_or(""), "PMI_SIZE");
    } else {
      throw SpecError("--shard auto: no SLURM_ARRAY_TASK_ID, OMPI_COMM_WORLD_RANK or PMI_RANK in the environment");
    }
  } else {
    const size_t slash = text.find('/');
    if (slash == std::string::npos)
      throw SpecError(fmt::format("--shard: expected I/N with 0 <= I < N (e.g. 0/4) or auto, got '{}'", text));
    s.index = number(text.substr(0, slash), "index");
    s.count = number(text.substr(slash + 1), "count");
  }
  if (s.count == 0) throw SpecError(fmt::format("--shard: the shard count must be >= 1, got '{}'", text));
  if (s.index >= s.count)
    throw SpecError(fmt::format("--shard: index {} out of range (expected 0 <= I < {}; shards are numbered from 0)",
                                s.index, s.count));
  return s;
}

std::vector<Point> shard_points(const std::vector<Point>& points, const Shard& s) {
  std::vector<Point> out;
  for (const auto& p : points)
    if (p.index % s.count == s.index) out.push_back(p);
  return out;
}

std::vector<std::string> run_args(const SweepSpec& spec, const Point& point) {
  std::vector<std::string> a = {"--graph", point.graph, "--arch", spec.arch};
  static const std::map<std::string, std::string> run_options = {
      {"run.execution", "--execution"}, {"run.timing", "--timing"}, {"run.replication", "--replication"},
      {"run.stream_images", "--stream-images"}, {"run.seed", "--seed"}};
  std::vector<std::string> tail;
  for (const auto& s : point.settings) {
    switch (key_kind(s.key)) {
      case KeyKind::kArch:
        a.push_back("--set");
        a.push_back(s.key + "=" + setting_arg_value(s.value));
        break;
      case KeyKind::kRunOption:
        tail.push_back(run_options.at(s.key));
        tail.push_back(value_text(s.value));
        break;
      case KeyKind::kGraphFile:
        break;
    }
  }
  a.insert(a.end(), tail.begin(), tail.end());
  if (spec.images == 0) {
    a.push_back("--timing-only");
  } else if (spec.images > 0) {
    a.push_back("--images");
    a.push_back(std::to_string(spec.images));
  }
  if (spec.dataset_dir != "/usr/share/datasets/fashion-mnist" &&
      (spec.images != 0 || recalibrates_references(point.settings))) {
    a.push_back("--dataset-dir");
    a.push_back(spec.dataset_dir);
  }
  return a;
}

std::string run_command(const SweepSpec& spec, const Point& point) {
  std::string s = "imcsim run";
  for (const auto& a : run_args(spec, point)) {
    s += " ";
    s += shell_quote(a);
  }
  return s;
}

ojson result_row(const SweepSpec& spec, const Point& point, const json& rep) {
  ojson row;
  row["key"] = point.key;
  row["index"] = point.index;
  for (const auto& s : point.settings) row[s.key] = s.value;
  row["graph"] = point.graph;
  const json* measured = find_path(rep, {"accuracy", "measured"});
  const bool has_accuracy = !(measured && measured->is_boolean() && !measured->get<bool>());
  row["images"] = has_accuracy ? number_or_null(rep, {"accuracy", "images"}) : json(0);
  row["accuracy_top1"] = has_accuracy ? number_or_null(rep, {"accuracy", "top1"}) : json(nullptr);
  row["latency_cycles"] = number_or_null(rep, {"latency", "cycles_per_image"});
  row["latency_ns"] = number_or_null(rep, {"latency", "ns_per_image"});
  json thr = number_or_null(rep, {"latency", "throughput_images_per_s"});
  row["throughput_images_per_s"] = thr.is_null() ? number_or_null(rep, {"latency", "images_per_s"}) : thr;
  row["energy_pj"] = number_or_null(rep, {"energy", "pj_per_image"});
  if (const json* by = find_path(rep, {"energy", "by_component_pj"}); by && by->is_object())
    for (const auto& [k, v] : by->items()) row["energy_" + k + "_pj"] = v;
  row["area_mm2"] = number_or_null(rep, {"area", "chip_mm2"});
  row["area_used_mm2"] = number_or_null(rep, {"area", "used_mm2"});
  row["tops"] = number_or_null(rep, {"efficiency", "tops"});
  row["tops_per_w"] = number_or_null(rep, {"efficiency", "tops_per_w"});
  row["tops_per_mm2"] = number_or_null(rep, {"efficiency", "tops_per_mm2"});
  row["utilisation"] = number_or_null(rep, {"mapping", "utilisation"});
  row["arrays_used"] = number_or_null(rep, {"mapping", "arrays_used"});
  row["tiles_used"] = number_or_null(rep, {"mapping", "tiles_used"});
  json sat = nullptr;
  if (const json* adc = find_path(rep, {"adc"}); has_accuracy && adc) {
    double conv = 0, satn = 0;
    auto add = [&](const json& layer) {
      if (layer.is_object() && layer.contains("conversions") && layer.contains("saturations")) {
        conv += layer["conversions"].get<double>();
        satn += layer["saturations"].get<double>();
      }
    };
    if (adc->is_array()) for (const auto& l : *adc) add(l);
    else if (adc->is_object()) for (const auto& [k, l] : adc->items()) add(l);
    if (conv > 0) sat = satn / conv;
  }
  row["adc_saturation_rate"] = sat;
  row["pareto"] = false;
  row["command"] = run_command(spec, point);
  return row;
}

size_t mark_pareto(std::vector<ojson>& rows, const std::vector<Objective>& objectives,
                   const std::vector<std::string>& group) {
  std::vector<std::string> group_of(rows.size());
  for (size_t i = 0; i < rows.size(); ++i)
    for (const auto& g : group) {
      const auto it = rows[i].find(g);
      group_of[i] += (it == rows[i].end() ? std::string("null") : it->dump()) + "\x1f";
    }
  std::vector<std::vector<double>> v(rows.size());
  std::vector<bool> valid(rows.size(), true);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (const auto& o : objectives) {
      const auto it = rows[i].find(o.column);
      if (it == rows[i].end() || !it->is_number()) {
        valid[i] = false;
        break;
      }
      const double x = it->get<double>();
      v[i].push_back(o.maximize ? -x : x);  // everything minimised
    }
  }
  size_t front = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    bool dominated = !valid[i];
    for (size_t j = 0; j < rows.size() && !dominated; ++j) {
      if (j == i || !valid[j] || group_of[j] != group_of[i]) continue;
      bool no_worse = true, better = false;
      for (size_t k = 0; k < objectives.size(); ++k) {
        if (v[j][k] > v[i][k]) no_worse = false;
        if (v[j][k] < v[i][k]) better = true;
      }
      dominated = no_worse && better;
    }
    rows[i]["pareto"] = !dominated;
    front += dominated ? 0 : 1;
  }
  return front;
}

std::string rows_csv(const std::vector<ojson>& rows) {
  if (rows.empty()) return "";
  auto cell = [](const ojson& v) -> std::string {
    std::string s;
    if (v.is_null()) return "";
    if (v.is_string()) s = v.get<std::string>();
    else s = v.dump();
    if (s.find_first_of(",\"\n\r") != std::string::npos) {
      std::string q = "\"";
      for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
      s = q + "\"";
    }
    return s;
  };
  std::vector<std::string> columns;
  for (const auto& [k, v] : rows.front().items()) columns.push_back(k);
  std::string out;
  for (size_t c = 0; c < columns.size(); ++c) { if (c) out += ","; out += cell(ojson(columns[c])); }
  out += "\n";
  for (const auto& r : rows) {
    for (size_t c = 0; c < columns.size(); ++c) {
      const auto it = r.find(columns[c]);
      if (c) out += ",";
      if (it != r.end()) out += cell(*it);
    }
    out += "\n";
  }
  return out;
}

ojson rows_document(const SweepSpec& spec, const std::vector<Objective>& objectives, const std::vector<ojson>& rows,
                    const std::vector<std::string>& missing_keys) {
  ojson obj = ojson::array();
  for (const auto& o : objectives) obj.push_back({{"column", o.column}, {"goal", o.maximize ? "max" : "min"}});
  ojson front = ojson::array();
  for (const auto& r : rows)
    if (r.value("pareto", false)) front.push_back(r["key"]);
  ojson doc;
  doc["sweep_format"] = 1;
  doc["spec"] = ojson::parse(spec_json(spec).dump());
  doc["objectives"] = obj;
  doc["pareto_group"] = spec.pareto_group;
  doc["points"] = rows;
  doc["pareto_keys"] = front;
  doc["missing"] = missing_keys;
  return doc;
}

}  // namespace imcsim::sweep
