// The validated, in-memory network graph. Built only by load_graph() (graph_loader.h) from an
// .imcg file; every invariant listed in the comments below has been checked by then, so the
// engine can rely on it. Semantics of every field: docs/SEMANTICS.md.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "models/adc/adc.h"
#include "models/crossbar/slicing.h"

namespace imcsim::graph {

inline constexpr uint32_t kFormatVersion = 1;

// Unsigned codes in [0, 2^bits - 1] meaning scale * (q - zero_point); bits == 0: float64 values.
struct Quant {
  double scale = 1.0;
  int32_t zero_point = 0;
  uint32_t bits = 8;
  bool is_float() const { return bits == 0; }
  int32_t max_code() const { return bits == 0 ? 0 : static_cast<int32_t>((int64_t{1} << bits) - 1); }
  bool operator==(const Quant&) const = default;
};

// A tensor shape: {C, H, W} for feature maps, {N} for vectors.
struct Shape {
  std::vector<uint32_t> dims;
  uint64_t elements() const {
    uint64_t n = 1;
    for (uint32_t d : dims) n *= d;
    return n;
  }
  bool operator==(const Shape&) const = default;
};

enum class Activation { kNone, kRelu };
enum class RowTilingRule { kContiguous, kChannelAligned };

struct ImcLayer {
  bool is_conv = true;
  uint32_t in_channels = 0, out_channels = 0;
  uint32_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  uint32_t weight_bits = 8, cell_bits = 2, dac_bits = 1;
  kernels::WeightEncoding encoding = kernels::WeightEncoding::kOffset;
  RowTilingRule row_tiling = RowTilingRule::kContiguous;
  uint32_t array_rows = 128, array_cols = 128;
  std::vector<int32_t> weights;      // [N][K], K = in_channels * kernel_h * kernel_w
  std::vector<double> weight_scale;  // N values (a per-tensor scale is expanded on load)
  std::vector<double> psum_scale;    // N values (1.0 when absent)
  std::vector<double> bias;          // N values (0.0 when absent)
  uint32_t ashift_offset = 0;        // 0 or 2^(Bx-1)
  kernels::AdcSpec adc;
  Activation activation = Activation::kNone;

  uint32_t rows_k() const { return in_channels * kernel_h * kernel_w; }
  uint32_t cols_n() const { return out_channels; }
  // Linear layer on tokens [T, K] (docs/SEMANTICS.md): T positions, output [T, N].
  bool tokens = false;
};

struct MaxPool { uint32_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w; };
struct AvgPool { uint32_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w; };
struct Add { Activation activation = Activation::kNone; };
struct Flatten {};
struct Relu {};

// Digital-unit operations (docs/SEMANTICS.md "Digital nodes"). In a shape_only graph the value
// vectors (weights, tables, gamma/beta, constants) are empty.
struct DigitalLayer {
  bool is_conv = true;
  bool tokens = false;  // Linear on tokens [T, K]: one position per token
  uint32_t in_channels = 0, out_channels = 0;
  uint32_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  uint32_t groups = 1;
  uint32_t weight_bits = 8;
  std::vector<int32_t> weights;      // [N][K/groups], K/groups = (in_channels/groups) * kh * kw
  std::vector<double> weight_scale;  // N values (a per-tensor scale is expanded on load)
  std::vector<double> bias;          // N values (0.0 when absent)
  Activation activation = Activation::kNone;

  uint32_t rows_per_group() const { return in_channels / groups * kernel_h * kernel_w; }
};
struct GlobalAvgPool {};
struct Concat {};
struct ToTokens { uint32_t patch_h = 1, patch_w = 1; };
struct AttentionScores { uint32_t heads = 1; double scale = 1.0; };
struct Softmax { std::vector<int64_t> exp_table; };     // 2^bits_in entries
struct AttentionContext { uint32_t heads = 1; };        // from the P input's first dimension
struct LayerNorm { std::vector<double> gamma, beta; uint64_t eps_int = 0; };
struct Lut { std::string function; std::vector<int32_t> table; };  // 2^bits_in entries
struct AddConstant { std::vector<double> values; Activation activation = Activation::kNone; };

using Op = std::variant<ImcLayer, MaxPool, AvgPool, Add, Flatten, Relu, DigitalLayer, GlobalAvgPool, Concat,
                        ToTokens, AttentionScores, Softmax, AttentionContext, LayerNorm, Lut, AddConstant>;

struct Node {
  std::string name;
  std::vector<int> inputs;  // tensor ids: -1 = graph input, i >= 0 = output of node i
  Shape output_shape;
  Quant output_quant;
  Op op;
};

struct InputSpec {
  std::string tensor;
  Shape shape;  // C, H, W
  std::string dataset_format;
  double pixel_scale = 1.0 / 255.0, mean = 0.0, std = 1.0;
  Quant quant;
};

struct NodeGolden {
  std::string node;
  std::vector<int32_t> output_codes;
  uint64_t psum_count = 0, psum_digest = 0, adc_code_digest = 0, acc_digest = 0;
  std::vector<int64_t> psums_position0, adc_codes_position0, acc_position0;
};

struct GoldenPair {
  uint32_t dataset_index = 0, label = 0;
  std::vector<int32_t> input_codes;
  std::vector<NodeGolden> nodes;
  std::vector<double> logits;
  uint32_t predicted_class = 0;
};

struct Provenance {
  std::string exporter, command, method, method_settings_json, dataset, created_utc, torch_version;
  uint64_t seed = 0;
  double float_accuracy = 0, fake_quant_accuracy = 0, reference_accuracy = 0;
  uint32_t reference_images = 0;
};

struct Graph {
  std::string name;
  std::string source_file;
  Provenance provenance;
  InputSpec input;
  std::vector<Node> nodes;  // topological order; the last node is the output
  uint32_t num_classes = 0;
  std::vector<GoldenPair> golden;
  bool shape_only = false;  // no weights: timing, energy and area only

  const Quant& tensor_quant(int tensor_id) const {
    return tensor_id < 0 ? input.quant : nodes[static_cast<size_t>(tensor_id)].output_quant;
  }
  const Shape& tensor_shape(int tensor_id) const {
    return tensor_id < 0 ? input.shape : nodes[static_cast<size_t>(tensor_id)].output_shape;
  }
};

const char* op_name(const Op& op);

}  // namespace imcsim::graph
