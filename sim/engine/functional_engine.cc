#include "sim/engine/functional_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "models/adc/adc.h"
#include "models/crossbar/crossbar.h"
#include "models/crossbar/noise_kernel.h"
#include "models/crossbar/nonideal.h"
#include "models/crossbar/slicing.h"
#include "sim/engine/digital_nodes.h"

namespace imcsim::engine {

using graph::Activation;
using graph::Graph;
using graph::ImcLayer;
using graph::Node;

void ImcNodeCounters::merge(const ImcNodeCounters& o) {
  images += o.images;
  row_drives += o.row_drives;
  adc_conversions += o.adc_conversions;
  adc_saturations += o.adc_saturations;
  psum_min = std::min(psum_min, o.psum_min);
  psum_max = std::max(psum_max, o.psum_max);
}

void EngineCounters::merge(const EngineCounters& o) {
  if (per_node.size() < o.per_node.size()) per_node.resize(o.per_node.size());
  for (size_t i = 0; i < o.per_node.size(); ++i) per_node[i].merge(o.per_node[i]);
}

namespace {

constexpr size_t kMaxLutEntries = size_t{1} << 22;  // ADC lookup tables up to 32 MiB per layer

// An ADC lookup table packed for the fused kernel: value_fx * 2 + saturated; empty if a value
// does not fit in 62 bits.
std::vector<int64_t> pack_adc_lut(const std::vector<int64_t>& value, const std::vector<uint8_t>& saturated) {
  std::vector<int64_t> packed(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] >= (int64_t{1} << 61) || value[i] < -(int64_t{1} << 61)) return {};
    packed[i] = value[i] * 2 + saturated[i];
  }
  return packed;
}

// The same as int32 for the native nibble kernel; empty if a value needs more than 30 bits.
// max_abs: the largest |value|.
std::vector<int32_t> pack_adc_lut32(const std::vector<int64_t>& value, const std::vector<uint8_t>& saturated,
                                    int64_t& max_abs) {
  std::vector<int32_t> packed(value.size());
  max_abs = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] >= (int64_t{1} << 29) || value[i] < -(int64_t{1} << 29)) return {};
    max_abs = std::max(max_abs, value[i] < 0 ? -value[i] : value[i]);
    packed[i] = static_cast<int32_t>(value[i] * 2 + saturated[i]);
  }
  return packed;
}

// Output (real) value to the node's representation: codes, or kept as float.
inline double relu_if(double y, Activation a) { return a == Activation::kRelu ? std::max(y, 0.0) : y; }

}  // namespace

// Everything about one IMC layer that does not depend on the input, prepared once.
struct FunctionalEngine::ImcPlan {
  const ImcLayer* layer = nullptr;
  kernels::ProgrammedCrossbar crossbar;
  std::vector<kernels::InputGroup> groups;
  uint32_t input_bits = 0;
  int32_t input_zero_point = 0;
  uint32_t in_h = 1, in_w = 1, out_h = 1, out_w = 1;
  uint32_t positions = 1;
  // im2col (docs/fast_kernels.md): the layer input, A-shifted and surrounded by its padding
  // (value zero_point - a), is a [C][Hp][Wp] array; row k of position pos reads element
  // pos_base[pos] + row_offset[k] of it (a vector / token layer: the input as is, Hp = Wp = 1).
  uint32_t pad_c = 1, pad_hp = 1, pad_wp = 1;
  std::vector<int32_t> row_offset;      // [K]
  std::vector<int32_t> pos_base;        // [P]
  // The same as a table for the per-position paths (traces, observers, non-idealities): built on
  // first use by ensure_gather(). [P][K]: input element index, or -1 for padding.
  mutable std::vector<int32_t> gather;
  mutable std::once_flag gather_once;
  std::vector<int64_t> shift_weight;    // [S][T]
  std::vector<int64_t> column_correction_fx;  // [N]: 2^F (a - z) sum_k W[k][n]
  int64_t offset_correction_fx = 0;     // 2^F 2^(Bw-1) (OFFSET only), times sum_k x'[k]
  std::vector<double> multiplier;       // [N]: ((s_x s_w) ps) 2^-F
  // ADC lookup: value_fx and saturation flag for p in [lut_min, lut_min + lut_size).
  bool use_lut = false;
  int64_t lut_min = 0;
  size_t lut_size = 0;
  std::vector<int64_t> lut_value;
  std::vector<uint8_t> lut_saturated;

  // Non-idealities (docs/SEMANTICS.md step 5); null / unused when none is active.
  struct Nonideal {
    std::unique_ptr<kernels::NonidealCrossbar> crossbar;  // cells with faults / variation
    std::optional<kernels::TransferCurve> curve;
    std::optional<kernels::AnalogAdc> adc;
    double noise_sigma = 0;
    bool clamp = true;       // false when |curve(x) + noise| <= 2^46 always (the clamp is a no-op)
    bool fx32 = false;       // fixed-point cells whose partial sums fit 32 bits
    uint64_t noise_key = 0;  // H(seed, 1, node); extended by the image index
    std::vector<int64_t> noise_table;  // noise_fx as a function of the Irwin-Hall sum S (noise only)
    kernels::KernelPath noise_path = kernels::KernelPath::kPortable;  // of the noise sums (native: AVX2)
    std::unique_ptr<kernels::NoiseMvmKernel> noise_kernel;  // fused noise kernel (null: not applicable)
    // ADC noise on the nibble kernel's affine path (preferred over noise_kernel): the form of u
    // and the ADC table over u in arithmetic form (docs/fast_kernels.md "ADC noise").
    std::optional<kernels::AffineNoiseForm> noise_form;
    std::optional<kernels::AffineAdc> noise_affine;
    size_t noise_lut_size = 0;
    static kernels::PackedAdcLut noise_lut(const kernels::AffineAdc* affine, size_t size, kernels::AdcGranularity g) {
      return kernels::PackedAdcLut{nullptr, 0, size, g, nullptr, 0, affine};
    }
    // Integer cells and no noise: value_fx and saturation of every partial sum in
    // [lut_min, lut_min + lut_size) per parameter set, through the curve and the analog ADC.
    bool use_lut = false;
    int64_t lut_min = 0;
    size_t lut_size = 0;
    std::vector<int64_t> lut_value;
    std::vector<uint8_t> lut_saturated;
    std::vector<int64_t> fast_lut;  // the same table packed for the fused kernel (empty: none)
    std::vector<int32_t> fast_lut32;  // and as int32 (empty if a value needs more than 30 bits)
    int64_t fast_lut_max = 0;         // largest |value_fx|
    std::optional<kernels::AffineAdc> fast_affine;  // its arithmetic form, if it has one
  };
  std::unique_ptr<Nonideal> nonideal;

  // Fast kernels (docs/fast_kernels.md): bit planes of the integer cells (null on the reference
  // path or with fixed-point cells) and the ADC table packed as value_fx * 2 + saturated (empty:
  // no fused kernel).
  std::unique_ptr<kernels::BitPlaneCrossbar> fast;
  std::vector<int64_t> fast_lut;
  std::vector<int32_t> fast_lut32;
  int64_t fast_lut_max = 0;
  std::optional<kernels::AffineAdc> fast_affine;  // the table's arithmetic form, if it has one

  ImcPlan(const ImcLayer& l, kernels::ProgrammedCrossbar xbar) : layer(&l), crossbar(std::move(xbar)) {}

