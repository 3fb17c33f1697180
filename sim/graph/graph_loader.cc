#include "sim/graph/graph_loader.h"

#include <fmt/format.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

#include "sim/graph/container.h"
#include "sim/graph/imcsim_graph.pb.h"
#include "models/crossbar/crossbar.h"

namespace imcsim::graph {

namespace pb = ::imcsim::pb;  // generated protobuf messages
using kernels::AdcGranularity;
using kernels::AdcKind;
using kernels::WeightEncoding;

namespace {

constexpr uint32_t kMaxBits = 16;
constexpr uint32_t kMaxFracBits = 24;

// Escapes control characters so that an error message stays on one line whatever the file holds.
std::string one_line(const std::string& text) {
  std::string out;
  for (unsigned char ch : text) {
    if (ch < 0x20 || ch == 0x7f) out += fmt::format("\\x{:02x}", ch);
    else out += static_cast<char>(ch);
  }
  return out;
}

bool has_control_chars(const std::string& text) {
  for (unsigned char ch : text)
    if (ch < 0x20 || ch == 0x7f) return true;
  return false;
}

// Collects the context ("file: node 'x' (#i) field") for error messages.
class Checker {
 public:
  explicit Checker(std::string source) : source_(std::move(source)) {}
  void set_node(int index, const std::string& name) {
    where_ = fmt::format("node '{}' (#{})", name, index);
  }
  void set_where(std::string where) { where_ = std::move(where); }
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw GraphError(one_line(fmt::format("{}: {}{}{}: {}", source_, where_, where_.empty() ? "" : " ",
                                          field, what)));
  }
  void require(bool ok, const std::string& field, const std::string& what) const {
    if (!ok) fail(field, what);
  }
  void positive(uint64_t v, const std::string& field) const {
    require(v > 0, field, fmt::format("must be > 0, got {}", v));
  }
  void finite_positive(double v, const std::string& field) const {
    require(std::isfinite(v) && v > 0, field, fmt::format("must be a finite number > 0, got {}", v));
  }
  void finite(double v, const std::string& field) const {
    require(std::isfinite(v), field, fmt::format("must be finite, got {}", v));
  }
  void bits(uint32_t v, uint32_t lo, uint32_t hi, const std::string& field) const {
    require(v >= lo && v <= hi, field, fmt::format("must be in [{}, {}], got {}", lo, hi, v));
  }

