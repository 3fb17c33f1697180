// The reference functional engine: runs a validated graph on input codes exactly as
// docs/SEMANTICS.md specifies (bit-exact with scripts/imcsim_py/reference.py), and counts the
// data-dependent events the cost model needs. No SystemC.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "models/crossbar/fast_mvm.h"
#include "models/crossbar/nonideal.h"
#include "models/digital/requant.h"
#include "sim/graph/graph.h"

namespace imcsim::engine {

// Integer tensors of one IMC node for one image, for golden comparison (docs/SEMANTICS.md
// "Golden digests"). Filled only when requested: it is slow. With non-idealities active, the
// partial sums are the analog ADC inputs a_fx (units 2^-16 LSB, SEMANTICS.md step 5).
struct NodeTrace {
  kernels::Digest psum, adc_code, acc;
  std::vector<int64_t> psums_position0, adc_codes_position0, acc_position0;
};

// Receives every partial sum an ADC converts (calibration). Called from the thread running
// the image; an observer shared between threads must synchronise itself.
class PsumObserver {
 public:
  virtual ~PsumObserver() = default;
  // node: node index; set: the ADC parameter-set index of (tile, slice, column) under the
  // layer's granularity; p: the partial sum (with non-idealities active: the analog ADC input
  // rounded down to an integer, floor(a_fx * 2^-16)).
  virtual void observe(size_t node, uint64_t set, int64_t p) = 0;
};

// What one image produced.
struct InferenceResult {
  std::vector<std::vector<int32_t>> node_codes;  // output codes per node (empty for a float output)
  std::vector<double> output_values;             // real values of the last node's output
  uint32_t predicted_class = 0;
};

// Data-dependent event counts of one IMC node, summed over images.
struct ImcNodeCounters {
  uint64_t images = 0;
  uint64_t row_drives = 0;        // (position, tile, group, row) with a non-zero DAC value
  uint64_t adc_conversions = 0;   // (position, tile, slice, group, column)
  uint64_t adc_saturations = 0;   // conversions whose code was clipped at qmin / qmax
  int64_t psum_min = INT64_MAX, psum_max = INT64_MIN;  // observed partial-sum range (non-ideal:
                                                       // of floor(ADC input))
  void merge(const ImcNodeCounters& o);
};

struct EngineCounters {
  std::vector<ImcNodeCounters> per_node;  // indexed by node; zero for non-IMC nodes
  void merge(const EngineCounters& o);
};

class FunctionalEngine {
 public:
  // `nonideal` (off by default) and `seed` select the analog non-idealities and the programmed
  // chip (docs/SEMANTICS.md step 5); with none active the engine is the ideal one. `kernel`
  // picks the IMC-layer kernels (docs/fast_kernels.md); unset = kernels::select_kernel_path()
  // (IMCSIM_KERNEL, else native if the CPU has it, else portable). Every path gives the same
  // results bit for bit.
  explicit FunctionalEngine(const graph::Graph& graph, const kernels::NonidealSpec& nonideal = {},
                            uint64_t seed = 0, std::optional<kernels::KernelPath> kernel = std::nullopt);
  ~FunctionalEngine();
  FunctionalEngine(const FunctionalEngine&) = delete;
  FunctionalEngine& operator=(const FunctionalEngine&) = delete;

  const graph::Graph& graph() const { return graph_; }
  const kernels::NonidealSpec& nonideal() const { return nonideal_; }
  uint64_t seed() const { return seed_; }
  kernels::KernelPath kernel_path() const { return kernel_; }
  // Threads that share the output positions of one IMC layer within one image (default 1; for
  // single-image runs of large networks: run_dataset parallelises over images instead).
  void set_image_threads(unsigned threads) { image_threads_ = threads ? threads : 1; }

  // Runs one image of input codes (C*H*W values). `counters` (sized by the engine if empty) and
  // `traces` (one per node) are optional. `image_index` (the dataset index) keys the ADC noise.
  InferenceResult infer(std::span<const int32_t> input_codes, EngineCounters* counters = nullptr,
                        std::vector<NodeTrace>* traces = nullptr,
                        PsumObserver* observer = nullptr, uint64_t image_index = 0) const;

  // The programmed cells of an IMC node under stuck-at faults / variation (null if the node is
  // not an IMC layer or no non-ideality is active).
  const kernels::NonidealCrossbar* nonideal_crossbar(size_t node_index) const;

  // The kernel an IMC node's untraced inference takes (docs/fast_kernels.md): "fused" (bit planes
  // or nibble tables with the ADC table; with a transfer curve only without counters),
  // "fused-noise-affine" (ADC noise in the nibble kernel's 16-bit lanes), "fused-noise" (the
  // fused noise kernel), "row-loop" (the reference engine's loop); "" if not an IMC node.
  const char* layer_kernel(size_t node_index) const;

  // Number of output positions P, row tiles G, slices S, input groups T of an IMC node.
  struct ImcShape {
    uint32_t positions = 0, tiles = 0, slices = 0, groups = 0, rows_k = 0, cols_n = 0;
  };
  ImcShape imc_shape(size_t node_index) const;

 private:
  struct ImcPlan;
  const graph::Graph& graph_;
  kernels::NonidealSpec nonideal_;
  uint64_t seed_ = 0;
  kernels::KernelPath kernel_ = kernels::KernelPath::kReference;
  unsigned image_threads_ = 1;
  std::vector<std::unique_ptr<ImcPlan>> plans_;  // per node; null for non-IMC nodes
};

// Converts dataset pixels to input codes (docs/SEMANTICS.md "Input").
void pixels_to_codes(const graph::InputSpec& spec, std::span<const uint8_t> pixels,
                     std::span<int32_t> codes);

// Accuracy over a dataset, images split over `threads` workers (0 = all cores). progress(done, total) is
// called from the calling thread about every 100 ms. Image i is inferred with image_index i.
struct DatasetResult {
  uint64_t images = 0, correct = 0;
  std::vector<uint32_t> predictions;
  EngineCounters counters;
  double wall_seconds = 0;
  double accuracy() const { return images ? double(correct) / double(images) : 0.0; }
};
DatasetResult run_dataset(const FunctionalEngine& engine, std::span<const uint8_t> images,
                          std::span<const uint8_t> labels, uint64_t count, unsigned threads,
                          const std::function<void(uint64_t, uint64_t)>& progress);

}  // namespace imcsim::engine