  size_t padded_elements() const { return size_t{pad_c} * pad_hp * pad_wp; }
  // The padded, A-shifted input of one image (docs/fast_kernels.md "im2col"): `buffer` is
  // resized and filled; returns it, or `in` itself when no copy is needed (no padding, no A-shift).
  const int32_t* padded_input(std::span<const int32_t> in, std::vector<int32_t>& buffer) const {
    const int32_t a = static_cast<int32_t>(layer->ashift_offset);
    if (!layer->is_conv) {
      if (a == 0) return in.data();
      buffer.resize(in.size());
      for (size_t e = 0; e < in.size(); ++e) buffer[e] = in[e] - a;
      return buffer.data();
    }
    const uint32_t ph = layer->pad_h, pw = layer->pad_w;
    if (a == 0 && pad_hp == in_h && pad_wp == in_w) return in.data();
    buffer.assign(padded_elements(), input_zero_point - a);
    for (uint32_t c = 0; c < pad_c; ++c)
      for (uint32_t y = 0; y < in_h; ++y) {
        const int32_t* src = in.data() + (size_t{c} * in_h + y) * in_w;
        int32_t* dst = buffer.data() + (size_t{c} * pad_hp + y + ph) * pad_wp + pw;
        for (uint32_t x = 0; x < in_w; ++x) dst[x] = src[x] - a;
      }
    return buffer.data();
  }

  // Builds `gather` (once, thread-safe) from row_offset / pos_base.
  void ensure_gather() const {
    std::call_once(gather_once, [this] {
      const size_t K = row_offset.size();
      gather.resize(size_t{positions} * K);
      const int64_t plane = int64_t{pad_hp} * pad_wp;
      for (uint32_t pos = 0; pos < positions; ++pos)
        for (size_t k = 0; k < K; ++k) {
          const int64_t e = int64_t{pos_base[pos]} + row_offset[k];
          int32_t idx = static_cast<int32_t>(e);
          if (layer->is_conv) {
            const int64_t c = e / plane, y = (e % plane) / pad_wp - layer->pad_h, x = e % pad_wp - layer->pad_w;
            idx = y >= 0 && y < in_h && x >= 0 && x < in_w ? static_cast<int32_t>((c * in_h + y) * in_w + x) : -1;
          }
          gather[pos * K + k] = idx;
        }
    });
  }

  bool saturated(uint64_t set, int64_t p) const {
    return layer->adc.kind == kernels::AdcKind::kLinear && kernels::linear_saturates(layer->adc, set, p);
  }
};

