// A schedule that cannot complete must be reported as a deadlock naming the stuck stage,
// never hang. Own executable: SystemC elaborates once per process.
#include <gtest/gtest.h>

#include "sim/timing/systemc_timing.h"

using namespace imcsim;

TEST(Deadlock, LayerWithoutInputGroupsIsReportedWithTheStuckStage) {
  // groups = 0: the ADC bank never produces an output vector, so the writer waits forever.
  mapping::NodeSchedule s;
  s.node = "broken";
  s.is_imc = true;
  s.imc = {2, 0, 10, 4, 1, 1};
  try {
    timing::run_systemc_timing({s}, {});
    FAIL() << "no deadlock reported";
  } catch (const timing::TimingError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("deadlock"), std::string::npos) << msg;
    EXPECT_NE(msg.find("node 'broken'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("writer waits for an output vector"), std::string::npos) << msg;
  }
}
