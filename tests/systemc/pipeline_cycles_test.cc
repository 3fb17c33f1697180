// Cycle counts of the SystemC layer pipeline against hand-derived values, at each boundary.
// SystemC elaborates once per process, so this executable runs every case as one job of a
// single pipeline (one sc_start), then checks each job's cycles.
#include <gtest/gtest.h>

#include <systemc>

#include "models/tile/layer_pipeline.h"
#include "models/tile/pipeline_timing.h"

using namespace imcsim::timing;

namespace {

struct Case {
  const char* name;
  PipelineJob job;
  uint64_t expected_cycles;
  const char* derivation;
};

PipelineJob imc(uint64_t positions, uint64_t groups, uint64_t read, uint64_t convert, uint64_t fetch,
                uint64_t write) {
  PipelineJob j;
  j.is_imc = true;
  j.imc = {positions, groups, read, convert, fetch, write};
  return j;
}

PipelineJob digital(uint64_t cycles) {
  PipelineJob j;
  j.digital_cycles = cycles;
  return j;
}

std::vector<Case> cases() {
  return {
      {"single_step", imc(1, 1, 10, 4, 3, 2), 19, "fetch 3 + read 10 + convert 4 + write 2"},
      {"read_bound", imc(2, 3, 10, 4, 3, 2), 69, "3 + 10 + (6-1)*max(10,4) + 4 + 2"},
      {"convert_bound", imc(2, 3, 4, 10, 3, 2), 69, "3 + 4 + (6-1)*max(4,10) + 10 + 2"},
      {"read_equals_convert", imc(1, 4, 7, 7, 0, 0), 35, "7 + 3*7 + 7"},
      {"convert_one_above_read", imc(1, 4, 7, 8, 0, 0), 39, "7 + 3*8 + 8: the ADC paces"},
      {"convert_one_below_read", imc(1, 4, 8, 7, 0, 0), 39, "8 + 3*8 + 7: the array paces"},
      // SAR 8-bit, 128 converted columns on 1 ADC (mux 128): 1024 cycles per step.
      {"sar8_mux128", imc(1, 2, 120, adc_bank_cycles(128, 1, 8), 0, 0), 120 + 1024 + 1024,
       "120 + (2-1)*1024 + 1024"},
      // Same columns on 2 ADCs (mux 64): 512 cycles per step.
      {"sar8_mux64", imc(1, 2, 120, adc_bank_cycles(128, 2, 8), 0, 0), 120 + 512 + 512,
       "120 + 512 + 512"},
      // 129 columns on 2 ADCs: ceil(129/2) = 65 conversions on the busier ADC.
      {"sar8_uneven_mux", imc(1, 1, 120, adc_bank_cycles(129, 2, 8), 0, 0), 120 + 65 * 8, "120 + 65*8"},
      // Flash: 1 cycle per conversion; ramp / NL-ADC 3 bits: 2^3 = 8 cycles per conversion.
      {"flash_64cols_8adcs", imc(1, 1, 5, adc_bank_cycles(64, 8, 1), 0, 0), 5 + 8, "5 + 8*1"},
      {"ramp3_64cols_8adcs", imc(1, 1, 5, adc_bank_cycles(64, 8, 8), 0, 0), 5 + 64, "5 + 8*8"},
      // Bus width: 1568 input bytes over 256 bits/cycle = 49 cycles; 1 more byte -> 50.
      {"bus_width_exact", imc(1, 1, 1, 1, bus_transfer_cycles(1568, 256), 0), 49 + 1 + 1, "49 + 1 + 1"},
      {"bus_width_plus_one_byte", imc(1, 1, 1, 1, bus_transfer_cycles(1569, 256), 0), 50 + 1 + 1,
       "50 + 1 + 1"},
      // Contention 1: fetch slower than the array. Fetches end at 10, 20, 30; each vector is
      // read and converted in 4 cycles after it arrives: ends at 34. Closed form says 18.
      {"fetch_bound_contention", imc(3, 1, 2, 2, 10, 0), 34, "fetches 10,20,30; last + 2 + 2"},
      // Contention 2: output writes slower than the array. Fetch p0 [0,2], p1 [2,4]; p0 read
      // [2,3] conv [3,4]; write p0 [4,9]; p1 read [4,5] conv [5,6]; write p1 queues behind
      // write p0 on the one write port: [9,14]. The closed form counts only the last write: 10.
      {"write_bound_contention", imc(2, 1, 1, 1, 2, 5), 14, "write p1 queues behind write p0"},
      {"digital_node", digital(7), 7, "ceil(ops / lanes) = 7"},
      {"zero_cycle_digital_node", digital(0), 0, "flatten: no work"},
      {"after_zero_cycle_node", imc(1, 1, 10, 4, 3, 2), 19, "same as single_step"},
  };
}

TEST(PipelineCycles, HandDerivedCyclesAtEachBoundary) {
  const auto all = cases();
  std::vector<PipelineJob> jobs;
  for (const auto& c : all) {
    jobs.push_back(c.job);
    jobs.back().name = c.name;
  }
  ::setenv("SC_COPYRIGHT_MESSAGE", "DISABLE", 0);
  auto* pipeline = new LayerPipeline("pipeline", jobs);
  sc_core::sc_start();
  ASSERT_TRUE(pipeline->finished()) << pipeline->stuck_description();
  const auto& results = pipeline->results();
  ASSERT_EQ(results.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(std::string(all[i].name) + ": " + all[i].derivation);
    EXPECT_EQ(results[i].cycles(), all[i].expected_cycles);
    if (i > 0) {
      EXPECT_EQ(results[i].start_cycle, results[i - 1].end_cycle) << "layer by layer, no gaps";
    }
  }
  // Without contention the closed form is exact; with it, the SystemC model is slower and
  // the stall counters account for the difference.
  for (size_t i = 0; i < all.size(); ++i) {
    if (!all[i].job.is_imc) continue;
    const std::string name = all[i].name;
    const uint64_t closed = analytical_layer_cycles(all[i].job.imc);
    const auto& st = results[i].stats;
    // array_stall_input includes the wait for the first input vector (fetch_cycles).
    const uint64_t first_fetch = all[i].job.imc.fetch_cycles;
    if (name == "fetch_bound_contention") {
      EXPECT_EQ(closed, 18u);
      EXPECT_EQ(st.array_stall_input - first_fetch, 16u) << "waits 8 for p1 and 8 for p2";
      EXPECT_EQ(results[i].cycles() - closed, st.array_stall_input - first_fetch);
    } else if (name == "write_bound_contention") {
      EXPECT_EQ(closed, 10u);
      EXPECT_EQ(st.bus_busy, 2u * 2 + 2u * 5) << "two fetches and two writes: the bus never rests";
      EXPECT_EQ(st.array_stall_input, 3u) << "2 for the first fetch, 1 for p1 (fetched at 4, array free at 3)";
    } else {
      EXPECT_EQ(results[i].cycles(), closed) << name << ": no contention, closed form must be exact";
      EXPECT_EQ(st.array_stall_input, first_fetch) << name;
      EXPECT_EQ(st.write_stall_bus, 0u) << name;
      EXPECT_EQ(st.fetch_stall_bus, 0u) << name;
    }
    EXPECT_EQ(st.array_read, all[i].job.imc.steps() * all[i].job.imc.read_cycles) << name;
    EXPECT_EQ(st.adc_busy, all[i].job.imc.steps() * all[i].job.imc.convert_cycles) << name;
  }
  delete pipeline;
}

}  // namespace