 private:
  std::string source_;
  std::string where_;
};

Quant convert_quant(const pb::Quant& q, const Checker& c, const std::string& field, bool allow_float) {
  Quant out{q.scale(), q.zero_point(), q.bits()};
  if (out.bits == 0) {
    c.require(allow_float, field + ".bits",
              "0 (float output) is only allowed for the last node; expected 1..16");
    return out;
  }
  c.bits(out.bits, 1, kMaxBits, field + ".bits");
  c.finite_positive(out.scale, field + ".scale");
  c.require(out.zero_point >= 0 && out.zero_point <= out.max_code(), field + ".zero_point",
            fmt::format("must be in [0, {}], got {}", out.max_code(), out.zero_point));
  return out;
}

Activation convert_activation(pb::Activation a, const Checker& c, const std::string& field) {
  switch (a) {
    case pb::ACTIVATION_NONE: return Activation::kNone;
    case pb::ACTIVATION_RELU: return Activation::kRelu;
    default: c.fail(field, fmt::format("unknown activation {}", static_cast<int>(a)));
  }
}

std::string shape_str(const Shape& s) {
  return fmt::format("[{}]", fmt::join(s.dims, ", "));
}

kernels::AdcSpec convert_adc(const pb::AdcSpec& a, const Checker& c, uint64_t tiles,
                             uint64_t slices, uint64_t cols) {
  kernels::AdcSpec spec;
  switch (a.kind()) {
    case pb::AdcSpec::KIND_IDEAL: spec.kind = AdcKind::kIdeal; break;
    case pb::AdcSpec::KIND_LINEAR: spec.kind = AdcKind::kLinear; break;
    case pb::AdcSpec::KIND_NONLINEAR: spec.kind = AdcKind::kNonlinear; break;
    default: c.fail("imc.adc.kind", fmt::format("unknown ADC kind {}", static_cast<int>(a.kind())));
  }
  switch (a.granularity()) {
    case pb::AdcSpec::GRANULARITY_LAYER: spec.granularity = AdcGranularity::kLayer; break;
    case pb::AdcSpec::GRANULARITY_COLUMN: spec.granularity = AdcGranularity::kColumn; break;
    case pb::AdcSpec::GRANULARITY_SLICE_TILE_COLUMN:
      spec.granularity = AdcGranularity::kSliceTileColumn;
      break;
    default:
      c.fail("imc.adc.granularity",
             fmt::format("unknown granularity {}", static_cast<int>(a.granularity())));
  }
  switch (a.rounding()) {
    case pb::AdcSpec::ROUNDING_FLOOR: spec.rounding = kernels::AdcRounding::kFloor; break;
    case pb::AdcSpec::ROUNDING_HALF_AWAY: spec.rounding = kernels::AdcRounding::kHalfAway; break;
    default:
      c.fail("imc.adc.rounding", fmt::format("unknown rounding {}", static_cast<int>(a.rounding())));
  }
  spec.bits = a.bits();
  spec.frac_bits = a.frac_bits();
  spec.signed_codes = a.signed_codes();
  c.bits(spec.frac_bits, 0, kMaxFracBits, "imc.adc.frac_bits");
  const uint64_t sets = kernels::AdcSpec::sets_for(spec.granularity, tiles, slices, cols);
  const std::string sets_desc =
      fmt::format("{} parameter set(s) for granularity {} (tiles {}, slices {}, columns {})", sets,
                  kernels::adc_granularity_name(spec.granularity), tiles, slices, cols);
  if (spec.kind == AdcKind::kIdeal) {
    c.require(a.step_fx_size() == 0 && a.thresholds_fx_size() == 0, "imc.adc",
              "an IDEAL ADC takes no step_fx / thresholds_fx");
    return spec;
  }
  c.bits(spec.bits, 1, kMaxBits, "imc.adc.bits");
  if (spec.kind == AdcKind::kLinear) {
    c.require(a.thresholds_fx_size() == 0 && a.levels_fx_size() == 0, "imc.adc.thresholds_fx",
              "a LINEAR ADC takes step_fx and centre_fx, not thresholds/levels");
    c.require(static_cast<uint64_t>(a.step_fx_size()) == sets, "imc.adc.step_fx",
              fmt::format("expected {} values ({}), got {}", sets, sets_desc, a.step_fx_size()));
    c.require(static_cast<uint64_t>(a.centre_fx_size()) == sets, "imc.adc.centre_fx",
              fmt::format("expected {} values ({}), got {}", sets, sets_desc, a.centre_fx_size()));
    spec.step_fx.assign(a.step_fx().begin(), a.step_fx().end());
    spec.centre_fx.assign(a.centre_fx().begin(), a.centre_fx().end());
    for (size_t i = 0; i < spec.step_fx.size(); ++i) {
      c.require(spec.step_fx[i] > 0 && spec.step_fx[i] < (int64_t{1} << 40),
                fmt::format("imc.adc.step_fx[{}]", i),
                fmt::format("must be in [1, 2^40), got {}", spec.step_fx[i]));
      c.require(std::llabs(spec.centre_fx[i]) < (int64_t{1} << 44),
                fmt::format("imc.adc.centre_fx[{}]", i),
                fmt::format("magnitude must be < 2^44, got {}", spec.centre_fx[i]));
    }
  } else {
    c.require(a.step_fx_size() == 0 && a.centre_fx_size() == 0, "imc.adc.step_fx",
              "a NONLINEAR ADC takes thresholds_fx and levels_fx, not step/centre");
    const uint64_t n_thr = (uint64_t{1} << spec.bits) - 1;
    c.require(static_cast<uint64_t>(a.thresholds_fx_size()) == sets * n_thr, "imc.adc.thresholds_fx",
              fmt::format("expected {} values (2^{} - 1 = {} thresholds x {}), got {}", sets * n_thr,
                          spec.bits, n_thr, sets_desc, a.thresholds_fx_size()));
    c.require(static_cast<uint64_t>(a.levels_fx_size()) == sets * (n_thr + 1), "imc.adc.levels_fx",
              fmt::format("expected {} values (2^{} = {} levels x {}), got {}", sets * (n_thr + 1),
                          spec.bits, n_thr + 1, sets_desc, a.levels_fx_size()));
    spec.thresholds_fx.assign(a.thresholds_fx().begin(), a.thresholds_fx().end());
    spec.levels_fx.assign(a.levels_fx().begin(), a.levels_fx().end());
    for (uint64_t set = 0; set < sets; ++set) {
      for (uint64_t i = 1; i < n_thr; ++i) {
        const uint64_t idx = set * n_thr + i;
        c.require(spec.thresholds_fx[idx] > spec.thresholds_fx[idx - 1],
                  fmt::format("imc.adc.thresholds_fx[{}]", idx),
                  fmt::format("thresholds must be strictly increasing within a set: set {} has {} "
                              "after {}", set, spec.thresholds_fx[idx], spec.thresholds_fx[idx - 1]));
      }
    }
    for (size_t i = 0; i < spec.levels_fx.size(); ++i)
      c.require(std::llabs(spec.levels_fx[i]) < (int64_t{1} << 52),
                fmt::format("imc.adc.levels_fx[{}]", i),
                fmt::format("magnitude must be < 2^52, got {}", spec.levels_fx[i]));
  }
  return spec;
}

ImcLayer convert_imc(const pb::ImcLayer& l, const Shape& in_shape, const Quant& in_quant,
                     Shape& out_shape, const Checker& c, bool shape_only) {
  ImcLayer out;
  c.require(!in_quant.is_float(), "inputs", "an IMC layer needs integer input codes");
  switch (l.kind()) {
    case pb::ImcLayer::KIND_CONV2D: out.is_conv = true; break;
    case pb::ImcLayer::KIND_LINEAR: out.is_conv = false; break;
    default: c.fail("imc.kind", fmt::format("unknown layer kind {}", static_cast<int>(l.kind())));
  }
  out.in_channels = l.in_channels();
  out.out_channels = l.out_channels();
  c.positive(out.in_channels, "imc.in_channels");
  c.positive(out.out_channels, "imc.out_channels");
  if (out.is_conv) {
    out.kernel_h = l.kernel_h(), out.kernel_w = l.kernel_w();
    out.stride_h = l.stride_h(), out.stride_w = l.stride_w();
    out.pad_h = l.pad_h(), out.pad_w = l.pad_w();
    c.positive(out.kernel_h, "imc.kernel_h");
    c.positive(out.kernel_w, "imc.kernel_w");
    c.positive(out.stride_h, "imc.stride_h");
    c.positive(out.stride_w, "imc.stride_w");
    c.require(in_shape.dims.size() == 3, "inputs",
              fmt::format("a Conv2d needs a C x H x W input, got shape {}", shape_str(in_shape)));
    c.require(in_shape.dims[0] == out.in_channels, "imc.in_channels",
              fmt::format("{} does not match the input's {} channels", out.in_channels, in_shape.dims[0]));
    const uint32_t oh = window_output_size(in_shape.dims[1], out.kernel_h, out.stride_h, out.pad_h);
    const uint32_t ow = window_output_size(in_shape.dims[2], out.kernel_w, out.stride_w, out.pad_w);
    c.require(oh > 0 && ow > 0, "imc.kernel_h",
              fmt::format("kernel {}x{} does not fit input {} with padding {},{}", out.kernel_h,
                          out.kernel_w, shape_str(in_shape), out.pad_h, out.pad_w));
    out_shape = Shape{{out.out_channels, oh, ow}};
  } else {
    c.require(in_shape.dims.size() == 1 || in_shape.dims.size() == 2, "inputs",
              fmt::format("a Linear layer needs a vector [N] or tokens [T, D] (add a Flatten or "
                          "to_tokens), got shape {}", shape_str(in_shape)));
    out.tokens = in_shape.dims.size() == 2;
    c.require(in_shape.dims.back() == out.in_channels, "imc.in_channels",
              fmt::format("{} does not match the input's {} features", out.in_channels, in_shape.dims.back()));
    out_shape = out.tokens ? Shape{{in_shape.dims[0], out.out_channels}} : Shape{{out.out_channels}};
  }
  const uint32_t bx = in_quant.bits;
  out.weight_bits = l.weight_bits();
  out.cell_bits = l.cell_bits();
  out.dac_bits = l.dac_bits();
  c.bits(out.weight_bits, 2, kMaxBits, "imc.weight_bits");
  c.bits(out.cell_bits, 1, 8, "imc.cell_bits");
  c.bits(out.dac_bits, 1, kMaxBits, "imc.dac_bits");
  switch (l.encoding()) {
    case pb::WEIGHT_ENCODING_OFFSET: out.encoding = WeightEncoding::kOffset; break;
    case pb::WEIGHT_ENCODING_TWOS_COMPLEMENT: out.encoding = WeightEncoding::kTwosComplement; break;
    case pb::WEIGHT_ENCODING_DIFFERENTIAL_DIGITAL: out.encoding = WeightEncoding::kDifferentialDigital; break;
    case pb::WEIGHT_ENCODING_DIFFERENTIAL_ANALOG: out.encoding = WeightEncoding::kDifferentialAnalog; break;
    default: c.fail("imc.encoding", fmt::format("unknown weight encoding {}", static_cast<int>(l.encoding())));
  }
  switch (l.row_tiling()) {
    case pb::ROW_TILING_CONTIGUOUS: out.row_tiling = RowTilingRule::kContiguous; break;
    case pb::ROW_TILING_CHANNEL_ALIGNED: out.row_tiling = RowTilingRule::kChannelAligned; break;
    default: c.fail("imc.row_tiling", fmt::format("unknown row tiling {}", static_cast<int>(l.row_tiling())));
  }
  out.array_rows = l.array_rows();
  out.array_cols = l.array_cols();
  c.positive(out.array_rows, "imc.array_rows");
  c.positive(out.array_cols, "imc.array_cols");
  const uint32_t taps = out.kernel_h * out.kernel_w;
  if (out.row_tiling == RowTilingRule::kChannelAligned)
    c.require(taps <= out.array_rows, "imc.row_tiling",
              fmt::format("CHANNEL_ALIGNED needs kernel_h*kernel_w = {} <= array_rows = {}", taps,
                          out.array_rows));

  const uint64_t k_rows = uint64_t{out.in_channels} * taps;
  const uint64_t n_cols = out.out_channels;
  c.require(k_rows < (uint64_t{1} << 31), "imc.in_channels", "weight matrix has too many rows");
  if (shape_only) {
    // Shape-only graphs carry no values; scales default to 1 so derived quantities exist.
    c.require(l.weights_size() == 0 && l.weight_scale_size() == 0 && l.psum_scale_size() == 0 &&
                  l.bias_size() == 0,
              "imc.weights", "a shape_only graph carries no weights, scales or biases");
  } else {
    c.require(static_cast<uint64_t>(l.weights_size()) == k_rows * n_cols, "imc.weights",
              fmt::format("expected N*K = {}*{} = {} values, got {}", n_cols, k_rows,
                          k_rows * n_cols, l.weights_size()));
  }
  const int32_t w_min = -(int32_t{1} << (out.weight_bits - 1));
  const int32_t w_max = (int32_t{1} << (out.weight_bits - 1)) - 1;
  const bool differential = out.encoding == WeightEncoding::kDifferentialDigital ||
                            out.encoding == WeightEncoding::kDifferentialAnalog;
  const int32_t w_lo = differential ? w_min + 1 : w_min;
  out.weights.assign(l.weights().begin(), l.weights().end());
  for (size_t i = 0; i < out.weights.size(); ++i) {
    const int32_t w = out.weights[i];
    if (w < w_lo || w > w_max)
      c.fail(fmt::format("imc.weights[{}]", i),
             fmt::format("value {} (column {}, row {}) outside [{}, {}] for {}-bit {} weights", w,
                         i / k_rows, i % k_rows, w_lo, w_max, out.weight_bits,
                         kernels::encoding_name(out.encoding)));
  }
  c.require(shape_only || l.weight_scale_size() == 1 || static_cast<uint64_t>(l.weight_scale_size()) == n_cols,
            "imc.weight_scale",
            fmt::format("expected 1 (per tensor) or {} (per column) values, got {}", n_cols,
                        l.weight_scale_size()));
  out.weight_scale.assign(n_cols, 1.0);
  for (uint64_t n = 0; n < n_cols && !shape_only; ++n) {
    out.weight_scale[n] = l.weight_scale(l.weight_scale_size() == 1 ? 0 : static_cast<int>(n));
    c.finite_positive(out.weight_scale[n], fmt::format("imc.weight_scale[{}]", n));
  }
  c.require(l.psum_scale_size() == 0 || static_cast<uint64_t>(l.psum_scale_size()) == n_cols,
            "imc.psum_scale", fmt::format("expected 0 or {} values, got {}", n_cols, l.psum_scale_size()));
  out.psum_scale.assign(n_cols, 1.0);
  for (int n = 0; n < l.psum_scale_size(); ++n) {
    out.psum_scale[static_cast<size_t>(n)] = l.psum_scale(n);
    c.finite_positive(l.psum_scale(n), fmt::format("imc.psum_scale[{}]", n));
  }
  c.require(l.bias_size() == 0 || static_cast<uint64_t>(l.bias_size()) == n_cols, "imc.bias",
            fmt::format("expected 0 or {} values, got {}", n_cols, l.bias_size()));
  out.bias.assign(n_cols, 0.0);
  for (int n = 0; n < l.bias_size(); ++n) {
    out.bias[static_cast<size_t>(n)] = l.bias(n);
    c.finite(l.bias(n), fmt::format("imc.bias[{}]", n));
  }
  out.ashift_offset = l.ashift_offset();
  c.require(out.ashift_offset == 0 || out.ashift_offset == (1u << (bx - 1)), "imc.ashift_offset",
            fmt::format("must be 0 or 2^(Bx-1) = {} for {}-bit inputs, got {}", 1u << (bx - 1), bx,
                        out.ashift_offset));
  out.activation = convert_activation(l.activation(), c, "imc.activation");

  // Tiles and slices decide the ADC's parameter-set count and the arithmetic bounds.
  const auto tiles = out.row_tiling == RowTilingRule::kContiguous
                         ? kernels::contiguous_row_tiles(static_cast<uint32_t>(k_rows), out.array_rows)
                         : kernels::channel_aligned_row_tiles(out.in_channels, taps, out.array_rows);
  const auto slices = kernels::weight_slices(out.encoding, out.weight_bits, out.cell_bits);
  const auto groups = kernels::input_groups(bx, out.dac_bits, out.ashift_offset != 0);
  out.adc = convert_adc(l.adc(), c, tiles.size(), slices.size(), n_cols);

  // Bounds: partial sums must fit int32 (crossbar kernel), ADC values and accumulators int64.
  uint32_t max_tile_rows = 0;
  for (const auto& t : tiles) max_tile_rows = std::max(max_tile_rows, t.rows());
  uint32_t max_group_bits = 0, max_slice_bits = 0;
  for (const auto& g : groups) max_group_bits = std::max(max_group_bits, g.nbits);
  for (const auto& s : slices) max_slice_bits = std::max(max_slice_bits, s.nbits);
  const double max_psum = double(max_tile_rows) * double((1u << max_group_bits) - 1) *
                          double((1u << max_slice_bits) - 1);
  c.require(max_psum < 2147483647.0, "imc.array_rows",
            fmt::format("partial sums up to {} exceed the 32-bit range (rows {} x input group {} bits "
                        "x cell {} bits)", max_psum, max_tile_rows, max_group_bits, max_slice_bits));
  c.require(max_psum * std::ldexp(1.0, static_cast<int>(out.adc.frac_bits)) < 0x1p52,
            "imc.adc.frac_bits", "partial sum x 2^frac_bits exceeds 2^52");
  return out;
}

void convert_window(uint32_t kh, uint32_t kw, uint32_t sh, uint32_t sw, uint32_t ph, uint32_t pw,
                    const Shape& in_shape, Shape& out_shape, const Checker& c, const char* op) {
  c.positive(kh, fmt::format("{}.kernel_h", op));
  c.positive(kw, fmt::format("{}.kernel_w", op));
  c.positive(sh, fmt::format("{}.stride_h", op));
  c.positive(sw, fmt::format("{}.stride_w", op));
  c.require(ph < kh && pw < kw, fmt::format("{}.pad_h", op), "padding must be smaller than the kernel");
  c.require(in_shape.dims.size() == 3, "inputs",
            fmt::format("{} needs a C x H x W input, got shape {}", op, shape_str(in_shape)));
  const uint32_t oh = window_output_size(in_shape.dims[1], kh, sh, ph);
  const uint32_t ow = window_output_size(in_shape.dims[2], kw, sw, pw);
  c.require(oh > 0 && ow > 0, fmt::format("{}.kernel_h", op),
            fmt::format("window {}x{} does not fit input {}", kh, kw, shape_str(in_shape)));
  out_shape = Shape{{in_shape.dims[0], oh, ow}};
}

// 2^bits - 1 as a 128-bit integer (bits <= 16).
__extension__ typedef unsigned __int128 u128;  // exact bounds of 64-bit products
u128 max_code128(uint32_t bits) { return (static_cast<u128>(1) << bits) - 1; }

// Requires an integer product bound to stay below 2^53 (exact in float64, the reference's matmuls).
void require_exact53(u128 bound, const Checker& c, const std::string& field, const std::string& what) {
  c.require(bound < (static_cast<u128>(1) << 53), field,
            fmt::format("{} may reach {:.4g}, beyond the exact 2^53 range", what, static_cast<double>(bound)));
}

DigitalLayer convert_digital_layer(const pb::DigitalLayer& l, const Shape& in_shape, const Quant& in_quant,
                                   Shape& out_shape, const Checker& c, bool shape_only) {
  DigitalLayer out;
  switch (l.kind()) {
    case pb::DigitalLayer::KIND_CONV2D: out.is_conv = true; break;
    case pb::DigitalLayer::KIND_LINEAR: out.is_conv = false; break;
    default: c.fail("digital.kind", fmt::format("unknown layer kind {}", static_cast<int>(l.kind())));
  }
  out.in_channels = l.in_channels();
  out.out_channels = l.out_channels();
  c.positive(out.in_channels, "digital.in_channels");
  c.positive(out.out_channels, "digital.out_channels");
  out.groups = l.groups() == 0 ? 1 : l.groups();
  if (out.is_conv) {
    out.kernel_h = l.kernel_h(), out.kernel_w = l.kernel_w();
    out.stride_h = l.stride_h(), out.stride_w = l.stride_w();
    out.pad_h = l.pad_h(), out.pad_w = l.pad_w();
    c.positive(out.kernel_h, "digital.kernel_h");
    c.positive(out.kernel_w, "digital.kernel_w");
    c.positive(out.stride_h, "digital.stride_h");
    c.positive(out.stride_w, "digital.stride_w");
    c.require(out.in_channels % out.groups == 0 && out.out_channels % out.groups == 0, "digital.groups",
              fmt::format("{} groups must divide in_channels {} and out_channels {}", out.groups,
                          out.in_channels, out.out_channels));
    c.require(in_shape.dims.size() == 3, "inputs",
              fmt::format("a digital Conv2d needs a C x H x W input, got shape {}", shape_str(in_shape)));
    c.require(in_shape.dims[0] == out.in_channels, "digital.in_channels",
              fmt::format("{} does not match the input's {} channels", out.in_channels, in_shape.dims[0]));
    const uint32_t oh = window_output_size(in_shape.dims[1], out.kernel_h, out.stride_h, out.pad_h);
    const uint32_t ow = window_output_size(in_shape.dims[2], out.kernel_w, out.stride_w, out.pad_w);
    c.require(oh > 0 && ow > 0, "digital.kernel_h",
              fmt::format("kernel {}x{} does not fit input {} with padding {},{}", out.kernel_h, out.kernel_w,
                          shape_str(in_shape), out.pad_h, out.pad_w));
    out_shape = Shape{{out.out_channels, oh, ow}};
  } else {
    c.require(l.kernel_h() <= 1 && l.kernel_w() <= 1 && l.stride_h() <= 1 && l.stride_w() <= 1 &&
                  l.pad_h() == 0 && l.pad_w() == 0,
              "digital.kernel_h", "a Linear layer takes kernel and stride 0 or 1 and no padding");
    c.require(out.groups == 1, "digital.groups", fmt::format("a Linear layer takes 1 group, got {}", out.groups));
    c.require(in_shape.dims.size() == 1 || in_shape.dims.size() == 2, "inputs",
              fmt::format("a digital Linear layer needs a vector [N] or tokens [T, D] (add a Flatten or "
                          "to_tokens), got shape {}", shape_str(in_shape)));
    out.tokens = in_shape.dims.size() == 2;
    c.require(in_shape.dims.back() == out.in_channels, "digital.in_channels",
              fmt::format("{} does not match the input's {} features", out.in_channels, in_shape.dims.back()));
    out_shape = out.tokens ? Shape{{in_shape.dims[0], out.out_channels}} : Shape{{out.out_channels}};
  }
  out.weight_bits = l.weight_bits();
  c.bits(out.weight_bits, 2, kMaxBits, "digital.weight_bits");
  const uint64_t kg = uint64_t{out.in_channels / out.groups} * out.kernel_h * out.kernel_w;
  const uint64_t n_cols = out.out_channels;
  c.require(kg < (uint64_t{1} << 31), "digital.in_channels", "weight matrix has too many rows");
  require_exact53(static_cast<u128>(kg) * max_code128(in_quant.bits) *
                      (static_cast<u128>(1) << (out.weight_bits - 1)),
                  c, "digital.weight_bits", "the integer accumulator (K/groups x input codes x weights)");
  if (shape_only) {
    c.require(l.weights_size() == 0 && l.weight_scale_size() == 0 && l.bias_size() == 0, "digital.weights",
              "a shape_only graph carries no weights, scales or biases");
  } else {
    c.require(static_cast<uint64_t>(l.weights_size()) == kg * n_cols, "digital.weights",
              fmt::format("expected N*(K/groups) = {}*{} = {} values, got {}", n_cols, kg, kg * n_cols,
                          l.weights_size()));
    c.require(l.weight_scale_size() == 1 || static_cast<uint64_t>(l.weight_scale_size()) == n_cols,
              "digital.weight_scale",
              fmt::format("expected 1 (per tensor) or {} (per column) values, got {}", n_cols,
                          l.weight_scale_size()));
  }
  const int32_t w_min = -(int32_t{1} << (out.weight_bits - 1));
  const int32_t w_max = (int32_t{1} << (out.weight_bits - 1)) - 1;
  out.weights.assign(l.weights().begin(), l.weights().end());
  for (size_t i = 0; i < out.weights.size(); ++i)
    if (out.weights[i] < w_min || out.weights[i] > w_max)
      c.fail(fmt::format("digital.weights[{}]", i),
             fmt::format("value {} outside [{}, {}] for {}-bit weights", out.weights[i], w_min, w_max,
                         out.weight_bits));
  out.weight_scale.assign(n_cols, 1.0);
  for (uint64_t n = 0; n < n_cols && !shape_only; ++n) {
    out.weight_scale[n] = l.weight_scale(l.weight_scale_size() == 1 ? 0 : static_cast<int>(n));
    c.finite_positive(out.weight_scale[n], fmt::format("digital.weight_scale[{}]", n));
  }
  c.require(l.bias_size() == 0 || static_cast<uint64_t>(l.bias_size()) == n_cols, "digital.bias",
            fmt::format("expected 0 or {} values, got {}", n_cols, l.bias_size()));
  out.bias.assign(n_cols, 0.0);
  for (int n = 0; n < l.bias_size(); ++n) {
    out.bias[static_cast<size_t>(n)] = l.bias(n);
    c.finite(l.bias(n), fmt::format("digital.bias[{}]", n));
  }
  out.activation = convert_activation(l.activation(), c, "digital.activation");
  return out;
}

// The digital-unit operations added for depthwise / digital layers, Inception and transformers.
Op convert_digital_op(const pb::Node& pn, const Graph& g, const Node& node, Shape& computed, const Checker& c,
                      bool shape_only) {
  const Shape& in_shape = g.tensor_shape(node.inputs[0]);
  const Quant& in_quant = g.tensor_quant(node.inputs[0]);
  const Quant& out_quant = node.output_quant;
  const size_t rank = in_shape.dims.size();
  switch (pn.op_case()) {
    case pb::Node::kDigital:
      return convert_digital_layer(pn.digital(), in_shape, in_quant, computed, c, shape_only);
    case pb::Node::kGlobalAvgPool:
      c.require(rank == 3 || rank == 2, "inputs",
                fmt::format("global_avg_pool needs C x H x W or tokens [T, D], got shape {}", shape_str(in_shape)));
      computed = Shape{{rank == 3 ? in_shape.dims[0] : in_shape.dims[1]}};
      return GlobalAvgPool{};
    case pb::Node::kConcat: {
      uint64_t first = 0;
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        const Shape& s = g.tensor_shape(node.inputs[k]);
        const bool same_rest = s.dims.size() == rank &&
                               std::equal(s.dims.begin() + 1, s.dims.end(), in_shape.dims.begin() + 1);
        c.require(same_rest, fmt::format("inputs[{}]", k),
                  fmt::format("concat needs shapes that differ only in the first dimension, got {} and {}",
                              shape_str(in_shape), shape_str(s)));
        first += s.dims[0];
      }
      c.require(first < (uint64_t{1} << 31), "inputs", "concatenated dimension too large");
      computed = in_shape;
      computed.dims[0] = static_cast<uint32_t>(first);
      return Concat{};
    }
    case pb::Node::kToTokens: {
      const auto& t = pn.to_tokens();
      c.positive(t.patch_h(), "to_tokens.patch_h");
      c.positive(t.patch_w(), "to_tokens.patch_w");
      c.require(rank == 3, "inputs", fmt::format("to_tokens needs a C x H x W input, got shape {}", shape_str(in_shape)));
      c.require(in_shape.dims[1] % t.patch_h() == 0 && in_shape.dims[2] % t.patch_w() == 0, "to_tokens.patch_h",
                fmt::format("patch {}x{} must divide the input's H x W {}x{}", t.patch_h(), t.patch_w(),
                            in_shape.dims[1], in_shape.dims[2]));
      c.require(out_quant == in_quant, "output_quant", "to_tokens moves codes: its output quant must equal its input's");
      computed = Shape{{(in_shape.dims[1] / t.patch_h()) * (in_shape.dims[2] / t.patch_w()),
                        in_shape.dims[0] * t.patch_h() * t.patch_w()}};
      return ToTokens{t.patch_h(), t.patch_w()};
    }
    case pb::Node::kAttentionScores: {
      const auto& a = pn.attention_scores();
      const Shape& k_shape = g.tensor_shape(node.inputs[1]);
      c.require(rank == 2, "inputs[0]", fmt::format("attention_scores needs Q as tokens [T, D], got shape {}", shape_str(in_shape)));
      c.require(k_shape.dims.size() == 2 && k_shape.dims[1] == in_shape.dims[1], "inputs[1]",
                fmt::format("attention_scores needs K as tokens [T2, {}], got shape {}", in_shape.dims[1],
                            shape_str(k_shape)));
      c.positive(a.heads(), "attention_scores.heads");
      c.require(in_shape.dims[1] % a.heads() == 0, "attention_scores.heads",
                fmt::format("{} heads must divide the {} features", a.heads(), in_shape.dims[1]));
      c.finite_positive(a.scale(), "attention_scores.scale");
      const uint32_t dh = in_shape.dims[1] / a.heads();
      require_exact53(static_cast<u128>(dh) * max_code128(in_quant.bits) *
                          max_code128(g.tensor_quant(node.inputs[1]).bits),
                      c, "inputs", "the score accumulator (head size x Q codes x K codes)");
      computed = Shape{{a.heads(), in_shape.dims[0], k_shape.dims[0]}};
      return AttentionScores{a.heads(), a.scale()};
    }
    case pb::Node::kSoftmax: {
      const auto& sm = pn.softmax();
      c.require(rank >= 1, "inputs", "softmax needs a non-empty shape");
      const uint64_t entries = uint64_t{1} << in_quant.bits;
      computed = in_shape;
      if (shape_only) {
        c.require(sm.exp_table_size() == 0, "softmax.exp_table", "a shape_only graph carries no tables");
        return Softmax{};
      }
      c.require(static_cast<uint64_t>(sm.exp_table_size()) == entries, "softmax.exp_table",
                fmt::format("expected 2^{} = {} entries (one per input code difference), got {}", in_quant.bits,
                            entries, sm.exp_table_size()));
      Softmax out;
      out.exp_table.assign(sm.exp_table().begin(), sm.exp_table().end());
      int64_t largest = 0;
      for (size_t i = 0; i < out.exp_table.size(); ++i) {
        c.require(out.exp_table[i] >= 0 && out.exp_table[i] < (int64_t{1} << 31),
                  fmt::format("softmax.exp_table[{}]", i), fmt::format("must be in [0, 2^31), got {}", out.exp_table[i]));
        largest = std::max(largest, out.exp_table[i]);
      }
      c.require(out.exp_table[0] > 0, "softmax.exp_table[0]", "must be > 0 (the row maximum's weight)");
      require_exact53(static_cast<u128>(in_shape.dims.back()) * static_cast<uint64_t>(largest), c,
                      "softmax.exp_table", "the row sum (row length x largest entry)");
      return out;
    }
    case pb::Node::kAttentionContext: {
      const Shape& v_shape = g.tensor_shape(node.inputs[1]);
      c.require(rank == 3, "inputs[0]",
                fmt::format("attention_context needs P as [heads, T, T2], got shape {}", shape_str(in_shape)));
      c.require(v_shape.dims.size() == 2 && v_shape.dims[0] == in_shape.dims[2], "inputs[1]",
                fmt::format("attention_context needs V as tokens [{}, D], got shape {}", in_shape.dims[2],
                            shape_str(v_shape)));
      c.require(v_shape.dims[1] % in_shape.dims[0] == 0, "inputs[1]",
                fmt::format("the {} heads of P must divide V's {} features", in_shape.dims[0], v_shape.dims[1]));
      require_exact53(static_cast<u128>(in_shape.dims[2]) * max_code128(in_quant.bits) *
                          max_code128(g.tensor_quant(node.inputs[1]).bits),
                      c, "inputs", "the context accumulator (T2 x P codes x V codes)");
      computed = Shape{{in_shape.dims[1], v_shape.dims[1]}};
      return AttentionContext{in_shape.dims[0]};
    }
    case pb::Node::kLayerNorm: {
      const auto& ln = pn.layer_norm();
      c.require(rank >= 1, "inputs", "layer_norm needs a non-empty shape");
      const uint64_t d = in_shape.dims.back();
      // V*D <= D^4 (2^b - 1)^2; V*D + eps_int must stay below 2^62 (docs/SEMANTICS.md).
      const u128 d2 = static_cast<u128>(d) * d;
      const u128 bound = d2 * d2 * max_code128(in_quant.bits) * max_code128(in_quant.bits) +
                                      ln.eps_int();
      c.require(d <= (uint64_t{1} << 20) && bound < (static_cast<u128>(1) << 62), "layer_norm",
                fmt::format("D^4 (2^{} - 1)^2 + eps_int must be < 2^62 for exact int64 statistics "
                            "(D = {}): use fewer input bits or a smaller eps_int", in_quant.bits, d));
      computed = in_shape;
      LayerNorm out;
      out.eps_int = ln.eps_int();
      if (shape_only) {
        c.require(ln.gamma_size() == 0 && ln.beta_size() == 0, "layer_norm.gamma",
                  "a shape_only graph carries no gamma / beta");
        return out;
      }
      c.require(static_cast<uint64_t>(ln.gamma_size()) == d, "layer_norm.gamma",
                fmt::format("expected {} values (the last dimension), got {}", d, ln.gamma_size()));
      c.require(static_cast<uint64_t>(ln.beta_size()) == d, "layer_norm.beta",
                fmt::format("expected {} values (the last dimension), got {}", d, ln.beta_size()));
      out.gamma.assign(ln.gamma().begin(), ln.gamma().end());
      out.beta.assign(ln.beta().begin(), ln.beta().end());
      for (size_t i = 0; i < d; ++i) {
        c.finite(out.gamma[i], fmt::format("layer_norm.gamma[{}]", i));
        c.finite(out.beta[i], fmt::format("layer_norm.beta[{}]", i));
      }
      return out;
    }
    case pb::Node::kLut: {
      const auto& lt = pn.lut();
      c.require(!out_quant.is_float(), "output_quant.bits", "a lut outputs codes: bits must be 1..16");
      c.require(!has_control_chars(lt.function()), "lut.function", "must not contain control characters");
      computed = in_shape;
      Lut out;
      out.function = lt.function();
      if (shape_only) {
        c.require(lt.table_size() == 0, "lut.table", "a shape_only graph carries no tables");
        return out;
      }
      const uint64_t entries = uint64_t{1} << in_quant.bits;
      c.require(static_cast<uint64_t>(lt.table_size()) == entries, "lut.table",
                fmt::format("expected 2^{} = {} entries (one per input code), got {}", in_quant.bits, entries,
                            lt.table_size()));
      out.table.assign(lt.table().begin(), lt.table().end());
      for (size_t i = 0; i < out.table.size(); ++i)
        c.require(out.table[i] >= 0 && out.table[i] <= out_quant.max_code(), fmt::format("lut.table[{}]", i),
                  fmt::format("must be an output code in [0, {}], got {}", out_quant.max_code(), out.table[i]));
      return out;
    }
    case pb::Node::kAddConstant: {
      const auto& ac = pn.add_constant();
      computed = in_shape;
      AddConstant out;
      out.activation = convert_activation(ac.activation(), c, "add_constant.activation");
      if (shape_only) {
        c.require(ac.values_size() == 0, "add_constant.values", "a shape_only graph carries no values");
        return out;
      }
      c.require(static_cast<uint64_t>(ac.values_size()) == in_shape.elements(), "add_constant.values",
                fmt::format("expected {} values (one per input element of shape {}), got {}", in_shape.elements(),
                            shape_str(in_shape), ac.values_size()));
      out.values.assign(ac.values().begin(), ac.values().end());
      for (size_t i = 0; i < out.values.size(); ++i) c.finite(out.values[i], fmt::format("add_constant.values[{}]", i));
      return out;
    }
    default: break;
  }
  c.fail("op", "not a digital-unit operation");
}

