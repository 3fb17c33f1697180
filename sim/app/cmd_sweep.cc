// imcsim sweep / sweep-merge: design-space sweeps (docs/sweep.md). Each point is one
// `imcsim run` child process (the SystemC kernel can be elaborated once per process), -j at a
// time; its report is written atomically by the run into OUT/points/<key>/, so a sweep killed
// at any moment and restarted with the same command re-runs only the points without a report.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "sim/app/commands.h"
#include "sim/config/arch_config.h"
#include "sim/engine/adc_override.h"
#include "sim/graph/graph_loader.h"
#include "sim/mapping/mapping.h"
#include "sim/report/report.h"
#include "sim/sweep/sweep.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace imcsim;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr const char* kSweepSummary =
    "Runs one 'imcsim run' per point of a design space: arch-config keys (JSON pointers such as\n"
    "/adc/bits or dotted adc.bits; graph.adc_bits, graph.adc_method = rescale or a calibration\n"
    "method and graph.calib_images are short for /adc/layer_bits_override, /adc/override_references\n"
    "and /adc/override_calibration_images), the graph file (graph) and run options (run.execution,\n"
    "run.timing, ...), as a grid or seeded random samples, -j points at a time. Each point's\n"
    "report goes to OUT/points/<key>/report.json (atomically); a restarted sweep skips the points\n"
    "that have one. Results: OUT/sweep.csv and OUT/sweep.json, one row per point with accuracy,\n"
    "latency, throughput, energy, area, TOPS/W, TOPS/mm2, the settings, the Pareto flag and the\n"
    "run command that reproduces it. --shard I/N runs every N-th point; 'imcsim sweep-merge'\n"
    "joins the shards. docs/sweep.md.\n"
    "\n"
    "--set forms: KEY=V1,V2,...  KEY=FROM:TO[:STEP]  KEY=FROM:TO:xFACTOR  K1+K2=V1,V2 (tied keys)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

po::variables_map parse(const std::string& command, const po::options_description& desc,
                        const po::positional_options_description* pos, const std::vector<std::string>& args) {
  po::variables_map vm;
  try {
    auto parser = po::command_line_parser(args).options(desc);
    if (pos) parser.positional(*pos);
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(fmt::format("imcsim {}: {} (see 'imcsim {} --help')", command, e.what(), command));
  }
  return vm;
}

std::optional<json> read_json_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string last_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

std::string settings_text(const sweep::Point& p) {
  std::string s;
  for (const auto& x : p.settings) {
    if (!s.empty()) s += " ";
    s += x.key + "=" + sweep::value_text(x.value);
  }
  return s;
}

// Every point must be runnable before anything runs: its config (with the settings applied)
// valid, its graph loadable, the ADC override applicable (rescale) and the mapping possible.
void validate_points(const sweep::SweepSpec& spec, const std::vector<sweep::Point>& points) {
  std::map<std::string, graph::Graph> graphs;
  for (const auto& p : points) {
    try {
      auto it = graphs.find(p.graph);
      if (it == graphs.end()) it = graphs.emplace(p.graph, graph::load_graph(p.graph)).first;
      const graph::Graph& g = it->second;
      if (g.shape_only && spec.images != 0)
        throw sweep::SpecError(fmt::format("{}: a shape_only graph has no weights: sweep it with images 0 (timing only)",
                                           p.graph));
      const auto arch = sweep::load_arch_config_with(spec.arch, p.settings);
      // The ADC override when it needs no data (rescale): refused on a non-linear ADC here.
      if (arch.adc.layer_bits_override != 0 && arch.adc.override_references == "rescale")
        mapping::map_graph(engine::apply_adc_override(g, arch.adc, spec.arch, spec.dataset_dir, 1).graph,
                           mapping::ArrayGeometry::from(arch));
      else
        mapping::map_graph(g, mapping::ArrayGeometry::from(arch));
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("point {} ({}): {}", p.index, settings_text(p), e.what()));
    }
  }
}

fs::path point_dir(const fs::path& out, const sweep::Point& p) { return out / "points" / p.key; }

