// Default component costs (the figures and their sources are in defaults.h) and ADC timing.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "sim/config/arch_config.h"
#include "sim/config/defaults.h"

namespace imcsim::config {

namespace d = defaults;

std::string_view to_string(AdcKind kind) {
  switch (kind) {
    case AdcKind::kSar: return "sar";
    case AdcKind::kFlash: return "flash";
    case AdcKind::kRamp: return "ramp";
  }
  return "?";
}

uint32_t adc_conversion_cycles(const AdcConfig& adc, uint32_t bits) {
  if (bits < 1 || bits > adc.bits || bits > d::kMaxAdcBits) {
    throw std::invalid_argument(fmt::format(
        "adc_conversion_cycles: resolution {} bits outside 1..{} (the ADC's maximum)", bits,
        std::min(adc.bits, d::kMaxAdcBits)));
  }
  if (adc.conversion_cycles != 0) return adc.conversion_cycles;  // configured override
  switch (adc.kind) {
    case AdcKind::kSar: return bits;                 // one cycle per bit
    case AdcKind::kFlash: return 1;                  // all comparators at once
    case AdcKind::kRamp: return uint32_t{1} << bits;  // one cycle per ramp step
  }
  throw std::invalid_argument("adc_conversion_cycles: unknown ADC kind");
}

namespace {

void check_bits(const char* what, uint32_t bits, uint32_t max_bits) {
  if (bits < 1 || bits > max_bits) {
    throw std::invalid_argument(fmt::format("{}: {} bits outside 1..{}", what, bits, max_bits));
  }
}

ComponentCost sar_cost(uint32_t bits) {
  constexpr const char* kTable = "scaled 32 nm SAR ADC table (Saberi-based, as used for ISAAC)";
  if (bits < d::kSarTableMinBits) {
    return {d::kSarEnergyPj.front(), d::kSarAreaUm2.front(),
            fmt::format("{}: {}-bit figure; table covers {}..{} bits, clamped for {} bits",
                        kTable, d::kSarTableMinBits, d::kSarTableMinBits, d::kSarTableMaxBits,
                        bits)};
  }
  if (bits > d::kSarTableMaxBits) {
    const double scale = std::ldexp(1.0, static_cast<int>(bits - d::kSarTableMaxBits));
    return {d::kSarEnergyPj.back() * scale, d::kSarAreaUm2.back() * scale,
            fmt::format("{}: {}-bit figure x 2^{} (Walden: energy ~ 2^N), extrapolated for {} "
                        "bits",
                        kTable, d::kSarTableMaxBits, bits - d::kSarTableMaxBits, bits)};
  }
  const std::size_t i = bits - d::kSarTableMinBits;
  return {d::kSarEnergyPj[i], d::kSarAreaUm2[i], fmt::format("{}, {} bits", kTable, bits)};
}

constexpr const char* kPerStep =
    "ISAAC 8-bit ADC's Walden figure per conversion step: 1.67 pJ/2^8 per comparison, "
    "1200 um^2/2^8 per comparator";

ComponentCost flash_cost(uint32_t bits) {
  const double comparators = std::ldexp(1.0, static_cast<int>(bits)) - 1.0;
  return {comparators * d::kComparatorEnergyPj, comparators * d::kComparatorAreaUm2,
          fmt::format("flash, {} bits: 2^{}-1 = {} comparators x {}", bits, bits, comparators,
                      kPerStep)};
}

ComponentCost ramp_cost(uint32_t bits) {
  const double steps = std::ldexp(1.0, static_cast<int>(bits));
  const double area_units = 1.0 + bits;  // comparator + N-bit counter
  return {steps * d::kComparatorEnergyPj, area_units * d::kComparatorAreaUm2,
          fmt::format("ramp, {} bits: 2^{} steps per conversion; area = comparator + {}-bit "
                      "counter = {} comparator areas (estimate); {}",
                      bits, bits, bits, area_units, kPerStep)};
}

}  // namespace

ComponentCost default_adc_cost(AdcKind kind, uint32_t bits) {
  check_bits("default_adc_cost", bits, d::kMaxAdcBits);
  switch (kind) {
    case AdcKind::kSar: return sar_cost(bits);
    case AdcKind::kFlash: return flash_cost(bits);
    case AdcKind::kRamp: return ramp_cost(bits);
  }
  throw std::invalid_argument("default_adc_cost: unknown ADC kind");
}

ComponentCost default_dac_cost(uint32_t bits) {
  check_bits("default_dac_cost", bits, d::kMaxDacBits);
  const double scale = std::ldexp(1.0, static_cast<int>(bits) - 1);
  std::string source = "ISAAC-derived 1-bit DAC: 0.4 pJ per row activation, 0.166 um^2";
  if (bits > 1) {
    source += fmt::format(
        "; x 2^{} for {} bits (MNSIM 2.0: power doubles per bit; area assumed to scale alike)",
        bits - 1, bits);
  }
  return {d::kDac1bEnergyPj * scale, d::kDac1bAreaUm2 * scale, source};
}

ComponentLibrary default_component_library(const AdcConfig& adc, const DacConfig& dac) {
  ComponentLibrary lib;
  lib.adc = default_adc_cost(adc.kind, adc.bits);
  lib.dac = default_dac_cost(dac.bits);
  lib.crossbar_cell = {d::kCellEnergyPj, d::kCellAreaUm2,
                       "ISAAC: 1.83 fJ per cell operation; 0.0002 mm^2 per 8 arrays of 128x128"};
  lib.sample_hold = {d::kSampleHoldEnergyPj, d::kSampleHoldAreaUm2,
                     "ISAAC: 10 uW and 0.00004 mm^2 per 8x128 units; one sample per 100 ns read"};
  lib.shift_add = {d::kShiftAddEnergyPj, d::kShiftAddAreaUm2,
                   "ISAAC: 0.021 pJ per op; 0.00024 mm^2 per 4 units"};
  lib.input_buffer = {d::kEdramEnergyPjPerByte, d::kEdramAreaUm2PerByte,
                      "ISAAC eDRAM: 20.45 pJ per 256-bit access; 0.083 mm^2 per 64 KB"};
  lib.output_buffer = {d::kRegisterEnergyPjPerByte, d::kRegisterAreaUm2PerByte,
                       "register: Aladdin 0.009 pJ/bit (40 nm, not scaled); area ISAAC IMA "
                       "output register 256 B in 0.00077 mm^2"};
  lib.global_buffer = {d::kGlobalBufferEnergyPjPerByte, d::kGlobalBufferAreaUm2PerByte,
                       "16 banks of ISAAC eDRAM: 20.45 pJ per 256-bit access; 0.083 mm^2 per "
                       "64 KB"};
  lib.digital_op = {d::kDigitalOpEnergyPj, d::kDigitalOpAreaUm2,
                    "Aladdin 32-bit adder: 0.21 pJ, 278 um^2 (40 nm, not scaled to 32 nm)"};
  return lib;
}

}  // namespace imcsim::config
