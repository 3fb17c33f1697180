#include "sim/engine/calibration.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "sim/engine/functional_engine.h"

namespace imcsim::calibration {

using kernels::AdcGranularity;
using kernels::AdcKind;
using kernels::CalibMethod;
using kernels::PsumHistogram;

namespace {

// Receives the partial sums of one node into one histogram per parameter set.
class Collector final : public engine::PsumObserver {
 public:
  Collector(size_t node, uint64_t sets) : node_(node), hists(sets) {}
  void observe(size_t node, uint64_t set, int64_t p) override {
    if (node == node_) hists[set].add(p);
  }
  size_t node_;
  std::vector<PsumHistogram> hists;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string adc_description(const kernels::AdcSpec& a) {
  if (a.kind == AdcKind::kIdeal) return "ideal";
  return fmt::format("{} {}b {}", kernels::adc_kind_name(a.kind), a.bits, kernels::adc_granularity_name(a.granularity));
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

void check_options(const Options& o) {
  if (o.methods.empty()) throw std::invalid_argument("--method: no calibration method given");
  if (o.bits < 1 || o.bits > 16) throw std::invalid_argument(fmt::format("--bits: must be in [1, 16], got {}", o.bits));
  if (!(o.percentile > 0.0 && o.percentile <= 100.0))
    throw std::invalid_argument(fmt::format("--percentile: must be in (0, 100], got {}", o.percentile));
  if (o.boundary_weight && !(*o.boundary_weight >= 0.0 && *o.boundary_weight <= 1.0))
    throw std::invalid_argument(fmt::format("--boundary-weight: must be 'flatten' or a number in [0, 1], got {}",
                                            *o.boundary_weight));
  if (o.frac_bits && *o.frac_bits > 24)
    throw std::invalid_argument(fmt::format("--frac-bits: must be in [0, 24], got {}", *o.frac_bits));
  if (o.write_method && std::find(o.methods.begin(), o.methods.end(), *o.write_method) == o.methods.end())
    throw std::invalid_argument(fmt::format("--write-method: '{}' is not among the fitted methods",
                                            kernels::calib_method_name(*o.write_method)));
}

std::vector<PsumHistogram> collect_histograms(const graph::Graph& g, size_t node, AdcGranularity granularity,
                                              std::span<const uint8_t> pixels, uint64_t images, unsigned threads) {
  if (node >= g.nodes.size() || !std::holds_alternative<graph::ImcLayer>(g.nodes[node].op))
    throw std::invalid_argument(fmt::format("collect_histograms: node #{} is not an IMC layer", node));
  const size_t image_elems = g.input.shape.elements();
  if (pixels.size() < images * image_elems)
    throw std::invalid_argument(fmt::format("collect_histograms: {} images need {} pixels, got {}", images,
                                            images * image_elems, pixels.size()));
  // The graph up to `node`, whose ADC becomes IDEAL with the requested granularity.
  graph::Graph prefix;
  prefix.name = g.name;
  prefix.source_file = g.source_file;
  prefix.input = g.input;
  prefix.num_classes = g.num_classes;
  prefix.nodes.assign(g.nodes.begin(), g.nodes.begin() + static_cast<std::ptrdiff_t>(node) + 1);
  auto& layer = std::get<graph::ImcLayer>(prefix.nodes[node].op);
  kernels::AdcSpec ideal;
  ideal.kind = AdcKind::kIdeal;
  ideal.bits = layer.adc.bits;
  ideal.frac_bits = layer.adc.frac_bits;
  ideal.granularity = granularity;
  layer.adc = ideal;

  const engine::FunctionalEngine engine(prefix);
  const auto shape = engine.imc_shape(node);
  const uint64_t sets = kernels::AdcSpec::sets_for(granularity, shape.tiles, shape.slices, shape.cols_n);
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::max<uint64_t>(1, std::min<uint64_t>(threads, images)));
  std::vector<Collector> collectors(threads, Collector(node, sets));
  std::atomic<uint64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < threads; ++w)
    workers.emplace_back([&, w] {
      try {
        std::vector<int32_t> codes(image_elems);
        for (uint64_t i; (i = next.fetch_add(1)) < images;) {
          engine::pixels_to_codes(prefix.input, pixels.subspan(i * image_elems, image_elems), codes);
          engine.infer(codes, nullptr, nullptr, &collectors[w]);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(images);
      }
    });
  for (auto& t : workers) t.join();
  if (error) std::rethrow_exception(error);
  std::vector<PsumHistogram> out = std::move(collectors[0].hists);
  for (unsigned w = 1; w < threads; ++w)
    for (uint64_t s = 0; s < sets; ++s) out[s].merge(collectors[w].hists[s]);
  return out;
}

Result calibrate(const graph::Graph& g, std::span<const uint8_t> pixels, uint64_t images, const Options& options,
                 const std::function<void(const std::string&)>& progress) {
  check_options(options);
  Result r;
  r.graph = g;
  r.images = images;
  for (size_t i = 0; i < r.graph.nodes.size(); ++i) {
    auto* layer = std::get_if<graph::ImcLayer>(&r.graph.nodes[i].op);
    if (!layer) continue;
    const kernels::AdcSpec previous = layer->adc;
    LayerReport rep;
    rep.node_index = i;
    rep.node = r.graph.nodes[i].name;
    rep.granularity = options.granularity.value_or(previous.granularity);
    rep.frac_bits = options.frac_bits.value_or(previous.frac_bits);
    kernels::FitOptions fo;
    fo.bits = options.bits;
    fo.frac_bits = rep.frac_bits;
    fo.rounding = options.rounding.value_or(previous.kind == AdcKind::kLinear ? previous.rounding
                                                                               : kernels::AdcRounding::kHalfAway);
    fo.signed_codes = previous.kind == AdcKind::kLinear && previous.signed_codes;
    fo.percentile = options.percentile;
    fo.boundary_weight = options.boundary_weight;
    fo.bskmq_levels = options.bskmq_levels;
    if (progress)
      progress(fmt::format("{}: collecting partial sums ({} images, granularity {})", rep.node, images,
                           kernels::adc_granularity_name(rep.granularity)));

    const auto t0 = std::chrono::steady_clock::now();
    const auto hists = collect_histograms(r.graph, i, rep.granularity, pixels, images, options.threads);
    r.collect_seconds += seconds_since(t0);

    const auto t1 = std::chrono::steady_clock::now();
    rep.sets = hists.size();
    bool any = false;
    for (const auto& h : hists) {
      rep.pooled.merge(h);
      if (h.empty()) continue;
      rep.psum_min = any ? std::min(rep.psum_min, h.min()) : h.min();
      rep.psum_max = any ? std::max(rep.psum_max, h.max()) : h.max();
      rep.samples += h.total();
      any = true;
    }
    for (CalibMethod m : options.methods) {
      kernels::LayerFit fit = kernels::fit_layer(hists, m, fo, rep.granularity);
      rep.methods.push_back({m, fit.mse, std::move(fit.spec)});
    }
    size_t chosen = 0;
    if (options.write_method) {
      while (rep.methods[chosen].method != *options.write_method) ++chosen;
    } else {
      for (size_t k = 1; k < rep.methods.size(); ++k)
        if (rep.methods[k].mse < rep.methods[chosen].mse) chosen = k;
    }
    rep.written = rep.methods[chosen].method;
    rep.previous_adc = adc_description(previous);
    if (previous.kind == AdcKind::kIdeal) rep.previous_mse = 0.0;
    else if (previous.granularity == rep.granularity) rep.previous_mse = kernels::layer_mse(hists, previous);
    layer->adc = rep.methods[chosen].spec;
    r.fit_seconds += seconds_since(t1);
    r.layers.push_back(std::move(rep));
  }
  regenerate_goldens(r.graph);
  return r;
}

void regenerate_goldens(graph::Graph& g) {
  if (g.golden.empty()) return;
  const engine::FunctionalEngine engine(g);
  for (graph::GoldenPair& gp : g.golden) {
    std::vector<engine::NodeTrace> traces;
    const auto result = engine.infer(gp.input_codes, nullptr, &traces);
    gp.nodes.assign(g.nodes.size(), graph::NodeGolden{});
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      graph::NodeGolden& ng = gp.nodes[i];
      ng.node = g.nodes[i].name;
      ng.output_codes = result.node_codes[i];
      if (!std::holds_alternative<graph::ImcLayer>(g.nodes[i].op)) continue;
      const auto& t = traces[i];
      ng.psum_count = t.psum.count();
      ng.psum_digest = t.psum.value();
      ng.adc_code_digest = t.adc_code.value();
      ng.acc_digest = t.acc.value();
      ng.psums_position0 = t.psums_position0;
      ng.adc_codes_position0 = t.adc_codes_position0;
      ng.acc_position0 = t.acc_position0;
    }
    gp.logits = result.output_values;
    gp.predicted_class = result.predicted_class;
  }
}

void record_provenance(graph::Graph& g, const Result& result, const Options& options, const std::string& command,
                       const std::string& images_source) {
  graph::Provenance& p = g.provenance;
  nlohmann::json settings;
  try {
    settings = p.method_settings_json.empty() ? nlohmann::json::object()
                                              : nlohmann::json::parse(p.method_settings_json);
    if (!settings.is_object()) settings = nlohmann::json{{"previous_settings", settings}};
  } catch (const nlohmann::json::exception&) {
    settings = nlohmann::json{{"previous_settings_text", p.method_settings_json}};
  }
  nlohmann::json previous = nlohmann::json::object();
  if (settings.contains("adc")) previous["adc"] = settings["adc"];
  if (settings.contains("adc_calibration")) previous["adc_calibration"] = settings["adc_calibration"];
  previous["command"] = p.command;
  previous["exporter"] = p.exporter;
  previous["reference_accuracy"] = p.reference_accuracy;
  previous["reference_images"] = p.reference_images;

  std::vector<std::string> methods;
  for (CalibMethod m : options.methods) methods.push_back(kernels::calib_method_name(m));
  nlohmann::json layers = nlohmann::json::object();
  std::string written;
  for (const auto& l : result.layers) {
    nlohmann::json mse = nlohmann::json::object();
    for (const auto& m : l.methods) mse[kernels::calib_method_name(m.method)] = m.mse;
    layers[l.node] = {{"method", kernels::calib_method_name(l.written)},
                      {"granularity", kernels::adc_granularity_name(l.granularity)},
                      {"frac_bits", l.frac_bits},
                      {"sets", l.sets},
                      {"samples", l.samples},
                      {"psum_range", {l.psum_min, l.psum_max}},
                      {"mse_lsb2", mse}};
    const std::string name = kernels::calib_method_name(l.written);
    if (written.empty()) written = name;
    else if (written != name) written = "per-layer lowest mse";
  }
  const auto* first = result.layers.empty() ? nullptr : &result.layers.front();
  settings["adc"] = {{"bits", options.bits},
                     {"kind", written == "per-layer lowest mse" ? "mixed"
                              : first && kernels::is_linear_method(first->written) ? "linear" : "nonlinear"},
                     {"granularity", options.granularity ? kernels::adc_granularity_name(*options.granularity) : "kept"},
                     {"frac_bits", options.frac_bits ? nlohmann::json(*options.frac_bits) : nlohmann::json("kept")}};
  settings["adc_calibration"] = {
      {"tool", fmt::format("imcsim calibrate {}", IMCSIM_VERSION)},
      {"method", written},
      {"methods_fitted", methods},
      {"bits", options.bits},
      {"images", result.images},
      {"source", images_source},
      {"order", "layer by layer, upstream ADCs already re-calibrated"},
      {"percentile", options.percentile},
      {"bskmq_boundary_weight", options.boundary_weight ? nlohmann::json(*options.boundary_weight)
                                                        : nlohmann::json("flatten")},
      {"bskmq_levels", kernels::bskmq_levels_name(options.bskmq_levels)},
      {"rules", "docs/calibration.md"},
      {"golden", "regenerated by the C++ engine (imcsim calibrate), not by the Python reference"},
      {"layers", layers},
      {"previous", previous}};
  p.method_settings_json = settings.dump();
  p.exporter = fmt::format("imcsim calibrate {}", IMCSIM_VERSION);
  p.command = command;
  p.created_utc = utc_now();
  p.method = (p.method.empty() ? std::string() : p.method + "+") + "adc-calibration:" + written;
  p.reference_accuracy = 0.0;
  p.reference_images = 0;
}

graph::Graph with_adc_bits(const graph::Graph& g, uint32_t bits) {
  if (bits < 1 || bits > 16) throw std::invalid_argument(fmt::format("ADC bits must be in [1, 16], got {}", bits));
  graph::Graph out = g;
  for (size_t i = 0; i < out.nodes.size(); ++i) {
    auto* layer = std::get_if<graph::ImcLayer>(&out.nodes[i].op);
    if (!layer) continue;
    try {
      layer->adc = kernels::rescale_linear_adc(layer->adc, bits);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(fmt::format("{}: node '{}' (#{}): {}", g.source_file, out.nodes[i].name, i, e.what()));
    }
  }
  out.golden.clear();
  out.provenance.reference_accuracy = 0.0;
  out.provenance.reference_images = 0;
  return out;
}

}  // namespace imcsim::calibration