Graph convert_graph(const pb::Graph& g, const std::string& source) {
  Checker c(source);
  Graph out;
  out.source_file = source;
  c.require(g.format_version() == kFormatVersion, "format_version",
            fmt::format("unsupported graph format version {} (this imcsim reads version {})",
                        g.format_version(), kFormatVersion));
  out.name = g.name();
  out.shape_only = g.shape_only();
  const auto& p = g.provenance();
  out.provenance = Provenance{p.exporter(), p.command(), p.method(), p.method_settings_json(),
                              p.dataset(), p.created_utc(), p.torch_version(), p.seed(),
                              p.float_accuracy(), p.fake_quant_accuracy(), p.reference_accuracy(),
                              p.reference_images()};

  c.set_where("input");
  c.require(g.has_input(), "input", "missing (the graph's input specification)");
  const auto& in = g.input();
  out.input.tensor = in.tensor();
  c.require(!in.tensor().empty(), "tensor", "missing input tensor name");
  out.input.shape.dims.assign(in.shape().begin(), in.shape().end());
  c.require(out.input.shape.dims.size() == 3, "shape",
            fmt::format("expected C, H, W (3 values), got {}", out.input.shape.dims.size()));
  for (uint32_t d : out.input.shape.dims) c.positive(d, "shape");
  out.input.dataset_format = in.dataset_format();
  const char* expected_format = out.shape_only ? "none" : "idx-u8";
  c.require(in.dataset_format() == expected_format, "dataset_format",
            fmt::format("expected \"{}\"{}, got \"{}\"", expected_format,
                        out.shape_only ? " for a shape_only graph" : "", in.dataset_format()));
  out.input.pixel_scale = in.pixel_scale();
  out.input.mean = in.mean();
  out.input.std = in.std();
  c.finite_positive(in.pixel_scale(), "pixel_scale");
  c.finite(in.mean(), "mean");
  c.finite_positive(in.std(), "std");
  c.require(in.has_quant(), "quant", "missing");
  out.input.quant = convert_quant(in.quant(), c, "quant", false);

  c.set_where("");
  c.require(g.nodes_size() > 0, "nodes", "the graph has no nodes");
  std::unordered_map<std::string, int> tensor_ids{{out.input.tensor, -1}};
  std::set<std::string> node_names;
  for (int i = 0; i < g.nodes_size(); ++i) {
    const pb::Node& pn = g.nodes(i);
    c.set_node(i, pn.name());
    c.require(!pn.name().empty(), "name", "missing node name");
    c.require(!has_control_chars(pn.name()), "name", "node names must not contain control characters");
    c.require(node_names.insert(pn.name()).second, "name", "duplicate node name");
    Node node;
    node.name = pn.name();
    const bool is_last = i + 1 == g.nodes_size();
    for (const std::string& t : pn.inputs()) {
      auto it = tensor_ids.find(t);
      c.require(it != tensor_ids.end(), "inputs",
                fmt::format("tensor '{}' is not the graph input or an earlier node's output", t));
      node.inputs.push_back(it->second);
    }
    if (pn.op_case() == pb::Node::kConcat) {
      c.require(node.inputs.size() >= 2, "inputs",
                fmt::format("concat expects 2 or more input tensors, got {}", node.inputs.size()));
    } else {
      const size_t expected_inputs = (pn.op_case() == pb::Node::kAdd || pn.op_case() == pb::Node::kAttentionScores ||
                                      pn.op_case() == pb::Node::kAttentionContext) ? 2 : 1;
      c.require(node.inputs.size() == expected_inputs, "inputs",
                fmt::format("expected {} input tensor(s), got {}", expected_inputs, node.inputs.size()));
    }
    for (size_t k = 0; k < node.inputs.size(); ++k)
      c.require(!out.tensor_quant(node.inputs[k]).is_float(), fmt::format("inputs[{}]", k),
                "consumes a float (bits = 0) tensor");
    const Shape& in_shape = out.tensor_shape(node.inputs[0]);
    const Quant& in_quant = out.tensor_quant(node.inputs[0]);
    c.require(pn.has_output_quant(), "output_quant", "missing");
    node.output_quant = convert_quant(pn.output_quant(), c, "output_quant", is_last);
    Shape computed;
    switch (pn.op_case()) {
      case pb::Node::kImc:
        node.op = convert_imc(pn.imc(), in_shape, in_quant, computed, c, out.shape_only);
        break;
      case pb::Node::kMaxPool: {
        const auto& m = pn.max_pool();
        convert_window(m.kernel_h(), m.kernel_w(), m.stride_h(), m.stride_w(), m.pad_h(), m.pad_w(),
                       in_shape, computed, c, "max_pool");
        c.require(node.output_quant == in_quant, "output_quant",
                  "max_pool works on codes: its output quant must equal its input's");
        node.op = MaxPool{m.kernel_h(), m.kernel_w(), m.stride_h(), m.stride_w(), m.pad_h(), m.pad_w()};
        break;
      }
      case pb::Node::kAvgPool: {
        const auto& m = pn.avg_pool();
        convert_window(m.kernel_h(), m.kernel_w(), m.stride_h(), m.stride_w(), m.pad_h(), m.pad_w(),
                       in_shape, computed, c, "avg_pool");
        node.op = AvgPool{m.kernel_h(), m.kernel_w(), m.stride_h(), m.stride_w(), m.pad_h(), m.pad_w()};
        break;
      }
      case pb::Node::kAdd: {
        const Shape& other = out.tensor_shape(node.inputs[1]);
        c.require(other == in_shape, "inputs",
                  fmt::format("add needs equal shapes, got {} and {}", shape_str(in_shape), shape_str(other)));
        c.require(!out.tensor_quant(node.inputs[1]).is_float(), "inputs", "consumes a float tensor");
        computed = in_shape;
        node.op = Add{convert_activation(pn.add().activation(), c, "add.activation")};
        break;
      }
      case pb::Node::kFlatten:
        computed = Shape{{static_cast<uint32_t>(in_shape.elements())}};
        c.require(node.output_quant == in_quant, "output_quant",
                  "flatten must keep its input's quant");
        node.op = Flatten{};
        break;
      case pb::Node::kRelu:
        computed = in_shape;
        node.op = Relu{};
        break;
      case pb::Node::kDigital:
      case pb::Node::kGlobalAvgPool:
      case pb::Node::kConcat:
      case pb::Node::kToTokens:
      case pb::Node::kAttentionScores:
      case pb::Node::kSoftmax:
      case pb::Node::kAttentionContext:
      case pb::Node::kLayerNorm:
      case pb::Node::kLut:
      case pb::Node::kAddConstant:
        node.op = convert_digital_op(pn, out, node, computed, c, out.shape_only);
        break;
      default:
        c.fail("op", "missing or unknown operation (expected one of imc, max_pool, avg_pool, add, "
                     "flatten, relu, digital, global_avg_pool, concat, to_tokens, attention_scores, "
                     "softmax, attention_context, layer_norm, lut, add_constant)");
    }
    node.output_shape.dims.assign(pn.output_shape().begin(), pn.output_shape().end());
    c.require(node.output_shape == computed, "output_shape",
              fmt::format("expected {} from the op and its input, got {}", shape_str(computed),
                          shape_str(node.output_shape)));
    c.require(!pn.output().empty(), "output", "missing output tensor name");
    c.require(!has_control_chars(pn.output()), "output", "tensor names must not contain control characters");
    c.require(tensor_ids.emplace(pn.output(), i).second, "output",
              fmt::format("tensor name '{}' is already used", pn.output()));
    out.nodes.push_back(std::move(node));
  }

  c.set_where("");
  out.num_classes = g.num_classes();
  c.positive(out.num_classes, "num_classes");
  c.require(out.nodes.back().output_shape.elements() == out.num_classes, "num_classes",
            fmt::format("{} does not match the last node's {} outputs", out.num_classes,
                        out.nodes.back().output_shape.elements()));

  c.require(!out.shape_only || g.golden_size() == 0, "golden", "a shape_only graph has no golden pairs");
  for (int gi = 0; gi < g.golden_size(); ++gi) {
    const pb::GoldenPair& pg = g.golden(gi);
    c.set_where(fmt::format("golden[{}]", gi));
    GoldenPair gp;
    gp.dataset_index = pg.dataset_index();
    gp.label = pg.label();
    gp.predicted_class = pg.predicted_class();
    c.require(static_cast<uint64_t>(pg.input_codes_size()) == out.input.shape.elements(),
              "input_codes", fmt::format("expected {} values, got {}", out.input.shape.elements(),
                                         pg.input_codes_size()));
    for (uint32_t v : pg.input_codes()) {
      c.require(v <= static_cast<uint32_t>(out.input.quant.max_code()), "input_codes",
                fmt::format("code {} exceeds {}", v, out.input.quant.max_code()));
      gp.input_codes.push_back(static_cast<int32_t>(v));
    }
    c.require(pg.nodes_size() == static_cast<int>(out.nodes.size()), "nodes",
              fmt::format("expected one entry per node ({}), got {}", out.nodes.size(), pg.nodes_size()));
    for (int ni = 0; ni < pg.nodes_size(); ++ni) {
      const pb::NodeGolden& pn = pg.nodes(ni);
      c.require(pn.node() == out.nodes[static_cast<size_t>(ni)].name, fmt::format("nodes[{}].node", ni),
                fmt::format("expected '{}', got '{}'", out.nodes[static_cast<size_t>(ni)].name, pn.node()));
      NodeGolden ng;
      ng.node = pn.node();
      ng.output_codes.assign(pn.output_codes().begin(), pn.output_codes().end());
      ng.psum_count = pn.psum_count();
      ng.psum_digest = pn.psum_digest();
      ng.adc_code_digest = pn.adc_code_digest();
      ng.acc_digest = pn.acc_digest();
      ng.psums_position0.assign(pn.psums_position0().begin(), pn.psums_position0().end());
      ng.adc_codes_position0.assign(pn.adc_codes_position0().begin(), pn.adc_codes_position0().end());
      ng.acc_position0.assign(pn.acc_position0().begin(), pn.acc_position0().end());
      gp.nodes.push_back(std::move(ng));
    }
    gp.logits.assign(pg.logits().begin(), pg.logits().end());
    c.require(gp.logits.size() == out.num_classes, "logits",
              fmt::format("expected {} values, got {}", out.num_classes, gp.logits.size()));
    out.golden.push_back(std::move(gp));
  }
  return out;
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw GraphError(fmt::format("{}: cannot open graph file", file.string()));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool is_text_name(const std::filesystem::path& file) {
  const std::string ext = file.extension().string();
  return ext == ".txt" || ext == ".pbtxt" || ext == ".textproto";
}

}  // namespace

