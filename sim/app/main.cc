// imcsim command line: a thin layer that parses options, loads inputs, calls the library and
// writes the outputs. Exit codes: 0 success, 1 bad input or failed run (one-line error on
// stderr), 2 bad command line.
#include <fmt/format.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "sim/app/commands.h"
#include "sim/config/arch_config.h"
#include "sim/cost/analytical.h"
#include "sim/cost/peak.h"
#include "sim/data/idx_dataset.h"
#include "sim/engine/adc_override.h"
#include "sim/engine/functional_engine.h"
#include "sim/engine/monte_carlo.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "sim/mapping/schedule.h"
#include "sim/report/report.h"
#include "sim/sweep/overrides.h"
#include "sim/timing/carry_data.h"
#include "sim/timing/systemc_timing.h"

namespace po = boost::program_options;
using namespace imcsim;

namespace {

constexpr const char* kDefaultGraph = "workloads/fmnist_cnn/fmnist_cnn.imcg";
constexpr const char* kDefaultArch = "arch_configs/default.json";
constexpr const char* kDefaultOut = "results/default";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kTopUsage =
    "usage: imcsim <command> [options]\n"
    "\n"
    "Cycle-level simulator of analog in-memory-computing DNN accelerators.\n"
    "\n"
    "commands:\n"
    "  run       simulate a graph on an architecture over a dataset; report accuracy,\n"
    "            latency, energy and area (JSON + text)\n"
    "  inspect   print a graph's layers and its mapping onto an architecture\n"
    "  validate  check a graph and/or an architecture config, report the first problem\n"
    "  calibrate fit ADC references to calibration images' partial sums, write a new graph\n"
    "  peak      an architecture's peak power, area, throughput and efficiency (per tile, chip)\n"
    "  sweep     run a design-space sweep (arch keys, ADC bits, ...); CSV/JSON with Pareto front\n"
    "  sweep-merge  join the shards of a sweep\n"
    "\n"
    "Run 'imcsim <command> --help' for the options of a command.\n";

po::variables_map parse(const std::string& command, const po::options_description& desc,
                        const std::vector<std::string>& args) {
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(fmt::format("imcsim {}: {} (see 'imcsim {} --help')", command, e.what(), command));
  }
  return vm;
}

bool wants_help(const po::variables_map& vm, const std::string& command, const po::options_description& desc,
                const char* summary) {
  if (!vm.count("help")) return false;
  std::cout << "usage: imcsim " << command << " [options]\n\n" << summary << "\n\n" << desc << "\n";
  return true;
}

// Progress bar on stderr: redrawn in place on a terminal, a line per 10 % otherwise.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled), tty_(::isatty(STDERR_FILENO)) {}
  void operator()(uint64_t done, uint64_t total) {
    if (!enabled_ || total == 0) return;
    const int pct = static_cast<int>(100 * done / total);
    if (tty_) {
      const int width = 40, filled = width * pct / 100;
      fmt::print(stderr, "\r  [{}{}] {:3d}% {}/{} images", std::string(filled, '#'),
                 std::string(width - filled, '.'), pct, done, total);
      if (done == total) fmt::print(stderr, "\n");
    } else if (pct / 10 > last_decile_ || done == total) {
      last_decile_ = pct / 10;
      fmt::print(stderr, "  {:3d}% {}/{} images\n", pct, done, total);
    }
    std::fflush(stderr);
  }

 private:
  bool enabled_, tty_;
  int last_decile_ = -1;
};

