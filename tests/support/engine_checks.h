// gtest checks on functional-engine results shared by the engine tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "sim/engine/functional_engine.h"

namespace imcsim::test {

// Every event counter of every node equal (kernel paths / threads must not change them).
inline void expect_same_counters(const engine::EngineCounters& a, const engine::EngineCounters& b) {
  ASSERT_EQ(a.per_node.size(), b.per_node.size());
  for (size_t i = 0; i < a.per_node.size(); ++i) {
    SCOPED_TRACE("counters of node " + std::to_string(i));
    EXPECT_EQ(a.per_node[i].images, b.per_node[i].images);
    EXPECT_EQ(a.per_node[i].row_drives, b.per_node[i].row_drives);
    EXPECT_EQ(a.per_node[i].adc_conversions, b.per_node[i].adc_conversions);
    EXPECT_EQ(a.per_node[i].adc_saturations, b.per_node[i].adc_saturations);
    EXPECT_EQ(a.per_node[i].psum_min, b.per_node[i].psum_min);
    EXPECT_EQ(a.per_node[i].psum_max, b.per_node[i].psum_max);
  }
}

}  // namespace imcsim::test
