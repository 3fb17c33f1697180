// Default architecture parameters and component costs of imcsim: an ISAAC-like 32 nm chip.
//
// Every figure is a named constant with its source. Sources (see also docs/arch_config.md and
// /work/shared/reference/components.md):
//   [ISAAC]   Shafiee et al., "ISAAC: A Convolutional Neural Network Accelerator with In-Situ
//             Analog Arithmetic in Crossbars", ISCA 2016, corrected Table I (32 nm), and the
//             per-event energies derived from it by the Accelergy ISAAC library.
//   [SAR32]   Saberi-based SAR ADC scaled to 32 nm, as used for ISAAC: energy/area by bits 4..10.
//   [MNSIM]   MNSIM 2.0: DAC power doubles per bit (3.9 uW at 1 b ... 124.8 uW at 6 b).
//   [Walden]  Walden figure of merit FOM_W = P / (f_s * 2^ENOB): energy per conversion is
//             proportional to 2^N conversion steps; Murmann ADC survey for the envelope.
//   [Aladdin] Shao et al., Aladdin, 40 nm: 32-bit adder 0.21 pJ / 278 um^2, register 0.009 pJ/bit.
//
// Everything here is constexpr so that tests, docs and cost models name the same numbers.
#pragma once

#include <array>
#include <cstdint>

