// Architecture configuration: JSON file -> plain structs -> validated runtime config.
//
// Two layers (docs/arch_config.md):
//   1. parse: every key optional; unknown keys and wrong JSON types are errors naming the JSON
//      path (e.g. "/adc/bits") and the file;
//   2. validate: defaults applied (named constants in sim/config/defaults.h, each citing its
//      source), ranges and cross-field rules checked, component costs filled in.
// The result is an ArchConfig in which every field is set and valid. No SystemC here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/crossbar/nonideal.h"

namespace imcsim::config {

// Any problem with a config. Message: "<file>: <json path>: <problem, what was expected>", or
// "<file>:<line>:<column>: JSON syntax error: ..." for malformed JSON.
struct ConfigError : std::runtime_error {
  using runtime_error::runtime_error;
};

// Implementations are registered by name in sim/config/component_registry.h.
enum class AdcKind { kSar, kFlash, kRamp, kNlImc };  // JSON "sar" | "flash" | "ramp" | "nl-imc"
enum class InterconnectKind { kBus, kHtree, kMesh };  // JSON "bus" | "htree" | "mesh"

std::string_view to_string(AdcKind kind);
std::string_view to_string(InterconnectKind kind);

// Cost of one component type: energy per event and area per instance (events: see
// ComponentLibrary). `source` cites where the figures come from.
struct ComponentCost {
  double energy_pj = 0;
  double area_um2 = 0;
  std::string source;
  double leakage_mw = 0;  // static power per instance while its tile (or the chip) is powered
  bool operator==(const ComponentCost&) const = default;
};

struct ArrayConfig {
  uint32_t rows = 0;
  uint32_t cols = 0;
  uint32_t cell_bits = 0;
  uint32_t read_cycles = 0;  // DAC drive + settle + sample-and-hold, in clock cycles
  bool operator==(const ArrayConfig&) const = default;
};

struct DacConfig {
  uint32_t bits = 0;
  bool operator==(const DacConfig&) const = default;
};

struct AdcConfig {
  AdcKind kind = AdcKind::kSar;
  uint32_t bits = 0;             // maximum resolution of the (reconfigurable) ADC
  uint32_t columns_per_adc = 0;  // column multiplexing ratio; divides array.cols
  // Clock cycles per conversion at every resolution, overriding the kind's rule (SAR: bits,
  // flash: 1, ramp: 2^bits); 0 = use the rule. For ADCs clocked faster than the chip (ISAAC:
  // a 1.28 GS/s SAR ADC converts one sample per cycle of a 1.28 GHz clock).
  uint32_t conversion_cycles = 0;
  // Sweeps: every IMC layer's ADC converts at this many bits instead of the graph's (0 = off;
  // 1..bits). References: "rescale" re-derives linear ADCs keeping their full-scale range
  // (non-linear ADCs need data: an error), or a calibration method name ("linear-minmax", ...,
  // "bs-kmq", docs/calibration.md) fits new ones on the first override_calibration_images
  // training images. The report's "adc_override" section says what was simulated.
  uint32_t layer_bits_override = 0;
  std::string override_references = "rescale";
  uint32_t override_calibration_images = 512;
  bool operator==(const AdcConfig&) const = default;
};

struct TileConfig {
  uint32_t arrays_per_tile = 0;
  uint64_t input_buffer_bytes = 0;
  uint64_t output_buffer_bytes = 0;
  uint32_t shift_add_units = 0;
  bool operator==(const TileConfig&) const = default;
};

struct ChipConfig {
  uint32_t tiles = 0;
  uint64_t global_buffer_bytes = 0;
  uint32_t buffer_bus_bits = 0;  // tile bus width (tile buffers <-> arrays), bits per clock cycle
  uint32_t global_buffer_ports = 0;      // concurrent global buffer accesses
  uint32_t global_buffer_port_bits = 0;  // bits per clock cycle per port
  bool operator==(const ChipConfig&) const = default;
};

// The network between the global buffer and the tiles (docs/timing_model.md).
struct InterconnectConfig {
  InterconnectKind kind = InterconnectKind::kBus;
  uint32_t link_bits = 0;   // bits per clock cycle per link
  uint32_t hop_cycles = 0;  // latency per link crossed
  bool operator==(const InterconnectConfig&) const = default;
};

struct ComponentLibrary {
  ComponentCost adc;            // per conversion (at adc.bits); area per ADC
  ComponentCost dac;            // per row activation (one DAC drive of one row); area per DAC
  ComponentCost crossbar_cell;  // per active cell per input group; area per cell
  ComponentCost sample_hold;    // per column sample; area per column
  ComponentCost shift_add;      // per shift-add op (one ADC output accumulated); area per unit
  ComponentCost input_buffer;   // per byte accessed; area per byte
  ComponentCost output_buffer;  // per byte accessed; area per byte
  ComponentCost global_buffer;  // per byte accessed; area per byte
  ComponentCost digital_op;     // per digital ALU op (post-processing, pooling, requant); per unit
  ComponentCost interconnect;   // per bit per hop (link crossed); area per link
  bool operator==(const ComponentLibrary&) const = default;
};

// A fixed-function block characterised by its power and area rather than by events (e.g.
// ISAAC's router, eDRAM-to-IMA bus, HyperTransport links): counted `count` times per tile
// or per chip (fractions allowed: a router shared by 4 tiles is 0.25 per tile). Its power is
// drawn whenever its tile (or the chip) is powered, and counted in peak power.
struct FixedBlock {
  std::string name;
  bool per_tile = true;  // JSON "per": "tile" | "chip"
  double count = 1;
  double power_mw = 0;
  double area_um2 = 0;
  std::string source;
  bool operator==(const FixedBlock&) const = default;
};

struct ArchConfig {
  std::string name;
  std::string description;
  std::string source_file;  // the file (or source name) it was read from
  double clock_mhz = 0;
  uint32_t technology_nm = 0;  // scales the default component figures (docs/arch_config.md)
  ArrayConfig array;
  DacConfig dac;
  AdcConfig adc;
  TileConfig tile;
  ChipConfig chip;
  InterconnectConfig interconnect;
  ComponentLibrary components;
  // Analog non-idealities (JSON "nonidealities"; docs/SEMANTICS.md step 5), all off by default.
  kernels::NonidealSpec nonidealities;
  std::vector<FixedBlock> fixed_blocks;
  std::vector<std::string> notes;  // defaults applied, extrapolations made
  bool operator==(const ArchConfig&) const = default;
};

// Reads, parses and validates a JSON config file. Throws ConfigError.
ArchConfig load_arch_config(const std::filesystem::path& file);

// Parses and validates an already-parsed JSON document; `source_name` prefixes error messages
// and becomes source_file. Throws ConfigError.
ArchConfig parse_arch_config(const nlohmann::json& j, const std::string& source_name);

// The "nonidealities" section of a config in the input schema (also echoed in run reports).
nlohmann::json nonidealities_json(const kernels::NonidealSpec& nonidealities);

// The effective config (all defaults applied) in the input schema: parse_arch_config accepts
// it and yields the same config (source_file and notes are not part of it).
nlohmann::json to_json(const ArchConfig& config);

// ---- timing ---------------------------------------------------------------------------------

// Clock cycles of one conversion at resolution `bits` (1 <= bits <= adc.bits):
// SAR: bits; flash: 1; ramp: 2^bits. Throws std::invalid_argument outside that range.
uint32_t adc_conversion_cycles(const AdcConfig& adc, uint32_t bits);

// ---- default component costs (sim/config/defaults.h documents each figure) -----------------

// Default ADC cost for `kind` at `bits` (1..16); `source` explains any extrapolation.
ComponentCost default_adc_cost(AdcKind kind, uint32_t bits);
// Default DAC cost at `bits` (1..16).
ComponentCost default_dac_cost(uint32_t bits);
// Default interconnect cost: energy per bit per hop, area per link.
ComponentCost default_interconnect_cost();
// The default library for a validated adc/dac choice at `technology_nm` (figures scaled from
// their 32 nm sources by scale_to_node).
ComponentLibrary default_component_library(const AdcConfig& adc, const DacConfig& dac,
                                           uint32_t technology_nm = 32);
// Technology scaling of a 32 nm figure to `technology_nm` (first-order, constant supply):
// energy and leakage x (nm / 32), area x (nm / 32)^2; the source says so.
ComponentCost scale_to_node(ComponentCost cost, uint32_t technology_nm);

// Murmann ADC survey best-design envelope: minimum energy per conversion (pJ) of an N-bit
// ADC sampling at f_s: FOM_W,env(f_s) * 2^N, FOM_W,env = 0.669 fJ * sqrt(1 + (f_s / 1.221 GHz)^2).
double murmann_envelope_energy_pj(uint32_t bits, double sample_rate_hz);

}  // namespace imcsim::config