FunctionalEngine::FunctionalEngine(const Graph& graph, const kernels::NonidealSpec& nonideal, uint64_t seed,
                                   std::optional<kernels::KernelPath> kernel)
    : graph_(graph), nonideal_(nonideal), seed_(seed), kernel_(kernels::select_kernel_path(kernel)) {
  if (const std::string problem = kernels::validate_nonideal_spec(nonideal); !problem.empty())
    throw std::invalid_argument("non-idealities: " + problem);
  if (graph.shape_only)
    throw std::invalid_argument(graph.source_file + ": a shape_only graph has no weights: it can only be "
                                "timed (imcsim run --timing-only), not run on data");
  plans_.resize(graph.nodes.size());
  // Plan of IMC node i (independent of every other node's).
  auto build = [&](size_t i) {
    const Node& node = graph.nodes[i];
    const auto* l = std::get_if<ImcLayer>(&node.op);
    if (!l) return;
    const uint32_t K = l->rows_k(), N = l->cols_n();
    const uint32_t taps = l->kernel_h * l->kernel_w;
    auto tiles = l->row_tiling == graph::RowTilingRule::kContiguous
                     ? kernels::contiguous_row_tiles(K, l->array_rows)
                     : kernels::channel_aligned_row_tiles(l->in_channels, taps, l->array_rows);
    auto plan = std::make_unique<ImcPlan>(
        *l, kernels::ProgrammedCrossbar(l->weights, K, N, l->weight_bits, l->cell_bits,
                                        l->encoding, std::move(tiles)));
    const graph::Quant& in_q = graph.tensor_quant(node.inputs[0]);
    const graph::Shape& in_shape = graph.tensor_shape(node.inputs[0]);
    plan->input_bits = in_q.bits;
    plan->input_zero_point = in_q.zero_point;
    plan->groups = kernels::input_groups(in_q.bits, l->dac_bits, l->ashift_offset != 0);
    const auto& slices = plan->crossbar.slices();
    const size_t S = slices.size(), T = plan->groups.size();

    // im2col gather table.
    if (l->is_conv) {
      plan->in_h = in_shape.dims[1], plan->in_w = in_shape.dims[2];
      plan->out_h = node.output_shape.dims[1], plan->out_w = node.output_shape.dims[2];
    } else if (l->tokens) {
      plan->out_h = in_shape.dims[0];  // one position per token
    }
    plan->positions = plan->out_h * plan->out_w;
    plan->row_offset.resize(K);
    plan->pos_base.resize(plan->positions);
    if (l->is_conv) {
      // Padded extent: the input plus its padding, and every window.
      plan->pad_c = l->in_channels;
      plan->pad_hp = std::max(l->pad_h + plan->in_h, (plan->out_h - 1) * l->stride_h + l->kernel_h);
      plan->pad_wp = std::max(l->pad_w + plan->in_w, (plan->out_w - 1) * l->stride_w + l->kernel_w);
      if (plan->padded_elements() > size_t{INT32_MAX})
        throw std::invalid_argument(fmt::format("node '{}': padded input of {} elements is too large", node.name,
                                                plan->padded_elements()));
      for (uint32_t c = 0; c < l->in_channels; ++c)
        for (uint32_t ky = 0; ky < l->kernel_h; ++ky)
          for (uint32_t kx = 0; kx < l->kernel_w; ++kx)
            plan->row_offset[(size_t{c} * l->kernel_h + ky) * l->kernel_w + kx] =
                static_cast<int32_t>((size_t{c} * plan->pad_hp + ky) * plan->pad_wp + kx);
      for (uint32_t oy = 0; oy < plan->out_h; ++oy)
        for (uint32_t ox = 0; ox < plan->out_w; ++ox)
          plan->pos_base[size_t{oy} * plan->out_w + ox] =
              static_cast<int32_t>(size_t{oy} * l->stride_h * plan->pad_wp + size_t{ox} * l->stride_w);
    } else {
      plan->pad_c = static_cast<uint32_t>(in_shape.elements());
      for (uint32_t k = 0; k < K; ++k) plan->row_offset[k] = static_cast<int32_t>(k / taps);
      for (uint32_t pos = 0; pos < plan->positions; ++pos)
        plan->pos_base[pos] = static_cast<int32_t>(size_t{pos} * l->in_channels);  // token pos (0 for a vector)
    }

    plan->shift_weight.resize(S * T);
    for (size_t s = 0; s < S; ++s)
      for (size_t t = 0; t < T; ++t)
        plan->shift_weight[s * T + t] = kernels::shift_add_weight(
            slices[s].sign, slices[s].bit_lo, plan->groups[t].sign, plan->groups[t].bit_lo);

    const int64_t frac_scale = int64_t{1} << l->adc.frac_bits;
    plan->column_correction_fx.resize(N);
    for (uint32_t n = 0; n < N; ++n) {
      int64_t colsum = 0;
      for (uint32_t k = 0; k < K; ++k) colsum += l->weights[size_t{n} * K + k];
      plan->column_correction_fx[n] =
          frac_scale * (int64_t{l->ashift_offset} - int64_t{in_q.zero_point}) * colsum;
    }
    if (l->encoding == kernels::WeightEncoding::kOffset)
      plan->offset_correction_fx = frac_scale * (int64_t{1} << (l->weight_bits - 1));
    plan->multiplier.resize(N);
    for (uint32_t n = 0; n < N; ++n)
      plan->multiplier[n] =
          ((in_q.scale * l->weight_scale[n]) * l->psum_scale[n]) * std::ldexp(1.0, -int(l->adc.frac_bits));

    // ADC lookup table over the reachable partial-sum range.
    uint32_t max_rows = 0, gbits = 0, sbits = 0;
    bool negative_cells = l->encoding == kernels::WeightEncoding::kDifferentialAnalog;
    for (const auto& t : plan->crossbar.tiles()) max_rows = std::max(max_rows, t.rows());
    for (const auto& g : plan->groups) gbits = std::max(gbits, g.nbits);
    for (const auto& s : slices) sbits = std::max(sbits, s.nbits);
    const int64_t bound = int64_t{max_rows} * ((int64_t{1} << gbits) - 1) * ((int64_t{1} << sbits) - 1);
    plan->lut_min = negative_cells ? -bound : 0;
    plan->lut_size = static_cast<size_t>(bound - plan->lut_min + 1);
    const uint64_t sets = kernels::AdcSpec::sets_for(l->adc.granularity, plan->crossbar.tiles().size(), S, N);
    if (plan->lut_size * sets <= kMaxLutEntries) {
      plan->use_lut = true;
      plan->lut_value.resize(plan->lut_size * sets);
      plan->lut_saturated.resize(plan->lut_size * sets);
      for (uint64_t set = 0; set < sets; ++set)
        for (size_t e = 0; e < plan->lut_size; ++e) {
          const int64_t p = plan->lut_min + static_cast<int64_t>(e);
          plan->lut_value[set * plan->lut_size + e] = kernels::adc_convert(l->adc, set, p).value_fx;
          plan->lut_saturated[set * plan->lut_size + e] = plan->saturated(set, p) ? 1 : 0;
        }
    }
    if (nonideal.active()) {
      auto ni = std::make_unique<ImcPlan::Nonideal>();
      ni->crossbar = std::make_unique<kernels::NonidealCrossbar>(plan->crossbar, l->weights, l->weight_bits,
                                                                 l->cell_bits, l->encoding, nonideal, seed, i);
      if (nonideal.transfer()) ni->curve.emplace(nonideal.transfer_curve);
      ni->adc.emplace(l->adc);
      ni->noise_sigma = nonideal.adc_noise_sigma_lsb;
      ni->noise_key = kernels::rng_key({seed, kernels::kStreamAdcNoise, i});
      if (nonideal.noise()) {
        // (the noise stream of a position counts two 32-bit outputs per conversion)
        if (uint64_t{plan->crossbar.tiles().size()} * S * T * N > (uint64_t{1} << 31))
          throw std::invalid_argument(fmt::format("node '{}': {} ADC conversions per output position exceed the "
                                                  "noise stream's 2^31 (docs/SEMANTICS.md step 5d)",
                                                  node.name, uint64_t{plan->crossbar.tiles().size()} * S * T * N));
        ni->noise_table = kernels::noise_table(nonideal.adc_noise_sigma_lsb);
      }
      ni->noise_path = kernel_;
      const int64_t pbound = ni->crossbar->psum_bound(static_cast<uint32_t>((1u << gbits) - 1));
      if (ni->crossbar->integer_cells() ? pbound >= INT32_MAX : pbound >= (int64_t{1} << 52))
        throw std::invalid_argument(fmt::format("node '{}': partial sums up to {} with stuck-at faults exceed the "
                                                "kernel's range", node.name, pbound));
      {
        const double x_max = static_cast<double>(pbound) * (ni->crossbar->integer_cells() ? 65536.0 : 1.0);
        const double noise_max = 6.0 * nonideal.adc_noise_sigma_lsb * 65536.0 + 1.0;
        ni->clamp = nonideal.transfer() || x_max + noise_max >= 0x1p45;
      }
      ni->fx32 = !ni->crossbar->integer_cells() && pbound < INT32_MAX;
      if (ni->crossbar->integer_cells() && !nonideal.noise()) {
        const int64_t lo = negative_cells ? -pbound : 0;
        const size_t size = static_cast<size_t>(pbound - lo + 1);
        if (size * sets <= kMaxLutEntries) {
          ni->use_lut = true;
          ni->lut_min = lo;
          ni->lut_size = size;
          ni->lut_value.resize(size * sets);
          ni->lut_saturated.resize(size * sets);
          for (uint64_t set = 0; set < sets; ++set)
            for (size_t e = 0; e < size; ++e) {
              int64_t a = (lo + static_cast<int64_t>(e)) * (int64_t{1} << kernels::kAnalogFracBits);
              if (ni->curve) a = ni->curve->apply(a);
              const auto r = kernels::adc_convert_analog(l->adc, set, a);
              ni->lut_value[set * size + e] = r.value_fx;
              ni->lut_saturated[set * size + e] = r.saturated ? 1 : 0;
            }
        }
      }
      plan->nonideal = std::move(ni);
    }
    if (kernel_ != kernels::KernelPath::kReference) {
      // Bit planes of the integer cells the layer computes with (the programmed chip's levels
      // under stuck-at faults); fixed-point cells (conductance variation) keep the reference path.
      const kernels::NonidealCrossbar* nx = plan->nonideal ? plan->nonideal->crossbar.get() : nullptr;
      if (!nx || nx->integer_cells()) {
        plan->fast = std::make_unique<kernels::BitPlaneCrossbar>(
            nx ? nx->levels() : plan->crossbar.cells(), K, N, slices, plan->crossbar.tiles(), plan->groups,
            plan->input_bits, kernel_);
        if (plan->nonideal) {
          // (Both tables cover every reachable partial sum, like the reference's lookups.)
          auto& ni = *plan->nonideal;
          if (nonideal.noise() && !nonideal.transfer()) {
            // ADC noise: the nibble kernel's affine path over u (AffineNoiseForm: the lattice form,
            // else the blocked one) where the table over u has the arithmetic form, else the
            // fused noise kernel (null where that does not apply).
            // The ADC table over u of `form` in arithmetic form (one parameter set at a time: a
            // COLUMN layer's sets need not fit one table); false if it has none.
            auto take_form = [&](const kernels::AffineNoiseForm& form) {
              auto affine = kernels::fit_affine_noise_adc(l->adc, sets, form);
              const size_t size = static_cast<size_t>(form.u_max + 1);
              if (!affine || !plan->fast->serves_affine_noise(ni.noise_lut(&*affine, size, l->adc.granularity), form))
                return false;
              ni.noise_form = form;
              ni.noise_affine = std::move(affine);
              ni.noise_lut_size = size;
              return true;
            };
            if (plan->fast->path() == kernels::KernelPath::kNative &&
                l->adc.granularity != kernels::AdcGranularity::kSliceTileColumn) {
              const int64_t fast_bound = plan->fast->psum_bound();
              const auto lattice = kernels::AffineNoiseForm::make(ni.noise_sigma, fast_bound, l->adc, sets);
              if (!(lattice && take_form(*lattice)))
                if (const auto blocked = kernels::AffineNoiseForm::make_blocked(ni.noise_sigma, fast_bound, l->adc, sets))
                  take_form(*blocked);
            }
            if (!ni.noise_affine)
              ni.noise_kernel = kernels::NoiseMvmKernel::make(ni.crossbar->levels(), K, N, slices,
                                                              plan->crossbar.tiles(), plan->groups, plan->input_bits,
                                                              l->adc, ni.noise_sigma, kernel_);
          }
          if (ni.use_lut) {
            ni.fast_lut = pack_adc_lut(ni.lut_value, ni.lut_saturated);
            ni.fast_lut32 = pack_adc_lut32(ni.lut_value, ni.lut_saturated, ni.fast_lut_max);
            if (!ni.fast_lut.empty() && plan->fast->path() == kernels::KernelPath::kNative)
              ni.fast_affine = kernels::fit_affine_adc(
                  kernels::PackedAdcLut{ni.fast_lut.data(), ni.lut_min, ni.lut_size, l->adc.granularity},
                  ni.lut_value.size() / ni.lut_size, plan->fast->psum_bound());
          }
        } else if (plan->use_lut) {
          plan->fast_lut = pack_adc_lut(plan->lut_value, plan->lut_saturated);
          plan->fast_lut32 = pack_adc_lut32(plan->lut_value, plan->lut_saturated, plan->fast_lut_max);
          if (!plan->fast_lut.empty() && plan->fast->path() == kernels::KernelPath::kNative)
            plan->fast_affine = kernels::fit_affine_adc(
                kernels::PackedAdcLut{plan->fast_lut.data(), plan->lut_min, plan->lut_size, l->adc.granularity},
                plan->lut_value.size() / plan->lut_size, plan->fast->psum_bound());
        }
      }
    }
    plans_[i] = std::move(plan);
  };
  // The layers' plans are built in parallel, largest first (each plan is a function of its node
  // only: the same result as in order); an error is reported for the first failing node in order.
  std::vector<size_t> order;
  double cells = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    if (const auto* l = std::get_if<ImcLayer>(&graph.nodes[i].op)) {
      order.push_back(i);
      cells += double(l->rows_k()) * l->cols_n();
    }
  auto size_of = [&](size_t i) {
    const auto& l = std::get<ImcLayer>(graph.nodes[i].op);
    return uint64_t{l.rows_k()} * l.cols_n();
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return size_of(a) > size_of(b); });
  const unsigned threads = cells < 1e5 ? 1u
                                       : std::min<unsigned>({std::max(1u, std::thread::hardware_concurrency()), 8u,
                                                             static_cast<unsigned>(order.size())});
  if (threads <= 1) {
    for (size_t i = 0; i < graph.nodes.size(); ++i) build(i);
    return;
  }
  std::vector<std::exception_ptr> errors(graph.nodes.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w)
    pool.emplace_back([&] {
      for (size_t j; (j = next.fetch_add(1)) < order.size();) {
        try {
          build(order[j]);
        } catch (...) {
          errors[order[j]] = std::current_exception();
        }
      }
    });
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