namespace imcsim::config::defaults {

// ---- chip organisation [ISAAC] -------------------------------------------------------------
constexpr double kClockMhz = 1200.0;             // ISAAC digital clock 1.2 GHz
constexpr uint32_t kArrayRows = 128;             // ISAAC 128x128 crossbars
constexpr uint32_t kArrayCols = 128;
constexpr uint32_t kCellBits = 2;                // ISAAC 2 bits per cell
constexpr double kCrossbarReadNs = 100.0;        // ISAAC crossbar read cycle 100 ns
// 100 ns at 1.2 GHz = 120 clock cycles (DAC drive + settle + sample-and-hold).
constexpr uint32_t kReadCycles = 120;
static_assert(kReadCycles == static_cast<uint32_t>(kCrossbarReadNs * kClockMhz / 1000.0));
constexpr uint32_t kDacBits = 1;                 // ISAAC 1-bit DACs, 16-bit inputs bit-serial
constexpr uint32_t kAdcBits = 8;                 // ISAAC 8-bit 1.2 GS/s SAR ADC
// columns_per_adc defaults to array.cols: ISAAC has one ADC per crossbar (8 ADCs per 8-crossbar
// IMA), i.e. 128 columns share one ADC for 128-column arrays.
constexpr uint32_t kColumnsPerAdc = kArrayCols;
constexpr uint32_t kImasPerTile = 12;            // ISAAC 12 IMAs per tile
constexpr uint32_t kCrossbarsPerIma = 8;         // ISAAC 8 crossbars per IMA
constexpr uint32_t kArraysPerTile = kImasPerTile * kCrossbarsPerIma;  // 96
constexpr uint32_t kShiftAddPerIma = 4;          // ISAAC shift-add x4 per IMA
constexpr uint32_t kShiftAddUnits = kImasPerTile * kShiftAddPerIma;   // 48 per tile
constexpr uint64_t kInputBufferBytes = 64 * 1024;   // ISAAC tile eDRAM buffer 64 KB
constexpr uint64_t kOutputBufferBytes = 3 * 1024;   // ISAAC tile output register 3 KB
constexpr uint32_t kTiles = 168;                 // ISAAC-CE chip: 168 tiles
// ISAAC has no chip-level buffer (tiles exchange data over the network). imcsim models one
// built of 16 ISAAC 64 KB eDRAM banks = 1 MiB: holds the largest inter-layer activation of
// ResNet-18 on ImageNet at 8 bits (64x112x112 = 784 KiB).
constexpr uint32_t kGlobalBufferBanks = 16;
constexpr uint64_t kGlobalBufferBytes = kGlobalBufferBanks * kInputBufferBytes;  // 1 MiB
// 256 bits per cycle: the width of one ISAAC eDRAM access (20.45 pJ per 256-bit access).
constexpr uint32_t kBufferBusBits = 256;
// Global buffer: 2 ports (one read and one write may proceed together), each one 256-bit
// eDRAM access per cycle, like a tile's eDRAM (imcsim assumption built on [ISAAC]).
constexpr uint32_t kGlobalBufferPorts = 2;
constexpr uint32_t kGlobalBufferPortBits = kBufferBusBits;
// Interconnect between the global buffer and the tiles: default a shared bus of the eDRAM
// access width, one cycle per hop (imcsim assumption; ISAAC's c-mesh routers are fixed
// blocks in arch_configs/isaac_like.json).
constexpr uint32_t kLinkBits = kBufferBusBits;
constexpr uint32_t kHopCycles = 1;

// ---- technology ----------------------------------------------------------------------------
// Every default figure is a 32 nm figure [ISAAC]. Other nodes scale them first-order with a
// constant supply: energy (and leakage) x (nm / 32), area x (nm / 32)^2 (imcsim's rule,
// docs/arch_config.md; a first-order estimate, not a published fit).
constexpr uint32_t kTechnologyNm = 32;
constexpr uint32_t kMinTechnologyNm = 3;
constexpr uint32_t kMaxTechnologyNm = 500;

// ---- validation ranges ---------------------------------------------------------------------
constexpr uint32_t kMaxArrayDim = 8192;          // rows, cols
constexpr uint32_t kMaxCellBits = 8;
constexpr uint32_t kMaxDacBits = 16;
constexpr uint32_t kMaxAdcBits = 16;
constexpr uint64_t kMaxBufferBytes = uint64_t{1} << 40;  // 1 TiB: keeps bytes*8 far from overflow
constexpr double kMaxClockMhz = 100000.0;        // 100 GHz

// ---- component costs -----------------------------------------------------------------------
// ADC, SAR [SAR32]: energy per conversion (pJ) and area per ADC (um^2), index = bits - 4.
constexpr uint32_t kSarTableMinBits = 4;
constexpr uint32_t kSarTableMaxBits = 10;
constexpr std::array<double, 7> kSarEnergyPj = {0.79, 0.99, 1.20, 1.42, 1.67, 1.97, 2.38};
constexpr std::array<double, 7> kSarAreaUm2 = {361, 477, 627, 845, 1200, 1828, 3002};
// Below 4 bits the SAR cost is clamped to the 4-bit figure: the table's low end is dominated by
// fixed overhead (only +25 %/bit from 4 to 5 bits), so no trend supports going lower.
// Above 10 bits energy and area double per bit from the 10-bit figure [Walden: E ~ 2^N].

// Flash and ramp ADCs are costed per conversion step (one comparator decision) with the ISAAC
// ADC's own Walden figure: 1.67 pJ / 2^8 = 6.52 fJ per step (the Murmann survey's best at
// >= 1 GS/s is ~5 fJ/step), and an area of 1200 um^2 / 2^8 = 4.69 um^2 per comparator.
constexpr double kComparatorEnergyPj = 1.67 / 256.0;
constexpr double kComparatorAreaUm2 = 1200.0 / 256.0;
// Flash: 2^N - 1 comparators, all fire once per conversion.
// Ramp / single-slope (also the in-memory NL-ADC): one comparator decision per ramp step, 2^N
// steps per conversion; area = one comparator + an N-bit counter, each counter bit counted as
// one comparator area (an estimate; the ramp generator is shared and not counted).

// DAC [ISAAC, MNSIM]: 1-bit DAC 0.4 pJ per row activation, 0.166 um^2 per DAC (one per row);
// power doubles per extra bit [MNSIM]; area assumed to scale the same way.
constexpr double kDac1bEnergyPj = 0.4;
constexpr double kDac1bAreaUm2 = 0.166;

// Crossbar cell [ISAAC]: 1.83 fJ per cell operation; area 0.0002 mm^2 per 8 arrays of 128x128.
constexpr double kCellEnergyPj = 1.83e-3;
constexpr double kCellAreaUm2 = 0.0002 * 1e6 / (8.0 * 128.0 * 128.0);  // 0.00153 um^2

// Sample-and-hold [ISAAC]: 10 uW and 0.00004 mm^2 per 8x128 units; one sample per unit per
// 100 ns crossbar read, so 10 uW * 100 ns / 1024 = 0.977 fJ per sample.
constexpr double kSampleHoldEnergyPj = (10.0 * kCrossbarReadNs / 1024.0) / 1000.0;
constexpr double kSampleHoldAreaUm2 = 0.00004 * 1e6 / 1024.0;  // 0.039 um^2

// Shift-add [ISAAC]: 0.021 pJ per operation; 0.00024 mm^2 per 4 units.
constexpr double kShiftAddEnergyPj = 0.021;
constexpr double kShiftAddAreaUm2 = 0.00024 * 1e6 / 4.0;  // 60 um^2

// Tile input buffer = ISAAC eDRAM [ISAAC]: 20.45 pJ per 256-bit access; 0.083 mm^2 per 64 KB.
constexpr double kEdramEnergyPjPerByte = 20.45 / 32.0;                     // 0.639 pJ/B
constexpr double kEdramAreaUm2PerByte = 0.083 * 1e6 / (64.0 * 1024.0);    // 1.27 um^2/B

// Tile output buffer = registers: 0.009 pJ/bit [Aladdin, 40 nm, not scaled]; area from the
// ISAAC IMA output register, 256 B in 0.00077 mm^2 [ISAAC].
constexpr double kRegisterEnergyPjPerByte = 0.009 * 8.0;                  // 0.072 pJ/B
constexpr double kRegisterAreaUm2PerByte = 0.00077 * 1e6 / 256.0;         // 3.01 um^2/B

// Global buffer: 16 banks of ISAAC eDRAM; an access touches one bank, so per-byte energy and
// area are those of the tile eDRAM.
constexpr double kGlobalBufferEnergyPjPerByte = kEdramEnergyPjPerByte;
constexpr double kGlobalBufferAreaUm2PerByte = kEdramAreaUm2PerByte;

// Digital op: 32-bit adder [Aladdin, 40 nm, not scaled to 32 nm].
constexpr double kDigitalOpEnergyPj = 0.21;
constexpr double kDigitalOpAreaUm2 = 278.0;

// Interconnect link, energy per bit per hop: a wire of one ISAAC tile pitch switched at
// 1 V: 0.2 fF/um [NeuroSim wire capacitance] x 610 um (sqrt of ISAAC's 0.372 mm^2 tile) x
// (1 V)^2 = 0.122 pJ. Router logic is not included (ISAAC's router is a fixed block); links
// are wires over the tiles, so no area of their own.
constexpr double kWireCapFfPerUm = 0.2;
constexpr double kTilePitchUm = 610.0;
constexpr double kSupplyV = 1.0;
constexpr double kLinkEnergyPjPerBitHop = kWireCapFfPerUm * kTilePitchUm * kSupplyV * kSupplyV * 1e-3;

// Murmann ADC survey (2025) best-design Walden envelope: FOM_W,env(f) = 0.669 fJ x
// sqrt(1 + (f / 1.221 GHz)^2) per conversion step.
constexpr double kMurmannFomFj = 0.669;
constexpr double kMurmannCornerHz = 1.221e9;

// Leakage: 0 by default for every component. The per-event energies are derived from
// ISAAC's Table I powers at full activity (or from per-conversion figures measured the same
// way), which already include each block's static power; a separate default leakage would
// count it twice. A config may set "leakage_mw" per component instance (docs/arch_config.md).
constexpr double kDefaultLeakageMw = 0.0;

}  // namespace imcsim::config::defaults
