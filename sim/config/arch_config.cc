// Architecture config: layer 1 parses JSON into RawConfig (every field optional, types and
// unknown keys checked), layer 2 validates RawConfig into ArchConfig (defaults, ranges,
// cross-field rules, component costs). Every error names the file and the JSON path.
#include "sim/config/arch_config.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/adc/calibration.h"
#include "sim/config/component_registry.h"
#include "sim/config/defaults.h"

namespace imcsim::config {

namespace d = defaults;
using nlohmann::json;

namespace {

// ============================================================================================
// Shared helpers
// ============================================================================================

// JSON-pointer escaping of one reference token (RFC 6901).
std::string escape_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string child_path(const std::string& parent, std::string_view key) {
  return parent + "/" + escape_token(key);
}

[[noreturn]] void fail(const std::string& source, const std::string& path,
                       const std::string& problem) {
  throw ConfigError(fmt::format("{}: {}: {}", source, path.empty() ? "/" : path, problem));
}

// "string \"abc\"", "1.5", "boolean true", "object", ... for error messages.
std::string describe(const json& v) {
  auto shorten = [](std::string s) {
    constexpr std::size_t kMax = 40;
    if (s.size() > kMax) s = s.substr(0, kMax) + "...";
    return s;
  };
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return fmt::format("boolean {}", v.dump());
    case json::value_t::string: return fmt::format("string {}", shorten(v.dump()));
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return shorten(v.dump());
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    default: return "a binary value";
  }
}

// Levenshtein distance, for "did you mean" hints on unknown keys.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// ============================================================================================
// Layer 1: JSON -> RawConfig (types and keys only)
// ============================================================================================

struct RawCost {
  bool present = false;
  std::optional<double> energy_pj;
  std::optional<double> area_um2;
  std::optional<double> leakage_mw;
  std::optional<std::string> source;
};

// Integers are kept as uint64 here; ranges (and narrowing) are layer 2's job.
struct RawConfig {
  std::vector<FixedBlock> fixed_blocks;  // validated while parsed (all fields are local)
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::optional<double> clock_mhz;
  std::optional<uint64_t> technology_nm;
  struct {
    bool present = false;
    std::optional<uint64_t> rows, cols, cell_bits, read_cycles;
  } array;
  struct {
    bool present = false;
    std::optional<uint64_t> bits;
  } dac;
  struct {
    bool present = false;
    std::optional<AdcKind> kind;
    std::optional<uint64_t> bits, columns_per_adc, conversion_cycles, layer_bits_override,
        override_calibration_images;
    std::optional<std::string> override_references;
  } adc;
  struct {
    bool present = false;
    std::optional<uint64_t> arrays_per_tile, input_buffer_bytes, output_buffer_bytes,
        shift_add_units;
  } tile;
  struct {
    bool present = false;
    std::optional<uint64_t> tiles, global_buffer_bytes, buffer_bus_bits, global_buffer_ports,
        global_buffer_port_bits;
  } chip;
  struct {
    bool present = false;
    std::optional<InterconnectKind> kind;
    std::optional<uint64_t> link_bits, hop_cycles;
  } interconnect;
  bool components_present = false;
  struct {
    bool present = false;
    std::optional<double> noise_sigma, variation_sigma, stuck_rate, stuck_max_fraction;
    std::optional<std::vector<kernels::TransferPoint>> transfer_curve;
  } nonidealities;
  std::array<RawCost, 10> components;  // indexed like kComponentSlots
};

struct ComponentSlot {
  std::string_view key;
  ComponentCost ComponentLibrary::*member;
};
constexpr std::array<ComponentSlot, 10> kComponentSlots = {{
    {"adc", &ComponentLibrary::adc},
    {"dac", &ComponentLibrary::dac},
    {"crossbar_cell", &ComponentLibrary::crossbar_cell},
    {"sample_hold", &ComponentLibrary::sample_hold},
    {"shift_add", &ComponentLibrary::shift_add},
    {"input_buffer", &ComponentLibrary::input_buffer},
    {"output_buffer", &ComponentLibrary::output_buffer},
    {"global_buffer", &ComponentLibrary::global_buffer},
    {"digital_op", &ComponentLibrary::digital_op},
    {"interconnect", &ComponentLibrary::interconnect},
}};

// Reads the members of one JSON object. The constructor rejects a non-object and any key not
// in `allowed`, so a misspelt key is reported before anything else in its object.
class ObjectReader {
 public:
  ObjectReader(const std::string& source, const json& j, std::string path,
               std::vector<std::string_view> allowed)
      : source_(source), j_(j), path_(std::move(path)), allowed_(std::move(allowed)) {
    if (!j_.is_object()) fail(source_, path_, "expected an object, got " + describe(j_));
    for (const auto& [key, value] : j_.items()) {
      if (std::find(allowed_.begin(), allowed_.end(), key) == allowed_.end()) {
        fail(source_, child_path(path_, key), unknown_key_message(key));
      }
    }
  }