FunctionalEngine::~FunctionalEngine() = default;

const kernels::NonidealCrossbar* FunctionalEngine::nonideal_crossbar(size_t node_index) const {
  const ImcPlan* p = plans_.at(node_index).get();
  return p && p->nonideal ? p->nonideal->crossbar.get() : nullptr;
}

const char* FunctionalEngine::layer_kernel(size_t node_index) const {
  const ImcPlan* p = plans_.at(node_index).get();
  if (!p) return "";
  if (!p->nonideal) return p->fast && !p->fast_lut.empty() ? "fused" : "row-loop";
  const auto& ni = *p->nonideal;
  if (p->fast && !ni.fast_lut.empty()) return "fused";
  if (p->fast && ni.noise_affine) return "fused-noise-affine";
  return ni.noise_kernel ? "fused-noise" : "row-loop";
}

FunctionalEngine::ImcShape FunctionalEngine::imc_shape(size_t node_index) const {
  const ImcPlan* p = plans_.at(node_index).get();
  if (!p) return {};
  return {p->positions, static_cast<uint32_t>(p->crossbar.tiles().size()),
          static_cast<uint32_t>(p->crossbar.slices().size()), static_cast<uint32_t>(p->groups.size()),
          p->crossbar.k_rows(), p->crossbar.n_cols()};
}

namespace {

// Splits output positions [0, P) into `threads` contiguous ranges and runs work(w, begin, end)
// for each (on the calling thread when there is one). Results must not depend on the split.
void for_position_ranges(unsigned threads, uint32_t P, const std::function<void(unsigned, uint32_t, uint32_t)>& work) {
  const uint32_t per_thread = (P + threads - 1) / threads;
  auto range = [&](unsigned w) {
    const uint32_t begin = std::min(P, w * per_thread), end = std::min(P, begin + per_thread);
    work(w, begin, end);
  };
  if (threads <= 1) return range(0);
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w) pool.emplace_back(range, w);
  for (auto& t : pool) t.join();
}

// One layer's event counts from its threads' shares.
void add_layer_counters(ImcNodeCounters* counters, const std::vector<kernels::FastStats>& stats,
                        const std::vector<uint64_t>& drives, uint64_t conversions) {
  if (!counters) return;
  counters->images += 1;
  counters->adc_conversions += conversions;
  for (size_t w = 0; w < stats.size(); ++w) {
    counters->row_drives += drives[w];
    counters->adc_saturations += stats[w].saturations;
    counters->psum_min = std::min(counters->psum_min, stats[w].psum_min);
    counters->psum_max = std::max(counters->psum_max, stats[w].psum_max);
  }
}

// Output step of a batch of nb positions p0 .. p0 + nb - 1 (SEMANTICS steps 8-9): accumulators
// acc[b][n] and input sums xsum[b] to codes (vectorised, bit-identical to kernels::requantize) or,
// for a float output, to values.
void write_outputs(const auto& plan, const Node& node, const kernels::OutputStep& step, const int64_t* acc,
                   const int64_t* xsum, uint32_t p0, uint32_t nb, std::vector<int32_t>& out_codes,
                   std::vector<double>& out_values, kernels::KernelPath path) {
  const uint32_t N = plan.layer->cols_n(), P = plan.positions;
  if (!node.output_quant.is_float())
    return kernels::requantize_outputs(step, acc, xsum, nb, N, out_codes.data() + p0, P, path);
  for (uint32_t b = 0; b < nb; ++b)
    for (uint32_t n = 0; n < N; ++n) {
      const int64_t a = acc[size_t{b} * N + n] + plan.column_correction_fx[n] - plan.offset_correction_fx * xsum[b];
      out_values[size_t{n} * P + p0 + b] =
          relu_if(static_cast<double>(a) * plan.multiplier[n] + plan.layer->bias[n], plan.layer->activation);
    }
}

kernels::OutputStep output_step(const auto& plan, const Node& node) {
  const ImcLayer& l = *plan.layer;
  return {plan.column_correction_fx.data(), plan.offset_correction_fx,       plan.multiplier.data(),
          l.bias.data(),                    l.activation == Activation::kRelu, node.output_quant.scale,
          node.output_quant.zero_point,     node.output_quant.bits};
}

