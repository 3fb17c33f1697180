#include "sim/timing/systemc_timing.h"

#include <fmt/format.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <systemc>

#include "models/tile/layer_datapath.h"
#include "models/tile/layer_pipeline.h"
#include "sim/config/component_registry.h"

namespace imcsim::timing {

const char* execution_name(Execution e) {
  return e == Execution::kPipelined ? "pipelined" : "layer_by_layer";
}

namespace {

// Maps a pipeline's job index to (image, node) and forwards the stage events to the data path;
// the first inconsistency is kept (an exception must not cross the SystemC kernel).
class DataAdapter final : public DataHooks {
 public:
  DataAdapter(GraphDataPath& data, std::vector<std::pair<size_t, size_t>> job_to_image_node, std::string& error)
      : data_(data), jobs_(std::move(job_to_image_node)), error_(error) {}
  void fetched(size_t j, uint64_t p) override { run([&] { data_.fetched(jobs_[j].first, jobs_[j].second, p); }); }
  void sampled(size_t j, uint64_t p, uint64_t t) override {
    run([&] { data_.sampled(jobs_[j].first, jobs_[j].second, p, t); });
  }
  void converted(size_t j, uint64_t p, uint64_t t) override {
    run([&] { data_.converted(jobs_[j].first, jobs_[j].second, p, t); });
  }
  void written(size_t j, uint64_t p) override { run([&] { data_.written(jobs_[j].first, jobs_[j].second, p); }); }
  void digital(size_t j) override { run([&] { data_.digital(jobs_[j].first, jobs_[j].second); }); }

 private:
  template <typename F>
  void run(F f) {
    if (!error_.empty()) return;
    try {
      f();
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }
  GraphDataPath& data_;
  std::vector<std::pair<size_t, size_t>> jobs_;
  std::string& error_;
};

}  // namespace

FabricOptions fabric_options(const config::ArchConfig& arch) {
  FabricOptions f;
  f.global_buffer_ports = arch.chip.global_buffer_ports;
  const auto& net = config::interconnect_model(arch.interconnect.kind);
  const uint32_t n = net.link_count(arch.chip.tiles);
  for (uint32_t l = 0; l < n; ++l) f.link_names.push_back(net.link_name(l, arch.chip.tiles));
  return f;
}

SystemcTimingResult run_systemc_timing(const std::vector<mapping::NodeSchedule>& schedule,
                                       const SystemcTimingOptions& options) {
  static std::atomic<bool> used{false};
  if (used.exchange(true))
    throw TimingError("the SystemC timing model can be elaborated only once per process");
  if (options.images == 0) throw TimingError("the timing run needs at least one image");
  if (schedule.empty()) throw TimingError("the timing run needs at least one node");
  const auto start = std::chrono::steady_clock::now();
  const bool pipelined = options.execution == Execution::kPipelined;

  TraceOptions trace;
  if (!options.vcd_file.empty()) {
    trace.vcd_file = options.vcd_file;
    if (trace.vcd_file.size() > 4 && trace.vcd_file.ends_with(".vcd"))
      trace.vcd_file.resize(trace.vcd_file.size() - 4);  // SystemC appends .vcd itself
    trace.window_start = options.trace_window_start;
    trace.window_end = options.trace_window_end;
    // Fail early and clearly if the waveform cannot be written (SystemC would only warn).
    const std::filesystem::path vcd_path = trace.vcd_file + ".vcd";
    std::error_code ec;
    if (vcd_path.has_parent_path()) std::filesystem::create_directories(vcd_path.parent_path(), ec);
    std::ofstream probe(vcd_path);
    if (!probe) throw TimingError(fmt::format("{}: cannot write the VCD trace file", vcd_path.string()));
  }
  ::setenv("SC_COPYRIGHT_MESSAGE", "DISABLE", 0);  // no banner unless the user asks for it
  // Silence SystemC's informational reports (e.g. about the VCD time unit).
  sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);
  sc_core::sc_report_handler::set_actions(sc_core::SC_WARNING, sc_core::SC_DO_NOTHING);

