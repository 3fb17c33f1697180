// SystemC model of the IMC layer pipeline (fetch -> array read + sample-and-hold -> ADC bank
// -> output write, with a bus shared by fetches and writes) and of the digital unit, running
// a sequence of node jobs layer by layer. Time advances by event-driven waits (never clock
// ticks): one simulated nanosecond stands for one clock cycle. Stage semantics and their
// closed form without stalls: models/tile/pipeline_timing.h; docs/timing_model.md.
#pragma once

#include <systemc>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/tile/pipeline_timing.h"

namespace imcsim::timing {

struct PipelineJob {
  std::string name;
  bool is_imc = false;
  LayerTimingParams imc;        // IMC layer
  uint64_t digital_cycles = 0;  // digital node
  std::vector<uint32_t> link_path_in, link_path_out;  // interconnect links (ChipFabric ids)
};

// The chip-level resources every layer pipeline shares: the global buffer's ports and the
// interconnect's links (sim/config/component_registry.h numbers them). A global buffer
// access holds one free port; an interconnect transfer holds every link of its path at once
// (acquired together, so transfers cannot deadlock each other). Called from SC_THREADs.
class ChipFabric {
 public:
  ChipFabric(uint32_t global_buffer_ports, std::vector<std::string> link_names);
  // Blocks until a port is free, holds it for `cycles`; adds the wait to `stall`, the hold to `busy`.
  // `on_hold(true/false)` (optional) marks the start and end of the hold (waveforms).
  void global_buffer_access(uint64_t cycles, uint64_t& stall, uint64_t& busy, std::string& state,
                            const std::function<void(bool)>& on_hold = {});
  // Blocks until every link of `path` is free, holds them for `cycles`.
  void link_transfer(const std::vector<uint32_t>& path, uint64_t cycles, uint64_t& stall, uint64_t& busy,
                     std::string& state, const std::function<void(bool)>& on_hold = {});
  const std::vector<uint64_t>& link_busy_cycles() const { return link_busy_; }
  const std::vector<std::string>& link_names() const { return link_names_; }
  uint64_t global_buffer_port_busy_cycles() const { return gb_busy_; }
  uint32_t global_buffer_ports() const { return ports_; }

 private:
  uint32_t ports_, ports_free_;
  std::vector<std::string> link_names_;
  std::vector<bool> link_held_;
  std::vector<uint64_t> link_busy_;
  uint64_t gb_busy_ = 0;
  sc_core::sc_event port_ev_;
  std::vector<std::unique_ptr<sc_core::sc_event>> link_ev_;  // per link: notified when it is released
};

// Where a job's cycles went, per stage (cycles).
struct StageStats {
  uint64_t array_read = 0;          // array driving / settling / sampling
  uint64_t array_stall_input = 0;   // array waiting for the next input vector
  uint64_t array_stall_sample_hold = 0;  // array holding a read until the S&H is free
  uint64_t adc_busy = 0;
  uint64_t adc_idle = 0;            // ADC bank waiting for a sample
  uint64_t bus_busy = 0;            // fetches + writes on the bus
  uint64_t fetch_stall_bus = 0;     // fetch waiting for the bus
  uint64_t fetch_stall_slot = 0;    // fetch waiting for a free input register
  uint64_t write_stall_bus = 0;     // write waiting for the bus
  uint64_t digital_busy = 0;
  uint64_t gb_busy = 0;             // global buffer port cycles (reads + writes of this node)
  uint64_t fetch_stall_gb = 0;      // input read waiting for a global buffer port
  uint64_t write_stall_gb = 0;      // output write waiting for a global buffer port
  uint64_t link_busy = 0;           // interconnect transfer cycles (each holds its whole path)
  uint64_t link_hop_cycles = 0;     // sum over transfers of cycles x links held
  uint64_t fetch_stall_link = 0;    // input transfer waiting for its links
  uint64_t write_stall_link = 0;    // output transfer waiting for its links
};

struct JobResult {
  std::string name;
  uint64_t start_cycle = 0, end_cycle = 0;
  StageStats stats;
  uint64_t cycles() const { return end_cycle - start_cycle; }
};

// Data-carrying mode: called when a stage completes (job index, position p, input group t);
// models/tile/layer_datapath.h carries the values.
class DataHooks {
 public:
  virtual ~DataHooks() = default;
  virtual void fetched(size_t job, uint64_t p) = 0;                // input vector p in its register
  virtual void sampled(size_t job, uint64_t p, uint64_t t) = 0;    // step (p, t) held in the S&H
  virtual void converted(size_t job, uint64_t p, uint64_t t) = 0;  // step (p, t) converted, shift-added
  virtual void written(size_t job, uint64_t p) = 0;                // output vector p in the global buffer
  virtual void digital(size_t job) = 0;                            // a digital node's job done
};

// Optional waveform: signals are updated only inside [window_start, window_end) cycles.
struct TraceOptions {
  std::string vcd_file;  // without the .vcd suffix SystemC adds; empty = no trace
  uint64_t window_start = 0;
  uint64_t window_end = UINT64_MAX;
};

class LayerPipeline : public sc_core::sc_module {
 public:
  SC_HAS_PROCESS(LayerPipeline);
  // `fabric` (shared by every pipeline of the chip; may be null when no job uses the global
  // buffer or the interconnect) must outlive the pipeline.
  LayerPipeline(sc_core::sc_module_name name, std::vector<PipelineJob> jobs, TraceOptions trace = {},
                ChipFabric* fabric = nullptr);
  ~LayerPipeline() override;

