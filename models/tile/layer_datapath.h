// The values a tile's data path carries, step by step, for the SystemC model's data-carrying
// mode (imcsim run --carry-data): the input register (two vectors), the sample-and-hold (one
// step's partial sums of every row tile), the shift-add accumulators, the output buffer and
// the global buffer's tensors. The pipeline's threads call these hooks when their stage
// completes, so a value is only correct if the timing model moved it at a correct time (e.g.
// a fetch overwriting a register still in use corrupts the result). Numerics: the kernels of
// docs/SEMANTICS.md (ideal analog model), the same ones the functional engine uses; the
// result is checked against sim/engine/functional_engine.h. No SystemC here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "sim/graph/graph.h"

namespace imcsim::timing {

struct DataPathError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One image's tensors in the global buffer: codes per node (values for float outputs).
struct ImageTensors {
  std::vector<int32_t> input;                 // the image's input codes
  std::vector<std::vector<int32_t>> codes;    // per node
  std::vector<std::vector<double>> values;    // per node, float outputs only
};

class GraphDataPath {
 public:
  // Throws DataPathError for a node kind the data path does not carry.
  explicit GraphDataPath(const graph::Graph& graph);
  ~GraphDataPath();

  // A new image's tensors; returns its index.
  size_t add_image(std::vector<int32_t> input_codes);
  const ImageTensors& image(size_t i) const { return images_.at(i); }
  size_t image_count() const { return images_.size(); }
  uint64_t positions(size_t node) const;  // IMC node: output positions; else 0

  // Pipeline hooks for IMC node `node` of image `img` (state per (image, node)):
  void fetched(size_t img, size_t node, uint64_t p);               // input vector p -> register p % 2
  void sampled(size_t img, size_t node, uint64_t p, uint64_t t);   // read step (p, t) -> S&H
  void converted(size_t img, size_t node, uint64_t p, uint64_t t); // S&H -> ADC -> shift-add
  void written(size_t img, size_t node, uint64_t p);               // output vector p -> global buffer
  // A digital node runs on the whole tensor.
  void digital(size_t img, size_t node);

  // Test hook: add `delta` to the global buffer's output element (node, position p, column n)
  // when it is written (fault injection to show the checker reports it).
  void inject_fault(size_t node, uint64_t p, uint32_t n, int32_t delta) { fault_ = {true, node, p, n, delta}; }

 private:
  struct Layer;
  struct State;
  State& state(size_t img, size_t node);
  std::span<const int32_t> tensor(const ImageTensors& im, int id) const;

  const graph::Graph& graph_;
  std::vector<std::unique_ptr<Layer>> layers_;  // per node; null for digital nodes
  std::vector<ImageTensors> images_;
  std::map<std::pair<size_t, size_t>, std::unique_ptr<State>> states_;
  struct {
    bool on = false;
    size_t node = 0;
    uint64_t p = 0;
    uint32_t n = 0;
    int32_t delta = 0;
  } fault_;
};

}  // namespace imcsim::timing