  const std::string& path() const { return path_; }
  std::string path(std::string_view key) const { return child_path(path_, key); }

  const json* find(std::string_view key) const {
    const auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }

  std::optional<uint64_t> uint(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_number_unsigned()) return v->get<uint64_t>();
    if (v->is_number_integer()) {
      const auto x = v->get<int64_t>();
      if (x < 0) fail(source_, path(key), "expected a non-negative integer, got " + describe(*v));
      return static_cast<uint64_t>(x);
    }
    if (v->is_number_float()) {
      const double x = v->get<double>();
      if (std::floor(x) != x) fail(source_, path(key), "expected an integer, got " + describe(*v));
      if (std::fabs(x) >= 0x1p64) {
        fail(source_, path(key), "out of range: integer too large, got " + describe(*v));
      }
      fail(source_, path(key),
           "expected an integer written without fraction or exponent, got " + describe(*v));
    }
    fail(source_, path(key), "expected an integer, got " + describe(*v));
  }

  std::optional<double> number(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) fail(source_, path(key), "expected a number, got " + describe(*v));
    const double x = v->get<double>();
    if (!std::isfinite(x)) fail(source_, path(key), "expected a finite number");
    return x;
  }

  std::optional<std::string> string(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) fail(source_, path(key), "expected a string, got " + describe(*v));
    return v->get<std::string>();
  }

 private:
  std::string unknown_key_message(std::string_view key) const {
    std::string msg = "unknown key (expected one of: ";
    for (std::size_t i = 0; i < allowed_.size(); ++i) {
      msg += (i == 0 ? "" : ", ");
      msg += allowed_[i];
    }
    msg += ")";
    std::string_view best;
    std::size_t best_distance = 3;  // suggest only close matches
    for (std::string_view candidate : allowed_) {
      const std::size_t dist = edit_distance(key, candidate);
      if (dist < best_distance) {
        best_distance = dist;
        best = candidate;
      }
    }
    if (!best.empty()) msg += fmt::format("; did you mean \"{}\"?", best);
    return msg;
  }

  const std::string& source_;
  const json& j_;
  std::string path_;
  std::vector<std::string_view> allowed_;
};

// Reader for a nested section, or nullopt if the key is absent.
std::optional<ObjectReader> section(const std::string& source, const ObjectReader& parent,
                                    std::string_view key,
                                    std::vector<std::string_view> allowed) {
  const json* v = parent.find(key);
  if (v == nullptr) return std::nullopt;
  return ObjectReader(source, *v, parent.path(key), std::move(allowed));
}

