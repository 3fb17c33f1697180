// Functional engine (sim/engine/functional_engine.h) against docs/SEMANTICS.md:
//  * exactness with an IDEAL ADC: for every encoding x DAC width x cell width x row tiling x
//    A-shift x input zero point, a Conv2d (padding, stride 2) and a Linear layer with float
//    output equal a direct convolution / matrix product computed here;
//  * LINEAR / NONLINEAR ADC layers derived by hand (codes, values, accumulators, traces,
//    counters);
//  * digital nodes (MaxPool, AvgPool, Add, Relu, Flatten) on hand examples, incl. rint
//    half-to-even requantisation;
//  * golden digests of a small conv layer vs. the formula evaluated here;
//  * run_dataset vs. infer() per image, identical for 1 and 2 threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "models/crossbar/crossbar.h"
#include "models/crossbar/slicing.h"
#include "models/digital/requant.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/graph_loader.h"
#include "tests/unit/graph_text.h"

namespace imcsim::engine {
namespace {

using namespace imcsim::testing_graphs;

graph::Graph parse(const GraphT& g, const std::string& name = "engine_test.imcg.txt") {
  return graph::parse_graph_text(g.str(), name);
}

// ---- requantisation ------------------------------------------------------------------------

TEST(Requantize, RintHalfToEvenAndClamp) {
  using kernels::requantize;
  EXPECT_EQ(requantize(2.5, 1.0, 0, 8), 2);    // 2.5 -> 2 (even)
  EXPECT_EQ(requantize(3.5, 1.0, 0, 8), 4);    // 3.5 -> 4 (even)
  EXPECT_EQ(requantize(1.25, 0.5, 0, 8), 2);   // 1.25 / 0.5 = 2.5 -> 2
  EXPECT_EQ(requantize(-2.5, 1.0, 10, 8), 8);  // -2.5 -> -2, + 10
  EXPECT_EQ(requantize(-3.5, 1.0, 10, 8), 6);  // -3.5 -> -4, + 10
  EXPECT_EQ(requantize(-0.4, 1.0, 0, 8), 0);   // -0 -> 0
  EXPECT_EQ(requantize(-7.0, 1.0, 3, 8), 0);   // -4 clamps to 0
  EXPECT_EQ(requantize(1000.0, 1.0, 0, 8), 255);
  EXPECT_EQ(requantize(16.0, 1.0, 0, 4), 15);
  EXPECT_EQ(requantize(0.3, 0.1, 0, 8), 3);    // 0.3 / 0.1 = 2.9999999999999996 -> 3
}

TEST(PixelsToCodes, HandValues) {
  // real = p / 255; norm = (real - 0.5) / 0.25; q = rint(norm * 64) + 128 clamped to [0, 255].
  graph::InputSpec spec;
  spec.pixel_scale = 1.0 / 255.0;
  spec.mean = 0.5;
  spec.std = 0.25;
  spec.quant = graph::Quant{1.0 / 64.0, 128, 8};
  const std::vector<uint8_t> px = {0, 255, 128, 127, 64};
  std::vector<int32_t> codes(px.size());
  pixels_to_codes(spec, px, codes);
  // p = 0: norm = -2 -> -128 + 128 = 0. p = 255: norm = 2 -> 128 + 128 = 256 -> 255.
  // p = 128: norm = 0.0078431 -> x64 = 0.502 -> 1 -> 129. p = 127: -0.502 -> -1 -> 127.
  // p = 64: real 0.25098, norm = -0.99608 -> x64 = -63.749 -> -64 -> 64.
  EXPECT_EQ(codes, (std::vector<int32_t>{0, 255, 129, 127, 64}));
}

// ---- IDEAL-ADC exactness over all layer configurations ----------------------------------------

struct ExactCase {
  int encoding;       // 0..3
  int dac;            // 0: 1 bit, 1: 3 bits, 2: Bx bits
  uint32_t bc;        // 1..3
  bool aligned;
  bool ashift;
  bool zero_point;
};

const char* kEnc[] = {"WEIGHT_ENCODING_OFFSET", "WEIGHT_ENCODING_TWOS_COMPLEMENT",
                      "WEIGHT_ENCODING_DIFFERENTIAL_DIGITAL", "WEIGHT_ENCODING_DIFFERENTIAL_ANALOG"};

// Hand formulas for S and T (docs/SEMANTICS.md steps 2-3).
uint32_t expected_slices(int enc, uint32_t bw, uint32_t bc) {
  const uint32_t mag = (bw - 1 + bc - 1) / bc;
  switch (enc) {
    case 0: return (bw + bc - 1) / bc;
    case 1: return mag + 1;
    case 2: return 2 * mag;
    default: return mag;
  }
}
uint32_t expected_groups(uint32_t bx, uint32_t bdac, bool ashift) {
  return ashift ? (bx - 1 + bdac - 1) / bdac + 1 : (bx + bdac - 1) / bdac;
}

class ExactIdeal : public ::testing::Test {
 protected:
  std::mt19937 rng{20240611};
  int uni(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
};

TEST_F(ExactIdeal, EveryEncodingDacCellTilingAshiftZeroPointConvAndLinear) {
  int index = 0;
  int checked = 0;
  for (int enc = 0; enc < 4; ++enc)
    for (int dac = 0; dac < 3; ++dac)
      for (uint32_t bc = 1; bc <= 3; ++bc)
        for (bool aligned : {false, true})
          for (bool ashift : {false, true})
            for (bool zp : {false, true}) {
              ++index;
              const uint32_t bx = index % 2 ? 8 : 5;
              const uint32_t bw = std::vector<uint32_t>{8, 5, 4}[index % 3];
              const uint32_t bdac = dac == 0 ? 1 : dac == 1 ? 3 : bx;
              const int32_t z = zp ? (index % 4 < 2 ? 3 : int32_t(1u << (bx - 1)) + 1) : 0;
              const uint32_t a = ashift ? (1u << (bx - 1)) : 0;
              const bool diff = enc >= 2;
              const int wlo = -(1 << (bw - 1)) + (diff ? 1 : 0), whi = (1 << (bw - 1)) - 1;
              const int xmax = (1 << bx) - 1;
              const bool with_bias = index % 2 == 0;
              const std::string what = fmt::format("case {}: enc {} Bx {} Bw {} Bc {} Bdac {} {} a {} z {}", index,
                                                   kEnc[enc], bx, bw, bc, bdac, aligned ? "aligned" : "contiguous",
                                                   a, z);
              SCOPED_TRACE(what);

              // -- Conv2d: Cin 3 on 5x6, Cout 4; odd cases 3x3 stride 2 pad 1, even cases 3x2
              //    stride (2,1) pad (1,0). R = 10 or 19.
              const bool sq = index % 2 == 1;
              const uint32_t C = 3, H = 5, W = 6, N = 4, kh = 3, kw = sq ? 3 : 2, sh = 2, sw = sq ? 2 : 1,
                             ph = 1, pw = sq ? 1 : 0;
              const uint32_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
              const uint32_t K = C * kh * kw, R = index % 3 == 0 ? 19 : 10;
              ImcT l;
              l.in_channels = C, l.out_channels = N, l.kernel_h = kh, l.kernel_w = kw;
              l.stride_h = sh, l.stride_w = sw, l.pad_h = ph, l.pad_w = pw;
              l.weight_bits = bw, l.cell_bits = bc, l.dac_bits = bdac, l.encoding = kEnc[enc];
              l.row_tiling = aligned ? "ROW_TILING_CHANNEL_ALIGNED" : "ROW_TILING_CONTIGUOUS";
              l.array_rows = R, l.ashift_offset = a;
              for (uint32_t i = 0; i < N * K; ++i) l.weights.push_back(uni(wlo, whi));
              l.weights[0] = wlo, l.weights[1] = whi, l.weights[K] = whi, l.weights[K + 1] = wlo;
              if (with_bias)
                for (uint32_t n = 0; n < N; ++n) l.bias.push_back(0.25 * uni(-20, 20));
              GraphT g;
              g.input_shape = {C, H, W};
              g.input_quant = QuantT{1.0, z, bx};
              g.nodes.push_back(NodeT{"conv", {"x"}, "y", {N, OH, OW}, QuantT{1, 0, 0}, true, l.str()});
              g.num_classes = N * OH * OW;
              const auto graph = parse(g);
              FunctionalEngine eng(graph);
              const auto shape = eng.imc_shape(0);
              EXPECT_EQ(shape.positions, OH * OW);
              EXPECT_EQ(shape.slices, expected_slices(enc, bw, bc));
              EXPECT_EQ(shape.groups, expected_groups(bx, bdac, ashift));
              const uint32_t cpt = std::min(R / (kh * kw), C);
              EXPECT_EQ(shape.tiles, aligned ? (C + cpt - 1) / cpt : (K + R - 1) / R);

              std::vector<int32_t> x(C * H * W);
              for (auto& v : x) v = uni(0, xmax);
              x[0] = xmax, x[1] = 0, x[W] = xmax;
              EngineCounters counters;
              const auto res = eng.infer(x, &counters);
              ASSERT_EQ(res.output_values.size(), N * OH * OW);
              EXPECT_TRUE(res.node_codes[0].empty());
              for (uint32_t n = 0; n < N; ++n)
                for (uint32_t oy = 0; oy < OH; ++oy)
                  for (uint32_t ox = 0; ox < OW; ++ox) {
                    int64_t acc = 0;
                    for (uint32_t c = 0; c < C; ++c)
                      for (uint32_t i = 0; i < kh; ++i)
                        for (uint32_t j = 0; j < kw; ++j) {
                          const int64_t yy = int64_t(oy * sh + i) - ph, xx = int64_t(ox * sw + j) - pw;
                          if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;  // (z - z) * w = 0
                          acc += int64_t(x[(c * H + yy) * W + xx] - z) * l.weights[n * K + (c * kh + i) * kw + j];
                        }
                    const double want = double(acc) + (with_bias ? l.bias[n] : 0.0);
                    ASSERT_EQ(res.output_values[(n * OH + oy) * OW + ox], want) << "n " << n << " oy " << oy
                                                                                 << " ox " << ox;
                  }
              const auto& cn = counters.per_node[0];
              EXPECT_EQ(cn.images, 1u);
              EXPECT_EQ(cn.adc_conversions, uint64_t(shape.positions) * shape.tiles * shape.slices * shape.groups * N);
              EXPECT_EQ(cn.adc_saturations, 0u);  // IDEAL never clips

              // -- Linear: flatten 2x2x3 -> 12 -> 5 outputs, R = 5 (3 row tiles).
              const uint32_t KL = 12, NL = 5;
              ImcT fl = l;
              fl.conv = false;
              fl.in_channels = KL, fl.out_channels = NL, fl.kernel_h = fl.kernel_w = 1;
              fl.stride_h = fl.stride_w = 1, fl.pad_h = fl.pad_w = 0, fl.array_rows = 5;
              fl.weights.clear();
              for (uint32_t i = 0; i < NL * KL; ++i) fl.weights.push_back(uni(wlo, whi));
              fl.weights[0] = wlo, fl.weights[KL - 1] = whi;
              fl.bias.clear();
              if (with_bias)
                for (uint32_t n = 0; n < NL; ++n) fl.bias.push_back(0.5 * uni(-9, 9));
              GraphT gl;
              gl.input_shape = {2, 2, 3};
              gl.input_quant = QuantT{1.0, z, bx};
              gl.nodes.push_back(NodeT{"flat", {"x"}, "f", {KL}, gl.input_quant, true, "flatten {}"});
              gl.nodes.push_back(NodeT{"fc", {"f"}, "y", {NL}, QuantT{1, 0, 0}, true, fl.str()});
              gl.num_classes = NL;
              const auto graph_l = parse(gl);
              FunctionalEngine eng_l(graph_l);
              EXPECT_EQ(eng_l.imc_shape(1).tiles, 3u);
              std::vector<int32_t> xl(KL);
              for (auto& v : xl) v = uni(0, xmax);
              xl[0] = xmax, xl[1] = 0;
              const auto rl = eng_l.infer(xl);
              ASSERT_EQ(rl.output_values.size(), NL);
              EXPECT_EQ(rl.node_codes[0], xl);  // flatten keeps codes
              uint32_t best = 0;
              for (uint32_t n = 0; n < NL; ++n) {
                int64_t acc = 0;
                for (uint32_t k = 0; k < KL; ++k) acc += int64_t(xl[k] - z) * fl.weights[n * KL + k];
                const double want = double(acc) + (with_bias ? fl.bias[n] : 0.0);
                ASSERT_EQ(rl.output_values[n], want) << "column " << n;
                if (want > rl.output_values[best]) best = n;
              }
              EXPECT_EQ(rl.predicted_class, best);
              ++checked;
            }
  EXPECT_EQ(checked, 4 * 3 * 3 * 2 * 2 * 2);
}

TEST_F(ExactIdeal, FracBitsAndScalesCancelExactly) {
  // F = 3, s_x = 0.5, s_w = 0.25 per column, psum_scale 2: m = ((0.5 * 0.25) * 2) * 2^-3, so
  // y = (2^3 * acc) * m = 0.25 * acc exactly.
  ImcT l;
  l.conv = false;
  l.in_channels = 6, l.out_channels = 2, l.weight_bits = 6, l.cell_bits = 2, l.dac_bits = 2;
  l.encoding = kEnc[1], l.array_rows = 4, l.ashift_offset = 8;
  l.weights = {-32, 31, 7, -5, 0, 1, 3, 3, -3, -3, 30, -31};
  l.weight_scale = {0.25, 0.25};
  l.psum_scale = {2.0, 2.0};
  l.adc.frac_bits = 3;
  GraphT g;
  g.input_shape = {1, 2, 3};
  g.input_quant = QuantT{0.5, 2, 4};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {6}, g.input_quant, true, "flatten {}"});
  g.nodes.push_back(NodeT{"fc", {"f"}, "y", {2}, QuantT{1, 0, 0}, true, l.str()});
  g.num_classes = 2;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  const std::vector<int32_t> x = {15, 0, 2, 9, 4, 1};
  // x - z = (13, -2, 0, 7, 2, -1).
  // col0: 13*-32 + -2*31 + 0 + 7*-5 + 0 + -1*1 = -416 - 62 - 35 - 1 = -514 -> y = -128.5
  // col1: 13*3 + -2*3 + 0 + 7*-3 + 2*30 + -1*-31 = 39 - 6 - 21 + 60 + 31 = 103 -> y = 25.75
  std::vector<NodeTrace> traces;
  const auto r = eng.infer(x, nullptr, &traces);
  EXPECT_EQ(r.output_values, (std::vector<double>{-128.5, 25.75}));
  EXPECT_EQ(traces[1].acc_position0, (std::vector<int64_t>{-514 * 8, 103 * 8}));
  EXPECT_EQ(r.predicted_class, 1u);
}

// ---- hand-derived LINEAR / NONLINEAR ADC layers ----------------------------------------------

// Tiny layer: input 1x1x2 (Bx = 2, s_x = 0.5, z = 0) -> flatten -> Linear 2 -> 1, Bw = 2
// TWOS_COMPLEMENT on 1-bit cells, Bdac = 2, W = (1, -2), s_w = 0.25, bias 1.
// Slices: {bit 0, +1}, {bit 1 (sign), -1}. Patterns 1 -> 01, -2 -> 10: d_0 = (1, 0), d_1 = (0, 1).
// Groups: one 2-bit group. x = (3, 2): p_0 = 3*1 + 2*0 = 3, p_1 = 3*0 + 2*1 = 2.
// acc = value_0 - 2 * value_1; y = acc * ((0.5 * 0.25) * 1) * 2^0 + 1 = acc / 8 + 1.
GraphT tiny_linear(const AdcT& adc, const std::string& out_name = "fc") {
  ImcT l;
  l.conv = false;
  l.in_channels = 2, l.out_channels = 1, l.weight_bits = 2, l.cell_bits = 1, l.dac_bits = 2;
  l.encoding = kEnc[1];
  l.weights = {1, -2};
  l.weight_scale = {0.25};
  l.bias = {1.0};
  l.adc = adc;
  GraphT g;
  g.input_shape = {1, 1, 2};
  g.input_quant = QuantT{0.5, 0, 2};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {2}, g.input_quant, true, "flatten {}"});
  g.nodes.push_back(NodeT{out_name, {"f"}, "y", {1}, QuantT{1, 0, 0}, true, l.str()});
  g.num_classes = 1;
  return g;
}

