#include "models/tile/layer_pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace imcsim::timing {

using sc_core::sc_time;
using sc_core::SC_NS;
using sc_core::SC_ZERO_TIME;

namespace {
sc_time cycles(uint64_t n) { return sc_time(static_cast<double>(n), SC_NS); }
}  // namespace

ChipFabric::ChipFabric(uint32_t global_buffer_ports, std::vector<std::string> link_names)
    : ports_(global_buffer_ports), ports_free_(global_buffer_ports), link_names_(std::move(link_names)),
      link_held_(link_names_.size(), false), link_busy_(link_names_.size(), 0) {
  for (size_t l = 0; l < link_names_.size(); ++l) link_ev_.push_back(std::make_unique<sc_core::sc_event>());
}

namespace {
uint64_t now() { return static_cast<uint64_t>(sc_core::sc_time_stamp().to_seconds() * 1e9 + 0.5); }
}  // namespace

void ChipFabric::global_buffer_access(uint64_t n, uint64_t& stall, uint64_t& busy, std::string& state,
                                      const std::function<void(bool)>& on_hold) {
  if (n == 0) return;
  const uint64_t t0 = now();
  if (ports_free_ == 0) {
    state = "a global buffer port";
    while (ports_free_ == 0) sc_core::wait(port_ev_);
    state.clear();
  }
  stall += now() - t0;
  --ports_free_;
  if (on_hold) on_hold(true);
  sc_core::wait(cycles(n));
  if (on_hold) on_hold(false);
  busy += n;
  gb_busy_ += n;
  ++ports_free_;
  port_ev_.notify(SC_ZERO_TIME);
}

void ChipFabric::link_transfer(const std::vector<uint32_t>& path, uint64_t n, uint64_t& stall, uint64_t& busy,
                               std::string& state, const std::function<void(bool)>& on_hold) {
  if (n == 0 || path.empty()) return;
  for (uint32_t l : path)
    if (l >= link_held_.size())
      throw std::logic_error(fmt::format("interconnect link {} outside the fabric's {} links", l, link_held_.size()));
  const uint64_t t0 = now();
  for (;;) {
    const auto held = std::find_if(path.begin(), path.end(), [&](uint32_t l) { return link_held_[l]; });
    if (held == path.end()) break;
    state = fmt::format("interconnect link '{}'", link_names_[*held]);
    sc_core::wait(*link_ev_[*held]);  // wakes when that link is released, then re-checks the path
  }
  state.clear();
  stall += now() - t0;
  for (uint32_t l : path) link_held_[l] = true;
  if (on_hold) on_hold(true);
  sc_core::wait(cycles(n));
  if (on_hold) on_hold(false);
  for (uint32_t l : path) {
    link_held_[l] = false;
    link_busy_[l] += n;
    link_ev_[l]->notify(SC_ZERO_TIME);
  }
  busy += n;
}

LayerPipeline::LayerPipeline(sc_core::sc_module_name name, std::vector<PipelineJob> jobs, TraceOptions trace,
                             ChipFabric* fabric)
    : sc_module(name), jobs_(std::move(jobs)), fabric_(fabric), trace_(std::move(trace)) {
  results_.resize(jobs_.size());
  for (const auto& j : jobs_)
    if (!fabric_ && j.is_imc &&
        (j.imc.gb_read_cycles || j.imc.gb_write_cycles || j.imc.link_in_cycles || j.imc.link_out_cycles))
      throw std::invalid_argument(fmt::format("node '{}' uses the global buffer / interconnect but the "
                                              "pipeline has no chip fabric", j.name));
  SC_THREAD(controller);
  SC_THREAD(fetcher);
  SC_THREAD(array);
  SC_THREAD(adc_bank);
  SC_THREAD(writer);
  if (!trace_.vcd_file.empty()) {
    vcd_ = sc_core::sc_create_vcd_trace_file(trace_.vcd_file.c_str());
    vcd_->set_time_unit(1, SC_NS);
    sc_core::sc_trace(vcd_, sig_job_, "node_index");
    sc_core::sc_trace(vcd_, sig_array_read_, "array_read");
    sc_core::sc_trace(vcd_, sig_adc_busy_, "adc_busy");
    sc_core::sc_trace(vcd_, sig_bus_busy_, "bus_busy");
    sc_core::sc_trace(vcd_, sig_digital_busy_, "digital_busy");
    sc_core::sc_trace(vcd_, sig_gb_busy_, "global_buffer_busy");
    sc_core::sc_trace(vcd_, sig_link_busy_, "interconnect_busy");
  }
}

LayerPipeline::~LayerPipeline() {
  if (vcd_) sc_core::sc_close_vcd_trace_file(vcd_);
}