// Non-idealities, seed and Monte Carlo results in the report (docs/report.md): run.seed,
// nonidealities (the effective settings and whether any is active), accuracy.monte_carlo.
void add_nonideal_report(nlohmann::json& rep, const config::ArchConfig& arch, uint64_t seed,
                         const std::vector<double>& mc_accuracies) {
  rep["run"]["seed"] = seed;
  auto ni = config::nonidealities_json(arch.nonidealities);
  ni["active"] = arch.nonidealities.active();
  rep["nonidealities"] = std::move(ni);
  if (mc_accuracies.empty()) return;
  const auto m = engine::summarize_monte_carlo(mc_accuracies);
  std::vector<uint64_t> seeds;
  for (uint64_t k = 0; k < mc_accuracies.size(); ++k) seeds.push_back(seed + k);
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  rep["accuracy"]["monte_carlo"] = {
      {"runs", m.runs},
      {"seeds", seeds},
      {"top1", mc_accuracies},
      {"mean", m.mean},
      {"std", opt(m.std_dev)},
      {"t_quantile", opt(m.t_quantile)},
      {"ci95", m.ci95_low ? nlohmann::json::array({*m.ci95_low, *m.ci95_high}) : nlohmann::json(nullptr)},
      {"method", "mean of the per-seed top-1 accuracies; std: sample standard deviation (n - 1); ci95: mean -/+ "
                 "t * std / sqrt(n), t the 97.5 % quantile of Student's t with n - 1 degrees of freedom"}};
}

std::string nonideal_summary(const nlohmann::json& rep) {
  std::string s;
  if (rep["nonidealities"]["active"].get<bool>()) {
    const auto& n = rep["nonidealities"];
    s += fmt::format("analog     seed {}: noise {} LSB, variation {}, transfer curve {} points, stuck-at {} "
                     "({} of them at max)\n", rep["run"]["seed"].get<uint64_t>(), n["adc_noise_sigma_lsb"].get<double>(),
                     n["conductance_variation_sigma"].get<double>(), n["transfer_curve"].size(),
                     n["stuck_at_rate"].get<double>(), n["stuck_at_max_fraction"].get<double>());
  }
  if (rep["accuracy"].contains("monte_carlo")) {
    const auto& m = rep["accuracy"]["monte_carlo"];
    const auto& seeds = m["seeds"];
    s += fmt::format("monte carlo {} seeds {}..{}: mean {:.2f} %", m["runs"].get<uint64_t>(),
                     seeds.front().get<uint64_t>(), seeds.back().get<uint64_t>(), 100 * m["mean"].get<double>());
    if (!m["std"].is_null())
      s += fmt::format(", std {:.3f} %, 95 % CI [{:.2f}, {:.2f}] %", 100 * m["std"].get<double>(),
                       100 * m["ci95"][0].get<double>(), 100 * m["ci95"][1].get<double>());
    s += "\n";
  }
  return s;
}

