// Architecture config: defaults, default.json, every class of bad input, ADC timing at its
// limits, default component costs, user overrides, to_json round trip.
#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/config/arch_config.h"
#include "sim/config/defaults.h"

namespace imcsim::config {
namespace {

namespace d = defaults;
using nlohmann::json;

const std::filesystem::path kSourceDir = IMCSIM_SOURCE_DIR;
const std::filesystem::path kDataDir = kSourceDir / "tests" / "data" / "configs";
constexpr const char* kName = "arch_configs/x.json";

// Expects parse_arch_config(j) to throw ConfigError whose message contains the file name and
// every one of `parts` (typically the JSON path and the expectation).
void expect_error(const json& j, std::initializer_list<std::string> parts) {
  try {
    parse_arch_config(j, kName);
    FAIL() << "no ConfigError for " << j.dump();
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(std::string(kName) + ": ", 0), 0u) << msg;
    for (const auto& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }
}

std::string load_error(const std::filesystem::path& file) {
  try {
    load_arch_config(file);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for " << file;
  return {};
}

// ---- defaults --------------------------------------------------------------------------------

TEST(ArchConfigDefaults, EmptyObjectGetsIsaacLikeDefaults) {
  const ArchConfig c = parse_arch_config(json::object(), kName);
  EXPECT_EQ(c.name, "x");  // file stem
  EXPECT_EQ(c.source_file, kName);
  EXPECT_DOUBLE_EQ(c.clock_mhz, 1200.0);
  EXPECT_EQ(c.array.rows, 128u);
  EXPECT_EQ(c.array.cols, 128u);
  EXPECT_EQ(c.array.cell_bits, 2u);
  EXPECT_EQ(c.array.read_cycles, 120u);
  EXPECT_EQ(c.dac.bits, 1u);
  EXPECT_EQ(c.adc.kind, AdcKind::kSar);
  EXPECT_EQ(c.adc.bits, 8u);
  EXPECT_EQ(c.adc.columns_per_adc, 128u);
  EXPECT_EQ(c.tile.arrays_per_tile, 96u);
  EXPECT_EQ(c.tile.input_buffer_bytes, 65536u);
  EXPECT_EQ(c.tile.output_buffer_bytes, 3072u);
  EXPECT_EQ(c.tile.shift_add_units, 48u);
  EXPECT_EQ(c.chip.tiles, 168u);
  EXPECT_EQ(c.chip.global_buffer_bytes, 1048576u);
  EXPECT_EQ(c.chip.buffer_bus_bits, 256u);

  EXPECT_DOUBLE_EQ(c.components.adc.energy_pj, 1.67);
  EXPECT_DOUBLE_EQ(c.components.adc.area_um2, 1200.0);
  EXPECT_DOUBLE_EQ(c.components.dac.energy_pj, 0.4);
  EXPECT_DOUBLE_EQ(c.components.dac.area_um2, 0.166);
  EXPECT_DOUBLE_EQ(c.components.crossbar_cell.energy_pj, 1.83e-3);
  EXPECT_DOUBLE_EQ(c.components.crossbar_cell.area_um2, 200.0 / (8 * 128 * 128));
  EXPECT_DOUBLE_EQ(c.components.sample_hold.energy_pj, 10e-6 * 100e-9 / 1024 * 1e12);
  EXPECT_DOUBLE_EQ(c.components.sample_hold.area_um2, 40.0 / 1024);
  EXPECT_DOUBLE_EQ(c.components.shift_add.energy_pj, 0.021);
  EXPECT_DOUBLE_EQ(c.components.shift_add.area_um2, 60.0);
  EXPECT_DOUBLE_EQ(c.components.input_buffer.energy_pj, 20.45 / 32);
  EXPECT_DOUBLE_EQ(c.components.input_buffer.area_um2, 83000.0 / 65536);
  EXPECT_DOUBLE_EQ(c.components.output_buffer.energy_pj, 0.072);
  EXPECT_DOUBLE_EQ(c.components.output_buffer.area_um2, 770.0 / 256);
  EXPECT_DOUBLE_EQ(c.components.global_buffer.energy_pj, 20.45 / 32);
  EXPECT_DOUBLE_EQ(c.components.digital_op.energy_pj, 0.21);
  EXPECT_DOUBLE_EQ(c.components.digital_op.area_um2, 278.0);
  EXPECT_NE(c.components.adc.source.find("SAR"), std::string::npos);
  EXPECT_NE(c.components.digital_op.source.find("40 nm"), std::string::npos);

  ASSERT_FALSE(c.notes.empty());
  EXPECT_NE(c.notes[0].find("/clock_mhz"), std::string::npos);
  EXPECT_NE(c.notes[0].find("/array"), std::string::npos);
}

TEST(ArchConfigDefaults, ColumnsPerAdcDefaultsToArrayCols) {
  const ArchConfig c = parse_arch_config(json{{"array", {{"cols", 96}}}}, kName);
  EXPECT_EQ(c.adc.columns_per_adc, 96u);
}

TEST(ArchConfigDefaults, DefaultJsonLoadsAndMatchesBuiltInDefaults) {
  const ArchConfig file = load_arch_config(kSourceDir / "arch_configs" / "default.json");
  EXPECT_EQ(file.name, "default");
  EXPECT_FALSE(file.description.empty());
  json a = to_json(file);
  json b = to_json(parse_arch_config(json::object(), "default.json"));
  a.erase("description");
  b.erase("description");
  EXPECT_EQ(a, b) << a.dump(2) << "\nvs\n" << b.dump(2);
  EXPECT_TRUE(file.notes.empty()) << file.notes.front();  // written out in full
}

TEST(ArchConfigDefaults, ToJsonRoundTrips) {
  const json in = {{"clock_mhz", 1000.5},
                   {"array", {{"rows", 256}, {"cols", 64}, {"cell_bits", 4}}},
                   {"adc", {{"kind", "ramp"}, {"bits", 5}, {"columns_per_adc", 8}}},
                   {"components", {{"dac", {{"area_um2", 3.25}}}}}};
  const ArchConfig c = parse_arch_config(in, kName);
  const ArchConfig again = parse_arch_config(to_json(c), kName);
  EXPECT_EQ(to_json(again), to_json(c));
  ArchConfig stripped = again;
  stripped.notes = c.notes;
  EXPECT_EQ(stripped, c);
}

TEST(ArchConfigDefaults, AllKindsAndBitsAccepted) {
  for (const char* kind : {"sar", "flash", "ramp"}) {
    for (int bits : {1, 16}) {
      const ArchConfig c = parse_arch_config(json{{"adc", {{"kind", kind}, {"bits", bits}}}}, kName);
      EXPECT_EQ(to_string(c.adc.kind), kind);
      EXPECT_EQ(c.adc.bits, static_cast<uint32_t>(bits));
      EXPECT_TRUE(std::isfinite(c.components.adc.energy_pj));
      EXPECT_GT(c.components.adc.energy_pj, 0.0);
    }
  }
}

// ---- bad input -------------------------------------------------------------------------------

TEST(ArchConfigErrors, UnknownTopLevelKey) {
  expect_error(json{{"clok_mhz", 1000}},
               {"/clok_mhz", "unknown key", "expected one of:", "clock_mhz", "did you mean"});
}

TEST(ArchConfigErrors, UnknownNestedKey) {
  expect_error(json{{"adc", {{"bitz", 8}}}},
               {"arch_configs/x.json: /adc/bitz: unknown key (expected one of: kind, bits, "
                "columns_per_adc, conversion_cycles, layer_bits_override, override_references, "
                "override_calibration_images)"});
  expect_error(json{{"components", {{"adc", {{"energy", 1.0}}}}}},
               {"/components/adc/energy", "energy_pj, area_um2, leakage_mw, source"});
  expect_error(json{{"components", {{"sram", json::object()}}}},
               {"/components/sram", "unknown key"});
}

TEST(ArchConfigErrors, WrongType) {
  expect_error(json{{"array", {{"rows", "128"}}}}, {"/array/rows", "expected an integer"});
  expect_error(json{{"array", 5}}, {"/array:", "expected an object"});
  expect_error(json{{"clock_mhz", "fast"}}, {"/clock_mhz", "expected a number"});
  expect_error(json{{"adc", {{"kind", 1}}}}, {"/adc/kind", "expected a string"});
  expect_error(json{{"name", true}}, {"/name", "expected a string"});
  expect_error(json{{"chip", {{"tiles", nullptr}}}}, {"/chip/tiles", "expected an integer"});
  expect_error(json{{"components", {{"adc", {{"source", 3}}}}}},
               {"/components/adc/source", "expected a string"});
  expect_error(json::array(), {"arch_configs/x.json: /: expected an object"});
}

TEST(ArchConfigErrors, ZeroSizes) {
  expect_error(json{{"array", {{"rows", 0}}}}, {"/array/rows", "out of range", "1..8192"});
  expect_error(json{{"array", {{"cols", 0}}}}, {"/array/cols", "out of range"});
  expect_error(json{{"array", {{"read_cycles", 0}}}}, {"/array/read_cycles", "out of range"});
  expect_error(json{{"tile", {{"arrays_per_tile", 0}}}}, {"/tile/arrays_per_tile"});
  expect_error(json{{"tile", {{"output_buffer_bytes", 0}}}}, {"/tile/output_buffer_bytes"});
  expect_error(json{{"tile", {{"shift_add_units", 0}}}}, {"/tile/shift_add_units"});
  expect_error(json{{"chip", {{"tiles", 0}}}}, {"/chip/tiles", "out of range"});
  expect_error(json{{"chip", {{"global_buffer_bytes", 0}}}}, {"/chip/global_buffer_bytes"});
  expect_error(json{{"chip", {{"buffer_bus_bits", 0}}}}, {"/chip/buffer_bus_bits"});
  expect_error(json{{"adc", {{"columns_per_adc", 0}}}}, {"/adc/columns_per_adc"});
  expect_error(json{{"clock_mhz", 0}}, {"/clock_mhz", "out of range"});
}

TEST(ArchConfigErrors, NegativeValues) {
  expect_error(json{{"tile", {{"input_buffer_bytes", -1}}}},
               {"/tile/input_buffer_bytes", "expected a non-negative integer, got -1"});
  expect_error(json{{"array", {{"rows", -128}}}}, {"/array/rows", "non-negative"});
  expect_error(json{{"clock_mhz", -5.0}}, {"/clock_mhz", "out of range"});
  expect_error(json{{"components", {{"adc", {{"energy_pj", -1.0}}}}}},
               {"/components/adc/energy_pj", ">= 0"});
  expect_error(json{{"components", {{"global_buffer", {{"area_um2", -0.5}}}}}},
               {"/components/global_buffer/area_um2", ">= 0"});
}

TEST(ArchConfigErrors, FractionalInteger) {
  expect_error(json{{"array", {{"rows", 1.5}}}}, {"/array/rows", "expected an integer", "1.5"});
  expect_error(json{{"adc", {{"bits", 8.0}}}},
               {"/adc/bits", "expected an integer written without fraction or exponent"});
  expect_error(json{{"array", {{"rows", 1e23}}}}, {"/array/rows", "integer too large"});
}

TEST(ArchConfigErrors, NumberOverflowInFile) {
  const auto file = kDataDir / "number_overflow.json";
  const std::string msg = load_error(file);
  EXPECT_NE(msg.find(file.string() + ":3:27: JSON error: number overflow"), std::string::npos)
      << msg;
}

TEST(ArchConfigErrors, OutOfRange) {
  expect_error(json{{"adc", {{"bits", 0}}}}, {"/adc/bits", "1..16", "got 0"});
  expect_error(json{{"adc", {{"bits", 17}}}}, {"/adc/bits", "1..16", "got 17"});
  expect_error(json{{"array", {{"cell_bits", 9}}}}, {"/array/cell_bits", "1..8"});
  expect_error(json{{"dac", {{"bits", 17}}}}, {"/dac/bits", "1..16"});
  expect_error(json{{"array", {{"rows", 8193}}}}, {"/array/rows", "1..8192"});
  expect_error(json{{"chip", {{"tiles", 5000000000ULL}}}}, {"/chip/tiles", "out of range"});
  expect_error(json{{"clock_mhz", 1e9}}, {"/clock_mhz", "out of range"});
  expect_error(json{{"name", ""}}, {"/name", "non-empty"});
}

TEST(ArchConfigErrors, ColumnsPerAdcMustDivideCols) {
  expect_error(json{{"adc", {{"columns_per_adc", 3}}}},
               {"/adc/columns_per_adc", "must divide /array/cols = 128", "got 3"});
  expect_error(json{{"array", {{"cols", 64}}}, {"adc", {{"columns_per_adc", 128}}}},
               {"/adc/columns_per_adc", "must divide"});
}

TEST(ArchConfigErrors, UnknownAdcKind) {
  expect_error(json{{"adc", {{"kind", "sah"}}}},
               {"/adc/kind", "unknown ADC kind \"sah\"", "sar, flash, ramp"});
  expect_error(json{{"adc", {{"kind", "SAR"}}}}, {"/adc/kind"});  // case-sensitive
}

TEST(ArchConfigErrors, BadJsonSyntaxGivesLineAndColumn) {
  const auto file = kDataDir / "bad_syntax.json";
  const std::string msg = load_error(file);
  // The trailing comma makes the '}' on line 6, column 3 unexpected.
  EXPECT_NE(msg.find(file.string() + ":6:3: JSON syntax error"), std::string::npos) << msg;
}

TEST(ArchConfigErrors, DuplicateKey) {
  const auto file = kDataDir / "duplicate_key.json";
  const std::string msg = load_error(file);
  EXPECT_NE(msg.find(file.string() + ": /adc/bits: duplicate key"), std::string::npos) << msg;
}

TEST(ArchConfigErrors, MissingFile) {
  const auto file = kDataDir / "no_such_config.json";
  const std::string msg = load_error(file);
  EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("no such file"), std::string::npos) << msg;
  EXPECT_NE(load_error(kDataDir).find("is a directory"), std::string::npos);
}

// ---- timing ----------------------------------------------------------------------------------

TEST(AdcConversionCycles, Limits) {
  const AdcConfig sar{AdcKind::kSar, 16, 128};
  EXPECT_EQ(adc_conversion_cycles(sar, 1), 1u);
  EXPECT_EQ(adc_conversion_cycles(sar, 8), 8u);
  EXPECT_EQ(adc_conversion_cycles(sar, 16), 16u);
  const AdcConfig flash{AdcKind::kFlash, 16, 128};
  EXPECT_EQ(adc_conversion_cycles(flash, 1), 1u);
  EXPECT_EQ(adc_conversion_cycles(flash, 16), 1u);
  const AdcConfig ramp{AdcKind::kRamp, 16, 128};
  EXPECT_EQ(adc_conversion_cycles(ramp, 1), 2u);
  EXPECT_EQ(adc_conversion_cycles(ramp, 4), 16u);
  EXPECT_EQ(adc_conversion_cycles(ramp, 15), 32768u);
  EXPECT_EQ(adc_conversion_cycles(ramp, 16), 65536u);
}

TEST(AdcConversionCycles, RejectsResolutionOutsideTheAdc) {
  const AdcConfig sar8{AdcKind::kSar, 8, 128};
  EXPECT_EQ(adc_conversion_cycles(sar8, 8), 8u);
  EXPECT_THROW(adc_conversion_cycles(sar8, 9), std::invalid_argument);
  EXPECT_THROW(adc_conversion_cycles(sar8, 0), std::invalid_argument);
  const AdcConfig ramp32{AdcKind::kRamp, 32, 128};  // unvalidated struct: no 2^32 overflow
  EXPECT_THROW(adc_conversion_cycles(ramp32, 32), std::invalid_argument);
}

// ---- component costs -------------------------------------------------------------------------

TEST(DefaultComponentCosts, SarTable) {
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kSar, 8).energy_pj, 1.67);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kSar, 8).area_um2, 1200.0);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kSar, 4).energy_pj, 0.79);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kSar, 4).area_um2, 361.0);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kSar, 10).energy_pj, 2.38);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kSar, 10).area_um2, 3002.0);
  const ArchConfig c4 = parse_arch_config(json{{"adc", {{"bits", 4}}}}, kName);
  EXPECT_DOUBLE_EQ(c4.components.adc.energy_pj, 0.79);
}