uint64_t LayerPipeline::now_cycles() const {
  return static_cast<uint64_t>(sc_core::sc_time_stamp().to_seconds() * 1e9 + 0.5);
}

void LayerPipeline::set_signal(sc_core::sc_signal<bool, sc_core::SC_MANY_WRITERS>& s, bool v) {
  if (!vcd_) return;
  const uint64_t t = now_cycles();
  if (t >= trace_.window_start && t < trace_.window_end) s.write(v);
  else if (t >= trace_.window_end) s.write(false);
}

template <typename Cond>
void LayerPipeline::wait_until(Cond cond, sc_core::sc_event& ev, std::string& state, const char* what) {
  if (cond()) return;
  state = what;
  while (!cond()) wait(ev);
  state.clear();
}

std::string LayerPipeline::stuck_description() const {
  std::string s;
  auto add = [&](const char* stage, const std::string& st) {
    if (!st.empty()) s += fmt::format("{}{} waits for {}", s.empty() ? "" : "; ", stage, st);
  };
  const std::string job = current_job_ >= 0 && current_job_ < static_cast<int64_t>(jobs_.size())
                              ? jobs_[static_cast<size_t>(current_job_)].name : "?";
  add("controller", controller_state_);
  add("fetcher", fetch_state_);
  add("array", array_state_);
  add("adc bank", adc_state_);
  add("writer", write_state_);
  return fmt::format("node '{}' at cycle {}: {}", job, now_cycles(), s.empty() ? "no stage waiting" : s);
}

void LayerPipeline::controller() {
  for (size_t j = 0; j < jobs_.size(); ++j) {
    const PipelineJob& job = jobs_[j];
    for (const LayerPipeline* up : upstreams_) {
      if (up->job_done(j)) continue;
      controller_state_ = fmt::format("the previous layer's output of its job {} ({})", j, up->name());
      while (!up->job_done(j)) wait(up->job_done_event());
      controller_state_.clear();
    }
    fetched_ = consumed_ = outputs_ready_ = written_ = 0;
    bus_busy_ = sample_held_ = false;
    results_[j].name = job.name;
    results_[j].start_cycle = now_cycles();
    current_job_ = static_cast<int64_t>(j);
    if (vcd_) sig_job_.write(static_cast<int>(j));
    job_start_ev_.notify(SC_ZERO_TIME);
    if (job.is_imc) {
      wait_until([&] { return written_ == job.imc.positions; }, written_ev_, controller_state_,
                 "the last output write of the layer");
    } else {
      set_signal(sig_digital_busy_, true);
      wait(cycles(job.digital_cycles));
      results_[j].stats.digital_busy = job.digital_cycles;
      set_signal(sig_digital_busy_, false);
      if (hooks_) hooks_->digital(j);
    }
    results_[j].end_cycle = now_cycles();
    jobs_done_ = j + 1;
    job_done_ev_.notify(SC_ZERO_TIME);
  }
  current_job_ = static_cast<int64_t>(jobs_.size());
  job_start_ev_.notify(SC_ZERO_TIME);
  finished_ = true;
}

void LayerPipeline::bus_transfer(uint64_t transfer_cycles, uint64_t& stall, uint64_t& busy, std::string& state) {
  const uint64_t t0 = now_cycles();
  wait_until([&] { return !bus_busy_; }, bus_ev_, state, "the bus");
  stall += now_cycles() - t0;
  bus_busy_ = true;
  set_signal(sig_bus_busy_, true);
  wait(cycles(transfer_cycles));
  busy += transfer_cycles;
  bus_busy_ = false;
  set_signal(sig_bus_busy_, false);
  bus_ev_.notify(SC_ZERO_TIME);
}

void LayerPipeline::deliver_input(const PipelineJob& job, StageStats& st) {
  if (fabric_) {
    fabric_->global_buffer_access(job.imc.gb_read_cycles, st.fetch_stall_gb, st.gb_busy, fetch_state_,
                                  [&](bool on) { set_signal(sig_gb_busy_, on); });
    const uint64_t before = st.link_busy;
    fabric_->link_transfer(job.link_path_in, job.imc.link_in_cycles, st.fetch_stall_link, st.link_busy, fetch_state_,
                           [&](bool on) { set_signal(sig_link_busy_, on); });
    st.link_hop_cycles += (st.link_busy - before) * job.link_path_in.size();
  }
  bus_transfer(job.imc.fetch_cycles, st.fetch_stall_bus, st.bus_busy, fetch_state_);
}