int cmd_run(const std::vector<std::string>& args, const std::string& command_line) {
  po::options_description desc("run options");
  desc.add_options()("help,h", "show this help")
      ("graph,g", po::value<std::string>()->default_value(kDefaultGraph), "network graph (.imcg)")
      ("arch,a", po::value<std::string>()->default_value(kDefaultArch), "architecture config (JSON)")
      ("dataset-dir,d", po::value<std::string>()->default_value(data::kDefaultFashionMnistDir),
       "directory with the Fashion-MNIST IDX .gz files")
      ("images,n", po::value<uint64_t>()->default_value(0), "number of test images (0 = all)")
      ("threads,j", po::value<unsigned>()->default_value(0), "worker threads (0 = all cores)")
      ("out,o", po::value<std::string>()->default_value(kDefaultOut),
       "output directory; the report is <out>/report.json")
      ("seed", po::value<uint64_t>()->default_value(0),
       "seed of the analog non-idealities (config \"nonidealities\"): the programmed chip and the noise")
      ("mc", po::value<uint64_t>()->default_value(0),
       "Monte Carlo: repeat the dataset run for seeds seed..seed+N-1; report each accuracy, the mean and its "
       "95 % confidence interval")
      ("timing", po::value<std::string>()->default_value("systemc"),
       "latency model: systemc (cycle-accurate, event-driven) or analytical (closed form)")
      ("execution", po::value<std::string>()->default_value("layer"),
       "layer (one node at a time) or pipelined (ISAAC-style: nodes on their own tiles, images stream)")
      ("replication", po::value<std::string>()->default_value("none"),
       "none, or auto: replicate the slowest layers' weights into free tiles (pipelined execution)")
      ("stream-images", po::value<uint64_t>()->default_value(1),
       "images streamed back to back through the SystemC timing model")
      ("trace", po::value<std::string>(), "write a VCD waveform of the SystemC model to this file")
      ("trace-window", po::value<std::string>(), "cycles START:END of the waveform (default: all)")
      ("timing-only", "no dataset and no values: latency, energy (every row driven: worst case) and area")
      ("carry-data", "the SystemC model carries the values of the streamed images (--stream-images, the first "
       "dataset images) and checks every node output against the functional engine; exit 1 on a mismatch")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "KEY=VALUE (repeatable): an arch-config key (JSON pointer /adc/bits, or adc.bits) applied before the "
       "config is validated; graph.adc_bits=N, graph.adc_method=rescale|<calibration method> and "
       "graph.calib_images=N are short names of /adc/layer_bits_override, /adc/override_references and "
       "/adc/override_calibration_images (docs/sweep.md)")
      ("quiet,q", "no progress bar and no text summary");
  const auto vm = parse("run", desc, args);
  if (wants_help(vm, "run", desc,
                 "Runs every test image through the graph, bit-exactly as the modelled hardware\n"
                 "computes it, and reports accuracy, latency (cycle-accurate SystemC model, or the\n"
                 "closed form), energy (counted events) and area. The full report goes to\n"
                 "<out>/report.json (docs/report.md)."))
    return 0;
  const bool quiet = vm.count("quiet") > 0;
  const std::string timing_model = vm["timing"].as<std::string>();
  if (timing_model != "systemc" && timing_model != "analytical")
    throw UsageError(fmt::format("imcsim run: --timing must be systemc or analytical, got '{}'", timing_model));
  timing::SystemcTimingOptions timing_options;
  const std::string execution = vm["execution"].as<std::string>();
  if (execution == "pipelined") timing_options.execution = timing::Execution::kPipelined;
  else if (execution != "layer")
    throw UsageError(fmt::format("imcsim run: --execution must be layer or pipelined, got '{}'", execution));
  timing_options.images = vm["stream-images"].as<uint64_t>();
  if (timing_options.images == 0) throw UsageError("imcsim run: --stream-images must be at least 1");
  if (timing_model != "systemc" && (execution != "layer" || timing_options.images != 1))
    throw UsageError("imcsim run: --execution pipelined and --stream-images need --timing systemc");
  if (vm.count("trace")) {
    if (timing_model != "systemc") throw UsageError("imcsim run: --trace needs --timing systemc");
    timing_options.vcd_file = vm["trace"].as<std::string>();
  }
  if (vm.count("trace-window")) {
    const std::string w = vm["trace-window"].as<std::string>();
    const auto colon = w.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument(w);
      timing_options.trace_window_start = std::stoull(w.substr(0, colon));
      timing_options.trace_window_end = std::stoull(w.substr(colon + 1));
    } catch (const std::exception&) {
      throw UsageError(fmt::format("imcsim run: --trace-window expects START:END in cycles, got '{}'", w));
    }
    if (timing_options.trace_window_end <= timing_options.trace_window_start)
      throw UsageError(fmt::format("imcsim run: --trace-window END must exceed START, got '{}'", w));
  }

  const std::string graph_file = vm["graph"].as<std::string>();
  const std::string arch_file = vm["arch"].as<std::string>();
  std::vector<sweep::Setting> settings;
  if (vm.count("set"))
    for (const auto& s : vm["set"].as<std::vector<std::string>>()) settings.push_back(sweep::parse_setting(s, "--set", false));
  const config::ArchConfig arch = sweep::load_arch_config_with(arch_file, settings);
  unsigned threads = vm["threads"].as<unsigned>();
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  // The arch config's adc.layer_bits_override (sweeps; --set graph.adc_bits): the simulated graph
  // may differ from the file's, and the report's adc_override section says how.
  const engine::AdcOverride adc_override = engine::apply_adc_override(
      graph::load_graph(graph_file), arch.adc, arch_file, vm["dataset-dir"].as<std::string>(), threads);
  const graph::Graph& graph = adc_override.graph;
  mapping::Mapping mapping = mapping::map_graph(graph, mapping::ArrayGeometry::from(arch));
  const std::string replication = vm["replication"].as<std::string>();
  if (replication == "auto") {
    if (timing_options.execution != timing::Execution::kPipelined)
      throw UsageError("imcsim run: --replication auto balances a pipeline: use it with --execution pipelined");
    mapping = mapping::replicate_for_pipeline(graph, std::move(mapping), arch);
  } else if (replication != "none") {
    throw UsageError(fmt::format("imcsim run: --replication must be none or auto, got '{}'", replication));
  }

  const bool timing_only = vm.count("timing-only") > 0;
  const bool carry_data = vm.count("carry-data") > 0;
  if (carry_data && (timing_model != "systemc" || timing_only || replication != "none" || arch.nonidealities.active()))
    throw UsageError("imcsim run: --carry-data needs --timing systemc, a dataset run (not --timing-only), no "
                     "--replication and no active non-idealities (it carries the ideal analog model)");
  std::vector<std::vector<int32_t>> carry_inputs;  // input codes of the streamed images
  if (graph.shape_only && !timing_only)
    throw std::runtime_error(fmt::format("{}: a shape_only graph has no weights: run it with --timing-only",
                                         graph_file));
  const uint64_t seed = vm["seed"].as<uint64_t>(), mc_runs = vm["mc"].as<uint64_t>();
  if (mc_runs > 0 && timing_only) throw UsageError("imcsim run: --mc needs a dataset run (not --timing-only)");
  if (mc_runs > 0 && seed + (mc_runs - 1) < seed) throw UsageError("imcsim run: --seed + --mc exceeds 2^64");
  std::vector<double> mc_accuracies;  // per seed, seed .. seed + mc_runs - 1
  engine::DatasetResult result;  // stays empty (0 images) for a timing-only run
  std::string images_file, labels_file;
  if (!timing_only) {
    const auto dataset = data::read_fashion_mnist(vm["dataset-dir"].as<std::string>(), false);
    const auto& shape = graph.input.shape.dims;
    if (shape[0] != 1 || shape[1] != dataset.rows || shape[2] != dataset.cols)
      throw std::runtime_error(fmt::format("{}: graph input shape [{}, {}, {}] does not match the dataset's "
                                           "1x{}x{} images ({})", graph_file, shape[0], shape[1], shape[2],
                                           dataset.rows, dataset.cols, dataset.images_file));
    uint64_t count = vm["images"].as<uint64_t>();
    if (count == 0 || count > dataset.count) count = dataset.count;
    engine::FunctionalEngine engine(graph, arch.nonidealities, seed);
    if (!quiet)
      fmt::print(stderr, "imcsim run: {} on {} ({} images, {} threads)\n", graph_file, arch_file, count, threads);
    Progress progress(!quiet);
    result = engine::run_dataset(engine, dataset.pixels, dataset.labels, count, threads,
                                 [&](uint64_t d, uint64_t t) { progress(d, t); });
    if (mc_runs > 0) mc_accuracies.push_back(result.accuracy());
    for (uint64_t k = 1; k < mc_runs; ++k) {
      // Each seed programs its own chip (faults, variation) and draws its own noise.
      const engine::FunctionalEngine mc_engine(graph, arch.nonidealities, seed + k);
      if (!quiet) fmt::print(stderr, "imcsim run: Monte Carlo seed {} ({} of {})\n", seed + k, k + 1, mc_runs);
      Progress mc_progress(!quiet);
      mc_accuracies.push_back(engine::run_dataset(mc_engine, dataset.pixels, dataset.labels, count, threads,
                                                  [&](uint64_t d, uint64_t t) { mc_progress(d, t); })
                                  .accuracy());
    }
    images_file = dataset.images_file;
    labels_file = dataset.labels_file;
    const size_t pixels = size_t{dataset.rows} * dataset.cols;
    for (uint64_t i = 0; carry_data && i < timing_options.images; ++i) {
      if (i >= dataset.count) throw UsageError("imcsim run: --carry-data streams more images than the dataset has");
      carry_inputs.emplace_back(pixels);
      engine::pixels_to_codes(graph.input, std::span<const uint8_t>(dataset.pixels).subspan(i * pixels, pixels),
                              carry_inputs.back());
    }
  }
  auto cost = cost::analytical_cost(graph, mapping, arch, result.counters);
  std::optional<timing::SystemcTimingResult> systemc;
  std::optional<timing::CarriedDataCheck> carry_check;
  if (timing_model == "systemc") {
    // Timing does not depend on data values: one image through the cycle-accurate model.
    timing_options.fabric = timing::fabric_options(arch);
    std::unique_ptr<timing::GraphDataPath> datapath;
    if (carry_data) {
      datapath = std::make_unique<timing::GraphDataPath>(graph);
      for (auto& in : carry_inputs) datapath->add_image(std::move(in));
      timing_options.data = datapath.get();
    }
    systemc = timing::run_systemc_timing(mapping::build_schedule(graph, mapping, arch), timing_options);
    cost::set_latency(cost, systemc->cycles_per_image, arch.clock_mhz);
    if (datapath)
      carry_check = timing::check_carried_data(*datapath, engine::FunctionalEngine(graph, arch.nonidealities, seed),
                                               systemc->data_error);
  }

  report::RunInfo info{command_line, graph_file, arch_file, images_file, labels_file, threads};
  auto rep = report::build_report(info, graph, arch, mapping, result, cost, systemc ? &*systemc : nullptr);
  add_nonideal_report(rep, arch, seed, mc_accuracies);
  if (!settings.empty()) {
    nlohmann::json set = nlohmann::json::object();
    for (const auto& s : settings) set[s.key] = s.value;
    rep["run"]["set"] = std::move(set);
  }
  rep["adc_override"] = adc_override.report;
  if (carry_check) rep["carry_data"] = carry_check->to_json();
  const std::filesystem::path out = std::filesystem::path(vm["out"].as<std::string>()) / "report.json";
  report::write_file_atomically(out, rep.dump(2) + "\n");
  if (!quiet) {
    std::cout << report::text_summary(rep);
    std::cout << nonideal_summary(rep);
    std::cout << engine::adc_override_summary(adc_override.report);
    std::cout << fmt::format("report     {} (simulated {} images in {:.1f} s)\n", out.string(), result.images,
                             result.wall_seconds);
  }
  if (carry_check) {
    (carry_check->ok() ? std::cout : std::cerr) << carry_check->summary() << "\n";
    if (!carry_check->ok()) return 1;
  }
  return 0;
}

