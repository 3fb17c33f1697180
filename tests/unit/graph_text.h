// Test helper: builds imcsim graphs in the protobuf text format (sim/graph/imcsim_graph.proto)
// from small structs, so tests can state a layer's parameters and mutate one field at a time.
// Header-only; shared by the unit and bad-input tests.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <vector>

namespace imcsim::testing_graphs {

inline std::string num(double v) { return fmt::format("{:.17g}", v); }

template <typename T>
std::string list(const std::vector<T>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + fmt::format("{}", v[i]);
  return s + "]";
}
inline std::string dlist(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + num(v[i]);
  return s + "]";
}

struct QuantT {
  double scale = 1.0;
  int32_t zero_point = 0;
  uint32_t bits = 8;
  std::string str() const {
    return fmt::format("{{ scale: {} zero_point: {} bits: {} }}", num(scale), zero_point, bits);
  }
};

struct AdcT {
  std::string kind = "KIND_IDEAL";
  uint32_t bits = 8, frac_bits = 0;
  std::string rounding = "ROUNDING_FLOOR";
  bool signed_codes = false;
  std::string granularity = "GRANULARITY_LAYER";
  std::vector<int64_t> step_fx, centre_fx, thresholds_fx, levels_fx;
  std::string str() const {
    std::string s = fmt::format("{{ kind: {} bits: {} frac_bits: {} rounding: {} signed_codes: {} granularity: {}",
                                kind, bits, frac_bits, rounding, signed_codes ? "true" : "false", granularity);
    if (!step_fx.empty()) s += " step_fx: " + list(step_fx);
    if (!centre_fx.empty()) s += " centre_fx: " + list(centre_fx);
    if (!thresholds_fx.empty()) s += " thresholds_fx: " + list(thresholds_fx);
    if (!levels_fx.empty()) s += " levels_fx: " + list(levels_fx);
    return s + " }";
  }
};

struct ImcT {
  bool conv = true;
  uint32_t in_channels = 1, out_channels = 1, kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1,
           pad_h = 0, pad_w = 0;
  uint32_t weight_bits = 8, cell_bits = 2, dac_bits = 1;
  std::string encoding = "WEIGHT_ENCODING_OFFSET";
  std::string row_tiling = "ROW_TILING_CONTIGUOUS";
  uint32_t array_rows = 128, array_cols = 128;
  std::vector<int32_t> weights;  // [N][K]
  std::vector<double> weight_scale{1.0}, psum_scale, bias;
  uint32_t ashift_offset = 0;
  AdcT adc;
  std::string activation = "ACTIVATION_NONE";
  std::string str() const {
    std::string s = fmt::format(
        "imc {{ kind: {} in_channels: {} out_channels: {} kernel_h: {} kernel_w: {} stride_h: {} "
        "stride_w: {} pad_h: {} pad_w: {} weight_bits: {} cell_bits: {} dac_bits: {} encoding: {} "
        "row_tiling: {} array_rows: {} array_cols: {}",
        conv ? "KIND_CONV2D" : "KIND_LINEAR", in_channels, out_channels, kernel_h, kernel_w, stride_h,
        stride_w, pad_h, pad_w, weight_bits, cell_bits, dac_bits, encoding, row_tiling, array_rows,
        array_cols);
    if (!weights.empty()) s += " weights: " + list(weights);
    if (!weight_scale.empty()) s += " weight_scale: " + dlist(weight_scale);
    if (!psum_scale.empty()) s += " psum_scale: " + dlist(psum_scale);
    if (!bias.empty()) s += " bias: " + dlist(bias);
    s += fmt::format(" ashift_offset: {} adc {} activation: {} }}", ashift_offset, adc.str(), activation);
    return s;
  }
};

struct NodeT {
  std::string name;
  std::vector<std::string> inputs;
  std::string output;
  std::vector<uint32_t> output_shape;
  QuantT output_quant;
  bool has_output_quant = true;
  std::string op;  // e.g. ImcT::str(), "flatten {}", "max_pool { kernel_h: 2 ... }"
  std::string str() const {
    std::string s = fmt::format("nodes {{ name: \"{}\"", name);
    for (const auto& i : inputs) s += fmt::format(" inputs: \"{}\"", i);
    s += fmt::format(" output: \"{}\" output_shape: {}", output, list(output_shape));
    if (has_output_quant) s += " output_quant " + output_quant.str();
    return s + " " + op + " }\n";
  }
};

struct GraphT {
  uint32_t format_version = 1;
  std::string name = "test_graph";
  std::string input_tensor = "x";
  std::vector<uint32_t> input_shape{1, 4, 4};
  double pixel_scale = 1.0 / 255.0, mean = 0.0, std = 1.0;
  QuantT input_quant;
  bool has_input = true;
  std::vector<NodeT> nodes;
  uint32_t num_classes = 0;
  std::string str() const {
    std::string s = fmt::format("format_version: {}\nname: \"{}\"\n", format_version, name);
    if (has_input)
      s += fmt::format(
          "input {{ tensor: \"{}\" shape: {} dataset_format: \"idx-u8\" pixel_scale: {} mean: {} "
          "std: {} quant {} }}\n",
          input_tensor, list(input_shape), num(pixel_scale), num(mean), num(std), input_quant.str());
    for (const auto& n : nodes) s += n.str();
    return s + fmt::format("num_classes: {}\n", num_classes);
  }
};

inline std::string pool_op(const char* kind, uint32_t k, uint32_t stride, uint32_t pad) {
  return fmt::format("{} {{ kernel_h: {} kernel_w: {} stride_h: {} stride_w: {} pad_h: {} pad_w: {} }}", kind,
                     k, k, stride, stride, pad, pad);
}

}  // namespace imcsim::testing_graphs
