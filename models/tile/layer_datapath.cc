#include "models/tile/layer_datapath.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "models/adc/adc.h"
#include "models/crossbar/crossbar.h"
#include "models/crossbar/slicing.h"
#include "models/digital/requant.h"
#include "sim/engine/digital_nodes.h"

namespace imcsim::timing {

using graph::Node;

// Everything about one IMC layer that does not depend on the data (docs/SEMANTICS.md).
struct GraphDataPath::Layer {
  const graph::ImcLayer* l = nullptr;
  std::optional<kernels::ProgrammedCrossbar> crossbar;
  std::vector<kernels::InputGroup> groups;
  uint32_t input_bits = 0;
  int32_t input_zero_point = 0;
  uint32_t positions = 1, K = 0, N = 0, S = 0, T = 0, G = 0;
  std::vector<int32_t> gather;               // [P][K] input element, -1 = padding
  std::vector<int64_t> shift_weight;         // [S][T]
  std::vector<int64_t> column_correction_fx; // [N]
  int64_t offset_correction_fx = 0;
  std::vector<double> multiplier;            // [N]
};

// Data in flight for one (image, IMC node).
struct GraphDataPath::State {
  std::vector<int32_t> reg[2];      // input register: x' = x - a of two positions
  int64_t reg_xsum[2] = {0, 0};
  uint64_t reg_position[2] = {UINT64_MAX, UINT64_MAX};
  std::vector<int32_t> sample;      // S&H: psum [G][S][N] of one step
  uint64_t sample_step = UINT64_MAX;
  std::vector<int64_t> acc;         // shift-add accumulators of the position being converted
  uint64_t acc_position = UINT64_MAX;
  int64_t acc_xsum = 0;
  std::map<uint64_t, std::pair<std::vector<int32_t>, std::vector<double>>> output_buffer;  // by position
};

GraphDataPath::GraphDataPath(const graph::Graph& graph) : graph_(graph) {
  if (graph.shape_only)
    throw DataPathError(graph.source_file + ": a shape_only graph has no weights: no data to carry");
  layers_.resize(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const auto* l = std::get_if<graph::ImcLayer>(&node.op);
    if (!l) {
      if (!std::holds_alternative<graph::MaxPool>(node.op) && !std::holds_alternative<graph::AvgPool>(node.op) &&
          !std::holds_alternative<graph::Add>(node.op) && !std::holds_alternative<graph::Relu>(node.op) &&
          !std::holds_alternative<graph::Flatten>(node.op))
        throw DataPathError(fmt::format("node '{}': the data-carrying mode does not carry {} nodes", node.name,
                                        graph::op_name(node.op)));
      continue;
    }
    auto L = std::make_unique<Layer>();
    L->l = l;
    L->K = l->rows_k();
    L->N = l->cols_n();
    const uint32_t taps = l->kernel_h * l->kernel_w;
    auto tiles = l->row_tiling == graph::RowTilingRule::kContiguous
                     ? kernels::contiguous_row_tiles(L->K, l->array_rows)
                     : kernels::channel_aligned_row_tiles(l->in_channels, taps, l->array_rows);
    L->crossbar.emplace(l->weights, L->K, L->N, l->weight_bits, l->cell_bits, l->encoding, std::move(tiles));
    const graph::Quant& in_q = graph.tensor_quant(node.inputs[0]);
    const graph::Shape& in_shape = graph.tensor_shape(node.inputs[0]);
    L->input_bits = in_q.bits;
    L->input_zero_point = in_q.zero_point;
    L->groups = kernels::input_groups(in_q.bits, l->dac_bits, l->ashift_offset != 0);
    L->S = static_cast<uint32_t>(L->crossbar->slices().size());
    L->T = static_cast<uint32_t>(L->groups.size());
    L->G = static_cast<uint32_t>(L->crossbar->tiles().size());
    uint32_t in_h = 1, in_w = 1, out_h = 1, out_w = 1;
    if (l->is_conv) {
      in_h = in_shape.dims[1], in_w = in_shape.dims[2];
      out_h = node.output_shape.dims[1], out_w = node.output_shape.dims[2];
    } else if (l->tokens) {
      out_h = in_shape.dims[0];  // one position per token
    }
    L->positions = out_h * out_w;
    L->gather.assign(size_t{L->positions} * L->K, -1);
    for (uint32_t oy = 0; oy < out_h; ++oy)
      for (uint32_t ox = 0; ox < out_w; ++ox)
        for (uint32_t c = 0; c < l->in_channels; ++c)
          for (uint32_t ky = 0; ky < l->kernel_h; ++ky)
            for (uint32_t kx = 0; kx < l->kernel_w; ++kx) {
              const size_t pos = size_t{oy} * out_w + ox;
              const size_t k = (size_t{c} * l->kernel_h + ky) * l->kernel_w + kx;
              int32_t idx = -1;
              if (l->is_conv) {
                const int64_t y = int64_t{oy} * l->stride_h - l->pad_h + ky;
                const int64_t x = int64_t{ox} * l->stride_w - l->pad_w + kx;
                if (y >= 0 && y < in_h && x >= 0 && x < in_w) idx = static_cast<int32_t>((int64_t{c} * in_h + y) * in_w + x);
              } else {
                idx = static_cast<int32_t>(pos * l->in_channels + c);  // token pos (0 for a vector)
              }
              L->gather[pos * L->K + k] = idx;
            }
    const auto& slices = L->crossbar->slices();
    L->shift_weight.resize(size_t{L->S} * L->T);
    for (size_t s = 0; s < L->S; ++s)
      for (size_t t = 0; t < L->T; ++t)
        L->shift_weight[s * L->T + t] =
            kernels::shift_add_weight(slices[s].sign, slices[s].bit_lo, L->groups[t].sign, L->groups[t].bit_lo);
    const int64_t frac_scale = int64_t{1} << l->adc.frac_bits;
    L->column_correction_fx.resize(L->N);
    L->multiplier.resize(L->N);
    for (uint32_t n = 0; n < L->N; ++n) {
      int64_t colsum = 0;
      for (uint32_t k = 0; k < L->K; ++k) colsum += l->weights[size_t{n} * L->K + k];
      L->column_correction_fx[n] = frac_scale * (int64_t{l->ashift_offset} - int64_t{in_q.zero_point}) * colsum;
      L->multiplier[n] = ((in_q.scale * l->weight_scale[n]) * l->psum_scale[n]) * std::ldexp(1.0, -int(l->adc.frac_bits));
    }
    if (l->encoding == kernels::WeightEncoding::kOffset)
      L->offset_correction_fx = frac_scale * (int64_t{1} << (l->weight_bits - 1));
    layers_[i] = std::move(L);
  }
}

GraphDataPath::~GraphDataPath() = default;

size_t GraphDataPath::add_image(std::vector<int32_t> input_codes) {
  ImageTensors im;
  im.input = std::move(input_codes);
  im.codes.resize(graph_.nodes.size());
  im.values.resize(graph_.nodes.size());
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    const size_t e = graph_.nodes[i].output_shape.elements();
    if (graph_.nodes[i].output_quant.is_float()) im.values[i].assign(e, 0.0);
    else im.codes[i].assign(e, 0);
  }
  images_.push_back(std::move(im));
  return images_.size() - 1;
}