int cmd_inspect(const std::vector<std::string>& args) {
  po::options_description desc("inspect options");
  desc.add_options()("help,h", "show this help")
      ("graph,g", po::value<std::string>()->default_value(kDefaultGraph), "network graph (.imcg)")
      ("arch,a", po::value<std::string>()->default_value(kDefaultArch), "architecture config (JSON)")
      ("json", "print JSON instead of a table");
  const auto vm = parse("inspect", desc, args);
  if (wants_help(vm, "inspect", desc, "Prints the graph's layers, the IMC parameters of each layer and its mapping\n"
                                      "onto the architecture's arrays and tiles."))
    return 0;
  const auto graph = graph::load_graph(vm["graph"].as<std::string>());
  const auto arch = config::load_arch_config(vm["arch"].as<std::string>());
  const auto m = mapping::map_graph(graph, mapping::ArrayGeometry::from(arch));
  if (vm.count("json")) {
    std::cout << nlohmann::json{{"graph", report::graph_summary_json(graph)}, {"mapping", report::mapping_json(m)}}.dump(2)
              << "\n";
    return 0;
  }
  const auto& p = graph.provenance;
  fmt::print("graph {} ({}): {} nodes, input [{}], {} classes, {} golden pairs\n", graph.name, graph.source_file,
             graph.nodes.size(), fmt::join(graph.input.shape.dims, "x"), graph.num_classes, graph.golden.size());
  if (!p.method.empty())
    fmt::print("  trained by {} (method {}, seed {}): float {:.2f} %, fake-quant {:.2f} %, reference {:.2f} % on {} images\n",
               p.exporter, p.method, p.seed, 100 * p.float_accuracy, 100 * p.fake_quant_accuracy,
               100 * p.reference_accuracy, p.reference_images);
  fmt::print("\n{:<10} {:<9} {:<14} {:>4} {:>4} {:>4} {:>5} {:<20} {:<28}\n", "node", "op", "output", "Bx", "Bw",
             "Bc", "Bdac", "encoding", "ADC");
  for (const auto& n : graph.nodes) {
    std::string bx, bw, bc, bd, enc, adc;
    if (const auto* l = std::get_if<graph::ImcLayer>(&n.op)) {
      bx = std::to_string(graph.tensor_quant(n.inputs[0]).bits);
      bw = std::to_string(l->weight_bits), bc = std::to_string(l->cell_bits), bd = std::to_string(l->dac_bits);
      enc = std::string(kernels::encoding_name(l->encoding)) + (l->ashift_offset ? "+ashift" : "");
      adc = fmt::format("{} {}b/{}", kernels::adc_kind_name(l->adc.kind), l->adc.bits,
                        kernels::adc_granularity_name(l->adc.granularity));
    }
    fmt::print("{:<10} {:<9} {:<14} {:>4} {:>4} {:>4} {:>5} {:<20} {:<28}\n", n.name, graph::op_name(n.op),
               fmt::format("{}", fmt::join(n.output_shape.dims, "x")), bx, bw, bc, bd, enc, adc);
  }
  fmt::print("\nmapping onto {} ({}x{} arrays, {} arrays/tile, {} tiles):\n", arch.name, m.geometry.rows,
             m.geometry.cols, m.geometry.arrays_per_tile, m.geometry.tiles);
  fmt::print("{:<10} {:>6} {:>5} {:>6} {:>3} {:>3} {:>7} {:>8} {:>9} {:>7} {:>6} {:>6}\n", "node", "K", "N",
             "pos", "T", "S", "rowtile", "colstile", "arrays", "tiles", "ADCb", "util");
  for (const auto& l : m.layers)
    fmt::print("{:<10} {:>6} {:>5} {:>6} {:>3} {:>3} {:>7} {:>8} {:>9} {:>7} {:>6} {:>5.1f}%\n", l.node, l.rows_k,
               l.cols_n, l.positions, l.input_groups, l.slices, l.row_tiles, l.col_tiles, l.arrays, l.tiles,
               l.adc_bits, 100 * l.utilisation);
  fmt::print("total: {} arrays on {} of {} tiles, utilisation {:.1f} % of the used arrays' cells\n", m.arrays_used,
             m.tiles_used, m.geometry.tiles, 100 * m.utilisation);
  return 0;
}

