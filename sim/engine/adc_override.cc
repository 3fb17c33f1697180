#include "sim/engine/adc_override.h"

#include <stdexcept>
#include <variant>

#include <fmt/format.h>

#include "models/adc/calibration.h"
#include "sim/data/idx_dataset.h"
#include "sim/engine/calibration.h"

namespace imcsim::engine {
namespace {

std::string describe(const kernels::AdcSpec& a) {
  if (a.kind == kernels::AdcKind::kIdeal) return "ideal";
  return fmt::format("{} {}b {}", kernels::adc_kind_name(a.kind), a.bits, kernels::adc_granularity_name(a.granularity));
}

}  // namespace

AdcOverride apply_adc_override(const graph::Graph& g, const config::AdcConfig& adc, const std::string& arch_file,
                               const std::filesystem::path& dataset_dir, unsigned threads) {
  if (adc.layer_bits_override == 0) return {g, nullptr};
  const uint32_t bits = adc.layer_bits_override;
  nlohmann::json rep{{"layer_bits", bits}, {"references", adc.override_references}};
  AdcOverride out;
  if (g.shape_only) {
    // No references to re-derive: only the resolution (timing, energy) changes.
    out.graph = g;
    for (auto& node : out.graph.nodes)
      if (auto* layer = std::get_if<graph::ImcLayer>(&node.op); layer && layer->adc.kind != kernels::AdcKind::kIdeal)
        layer->adc.bits = bits;
    rep["references"] = "none (shape-only graph)";
  } else if (adc.override_references == "rescale") {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const auto* layer = std::get_if<graph::ImcLayer>(&g.nodes[i].op);
      if (layer && layer->adc.kind == kernels::AdcKind::kNonlinear)
        throw std::runtime_error(fmt::format(
            "{}: /adc/override_references: \"rescale\" cannot re-derive the non-linear ADC of node '{}' (#{}) of {} "
            "at {} bits (thresholds need data); set a calibration method, e.g. \"bs-kmq\" or \"lloyd-max\"",
            arch_file, g.nodes[i].name, i, g.source_file, bits));
    }
    out.graph = calibration::with_adc_bits(g, bits);
    out.graph.name = fmt::format("{}_adc{}b_rescale", g.name, bits);
  } else {
    const auto method = kernels::parse_calib_method(adc.override_references);
    if (!method)  // the config loader already rejects this; keep the engine safe on its own
      throw std::runtime_error(fmt::format("{}: /adc/override_references: unknown reference rule \"{}\"", arch_file,
                                           adc.override_references));
    const auto train = data::read_fashion_mnist(dataset_dir, true);
    const uint64_t images = std::min<uint64_t>(adc.override_calibration_images, train.count);
    calibration::Options options;
    options.methods = {*method};
    options.bits = bits;
    options.threads = threads;
    auto result = calibration::calibrate(g, train.pixels, images, options);
    const std::string source = fmt::format("first {} images of the training set ({})", images, train.images_file);
    calibration::record_provenance(result.graph, result, options,
                                   fmt::format("{} adc.layer_bits_override = {}", arch_file, bits), source);
    out.graph = std::move(result.graph);
    out.graph.name = fmt::format("{}_calib_{}_{}b", g.name, adc.override_references, bits);
    out.graph.source_file = g.source_file;
    rep["calibration_images"] = images;
    rep["calibration_source"] = source;
  }
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto* before = std::get_if<graph::ImcLayer>(&g.nodes[i].op);
    if (!before) continue;
    const auto& after = std::get<graph::ImcLayer>(out.graph.nodes[i].op);
    layers.push_back({{"node", g.nodes[i].name}, {"graph_adc", describe(before->adc)},
                      {"simulated_adc", describe(after.adc)}});
  }
  rep["layers"] = std::move(layers);
  out.report = std::move(rep);
  return out;
}

std::string adc_override_summary(const nlohmann::json& r) {
  if (r.is_null()) return "";
  std::string refs = r["references"].get<std::string>();
  if (r.contains("calibration_images"))
    refs = fmt::format("{} on {} training images", refs, r["calibration_images"].get<uint64_t>());
  return fmt::format("ADC        override: every IMC layer converts at {} bits, not the graph's (references: {})\n",
                     r["layer_bits"].get<uint32_t>(), refs);
}

}  // namespace imcsim::engine
