// Default component costs (the figures and their sources are in defaults.h) and ADC timing.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "sim/config/arch_config.h"
#include "sim/config/component_registry.h"
#include "sim/config/defaults.h"

namespace imcsim::config {

namespace d = defaults;

std::string_view to_string(AdcKind kind) {
  switch (kind) {
    case AdcKind::kSar: return "sar";
    case AdcKind::kFlash: return "flash";
    case AdcKind::kRamp: return "ramp";
    case AdcKind::kNlImc: return "nl-imc";
  }
  return "?";
}

std::string_view to_string(InterconnectKind kind) {
  switch (kind) {
    case InterconnectKind::kBus: return "bus";
    case InterconnectKind::kHtree: return "htree";
    case InterconnectKind::kMesh: return "mesh";
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
  return adc_model(adc.kind).conversion_cycles(bits);
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

// In-memory non-linear ADC (NL-ADC): the array's reference rows generate the (non-uniform)
// ramp and the column's sense amplifier compares once per step: 2^N steps per conversion,
// like a ramp ADC, but with no counter and no ramp generator: area = one comparator.
ComponentCost nl_imc_cost(uint32_t bits) {
  const double steps = std::ldexp(1.0, static_cast<int>(bits));
  return {steps * d::kComparatorEnergyPj, d::kComparatorAreaUm2,
          fmt::format("in-memory NL-ADC, {} bits: 2^{} reference-row steps per conversion, one "
                      "comparator (sense amplifier) per ADC (estimate; reference cells not "
                      "counted); {}",
                      bits, bits, kPerStep)};
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
  return adc_model(kind).default_cost(bits);
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

ComponentCost default_interconnect_cost() {
  return {d::kLinkEnergyPjPerBitHop, 0.0,
          "wire of one ISAAC tile pitch per hop: 0.2 fF/um (NeuroSim) x 610 um x (1 V)^2 = "
          "0.122 pJ per bit per hop; routers not included, links have no area of their own"};
}

ComponentCost scale_to_node(ComponentCost c, uint32_t technology_nm) {
  if (technology_nm == d::kTechnologyNm) return c;
  const double s = double(technology_nm) / double(d::kTechnologyNm);
  c.energy_pj *= s;
  c.leakage_mw *= s;
  c.area_um2 *= s * s;
  c.source += fmt::format("; scaled from 32 nm to {} nm: energy x {:.4g}, area x {:.4g} "
                          "(first-order rule, docs/arch_config.md)",
                          technology_nm, s, s * s);
  return c;
}

double murmann_envelope_energy_pj(uint32_t bits, double sample_rate_hz) {
  const double r = sample_rate_hz / d::kMurmannCornerHz;
  return d::kMurmannFomFj * std::sqrt(1.0 + r * r) * std::ldexp(1.0, static_cast<int>(bits)) * 1e-3;
}

ComponentLibrary default_component_library(const AdcConfig& adc, const DacConfig& dac,
                                           uint32_t technology_nm) {
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
  lib.interconnect = default_interconnect_cost();
  for (ComponentCost* c : {&lib.adc, &lib.dac, &lib.crossbar_cell, &lib.sample_hold, &lib.shift_add,
                           &lib.input_buffer, &lib.output_buffer, &lib.global_buffer, &lib.digital_op,
                           &lib.interconnect}) {
    c->leakage_mw = d::kDefaultLeakageMw;  // in the per-event figure (defaults.h)
    *c = scale_to_node(std::move(*c), technology_nm);
  }
  return lib;
}

// ============================================================================================
// Registered implementations (sim/config/component_registry.h)
// ============================================================================================

namespace {

class SarAdc final : public AdcModel {
 public:
  AdcKind kind() const override { return AdcKind::kSar; }
  uint32_t conversion_cycles(uint32_t bits) const override { return bits; }  // one cycle per bit
  ComponentCost default_cost(uint32_t bits) const override { return sar_cost(bits); }
};

class FlashAdc final : public AdcModel {
 public:
  AdcKind kind() const override { return AdcKind::kFlash; }
  uint32_t conversion_cycles(uint32_t) const override { return 1; }  // all comparators at once
  ComponentCost default_cost(uint32_t bits) const override { return flash_cost(bits); }
};

class RampAdc final : public AdcModel {
 public:
  AdcKind kind() const override { return AdcKind::kRamp; }
  uint32_t conversion_cycles(uint32_t bits) const override { return uint32_t{1} << std::min(bits, 31u); }
  ComponentCost default_cost(uint32_t bits) const override { return ramp_cost(bits); }
};

class NlImcAdc final : public AdcModel {
 public:
  AdcKind kind() const override { return AdcKind::kNlImc; }
  uint32_t conversion_cycles(uint32_t bits) const override { return uint32_t{1} << std::min(bits, 31u); }
  ComponentCost default_cost(uint32_t bits) const override { return nl_imc_cost(bits); }
};

// One shared link between the global buffer and every tile, used in both directions.
class BusInterconnect final : public InterconnectModel {
 public:
  InterconnectKind kind() const override { return InterconnectKind::kBus; }
  uint32_t link_count(uint32_t) const override { return 1; }
  std::string link_name(uint32_t, uint32_t) const override { return "bus"; }
  std::vector<uint32_t> path(uint32_t, uint32_t, bool) const override { return {0}; }
};

// Binary H-tree: the global buffer at the root, tiles at the 2^L leaves (L = ceil(log2
// tiles), at least 1). Tree nodes in heap order (root 1, children 2i, 2i+1); each edge,
// named by its child node c, has a down link (id c - 2) and an up link (id E + c - 2, E =
// edges = 2^(L+1) - 2). A transfer crosses L links.
class HtreeInterconnect final : public InterconnectModel {
 public:
  InterconnectKind kind() const override { return InterconnectKind::kHtree; }
  static uint32_t levels(uint32_t tiles) {
    uint32_t l = 1;
    while ((uint64_t{1} << l) < tiles) ++l;
    return l;
  }
  static uint32_t edges(uint32_t tiles) { return (uint32_t{2} << levels(tiles)) - 2; }
  uint32_t link_count(uint32_t tiles) const override { return 2 * edges(tiles); }
  std::string link_name(uint32_t link, uint32_t tiles) const override {
    const uint32_t e = edges(tiles);
    const bool up = link >= e;
    const uint32_t child = (up ? link - e : link) + 2;
    uint32_t depth = 0;
    while ((child >> (depth + 1)) != 0) ++depth;
    return fmt::format("htree level {} node {} {}", depth, child, up ? "up" : "down");
  }
  std::vector<uint32_t> path(uint32_t tile, uint32_t tiles, bool to_tile) const override {
    const uint32_t L = levels(tiles), e = edges(tiles);
    const uint32_t leaf = (uint32_t{1} << L) + tile;
    std::vector<uint32_t> p;
    for (uint32_t l = 1; l <= L; ++l) p.push_back((leaf >> (L - l)) - 2);
    if (!to_tile) {
      std::reverse(p.begin(), p.end());
      for (auto& id : p) id += e;
    }
    return p;
  }
};

// 2-D mesh of W x H routers (W = ceil(sqrt(tiles)), H = ceil(tiles / W)), tile t at
// (t mod W, t div W); the global buffer attaches to router (0, 0) by an injection and an
// ejection link. Router r's outgoing links E, W, S, N have ids 4r + 0..3; injection 4WH,
// ejection 4WH + 1. Global buffer -> tile: inject, X first then Y (XY routing); back: Y
// first then X, eject. Hops = 1 + x + y.
class MeshInterconnect final : public InterconnectModel {
 public:
  InterconnectKind kind() const override { return InterconnectKind::kMesh; }
  static uint32_t width(uint32_t tiles) {
    uint32_t w = 1;
    while (uint64_t{w} * w < tiles) ++w;
    return w;
  }
  static uint32_t height(uint32_t tiles) { return (tiles + width(tiles) - 1) / width(tiles); }
  uint32_t link_count(uint32_t tiles) const override { return 4 * width(tiles) * height(tiles) + 2; }
  std::string link_name(uint32_t link, uint32_t tiles) const override {
    const uint32_t W = width(tiles), routers = W * height(tiles);
    if (link == 4 * routers) return "mesh injection (global buffer -> router (0,0))";
    if (link == 4 * routers + 1) return "mesh ejection (router (0,0) -> global buffer)";
    const uint32_t r = link / 4;
    static constexpr const char* kDir[] = {"E", "W", "S", "N"};
    return fmt::format("mesh router ({},{}) -> {}", r % W, r / W, kDir[link % 4]);
  }
  std::vector<uint32_t> path(uint32_t tile, uint32_t tiles, bool to_tile) const override {
    const uint32_t W = width(tiles), routers = W * height(tiles);
    const uint32_t x = tile % W, y = tile / W;
    std::vector<uint32_t> p;
    if (to_tile) {
      p.push_back(4 * routers);
      for (uint32_t i = 0; i < x; ++i) p.push_back(4 * i + 0);            // east along row 0
      for (uint32_t j = 0; j < y; ++j) p.push_back(4 * (j * W + x) + 2);  // south in column x
    } else {
      for (uint32_t j = y; j > 0; --j) p.push_back(4 * (j * W + x) + 3);  // north in column x
      for (uint32_t i = x; i > 0; --i) p.push_back(4 * i + 1);            // west along row 0
      p.push_back(4 * routers + 1);
    }
    return p;
  }
};

}  // namespace

const ComponentRegistry<AdcModel>& adc_registry() {
  static const ComponentRegistry<AdcModel> registry = [] {
    ComponentRegistry<AdcModel> r("ADC kind");
    r.add("sar", [] { return std::make_unique<SarAdc>(); });
    r.add("flash", [] { return std::make_unique<FlashAdc>(); });
    r.add("ramp", [] { return std::make_unique<RampAdc>(); });
    r.add("nl-imc", [] { return std::make_unique<NlImcAdc>(); });
    return r;
  }();
  return registry;
}

const ComponentRegistry<InterconnectModel>& interconnect_registry() {
  static const ComponentRegistry<InterconnectModel> registry = [] {
    ComponentRegistry<InterconnectModel> r("interconnect kind");
    r.add("bus", [] { return std::make_unique<BusInterconnect>(); });
    r.add("htree", [] { return std::make_unique<HtreeInterconnect>(); });
    r.add("mesh", [] { return std::make_unique<MeshInterconnect>(); });
    return r;
  }();
  return registry;
}

const AdcModel& adc_model(AdcKind kind) { return adc_registry().get(to_string(kind)); }
const InterconnectModel& interconnect_model(InterconnectKind kind) {
  return interconnect_registry().get(to_string(kind));
}

}  // namespace imcsim::config
