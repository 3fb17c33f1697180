#include "sim/graph/graph_writer.h"

#include <fmt/format.h>
#include <google/protobuf/text_format.h>

#include <cmath>
#include <set>
#include <stdexcept>

#include "sim/graph/container.h"
#include "sim/graph/imcsim_graph.pb.h"
#include "sim/report/report.h"

namespace imcsim::graph {

namespace pb = ::imcsim::pb;
using kernels::AdcGranularity;
using kernels::AdcKind;
using kernels::AdcRounding;
using kernels::WeightEncoding;

namespace {

void to_pb(const Quant& q, pb::Quant* out) {
  out->set_scale(q.scale);
  out->set_zero_point(q.zero_point);
  out->set_bits(q.bits);
}

pb::Activation to_pb(Activation a) {
  return a == Activation::kRelu ? pb::ACTIVATION_RELU : pb::ACTIVATION_NONE;
}

pb::WeightEncoding to_pb(WeightEncoding e) {
  switch (e) {
    case WeightEncoding::kOffset: return pb::WEIGHT_ENCODING_OFFSET;
    case WeightEncoding::kTwosComplement: return pb::WEIGHT_ENCODING_TWOS_COMPLEMENT;
    case WeightEncoding::kDifferentialDigital: return pb::WEIGHT_ENCODING_DIFFERENTIAL_DIGITAL;
    case WeightEncoding::kDifferentialAnalog: return pb::WEIGHT_ENCODING_DIFFERENTIAL_ANALOG;
  }
  throw std::logic_error("graph writer: unknown weight encoding");
}

void to_pb(const kernels::AdcSpec& a, pb::AdcSpec* out) {
  switch (a.kind) {
    case AdcKind::kIdeal: out->set_kind(pb::AdcSpec::KIND_IDEAL); break;
    case AdcKind::kLinear: out->set_kind(pb::AdcSpec::KIND_LINEAR); break;
    case AdcKind::kNonlinear: out->set_kind(pb::AdcSpec::KIND_NONLINEAR); break;
  }
  out->set_bits(a.bits);
  out->set_frac_bits(a.frac_bits);
  out->set_rounding(a.rounding == AdcRounding::kFloor ? pb::AdcSpec::ROUNDING_FLOOR : pb::AdcSpec::ROUNDING_HALF_AWAY);
  out->set_signed_codes(a.signed_codes);
  switch (a.granularity) {
    case AdcGranularity::kLayer: out->set_granularity(pb::AdcSpec::GRANULARITY_LAYER); break;
    case AdcGranularity::kColumn: out->set_granularity(pb::AdcSpec::GRANULARITY_COLUMN); break;
    case AdcGranularity::kSliceTileColumn: out->set_granularity(pb::AdcSpec::GRANULARITY_SLICE_TILE_COLUMN); break;
  }
  for (int64_t v : a.step_fx) out->add_step_fx(v);
  for (int64_t v : a.centre_fx) out->add_centre_fx(v);
  for (int64_t v : a.thresholds_fx) out->add_thresholds_fx(v);
  for (int64_t v : a.levels_fx) out->add_levels_fx(v);
}

bool all_exactly(const std::vector<double>& v, double x) {
  for (double e : v)
    if (!(e == x) || std::signbit(e) != std::signbit(x)) return false;
  return true;
}

void to_pb(const ImcLayer& l, pb::ImcLayer* out, bool shape_only) {
  out->set_kind(l.is_conv ? pb::ImcLayer::KIND_CONV2D : pb::ImcLayer::KIND_LINEAR);
  out->set_in_channels(l.in_channels);
  out->set_out_channels(l.out_channels);
  out->set_kernel_h(l.kernel_h);
  out->set_kernel_w(l.kernel_w);
  out->set_stride_h(l.stride_h);
  out->set_stride_w(l.stride_w);
  out->set_pad_h(l.pad_h);
  out->set_pad_w(l.pad_w);
  out->set_weight_bits(l.weight_bits);
  out->set_cell_bits(l.cell_bits);
  out->set_dac_bits(l.dac_bits);
  out->set_encoding(to_pb(l.encoding));
  out->set_row_tiling(l.row_tiling == RowTilingRule::kChannelAligned ? pb::ROW_TILING_CHANNEL_ALIGNED
                                                                     : pb::ROW_TILING_CONTIGUOUS);
  out->set_array_rows(l.array_rows);
  out->set_array_cols(l.array_cols);
  if (!shape_only) {  // a shape-only graph carries no weights, scales or biases
    out->mutable_weights()->Add(l.weights.begin(), l.weights.end());
    out->mutable_weight_scale()->Add(l.weight_scale.begin(), l.weight_scale.end());
    if (!all_exactly(l.psum_scale, 1.0)) out->mutable_psum_scale()->Add(l.psum_scale.begin(), l.psum_scale.end());
    if (!all_exactly(l.bias, 0.0)) out->mutable_bias()->Add(l.bias.begin(), l.bias.end());
  }
  out->set_ashift_offset(l.ashift_offset);
  to_pb(l.adc, out->mutable_adc());
  out->set_activation(to_pb(l.activation));
}

void to_pb(const DigitalLayer& l, pb::DigitalLayer* out, bool shape_only) {
  out->set_kind(l.is_conv ? pb::DigitalLayer::KIND_CONV2D : pb::DigitalLayer::KIND_LINEAR);
  out->set_in_channels(l.in_channels);
  out->set_out_channels(l.out_channels);
  if (l.is_conv) {
    out->set_kernel_h(l.kernel_h);
    out->set_kernel_w(l.kernel_w);
    out->set_stride_h(l.stride_h);
    out->set_stride_w(l.stride_w);
    out->set_pad_h(l.pad_h);
    out->set_pad_w(l.pad_w);
  }
  out->set_groups(l.groups);
  out->set_weight_bits(l.weight_bits);
  if (!shape_only) {
    out->mutable_weights()->Add(l.weights.begin(), l.weights.end());
    out->mutable_weight_scale()->Add(l.weight_scale.begin(), l.weight_scale.end());
    if (!all_exactly(l.bias, 0.0)) out->mutable_bias()->Add(l.bias.begin(), l.bias.end());
  }
  out->set_activation(to_pb(l.activation));
}

// The digital-unit operations other than DigitalLayer (docs/graph_format.md).
void digital_to_pb(const Op& op, pb::Node* pn) {
  if (std::holds_alternative<GlobalAvgPool>(op)) pn->mutable_global_avg_pool();
  else if (std::holds_alternative<Concat>(op)) pn->mutable_concat();
  else if (const auto* t = std::get_if<ToTokens>(&op)) {
    pn->mutable_to_tokens()->set_patch_h(t->patch_h);
    pn->mutable_to_tokens()->set_patch_w(t->patch_w);
  } else if (const auto* a = std::get_if<AttentionScores>(&op)) {
    pn->mutable_attention_scores()->set_heads(a->heads);
    pn->mutable_attention_scores()->set_scale(a->scale);
  } else if (const auto* sm = std::get_if<Softmax>(&op)) {
    pn->mutable_softmax()->mutable_exp_table()->Add(sm->exp_table.begin(), sm->exp_table.end());
  } else if (std::holds_alternative<AttentionContext>(op)) pn->mutable_attention_context();
  else if (const auto* ln = std::get_if<LayerNorm>(&op)) {
    pn->mutable_layer_norm()->mutable_gamma()->Add(ln->gamma.begin(), ln->gamma.end());
    pn->mutable_layer_norm()->mutable_beta()->Add(ln->beta.begin(), ln->beta.end());
    pn->mutable_layer_norm()->set_eps_int(ln->eps_int);
  } else if (const auto* lt = std::get_if<Lut>(&op)) {
    pn->mutable_lut()->set_function(lt->function);
    pn->mutable_lut()->mutable_table()->Add(lt->table.begin(), lt->table.end());
  } else if (const auto* ac = std::get_if<AddConstant>(&op)) {
    pn->mutable_add_constant()->mutable_values()->Add(ac->values.begin(), ac->values.end());
    pn->mutable_add_constant()->set_activation(to_pb(ac->activation));
  } else {
    throw std::logic_error("graph writer: unknown operation");
  }
}

template <typename Window>
void window_to_pb(const Window& w, auto* out) {
  out->set_kernel_h(w.kernel_h);
  out->set_kernel_w(w.kernel_w);
  out->set_stride_h(w.stride_h);
  out->set_stride_w(w.stride_w);
  out->set_pad_h(w.pad_h);
  out->set_pad_w(w.pad_w);
}

pb::Graph to_pb(const Graph& g) {
  pb::Graph out;
  out.set_format_version(kFormatVersion);
  out.set_name(g.name);
  const Provenance& p = g.provenance;
  pb::Provenance* pp = out.mutable_provenance();
  pp->set_exporter(p.exporter);
  pp->set_command(p.command);
  pp->set_seed(p.seed);
  pp->set_method(p.method);
  pp->set_method_settings_json(p.method_settings_json);
  pp->set_dataset(p.dataset);
  pp->set_float_accuracy(p.float_accuracy);
  pp->set_fake_quant_accuracy(p.fake_quant_accuracy);
  pp->set_reference_accuracy(p.reference_accuracy);
  pp->set_reference_images(p.reference_images);
  pp->set_created_utc(p.created_utc);
  pp->set_torch_version(p.torch_version);

  pb::InputSpec* in = out.mutable_input();
  in->set_tensor(g.input.tensor);
  for (uint32_t d : g.input.shape.dims) in->add_shape(d);
  in->set_dataset_format(g.input.dataset_format);
  in->set_pixel_scale(g.input.pixel_scale);
  in->set_mean(g.input.mean);
  in->set_std(g.input.std);
  to_pb(g.input.quant, in->mutable_quant());

  // Tensor names: the graph input's, then each node's output named after the node.
  std::vector<std::string> tensor_names;
  std::set<std::string> used{g.input.tensor};
  for (const Node& n : g.nodes) {
    std::string name = n.name;
    for (int k = 1; used.count(name); ++k) name = fmt::format("{}:out{}", n.name, k);
    used.insert(name);
    tensor_names.push_back(name);
  }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    pb::Node* pn = out.add_nodes();
    pn->set_name(n.name);
    for (int t : n.inputs) {
      if (t >= static_cast<int>(i)) throw std::logic_error("graph writer: node input is not an earlier tensor");
      pn->add_inputs(t < 0 ? g.input.tensor : tensor_names[static_cast<size_t>(t)]);
    }
    pn->set_output(tensor_names[i]);
    for (uint32_t d : n.output_shape.dims) pn->add_output_shape(d);
    to_pb(n.output_quant, pn->mutable_output_quant());
    if (const auto* l = std::get_if<ImcLayer>(&n.op)) to_pb(*l, pn->mutable_imc(), g.shape_only);
    else if (const auto* m = std::get_if<MaxPool>(&n.op)) window_to_pb(*m, pn->mutable_max_pool());
    else if (const auto* a = std::get_if<AvgPool>(&n.op)) window_to_pb(*a, pn->mutable_avg_pool());
    else if (const auto* ad = std::get_if<Add>(&n.op)) pn->mutable_add()->set_activation(to_pb(ad->activation));
    else if (std::holds_alternative<Flatten>(n.op)) pn->mutable_flatten();
    else if (std::holds_alternative<Relu>(n.op)) pn->mutable_relu();
    else if (const auto* dl = std::get_if<DigitalLayer>(&n.op)) to_pb(*dl, pn->mutable_digital(), g.shape_only);
    else digital_to_pb(n.op, pn);
  }
  out.set_num_classes(g.num_classes);
  out.set_shape_only(g.shape_only);