RawConfig parse_raw(const json& j, const std::string& source) {
  RawConfig raw;
  const ObjectReader top(source, j, "",
                         {"name", "description", "clock_mhz", "technology_nm", "array", "dac",
                          "adc", "tile", "chip", "interconnect", "components", "nonidealities",
                          "fixed_blocks"});
  raw.name = top.string("name");
  raw.description = top.string("description");
  raw.clock_mhz = top.number("clock_mhz");
  raw.technology_nm = top.uint("technology_nm");

  if (auto s = section(source, top, "array", {"rows", "cols", "cell_bits", "read_cycles"})) {
    raw.array.present = true;
    raw.array.rows = s->uint("rows");
    raw.array.cols = s->uint("cols");
    raw.array.cell_bits = s->uint("cell_bits");
    raw.array.read_cycles = s->uint("read_cycles");
  }
  if (auto s = section(source, top, "dac", {"bits"})) {
    raw.dac.present = true;
    raw.dac.bits = s->uint("bits");
  }
  if (auto s = section(source, top, "adc", {"kind", "bits", "columns_per_adc", "conversion_cycles",
                                            "layer_bits_override", "override_references",
                                            "override_calibration_images"})) {
    raw.adc.present = true;
    if (auto kind = s->string("kind")) {
      try {
        raw.adc.kind = adc_registry().get(*kind).kind();
      } catch (const UnknownComponent& e) {
        fail(source, s->path("kind"), e.what());
      }
    }
    raw.adc.bits = s->uint("bits");
    raw.adc.columns_per_adc = s->uint("columns_per_adc");
    raw.adc.conversion_cycles = s->uint("conversion_cycles");
    raw.adc.layer_bits_override = s->uint("layer_bits_override");
    raw.adc.override_calibration_images = s->uint("override_calibration_images");
    if (auto refs = s->string("override_references")) {
      if (*refs != "rescale" && !kernels::parse_calib_method(*refs)) {
        std::string expected = "rescale";
        for (const auto m : kernels::all_calib_methods()) expected += fmt::format(", {}", kernels::calib_method_name(m));
        fail(source, s->path("override_references"),
             fmt::format("unknown reference rule \"{}\" (expected one of: {})", *refs, expected));
      }
      raw.adc.override_references = *refs;
    }
  }
  if (const auto it = j.find("fixed_blocks"); it != j.end()) {
    if (!it->is_array()) fail(source, "/fixed_blocks", "must be an array of objects");
    for (std::size_t i = 0; i < it->size(); ++i) {
      const std::string path = fmt::format("/fixed_blocks/{}", i);
      if (!(*it)[i].is_object()) fail(source, path, "must be an object");
      const ObjectReader b(source, (*it)[i], path,
                           {"name", "per", "count", "power_mw", "area_um2", "source"});
      FixedBlock block;
      const auto name = b.string("name");
      if (!name || name->empty()) fail(source, path + "/name", "missing (a non-empty string)");
      block.name = *name;
      const std::string per = b.string("per").value_or("tile");
      if (per != "tile" && per != "chip")
        fail(source, path + "/per", fmt::format("expected \"tile\" or \"chip\", got \"{}\"", per));
      block.per_tile = per == "tile";
      block.count = b.number("count").value_or(1.0);
      block.power_mw = b.number("power_mw").value_or(0.0);
      block.area_um2 = b.number("area_um2").value_or(0.0);
      block.source = b.string("source").value_or("user config " + source);
      for (const auto& [field, v] : {std::pair{"count", block.count}, {"power_mw", block.power_mw},
                                      {"area_um2", block.area_um2}})
        if (!std::isfinite(v) || v < 0)
          fail(source, path + "/" + field, fmt::format("must be a finite number >= 0, got {}", v));
      raw.fixed_blocks.push_back(std::move(block));
    }
  }
  if (auto s = section(source, top, "tile",
                       {"arrays_per_tile", "input_buffer_bytes", "output_buffer_bytes",
                        "shift_add_units"})) {
    raw.tile.present = true;
    raw.tile.arrays_per_tile = s->uint("arrays_per_tile");
    raw.tile.input_buffer_bytes = s->uint("input_buffer_bytes");
    raw.tile.output_buffer_bytes = s->uint("output_buffer_bytes");
    raw.tile.shift_add_units = s->uint("shift_add_units");
  }
  if (auto s = section(source, top, "chip",
                       {"tiles", "global_buffer_bytes", "buffer_bus_bits", "global_buffer_ports",
                        "global_buffer_port_bits"})) {
    raw.chip.present = true;
    raw.chip.tiles = s->uint("tiles");
    raw.chip.global_buffer_bytes = s->uint("global_buffer_bytes");
    raw.chip.buffer_bus_bits = s->uint("buffer_bus_bits");
    raw.chip.global_buffer_ports = s->uint("global_buffer_ports");
    raw.chip.global_buffer_port_bits = s->uint("global_buffer_port_bits");
  }
  if (auto s = section(source, top, "interconnect", {"kind", "link_bits", "hop_cycles"})) {
    raw.interconnect.present = true;
    if (auto kind = s->string("kind")) {
      try {
        raw.interconnect.kind = interconnect_registry().get(*kind).kind();
      } catch (const UnknownComponent& e) {
        fail(source, s->path("kind"), e.what());
      }
    }
    raw.interconnect.link_bits = s->uint("link_bits");
    raw.interconnect.hop_cycles = s->uint("hop_cycles");
  }
  std::vector<std::string_view> component_keys;
  for (const auto& slot : kComponentSlots) component_keys.push_back(slot.key);
  if (auto comps = section(source, top, "components", component_keys)) {
    raw.components_present = true;
    for (std::size_t i = 0; i < kComponentSlots.size(); ++i) {
      if (auto c = section(source, *comps, kComponentSlots[i].key,
                           {"energy_pj", "area_um2", "leakage_mw", "source"})) {
        RawCost& rc = raw.components[i];
        rc.present = true;
        rc.energy_pj = c->number("energy_pj");
        rc.area_um2 = c->number("area_um2");
        rc.leakage_mw = c->number("leakage_mw");
        rc.source = c->string("source");
      }
    }
  }
  if (auto s = section(source, top, "nonidealities",
                       {"adc_noise_sigma_lsb", "conductance_variation_sigma", "transfer_curve",
                        "stuck_at_rate", "stuck_at_max_fraction"})) {
    auto& n = raw.nonidealities;
    n.present = true;
    n.noise_sigma = s->number("adc_noise_sigma_lsb");
    n.variation_sigma = s->number("conductance_variation_sigma");
    n.stuck_rate = s->number("stuck_at_rate");
    n.stuck_max_fraction = s->number("stuck_at_max_fraction");
    if (const json* t = s->find("transfer_curve")) {
      const std::string path = s->path("transfer_curve");
      if (!t->is_array()) {
        fail(source, path, "expected an array of [x, y] points (partial-sum LSB), got " + describe(*t));
      }
      std::vector<kernels::TransferPoint> points;
      for (std::size_t i = 0; i < t->size(); ++i) {
        const json& e = (*t)[i];
        const std::string point_path = fmt::format("{}/{}", path, i);
        if (!e.is_array() || e.size() != 2) {
          fail(source, point_path, "expected a point [x, y] of two numbers, got " + describe(e));
        }
        double xy[2];
        for (std::size_t c = 0; c < 2; ++c) {
          if (!e[c].is_number()) {
            fail(source, fmt::format("{}/{}", point_path, c), "expected a number, got " + describe(e[c]));
          }
          xy[c] = e[c].get<double>();
        }
        points.push_back({xy[0], xy[1]});
      }
      n.transfer_curve = std::move(points);
    }
  }
  return raw;
}