uint64_t GraphDataPath::positions(size_t node) const { return layers_.at(node) ? layers_[node]->positions : 0; }

GraphDataPath::State& GraphDataPath::state(size_t img, size_t node) {
  auto& s = states_[{img, node}];
  if (!s) {
    s = std::make_unique<State>();
    const Layer& L = *layers_.at(node);
    s->reg[0].assign(L.K, 0);
    s->reg[1].assign(L.K, 0);
    s->sample.assign(size_t{L.G} * L.S * L.N, 0);
    s->acc.assign(L.N, 0);
  }
  return *s;
}

std::span<const int32_t> GraphDataPath::tensor(const ImageTensors& im, int id) const {
  if (id < 0) return im.input;
  const auto& c = im.codes.at(static_cast<size_t>(id));
  if (c.empty() && graph_.nodes[static_cast<size_t>(id)].output_quant.is_float())
    throw DataPathError(fmt::format("node '{}': a float tensor feeds another node", graph_.nodes[static_cast<size_t>(id)].name));
  return c;
}

void GraphDataPath::fetched(size_t img, size_t node, uint64_t p) {
  const Layer& L = *layers_.at(node);
  State& s = state(img, node);
  const auto in = tensor(images_.at(img), graph_.nodes[node].inputs[0]);
  const int32_t* gather = L.gather.data() + p * L.K;
  std::vector<int32_t>& r = s.reg[p % 2];
  int64_t xsum = 0;
  for (uint32_t k = 0; k < L.K; ++k) {
    const int32_t x = gather[k] < 0 ? L.input_zero_point : in[static_cast<size_t>(gather[k])];
    r[k] = x - static_cast<int32_t>(L.l->ashift_offset);
    xsum += r[k];
  }
  s.reg_xsum[p % 2] = xsum;
  s.reg_position[p % 2] = p;
}