// The per-position loops' first step for output position `pos` (reads plan.gather, see
// ensure_gather): the A-shifted inputs xs[k] of its rows (padding reads the input zero point),
// the DAC groups' values u[t][k], the bit planes for the fast kernels; returns sum_k xs[k].
int64_t gather_position(const auto& plan, std::span<const int32_t> in, uint32_t pos, std::vector<int32_t>& xs,
                        std::vector<uint16_t>& u, std::vector<uint64_t>& words, std::vector<uint32_t>& nonzero) {
  const size_t K = xs.size(), T = plan.groups.size();
  const int32_t* gather = plan.gather.data() + size_t{pos} * K;
  int64_t xsum = 0;
  for (size_t k = 0; k < K; ++k) {
    const int32_t x = gather[k] < 0 ? plan.input_zero_point : in[static_cast<size_t>(gather[k])];
    xs[k] = x - static_cast<int32_t>(plan.layer->ashift_offset);
    xsum += xs[k];
  }
  for (size_t t = 0; t < T; ++t)
    for (size_t k = 0; k < K; ++k)
      u[t * K + k] = static_cast<uint16_t>(kernels::group_value(xs[k], plan.input_bits, plan.groups[t]));
  if (plan.fast) plan.fast->pack_inputs(xs.data(), words.data(), nonzero.data());
  return xsum;
}

// The per-position loops' last step for output position `pos`: corrections, scale, bias,
// activation and requantisation of the column accumulators acc[n] (modified in place), and the
// trace's digests of the position's partial sums, ADC codes and accumulators.
void finish_position(const auto& plan, const Node& node, std::vector<int64_t>& acc, int64_t xsum, uint32_t pos,
                     std::vector<int32_t>& out_codes, std::vector<double>& out_values, NodeTrace* trace,
                     const std::vector<int64_t>& trace_psums, const std::vector<int64_t>& trace_codes) {
  const ImcLayer& l = *plan.layer;
  for (size_t n = 0; n < acc.size(); ++n) {
    acc[n] += plan.column_correction_fx[n] - plan.offset_correction_fx * xsum;
    const double y = relu_if(static_cast<double>(acc[n]) * plan.multiplier[n] + l.bias[n], l.activation);
    const size_t o = n * plan.positions + pos;
    if (node.output_quant.is_float()) out_values[o] = y;
    else
      out_codes[o] = kernels::requantize(y, node.output_quant.scale, node.output_quant.zero_point,
                                         node.output_quant.bits);
  }
  if (trace) {
    for (int64_t v : trace_psums) trace->psum.add(v);
    for (int64_t v : trace_codes) trace->adc_code.add(v);
    for (int64_t v : acc) trace->acc.add(v);
    if (pos == 0) {
      trace->psums_position0 = trace_psums;
      trace->adc_codes_position0 = trace_codes;
      trace->acc_position0 = acc;
    }
  }
}

// The fused fast kernel (docs/fast_kernels.md): output positions in batches of kBatch, split
// over `threads` threads; per batch the inputs are packed into bit planes, then partial sums,
// ADC (packed lookup table) and shift-add run in one pass per (tile, slice). Same results and
// counters as run_imc / run_imc_nonideal with a lookup table. With `noise` (its pos0 ignored:
// each batch passes its own) the table is over u and the kernel adds each conversion's noise.
void run_imc_fused(const FunctionalEngine::ImcShape& shape, const auto& plan, const Node& node,
                   std::span<const int32_t> in, std::vector<int32_t>& out_codes, std::vector<double>& out_values,
                   ImcNodeCounters* counters, const kernels::PackedAdcLut& lut, unsigned threads,
                   const kernels::NoiseCall* noise = nullptr) {
  const kernels::BitPlaneCrossbar& fast = *plan.fast;
  const uint32_t N = shape.cols_n, G = shape.tiles, P = plan.positions;
  if (node.output_quant.is_float()) out_values.assign(size_t{N} * P, 0.0);
  else out_codes.assign(size_t{N} * P, 0);
  const uint32_t kBatch = fast.preferred_batch();
  const size_t words = fast.input_words();
  threads = std::max(1u, std::min<unsigned>(threads, P));
  std::vector<kernels::FastStats> stats(threads);
  std::vector<uint64_t> drives(threads, 0);
  std::vector<int32_t> padded_buffer;
  const int32_t* padded = plan.padded_input(in, padded_buffer);
  const kernels::OutputStep step = output_step(plan, node);
  for_position_ranges(threads, P, [&](unsigned w, uint32_t begin, uint32_t end) {
    std::vector<uint64_t> u(kBatch * words);
    std::vector<uint32_t> nz(size_t{kBatch} * G);
    std::vector<int64_t> acc(size_t{kBatch} * N), xsum(kBatch);
    for (uint32_t p0 = begin; p0 < end; p0 += kBatch) {
      const uint32_t nb = std::min(kBatch, end - p0);
      for (uint32_t b = 0; b < nb; ++b)
        drives[w] += fast.pack_gathered(padded + plan.pos_base[p0 + b], plan.row_offset.data(), u.data() + b * words,
                                        nz.data() + size_t{b} * G, &xsum[b]);
      std::fill(acc.begin(), acc.begin() + size_t{nb} * N, 0);
      const kernels::NoiseCall call = noise ? kernels::NoiseCall{noise->form, noise->image_key, p0} : kernels::NoiseCall{};
      fast.accumulate(u.data(), nz.data(), nb, lut, acc.data(), counters ? &stats[w] : nullptr, noise ? &call : nullptr);
      write_outputs(plan, node, step, acc.data(), xsum.data(), p0, nb, out_codes, out_values, fast.path());
    }
  });
  add_layer_counters(counters, stats, drives, uint64_t{P} * G * shape.slices * shape.groups * N);
}