// The row of a finished point (its report present and readable), or nullopt.
std::optional<ojson> finished_row(const sweep::SweepSpec& spec, const fs::path& out, const sweep::Point& p) {
  const auto rep = read_json_file(point_dir(out, p) / "report.json");
  if (!rep || !rep->is_object() || !rep->contains("energy")) return std::nullopt;
  return sweep::result_row(spec, p, *rep);
}

void write_outputs(const sweep::SweepSpec& spec, const fs::path& out, const std::string& stem,
                   std::vector<ojson> rows, const std::vector<std::string>& missing) {
  const auto objectives = spec.objectives.empty() ? sweep::default_objectives(spec) : spec.objectives;
  sweep::mark_pareto(rows, objectives, spec.pareto_group);
  report::write_file_atomically(out / (stem + ".csv"), sweep::rows_csv(rows));
  report::write_file_atomically(out / (stem + ".json"),
                                sweep::rows_document(spec, objectives, rows, missing).dump(2) + "\n");
}

std::string self_exe() {
  std::error_code ec;
  const auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot find the imcsim executable (/proc/self/exe)");
  return p.string();
}

struct Running {
  sweep::Point point;
  std::chrono::steady_clock::time_point start;
};

// Starts `imcsim run` for a point; its stdout and stderr go to run.log. The child is killed if
// the sweep dies (PR_SET_PDEATHSIG), so a kill -9 of the sweep leaves no orphan runs behind.
pid_t start_point(const std::string& exe, const std::vector<std::string>& argv_s, const fs::path& log) {
  std::vector<char*> argv;
  for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string log_s = log.string();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(fmt::format("fork failed: {}", std::strerror(errno)));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

std::string fmt_seconds(double s) {
  if (s < 120) return fmt::format("{:.1f} s", s);
  if (s < 7200) return fmt::format("{:.1f} min", s / 60);
  return fmt::format("{:.1f} h", s / 3600);
}

}  // namespace

