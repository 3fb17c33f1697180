// Timing of one IMC layer's pipeline as pure functions (no SystemC): the closed form that
// the analytical cost model uses and that the SystemC model (models/tile/layer_pipeline.*)
// must reproduce exactly whenever no stage stalls another (docs/timing_model.md).
//
// Pipeline, per input vector (position) p and input group t (step i = p*T + t):
//   fetch  : p's share of the input tensor is read from a global buffer port
//            (gb_read_cycles), crosses the interconnect to the layer's tile (link_in_cycles =
//            hops x hop_cycles + serialisation, holding every link of the path), and the
//            input vector of p crosses the tile bus from the input buffer (fetch_cycles);
//            store and forward, one stage after the other (a 2-entry input register lets p+1
//            be fetched while p is in use);
//   read   : DAC drive + settle + sample into the sample-and-hold (read_cycles per step);
//            the sample waits until the S&H is free (its previous sample converted);
//   convert: the array's ADCs convert the held sample (convert_cycles per step);
//   write  : after the last group of p, the output vector of p crosses the tile bus to the
//            output buffer (write_cycles), the interconnect back (link_out_cycles) and is
//            written through a global buffer port (gb_write_cycles).
// The tile bus is shared by fetches and writes (one transfer at a time); global buffer ports
// and interconnect links are shared with every other layer (docs/timing_model.md).
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
  uint64_t gb_read_cycles = 0;  // global buffer port, per position's input share
  uint64_t link_in_cycles = 0;  // interconnect, global buffer -> tile
  uint64_t link_out_cycles = 0; // interconnect, tile -> global buffer
  uint64_t gb_write_cycles = 0; // global buffer port, per output vector
  uint64_t steps() const { return positions * groups; }
  uint64_t input_delivery_cycles() const { return gb_read_cycles + link_in_cycles + fetch_cycles; }
  uint64_t output_delivery_cycles() const { return write_cycles + link_out_cycles + gb_write_cycles; }
};

// Cycles for one array's ADC bank to convert one step: the converted columns shared evenly
// over the array's ADCs (column multiplexing), each conversion taking conversion_cycles.
inline uint64_t adc_bank_cycles(uint64_t converted_columns, uint64_t adcs_per_array,
                                uint64_t conversion_cycles) {
  return ceil_div(converted_columns, adcs_per_array) * conversion_cycles;
}

// Cycles to move `bytes` over a bus (or port) of `bus_bits` bits per cycle.
inline uint64_t bus_transfer_cycles(uint64_t bytes, uint64_t bus_bits) {
  return ceil_div(bytes * 8, bus_bits);
}

// Cycles of one interconnect transfer: the head crosses `hops` links of `hop_cycles` each,
// then the bytes stream at `link_bits` per cycle (circuit switched; 0 bytes = no transfer).
inline uint64_t link_transfer_cycles(uint64_t bytes, uint64_t hops, uint64_t hop_cycles, uint64_t link_bits) {
  return bytes == 0 ? 0 : hops * hop_cycles + ceil_div(bytes * 8, link_bits);
}

// Closed form without stalls: first input delivery (global buffer, interconnect, tile bus),
// then steps at the pace of the slower of read and convert (the S&H overlaps the next read
// with this step's conversions), the last conversion, and the last output delivery.
inline uint64_t analytical_layer_cycles(const LayerTimingParams& p) {
  const uint64_t pace = std::max(p.read_cycles, p.convert_cycles);
  return p.input_delivery_cycles() + p.read_cycles + (p.steps() - 1) * pace + p.convert_cycles +
         p.output_delivery_cycles();
}

}  // namespace imcsim::timing