uint32_t window_output_size(uint32_t in, uint32_t kernel, uint32_t stride, uint32_t pad) {
  const uint64_t padded = uint64_t{in} + 2ull * pad;
  if (kernel == 0 || stride == 0 || padded < kernel) return 0;
  return static_cast<uint32_t>((padded - kernel) / stride + 1);
}

Graph parse_graph_text(const std::string& text, const std::string& source_name) {
  pb::Graph g;
  google::protobuf::TextFormat::Parser parser;
  // Collect the parser's message instead of letting protobuf log it to stderr.
  struct Collector : google::protobuf::io::ErrorCollector {
    std::string first;
    void AddError(int line, int column, const std::string& message) override {
      if (first.empty()) first = fmt::format("line {}:{}: {}", line + 1, column + 1, message);
    }
  } collector;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFromString(text, &g))
    throw GraphError(fmt::format("{}: not a valid imcsim text graph: {}", source_name, collector.first));
  return convert_graph(g, source_name);
}

Graph load_graph(const std::filesystem::path& file) {
  const std::string name = file.string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw GraphError(fmt::format("{}: graph file not found", name));
  const std::string bytes = read_file(file);
  if (is_text_name(file)) return parse_graph_text(bytes, name);

  const std::string_view body = unwrap_container(bytes, name);
  pb::Graph g;
  if (!g.ParseFromArray(body.data(), static_cast<int>(body.size())))
    throw GraphError(fmt::format("{}: corrupt file: protobuf payload does not parse", name));
  return convert_graph(g, name);
}