TEST(DefaultComponentCosts, SarOutsideTableIsClampedBelowAndDoubledAbove) {
  const ComponentCost low = default_adc_cost(AdcKind::kSar, 1);
  EXPECT_DOUBLE_EQ(low.energy_pj, 0.79);
  EXPECT_NE(low.source.find("clamped"), std::string::npos);
  const ComponentCost high = default_adc_cost(AdcKind::kSar, 12);
  EXPECT_DOUBLE_EQ(high.energy_pj, 2.38 * 4);
  EXPECT_DOUBLE_EQ(high.area_um2, 3002.0 * 4);
  EXPECT_NE(high.source.find("extrapolated"), std::string::npos);
  const ArchConfig c = parse_arch_config(json{{"adc", {{"bits", 12}}}}, kName);
  EXPECT_NE(c.notes.back().find("extrapolated"), std::string::npos);
}

TEST(DefaultComponentCosts, FlashAndRampPerConversionStep) {
  const double step = 1.67 / 256;
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kFlash, 4).energy_pj, 15 * step);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kFlash, 1).energy_pj, step);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kFlash, 4).area_um2, 15 * 1200.0 / 256);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kRamp, 8).energy_pj, 1.67);
  EXPECT_DOUBLE_EQ(default_adc_cost(AdcKind::kRamp, 8).area_um2, 9 * 1200.0 / 256);
  EXPECT_THROW(default_adc_cost(AdcKind::kSar, 0), std::invalid_argument);
  EXPECT_THROW(default_adc_cost(AdcKind::kSar, 17), std::invalid_argument);
}

