// imcsim_bench_kernels: times the functional engine (bit-exact, ADCs included) on one graph and
// prints one line of figures: wall and CPU seconds, images/s, effective MAC/s (sum over IMC
// layers of positions x K x N per image, / wall), peak RSS, the kernel each IMC layer takes
// (FunctionalEngine::layer_kernel, counted per kind) and a digest of the results (output
// codes or predictions and event counters: equal across kernel paths and builds). Driven by
// scripts/bench_kernels.sh.
//
//   imcsim_bench_kernels --graph G.imcg [--images N] [--threads J] [--image-threads J]
//                        [--kernel reference|portable|native] [--noise SIGMA_LSB]
//                        [--dataset]   (Fashion-MNIST test images via run_dataset; else random codes)
#include <sys/resource.h>

#include <bit>
#include <chrono>
#include <map>
#include <optional>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "models/crossbar/fast_mvm.h"
#include "models/digital/requant.h"
#include "sim/data/idx_dataset.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"

using namespace imcsim;

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec) + double(u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "imcsim_bench_kernels: %s\nusage: imcsim_bench_kernels --graph G.imcg [--images N] "
                       "[--threads J] [--image-threads J] [--kernel reference|portable|native] [--noise SIGMA] "
                       "[--dataset]\n", why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string graph_file, kernel;
  uint64_t images = 1;
  unsigned threads = 0, image_threads = 1;
  double noise = 0;
  bool dataset = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--graph") graph_file = value();
    else if (a == "--images") images = std::stoull(value());
    else if (a == "--threads") threads = static_cast<unsigned>(std::stoul(value()));
    else if (a == "--image-threads") image_threads = static_cast<unsigned>(std::stoul(value()));
    else if (a == "--kernel") kernel = value();
    else if (a == "--noise") noise = std::stod(value());
    else if (a == "--dataset") dataset = true;
    else usage(("unknown option " + a).c_str());
  }
  if (graph_file.empty()) usage("--graph is required");
  try {
    std::optional<kernels::KernelPath> path;
    if (!kernel.empty()) {
      path = kernels::parse_kernel_path(kernel);
      if (!path) usage("--kernel: expected reference, portable or native");
    }
    const graph::Graph g = graph::load_graph(graph_file);
    kernels::NonidealSpec ni;
    ni.adc_noise_sigma_lsb = noise;
    const double t_load = cpu_seconds();
    const auto setup_start = std::chrono::steady_clock::now();
    engine::FunctionalEngine eng(g, ni, 1, path);
    eng.set_image_threads(image_threads);
    const double setup_cpu = cpu_seconds() - t_load;
    const double setup_wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - setup_start).count();
    // MACs of one image: positions x K x N per IMC layer.
    double macs = 0;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const auto s = eng.imc_shape(i);
      macs += double(s.positions) * s.rows_k * s.cols_n;
    }
    // Which kernel each IMC layer takes (FunctionalEngine::layer_kernel), as "kind:count,...".
    std::map<std::string, int> kinds;
    for (size_t i = 0; i < g.nodes.size(); ++i)
      if (const std::string k = eng.layer_kernel(i); !k.empty()) ++kinds[k];
    std::string layer_kernels;
    for (const auto& [k, count] : kinds) layer_kernels += fmt::format("{}{}:{}", layer_kernels.empty() ? "" : ",", k, count);
    const size_t elems = g.input.shape.elements();
    const uint32_t bits = g.input.quant.bits;
    // Random input codes, drawn before the clock starts (the figures are the simulator's).
    std::vector<std::vector<int32_t>> random_images;
    if (!dataset) {
      std::mt19937_64 rng(12345);
      random_images.assign(images, std::vector<int32_t>(elems));
      for (auto& codes : random_images)
        for (auto& c : codes) c = static_cast<int32_t>(rng() & ((uint64_t{1} << bits) - 1));
    }
    const auto start = std::chrono::steady_clock::now();
    const double cpu0 = cpu_seconds();
    uint64_t correct = 0;
    // Digest of the results (every node's output codes or the predictions, and the event
    // counters): equal digests across builds / kernel paths mean bit-identical results.
    kernels::Digest digest;
    auto digest_counters = [&](const engine::EngineCounters& c) {
      for (const auto& n : c.per_node) {
        digest.add(static_cast<int64_t>(n.row_drives));
        digest.add(static_cast<int64_t>(n.adc_conversions));
        digest.add(static_cast<int64_t>(n.adc_saturations));
        digest.add(n.psum_min);
        digest.add(n.psum_max);
      }
    };
    engine::EngineCounters counters;
    double wall = 0, cpu = 0;
    if (dataset) {
      const auto ds = data::read_fashion_mnist(data::kDefaultFashionMnistDir, false);
      if (images > ds.count) images = ds.count;
      const auto r = engine::run_dataset(eng, ds.pixels, ds.labels, images, threads, nullptr);
      wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      cpu = cpu_seconds() - cpu0;
      correct = r.correct;
      for (uint32_t p : r.predictions) digest.add(p);
      digest_counters(r.counters);
    } else {
      // One image after the other (image-threads share each layer); the clocks run only while
      // the engine does (each result is digested outside: the digest is the bench's check).
      for (uint64_t im = 0; im < images; ++im) {
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = cpu_seconds();
        const auto r = eng.infer(random_images[im], &counters, nullptr, nullptr, im);
        wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        cpu += cpu_seconds() - c0;
        for (const auto& node : r.node_codes)
          for (int32_t v : node) digest.add(v);
        for (double v : r.output_values) digest.add(static_cast<int64_t>(std::bit_cast<uint64_t>(v)));
      }
      digest_counters(counters);
    }
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    fmt::print("graph={} kernel={} images={} threads={} image_threads={} noise={} wall_s={:.4f} cpu_s={:.4f} "
               "setup_cpu_s={:.3f} setup_wall_s={:.3f} images_per_s={:.2f} gmac_per_s={:.3f} peak_rss_mib={:.1f}{} "
               "layer_kernels={} digest={:016x}\n",
               graph_file, kernels::kernel_path_name(eng.kernel_path()), images, threads, image_threads, noise, wall,
               cpu, setup_cpu, setup_wall, double(images) / wall, macs * double(images) / wall * 1e-9,
               double(u.ru_maxrss) / 1024.0,
               dataset ? fmt::format(" accuracy={:.4f}", double(correct) / double(images)) : std::string(),
               layer_kernels, digest.value());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "imcsim_bench_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}