void GraphDataPath::sampled(size_t img, size_t node, uint64_t p, uint64_t t) {
  const Layer& L = *layers_.at(node);
  State& s = state(img, node);
  // The register must still hold p (else the fetcher overwrote it too early).
  const std::vector<int32_t>& r = s.reg[p % 2];
  if (s.reg_position[p % 2] != p)
    throw DataPathError(fmt::format("node '{}': the array read position {} but its input register holds position {}",
                                    graph_.nodes[node].name, p, s.reg_position[p % 2]));
  std::vector<uint16_t> u(L.K);
  for (uint32_t k = 0; k < L.K; ++k)
    u[k] = static_cast<uint16_t>(kernels::group_value(r[k], L.input_bits, L.groups[t]));
  const size_t sn = size_t{L.S} * L.N;
  for (uint32_t g = 0; g < L.G; ++g)
    L.crossbar->partial_sums(g, u, std::span<int32_t>(s.sample.data() + g * sn, sn));
  s.sample_step = p * L.T + t;
  if (t + 1 == L.T) s.acc_xsum = s.reg_xsum[p % 2];  // kept with the sample: the register is freed now
}

void GraphDataPath::converted(size_t img, size_t node, uint64_t p, uint64_t t) {
  const Layer& L = *layers_.at(node);
  const graph::ImcLayer& l = *L.l;
  State& s = state(img, node);
  if (s.sample_step != p * L.T + t)
    throw DataPathError(fmt::format("node '{}': the ADC converted step {} but the sample-and-hold holds step {}",
                                    graph_.nodes[node].name, p * L.T + t, s.sample_step));
  if (t == 0) {
    std::fill(s.acc.begin(), s.acc.end(), 0);
    s.acc_position = p;
  }
  for (uint32_t g = 0; g < L.G; ++g)
    for (uint32_t sl = 0; sl < L.S; ++sl) {
      const int64_t w = L.shift_weight[size_t{sl} * L.T + t];
      const int32_t* ps = s.sample.data() + (size_t{g} * L.S + sl) * L.N;
      for (uint32_t n = 0; n < L.N; ++n)
        s.acc[n] += w * kernels::adc_convert(l.adc, l.adc.set_index(g, sl, n, L.S, L.N), ps[n]).value_fx;
    }
  if (t + 1 < L.T) return;
  // Last group: post-processing (corrections, scale, bias, activation, requantisation).
  const Node& nd = graph_.nodes[node];
  std::vector<int32_t> codes;
  std::vector<double> values;
  for (uint32_t n = 0; n < L.N; ++n) {
    const int64_t a = s.acc[n] + L.column_correction_fx[n] - L.offset_correction_fx * s.acc_xsum;
    double y = static_cast<double>(a) * L.multiplier[n] + l.bias[n];
    if (l.activation == graph::Activation::kRelu) y = std::max(y, 0.0);
    if (nd.output_quant.is_float()) values.push_back(y);
    else codes.push_back(kernels::requantize(y, nd.output_quant.scale, nd.output_quant.zero_point, nd.output_quant.bits));
  }
  s.output_buffer[p] = {std::move(codes), std::move(values)};
}

void GraphDataPath::written(size_t img, size_t node, uint64_t p) {
  const Layer& L = *layers_.at(node);
  State& s = state(img, node);
  const auto it = s.output_buffer.find(p);
  if (it == s.output_buffer.end())
    throw DataPathError(fmt::format("node '{}': output vector {} written before it was computed", graph_.nodes[node].name, p));
  ImageTensors& im = images_.at(img);
  for (uint32_t n = 0; n < L.N; ++n) {
    // [N][positions]; a Linear on tokens writes tokens [T][N].
    const size_t o = L.l->tokens ? size_t{p} * L.N + n : size_t{n} * L.positions + p;
    if (graph_.nodes[node].output_quant.is_float()) {
      im.values[node][o] = it->second.second[n];
    } else {
      im.codes[node][o] = it->second.first[n];
      if (fault_.on && fault_.node == node && fault_.p == p && fault_.n == n) im.codes[node][o] += fault_.delta;
    }
  }
  s.output_buffer.erase(it);
}

void GraphDataPath::digital(size_t img, size_t node_index) {
  const Node& node = graph_.nodes[node_index];
  ImageTensors& im = images_.at(img);
  std::vector<std::span<const int32_t>> ins;
  for (int id : node.inputs) ins.push_back(tensor(im, id));
  // The functional engine's own digital-node code: sim/engine/digital_nodes.cc.
  engine::run_digital_node(graph_, node, ins, im.codes[node_index], im.values[node_index]);
}

}  // namespace imcsim::timing