void LayerPipeline::deliver_output(const PipelineJob& job, StageStats& st) {
  bus_transfer(job.imc.write_cycles, st.write_stall_bus, st.bus_busy, write_state_);
  if (fabric_) {
    const uint64_t before = st.link_busy;
    fabric_->link_transfer(job.link_path_out, job.imc.link_out_cycles, st.write_stall_link, st.link_busy,
                           write_state_, [&](bool on) { set_signal(sig_link_busy_, on); });
    st.link_hop_cycles += (st.link_busy - before) * job.link_path_out.size();
    fabric_->global_buffer_access(job.imc.gb_write_cycles, st.write_stall_gb, st.gb_busy, write_state_,
                                  [&](bool on) { set_signal(sig_gb_busy_, on); });
  }
}

void LayerPipeline::fetcher() {
  for (size_t j = 0; j < jobs_.size(); ++j) {
    wait_until([&] { return job_ready(j); }, job_start_ev_, fetch_state_, "its next job");
    const PipelineJob& job = jobs_[j];
    if (!job.is_imc) continue;
    StageStats& st = results_[j].stats;
    for (uint64_t p = 0; p < job.imc.positions; ++p) {
      uint64_t t0 = now_cycles();
      wait_until([&] { return fetched_ - consumed_ < 2; }, slot_ev_, fetch_state_, "a free input register");
      st.fetch_stall_slot += now_cycles() - t0;
      deliver_input(job, st);
      if (hooks_) hooks_->fetched(j, p);
      ++fetched_;
      input_ev_.notify(SC_ZERO_TIME);
    }
  }
}

void LayerPipeline::array() {
  for (size_t j = 0; j < jobs_.size(); ++j) {
    wait_until([&] { return job_ready(j); }, job_start_ev_, array_state_, "its next job");
    const PipelineJob& job = jobs_[j];
    if (!job.is_imc) continue;
    StageStats& st = results_[j].stats;
    for (uint64_t p = 0; p < job.imc.positions; ++p) {
      uint64_t t0 = now_cycles();
      wait_until([&] { return fetched_ > p; }, input_ev_, array_state_, "an input vector");
      st.array_stall_input += now_cycles() - t0;
      for (uint64_t t = 0; t < job.imc.groups; ++t) {
        set_signal(sig_array_read_, true);
        wait(cycles(job.imc.read_cycles));
        set_signal(sig_array_read_, false);
        st.array_read += job.imc.read_cycles;
        t0 = now_cycles();
        wait_until([&] { return !sample_held_; }, sample_free_ev_, array_state_, "a free sample-and-hold");
        st.array_stall_sample_hold += now_cycles() - t0;
        sample_held_ = true;
        if (hooks_) hooks_->sampled(j, p, t);
        sample_ev_.notify(SC_ZERO_TIME);
      }
      ++consumed_;  // the input register of p is free once its last group is sampled
      slot_ev_.notify(SC_ZERO_TIME);
    }
  }
}

void LayerPipeline::adc_bank() {
  for (size_t j = 0; j < jobs_.size(); ++j) {
    wait_until([&] { return job_ready(j); }, job_start_ev_, adc_state_, "its next job");
    const PipelineJob& job = jobs_[j];
    if (!job.is_imc) continue;
    StageStats& st = results_[j].stats;
    const uint64_t steps = job.imc.steps();
    for (uint64_t i = 0; i < steps; ++i) {
      const uint64_t t0 = now_cycles();
      wait_until([&] { return sample_held_; }, sample_ev_, adc_state_, "a held sample");
      st.adc_idle += now_cycles() - t0;
      set_signal(sig_adc_busy_, true);
      wait(cycles(job.imc.convert_cycles));
      set_signal(sig_adc_busy_, false);
      st.adc_busy += job.imc.convert_cycles;
      if (hooks_) hooks_->converted(j, i / job.imc.groups, i % job.imc.groups);
      sample_held_ = false;
      sample_free_ev_.notify(SC_ZERO_TIME);
      if (i % job.imc.groups == job.imc.groups - 1) {
        ++outputs_ready_;
        output_ev_.notify(SC_ZERO_TIME);
      }
    }
  }
}

void LayerPipeline::writer() {
  for (size_t j = 0; j < jobs_.size(); ++j) {
    wait_until([&] { return job_ready(j); }, job_start_ev_, write_state_, "its next job");
    const PipelineJob& job = jobs_[j];
    if (!job.is_imc) continue;
    StageStats& st = results_[j].stats;
    for (uint64_t p = 0; p < job.imc.positions; ++p) {
      wait_until([&] { return outputs_ready_ > p; }, output_ev_, write_state_, "an output vector");
      deliver_output(job, st);
      if (hooks_) hooks_->written(j, p);
      ++written_;
      written_ev_.notify(SC_ZERO_TIME);
    }
  }
}

}  // namespace imcsim::timing