// ============================================================================================
// Layer 2: RawConfig -> ArchConfig (defaults, ranges, cross-field rules)
// ============================================================================================

class Validator {
 public:
  explicit Validator(const std::string& source) : source_(source) {}

  // Integer in [lo, hi] or the default; records defaulted paths for the notes.
  template <typename T>
  T integer(const std::optional<uint64_t>& v, const char* path, T fallback, uint64_t lo,
            uint64_t hi) {
    if (!v) {
      defaulted_.emplace_back(path);
      return fallback;
    }
    if (*v < lo || *v > hi) {
      fail(source_, path, fmt::format("out of range: expected an integer in {}..{}, got {}", lo,
                                      hi, *v));
    }
    return static_cast<T>(*v);
  }

  const std::vector<std::string>& defaulted() const { return defaulted_; }

 private:
  const std::string& source_;
  std::vector<std::string> defaulted_;
};

constexpr uint64_t kU32Max = std::numeric_limits<uint32_t>::max();

std::string default_name(const std::string& source) {
  std::string stem = std::filesystem::path(source).stem().string();
  return stem.empty() ? std::string("unnamed") : stem;
}

// The "nonidealities" section (docs/arch_config.md): ranges per key, the transfer curve's
// points finite, bounded and sorted by strictly increasing x.
void validate_nonidealities(const RawConfig& raw, const std::string& source, kernels::NonidealSpec& out) {
  const auto& n = raw.nonidealities;
  auto ranged = [&](const std::optional<double>& v, const char* path, double fallback, double hi,
                    const char* what) {
    if (!v) return fallback;
    if (!(*v >= 0.0) || *v > hi) {
      fail(source, path, fmt::format("out of range: expected {} in [0, {}], got {}", what, hi, *v));
    }
    return *v;
  };
  out.adc_noise_sigma_lsb = ranged(n.noise_sigma, "/nonidealities/adc_noise_sigma_lsb", 0.0,
                                   kernels::kMaxNoiseSigmaLsb, "a noise sigma (partial-sum LSB)");
  out.conductance_variation_sigma =
      ranged(n.variation_sigma, "/nonidealities/conductance_variation_sigma", 0.0,
             kernels::kMaxVariationSigma, "a relative sigma");
  out.stuck_at_rate = ranged(n.stuck_rate, "/nonidealities/stuck_at_rate", 0.0, 1.0, "a rate");
  out.stuck_at_max_fraction = ranged(n.stuck_max_fraction, "/nonidealities/stuck_at_max_fraction",
                                     0.5, 1.0, "a fraction");
  out.transfer_curve.clear();
  if (n.transfer_curve) {
    const auto& pts = *n.transfer_curve;
    const std::string path = "/nonidealities/transfer_curve";
    if (pts.size() == 1) {
      fail(source, path, "expected at least 2 points [x, y] (or [] for none), got 1");
    }
    if (pts.size() > kernels::kMaxTransferPoints) {
      fail(source, path, fmt::format("expected at most {} points, got {}", kernels::kMaxTransferPoints,
                                     pts.size()));
    }
    for (std::size_t i = 0; i < pts.size(); ++i) {
      const double xy[2] = {pts[i].x, pts[i].y};
      for (std::size_t c = 0; c < 2; ++c) {
        if (!(std::fabs(xy[c]) <= kernels::kMaxTransferAbs)) {
          fail(source, fmt::format("{}/{}/{}", path, i, c),
               fmt::format("out of range: expected |value| <= 2^30 (partial-sum LSB), got {}", xy[c]));
        }
      }
      if (i > 0 && !(pts[i].x > pts[i - 1].x)) {
        fail(source, fmt::format("{}/{}/0", path, i),
             fmt::format("transfer curve not sorted: x must be strictly increasing, got {} after {}",
                         pts[i].x, pts[i - 1].x));
      }
    }
    out.transfer_curve = pts;
  }
}