  // Inter-layer pipelining: job j may start only after every upstream pipeline (the previous
  // layer, or each of its weight copies) has finished its job j.
  void set_upstream(const LayerPipeline* upstream) { upstreams_.push_back(upstream); }
  void set_data_hooks(DataHooks* hooks) { hooks_ = hooks; }
  bool job_done(size_t job) const { return job < jobs_done_; }
  const sc_core::sc_event& job_done_event() const { return job_done_ev_; }

  bool finished() const { return finished_; }
  const std::vector<JobResult>& results() const { return results_; }
  // For a simulation that stopped before finishing: what each stage was waiting for.
  std::string stuck_description() const;

 private:
  void controller();
  void fetcher();
  void array();
  void adc_bank();
  void writer();
  // Waits until cond() holds, re-checking on every notification of ev.
  template <typename Cond>
  void wait_until(Cond cond, sc_core::sc_event& ev, std::string& state, const char* what);
  // Holds the shared bus for `transfer_cycles`, adding the wait to `stall` and the transfer to `busy`.
  void bus_transfer(uint64_t transfer_cycles, uint64_t& stall, uint64_t& busy, std::string& state);
  uint64_t now_cycles() const;
  void set_signal(sc_core::sc_signal<bool, sc_core::SC_MANY_WRITERS>& s, bool v);
  // Job j has started (or, for a zero-cycle digital job, already ended): stages move on.
  bool job_ready(size_t job) const { return current_job_ >= static_cast<int64_t>(job); }

  // Input delivery / output delivery of one position through the fabric and the tile bus.
  void deliver_input(const PipelineJob& job, StageStats& st);
  void deliver_output(const PipelineJob& job, StageStats& st);

  std::vector<PipelineJob> jobs_;
  std::vector<JobResult> results_;
  ChipFabric* fabric_ = nullptr;
  DataHooks* hooks_ = nullptr;
  TraceOptions trace_;
  sc_core::sc_trace_file* vcd_ = nullptr;

  // Per-job state (reset by the controller at each job start).
  std::vector<const LayerPipeline*> upstreams_;
  size_t jobs_done_ = 0;
  sc_core::sc_event job_done_ev_;
  int64_t current_job_ = -1;
  uint64_t fetched_ = 0, consumed_ = 0, outputs_ready_ = 0, written_ = 0;
  bool bus_busy_ = false, sample_held_ = false, finished_ = false;
  sc_core::sc_event job_start_ev_, input_ev_, slot_ev_, sample_ev_, sample_free_ev_, output_ev_,
      bus_ev_, written_ev_;
  std::string controller_state_, fetch_state_, array_state_, adc_state_, write_state_;

  sc_core::sc_signal<bool, sc_core::SC_MANY_WRITERS> sig_array_read_, sig_adc_busy_, sig_bus_busy_,
      sig_digital_busy_, sig_gb_busy_, sig_link_busy_;
  sc_core::sc_signal<int, sc_core::SC_MANY_WRITERS> sig_job_;
};

}  // namespace imcsim::timing