  // Layer by layer: one pipeline runs every (image, node) job in order. Pipelined: one
  // pipeline per node, each running its node for every image, fed by the previous node's.
  std::vector<std::unique_ptr<LayerPipeline>> stages;
  auto job_of = [](const mapping::NodeSchedule& s) {
    return PipelineJob{s.node, s.is_imc, s.imc, s.digital_cycles, s.link_path_in, s.link_path_out};
  };
  // The shared global buffer and interconnect; links named beyond the options get generic names.
  if (options.fabric.global_buffer_ports == 0)
    throw TimingError("the global buffer needs at least one port");
  std::vector<std::string> link_names = options.fabric.link_names;
  for (const auto& s : schedule)
    for (const auto* paths : {&s.copy_paths_in, &s.copy_paths_out})
      for (const auto& path : *paths)
        for (uint32_t l : path)
          while (link_names.size() <= l) link_names.push_back(fmt::format("link {}", link_names.size()));
  for (const auto& s : schedule)
    for (const auto* path : {&s.link_path_in, &s.link_path_out})
      for (uint32_t l : *path)
        while (link_names.size() <= l) link_names.push_back(fmt::format("link {}", link_names.size()));
  ChipFabric fabric(options.fabric.global_buffer_ports, link_names);
  std::vector<std::vector<LayerPipeline*>> stage_pipes;  // pipelined: the pipelines of each node
  if (!pipelined) {
    std::vector<PipelineJob> jobs;
    for (uint64_t image = 0; image < options.images; ++image)
      for (const auto& s : schedule) jobs.push_back(job_of(s));
    stages.push_back(std::make_unique<LayerPipeline>("chip", std::move(jobs), trace, &fabric));
  } else {
    // One pipeline per node, or per weight copy of a replicated node (each copy on its own
    // tiles, with its own route to the global buffer); a node's job j starts when every
    // pipeline of the previous node has finished its job j.
    for (size_t k = 0; k < schedule.size(); ++k) {
      const size_t copies = std::max<size_t>(1, schedule[k].copy_paths_in.size());
      for (size_t c = 0; c < copies; ++c) {
        PipelineJob job = job_of(schedule[k]);
        if (c < schedule[k].copy_paths_in.size()) {
          job.link_path_in = schedule[k].copy_paths_in[c];
          job.link_path_out = schedule[k].copy_paths_out[c];
        }
        std::vector<PipelineJob> jobs(options.images, job);
        const std::string name = copies == 1 ? fmt::format("stage_{}", k) : fmt::format("stage_{}_copy_{}", k, c);
        // Only the first stage traces (SystemC allows one VCD file per signal set here).
        stages.push_back(std::make_unique<LayerPipeline>(name.c_str(), std::move(jobs),
                                                         k == 0 && c == 0 ? trace : TraceOptions{}, &fabric));
        if (k > 0)
          for (LayerPipeline* up : stage_pipes[k - 1]) stages.back()->set_upstream(up);
      }
      stage_pipes.emplace_back();
      for (size_t c = 0; c < copies; ++c) stage_pipes[k].push_back(stages[stages.size() - copies + c].get());
    }
  }
  std::string data_error;
  std::vector<std::unique_ptr<DataAdapter>> adapters;
  if (options.data) {
    if (options.data->image_count() < options.images)
      throw TimingError(fmt::format("data-carrying mode: {} images streamed but the data path holds {}",
                                    options.images, options.data->image_count()));
    for (const auto& s : schedule)
      if (s.is_imc && s.imc.positions != options.data->positions(s.node_index))
        throw TimingError(fmt::format("data-carrying mode: node '{}' runs {} of its {} positions per pipeline "
                                      "(weight replication): carry data without --replication",
                                      s.node, s.imc.positions, options.data->positions(s.node_index)));
    for (size_t k = 0; k < stages.size(); ++k) {
      std::vector<std::pair<size_t, size_t>> jobs;
      if (!pipelined) {
        for (uint64_t image = 0; image < options.images; ++image)
          for (const auto& s : schedule) jobs.emplace_back(image, s.node_index);
      } else {
        for (uint64_t image = 0; image < options.images; ++image) jobs.emplace_back(image, schedule[k].node_index);
      }
      adapters.push_back(std::make_unique<DataAdapter>(*options.data, std::move(jobs), data_error));
      stages[k]->set_data_hooks(adapters.back().get());  // one pipeline per node: no copies here
    }
  }
  sc_core::sc_start();  // runs until no event is pending
  for (const auto& st : stages)
    if (!st->finished())
      throw TimingError("deadlock: the simulation cannot make progress; " + st->stuck_description());