TEST(DefaultComponentCosts, DacDoublesPerBit) {
  EXPECT_DOUBLE_EQ(default_dac_cost(1).energy_pj, 0.4);
  EXPECT_DOUBLE_EQ(default_dac_cost(2).energy_pj, 0.8);
  EXPECT_DOUBLE_EQ(default_dac_cost(6).energy_pj, 0.4 * 32);  // MNSIM: 3.9 -> 124.8 uW
  EXPECT_DOUBLE_EQ(default_dac_cost(6).area_um2, 0.166 * 32);
  const ArchConfig c = parse_arch_config(json{{"dac", {{"bits", 3}}}}, kName);
  EXPECT_DOUBLE_EQ(c.components.dac.energy_pj, 1.6);
}

TEST(ComponentOverrides, SingleFigureTakenAndSourceMarked) {
  const auto file = kDataDir / "override_adc_energy.json";
  const ArchConfig c = load_arch_config(file);
  EXPECT_DOUBLE_EQ(c.components.adc.energy_pj, 2.5);
  EXPECT_DOUBLE_EQ(c.components.adc.area_um2, 1200.0);  // still the default
  EXPECT_EQ(c.components.adc.source.rfind("user config " + file.string(), 0), 0u)
      << c.components.adc.source;
  EXPECT_NE(c.components.adc.source.find("area_um2: scaled 32 nm SAR"), std::string::npos)
      << c.components.adc.source;
  ASSERT_EQ(c.notes.size(), 2u);
  EXPECT_NE(c.notes[1].find("adc (area_um2), dac,"), std::string::npos) << c.notes[1];
  // Untouched components keep their default source.
  EXPECT_EQ(c.components.dac.source.find("user config"), std::string::npos);
}

TEST(ComponentOverrides, ExplicitSourceKeptAndBothFigures) {
  const json j = {{"components",
                   {{"adc", {{"energy_pj", 3}, {"area_um2", 10}, {"source", "my paper"}}},
                    {"dac", {{"energy_pj", 0}, {"area_um2", 0}}}}}};
  const ArchConfig c = parse_arch_config(j, kName);
  EXPECT_EQ(c.components.adc.source, "my paper");
  EXPECT_DOUBLE_EQ(c.components.adc.energy_pj, 3.0);  // integer literal accepted for a number
  EXPECT_EQ(c.components.dac.source, std::string("user config ") + kName);
  EXPECT_DOUBLE_EQ(c.components.dac.energy_pj, 0.0);
}

TEST(ComponentOverrides, DefaultAdcCostFollowsKindAndBits) {
  const ArchConfig c = parse_arch_config(json{{"adc", {{"kind", "flash"}, {"bits", 3}}}}, kName);
  EXPECT_DOUBLE_EQ(c.components.adc.energy_pj, 7 * 1.67 / 256);
  EXPECT_NE(c.components.adc.source.find("flash"), std::string::npos);
}

}  // namespace
}  // namespace imcsim::config
