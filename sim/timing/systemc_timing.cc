#include "sim/timing/systemc_timing.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <systemc>

#include "models/tile/layer_pipeline.h"

namespace imcsim::timing {

SystemcTimingResult run_systemc_timing(const std::vector<mapping::NodeSchedule>& schedule,
                                       const SystemcTimingOptions& options) {
  static std::atomic<bool> used{false};
  if (used.exchange(true))
    throw TimingError("the SystemC timing model can be elaborated only once per process");
  const auto start = std::chrono::steady_clock::now();

  std::vector<PipelineJob> jobs;
  for (uint64_t image = 0; image < options.images; ++image)
    for (const auto& s : schedule)
      jobs.push_back({s.node, s.is_imc, s.imc, s.digital_cycles});

  TraceOptions trace;
  if (!options.vcd_file.empty()) {
    trace.vcd_file = options.vcd_file;
    if (trace.vcd_file.size() > 4 && trace.vcd_file.ends_with(".vcd"))
      trace.vcd_file.resize(trace.vcd_file.size() - 4);  // SystemC appends .vcd itself
    trace.window_start = options.trace_window_start;
    trace.window_end = options.trace_window_end;
  }
  ::setenv("SC_COPYRIGHT_MESSAGE", "DISABLE", 0);  // no banner unless the user asks for it
  // Silence SystemC's informational reports (e.g. about the VCD time unit).
  sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);
  sc_core::sc_report_handler::set_actions(sc_core::SC_WARNING, sc_core::SC_DO_NOTHING);
  auto* pipeline = new LayerPipeline("layer_pipeline", std::move(jobs), trace);
  sc_core::sc_start();  // runs until no event is pending
  if (!pipeline->finished())
    throw TimingError("deadlock: the simulation cannot make progress; " + pipeline->stuck_description());

  SystemcTimingResult r;
  r.images = options.images;
  r.nodes.resize(schedule.size());
  const auto& results = pipeline->results();
  for (size_t k = 0; k < results.size(); ++k) {
    const auto& jr = results[k];
    const auto& s = schedule[k % schedule.size()];
    NodeTimingResult& n = r.nodes[k % schedule.size()];
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
    r.total_cycles += jr.cycles();
  }
  r.cycles_per_image = options.images ? r.total_cycles / options.images : 0;
  delete pipeline;  // closes the VCD file
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace imcsim::timing
