// Timing of one IMC layer's pipeline as pure functions (no SystemC): the closed form that
// the analytical cost model uses and that the SystemC model (models/tile/layer_pipeline.*)
// must reproduce exactly whenever no stage stalls another (docs/timing_model.md).
//
// Pipeline, per input vector (position) p and input group t (step i = p*T + t):
//   fetch  : the input vector of p crosses the tile bus from the input buffer
//            (fetch_cycles per position; a 2-entry input register lets p+1 be fetched while
//            p is in use);
//   read   : DAC drive + settle + sample into the sample-and-hold (read_cycles per step);
//            the sample waits until the S&H is free (its previous sample converted);
//   convert: the array's ADCs convert the held sample (convert_cycles per step);
//   write  : after the last group of p, the output vector of p crosses the tile bus to the
//            output buffer (write_cycles per position).
// The bus is shared by fetches and writes (one transfer at a time).
#pragma once

#include <algorithm>
#include <cstdint>

namespace imcsim::timing {

inline uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

struct LayerTimingParams {
  uint64_t positions = 1;       // input vectors per image
  uint64_t groups = 1;          // DAC steps per input vector (T)
  uint64_t read_cycles = 1;     // array read incl. sample-and-hold
  uint64_t convert_cycles = 1;  // all conversions of one step on one array's ADC bank
  uint64_t fetch_cycles = 0;    // input vector over the tile bus
  uint64_t write_cycles = 0;    // output vector over the tile bus
  uint64_t steps() const { return positions * groups; }
};

// Cycles for one array's ADC bank to convert one step: the converted columns shared evenly
// over the array's ADCs (column multiplexing), each conversion taking conversion_cycles.
inline uint64_t adc_bank_cycles(uint64_t converted_columns, uint64_t adcs_per_array,
                                uint64_t conversion_cycles) {
  return ceil_div(converted_columns, adcs_per_array) * conversion_cycles;
}

// Cycles to move `bytes` over a bus of `bus_bits` bits per cycle.
inline uint64_t bus_transfer_cycles(uint64_t bytes, uint64_t bus_bits) {
  return ceil_div(bytes * 8, bus_bits);
}

// Closed form without stalls: first fetch, then steps at the pace of the slower of read and
// convert (the S&H overlaps the next read with this step's conversions), the last conversion,
// and the last output write.
inline uint64_t analytical_layer_cycles(const LayerTimingParams& p) {
  const uint64_t pace = std::max(p.read_cycles, p.convert_cycles);
  return p.fetch_cycles + p.read_cycles + (p.steps() - 1) * pace + p.convert_cycles + p.write_cycles;
}

}  // namespace imcsim::timing
