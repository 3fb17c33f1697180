// Named component implementations (Ramulator-2 style): an interface per component family and a
// registry mapping each implementation's name to a factory. The arch config names the
// implementation ("adc": {"kind": "sar"}, "interconnect": {"kind": "mesh"}); the config, the
// schedule and the SystemC chip look it up here, so an unknown name is reported by the
// registry itself: unknown ADC kind "x" (expected one of: sar, flash, ramp, nl-imc).
// Models and figures: docs/arch_config.md, docs/cost_model.md, docs/timing_model.md. No SystemC.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sim/config/arch_config.h"

namespace imcsim::config {

// An unknown implementation name; what() is the whole message (callers prefix file + path).
struct UnknownComponent : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

template <typename Interface>
class ComponentRegistry {
 public:
  using Factory = std::function<std::unique_ptr<const Interface>()>;
  explicit ComponentRegistry(std::string family) : family_(std::move(family)) {}

  // Registers `name`; names are unique (a duplicate is a programming error: std::logic_error).
  void add(std::string name, Factory factory) {
    if (instances_.count(name)) throw std::logic_error(family_ + " \"" + name + "\" registered twice");
    order_.push_back(name);
    instances_.emplace(std::move(name), factory());
  }
  bool contains(std::string_view name) const { return instances_.count(std::string(name)) > 0; }
  // The implementation called `name`; throws UnknownComponent listing the registered names.
  const Interface& get(std::string_view name) const {
    const auto it = instances_.find(std::string(name));
    if (it == instances_.end())
      throw UnknownComponent("unknown " + family_ + " \"" + std::string(name) + "\" (expected one of: " +
                             expected() + ")");
    return *it->second;
  }
  const std::vector<std::string>& names() const { return order_; }  // registration order
  std::string expected() const {
    std::string s;
    for (const auto& n : order_) s += (s.empty() ? "" : ", ") + n;
    return s;
  }

 private:
  std::string family_;
  std::vector<std::string> order_;
  std::map<std::string, std::unique_ptr<const Interface>, std::less<>> instances_;
};

// ---- ADC ------------------------------------------------------------------------------------
class AdcModel {
 public:
  virtual ~AdcModel() = default;
  virtual AdcKind kind() const = 0;
  // Clock cycles of one conversion at `bits` (>= 1).
  virtual uint32_t conversion_cycles(uint32_t bits) const = 0;
  // Default energy per conversion and area per ADC at `bits` (1..16), 32 nm, with the source.
  virtual ComponentCost default_cost(uint32_t bits) const = 0;
};

// ---- interconnect between the global buffer and the tiles -----------------------------------
// Links are numbered 0 .. link_count-1; a transfer occupies every link of its path at once
// (circuit switched) for hops x hop_cycles + ceil(bits / link_bits) cycles.
class InterconnectModel {
 public:
  virtual ~InterconnectModel() = default;
  virtual InterconnectKind kind() const = 0;
  virtual uint32_t link_count(uint32_t tiles) const = 0;
  virtual std::string link_name(uint32_t link, uint32_t tiles) const = 0;
  // The links a transfer between the global buffer and `tile` (< tiles) crosses, in order
  // (to_tile: global buffer -> tile; else tile -> global buffer). hops = path size.
  virtual std::vector<uint32_t> path(uint32_t tile, uint32_t tiles, bool to_tile) const = 0;
};

const ComponentRegistry<AdcModel>& adc_registry();
const ComponentRegistry<InterconnectModel>& interconnect_registry();
const AdcModel& adc_model(AdcKind kind);
const InterconnectModel& interconnect_model(InterconnectKind kind);

}  // namespace imcsim::config
