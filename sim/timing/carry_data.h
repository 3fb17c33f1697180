// Data-carrying mode (imcsim run --carry-data): the SystemC model's global buffer tensors,
// carried through its stages by models/tile/layer_datapath.h, checked value by value against
// the functional engine (sim/engine/functional_engine.h) for the same images.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/tile/layer_datapath.h"
#include "sim/engine/functional_engine.h"

namespace imcsim::timing {

struct CarriedMismatch {
  uint64_t image = 0;
  std::string node;
  uint64_t position = 0;  // IMC node: output position (element = column x positions + position);
                          // digital node: element index
  uint64_t column = 0;    // IMC node: output column; digital node: 0
  double systemc = 0, engine = 0;
};

struct CarriedDataCheck {
  uint64_t images = 0, nodes = 0, values_checked = 0, mismatches = 0;
  std::vector<CarriedMismatch> first_mismatches;  // at most 10
  std::string error;                              // an inconsistency inside the SystemC run
  bool ok() const { return mismatches == 0 && error.empty(); }
  nlohmann::json to_json() const;
  std::string summary() const;  // one line
};

// Compares every node output of the data path's images with engine.infer on the same inputs.
CarriedDataCheck check_carried_data(const GraphDataPath& data, const engine::FunctionalEngine& engine,
                                    const std::string& systemc_error);

}  // namespace imcsim::timing
