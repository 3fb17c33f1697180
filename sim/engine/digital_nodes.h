// Runs every non-IMC node of a validated graph exactly as docs/SEMANTICS.md defines it: max /
// average pooling, residual add, ReLU, flatten, and the digital-unit nodes (DigitalLayer,
// GlobalAvgPool, Concat, ToTokens, AttentionScores, Softmax, AttentionContext, LayerNorm, Lut,
// AddConstant, through the kernels of models/digital/ops.h). Shared by the functional engine and
// the SystemC data-carrying mode (models/tile/layer_datapath.cc).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sim/graph/graph.h"

namespace imcsim::engine {

// True if `node` is one of the operations above; then its output is written to out_codes (sized
// to the output's elements) or, for a float output, out_values (likewise sized).
bool run_digital_node(const graph::Graph& graph, const graph::Node& node,
                      std::span<const std::span<const int32_t>> inputs, std::vector<int32_t>& out_codes,
                      std::vector<double>& out_values);

}  // namespace imcsim::engine