  SystemcTimingResult r;
  r.execution = options.execution;
  r.images = options.images;
  r.nodes.resize(schedule.size());
  auto add = [&](size_t node, const JobResult& jr) {
    const auto& s = schedule[node];
    NodeTimingResult& n = r.nodes[node];
    n.node = s.node;
    n.cycles += jr.cycles();
    n.analytical_cycles += s.analytical_cycles();
    const auto& st = jr.stats;
    n.array_read += st.array_read;
    n.array_stall_input += st.array_stall_input;
    n.array_stall_sample_hold += st.array_stall_sample_hold;
    n.adc_busy += st.adc_busy;
    n.adc_idle += st.adc_idle;
    n.bus_busy += st.bus_busy;
    n.fetch_stall_bus += st.fetch_stall_bus;
    n.fetch_stall_slot += st.fetch_stall_slot;
    n.write_stall_bus += st.write_stall_bus;
    n.digital_busy += st.digital_busy;
    n.gb_busy += st.gb_busy;
    n.fetch_stall_gb += st.fetch_stall_gb;
    n.write_stall_gb += st.write_stall_gb;
    n.link_busy += st.link_busy;
    n.link_hop_cycles += st.link_hop_cycles;
    n.fetch_stall_link += st.fetch_stall_link;
    n.write_stall_link += st.write_stall_link;
  };
  // Completion and start cycle of each image.
  std::vector<uint64_t> image_start(options.images), image_end(options.images);
  const size_t n_nodes = schedule.size();
  if (!pipelined) {
    const auto& results = stages[0]->results();
    for (size_t k = 0; k < results.size(); ++k) add(k % n_nodes, results[k]);
    for (uint64_t i = 0; i < options.images; ++i) {
      image_start[i] = results[i * n_nodes].start_cycle;
      image_end[i] = results[i * n_nodes + n_nodes - 1].end_cycle;
    }
  } else {
    // A node's job spans from its first copy's start to its last copy's end; stalls add up.
    auto combined = [&](size_t k, uint64_t i) {
      JobResult jr = stage_pipes[k][0]->results()[i];
      for (size_t c = 1; c < stage_pipes[k].size(); ++c) {
        const JobResult& o = stage_pipes[k][c]->results()[i];
        jr.start_cycle = std::min(jr.start_cycle, o.start_cycle);
        jr.end_cycle = std::max(jr.end_cycle, o.end_cycle);
        const StageStats& a = o.stats;
        StageStats& b = jr.stats;
        b.array_read += a.array_read;
        b.array_stall_input += a.array_stall_input;
        b.array_stall_sample_hold += a.array_stall_sample_hold;
        b.adc_busy += a.adc_busy;
        b.adc_idle += a.adc_idle;
        b.bus_busy += a.bus_busy;
        b.fetch_stall_bus += a.fetch_stall_bus;
        b.fetch_stall_slot += a.fetch_stall_slot;
        b.write_stall_bus += a.write_stall_bus;
        b.digital_busy += a.digital_busy;
        b.gb_busy += a.gb_busy;
        b.fetch_stall_gb += a.fetch_stall_gb;
        b.write_stall_gb += a.write_stall_gb;
        b.link_busy += a.link_busy;
        b.link_hop_cycles += a.link_hop_cycles;
        b.fetch_stall_link += a.fetch_stall_link;
        b.write_stall_link += a.write_stall_link;
      }
      return jr;
    };
    for (size_t k = 0; k < n_nodes; ++k)
      for (uint64_t i = 0; i < options.images; ++i) add(k, combined(k, i));
    for (uint64_t i = 0; i < options.images; ++i) {
      image_start[i] = combined(0, i).start_cycle;
      image_end[i] = combined(n_nodes - 1, i).end_cycle;
    }
  }
  r.total_cycles = image_end.back() - image_start.front();
  r.cycles_per_image = image_end[0] - image_start[0];
  r.interval_cycles = options.images > 1 ? (image_end.back() - image_end.front()) / (options.images - 1)
                                         : r.cycles_per_image;
  uint64_t sum = 0, slowest = 0;
  for (const auto& s : schedule) {
    sum += s.analytical_cycles();
    slowest = std::max(slowest, s.analytical_cycles());
  }
  r.analytical_latency_cycles = sum;
  r.analytical_interval_cycles = pipelined ? slowest : sum;
  r.data_error = data_error;
  r.global_buffer_ports = options.fabric.global_buffer_ports;
  r.global_buffer_port_busy_cycles = fabric.global_buffer_port_busy_cycles();
  for (size_t l = 0; l < link_names.size(); ++l) r.links.push_back({link_names[l], fabric.link_busy_cycles()[l]});
  stages.clear();  // closes the VCD file
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace imcsim::timing
