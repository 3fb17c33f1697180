// ADC calibration of a graph (imcsim calibrate): runs calibration images through the
// functional engine layer by layer, collects the exact partial-sum histogram of every ADC
// parameter set, fits references (models/adc/calibration.h) and returns the re-calibrated graph
// with regenerated golden pairs. Also the re-derivation of linear ADCs at another resolution
// (with_adc_bits) for sweeps. Rules and choices: docs/calibration.md. No SystemC.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "models/adc/calibration.h"
#include "sim/graph/graph.h"

namespace imcsim::calibration {

struct Options {
  // Methods fitted and reported for every layer. One method: it is written. Several: the one
  // named by write_method is written, or, if unset, per layer the one with the lowest MSE.
  std::vector<kernels::CalibMethod> methods;
  std::optional<kernels::CalibMethod> write_method;
  uint32_t bits = 4;
  std::optional<kernels::AdcGranularity> granularity;  // unset: keep each layer's
  std::optional<uint32_t> frac_bits;                   // unset: keep each layer's F
  std::optional<kernels::AdcRounding> rounding;        // linear; unset: the layer's if linear, else half away
  double percentile = 99.99;                           // linear-percentile and BS-KMQ clamp
  std::optional<double> boundary_weight;               // BS-KMQ boundary bins: unset = flatten, else x w
  kernels::BsKmqLevels bskmq_levels = kernels::BsKmqLevels::kReserved;
  unsigned threads = 1;                                // 0 = all cores
};

// Checks the options; throws std::invalid_argument naming the option (--bits, --percentile, ...).
void check_options(const Options& options);

struct MethodResult {
  kernels::CalibMethod method;
  double mse = 0.0;  // LSB^2 over every conversion of the layer on the calibration images
  kernels::AdcSpec spec;
};

struct LayerReport {
  size_t node_index = 0;
  std::string node;
  kernels::AdcGranularity granularity = kernels::AdcGranularity::kLayer;
  uint32_t frac_bits = 0;
  uint64_t sets = 0, samples = 0;
  int64_t psum_min = 0, psum_max = 0;
  std::vector<MethodResult> methods;   // in Options::methods order
  kernels::CalibMethod written;        // the method whose spec the new graph holds
  std::optional<double> previous_mse;  // the input graph's ADC on the same histograms (same granularity)
  std::string previous_adc;            // e.g. "linear 8b layer"
  kernels::PsumHistogram pooled;       // the partial sums of all parameter sets together
};

struct Result {
  graph::Graph graph;  // the re-calibrated graph (golden pairs regenerated, provenance NOT yet updated)
  std::vector<LayerReport> layers;
  uint64_t images = 0;
  double collect_seconds = 0, fit_seconds = 0;
};

// Exact histograms of the partial sums of IMC node `node` over `images` images (pixels, C*H*W
// bytes each), one per ADC parameter set of granularity `granularity` (the node's own ADC is
// replaced by an IDEAL one of that granularity while collecting: its partial sums depend only on
// the layers before it). Runs only the nodes up to `node`.
std::vector<kernels::PsumHistogram> collect_histograms(const graph::Graph& g, size_t node,
                                                       kernels::AdcGranularity granularity,
                                                       std::span<const uint8_t> pixels, uint64_t images,
                                                       unsigned threads);

// Calibrates every IMC layer in node order; layer L is calibrated with layers before L already
// re-calibrated. progress(message) is called before each layer.
Result calibrate(const graph::Graph& g, std::span<const uint8_t> pixels, uint64_t images, const Options& options,
                 const std::function<void(const std::string&)>& progress = nullptr);

// Recomputes every golden pair (same input codes, dataset index and label) with the C++ engine:
// node output codes, digests and position-0 values of partial sums, ADC codes and accumulators,
// logits and the predicted class.
void regenerate_goldens(graph::Graph& g);

// Records a calibration in the provenance: exporter, command, created_utc, method (appends
// "+adc-calibration:<method>"), method_settings_json ("adc" and "adc_calibration" replaced, the
// previous ones kept under "adc_calibration.previous"); the reference accuracy is cleared
// (reference_images = 0) because nobody measured it for the new ADCs.
void record_provenance(graph::Graph& g, const Result& result, const Options& options, const std::string& command,
                       const std::string& images_source);

// Every LINEAR ADC re-derived at `bits` (1..16) keeping its full-scale range
// (kernels::rescale_linear_adc); IDEAL ADCs unchanged. A NONLINEAR ADC throws
// std::invalid_argument naming the node. The golden pairs are dropped and the reference accuracy
// cleared (they described the old ADCs); provenance.method_settings_json is otherwise kept.
graph::Graph with_adc_bits(const graph::Graph& g, uint32_t bits);

}  // namespace imcsim::calibration
