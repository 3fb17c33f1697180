// Digital-unit operations, exactly as docs/SEMANTICS.md "Digital nodes" defines them (bit-exact
// with scripts/imcsim_py/digital.py): digital / depthwise conv and linear layers, global average
// pooling, concatenation, tokens, attention score and context matmuls, softmax (exponential by
// table), layer norm (integer statistics, integer square root), element-wise tables, constant
// adds. Integer arithmetic is exact int64; every float64 operation is one IEEE operation in the
// order written there. Plain C++, no SystemC, no graph types.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace imcsim::kernels::digital {

// A tensor's quantisation: codes q mean scale * (q - zero_point); bits == 0: float64 values.
struct QuantParams {
  double scale = 1.0;
  int32_t zero_point = 0;
  uint32_t bits = 8;
};

// Where an operation writes element i: requantised codes, or the real value when bits == 0.
class OutSink {
 public:
  OutSink(const QuantParams& q, std::span<int32_t> codes, std::span<double> values)
      : q_(q), codes_(codes), values_(values) {}
  void put(size_t i, double y) const;
  void put_code(size_t i, int32_t code) const;  // a code already in this quant (moves, tables)
  const QuantParams& quant() const { return q_; }

 private:
  QuantParams q_;
  std::span<int32_t> codes_;
  std::span<double> values_;
};

// floor(sqrt(v)), exact for every v < 2^63.
uint64_t isqrt(uint64_t v);

// Conv2d (grouped; depthwise when groups = Cin) in the digital unit. in: [Cin][H][W] codes;
// weights [Cout][Cin/groups][kh][kw]; m[n] = s_x * s_w[n]; output [Cout][OH][OW].
struct ConvGeometry {
  uint32_t cin = 0, h = 0, w = 0, cout = 0, kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, groups = 1;
  uint32_t oh = 0, ow = 0;
};
void conv2d(const ConvGeometry& g, std::span<const int32_t> in, int32_t zero_point, std::span<const int32_t> weights,
            std::span<const double> m, std::span<const double> bias, bool relu, const OutSink& out);

// Linear layer per position: in [P][K] codes, weights [N][K], output [P][N].
void linear(uint32_t positions, uint32_t k, uint32_t n, std::span<const int32_t> in, int32_t zero_point,
            std::span<const int32_t> weights, std::span<const double> m, std::span<const double> bias, bool relu,
            const OutSink& out);

// Mean over `count` elements per output: element (o, c) at in[o * outer_stride + c * inner_stride].
void global_avg_pool(uint32_t outputs, uint32_t count, size_t outer_stride, size_t inner_stride,
                     std::span<const int32_t> in, const QuantParams& in_q, const OutSink& out);

// Writes one concatenation part (its codes, requantised unless the quants are equal) at `offset`.
void concat_part(std::span<const int32_t> in, const QuantParams& in_q, size_t offset, const OutSink& out);

// [C][H][W] -> [T][D] patches (a move of codes).
void to_tokens(uint32_t c, uint32_t h, uint32_t w, uint32_t patch_h, uint32_t patch_w, std::span<const int32_t> in,
               const OutSink& out);

// Scores [heads][T][T2] of q [T][D], k [T2][D]; m = (s_q * s_k) * scale.
void attention_scores(uint32_t t, uint32_t t2, uint32_t d, uint32_t heads, std::span<const int32_t> q, int32_t zq,
                      std::span<const int32_t> k, int32_t zk, double m, const OutSink& out);

// Context [T][D] of p [heads][T][T2], v [T2][D]; m = s_p * s_v.
void attention_context(uint32_t t, uint32_t t2, uint32_t d, uint32_t heads, std::span<const int32_t> p, int32_t zp,
                       std::span<const int32_t> v, int32_t zv, double m, const OutSink& out);

// Softmax over rows of length `len`, exponential from exp_table (indexed by q_max - q).
void softmax(uint32_t rows, uint32_t len, std::span<const int32_t> in, std::span<const int64_t> exp_table,
             const OutSink& out);

// Layer norm over rows of length d with integer statistics and an integer square root.
void layer_norm(uint32_t rows, uint32_t d, std::span<const int32_t> in, int32_t zero_point,
                std::span<const double> gamma, std::span<const double> beta, uint64_t eps_int, const OutSink& out);

// out code = table[in code].
void lut(std::span<const int32_t> in, std::span<const int32_t> table, const OutSink& out);

// y = s * (q - z) + values[e], optional ReLU.
void add_constant(std::span<const int32_t> in, const QuantParams& in_q, std::span<const double> values, bool relu,
                  const OutSink& out);

}  // namespace imcsim::kernels::digital
