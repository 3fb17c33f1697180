// The kernel paths this machine runs (docs/fast_kernels.md), for tests that check every path.
#pragma once

#include <vector>

#include "models/crossbar/fast_mvm.h"

namespace imcsim::test {

// portable, and native where the CPU has it.
inline std::vector<kernels::KernelPath> fast_kernel_paths() {
  std::vector<kernels::KernelPath> paths{kernels::KernelPath::kPortable};
  if (kernels::native_kernels_supported()) paths.push_back(kernels::KernelPath::kNative);
  return paths;
}

// reference, then the fast paths.
inline std::vector<kernels::KernelPath> all_kernel_paths() {
  std::vector<kernels::KernelPath> paths{kernels::KernelPath::kReference};
  for (const auto p : fast_kernel_paths()) paths.push_back(p);
  return paths;
}

}  // namespace imcsim::test
