#include "models/digital/ops.h"

#include <algorithm>
#include <cmath>

#include "models/digital/requant.h"

namespace imcsim::kernels::digital {

__extension__ typedef unsigned __int128 u128;

void OutSink::put(size_t i, double y) const {
  if (q_.bits == 0) values_[i] = y;
  else codes_[i] = requantize(y, q_.scale, q_.zero_point, q_.bits);
}

void OutSink::put_code(size_t i, int32_t code) const {
  if (q_.bits == 0) values_[i] = q_.scale * static_cast<double>(code - q_.zero_point);
  else codes_[i] = code;
}

uint64_t isqrt(uint64_t v) {
  // A float estimate, then exact integer corrections: the result does not depend on libm.
  uint64_t r = static_cast<uint64_t>(std::sqrt(static_cast<double>(v)));
  while (static_cast<u128>(r) * r > v) --r;
  while (static_cast<u128>(r + 1) * (r + 1) <= v) ++r;
  return r;
}

namespace {
inline double relu_if(double y, bool relu) { return relu ? std::max(y, 0.0) : y; }
}  // namespace

void conv2d(const ConvGeometry& g, std::span<const int32_t> in, int32_t zero_point, std::span<const int32_t> weights,
            std::span<const double> m, std::span<const double> bias, bool relu, const OutSink& out) {
  const uint32_t cin_g = g.cin / g.groups, cout_g = g.cout / g.groups;
  const size_t taps = size_t{g.kh} * g.kw;
  std::vector<int32_t> x(cin_g * taps);  // x - z of one window and group
  for (uint32_t grp = 0; grp < g.groups; ++grp)
    for (uint32_t oy = 0; oy < g.oh; ++oy)
      for (uint32_t ox = 0; ox < g.ow; ++ox) {
        for (uint32_t c = 0; c < cin_g; ++c)
          for (uint32_t i = 0; i < g.kh; ++i)
            for (uint32_t j = 0; j < g.kw; ++j) {
              const int64_t y = int64_t{oy} * g.sh - g.ph + i;
              const int64_t xx = int64_t{ox} * g.sw - g.pw + j;
              const bool inside = y >= 0 && y < g.h && xx >= 0 && xx < g.w;
              const size_t ch = size_t{grp} * cin_g + c;
              x[(c * g.kh + i) * g.kw + j] =
                  inside ? in[(ch * g.h + static_cast<size_t>(y)) * g.w + static_cast<size_t>(xx)] - zero_point : 0;
            }
        for (uint32_t nn = 0; nn < cout_g; ++nn) {
          const size_t n = size_t{grp} * cout_g + nn;
          const int32_t* w = weights.data() + n * x.size();
          int64_t acc = 0;
          for (size_t k = 0; k < x.size(); ++k) acc += int64_t{x[k]} * w[k];
          const double yv = relu_if(static_cast<double>(acc) * m[n] + bias[n], relu);
          out.put((n * g.oh + oy) * g.ow + ox, yv);
        }
      }
}

void linear(uint32_t positions, uint32_t k, uint32_t n, std::span<const int32_t> in, int32_t zero_point,
            std::span<const int32_t> weights, std::span<const double> m, std::span<const double> bias, bool relu,
            const OutSink& out) {
  std::vector<int32_t> x(k);
  for (uint32_t p = 0; p < positions; ++p) {
    for (uint32_t i = 0; i < k; ++i) x[i] = in[size_t{p} * k + i] - zero_point;
    for (uint32_t c = 0; c < n; ++c) {
      const int32_t* w = weights.data() + size_t{c} * k;
      int64_t acc = 0;
      for (uint32_t i = 0; i < k; ++i) acc += int64_t{x[i]} * w[i];
      out.put(size_t{p} * n + c, relu_if(static_cast<double>(acc) * m[c] + bias[c], relu));
    }
  }
}

void global_avg_pool(uint32_t outputs, uint32_t count, size_t outer_stride, size_t inner_stride,
                     std::span<const int32_t> in, const QuantParams& in_q, const OutSink& out) {
  for (uint32_t o = 0; o < outputs; ++o) {
    int64_t sum = 0;
    for (uint32_t c = 0; c < count; ++c) sum += in[o * outer_stride + c * inner_stride];
    const int64_t cnt = count;
    out.put(o, (static_cast<double>(sum - cnt * in_q.zero_point) * in_q.scale) / static_cast<double>(cnt));
  }
}

void concat_part(std::span<const int32_t> in, const QuantParams& in_q, size_t offset, const OutSink& out) {
  const QuantParams& oq = out.quant();
  const bool same = oq.bits == in_q.bits && oq.scale == in_q.scale && oq.zero_point == in_q.zero_point;
  for (size_t e = 0; e < in.size(); ++e) {
    if (same) out.put_code(offset + e, in[e]);
    else out.put(offset + e, in_q.scale * static_cast<double>(in[e] - in_q.zero_point));
  }
}

void to_tokens(uint32_t c, uint32_t h, uint32_t w, uint32_t patch_h, uint32_t patch_w, std::span<const int32_t> in,
               const OutSink& out) {
  const uint32_t ty = h / patch_h, tx = w / patch_w;
  const size_t d = size_t{c} * patch_h * patch_w;
  for (uint32_t py = 0; py < ty; ++py)
    for (uint32_t px = 0; px < tx; ++px)
      for (uint32_t ch = 0; ch < c; ++ch)
        for (uint32_t i = 0; i < patch_h; ++i)
          for (uint32_t j = 0; j < patch_w; ++j) {
            const size_t t = size_t{py} * tx + px;
            const size_t f = (size_t{ch} * patch_h + i) * patch_w + j;
            out.put_code(t * d + f, in[(size_t{ch} * h + size_t{py} * patch_h + i) * w + size_t{px} * patch_w + j]);
          }
}

void attention_scores(uint32_t t, uint32_t t2, uint32_t d, uint32_t heads, std::span<const int32_t> q, int32_t zq,
                      std::span<const int32_t> k, int32_t zk, double m, const OutSink& out) {
  const uint32_t dh = d / heads;
  for (uint32_t h = 0; h < heads; ++h)
    for (uint32_t i = 0; i < t; ++i)
      for (uint32_t j = 0; j < t2; ++j) {
        const int32_t* qi = q.data() + size_t{i} * d + size_t{h} * dh;
        const int32_t* kj = k.data() + size_t{j} * d + size_t{h} * dh;
        int64_t acc = 0;
        for (uint32_t e = 0; e < dh; ++e) acc += int64_t{qi[e] - zq} * (kj[e] - zk);
        out.put((size_t{h} * t + i) * t2 + j, static_cast<double>(acc) * m);
      }
}

void attention_context(uint32_t t, uint32_t t2, uint32_t d, uint32_t heads, std::span<const int32_t> p, int32_t zp,
                       std::span<const int32_t> v, int32_t zv, double m, const OutSink& out) {
  const uint32_t dh = d / heads;
  std::vector<int64_t> acc(dh);
  for (uint32_t h = 0; h < heads; ++h)
    for (uint32_t i = 0; i < t; ++i) {
      std::fill(acc.begin(), acc.end(), 0);
      const int32_t* pi = p.data() + (size_t{h} * t + i) * t2;
      for (uint32_t j = 0; j < t2; ++j) {
        const int64_t pj = pi[j] - zp;
        const int32_t* vj = v.data() + size_t{j} * d + size_t{h} * dh;
        for (uint32_t e = 0; e < dh; ++e) acc[e] += pj * (vj[e] - zv);
      }
      for (uint32_t e = 0; e < dh; ++e) out.put(size_t{i} * d + size_t{h} * dh + e, static_cast<double>(acc[e]) * m);
    }
}

void softmax(uint32_t rows, uint32_t len, std::span<const int32_t> in, std::span<const int64_t> exp_table,
             const OutSink& out) {
  std::vector<int64_t> e(len);
  for (uint32_t r = 0; r < rows; ++r) {
    const int32_t* x = in.data() + size_t{r} * len;
    const int32_t qmax = *std::max_element(x, x + len);
    int64_t sum = 0;
    for (uint32_t j = 0; j < len; ++j) {
      e[j] = exp_table[static_cast<size_t>(qmax - x[j])];
      sum += e[j];
    }
    const double s = static_cast<double>(sum);
    for (uint32_t j = 0; j < len; ++j) out.put(size_t{r} * len + j, static_cast<double>(e[j]) / s);
  }
}

void layer_norm(uint32_t rows, uint32_t d, std::span<const int32_t> in, int32_t zero_point,
                std::span<const double> gamma, std::span<const double> beta, uint64_t eps_int, const OutSink& out) {
  std::vector<int64_t> c(d);
  const int64_t dd = d;
  for (uint32_t r = 0; r < rows; ++r) {
    const int32_t* x = in.data() + size_t{r} * d;
    int64_t s1 = 0;
    for (uint32_t i = 0; i < d; ++i) s1 += x[i] - zero_point;
    uint64_t v = 0;
    for (uint32_t i = 0; i < d; ++i) {
      c[i] = dd * (x[i] - zero_point) - s1;  // D (x_i - mean)
      v += static_cast<uint64_t>(c[i] * c[i]);
    }
    const uint64_t root = isqrt(v * static_cast<uint64_t>(dd) + eps_int);  // ~ D^2 sqrt(var + eps)
    const double rd = static_cast<double>(root);
    for (uint32_t i = 0; i < d; ++i) {
      const double n = root == 0 ? 0.0 : static_cast<double>(dd * c[i]) / rd;
      out.put(size_t{r} * d + i, n * gamma[i] + beta[i]);
    }
  }
}

void lut(std::span<const int32_t> in, std::span<const int32_t> table, const OutSink& out) {
  for (size_t e = 0; e < in.size(); ++e) out.put_code(e, table[static_cast<size_t>(in[e])]);
}

void add_constant(std::span<const int32_t> in, const QuantParams& in_q, std::span<const double> values, bool relu,
                  const OutSink& out) {
  for (size_t e = 0; e < in.size(); ++e)
    out.put(e, relu_if((in_q.scale * static_cast<double>(in[e] - in_q.zero_point)) + values[e], relu));
}

}  // namespace imcsim::kernels::digital