ArchConfig validate(const RawConfig& raw, const std::string& source) {
  ArchConfig cfg;
  cfg.source_file = source;
  // Paths that got their defaults: a whole absent section is listed once, not key by key.
  std::vector<std::string> defaulted;
  auto record = [&](bool section_present, const std::vector<std::string>& keys_defaulted,
                    const char* section_path) {
    if (!section_present) {
      defaulted.emplace_back(section_path);
    } else {
      defaulted.insert(defaulted.end(), keys_defaulted.begin(), keys_defaulted.end());
    }
  };

  if (raw.name && raw.name->empty()) fail(source, "/name", "expected a non-empty string");
  cfg.name = raw.name.value_or(default_name(source));
  cfg.description = raw.description.value_or("");

  if (raw.clock_mhz) {
    if (!(*raw.clock_mhz > 0.0) || *raw.clock_mhz > d::kMaxClockMhz) {
      fail(source, "/clock_mhz",
           fmt::format("out of range: expected a number > 0 and <= {}, got {}", d::kMaxClockMhz,
                       *raw.clock_mhz));
    }
    cfg.clock_mhz = *raw.clock_mhz;
  } else {
    cfg.clock_mhz = d::kClockMhz;
    defaulted.emplace_back("/clock_mhz");
  }

  if (raw.technology_nm) {
    if (*raw.technology_nm < d::kMinTechnologyNm || *raw.technology_nm > d::kMaxTechnologyNm) {
      fail(source, "/technology_nm",
           fmt::format("out of range: expected an integer in {}..{} (nm), got {}", d::kMinTechnologyNm,
                       d::kMaxTechnologyNm, *raw.technology_nm));
    }
    cfg.technology_nm = static_cast<uint32_t>(*raw.technology_nm);
  } else {
    cfg.technology_nm = d::kTechnologyNm;
    defaulted.emplace_back("/technology_nm");
  }

  {
    Validator v(source);
    cfg.array.rows = v.integer<uint32_t>(raw.array.rows, "/array/rows", d::kArrayRows, 1,
                                         d::kMaxArrayDim);
    cfg.array.cols = v.integer<uint32_t>(raw.array.cols, "/array/cols", d::kArrayCols, 1,
                                         d::kMaxArrayDim);
    cfg.array.cell_bits = v.integer<uint32_t>(raw.array.cell_bits, "/array/cell_bits",
                                              d::kCellBits, 1, d::kMaxCellBits);
    // Default: ISAAC's 100 ns crossbar read at the configured clock (120 cycles at 1.2 GHz).
    const auto read_default = static_cast<uint32_t>(
        std::max(1.0, std::ceil(d::kCrossbarReadNs * cfg.clock_mhz / 1000.0 - 1e-9)));
    cfg.array.read_cycles = v.integer<uint32_t>(raw.array.read_cycles, "/array/read_cycles",
                                                read_default, 1, kU32Max);
    record(raw.array.present, v.defaulted(), "/array");
  }
  {
    Validator v(source);
    cfg.dac.bits = v.integer<uint32_t>(raw.dac.bits, "/dac/bits", d::kDacBits, 1, d::kMaxDacBits);
    record(raw.dac.present, v.defaulted(), "/dac");
  }
  {
    Validator v(source);
    if (raw.adc.kind) {
      cfg.adc.kind = *raw.adc.kind;
    } else {
      cfg.adc.kind = AdcKind::kSar;
      if (raw.adc.present) defaulted.emplace_back("/adc/kind");
    }
    cfg.adc.bits = v.integer<uint32_t>(raw.adc.bits, "/adc/bits", d::kAdcBits, 1, d::kMaxAdcBits);
    // Default: one ADC per array (ISAAC), whatever the column count.
    cfg.adc.columns_per_adc = v.integer<uint32_t>(raw.adc.columns_per_adc,
                                                  "/adc/columns_per_adc", cfg.array.cols, 1,
                                                  d::kMaxArrayDim);
    cfg.adc.conversion_cycles = v.integer<uint32_t>(raw.adc.conversion_cycles, "/adc/conversion_cycles",
                                                    0, 0, 1u << 20);
    if (raw.adc.layer_bits_override && *raw.adc.layer_bits_override > cfg.adc.bits)
      fail(source, "/adc/layer_bits_override",
           fmt::format("must not exceed /adc/bits = {} (the ADC's maximum resolution; 0 = off), got {}",
                       cfg.adc.bits, *raw.adc.layer_bits_override));
    cfg.adc.layer_bits_override = v.integer<uint32_t>(raw.adc.layer_bits_override, "/adc/layer_bits_override",
                                                      0, 0, cfg.adc.bits);
    cfg.adc.override_calibration_images = v.integer<uint32_t>(
        raw.adc.override_calibration_images, "/adc/override_calibration_images", 512, 1, 60000);
    cfg.adc.override_references = raw.adc.override_references.value_or("rescale");
    if (cfg.array.cols % cfg.adc.columns_per_adc != 0) {
      fail(source, "/adc/columns_per_adc",
           fmt::format("must divide /array/cols = {} (columns are multiplexed evenly onto the "
                       "ADCs), got {}",
                       cfg.array.cols, cfg.adc.columns_per_adc));
    }
    record(raw.adc.present, v.defaulted(), "/adc");
  }
  {
    Validator v(source);
    cfg.tile.arrays_per_tile = v.integer<uint32_t>(raw.tile.arrays_per_tile,
                                                   "/tile/arrays_per_tile", d::kArraysPerTile, 1,
                                                   kU32Max);
    cfg.tile.input_buffer_bytes = v.integer<uint64_t>(
        raw.tile.input_buffer_bytes, "/tile/input_buffer_bytes", d::kInputBufferBytes, 1,
        d::kMaxBufferBytes);
    cfg.tile.output_buffer_bytes = v.integer<uint64_t>(
        raw.tile.output_buffer_bytes, "/tile/output_buffer_bytes", d::kOutputBufferBytes, 1,
        d::kMaxBufferBytes);
    cfg.tile.shift_add_units = v.integer<uint32_t>(raw.tile.shift_add_units,
                                                   "/tile/shift_add_units", d::kShiftAddUnits, 1,
                                                   kU32Max);
    record(raw.tile.present, v.defaulted(), "/tile");
  }
  {
    Validator v(source);
    cfg.chip.tiles = v.integer<uint32_t>(raw.chip.tiles, "/chip/tiles", d::kTiles, 1, kU32Max);
    cfg.chip.global_buffer_bytes = v.integer<uint64_t>(
        raw.chip.global_buffer_bytes, "/chip/global_buffer_bytes", d::kGlobalBufferBytes, 1,
        d::kMaxBufferBytes);
    cfg.chip.buffer_bus_bits = v.integer<uint32_t>(raw.chip.buffer_bus_bits,
                                                   "/chip/buffer_bus_bits", d::kBufferBusBits, 1,
                                                   kU32Max);
    cfg.chip.global_buffer_ports = v.integer<uint32_t>(
        raw.chip.global_buffer_ports, "/chip/global_buffer_ports", d::kGlobalBufferPorts, 1, 1024);
    cfg.chip.global_buffer_port_bits = v.integer<uint32_t>(
        raw.chip.global_buffer_port_bits, "/chip/global_buffer_port_bits", d::kGlobalBufferPortBits, 1,
        kU32Max);
    record(raw.chip.present, v.defaulted(), "/chip");
  }
  {
    Validator v(source);
    if (raw.interconnect.kind) {
      cfg.interconnect.kind = *raw.interconnect.kind;
    } else {
      cfg.interconnect.kind = InterconnectKind::kBus;
      if (raw.interconnect.present) defaulted.emplace_back("/interconnect/kind");
    }
    cfg.interconnect.link_bits = v.integer<uint32_t>(raw.interconnect.link_bits, "/interconnect/link_bits",
                                                     d::kLinkBits, 1, kU32Max);
    cfg.interconnect.hop_cycles = v.integer<uint32_t>(raw.interconnect.hop_cycles,
                                                      "/interconnect/hop_cycles", d::kHopCycles, 0, 1u << 20);
    record(raw.interconnect.present, v.defaulted(), "/interconnect");
  }

  // Component costs: defaults depend on the validated ADC/DAC; any single figure may be set.
  const ComponentLibrary defaults = default_component_library(cfg.adc, cfg.dac, cfg.technology_nm);
  std::vector<std::string> default_components;
  for (std::size_t i = 0; i < kComponentSlots.size(); ++i) {
    const ComponentSlot& slot = kComponentSlots[i];
    const RawCost& rc = raw.components[i];
    const ComponentCost& def = defaults.*slot.member;
    ComponentCost& out = cfg.components.*slot.member;
    const std::string path = fmt::format("/components/{}", slot.key);
    auto check = [&](const std::optional<double>& x, const char* field) {
      if (x && !(*x >= 0.0)) {
        fail(source, path + "/" + field,
             fmt::format("out of range: expected a finite number >= 0, got {}", *x));
      }
    };
    check(rc.energy_pj, "energy_pj");
    check(rc.area_um2, "area_um2");
    check(rc.leakage_mw, "leakage_mw");
    if (rc.source && rc.source->empty()) {
      fail(source, path + "/source", "expected a non-empty string citing the figures' origin");
    }
    out.energy_pj = rc.energy_pj.value_or(def.energy_pj);
    out.area_um2 = rc.area_um2.value_or(def.area_um2);
    out.leakage_mw = rc.leakage_mw.value_or(def.leakage_mw);
    if (rc.source) {
      out.source = *rc.source;
    } else if (rc.energy_pj && rc.area_um2) {
      out.source = fmt::format("user config {}", source);
    } else if (rc.energy_pj || rc.area_um2) {
      out.source = fmt::format("user config {} ({}); {}: {}", source,
                               rc.energy_pj ? "energy_pj" : "area_um2",
                               rc.energy_pj ? "area_um2" : "energy_pj", def.source);
    } else {
      out.source = def.source;
    }
    if (rc.leakage_mw && !rc.source) out.source += fmt::format("; leakage_mw from user config {}", source);
    if (raw.components_present && (!rc.energy_pj || !rc.area_um2)) {
      std::string entry(slot.key);
      if (rc.energy_pj || rc.area_um2) entry += rc.energy_pj ? " (area_um2)" : " (energy_pj)";
      default_components.push_back(std::move(entry));
    }
  }

  if (!raw.components_present) defaulted.emplace_back("/components");
  if (!defaulted.empty()) {
    std::string note = "defaults applied for:";
    for (std::size_t i = 0; i < defaulted.size(); ++i) {
      note += (i == 0 ? " " : ", ") + defaulted[i];
    }
    cfg.notes.push_back(std::move(note));
  }
  if (!default_components.empty()) {
    std::string note = "default component figures used for:";
    for (std::size_t i = 0; i < default_components.size(); ++i) {
      note += (i == 0 ? " " : ", ") + default_components[i];
    }
    note += " (see each component's source)";
    cfg.notes.push_back(std::move(note));
  }
  const RawCost& adc_raw = raw.components[0];
  if (cfg.adc.kind == AdcKind::kSar &&
      (cfg.adc.bits < d::kSarTableMinBits || cfg.adc.bits > d::kSarTableMaxBits) &&
      (!adc_raw.energy_pj || !adc_raw.area_um2)) {
    cfg.notes.push_back("ADC cost outside the published SAR table: " + defaults.adc.source);
  }
  // The Murmann survey's best-design envelope bounds the energy of any published ADC from below.
  {
    const double rate_hz = cfg.clock_mhz * 1e6 / adc_conversion_cycles(cfg.adc, cfg.adc.bits);
    const double floor_pj = murmann_envelope_energy_pj(cfg.adc.bits, rate_hz);
    if (cfg.components.adc.energy_pj < floor_pj) {
      cfg.notes.push_back(fmt::format(
          "ADC energy {} pJ per conversion is below the Murmann survey's best-design envelope for "
          "{} bits at {:.4g} GS/s ({:.4g} pJ): no published ADC reaches it",
          cfg.components.adc.energy_pj, cfg.adc.bits, rate_hz * 1e-9, floor_pj));
    }
  }
  cfg.fixed_blocks = raw.fixed_blocks;
  validate_nonidealities(raw, source, cfg.nonidealities);
  return cfg;
}