static int cmd_sweep_impl(const std::vector<std::string>& args) {
  po::options_description desc("sweep options");
  desc.add_options()("help,h", "show this help")
      ("spec", po::value<std::string>(), "sweep file (JSON, docs/sweep.md); also the first positional argument")
      ("graph,g", po::value<std::string>(), "network graph (.imcg) (default: the sweep file's, else the bundled CNN)")
      ("arch,a", po::value<std::string>(), "architecture config (default: the sweep file's, else arch_configs/default.json)")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "an axis KEY=V1,V2,... | KEY=FROM:TO[:STEP] | KEY=FROM:TO:xF | K1+K2=V1,V2 (repeatable; replaces the "
       "sweep file's axis of the same key)")
      ("mode", po::value<std::string>(), "grid (every combination) or random (--samples draws)")
      ("samples", po::value<uint64_t>(), "random mode: number of points drawn")
      ("seed", po::value<uint64_t>(), "random mode: seed of the draw (default 0)")
      ("images,n", po::value<std::string>(), "test images per point: N, all, or 0 = timing only (default 0)")
      ("dataset-dir,d", po::value<std::string>(), "directory with the Fashion-MNIST IDX .gz files")
      ("objectives", po::value<std::string>(),
       "Pareto objectives, e.g. accuracy:max,energy:min,latency:min (default: those three; accuracy only "
       "when images are measured)")
      ("pareto-group", po::value<std::string>(),
       "KEY[,KEY]: one Pareto front per value of these swept keys (e.g. graph: one front per network)")
      ("jobs,j", po::value<unsigned>()->default_value(0), "points run at once (0 = one per core)")
      ("run-threads", po::value<unsigned>()->default_value(0), "threads of each run (0 = cores / jobs, at least 1)")
      ("shard", po::value<std::string>(), "I/N: run only points with index % N == I (0-based); auto: from Slurm / MPI")
      ("out,o", po::value<std::string>()->default_value("results/scratch/sweep"), "output directory")
      ("dry-run", "list the points (key, settings, run command) and exit")
      ("quiet,q", "no progress lines");
  po::positional_options_description pos;
  pos.add("spec", 1);
  const auto vm = parse("sweep", desc, &pos, args);
  if (vm.count("help")) {
    std::cout << "usage: imcsim sweep [SPEC.json] [--set KEY=V1,V2 ...] [options]\n\n" << kSweepSummary << "\n\n"
              << desc << "\n";
    return 0;
  }
  const bool quiet = vm.count("quiet") > 0;
  sweep::SweepSpec spec;
  if (vm.count("spec")) spec = sweep::load_spec(vm["spec"].as<std::string>());
  if (vm.count("graph")) spec.graph = vm["graph"].as<std::string>();
  if (vm.count("arch")) spec.arch = vm["arch"].as<std::string>();
  if (vm.count("dataset-dir")) spec.dataset_dir = vm["dataset-dir"].as<std::string>();
  if (vm.count("mode")) {
    const auto m = vm["mode"].as<std::string>();
    if (m != "grid" && m != "random") throw sweep::SpecError(fmt::format("--mode: expected grid or random, got '{}'", m));
    spec.random = m == "random";
  }
  if (vm.count("samples")) spec.samples = vm["samples"].as<uint64_t>();
  if (vm.count("seed")) spec.seed = vm["seed"].as<uint64_t>();
  if (vm.count("images")) {
    const auto n = vm["images"].as<std::string>();
    if (n == "all") spec.images = -1;
    else {
      const auto v = sweep::parse_value(n);
      if (!v.is_number_unsigned()) throw sweep::SpecError(fmt::format("--images: expected N >= 0 or all, got '{}'", n));
      spec.images = v.get<int64_t>();
    }
  }
  if (vm.count("objectives")) spec.objectives = sweep::parse_objectives(vm["objectives"].as<std::string>());
  if (vm.count("pareto-group")) {
    spec.pareto_group.clear();
    const std::string text = vm["pareto-group"].as<std::string>();
    for (size_t start = 0;;) {
      const size_t comma = text.find(',', start);
      try {
        spec.pareto_group.push_back(sweep::canonical_key(text.substr(start, comma == std::string::npos ? comma : comma - start), true));
      } catch (const sweep::SpecError& e) {
        throw sweep::SpecError(fmt::format("--pareto-group {}", e.what()));
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (vm.count("set")) {
    for (const auto& text : vm["set"].as<std::vector<std::string>>()) {
      auto axis = sweep::parse_axis_arg(text);
      std::erase_if(spec.axes, [&](const sweep::Axis& a) { return a.keys == axis.keys; });
      spec.axes.push_back(std::move(axis));
    }
  }
  sweep::Shard shard;
  if (vm.count("shard")) shard = sweep::parse_shard(vm["shard"].as<std::string>());
  const auto all_points = sweep::enumerate_points(spec);
  const auto points = sweep::shard_points(all_points, shard);
  const fs::path out = vm["out"].as<std::string>();

  validate_points(spec, points);
  if (vm.count("dry-run")) {
    fmt::print("{} points{}\n", all_points.size(),
               shard.count > 1 ? fmt::format(", {} in shard {}/{}", points.size(), shard.index, shard.count) : "");
    for (const auto& p : points) fmt::print("{:>5} {} {}\n      {}\n", p.index, p.key, settings_text(p), sweep::run_command(spec, p));
    return 0;
  }

  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  unsigned jobs = vm["jobs"].as<unsigned>();
  if (jobs == 0) jobs = cores;
  unsigned run_threads = vm["run-threads"].as<unsigned>();
  if (run_threads == 0) run_threads = std::max(1u, cores / jobs);

  report::write_file_atomically(out / "sweep_spec.json", sweep::spec_json(spec).dump(2) + "\n");
  std::vector<sweep::Point> pending;
  size_t resumed = 0;
  for (const auto& p : points) {
    if (finished_row(spec, out, p)) ++resumed;
    else pending.push_back(p);
  }
  if (!quiet)
    fmt::print(stderr, "imcsim sweep: {} points{}; {} already done, {} to run, {} at a time ({} threads each) -> {}\n",
               all_points.size(),
               shard.count > 1 ? fmt::format(" ({} in shard {}/{})", points.size(), shard.index, shard.count) : "",
               resumed, pending.size(), jobs, run_threads, out.string());

  const std::string exe = self_exe();
  std::map<pid_t, Running> running;
  size_t next = 0, finished = 0, failed = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> failures;
  while (next < pending.size() || !running.empty()) {
    while (next < pending.size() && running.size() < jobs) {
      const auto& p = pending[next++];
      const fs::path dir = point_dir(out, p);
      fs::create_directories(dir);
      // Temporary files of a run killed mid-write (write_file_atomically: NAME.tmp.PID.RANDOM).
      for (const auto& f : fs::directory_iterator(dir))
        if (f.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(f.path());
      std::vector<std::string> argv = {exe, "run"};
      for (auto& a : sweep::run_args(spec, p)) argv.push_back(a);
      for (auto a : {"--out", dir.c_str()}) argv.push_back(a);
      argv.insert(argv.end(), {"--threads", std::to_string(run_threads), "--quiet"});
      json pj = {{"key", p.key}, {"index", p.index}, {"command", sweep::run_command(spec, p)}};
      json settings = json::object();
      for (const auto& s : p.settings) settings[s.key] = s.value;
      pj["settings"] = settings;
      report::write_file_atomically(dir / "point.json", pj.dump(2) + "\n");
      const pid_t pid = start_point(exe, argv, dir / "run.log");
      running.emplace(pid, Running{p, std::chrono::steady_clock::now()});
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(fmt::format("waitpid failed: {}", std::strerror(errno)));
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const Running r = it->second;
    running.erase(it);
    ++finished;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
    const fs::path dir = point_dir(out, r.point);
    std::optional<ojson> row;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) row = finished_row(spec, out, r.point);
    if (row) {
      report::write_file_atomically(dir / "result.json", row->dump(2) + "\n");
    } else {
      ++failed;
      const std::string why = WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                                  : fmt::format("exit {}", WEXITSTATUS(status));
      failures.push_back(fmt::format("point {} ({}) failed ({}): {} [log {}]", r.point.index, settings_text(r.point), why,
                                     last_line(dir / "run.log"), (dir / "run.log").string()));
    }
    if (!quiet) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double eta = elapsed / static_cast<double>(finished) * static_cast<double>(pending.size() - finished);
      std::string what = row ? fmt::format("latency {:.4g} ns, energy {:.4g} pJ{}", (*row)["latency_ns"].get<double>(),
                                           (*row)["energy_pj"].get<double>(),
                                           (*row)["accuracy_top1"].is_number()
                                               ? fmt::format(", accuracy {:.2f} %", 100 * (*row)["accuracy_top1"].get<double>())
                                               : "")
                             : "FAILED: " + last_line(dir / "run.log");
      fmt::print(stderr, "  [{}/{}] {} {}: {} ({}){}\n", resumed + finished, points.size(), r.point.key,
                 settings_text(r.point), what, fmt_seconds(secs),
                 finished < pending.size() ? fmt::format(", ETA {}", fmt_seconds(eta)) : "");
    }
  }

  std::vector<ojson> rows;
  std::vector<std::string> missing;
  for (const auto& p : points) {
    if (auto row = finished_row(spec, out, p)) rows.push_back(std::move(*row));
    else missing.push_back(p.key);
  }
  const std::string stem = shard.count > 1 ? fmt::format("sweep.shard-{}-of-{}", shard.index, shard.count) : "sweep";
  write_outputs(spec, out, stem, rows, missing);
  if (!quiet)
    fmt::print(stderr, "imcsim sweep: {} of {} points done; wrote {} and {}\n", rows.size(), points.size(),
               (out / (stem + ".csv")).string(), (out / (stem + ".json")).string());
  if (failed > 0) {
    for (const auto& f : failures) std::cerr << "imcsim sweep: " << f << "\n";
    throw std::runtime_error(fmt::format("{} of {} points failed (re-run the same command to retry them)", failed,
                                         pending.size()));
  }
  return 0;
}

static int cmd_sweep_merge_impl(const std::vector<std::string>& args) {
  po::options_description desc("sweep-merge options");
  desc.add_options()("help,h", "show this help")
      ("out,o", po::value<std::string>(), "the sweep's output directory (holds sweep_spec.json) [required]")
      ("from", po::value<std::vector<std::string>>()->composing(),
       "another shard's output directory whose points are copied in (repeatable; for shards that ran without "
       "a shared file system)")
      ("allow-missing", "write the outputs even if some points have no result (listed under \"missing\")")
      ("quiet,q", "no summary line");
  const auto vm = parse("sweep-merge", desc, nullptr, args);
  if (vm.count("help")) {
    std::cout << "usage: imcsim sweep-merge --out DIR [--from DIR2 ...]\n\n"
                 "Joins the shards of a sweep (imcsim sweep --shard I/N): copies the points of each --from\n"
                 "directory into DIR/points, checks that every point of DIR/sweep_spec.json has a result,\n"
                 "marks the Pareto front over all of them and writes DIR/sweep.csv and DIR/sweep.json\n"
                 "(the same files an unsharded sweep writes). Run it from the directory the shards ran in\n"
                 "(paths in the spec are relative to it). docs/sweep.md.\n\n"
              << desc << "\n";
    return 0;
  }
  if (!vm.count("out")) throw UsageError("imcsim sweep-merge: --out DIR is required (see 'imcsim sweep-merge --help')");
  const fs::path out = vm["out"].as<std::string>();
  const fs::path spec_file = out / "sweep_spec.json";
  if (!fs::exists(spec_file))
    throw sweep::SpecError(fmt::format("{}: no such file (is --out the directory a sweep wrote?)", spec_file.string()));
  const auto spec = sweep::load_spec(spec_file);
  const auto points = sweep::enumerate_points(spec);
  size_t copied = 0;
  if (vm.count("from")) {
    for (const auto& from : vm["from"].as<std::vector<std::string>>()) {
      if (!fs::is_directory(fs::path(from) / "points"))
        throw sweep::SpecError(fmt::format("--from {}: no points/ directory there", from));
      if (const auto other = read_json_file(fs::path(from) / "sweep_spec.json");
          other && sweep::enumerate_points(sweep::parse_spec(*other, from)).size() != points.size())
        throw sweep::SpecError(fmt::format("--from {}: its sweep_spec.json describes a different sweep", from));
      for (const auto& p : points) {
        const fs::path src = fs::path(from) / "points" / p.key, dst = point_dir(out, p);
        if (finished_row(spec, out, p) || !read_json_file(src / "report.json")) continue;
        for (const char* f : {"point.json", "run.log", "result.json", "report.json"}) {  // report last: it marks done
          if (!fs::exists(src / f)) continue;
          std::ifstream in(src / f, std::ios::binary);
          std::ostringstream buf;
          buf << in.rdbuf();
          report::write_file_atomically(dst / f, buf.str());
        }
        ++copied;
      }
    }
  }
  std::vector<ojson> rows;
  std::vector<std::string> missing;
  for (const auto& p : points) {
    if (auto row = finished_row(spec, out, p)) rows.push_back(std::move(*row));
    else missing.push_back(p.key);
  }
  if (!missing.empty() && !vm.count("allow-missing")) {
    std::set<uint64_t> shards;
    throw sweep::SpecError(fmt::format("{}: {} of {} points have no result (first: point {}, key {}); run the missing "
                                       "shards or pass --allow-missing",
                                       out.string(), missing.size(), points.size(),
                                       [&] {
                                         for (const auto& p : points)
                                           if (p.key == missing.front()) return p.index;
                                         return size_t{0};
                                       }(),
                                       missing.front()));
  }
  write_outputs(spec, out, "sweep", rows, missing);
  if (!vm.count("quiet"))
    fmt::print(stderr, "imcsim sweep-merge: {} of {} points ({} copied in); wrote {} and {}\n", rows.size(),
               points.size(), copied, (out / "sweep.csv").string(), (out / "sweep.json").string());
  return 0;
}

// Command-line errors exit 2 with one line; everything else propagates to main (exit 1).
int cmd_sweep(const std::vector<std::string>& args) {
  try {
    return cmd_sweep_impl(args);
  } catch (const UsageError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}

int cmd_sweep_merge(const std::vector<std::string>& args) {
  try {
    return cmd_sweep_merge_impl(args);
  } catch (const UsageError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