// Shared state of one IMC layer evaluation: runs all positions of one image.
void run_imc(const FunctionalEngine::ImcShape& shape, const auto& plan, const Node& node,
             std::span<const int32_t> in, std::vector<int32_t>& out_codes, std::vector<double>& out_values,
             ImcNodeCounters* counters, NodeTrace* trace, PsumObserver* observer, size_t node_index,
             unsigned threads) {
  if (plan.fast && !plan.fast_lut.empty() && !trace && !observer)
    return run_imc_fused(shape, plan, node, in, out_codes, out_values, counters,
                         kernels::PackedAdcLut{plan.fast_lut.data(), plan.lut_min, plan.lut_size,
                                               plan.layer->adc.granularity,
                                               plan.fast_lut32.empty() ? nullptr : plan.fast_lut32.data(),
                                               plan.fast_lut_max, plan.fast_affine ? &*plan.fast_affine : nullptr},
                         threads);
  plan.ensure_gather();
  const ImcLayer& l = *plan.layer;
  const uint32_t K = shape.rows_k, N = shape.cols_n, S = shape.slices, T = shape.groups, G = shape.tiles;
  const auto& adc = l.adc;
  const bool float_out = node.output_quant.is_float();
  if (float_out) out_values.assign(size_t{N} * plan.positions, 0.0);
  else out_codes.assign(size_t{N} * plan.positions, 0);

  std::vector<int32_t> xs(K);
  std::vector<uint16_t> u(size_t{T} * K);
  std::vector<int32_t> psum(size_t{S} * N);
  std::vector<uint64_t> words(plan.fast ? plan.fast->input_words() : 0);  // bit planes (fast kernels)
  std::vector<uint32_t> nonzero(G);
  std::vector<int64_t> acc(N);
  std::vector<int64_t> trace_psums, trace_codes;  // [G][S][T][N] of one position (trace only)
  if (trace) {
    trace_psums.resize(size_t{G} * S * T * N);
    trace_codes.resize(trace_psums.size());
  }
  uint64_t row_drives = 0, saturations = 0;
  int64_t pmin = INT64_MAX, pmax = INT64_MIN;

  for (uint32_t pos = 0; pos < plan.positions; ++pos) {
    const int64_t xsum = gather_position(plan, in, pos, xs, u, words, nonzero);
    std::fill(acc.begin(), acc.end(), 0);
    for (uint32_t g = 0; g < G; ++g) {
      const auto& tile = plan.crossbar.tiles()[g];
      for (uint32_t t = 0; t < T; ++t) {
        const uint16_t* ut = u.data() + size_t{t} * K;
        if (counters)
          for (uint32_t k = tile.row_begin; k < tile.row_end; ++k) row_drives += ut[k] != 0;
        if (plan.fast) plan.fast->partial_sums(words.data(), g, t, psum.data());
        else plan.crossbar.partial_sums(g, std::span<const uint16_t>(ut, K), psum);
        for (uint32_t s = 0; s < S; ++s) {
          const int64_t w = plan.shift_weight[size_t{s} * T + t];
          const int32_t* ps = psum.data() + size_t{s} * N;
          for (uint32_t n = 0; n < N; ++n) {
            const int64_t p = ps[n];
            const uint64_t set = adc.set_index(g, s, n, S, N);
            int64_t value;
            if (plan.use_lut) {
              const size_t idx = set * plan.lut_size + static_cast<size_t>(p - plan.lut_min);
              value = plan.lut_value[idx];
              saturations += plan.lut_saturated[idx];
            } else {
              value = kernels::adc_convert(adc, set, p).value_fx;
              if (counters) saturations += plan.saturated(set, p);
            }
            acc[n] += w * value;
            if (observer) observer->observe(node_index, set, p);
            if (counters) {
              pmin = std::min(pmin, p);
              pmax = std::max(pmax, p);
            }
            if (trace) {
              const size_t ti = ((size_t{g} * S + s) * T + t) * N + n;
              trace_psums[ti] = p;
              trace_codes[ti] = kernels::adc_convert(adc, set, p).code;
            }
          }
        }
      }
    }
    finish_position(plan, node, acc, xsum, pos, out_codes, out_values, trace, trace_psums, trace_codes);
  }
  if (counters) {
    counters->images += 1;
    counters->row_drives += row_drives;
    counters->adc_conversions += uint64_t{plan.positions} * G * S * T * N;
    counters->adc_saturations += saturations;
    counters->psum_min = std::min(counters->psum_min, pmin);
    counters->psum_max = std::max(counters->psum_max, pmax);
  }
}

// The fused ADC-noise kernel (models/crossbar/noise_kernel.h, docs/fast_kernels.md): output
// positions in batches, split over `threads` threads; per batch the A-shifted inputs are
// gathered from the padded input, then partial sums, noise, analog ADC and shift-add run in one
// pass. Same results and counters as run_imc_nonideal's row loop.
void run_imc_noise_fused(const FunctionalEngine::ImcShape& shape, const auto& plan, const Node& node,
                         std::span<const int32_t> in, std::vector<int32_t>& out_codes,
                         std::vector<double>& out_values, ImcNodeCounters* counters, uint64_t image_key,
                         unsigned threads) {
  const kernels::NoiseMvmKernel& kern = *plan.nonideal->noise_kernel;
  const uint32_t K = shape.rows_k, N = shape.cols_n, P = plan.positions;
  if (node.output_quant.is_float()) out_values.assign(size_t{N} * P, 0.0);
  else out_codes.assign(size_t{N} * P, 0);
  const uint32_t kBatch = kern.preferred_batch();
  threads = std::max(1u, std::min<unsigned>(threads, P));
  std::vector<kernels::FastStats> stats(threads);
  std::vector<uint64_t> drives(threads, 0);
  std::vector<int32_t> padded_buffer;
  const int32_t* padded = plan.padded_input(in, padded_buffer);
  const kernels::OutputStep step = output_step(plan, node);
  const kernels::KernelPath path = plan.nonideal->noise_path;
  for_position_ranges(threads, P, [&](unsigned w, uint32_t begin, uint32_t end) {
    std::vector<int32_t> xs(size_t{kBatch} * K);
    std::vector<int64_t> acc(size_t{kBatch} * N), xsum(kBatch);
    for (uint32_t p0 = begin; p0 < end; p0 += kBatch) {
      const uint32_t nb = std::min(kBatch, end - p0);
      for (uint32_t b = 0; b < nb; ++b) {
        const int32_t* src = padded + plan.pos_base[p0 + b];
        int32_t* x = xs.data() + size_t{b} * K;
        int64_t sum = 0;
        for (uint32_t k = 0; k < K; ++k) {
          x[k] = src[plan.row_offset[k]];
          sum += x[k];
        }
        xsum[b] = sum;
      }
      std::fill(acc.begin(), acc.begin() + size_t{nb} * N, 0);
      drives[w] += kern.run(xs.data(), nb, p0, image_key, acc.data(), counters ? &stats[w] : nullptr);
      write_outputs(plan, node, step, acc.data(), xsum.data(), p0, nb, out_codes, out_values, path);
    }
  });
  add_layer_counters(counters, stats, drives, uint64_t{P} * shape.tiles * shape.slices * shape.groups * N);
}