uint64_t digest(const std::vector<int64_t>& v) {
  // sum_i uint64(v_i) * M^(i+1) mod 2^64, M = 0x100000001B3.
  uint64_t d = 0, p = 1;
  for (int64_t x : v) {
    p *= 0x100000001B3ull;
    d += static_cast<uint64_t>(x) * p;
  }
  return d;
}

TEST(EngineAdc, IdealTinyLayer) {
  // IDEAL: acc = 3 - 2*2 = -1 (= 3*1 + 2*(-2)); y = -1/8 + 1 = 0.875.
  const auto graph = parse(tiny_linear(AdcT{}));
  FunctionalEngine eng(graph);
  EXPECT_EQ(eng.infer(std::vector<int32_t>{3, 2}).output_values, std::vector<double>{0.875});
}

TEST(EngineAdc, LinearFloorTinyLayerWithTraceAndCounters) {
  // LINEAR 2-bit unsigned, step 2, centre 0, FLOOR: p = 3 -> 1 (value 2), p = 2 -> 1 (value 2).
  // acc = 2 - 2*2 = -2; y = -2/8 + 1 = 0.75.
  AdcT adc;
  adc.kind = "KIND_LINEAR", adc.bits = 2, adc.step_fx = {2}, adc.centre_fx = {0};
  const auto graph = parse(tiny_linear(adc));
  FunctionalEngine eng(graph);
  std::vector<NodeTrace> traces;
  EngineCounters counters;
  const auto r = eng.infer(std::vector<int32_t>{3, 2}, &counters, &traces);
  EXPECT_EQ(r.output_values, std::vector<double>{0.75});
  ASSERT_EQ(traces.size(), 2u);
  const auto& t = traces[1];
  EXPECT_EQ(t.psums_position0, (std::vector<int64_t>{3, 2}));  // [G=1][S=2][T=1][N=1]
  EXPECT_EQ(t.adc_codes_position0, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(t.acc_position0, (std::vector<int64_t>{-2}));
  EXPECT_EQ(t.psum.count(), 2u);
  EXPECT_EQ(t.psum.value(), digest({3, 2}));
  EXPECT_EQ(t.adc_code.value(), digest({1, 1}));
  EXPECT_EQ(t.acc.value(), digest({-2}));
  EXPECT_EQ(t.acc.count(), 1u);
  // Hand value of the digest: 3*M + 2*M^2 mod 2^64.
  const uint64_t M = 0x100000001B3ull;
  EXPECT_EQ(t.psum.value(), 3 * M + 2 * (M * M));
  const auto& c = counters.per_node[1];
  EXPECT_EQ(c.adc_conversions, 2u);   // P*G*S*T*N = 1*1*2*1*1
  EXPECT_EQ(c.row_drives, 2u);        // both rows driven (u = 3, 2)
  EXPECT_EQ(c.adc_saturations, 0u);
  EXPECT_EQ(c.psum_min, 2);
  EXPECT_EQ(c.psum_max, 3);
  // Non-IMC node: nothing counted.
  EXPECT_EQ(counters.per_node[0].adc_conversions, 0u);
}

TEST(EngineAdc, LinearHalfAwayTinyLayer) {
  // HALF_AWAY: p = 3 -> floor_div(6 + 2, 4) = 2 (value 4); p = 2 -> floor_div(4 + 2, 4) = 1
  // (value 2). acc = 4 - 2*2 = 0; y = 1.
  AdcT adc;
  adc.kind = "KIND_LINEAR", adc.bits = 2, adc.rounding = "ROUNDING_HALF_AWAY", adc.step_fx = {2},
  adc.centre_fx = {0};
  const auto graph = parse(tiny_linear(adc));
  FunctionalEngine eng(graph);
  std::vector<NodeTrace> traces;
  EXPECT_EQ(eng.infer(std::vector<int32_t>{3, 2}, nullptr, &traces).output_values, std::vector<double>{1.0});
  EXPECT_EQ(traces[1].adc_codes_position0, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(traces[1].acc_position0, (std::vector<int64_t>{0}));
}

TEST(EngineAdc, LinearSaturationIsCounted) {
  // 1-bit unsigned, step 1: codes {0, 1}. p = 3 -> 3 clipped to 1 (value 1); p = 2 -> 1.
  // acc = 1 - 2*1 = -1; y = 0.875. Two saturations.
  AdcT adc;
  adc.kind = "KIND_LINEAR", adc.bits = 1, adc.step_fx = {1}, adc.centre_fx = {0};
  const auto graph = parse(tiny_linear(adc));
  FunctionalEngine eng(graph);
  EngineCounters counters;
  EXPECT_EQ(eng.infer(std::vector<int32_t>{3, 2}, &counters).output_values, std::vector<double>{0.875});
  EXPECT_EQ(counters.per_node[1].adc_saturations, 2u);
}

TEST(EngineAdc, SliceTileColumnGranularity) {
  // 2 sets (G=1, S=2, N=1): set 0 (slice 0) step 1 -> value = p = 3; set 1 (slice 1) step 4
  // FLOOR -> p = 2 -> code 0, value 0. acc = 3 - 2*0 = 3; y = 3/8 + 1 = 1.375.
  AdcT adc;
  adc.kind = "KIND_LINEAR", adc.bits = 4, adc.granularity = "GRANULARITY_SLICE_TILE_COLUMN";
  adc.step_fx = {1, 4}, adc.centre_fx = {0, 0};
  const auto graph = parse(tiny_linear(adc));
  FunctionalEngine eng(graph);
  std::vector<NodeTrace> traces;
  EXPECT_EQ(eng.infer(std::vector<int32_t>{3, 2}, nullptr, &traces).output_values, std::vector<double>{1.375});
  EXPECT_EQ(traces[1].adc_codes_position0, (std::vector<int64_t>{3, 0}));
}

TEST(EngineAdc, NonlinearTinyLayer) {
  // 1-bit NL ADC, threshold {2}, levels {0, 5}: p = 3 -> 1 (5), p = 2 -> 1 (5, v == threshold).
  // acc = 5 - 2*5 = -5; y = -5/8 + 1 = 0.375.
  AdcT adc;
  adc.kind = "KIND_NONLINEAR", adc.bits = 1, adc.thresholds_fx = {2}, adc.levels_fx = {0, 5};
  const auto graph = parse(tiny_linear(adc));
  FunctionalEngine eng(graph);
  std::vector<NodeTrace> traces;
  EXPECT_EQ(eng.infer(std::vector<int32_t>{3, 2}, nullptr, &traces).output_values, std::vector<double>{0.375});
  EXPECT_EQ(traces[1].adc_codes_position0, (std::vector<int64_t>{1, 1}));
  // x = (1, 1): p_0 = 1 -> 0 (level 0); p_1 = 1 -> 0. acc = 0; y = 1.
  EXPECT_EQ(eng.infer(std::vector<int32_t>{1, 1}).output_values, std::vector<double>{1.0});
}

// Input 1x1x3 (Bx = 2, s_x = 0.5, z = 1) -> flatten -> Linear 3 -> 2, OFFSET Bw = 2 on 1-bit
// cells, Bdac = 1, A-shift a = 2, R = 2 (tiles rows [0,2), [2,3)), LINEAR per-COLUMN ADC with
// F = 1: column 0 step_fx 2 centre 0 (value = 2p, exact), column 1 step_fx 3 centre 1.
// W col0 = (1, -2, 0), col1 = (-1, 1, -2); D = W + 2: col0 (3, 0, 2) = (11, 00, 10),
// col1 (1, 3, 0) = (01, 11, 00). d_0 (bit 0): col0 (1,0,0), col1 (1,1,0); d_1: col0 (1,0,1),
// col1 (0,1,0). x = (3, 0, 2): x' = x - 2 = (1, -2, 0), 2-bit patterns 01, 10, 00.
// Groups: {bit 0, +1}, {bit 1 (sign), -1}: u_0 = (1,0,0), u_1 = (0,1,0).
// Partial sums [g][s][t][n]: g0: s0t0 (1,1), s0t1 (0,1), s1t0 (1,0), s1t1 (0,1); g1: all 0.
// Column 1 codes: v = 2p; p = 0 -> floor(-1/3) = -1 -> clipped 0 (value 1); p = 1 -> floor(1/3)
// = 0 (value 1): every value is 1, 5 conversions (p = 0) saturate.
// Shift weights: s0t0 +1, s0t1 -2, s1t0 +2, s1t1 -4.
// acc0 = (2*1 + 2*2) + 2*(a - z)*colsum0 - 2*2*sum(x') = 6 + 2*1*(-1) - 4*(-1) = 8
//       (= 2^F * sum (x - z) W = 2 * (2*1 + (-1)(-2) + 1*0) = 8, column 0 is exact).
// acc1 = 2 * (1 - 2 + 2 - 4) + 2*1*(-2) + 4 = -6 - 4 + 4 = -6.
// m0 = ((0.5 * 0.5) * 1) * 0.5 = 0.125, m1 = ((0.5 * 0.25) * 2) * 0.5 = 0.125;
// y0 = 8 * 0.125 + 0.5 = 1.5; y1 = -6 * 0.125 + 0 = -0.75.
GraphT offset_ashift_graph(bool relu_int_output) {
  ImcT l;
  l.conv = false;
  l.in_channels = 3, l.out_channels = 2, l.weight_bits = 2, l.cell_bits = 1, l.dac_bits = 1;
  l.encoding = kEnc[0], l.array_rows = 2, l.ashift_offset = 2;
  l.weights = {1, -2, 0, -1, 1, -2};
  l.weight_scale = {0.5, 0.25};
  l.psum_scale = {1.0, 2.0};
  l.bias = {0.5, 0.0};
  l.adc.kind = "KIND_LINEAR", l.adc.bits = 2, l.adc.frac_bits = 1, l.adc.granularity = "GRANULARITY_COLUMN";
  l.adc.step_fx = {2, 3}, l.adc.centre_fx = {0, 1};
  if (relu_int_output) l.activation = "ACTIVATION_RELU";
  GraphT g;
  g.input_shape = {1, 1, 3};
  g.input_quant = QuantT{0.5, 1, 2};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {3}, g.input_quant, true, "flatten {}"});
  g.nodes.push_back(NodeT{"fc", {"f"}, "y", {2}, relu_int_output ? QuantT{0.5, 2, 3} : QuantT{1, 0, 0}, true,
                          l.str()});
  g.num_classes = 2;
  return g;
}