const char* op_name(const Op& op) {
  struct Visitor {
    const char* operator()(const ImcLayer& l) const { return l.is_conv ? "conv2d" : "linear"; }
    const char* operator()(const MaxPool&) const { return "max_pool"; }
    const char* operator()(const AvgPool&) const { return "avg_pool"; }
    const char* operator()(const Add&) const { return "add"; }
    const char* operator()(const Flatten&) const { return "flatten"; }
    const char* operator()(const Relu&) const { return "relu"; }
    const char* operator()(const DigitalLayer& l) const {
      return l.is_conv ? (l.groups > 1 ? "digital_conv2d_grouped" : "digital_conv2d") : "digital_linear";
    }
    const char* operator()(const GlobalAvgPool&) const { return "global_avg_pool"; }
    const char* operator()(const Concat&) const { return "concat"; }
    const char* operator()(const ToTokens&) const { return "to_tokens"; }
    const char* operator()(const AttentionScores&) const { return "attention_scores"; }
    const char* operator()(const Softmax&) const { return "softmax"; }
    const char* operator()(const AttentionContext&) const { return "attention_context"; }
    const char* operator()(const LayerNorm&) const { return "layer_norm"; }
    const char* operator()(const Lut&) const { return "lut"; }
    const char* operator()(const AddConstant&) const { return "add_constant"; }
  };
  return std::visit(Visitor{}, op);
}

}  // namespace imcsim::graph