int cmd_peak(const std::vector<std::string>& args) {
  po::options_description desc("peak options");
  desc.add_options()("help,h", "show this help")
      ("arch,a", po::value<std::string>()->default_value(kDefaultArch), "architecture config (JSON)")
      ("weight-bits", po::value<uint32_t>()->default_value(16), "weight precision an operation counts at")
      ("input-bits", po::value<uint32_t>()->default_value(16), "input precision an operation counts at")
      ("json", "print JSON instead of a table");
  const auto vm = parse("peak", desc, args);
  if (wants_help(vm, "peak", desc, "Every array busy every step: power and area per tile and per chip by component,\n"
                                   "peak GOPS, GOPS/W and GOPS/(s*mm2) (docs/cost_model.md, \"Peak\")."))
    return 0;
  const auto arch = config::load_arch_config(vm["arch"].as<std::string>());
  cost::PeakOptions options{vm["weight-bits"].as<uint32_t>(), vm["input-bits"].as<uint32_t>()};
  if (options.weight_bits == 0 || options.input_bits == 0 || options.weight_bits > 64 || options.input_bits > 64)
    throw UsageError("imcsim peak: --weight-bits and --input-bits must be in 1..64");
  const auto r = cost::peak_characteristics(arch, options);
  const auto j = report::peak_json(r, options);
  if (vm.count("json")) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  fmt::print("{} ({}): step {} cycles = {:.1f} ns\n", arch.name, vm["arch"].as<std::string>(), r.step_cycles, r.step_ns);
  fmt::print("{:<22} {:>12} {:>14}\n", "per tile", "power mW", "area mm2");
  for (size_t k = 0; k < cost::kComponentCount; ++k)
    if (r.tile_power_mw_by_component[k] > 0 || r.tile_area_um2_by_component[k] > 0)
      fmt::print("{:<22} {:>12.3f} {:>14.6f}\n", cost::component_name(static_cast<cost::Component>(k)),
                 r.tile_power_mw_by_component[k], r.tile_area_um2_by_component[k] * 1e-6);
  for (size_t k = 0; k < r.tile_fixed_power_mw.size(); ++k)
    fmt::print("{:<22} {:>12.3f} {:>14.6f}\n", r.tile_fixed_power_mw[k].name, r.tile_fixed_power_mw[k].value,
               r.tile_fixed_area_um2[k].value * 1e-6);
  fmt::print("{:<22} {:>12.3f} {:>14.6f}\n", "tile total", r.tile_power_mw, r.tile_area_um2 * 1e-6);
  fmt::print("chip: {} tiles, {:.2f} W, {:.2f} mm2\n", arch.chip.tiles, r.chip_power_w, r.chip_area_mm2);
  fmt::print("peak at {}-bit weights x {}-bit inputs: {:.1f} GOPS, {:.1f} GOPS/W, {:.2f} GOPS/(s*mm2)\n",
             options.weight_bits, options.input_bits, r.peak_gops, r.gops_per_w, r.gops_per_mm2);
  return 0;
}