TEST(EngineAdc, OffsetAshiftZeroPointPerColumnAdcTwoTiles) {
  const auto graph = parse(offset_ashift_graph(false));
  FunctionalEngine eng(graph);
  const auto sh = eng.imc_shape(1);
  EXPECT_EQ(sh.tiles, 2u);
  EXPECT_EQ(sh.slices, 2u);
  EXPECT_EQ(sh.groups, 2u);
  std::vector<NodeTrace> traces;
  EngineCounters counters;
  const auto r = eng.infer(std::vector<int32_t>{3, 0, 2}, &counters, &traces);
  EXPECT_EQ(r.output_values, (std::vector<double>{1.5, -0.75}));
  EXPECT_EQ(r.predicted_class, 0u);
  const auto& t = traces[1];
  EXPECT_EQ(t.psums_position0, (std::vector<int64_t>{1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(t.adc_codes_position0, (std::vector<int64_t>{1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(t.acc_position0, (std::vector<int64_t>{8, -6}));
  EXPECT_EQ(t.psum.value(), digest(t.psums_position0));
  EXPECT_EQ(t.acc.value(), digest({8, -6}));
  const auto& c = counters.per_node[1];
  EXPECT_EQ(c.adc_conversions, 16u);  // 1*2*2*2*2
  EXPECT_EQ(c.row_drives, 2u);        // u_0 row 0, u_1 row 1
  EXPECT_EQ(c.adc_saturations, 5u);
  EXPECT_EQ(c.psum_min, 0);
  EXPECT_EQ(c.psum_max, 1);
}

TEST(EngineAdc, ReluAndRequantisedOutput) {
  // Same layer with RELU and output quant (0.5, z 2, 3 bits): y0 = 1.5 -> 3 + 2 = 5;
  // y1 = relu(-0.75) = 0 -> 2. Real output values 0.5*(5-2) = 1.5, 0.
  const auto graph = parse(offset_ashift_graph(true));
  FunctionalEngine eng(graph);
  const auto r = eng.infer(std::vector<int32_t>{3, 0, 2});
  EXPECT_EQ(r.node_codes[1], (std::vector<int32_t>{5, 2}));
  EXPECT_EQ(r.output_values, (std::vector<double>{1.5, 0.0}));
}

// ---- every ADC kind x granularity x encoding against a literal reference -------------------

// docs/SEMANTICS.md "IMC layer" steps 1-8, written out literally for one conv layer (own row
// tiles, set indices and ADC arithmetic; only the bit slicing, tested in slicing_test.cc, is
// shared with the engine).
struct Reference {
  std::vector<int64_t> psums, codes, acc;  // [P][G][S][T][N], [P][G][S][T][N], [P][N]
  std::vector<double> y;                   // [N][P]
  uint64_t saturations = 0;
  int64_t pmin = INT64_MAX, pmax = INT64_MIN;
};

Reference reference_conv(const graph::ImcLayer& l, const graph::Quant& q, uint32_t H, uint32_t W,
                         const std::vector<int32_t>& x) {
  using namespace kernels;
  Reference ref;
  const uint32_t C = l.in_channels, N = l.out_channels, kh = l.kernel_h, kw = l.kernel_w;
  const uint32_t K = C * kh * kw, OH = (H + 2 * l.pad_h - kh) / l.stride_h + 1,
                 OW = (W + 2 * l.pad_w - kw) / l.stride_w + 1, P = OH * OW;
  const int64_t a = l.ashift_offset, z = q.zero_point, F = l.adc.frac_bits;
  const auto groups = input_groups(q.bits, l.dac_bits, a != 0);
  const auto slices = weight_slices(l.encoding, l.weight_bits, l.cell_bits);
  const size_t S = slices.size(), T = groups.size();
  std::vector<std::pair<uint32_t, uint32_t>> tiles;  // row ranges
  if (l.row_tiling == graph::RowTilingRule::kContiguous) {
    for (uint32_t g = 0; g * l.array_rows < K; ++g) tiles.push_back({g * l.array_rows, std::min((g + 1) * l.array_rows, K)});
  } else {
    const uint32_t cpt = std::min(l.array_rows / (kh * kw), C);
    for (uint32_t g = 0; g * cpt < C; ++g) tiles.push_back({g * cpt * kh * kw, std::min((g + 1) * cpt, C) * kh * kw});
  }
  const size_t G = tiles.size();
  auto cell = [&](uint32_t k, size_t s, uint32_t n) -> int64_t {
    const int32_t w = l.weights[size_t{n} * K + k];
    if (l.encoding == WeightEncoding::kDifferentialAnalog)
      return int64_t{slice_value(stored_weight_pattern(l.encoding, l.weight_bits, w, 0), slices[s])} -
             int64_t{slice_value(stored_weight_pattern(l.encoding, l.weight_bits, w, 1), slices[s])};
    return slice_value(stored_weight_pattern(l.encoding, l.weight_bits, w, slices[s].polarity), slices[s]);
  };
  ref.y.assign(size_t{N} * P, 0.0);
  for (uint32_t pos = 0; pos < P; ++pos) {
    const uint32_t oy = pos / OW, ox = pos % OW;
    std::vector<int64_t> xs(K);
    int64_t xsum = 0;
    for (uint32_t c = 0; c < C; ++c)
      for (uint32_t i = 0; i < kh; ++i)
        for (uint32_t j = 0; j < kw; ++j) {
          const int64_t yy = int64_t(oy) * l.stride_h - l.pad_h + i, xx = int64_t(ox) * l.stride_w - l.pad_w + j;
          const int64_t v = (yy < 0 || yy >= H || xx < 0 || xx >= W) ? z : x[(c * H + yy) * W + xx];
          xs[(c * kh + i) * kw + j] = v - a;
          xsum += v - a;
        }
    std::vector<int64_t> acc(N, 0);
    for (size_t g = 0; g < G; ++g)
      for (size_t s = 0; s < S; ++s)
        for (size_t t = 0; t < T; ++t)
          for (uint32_t n = 0; n < N; ++n) {
            int64_t p = 0;
            for (uint32_t k = tiles[g].first; k < tiles[g].second; ++k)
              p += int64_t{group_value(static_cast<int32_t>(xs[k]), q.bits, groups[t])} * cell(k, s, n);
            const size_t set = l.adc.granularity == AdcGranularity::kLayer    ? 0
                               : l.adc.granularity == AdcGranularity::kColumn ? n
                                                                              : (g * S + s) * N + n;
            const int64_t v = p * (int64_t{1} << F);
            int64_t code = p, value = v;
            if (l.adc.kind == AdcKind::kLinear) {
              const int64_t step = l.adc.step_fx[set], centre = l.adc.centre_fx[set], num = v - centre;
              // Python-style floor division written independently of kernels::floor_div.
              auto fdiv = [](int64_t aa, int64_t b) { return aa >= 0 ? aa / b : -((-aa + b - 1) / b); };
              int64_t r = l.adc.rounding == AdcRounding::kFloor
                              ? fdiv(num, step)
                              : (num < 0 ? -1 : 1) * fdiv(2 * (num < 0 ? -num : num) + step, 2 * step);
              const int64_t lo = l.adc.signed_codes ? -(int64_t{1} << (l.adc.bits - 1)) : 0;
              const int64_t hi = l.adc.signed_codes ? (int64_t{1} << (l.adc.bits - 1)) - 1 : (int64_t{1} << l.adc.bits) - 1;
              ref.saturations += (r < lo || r > hi);
              code = std::clamp(r, lo, hi);
              value = centre + code * step;
            } else if (l.adc.kind == AdcKind::kNonlinear) {
              const size_t nt = (size_t{1} << l.adc.bits) - 1;
              code = 0;
              for (size_t i = 0; i < nt; ++i) code += v >= l.adc.thresholds_fx[set * nt + i];
              value = l.adc.levels_fx[set * (nt + 1) + static_cast<size_t>(code)];
            }
            ref.psums.push_back(p);
            ref.codes.push_back(code);
            ref.pmin = std::min(ref.pmin, p);
            ref.pmax = std::max(ref.pmax, p);
            acc[n] += int64_t{slices[s].sign} * groups[t].sign * (int64_t{1} << (slices[s].bit_lo + groups[t].bit_lo)) * value;
          }
    for (uint32_t n = 0; n < N; ++n) {
      int64_t colsum = 0;
      for (uint32_t k = 0; k < K; ++k) colsum += l.weights[size_t{n} * K + k];
      acc[n] += (int64_t{1} << F) * (a - z) * colsum;
      if (l.encoding == WeightEncoding::kOffset) acc[n] -= (int64_t{1} << F) * (int64_t{1} << (l.weight_bits - 1)) * xsum;
      ref.acc.push_back(acc[n]);
      const double m = ((q.scale * l.weight_scale[n]) * l.psum_scale[n]) * std::ldexp(1.0, -int(F));
      double y = double(acc[n]) * m + l.bias[n];
      if (l.activation == graph::Activation::kRelu) y = std::max(y, 0.0);
      ref.y[size_t{n} * P + pos] = y;
    }
  }
  return ref;
}

TEST(EngineAdcFuzz, EveryAdcKindGranularityEncodingWithAndWithoutLookupTable) {
  // Conv 2 -> 3 channels, 3x3, stride 1, pad 1 on 2x4x4 (P = 16, K = 18). With a lookup table:
  // Bx 4, Bw 5, Bc 2; without (partial-sum range > 2^22 entries): Bx 16, Bdac 16, Bw 7, Bc 3,
  // R 10 contiguous (10 * 65535 * 7 = 4.6M) or 18 channel-aligned (2 channels per array).
  std::mt19937 rng(31337);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const char* grans[] = {"GRANULARITY_LAYER", "GRANULARITY_COLUMN", "GRANULARITY_SLICE_TILE_COLUMN"};
  int cases = 0;
  uint64_t total_saturations = 0, negative_psums = 0;
  for (int enc = 0; enc < 4; ++enc)
    for (int gran = 0; gran < 3; ++gran)
      for (int kind = 0; kind < 3; ++kind)  // 0 LINEAR floor, 1 LINEAR half-away, 2 NONLINEAR
        for (bool lut : {true, false}) {
          const bool aligned = uni(0, 1) == 1;
          const uint32_t bx = lut ? 4 : 16, bw = lut ? 5 : 7, bc = lut ? 2 : 3;
          const uint32_t bdac = lut ? static_cast<uint32_t>(std::vector<int>{1, 2, 4}[uni(0, 2)]) : 16;
          const uint32_t R = lut ? (aligned ? 9 : 7) : (aligned ? 18 : 10);
          const uint32_t C = 2, H = 4, W = 4, N = 3, K = 18;
          ImcT l;
          l.in_channels = C, l.out_channels = N, l.kernel_h = 3, l.kernel_w = 3, l.pad_h = 1, l.pad_w = 1;
          l.weight_bits = bw, l.cell_bits = bc, l.dac_bits = bdac, l.encoding = kEnc[enc], l.array_rows = R;
          l.row_tiling = aligned ? "ROW_TILING_CHANNEL_ALIGNED" : "ROW_TILING_CONTIGUOUS";
          l.ashift_offset = uni(0, 1) ? (1u << (bx - 1)) : 0;
          const int wlo = -(1 << (bw - 1)) + (enc >= 2 ? 1 : 0), whi = (1 << (bw - 1)) - 1;
          for (uint32_t i = 0; i < N * K; ++i) l.weights.push_back(static_cast<int32_t>(uni(wlo, whi)));
          l.weight_scale = {0.125, 0.25, 0.5};
          l.psum_scale = {1.0, 0.5, 2.0};
          l.bias = {0.5, -1.0, 0.0};
          l.activation = uni(0, 1) ? "ACTIVATION_RELU" : "ACTIVATION_NONE";
          const uint32_t G = aligned ? (C + std::min(R / 9, C) - 1) / std::min(R / 9, C) : (K + R - 1) / R;
          const uint32_t S = expected_slices(enc, bw, bc);
          const uint64_t sets = gran == 0 ? 1 : gran == 1 ? N : uint64_t{G} * S * N;
          AdcT& adc = l.adc;
          adc.bits = static_cast<uint32_t>(uni(2, 6));
          adc.frac_bits = static_cast<uint32_t>(uni(0, 3));
          adc.granularity = grans[gran];
          // Typical partial-sum magnitude: rows x half a group x half a cell.
          const int64_t typical = int64_t{R} * ((int64_t{1} << std::min(bdac, bx)) / 2) * ((int64_t{1} << bc) / 2 + 1);
          const int64_t span = typical << adc.frac_bits;
          if (kind < 2) {
            adc.kind = "KIND_LINEAR";
            adc.rounding = kind == 0 ? "ROUNDING_FLOOR" : "ROUNDING_HALF_AWAY";
            adc.signed_codes = uni(0, 1) == 1;
            for (uint64_t i = 0; i < sets; ++i) {
              const int64_t step = uni(1, std::max<int64_t>(1, 2 * span >> adc.bits));
              adc.step_fx.push_back(step);
              adc.centre_fx.push_back(uni(-step * 4, step * 4));
            }
          } else {
            adc.kind = "KIND_NONLINEAR";
            const size_t nt = (size_t{1} << adc.bits) - 1;
            for (uint64_t i = 0; i < sets; ++i) {
              // Strictly increasing: random positive gaps from a random start.
              std::vector<int64_t> t{uni(-span / 4, span / 4)};
              const int64_t gap = std::max<int64_t>(1, 2 * span / static_cast<int64_t>(nt));
              while (t.size() < nt) t.push_back(t.back() + uni(1, gap));
              adc.thresholds_fx.insert(adc.thresholds_fx.end(), t.begin(), t.end());
              for (size_t j = 0; j <= nt; ++j) adc.levels_fx.push_back(uni(-span, span));
            }
          }
          GraphT g;
          g.input_shape = {C, H, W};
          g.input_quant = QuantT{0.5, static_cast<int32_t>(uni(0, (1 << bx) - 1)), bx};
          g.nodes.push_back(NodeT{"conv", {"x"}, "y", {N, H, W}, QuantT{1, 0, 0}, true, l.str()});
          g.num_classes = N * H * W;
          const auto graph = parse(g);
          const auto& layer = std::get<graph::ImcLayer>(graph.nodes[0].op);
          SCOPED_TRACE(fmt::format("{} {} kind {} {} bits {} F {} Bdac {} R {} a {}", kEnc[enc], grans[gran], kind,
                                   lut ? "lut" : "no-lut", adc.bits, adc.frac_bits, bdac, R, l.ashift_offset));
          FunctionalEngine eng(graph);
          ASSERT_EQ(eng.imc_shape(0).tiles, G);
          std::vector<int32_t> x(C * H * W);
          for (auto& v : x) v = static_cast<int32_t>(uni(0, (1 << bx) - 1));
          x[0] = (1 << bx) - 1, x[1] = 0;
          const auto ref = reference_conv(layer, graph.input.quant, H, W, x);
          std::vector<NodeTrace> traces;
          EngineCounters counters;
          const auto r = eng.infer(x, &counters, &traces);
          ASSERT_EQ(r.output_values.size(), ref.y.size());
          for (size_t i = 0; i < ref.y.size(); ++i) ASSERT_EQ(r.output_values[i], ref.y[i]) << "output " << i;
          const size_t per_pos = ref.psums.size() / 16;
          EXPECT_EQ(traces[0].psums_position0, std::vector<int64_t>(ref.psums.begin(), ref.psums.begin() + per_pos));
          EXPECT_EQ(traces[0].adc_codes_position0, std::vector<int64_t>(ref.codes.begin(), ref.codes.begin() + per_pos));
          EXPECT_EQ(traces[0].psum.value(), digest(ref.psums));
          EXPECT_EQ(traces[0].adc_code.value(), digest(ref.codes));
          EXPECT_EQ(traces[0].acc.value(), digest(ref.acc));
          const auto& c = counters.per_node[0];
          EXPECT_EQ(c.adc_conversions, ref.psums.size());
          EXPECT_EQ(c.adc_saturations, ref.saturations);
          EXPECT_EQ(c.psum_min, ref.pmin);
          EXPECT_EQ(c.psum_max, ref.pmax);
          total_saturations += ref.saturations;
          negative_psums += ref.pmin < 0;
          ++cases;
        }
  EXPECT_EQ(cases, 72);
  // The cases do exercise clipping and (differential analog) negative partial sums.
  EXPECT_GT(total_saturations, 0u);
  EXPECT_GT(negative_psums, 0u);
}

// ---- digests over several positions ----------------------------------------------------------

TEST(EngineTrace, ConvDigestsMatchCanonicalOrder) {
  // Conv 2 -> 3 channels, 2x2 kernel, stride 1, pad 0 on 2x3x3 -> 3x2x2 (P = 4); K = 8, R = 5
  // contiguous (G = 2), OFFSET Bw 4 on 2-bit cells (S = 2), Bx 3, Bdac 2 (T = 2), IDEAL ADC.
  // The test recomputes every partial sum from the slicing kernels and digests them in the
  // canonical order [P][G][S][T][N]; accumulators [P][N].
  std::mt19937 rng(7);
  ImcT l;
  l.in_channels = 2, l.out_channels = 3, l.kernel_h = 2, l.kernel_w = 2, l.weight_bits = 4, l.cell_bits = 2;
  l.dac_bits = 2, l.array_rows = 5;
  const uint32_t K = 8, N = 3, P = 4, C = 2, H = 3, W = 3;
  for (uint32_t i = 0; i < K * N; ++i) l.weights.push_back(std::uniform_int_distribution<int>(-8, 7)(rng));
  GraphT g;
  g.input_shape = {C, H, W};
  g.input_quant = QuantT{1, 1, 3};
  g.nodes.push_back(NodeT{"conv", {"x"}, "y", {N, 2, 2}, QuantT{1, 0, 0}, true, l.str()});
  g.num_classes = N * P;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  std::vector<int32_t> x(C * H * W);
  for (auto& v : x) v = std::uniform_int_distribution<int>(0, 7)(rng);
  std::vector<NodeTrace> traces;
  const auto r = eng.infer(x, nullptr, &traces);

  const auto slices = kernels::weight_slices(kernels::WeightEncoding::kOffset, 4, 2);
  const auto groups = kernels::input_groups(3, 2, false);
  const auto tiles = kernels::contiguous_row_tiles(K, 5);
  ASSERT_EQ(slices.size(), 2u);
  ASSERT_EQ(groups.size(), 2u);
  ASSERT_EQ(tiles.size(), 2u);
  std::vector<int64_t> psums, accs, psums0, accs0;
  for (uint32_t pos = 0; pos < P; ++pos) {
    const uint32_t oy = pos / 2, ox = pos % 2;
    std::vector<int32_t> xv(K);
    for (uint32_t c = 0; c < C; ++c)
      for (uint32_t i = 0; i < 2; ++i)
        for (uint32_t j = 0; j < 2; ++j) xv[(c * 2 + i) * 2 + j] = x[(c * H + oy + i) * W + ox + j];
    std::vector<int64_t> acc(N, 0);
    for (uint32_t gi = 0; gi < 2; ++gi)
      for (uint32_t s = 0; s < 2; ++s)
        for (uint32_t t = 0; t < 2; ++t)
          for (uint32_t n = 0; n < N; ++n) {
            int64_t p = 0;
            for (uint32_t k = tiles[gi].row_begin; k < tiles[gi].row_end; ++k)
              p += int64_t{kernels::group_value(xv[k], 3, groups[t])} *
                   kernels::slice_value(kernels::stored_weight_pattern(kernels::WeightEncoding::kOffset, 4,
                                                                       l.weights[n * K + k], 0),
                                        slices[s]);
            psums.push_back(p);
            if (pos == 0) psums0.push_back(p);
            acc[n] += (int64_t{1} << (slices[s].bit_lo + groups[t].bit_lo)) * p;
          }
    int64_t xsum = 0;
    for (int32_t v : xv) xsum += v;
    for (uint32_t n = 0; n < N; ++n) {
      int64_t colsum = 0, exact = 0;
      for (uint32_t k = 0; k < K; ++k) {
        colsum += l.weights[n * K + k];
        exact += int64_t(xv[k] - 1) * l.weights[n * K + k];
      }
      acc[n] += (0 - 1) * colsum - 8 * xsum;  // (a - z) colsum - 2^(Bw-1) sum x'
      EXPECT_EQ(acc[n], exact);
      EXPECT_EQ(r.output_values[n * P + pos], double(exact));
      accs.push_back(acc[n]);
      if (pos == 0) accs0.push_back(acc[n]);
    }
  }
  const auto& t = traces[0];
  EXPECT_EQ(t.psums_position0, psums0);
  EXPECT_EQ(t.adc_codes_position0, psums0);  // IDEAL: code = p
  EXPECT_EQ(t.acc_position0, accs0);
  EXPECT_EQ(t.psum.count(), uint64_t{P} * 2 * 2 * 2 * N);
  EXPECT_EQ(t.psum.value(), digest(psums));
  EXPECT_EQ(t.adc_code.value(), digest(psums));
  EXPECT_EQ(t.acc.count(), uint64_t{P} * N);
  EXPECT_EQ(t.acc.value(), digest(accs));
}

// ---- digital nodes ---------------------------------------------------------------------------

TEST(DigitalNodes, MaxPoolIgnoresPadding) {
  // 1x4x4, quant (0.5, z = 5, 4 bits); max_pool k3 s2 p1 -> 1x2x2; flatten.
  // Windows: (0,0) rows 0-1 cols 0-1 {1,2,4,0} -> 4 (padding would give z = 5: ignored);
  // (0,1) rows 0-1 cols 1-3 -> 3; (1,0) rows 1-3 cols 0-1 -> 10; (1,1) rows 1-3 cols 1-3 -> 15.
  GraphT g;
  g.input_quant = QuantT{0.5, 5, 4};
  g.nodes.push_back(NodeT{"mp", {"x"}, "m", {1, 2, 2}, g.input_quant, true, pool_op("max_pool", 3, 2, 1)});
  g.nodes.push_back(NodeT{"flat", {"m"}, "f", {4}, g.input_quant, true, "flatten {}"});
  g.num_classes = 4;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  const std::vector<int32_t> x = {1, 2, 0, 3, 4, 0, 1, 2, 6, 7, 8, 9, 9, 10, 15, 11};
  const auto r = eng.infer(x);
  EXPECT_EQ(r.node_codes[0], (std::vector<int32_t>{4, 3, 10, 15}));
  EXPECT_EQ(r.node_codes[1], (std::vector<int32_t>{4, 3, 10, 15}));
  // Real values 0.5 * (q - 5).
  EXPECT_EQ(r.output_values, (std::vector<double>{-0.5, -1.0, 2.5, 5.0}));
  EXPECT_EQ(r.predicted_class, 3u);
}

TEST(DigitalNodes, AvgPoolRequantisesHalfToEven) {
  // 1x2x4 quant (1, 0, 4); avg_pool k2 s2 -> 1x1x2, out quant (0.5, 0, 8).
  // Window 0 {1,2,2,0}: 5/4 = 1.25 -> /0.5 = 2.5 -> 2 (half to even).
  // Window 1 {1,2,2,2}: 7/4 = 1.75 -> 3.5 -> 4.
  GraphT g;
  g.input_shape = {1, 2, 4};
  g.input_quant = QuantT{1, 0, 4};
  const QuantT out{0.5, 0, 8};
  g.nodes.push_back(NodeT{"ap", {"x"}, "a", {1, 1, 2}, out, true, pool_op("avg_pool", 2, 2, 0)});
  g.nodes.push_back(NodeT{"flat", {"a"}, "f", {2}, out, true, "flatten {}"});
  g.num_classes = 2;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  const auto r = eng.infer(std::vector<int32_t>{1, 2, 1, 2, 2, 0, 2, 2});
  EXPECT_EQ(r.node_codes[0], (std::vector<int32_t>{2, 4}));
  EXPECT_EQ(r.output_values, (std::vector<double>{1.0, 2.0}));
}

TEST(DigitalNodes, AvgPoolPaddingCountsAsZeroPoint) {
  // 1x3x3 quant (1, z = 3, 4 bits); avg_pool k2 s2 p1 -> 1x2x2; out quant (0.25, 8, 6).
  // Input rows (7 1 5) (2 4 6) (0 9 3). cnt = 4, padded taps hold z = 3:
  // (0,0): 7 + 3*3 = 16 -> (16 - 12)/4 = 1 -> 4 + 8 = 12
  // (0,1): 1 + 5 + 2*3 = 12 -> 0 -> 8
  // (1,0): 2 + 0 + 2*3 = 8 -> -1 -> -4 + 8 = 4
  // (1,1): 4 + 6 + 9 + 3 = 22 -> 2.5 -> 10 + 8 = 18
  GraphT g;
  g.input_shape = {1, 3, 3};
  g.input_quant = QuantT{1, 3, 4};
  const QuantT out{0.25, 8, 6};
  g.nodes.push_back(NodeT{"ap", {"x"}, "a", {1, 2, 2}, out, true, pool_op("avg_pool", 2, 2, 1)});
  g.nodes.push_back(NodeT{"flat", {"a"}, "f", {4}, out, true, "flatten {}"});
  g.num_classes = 4;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  const auto r = eng.infer(std::vector<int32_t>{7, 1, 5, 2, 4, 6, 0, 9, 3});
  EXPECT_EQ(r.node_codes[0], (std::vector<int32_t>{12, 8, 4, 18}));
}

GraphT relu_add_graph(bool add_relu) {
  // x: 1x1x4 quant (0.5, z 4, 4 bits). relu -> quant (0.25, 0, 4). add(x, relu) -> quant
  // (0.5, 1, 5), optional RELU. flatten.
  GraphT g;
  g.input_shape = {1, 1, 4};
  g.input_quant = QuantT{0.5, 4, 4};
  g.nodes.push_back(NodeT{"relu", {"x"}, "r", {1, 1, 4}, QuantT{0.25, 0, 4}, true, "relu {}"});
  const QuantT aq{0.5, 1, 5};
  g.nodes.push_back(NodeT{"add", {"x", "r"}, "a", {1, 1, 4}, aq, true,
                          add_relu ? "add { activation: ACTIVATION_RELU }" : "add {}"});
  g.nodes.push_back(NodeT{"flat", {"a"}, "f", {4}, aq, true, "flatten {}"});
  g.num_classes = 4;
  return g;
}

TEST(DigitalNodes, ReluAndAdd) {
  // x = (0, 3, 6, 15): real (-2, -0.5, 1, 5.5).
  // relu: (0, 0, 1, 5.5) / 0.25 = (0, 0, 4, 22) -> clamp 15 -> (0, 0, 4, 15).
  // add: 0.5 (x - 4) + 0.25 r = (-2, -0.5, 2, 9.25); / 0.5 = (-4, -1, 4, 18.5)
  //      -> rint (-4, -1, 4, 18) (18.5 -> 18, half to even) + 1 = (-3, 0, 5, 19) -> (0, 0, 5, 19).
  const auto graph = parse(relu_add_graph(false));
  FunctionalEngine eng(graph);
  const auto r = eng.infer(std::vector<int32_t>{0, 3, 6, 15});
  EXPECT_EQ(r.node_codes[0], (std::vector<int32_t>{0, 0, 4, 15}));
  EXPECT_EQ(r.node_codes[1], (std::vector<int32_t>{0, 0, 5, 19}));
  EXPECT_EQ(r.node_codes[2], (std::vector<int32_t>{0, 0, 5, 19}));
  EXPECT_EQ(r.output_values, (std::vector<double>{-0.5, -0.5, 2.0, 9.0}));
  EXPECT_EQ(r.predicted_class, 3u);
}

TEST(DigitalNodes, AddWithRelu) {
  // As above, relu before requantisation: (0, 0, 2, 9.25) -> (0, 0, 4, 18) + 1 = (1, 1, 5, 19).
  const auto graph = parse(relu_add_graph(true));
  FunctionalEngine eng(graph);
  EXPECT_EQ(eng.infer(std::vector<int32_t>{0, 3, 6, 15}).node_codes[1], (std::vector<int32_t>{1, 1, 5, 19}));
}

TEST(DigitalNodes, LargeReluAndAddEqualTheElementwiseFormula) {
  // 70 elements (the ReLU's per-code table for 4-bit inputs and the chunked, vectorised
  // requantisation of Add with a tail), codes outside the 4-bit range included: every output
  // equals requantize() of the formula of docs/SEMANTICS.md, ties (x.5) included.
  GraphT g;
  g.input_shape = {1, 1, 70};
  g.input_quant = QuantT{0.5, 4, 4};
  g.nodes.push_back(NodeT{"relu", {"x"}, "r", {1, 1, 70}, QuantT{0.25, 0, 4}, true, "relu {}"});
  g.nodes.push_back(NodeT{"add", {"x", "r"}, "a", {1, 1, 70}, QuantT{0.5, 1, 5}, true,
                          "add { activation: ACTIVATION_RELU }"});
  g.nodes.push_back(NodeT{"flat", {"a"}, "f", {70}, QuantT{0.5, 1, 5}, true, "flatten {}"});
  g.num_classes = 70;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  std::vector<int32_t> x(70);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<int32_t>(i % 16);
  x[3] = -5, x[17] = 16, x[40] = 1000, x[69] = -1;
  const auto r = eng.infer(x);
  for (size_t i = 0; i < x.size(); ++i) {
    const int32_t relu = kernels::requantize(std::max(0.5 * double(x[i] - 4), 0.0), 0.25, 0, 4);
    const double y = 0.5 * double(x[i] - 4) + 0.25 * double(relu);
    EXPECT_EQ(r.node_codes[0][i], relu) << i;
    EXPECT_EQ(r.node_codes[1][i], kernels::requantize(std::max(y, 0.0), 0.5, 1, 5)) << i;
  }
}

TEST(DigitalNodes, ArgmaxTakesFirstIndexOnTies) {
  // Flatten of x: codes (2, 7, 7, 1) -> class 1 (first of the tied maxima).
  GraphT g;
  g.input_shape = {1, 1, 4};
  g.input_quant = QuantT{1, 0, 4};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {4}, g.input_quant, true, "flatten {}"});
  g.num_classes = 4;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  EXPECT_EQ(eng.infer(std::vector<int32_t>{2, 7, 7, 1}).predicted_class, 1u);
  EXPECT_EQ(eng.infer(std::vector<int32_t>{9, 7, 9, 1}).predicted_class, 0u);
}

// ---- run_dataset ------------------------------------------------------------------------------

TEST(RunDataset, ZeroImages) {
  GraphT g;
  g.input_shape = {1, 1, 2};
  g.input_quant = QuantT{1, 0, 4};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {2}, g.input_quant, true, "flatten {}"});
  g.num_classes = 2;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  const std::vector<uint8_t> none;
  const auto r = run_dataset(eng, none, none, 0, 4, nullptr);
  EXPECT_EQ(r.images, 0u);
  EXPECT_EQ(r.correct, 0u);
  EXPECT_EQ(r.accuracy(), 0.0);
  EXPECT_TRUE(r.predictions.empty());
}

TEST(RunDataset, MatchesInferPerImageAndIsThreadCountInvariant) {
  // Input 1x2x2 (pixels / 255 -> codes of scale 1/255) -> flatten -> Linear 4 -> 3 (float).
  std::mt19937 rng(99);
  ImcT l;
  l.conv = false;
  l.in_channels = 4, l.out_channels = 3, l.weight_bits = 4, l.cell_bits = 2, l.dac_bits = 1;
  for (int i = 0; i < 12; ++i) l.weights.push_back(std::uniform_int_distribution<int>(-8, 7)(rng));
  l.adc.kind = "KIND_LINEAR", l.adc.bits = 3, l.adc.step_fx = {16}, l.adc.centre_fx = {0};
  GraphT g;
  g.input_shape = {1, 2, 2};
  g.input_quant = QuantT{1.0 / 255.0, 0, 8};
  g.nodes.push_back(NodeT{"flat", {"x"}, "f", {4}, g.input_quant, true, "flatten {}"});
  g.nodes.push_back(NodeT{"fc", {"f"}, "y", {3}, QuantT{1, 0, 0}, true, l.str()});
  g.num_classes = 3;
  const auto graph = parse(g);
  FunctionalEngine eng(graph);
  const uint64_t count = 64;
  std::vector<uint8_t> pixels(count * 4), labels(count);
  for (auto& p : pixels) p = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 255)(rng));
  for (auto& y : labels) y = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 2)(rng));

  std::vector<uint32_t> expected(count);
  uint64_t correct = 0;
  EngineCounters expected_counters;
  for (uint64_t i = 0; i < count; ++i) {
    std::vector<int32_t> codes(4);
    pixels_to_codes(graph.input, std::span<const uint8_t>(pixels).subspan(i * 4, 4), codes);
    expected[i] = eng.infer(codes, &expected_counters).predicted_class;
    correct += expected[i] == labels[i];
  }
  for (unsigned threads : {1u, 2u}) {
    SCOPED_TRACE(threads);
    const auto r = run_dataset(eng, pixels, labels, count, threads, nullptr);
    EXPECT_EQ(r.images, count);
    EXPECT_EQ(r.predictions, expected);
    EXPECT_EQ(r.correct, correct);
    EXPECT_DOUBLE_EQ(r.accuracy(), double(correct) / double(count));
    ASSERT_EQ(r.counters.per_node.size(), 2u);
    const auto& c = r.counters.per_node[1];
    const auto& e = expected_counters.per_node[1];
    EXPECT_EQ(c.images, count);
    EXPECT_EQ(c.adc_conversions, e.adc_conversions);
    EXPECT_EQ(c.adc_conversions, count * 1 * 1 * 2 * 8 * 3);  // P G S T N: S = 2 (4/2), T = 8
    EXPECT_EQ(c.row_drives, e.row_drives);
    EXPECT_EQ(c.adc_saturations, e.adc_saturations);
    EXPECT_EQ(c.psum_min, e.psum_min);
    EXPECT_EQ(c.psum_max, e.psum_max);
  }
  // A subset: the first 10 images only.
  const auto r10 = run_dataset(eng, pixels, labels, 10, 2, nullptr);
  EXPECT_EQ(r10.images, 10u);
  EXPECT_EQ(r10.predictions, std::vector<uint32_t>(expected.begin(), expected.begin() + 10));
  // Progress reports end with (count, count).
  uint64_t last_done = 0, last_total = 0;
  run_dataset(eng, pixels, labels, count, 2, [&](uint64_t d, uint64_t t) {
    EXPECT_LE(d, t);
    last_done = d, last_total = t;
  });
  EXPECT_EQ(last_done, count);
  EXPECT_EQ(last_total, count);
}

}  // namespace
}  // namespace imcsim::engine
