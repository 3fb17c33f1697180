// Monte-Carlo summary of accuracies over seeds (imcsim run --mc N): mean, sample standard
// deviation and the 95 % confidence interval of the mean from Student's t distribution.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace imcsim::engine {

// Two-sided quantile t with P(|T| <= t) = `coverage` for Student's t with `dof` >= 1 degrees of
// freedom: bisection on the closed-form CDF for integer dof (Abramowitz & Stegun 26.7.3/4),
// accurate to ~1e-12. E.g. dof 1: 12.7062, 2: 4.3027, 9: 2.2622, 29: 2.0452.
double student_t_quantile(uint64_t dof, double coverage = 0.95);

struct MonteCarloSummary {
  uint64_t runs = 0;
  double mean = 0;
  std::optional<double> std_dev;       // sample standard deviation (n - 1); none for one run
  std::optional<double> t_quantile;    // 97.5 % quantile of t(n - 1)
  std::optional<double> ci95_low, ci95_high;  // mean -/+ t * std_dev / sqrt(n)
};

MonteCarloSummary summarize_monte_carlo(const std::vector<double>& values);

}  // namespace imcsim::engine