// ============================================================================================
// File reading
// ============================================================================================

// 1-based line and column of the character at 0-based `offset` in `text`.
std::pair<std::size_t, std::size_t> line_column(const std::string& text, std::size_t offset) {
  offset = std::min(offset, text.size());
  std::size_t line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, offset - line_start + 1};
}

// Parses `text`, rejecting duplicate keys (nlohmann would keep the last one silently).
json parse_text(const std::string& text, const std::string& source) {
  struct Frame {
    bool is_object = false;
    std::set<std::string> keys;
    std::string key;
    std::size_t index = 0;
  };
  std::vector<Frame> stack;
  std::optional<std::string> duplicate;
  auto current_path = [&]() {
    std::string p;
    for (std::size_t i = 0; i + 1 < stack.size(); ++i) {
      p += stack[i].is_object ? child_path("", stack[i].key)
                              : "/" + std::to_string(stack[i].index);
    }
    return p;
  };
  const json::parser_callback_t callback = [&](int /*depth*/, json::parse_event_t event,
                                               json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: stack.push_back(Frame{true, {}, {}, 0}); break;
      case json::parse_event_t::array_start: stack.push_back(Frame{false, {}, {}, 0}); break;
      case json::parse_event_t::key: {
        Frame& f = stack.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second && !duplicate) {
          duplicate = child_path(current_path(), f.key);
        }
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        stack.pop_back();
        [[fallthrough]];
      case json::parse_event_t::value:
        if (!stack.empty() && !stack.back().is_object) ++stack.back().index;
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, callback);
  } catch (const json::parse_error& e) {
    const std::size_t offset = e.byte == 0 ? 0 : e.byte - 1;
    const auto [line, column] = line_column(text, offset);
    // Keep nlohmann's description, drop its "[json.exception...] parse error at ...: " prefix.
    std::string what = e.what();
    const auto col_pos = what.find("column ");
    const auto colon = col_pos == std::string::npos ? std::string::npos : what.find(": ", col_pos);
    if (colon != std::string::npos) what = what.substr(colon + 2);
    throw ConfigError(fmt::format("{}:{}:{}: JSON syntax error: {}", source, line, column, what));
  } catch (const json::exception& e) {
    // E.g. out_of_range.406 "number overflow parsing '1e400'": no position in the exception,
    // so locate the quoted token in the text.
    std::string what = e.what();
    if (const auto bracket = what.find("] "); bracket != std::string::npos) {
      what = what.substr(bracket + 2);
    }
    std::string where = source;
    const auto open = what.find('\'');
    const auto close = open == std::string::npos ? open : what.find('\'', open + 1);
    if (close != std::string::npos) {
      const auto at = text.find(what.substr(open + 1, close - open - 1));
      if (at != std::string::npos) {
        const auto [line, column] = line_column(text, at);
        where = fmt::format("{}:{}:{}", source, line, column);
      }
    }
    throw ConfigError(fmt::format("{}: JSON error: {}", where, what));
  }
  if (duplicate) fail(source, *duplicate, "duplicate key (each key may appear once)");
  return j;
}

}  // namespace