int cmd_validate(const std::vector<std::string>& args) {
  po::options_description desc("validate options");
  desc.add_options()("help,h", "show this help")
      ("graph,g", po::value<std::string>(), "network graph (.imcg) to check")
      ("arch,a", po::value<std::string>(), "architecture config (JSON) to check");
  const auto vm = parse("validate", desc, args);
  if (wants_help(vm, "validate", desc, "Checks a graph, a config, or both (and then whether the graph maps onto the\n"
                                       "architecture). Prints 'ok' lines, or the first problem and exits 1."))
    return 0;
  if (!vm.count("graph") && !vm.count("arch")) throw UsageError("imcsim validate: give --graph and/or --arch");
  std::optional<graph::Graph> graph;
  std::optional<config::ArchConfig> arch;
  if (vm.count("graph")) {
    graph = graph::load_graph(vm["graph"].as<std::string>());
    fmt::print("ok: graph {} ({} nodes, {} golden pairs)\n", vm["graph"].as<std::string>(), graph->nodes.size(),
               graph->golden.size());
  }
  if (vm.count("arch")) {
    arch = config::load_arch_config(vm["arch"].as<std::string>());
    fmt::print("ok: arch config {} ({})\n", vm["arch"].as<std::string>(), arch->name);
  }
  if (graph && arch) {
    const auto m = mapping::map_graph(*graph, mapping::ArrayGeometry::from(*arch));
    fmt::print("ok: mapping uses {} arrays on {} tiles\n", m.arrays_used, m.tiles_used);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string command_line = "imcsim";
  for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
  try {
    if (argc < 2) {
      std::cerr << kTopUsage;
      return 2;
    }
    const std::string command = argv[1];
    const std::vector<std::string> args(argv + 2, argv + argc);
    if (command == "--help" || command == "-h" || command == "help") {
      std::cout << kTopUsage;
      return 0;
    }
    if (command == "--version") {
      std::cout << "imcsim " << IMCSIM_VERSION << "\n";
      return 0;
    }
    if (command == "run") return cmd_run(args, command_line);
    if (command == "inspect") return cmd_inspect(args);
    if (command == "validate") return cmd_validate(args);
    if (command == "calibrate") return cmd_calibrate(args);
    if (command == "peak") return cmd_peak(args);
    if (command == "sweep") return cmd_sweep(args);
    if (command == "sweep-merge") return cmd_sweep_merge(args);
    throw UsageError(fmt::format("imcsim: unknown command '{}' (expected run, inspect, validate, calibrate, peak, sweep "
                                 "or sweep-merge)", command));
  } catch (const UsageError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "imcsim: error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "imcsim: error: " << e.what() << "\n";
    return 1;
  }
}