// run_imc with analog non-idealities (docs/SEMANTICS.md step 5): the same lowering, groups and
// shift-add; the cells are the programmed (faulty / varied) ones, and each ADC converts the
// analog value a_fx = clamp(curve(x_fx) + noise_fx) (units 2^-16 LSB).
void run_imc_nonideal(const FunctionalEngine::ImcShape& shape, const auto& plan, const Node& node,
                      std::span<const int32_t> in, std::vector<int32_t>& out_codes, std::vector<double>& out_values,
                      ImcNodeCounters* counters, NodeTrace* trace, PsumObserver* observer, size_t node_index,
                      uint64_t image_index, unsigned threads) {
  const ImcLayer& l = *plan.layer;
  const auto& ni = *plan.nonideal;
  // The fused kernel with the table through curve and analog ADC; the partial-sum range the
  // counters record is after the curve, so with a curve only without counters.
  if (plan.fast && !ni.fast_lut.empty() && !trace && !observer && (!ni.curve || !counters))
    return run_imc_fused(shape, plan, node, in, out_codes, out_values, counters,
                         kernels::PackedAdcLut{ni.fast_lut.data(), ni.lut_min, ni.lut_size, l.adc.granularity,
                                               ni.fast_lut32.empty() ? nullptr : ni.fast_lut32.data(),
                                               ni.fast_lut_max, ni.fast_affine ? &*ni.fast_affine : nullptr},
                         threads);
  if (plan.fast && ni.noise_affine && !trace && !observer) {
    const kernels::NoiseCall noise{&*ni.noise_form, kernels::rng_extend(ni.noise_key, image_index), 0};
    return run_imc_fused(shape, plan, node, in, out_codes, out_values, counters,
                         ni.noise_lut(&*ni.noise_affine, ni.noise_lut_size, l.adc.granularity), threads, &noise);
  }
  if (ni.noise_kernel && !trace && !observer)
    return run_imc_noise_fused(shape, plan, node, in, out_codes, out_values, counters,
                               kernels::rng_extend(ni.noise_key, image_index), threads);
  plan.ensure_gather();  // (the row loop reads the [P][K] table)
  const kernels::NonidealCrossbar& xbar = *ni.crossbar;
  const uint32_t K = shape.rows_k, N = shape.cols_n, S = shape.slices, T = shape.groups, G = shape.tiles;
  const uint32_t P = plan.positions;
  const auto& adc = l.adc;
  const bool float_out = node.output_quant.is_float();
  const bool integer = xbar.integer_cells(), noise = ni.noise_sigma > 0;
  const kernels::TransferCurve* curve = ni.curve ? &*ni.curve : nullptr;
  // The fused row kernel: 32-bit partial sums, no curve, no clamp needed, ADC tables built.
  const bool fused = !ni.use_lut && (integer || ni.fx32) && !curve && !ni.clamp && ni.adc->has_tables() &&
                     !observer && !trace;
  if (float_out) out_values.assign(size_t{N} * P, 0.0);
  else out_codes.assign(size_t{N} * P, 0);
  constexpr int64_t kFxOne = int64_t{1} << kernels::kAnalogFracBits;
  const uint64_t image_key = kernels::rng_extend(ni.noise_key, image_index);
  const size_t per_position = size_t{G} * S * T * N;  // conversions of one output position

  // Output positions [begin, end) with this thread's buffers; event counts into the arguments.
  // (Results do not depend on the split: the noise index of a conversion is canonical.)
  auto work = [&](uint32_t begin, uint32_t end, uint64_t& row_drives, uint64_t& saturations, int64_t& pmin,
                  int64_t& pmax) {
    std::vector<int32_t> xs(K);
    std::vector<uint16_t> u(size_t{T} * K);
    std::vector<int32_t> psum(integer || ni.fx32 ? size_t{S} * N : 0);
    std::vector<uint64_t> words(plan.fast ? plan.fast->input_words() : 0);  // bit planes (fast kernels)
    std::vector<uint32_t> nonzero(G);
    std::vector<int64_t> psum_fx(integer || ni.fx32 ? 0 : size_t{S} * N);
    std::vector<int64_t> analog(N), values(N), noise_fx(noise ? per_position : 0);
    std::vector<uint16_t> noise_sums(noise ? per_position : 0);
    std::vector<int64_t> acc(N);
    std::vector<int64_t> trace_psums, trace_codes;  // [G][S][T][N] of one position (trace only)
    if (trace) {
      trace_psums.resize(per_position);
      trace_codes.resize(trace_psums.size());
    }
    for (uint32_t pos = begin; pos < end; ++pos) {
      const int64_t xsum = gather_position(plan, in, pos, xs, u, words, nonzero);
      std::fill(acc.begin(), acc.end(), 0);
      // Noise of every conversion of this position: element ((g*S + s)*T + t)*N + n (the
      // conversion's index in the position's [G][S][T][N] order) of stream H(image key, pos); its
      // value is a function of the Irwin-Hall sum alone (ni.noise_table).
      if (noise) {
        kernels::irwin_hall_block(kernels::rng_extend(image_key, pos), 0, per_position, noise_sums.data(),
                                  ni.noise_path);
        for (size_t i = 0; i < per_position; ++i) noise_fx[i] = ni.noise_table[noise_sums[i]];
      }
      for (uint32_t g = 0; g < G; ++g) {
        const auto& tile = plan.crossbar.tiles()[g];
        for (uint32_t t = 0; t < T; ++t) {
          const uint16_t* ut = u.data() + size_t{t} * K;
          if (counters)
            for (uint32_t k = tile.row_begin; k < tile.row_end; ++k) row_drives += ut[k] != 0;
          if (integer && plan.fast) plan.fast->partial_sums(words.data(), g, t, psum.data());
          else if (integer) xbar.partial_sums(g, std::span<const uint16_t>(ut, K), psum);
          else if (ni.fx32) xbar.partial_sums_fx32(g, std::span<const uint16_t>(ut, K), psum);
          else xbar.partial_sums_fx(g, std::span<const uint16_t>(ut, K), psum_fx);
          for (uint32_t s = 0; s < S; ++s) {
            const int64_t w = plan.shift_weight[size_t{s} * T + t];
            // Parameter set of column n: set0 + n * set_step.
            const uint64_t set0 = adc.set_index(g, s, 0, S, N);
            const uint64_t set_step = adc.granularity == kernels::AdcGranularity::kLayer ? 0 : 1;
            if (ni.use_lut) {
              for (uint32_t n = 0; n < N; ++n) {
                const uint64_t set = set0 + n * set_step;
                const size_t idx = set * ni.lut_size + static_cast<size_t>(psum[size_t{s} * N + n] - ni.lut_min);
                acc[n] += w * ni.lut_value[idx];
                saturations += ni.lut_saturated[idx];
              }
            } else if (fused) {
              // a = x (* 2^16) + noise, converted and accumulated in one pass.
              const int64_t* z = noise ? noise_fx.data() + ((size_t{g} * S + s) * T + t) * N : nullptr;
              int64_t lo = INT64_MAX, hi = INT64_MIN;
              saturations += ni.adc->accumulate_row(psum.data() + size_t{s} * N, integer ? kFxOne : 1, z, N, set0,
                                                    set_step, w, acc.data(), lo, hi);
              pmin = std::min(pmin, lo >> kernels::kAnalogFracBits);
              pmax = std::max(pmax, hi >> kernels::kAnalogFracBits);
            } else {
              // The analog ADC inputs of this row: a = clamp(curve(x) + noise).
              int64_t* a = analog.data();
              if (integer)
                for (uint32_t n = 0; n < N; ++n) a[n] = int64_t{psum[size_t{s} * N + n]} * kFxOne;
              else if (ni.fx32)
                for (uint32_t n = 0; n < N; ++n) a[n] = psum[size_t{s} * N + n];
              else
                for (uint32_t n = 0; n < N; ++n) a[n] = psum_fx[size_t{s} * N + n];
              if (curve) curve->apply_row(a, N);
              if (noise) {
                const int64_t* z = noise_fx.data() + ((size_t{g} * S + s) * T + t) * N;
                if (ni.clamp)
                  for (uint32_t n = 0; n < N; ++n) a[n] = kernels::clamp_analog(a[n] + z[n]);
                else
                  for (uint32_t n = 0; n < N; ++n) a[n] += z[n];
              }
              saturations += ni.adc->convert_row(a, N, set0, set_step, values.data());
              for (uint32_t n = 0; n < N; ++n) acc[n] += w * values[n];
              if (counters && !observer && !trace) {
                int64_t lo = a[0], hi = a[0];
                for (uint32_t n = 1; n < N; ++n) {
                  lo = std::min(lo, a[n]);
                  hi = std::max(hi, a[n]);
                }
                pmin = std::min(pmin, lo >> kernels::kAnalogFracBits);
                pmax = std::max(pmax, hi >> kernels::kAnalogFracBits);
              }
            }
            if (observer || trace || (counters && ni.use_lut)) {
              for (uint32_t n = 0; n < N; ++n) {
                const uint64_t set = set0 + n * set_step;
                int64_t a = ni.use_lut ? int64_t{psum[size_t{s} * N + n]} * kFxOne : analog[n];
                if (ni.use_lut && curve) a = curve->apply(a);
                const int64_t p_floor = a >> kernels::kAnalogFracBits;
                if (observer) observer->observe(node_index, set, p_floor);
                pmin = std::min(pmin, p_floor);
                pmax = std::max(pmax, p_floor);
                if (trace) {
                  const size_t ti = ((size_t{g} * S + s) * T + t) * N + n;
                  trace_psums[ti] = a;
                  trace_codes[ti] = ni.adc->convert(set, a).code;
                }
              }
            }
          }
        }
      }
      finish_position(plan, node, acc, xsum, pos, out_codes, out_values, trace, trace_psums, trace_codes);
    }
  };
  // Traces (ordered digests) and observers stay on one thread.
  threads = trace || observer ? 1u : std::max(1u, std::min<unsigned>(threads, P));
  const uint32_t per_thread = (P + threads - 1) / threads;
  std::vector<uint64_t> row_drives(threads, 0), saturations(threads, 0);
  std::vector<int64_t> pmin(threads, INT64_MAX), pmax(threads, INT64_MIN);
  auto run = [&](unsigned w) {
    const uint32_t begin = std::min(P, w * per_thread), end = std::min(P, begin + per_thread);
    work(begin, end, row_drives[w], saturations[w], pmin[w], pmax[w]);
  };
  if (threads == 1) {
    run(0);
  } else {
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < threads; ++w) pool.emplace_back(run, w);
    for (auto& t : pool) t.join();
  }
  if (counters) {
    counters->images += 1;
    counters->adc_conversions += uint64_t{P} * G * S * T * N;
    for (unsigned w = 0; w < threads; ++w) {
      counters->row_drives += row_drives[w];
      counters->adc_saturations += saturations[w];
      counters->psum_min = std::min(counters->psum_min, pmin[w]);
      counters->psum_max = std::max(counters->psum_max, pmax[w]);
    }
  }
}

