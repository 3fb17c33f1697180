// imcsim run --carry-data from the command line: 2 streamed images through the pipelined
// SystemC model with every node output checked against the functional engine (report
// carry_data, exit 0), and the combinations it refuses with a one-line usage error.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/cli_runner.h"

using namespace imcsim;
namespace fs = std::filesystem;

namespace {
const std::string kRoot = IMCSIM_SOURCE_DIR;
const std::string kGraph = kRoot + "/workloads/fmnist_cnn/fmnist_cnn.imcg";
const std::string kArch = kRoot + "/arch_configs/default.json";
const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

class CarryDataCli : public testing_support::TempDirTest {};
}  // namespace

TEST_F(CarryDataCli, CarriedValuesEqualTheEngineAndBadCombinationsAreRefused) {
  const auto ok = testing_support::run_imcsim({"run", "--graph", kGraph, "--arch", kArch, "--dataset-dir", kFashionMnist,
                                               "--images", "4", "--stream-images", "2", "--execution", "pipelined",
                                               "--carry-data", "-q", "--out", (dir / "out").string()},
                                              dir);
  ASSERT_TRUE(ok.exited) << ok.err;
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  const auto rep = nlohmann::json::parse(testing_support::slurp_file(dir / "out" / "report.json"));
  const auto& c = rep["carry_data"];
  EXPECT_EQ(c["images"], 2);
  EXPECT_EQ(c["mismatches"], 0);
  EXPECT_EQ(c["values_checked"], 2 * (12544 + 3136 + 6272 + 1568 + 1568 + 64 + 10));
  EXPECT_TRUE(c["ok"].get<bool>());
  EXPECT_NE(ok.out.find("carry-data: 50324 values of 2 image(s) over 7 nodes equal the functional engine's"),
            std::string::npos) << ok.out;

  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--timing", "analytical"}, {"--timing-only"},
        {"--execution", "pipelined", "--replication", "auto"}}) {
    std::vector<std::string> args = {"run", "--graph", kGraph, "--arch", kArch, "--dataset-dir", kFashionMnist,
                                     "--images", "1", "--carry-data", "-q", "--out", (dir / "bad").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto bad = testing_support::run_imcsim(args, dir);
    ASSERT_TRUE(bad.exited);
    EXPECT_NE(bad.exit_code, 0);
    ASSERT_EQ(bad.err_lines().size(), 1u) << bad.err;
    EXPECT_NE(bad.err.find("--carry-data needs --timing systemc"), std::string::npos) << bad.err;
  }
}
