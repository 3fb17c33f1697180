#include "sim/engine/monte_carlo.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace imcsim::engine {

namespace {

// P(|T| <= t) for Student's t with integer dof (Abramowitz & Stegun 26.7.3 / 26.7.4).
double t_two_sided_cdf(double t, uint64_t dof) {
  const double theta = std::atan(t / std::sqrt(static_cast<double>(dof)));
  const double c2 = std::cos(theta) * std::cos(theta), s = std::sin(theta);
  if (dof % 2 == 1) {
    // (2/pi) (theta + sin(theta) (cos + 2/3 cos^3 + ... + (2*4*...*(dof-3))/(1*3*...*(dof-2)) cos^(dof-2)))
    double sum = 0, term = std::cos(theta);
    if (dof > 1) {
      sum = term;
      for (uint64_t k = 3; k + 2 <= dof; k += 2) {
        term *= c2 * static_cast<double>(k - 1) / static_cast<double>(k);
        sum += term;
      }
    }
    return 2.0 / std::numbers::pi * (theta + s * sum);
  }
  // sin(theta) (1 + 1/2 cos^2 + (1*3)/(2*4) cos^4 + ... + (1*3*...*(dof-3))/(2*4*...*(dof-2)) cos^(dof-2))
  double sum = 1, term = 1;
  for (uint64_t k = 2; k + 2 <= dof; k += 2) {
    term *= c2 * static_cast<double>(k - 1) / static_cast<double>(k);
    sum += term;
  }
  return s * sum;
}

}  // namespace

double student_t_quantile(uint64_t dof, double coverage) {
  if (dof == 0) throw std::invalid_argument("student_t_quantile: dof must be >= 1");
  if (!(coverage > 0 && coverage < 1)) throw std::invalid_argument("student_t_quantile: coverage in (0, 1)");
  double lo = 0, hi = 1;
  while (t_two_sided_cdf(hi, dof) < coverage) hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-13 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (t_two_sided_cdf(mid, dof) < coverage ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

MonteCarloSummary summarize_monte_carlo(const std::vector<double>& values) {
  MonteCarloSummary m;
  m.runs = values.size();
  if (values.empty()) return m;
  double sum = 0;
  for (double v : values) sum += v;
  m.mean = sum / static_cast<double>(values.size());
  if (values.size() < 2) return m;
  double ss = 0;
  for (double v : values) ss += (v - m.mean) * (v - m.mean);
  const double n = static_cast<double>(values.size());
  m.std_dev = std::sqrt(ss / (n - 1));
  m.t_quantile = student_t_quantile(values.size() - 1);
  const double half = *m.t_quantile * *m.std_dev / std::sqrt(n);
  m.ci95_low = m.mean - half;
  m.ci95_high = m.mean + half;
  return m;
}

}  // namespace imcsim::engine