// An IMC Linear layer on tokens computes [N][T] like a conv's [N][pos]; tokens are [T][N].
void transpose_token_output(const auto& plan, std::vector<int32_t>& codes, std::vector<double>& values) {
  if (!plan.layer->tokens) return;
  const size_t T = plan.positions, N = plan.layer->cols_n();
  auto transpose = [&](auto& v) {
    if (v.empty()) return;
    auto t = v;
    for (size_t n = 0; n < N; ++n)
      for (size_t p = 0; p < T; ++p) v[p * N + n] = t[n * T + p];
  };
  transpose(codes);
  transpose(values);
}

}  // namespace

InferenceResult FunctionalEngine::infer(std::span<const int32_t> input_codes, EngineCounters* counters,
                                        std::vector<NodeTrace>* traces, PsumObserver* observer,
                                        uint64_t image_index) const {
  const size_t n_nodes = graph_.nodes.size();
  InferenceResult result;
  result.node_codes.resize(n_nodes);
  if (counters && counters->per_node.size() < n_nodes) counters->per_node.resize(n_nodes);
  if (traces) traces->assign(n_nodes, NodeTrace{});
  std::vector<double> values;  // float output of the current node, if any

  auto tensor = [&](int id) -> std::span<const int32_t> {
    return id < 0 ? input_codes : std::span<const int32_t>(result.node_codes[static_cast<size_t>(id)]);
  };

  for (size_t i = 0; i < n_nodes; ++i) {
    const Node& node = graph_.nodes[i];
    std::vector<int32_t>& out = result.node_codes[i];
    const auto in = tensor(node.inputs[0]);
    const size_t out_elems = node.output_shape.elements();
    values.assign(node.output_quant.is_float() ? out_elems : 0, 0.0);
    if (!node.output_quant.is_float() && !plans_[i]) out.assign(out_elems, 0);  // (IMC layers size their own)

    std::vector<std::span<const int32_t>> ins;
    for (int id : node.inputs) ins.push_back(tensor(id));
    if (plans_[i] && plans_[i]->nonideal) {
      run_imc_nonideal(imc_shape(i), *plans_[i], node, in, out, values,
                       counters ? &counters->per_node[i] : nullptr, traces ? &(*traces)[i] : nullptr, observer, i,
                       image_index, image_threads_);
      transpose_token_output(*plans_[i], out, values);
    } else if (plans_[i]) {
      run_imc(imc_shape(i), *plans_[i], node, in, out, values, counters ? &counters->per_node[i] : nullptr,
              traces ? &(*traces)[i] : nullptr, observer, i, image_threads_);
      transpose_token_output(*plans_[i], out, values);
    } else {
      run_digital_node(graph_, node, ins, out, values);  // sim/engine/digital_nodes.cc
    }
    if (i + 1 == n_nodes) {
      if (node.output_quant.is_float()) {
        result.output_values = std::move(values);
      } else {
        result.output_values.resize(out_elems);
        for (size_t e = 0; e < out_elems; ++e)
          result.output_values[e] = node.output_quant.scale * double(out[e] - node.output_quant.zero_point);
      }
      // argmax, first index on ties; codes compare like their real values (scale > 0).
      uint32_t best = 0;
      for (uint32_t c = 1; c < result.output_values.size(); ++c)
        if (result.output_values[c] > result.output_values[best]) best = c;
      result.predicted_class = best;
    }
  }
  return result;
}

void pixels_to_codes(const graph::InputSpec& spec, std::span<const uint8_t> pixels, std::span<int32_t> codes) {
  for (size_t i = 0; i < pixels.size(); ++i) {
    const double real = static_cast<double>(pixels[i]) * spec.pixel_scale;
    const double norm = (real - spec.mean) / spec.std;
    codes[i] = kernels::requantize(norm, spec.quant.scale, spec.quant.zero_point, spec.quant.bits);
  }
}

DatasetResult run_dataset(const FunctionalEngine& engine, std::span<const uint8_t> images,
                          std::span<const uint8_t> labels, uint64_t count, unsigned threads,
                          const std::function<void(uint64_t, uint64_t)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  const size_t image_elems = engine.graph().input.shape.elements();
  DatasetResult result;
  result.images = count;
  result.predictions.assign(count, 0);
  if (threads == 0) threads = std::thread::hardware_concurrency();
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::max<uint64_t>(count, 1))));
  std::atomic<uint64_t> next{0}, done{0};
  std::vector<EngineCounters> counters(threads);
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < threads; ++w) {
    workers.emplace_back([&, w] {
      std::vector<int32_t> codes(image_elems);
      for (uint64_t i; (i = next.fetch_add(1)) < count;) {
        pixels_to_codes(engine.graph().input, images.subspan(i * image_elems, image_elems), codes);
        result.predictions[i] = engine.infer(codes, &counters[w], nullptr, nullptr, i).predicted_class;
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  while (done.load() < count) {
    if (progress) progress(done.load(), count);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& t : workers) t.join();
  if (progress) progress(count, count);
  for (const auto& c : counters) result.counters.merge(c);
  for (uint64_t i = 0; i < count; ++i) result.correct += result.predictions[i] == labels[i];
  result.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace imcsim::engine