  for (const GoldenPair& gp : g.golden) {
    pb::GoldenPair* pg = out.add_golden();
    pg->set_dataset_index(gp.dataset_index);
    pg->set_label(gp.label);
    for (int32_t c : gp.input_codes) pg->add_input_codes(static_cast<uint32_t>(c));
    for (const NodeGolden& ng : gp.nodes) {
      pb::NodeGolden* pn = pg->add_nodes();
      pn->set_node(ng.node);
      pn->mutable_output_codes()->Add(ng.output_codes.begin(), ng.output_codes.end());
      pn->set_psum_count(ng.psum_count);
      pn->set_psum_digest(ng.psum_digest);
      pn->set_adc_code_digest(ng.adc_code_digest);
      pn->set_acc_digest(ng.acc_digest);
      pn->mutable_psums_position0()->Add(ng.psums_position0.begin(), ng.psums_position0.end());
      pn->mutable_adc_codes_position0()->Add(ng.adc_codes_position0.begin(), ng.adc_codes_position0.end());
      pn->mutable_acc_position0()->Add(ng.acc_position0.begin(), ng.acc_position0.end());
    }
    pg->mutable_logits()->Add(gp.logits.begin(), gp.logits.end());
    pg->set_predicted_class(gp.predicted_class);
  }
  return out;
}

bool is_text_name(const std::filesystem::path& file) {
  const std::string ext = file.extension().string();
  return ext == ".txt" || ext == ".pbtxt" || ext == ".textproto";
}

}  // namespace

std::string serialize_graph(const Graph& graph) {
  std::string payload;
  if (!to_pb(graph).SerializeToString(&payload))
    throw std::runtime_error(fmt::format("graph '{}': protobuf serialisation failed", graph.name));
  if (payload.size() > static_cast<size_t>(INT32_MAX))
    throw std::runtime_error(fmt::format("graph '{}': payload of {} bytes exceeds the 2 GiB protobuf limit", graph.name,
                                         payload.size()));
  return wrap_container(payload);
}

std::string graph_to_text(const Graph& graph) {
  std::string text;
  google::protobuf::TextFormat::Printer printer;
  if (!printer.PrintToString(to_pb(graph), &text))
    throw std::runtime_error(fmt::format("graph '{}': protobuf text printing failed", graph.name));
  return text;
}

void save_graph(const Graph& graph, const std::filesystem::path& file) {
  report::write_file_atomically(file, is_text_name(file) ? graph_to_text(graph) : serialize_graph(graph));
}

}  // namespace imcsim::graph