// ============================================================================================
// Public API
// ============================================================================================

ArchConfig parse_arch_config(const json& j, const std::string& source_name) {
  return validate(parse_raw(j, source_name), source_name);
}

ArchConfig load_arch_config(const std::filesystem::path& file) {
  const std::string source = file.string();
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (!std::filesystem::exists(status)) {
    throw ConfigError(fmt::format("{}: cannot read config: no such file", source));
  }
  if (std::filesystem::is_directory(status)) {
    throw ConfigError(fmt::format("{}: cannot read config: is a directory", source));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot read config: cannot open file", source));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw ConfigError(fmt::format("{}: cannot read config: read error", source));
  return parse_arch_config(parse_text(buffer.str(), source), source);
}

json nonidealities_json(const kernels::NonidealSpec& n) {
  json curve = json::array();
  for (const auto& p : n.transfer_curve) curve.push_back({p.x, p.y});
  return {{"adc_noise_sigma_lsb", n.adc_noise_sigma_lsb},
          {"conductance_variation_sigma", n.conductance_variation_sigma},
          {"transfer_curve", std::move(curve)},
          {"stuck_at_rate", n.stuck_at_rate},
          {"stuck_at_max_fraction", n.stuck_at_max_fraction}};
}

json to_json(const ArchConfig& c) {
  json blocks = json::array();
  for (const auto& b : c.fixed_blocks)
    blocks.push_back({{"name", b.name}, {"per", b.per_tile ? "tile" : "chip"}, {"count", b.count},
                      {"power_mw", b.power_mw}, {"area_um2", b.area_um2}, {"source", b.source}});
  json comps = json::object();
  for (const auto& slot : kComponentSlots) {
    const ComponentCost& cost = c.components.*slot.member;
    comps[std::string(slot.key)] = {{"energy_pj", cost.energy_pj},
                                    {"area_um2", cost.area_um2},
                                    {"leakage_mw", cost.leakage_mw},
                                    {"source", cost.source}};
  }
  return json{
      {"name", c.name},
      {"description", c.description},
      {"clock_mhz", c.clock_mhz},
      {"technology_nm", c.technology_nm},
      {"array",
       {{"rows", c.array.rows},
        {"cols", c.array.cols},
        {"cell_bits", c.array.cell_bits},
        {"read_cycles", c.array.read_cycles}}},
      {"dac", {{"bits", c.dac.bits}}},
      {"adc",
       {{"kind", std::string(to_string(c.adc.kind))},
        {"bits", c.adc.bits},
        {"columns_per_adc", c.adc.columns_per_adc},
        {"conversion_cycles", c.adc.conversion_cycles},
        {"layer_bits_override", c.adc.layer_bits_override},
        {"override_references", c.adc.override_references},
        {"override_calibration_images", c.adc.override_calibration_images}}},
      {"tile",
       {{"arrays_per_tile", c.tile.arrays_per_tile},
        {"input_buffer_bytes", c.tile.input_buffer_bytes},
        {"output_buffer_bytes", c.tile.output_buffer_bytes},
        {"shift_add_units", c.tile.shift_add_units}}},
      {"chip",
       {{"tiles", c.chip.tiles},
        {"global_buffer_bytes", c.chip.global_buffer_bytes},
        {"buffer_bus_bits", c.chip.buffer_bus_bits},
        {"global_buffer_ports", c.chip.global_buffer_ports},
        {"global_buffer_port_bits", c.chip.global_buffer_port_bits}}},
      {"interconnect",
       {{"kind", std::string(to_string(c.interconnect.kind))},
        {"link_bits", c.interconnect.link_bits},
        {"hop_cycles", c.interconnect.hop_cycles}}},
      {"components", std::move(comps)},
      {"nonidealities", nonidealities_json(c.nonidealities)},
      {"fixed_blocks", std::move(blocks)},
  };
}

}  // namespace imcsim::config
