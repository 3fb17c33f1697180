#include "sim/engine/digital_nodes.h"

#include <algorithm>
#include <climits>

#include "models/crossbar/fast_mvm.h"
#include "models/digital/ops.h"
#include "models/digital/requant.h"

namespace imcsim::engine {

namespace dk = kernels::digital;

namespace {
dk::QuantParams params(const graph::Quant& q) { return {q.scale, q.zero_point, q.bits}; }

// Path of the array kernels (same results on both): native where the CPU has it.
kernels::KernelPath array_path() {
  static const kernels::KernelPath path =
      kernels::native_kernels_supported() ? kernels::KernelPath::kNative : kernels::KernelPath::kPortable;
  return path;
}

// Max / average pooling, residual add, ReLU and flatten (docs/SEMANTICS.md): shared by the
// functional engine and the SystemC data-carrying mode. False if `node` is none of them.
bool run_pool_add_relu_flatten(const graph::Graph& g, const graph::Node& node,
                               std::span<const std::span<const int32_t>> ins, std::vector<int32_t>& out,
                               std::vector<double>& values) {
  const auto& in = ins[0];
  const graph::Quant& in_q = g.tensor_quant(node.inputs[0]);
  const graph::Shape& in_shape = g.tensor_shape(node.inputs[0]);
  const size_t out_elems = node.output_shape.elements();
  auto emit = [&](size_t index, double y) {
    if (node.output_quant.is_float()) values[index] = y;
    else out[index] = kernels::requantize(y, node.output_quant.scale, node.output_quant.zero_point,
                                          node.output_quant.bits);
  };
  if (const auto* mp = std::get_if<graph::MaxPool>(&node.op)) {
    const uint32_t C = in_shape.dims[0], H = in_shape.dims[1], W = in_shape.dims[2];
    const uint32_t OH = node.output_shape.dims[1], OW = node.output_shape.dims[2];
    for (uint32_t c = 0; c < C; ++c)
      for (uint32_t oy = 0; oy < OH; ++oy)
        for (uint32_t ox = 0; ox < OW; ++ox) {
          int32_t best = INT32_MIN;
          for (uint32_t ky = 0; ky < mp->kernel_h; ++ky)
            for (uint32_t kx = 0; kx < mp->kernel_w; ++kx) {
              const int64_t y = int64_t{oy} * mp->stride_h - mp->pad_h + ky;
              const int64_t x = int64_t{ox} * mp->stride_w - mp->pad_w + kx;
              if (y < 0 || y >= H || x < 0 || x >= W) continue;
              best = std::max(best, in[static_cast<size_t>((int64_t{c} * H + y) * W + x)]);
            }
          const size_t o = (size_t{c} * OH + oy) * OW + ox;
          if (node.output_quant.is_float()) values[o] = in_q.scale * double(best - in_q.zero_point);
          else out[o] = best;
        }
  } else if (const auto* ap = std::get_if<graph::AvgPool>(&node.op)) {
    const uint32_t C = in_shape.dims[0], H = in_shape.dims[1], W = in_shape.dims[2];
    const uint32_t OH = node.output_shape.dims[1], OW = node.output_shape.dims[2];
    const int64_t cnt = int64_t{ap->kernel_h} * ap->kernel_w;
    for (uint32_t c = 0; c < C; ++c)
      for (uint32_t oy = 0; oy < OH; ++oy)
        for (uint32_t ox = 0; ox < OW; ++ox) {
          int64_t sum = 0;
          for (uint32_t ky = 0; ky < ap->kernel_h; ++ky)
            for (uint32_t kx = 0; kx < ap->kernel_w; ++kx) {
              const int64_t y = int64_t{oy} * ap->stride_h - ap->pad_h + ky;
              const int64_t x = int64_t{ox} * ap->stride_w - ap->pad_w + kx;
              sum += (y < 0 || y >= H || x < 0 || x >= W)
                         ? in_q.zero_point
                         : in[static_cast<size_t>((int64_t{c} * H + y) * W + x)];
            }
          const double y = (static_cast<double>(sum - cnt * in_q.zero_point) * in_q.scale) /
                           static_cast<double>(cnt);
          emit((size_t{c} * OH + oy) * OW + ox, y);
        }
  } else if (const auto* add = std::get_if<graph::Add>(&node.op)) {
    const auto in_b = ins[1];
    const graph::Quant& b_q = g.tensor_quant(node.inputs[1]);
    const bool relu = add->activation == graph::Activation::kRelu;
    auto value = [&](size_t e) {
      const double y = (in_q.scale * static_cast<double>(in[e] - in_q.zero_point)) +
                       (b_q.scale * static_cast<double>(in_b[e] - b_q.zero_point));
      return relu ? std::max(y, 0.0) : y;
    };
    if (node.output_quant.is_float()) {
      for (size_t e = 0; e < out_elems; ++e) values[e] = value(e);
    } else {
      // Values in chunks, requantised by the (vectorised where the CPU has it) array kernel.
      double y[256];
      for (size_t e0 = 0; e0 < out_elems; e0 += 256) {
        const size_t m = std::min<size_t>(256, out_elems - e0);
        for (size_t i = 0; i < m; ++i) y[i] = value(e0 + i);
        kernels::requantize_array(y, m, node.output_quant.scale, node.output_quant.zero_point,
                                  node.output_quant.bits, out.data() + e0, 1, array_path());
      }
    }
  } else if (std::holds_alternative<graph::Relu>(node.op)) {
    auto value = [&](int32_t code) { return std::max(in_q.scale * static_cast<double>(code - in_q.zero_point), 0.0); };
    const uint64_t codes = in_q.bits >= 1 && in_q.bits <= 16 ? uint64_t{1} << in_q.bits : 0;
    if (!node.output_quant.is_float() && codes && out_elems >= 2 * codes) {
      // The output is a function of the input code: one table of every code in [0, 2^bits).
      std::vector<int32_t> table(codes);
      for (uint64_t c = 0; c < codes; ++c)
        table[c] = kernels::requantize(value(static_cast<int32_t>(c)), node.output_quant.scale,
                                       node.output_quant.zero_point, node.output_quant.bits);
      for (size_t e = 0; e < out_elems; ++e)
        out[e] = static_cast<uint64_t>(static_cast<uint32_t>(in[e])) < codes ? table[static_cast<uint32_t>(in[e])]
                                                                             : kernels::requantize(value(in[e]),
                                                                                                   node.output_quant.scale,
                                                                                                   node.output_quant.zero_point,
                                                                                                   node.output_quant.bits);
    } else {
      for (size_t e = 0; e < out_elems; ++e) emit(e, value(in[e]));
    }
  } else if (std::holds_alternative<graph::Flatten>(node.op)) {
    if (node.output_quant.is_float())
      for (size_t e = 0; e < out_elems; ++e) values[e] = in_q.scale * double(in[e] - in_q.zero_point);
    else out.assign(in.begin(), in.end());
  } else {
    return false;
  }
  return true;
}

}  // namespace

bool run_digital_node(const graph::Graph& g, const graph::Node& node, std::span<const std::span<const int32_t>> ins,
                      std::vector<int32_t>& out_codes, std::vector<double>& out_values) {
  const dk::OutSink out(params(node.output_quant), out_codes, out_values);
  const graph::Quant& q0 = g.tensor_quant(node.inputs[0]);
  const graph::Shape& s0 = g.tensor_shape(node.inputs[0]);
  const auto& in = ins[0];
  if (const auto* l = std::get_if<graph::DigitalLayer>(&node.op)) {
    std::vector<double> m(l->out_channels);
    for (uint32_t n = 0; n < l->out_channels; ++n) m[n] = q0.scale * l->weight_scale[n];
    const bool relu = l->activation == graph::Activation::kRelu;
    if (l->is_conv) {
      dk::ConvGeometry geo{s0.dims[0], s0.dims[1], s0.dims[2], l->out_channels, l->kernel_h, l->kernel_w,
                           l->stride_h, l->stride_w, l->pad_h, l->pad_w, l->groups,
                           node.output_shape.dims[1], node.output_shape.dims[2]};
      dk::conv2d(geo, in, q0.zero_point, l->weights, m, l->bias, relu, out);
    } else {
      const uint32_t positions = l->tokens ? s0.dims[0] : 1;
      dk::linear(positions, l->in_channels, l->out_channels, in, q0.zero_point, l->weights, m, l->bias, relu, out);
    }
  } else if (std::holds_alternative<graph::GlobalAvgPool>(node.op)) {
    if (s0.dims.size() == 3) {
      const uint32_t spatial = s0.dims[1] * s0.dims[2];
      dk::global_avg_pool(s0.dims[0], spatial, spatial, 1, in, params(q0), out);
    } else {  // tokens [T, D]: mean over T per feature
      dk::global_avg_pool(s0.dims[1], s0.dims[0], 1, s0.dims[1], in, params(q0), out);
    }
  } else if (std::holds_alternative<graph::Concat>(node.op)) {
    size_t offset = 0;
    for (size_t k = 0; k < ins.size(); ++k) {
      dk::concat_part(ins[k], params(g.tensor_quant(node.inputs[k])), offset, out);
      offset += ins[k].size();
    }
  } else if (const auto* t = std::get_if<graph::ToTokens>(&node.op)) {
    dk::to_tokens(s0.dims[0], s0.dims[1], s0.dims[2], t->patch_h, t->patch_w, in, out);
  } else if (const auto* a = std::get_if<graph::AttentionScores>(&node.op)) {
    const graph::Quant& qk = g.tensor_quant(node.inputs[1]);
    const uint32_t t2 = g.tensor_shape(node.inputs[1]).dims[0];
    dk::attention_scores(s0.dims[0], t2, s0.dims[1], a->heads, in, q0.zero_point, ins[1], qk.zero_point,
                         (q0.scale * qk.scale) * a->scale, out);
  } else if (const auto* sm = std::get_if<graph::Softmax>(&node.op)) {
    const uint32_t len = s0.dims.back();
    dk::softmax(static_cast<uint32_t>(s0.elements() / len), len, in, sm->exp_table, out);
  } else if (const auto* c = std::get_if<graph::AttentionContext>(&node.op)) {
    const graph::Quant& qv = g.tensor_quant(node.inputs[1]);
    const graph::Shape& sv = g.tensor_shape(node.inputs[1]);
    dk::attention_context(s0.dims[1], s0.dims[2], sv.dims[1], c->heads, in, q0.zero_point, ins[1], qv.zero_point,
                          q0.scale * qv.scale, out);
  } else if (const auto* ln = std::get_if<graph::LayerNorm>(&node.op)) {
    const uint32_t d = s0.dims.back();
    dk::layer_norm(static_cast<uint32_t>(s0.elements() / d), d, in, q0.zero_point, ln->gamma, ln->beta, ln->eps_int,
                   out);
  } else if (const auto* lt = std::get_if<graph::Lut>(&node.op)) {
    dk::lut(in, lt->table, out);
  } else if (const auto* ac = std::get_if<graph::AddConstant>(&node.op)) {
    dk::add_constant(in, params(q0), ac->values, ac->activation == graph::Activation::kRelu, out);
  } else {
    return run_pool_add_relu_flatten(g, node, ins, out_codes, out_values);
  }
  return true;
}

}  // namespace imcsim::engine
