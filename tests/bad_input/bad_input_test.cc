// Bad-input catalog at the command-line level: the real `imcsim` binary (IMCSIM_BINARY) is run
// on broken graphs, configs, datasets and command lines. Every case must exit non-zero without
// a crash (death by signal is a failure) and print exactly one line on stderr that starts with
// "imcsim" and names the problem (the file and the field). A valid run on a tiny graph writes a
// report whose accuracy equals the library's own result.
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "sim/data/idx_dataset.h"
#include "sim/engine/functional_engine.h"
#include "sim/graph/container.h"
#include "sim/graph/graph_loader.h"
#include "sim/graph/imcsim_graph.pb.h"
#include "tests/support/cli_runner.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSourceDir = IMCSIM_SOURCE_DIR;
const fs::path kGraphs = kSourceDir / "tests" / "data" / "graphs";
const fs::path kTinyGraph = kGraphs / "tiny_fmnist.imcg.txt";
const fs::path kDefaultArch = kSourceDir / "arch_configs" / "default.json";
const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

using RunResult = imcsim::testing_support::CliResult;
using imcsim::testing_support::slurp_file;

class Cli : public imcsim::testing_support::TempDirTest {
 protected:
  fs::path write(const std::string& name, const std::string& bytes) {
    const fs::path p = dir / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }

  RunResult run(const std::vector<std::string>& args) {
    RunResult r = imcsim::testing_support::run_imcsim(args, dir);
    EXPECT_TRUE(r.started) << "cannot start " << IMCSIM_BINARY;
    return r;
  }

  // Runs and expects a clean failure: no signal, exit code `code`, exactly one stderr line that
  // starts with "imcsim" and contains every part.
  void expect_failure(const std::vector<std::string>& args, int code, std::initializer_list<std::string> parts) {
    std::string cmd = "imcsim";
    for (const auto& a : args) cmd += " " + a;
    SCOPED_TRACE(cmd);
    const RunResult r = run(args);
    ASSERT_TRUE(r.exited) << "killed by signal " << r.signal << "; stderr: " << r.err;
    EXPECT_EQ(r.exit_code, code) << r.err;
    const auto lines = r.err_lines();
    ASSERT_EQ(lines.size(), 1u) << "stderr:\n" << r.err;
    EXPECT_EQ(lines[0].rfind("imcsim", 0), 0u) << lines[0];
    for (const auto& p : parts) EXPECT_NE(lines[0].find(p), std::string::npos) << "'" << p << "' not in: " << lines[0];
  }

  std::vector<std::string> run_args(const fs::path& graph, const fs::path& arch,
                                    const std::string& dataset = kFashionMnist) {
    return {"run", "--graph", graph.string(), "--arch", arch.string(), "--dataset-dir", dataset,
            "--images", "20", "--out", (dir / "out").string(), "--quiet"};
  }
};

using imcsim::graph::wrap_container;

// A protobuf payload encoding Graph{format_version: 1, name: "x"} (field 1 varint, field 2
// length-delimited) — enough to get past the container checks.
const std::string kTinyPayload = std::string("\x08\x01\x12\x01x", 5);

// The tiny graph as a real binary .imcg (its text form re-serialised with the graph schema).
std::string tiny_imcg() {
  imcsim::pb::Graph g;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(slurp_file(kTinyGraph), &g));
  return wrap_container(g.SerializeAsString());
}

bool have_dataset() { return fs::exists(fs::path(kFashionMnist) / "t10k-images-idx3-ubyte.gz"); }

// ---- corrupt graph files ----------------------------------------------------------------------

TEST_F(Cli, BinaryTinyGraphIsValid) {
  const auto g = write("tiny.imcg", tiny_imcg());
  const auto r = run({"validate", "--graph", g.string(), "--arch", kDefaultArch.string()});
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(Cli, CorruptImcgChecksum) {
  std::string bytes = tiny_imcg();
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);  // a payload byte
  const auto g = write("corrupt.imcg", bytes);
  expect_failure(run_args(g, kDefaultArch), 1, {g.string(), "checksum"});
  expect_failure({"validate", "--graph", g.string()}, 1, {g.string(), "checksum"});
  expect_failure({"inspect", "--graph", g.string(), "--arch", kDefaultArch.string()}, 1, {g.string(), "checksum"});
}

TEST_F(Cli, TruncatedAndPaddedImcg) {
  const std::string bytes = tiny_imcg();
  for (size_t cut : {size_t{0}, size_t{10}, size_t{24}, bytes.size() / 2, bytes.size() - 1}) {
    const auto g = write("cut" + std::to_string(cut) + ".imcg", bytes.substr(0, cut));
    expect_failure({"validate", "--graph", g.string()}, 1, {g.string(), cut < 24 ? "not an imcsim graph" : "truncated"});
  }
  const auto g = write("padded.imcg", bytes + "xx");
  expect_failure({"validate", "--graph", g.string()}, 1, {g.string(), "padded"});
}

TEST_F(Cli, ValidContainerWithInvalidGraph) {
  // Payload Graph{format_version: 1, name: "x"}: no input -> the loader names the field.
  const auto g = write("noinput.imcg", wrap_container(kTinyPayload));
  expect_failure({"validate", "--graph", g.string()}, 1, {g.string(), "input", "missing"});
}

// Regression (sim/graph/container.cc, unwrap_container): a header announcing a payload of 2^64 - 8 bytes
// wrapped `header + payload + trailer` to 24, so a 24-byte file passed the size check and the
// checksum loop read far past the buffer (SIGSEGV) before the fix. See
// tests/unit/graph_loader_test.cc (Container.HugeAnnouncedLengthDoesNotWrapTheSizeCheck).
TEST_F(Cli, HugeAnnouncedPayloadLengthDoesNotCrash) {
  // A valid container's first 16 bytes, then a u64 length of 2^64 - 8 (little-endian).
  std::string bytes = wrap_container("").substr(0, 16) + std::string("\xf8\xff\xff\xff\xff\xff\xff\xff", 8);
  const auto g = write("wrap.imcg", bytes);
  expect_failure({"validate", "--graph", g.string()}, 1, {g.string()});
}

TEST_F(Cli, TextGraphWithWrongSizes) {
  const fs::path g = kGraphs / "bad_weight_count.imcg.txt";
  expect_failure(run_args(g, kDefaultArch), 1, {g.string(), "node 'fc'", "imc.weights", "490", "489"});
  expect_failure({"validate", "--graph", g.string()}, 1, {g.string(), "node 'fc'", "imc.weights"});
}

// BUG (sim/graph/graph_loader.cc, convert_graph: node names are not validated, and every error
// message embeds them raw, e.g. Checker::set_node and mapping.cc's fail()): a node name holding
// a newline splits the one-line error into two stderr lines. Fix: reject names (node, tensor)
// containing control characters in convert_graph ("name: must not contain control
// characters"), or escape them when formatting messages.
TEST_F(Cli, NodeNameWithNewlineKeepsTheErrorOnOneLine) {
  std::string text = slurp_file(kGraphs / "bad_weight_count.imcg.txt");
  const auto at = text.find("name: \"fc\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 10, "name: \"f\\nc\"");  // the text-format escape \n: a real newline
  const auto g = write("newline_name.imcg.txt", text);
  expect_failure({"validate", "--graph", g.string()}, 1, {g.string(), "control characters"});
}

TEST_F(Cli, TextGraphSyntaxError) {
  const auto g = write("syntax.imcg.txt", "format_version: 1\ninput { tensor: \"x\" \n");
  expect_failure({"validate", "--graph", g.string()}, 1, {g.string(), "not a valid imcsim text graph", "line"});
}

TEST_F(Cli, UnwritableTraceFileAndBadTimingOptions) {
  const fs::path graph = kGraphs / "tiny_fmnist.imcg.txt";
  auto args = run_args(graph, kDefaultArch);
  args.insert(args.end(), {"--timing-only", "--trace", "/proc/no_such_dir/wave.vcd"});
  expect_failure(args, 1, {"/proc/no_such_dir/wave.vcd", "cannot write the VCD trace file"});
  auto bad_window = run_args(graph, kDefaultArch);
  bad_window.insert(bad_window.end(), {"--timing-only", "--trace", (dir / "w.vcd").string(), "--trace-window", "9:3"});
  expect_failure(bad_window, 2, {"--trace-window"});
  auto bad_execution = run_args(graph, kDefaultArch);
  bad_execution.insert(bad_execution.end(), {"--timing-only", "--execution", "diagonal"});
  expect_failure(bad_execution, 2, {"--execution", "diagonal"});
  auto replication_without_pipeline = run_args(graph, kDefaultArch);
  replication_without_pipeline.insert(replication_without_pipeline.end(), {"--timing-only", "--replication", "auto"});
  expect_failure(replication_without_pipeline, 2, {"--replication auto", "pipelined"});
}

TEST_F(Cli, NonexistentGraph) {
  const auto g = dir / "nope.imcg";
  expect_failure(run_args(g, kDefaultArch), 1, {g.string(), "not found"});
}

// ---- bad architecture configs -----------------------------------------------------------------

TEST_F(Cli, ConfigWithUnknownKey) {
  const auto a = write("unknown_key.json", R"({"array": {"rowz": 128}})");
  expect_failure(run_args(kTinyGraph, a), 1, {a.string(), "/array/rowz", "unknown key", "rows"});
  expect_failure({"validate", "--arch", a.string()}, 1, {a.string(), "/array/rowz"});
}

TEST_F(Cli, ConfigWithZeroRows) {
  const auto a = write("zero_rows.json", R"({"array": {"rows": 0}})");
  expect_failure(run_args(kTinyGraph, a), 1, {a.string(), "/array/rows", "got 0"});
}

TEST_F(Cli, ConfigWithAdcBits17) {
  const auto a = write("adc17.json", R"({"adc": {"bits": 17}})");
  expect_failure(run_args(kTinyGraph, a), 1, {a.string(), "/adc/bits", "17"});
}

TEST_F(Cli, ConfigSyntaxErrorAndMissingConfig) {
  const auto a = write("syntax.json", "{\n  \"array\": {\"rows\": 128,}\n}\n");
  expect_failure({"validate", "--arch", a.string()}, 1, {a.string() + ":2:", "JSON syntax error"});
  const auto missing = dir / "missing.json";
  expect_failure({"validate", "--arch", missing.string()}, 1, {missing.string(), "no such file"});
  expect_failure({"validate", "--arch", dir.string()}, 1, {dir.string(), "directory"});
}

TEST_F(Cli, GraphDoesNotMapOntoArchitecture) {
  // The tiny graph is trained for 2-bit cells.
  const auto a = write("cells1.json", R"({"array": {"cell_bits": 1}})");
  expect_failure(run_args(kTinyGraph, a), 1, {kTinyGraph.string(), "node 'fc'", "array.cell_bits"});
  expect_failure({"validate", "--graph", kTinyGraph.string(), "--arch", a.string()}, 1,
                 {"node 'fc'", "array.cell_bits"});
}

// ---- datasets ---------------------------------------------------------------------------------

TEST_F(Cli, MissingDatasetDirectory) {
  expect_failure(run_args(kTinyGraph, kDefaultArch, "/nonexistent"), 1, {"/nonexistent", "t10k-images"});
}

TEST_F(Cli, CorruptDatasetFiles) {
  // Not gzip / not IDX: the reader names the file.
  fs::create_directories(dir / "ds");
  write("ds/t10k-images-idx3-ubyte.gz", "this is not gzip");
  write("ds/t10k-labels-idx1-ubyte.gz", "neither is this");
  expect_failure(run_args(kTinyGraph, kDefaultArch, (dir / "ds").string()), 1, {"t10k-"});
}

TEST_F(Cli, GraphInputShapeDoesNotMatchDataset) {
  if (!have_dataset()) GTEST_SKIP() << kFashionMnist << " missing";
  // 1x4x4 input -> flatten -> 16 classes: valid graph, wrong size for 28x28 images.
  const auto g = write("small.imcg.txt", R"(format_version: 1
input { tensor: "x" shape: [1, 4, 4] dataset_format: "idx-u8" pixel_scale: 0.00392156862745098 mean: 0 std: 1
        quant { scale: 0.00392156862745098 bits: 8 } }
nodes { name: "flat" inputs: "x" output: "f" output_shape: [16]
        output_quant { scale: 0.00392156862745098 bits: 8 } flatten {} }
num_classes: 16
)");
  expect_failure(run_args(g, kDefaultArch), 1, {g.string(), "[1, 4, 4]", "28x28"});
}

// ---- command line -----------------------------------------------------------------------------

TEST_F(Cli, UnknownCommand) {
  expect_failure({"frobnicate"}, 2, {"unknown command", "frobnicate"});
}

TEST_F(Cli, UnknownOption) {
  expect_failure({"run", "--bogus"}, 2, {"imcsim run", "bogus"});
  expect_failure({"validate", "--graph"}, 2, {"imcsim validate", "graph"});
  expect_failure({"run", "--images", "lots"}, 2, {"imcsim run", "lots"});
  expect_failure({"validate"}, 2, {"imcsim validate", "--graph"});
}

TEST_F(Cli, NoArgumentsPrintsUsage) {
  const auto r = run({});
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("usage: imcsim"), std::string::npos);
}

TEST_F(Cli, UnwritableOutputDirectory) {
  if (!have_dataset()) GTEST_SKIP() << kFashionMnist << " missing";
  const auto file = write("file", "x");
  auto args = run_args(kTinyGraph, kDefaultArch);
  args[args.size() - 2] = (file / "sub").string();  // --out below a regular file
  expect_failure(args, 1, {(file / "sub").string()});
}

// ---- valid runs -------------------------------------------------------------------------------

TEST_F(Cli, ValidateAndInspectTinyGraph) {
  const auto r = run({"validate", "--graph", kTinyGraph.string(), "--arch", kDefaultArch.string()});
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ok: graph"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ok: mapping uses 1 arrays on 1 tiles"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;

  const auto i = run({"inspect", "--graph", kTinyGraph.string(), "--arch", kDefaultArch.string(), "--json"});
  ASSERT_TRUE(i.exited);
  ASSERT_EQ(i.exit_code, 0) << i.err;
  const json j = json::parse(i.out);
  // fc: K = 49 rows (one 128-row tile), N = 10 weight columns x 2 slices = 20 columns: 1 array.
  const auto& l = j.at("mapping").at("layers").at(0);
  EXPECT_EQ(l.at("node"), "fc");
  EXPECT_EQ(l.at("rows_k"), 49);
  EXPECT_EQ(l.at("cols_n"), 10);
  EXPECT_EQ(l.at("slices"), 2);  // 4-bit OFFSET weights on 2-bit cells
  EXPECT_EQ(l.at("input_groups"), 8);
  EXPECT_EQ(l.at("arrays"), 1);
  EXPECT_DOUBLE_EQ(l.at("utilisation").get<double>(), 49.0 * 10 * 2 / (128.0 * 128));
}

TEST_F(Cli, ValidRunWritesReport) {
  if (!have_dataset()) GTEST_SKIP() << kFashionMnist << " missing";
  const auto arch = write("arch.json", R"({"name": "test_arch", "array": {"rows": 128, "cols": 128, "cell_bits": 2},
                                           "dac": {"bits": 1}, "adc": {"kind": "sar", "bits": 8}})");
  const fs::path out = dir / "out";
  for (const char* threads : {"1", "2"}) {
    SCOPED_TRACE(threads);
    const auto r = run({"run", "--graph", kTinyGraph.string(), "--arch", arch.string(), "--images", "20",
                        "--dataset-dir", kFashionMnist, "--out", out.string(), "--threads", threads});
    ASSERT_TRUE(r.exited) << "signal " << r.signal;
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(fs::exists(out / "report.json"));
    const json rep = json::parse(slurp_file(out / "report.json"));
    for (const char* key : {"accuracy", "latency", "energy", "area"}) {
      ASSERT_TRUE(rep.contains(key)) << key;
      EXPECT_TRUE(rep.at(key).is_object()) << key;
    }
    EXPECT_EQ(rep.at("accuracy").at("images"), 20);
    // The same 20 images through the library give the same number of correct predictions.
    const auto graph = imcsim::graph::load_graph(kTinyGraph);
    const auto ds = imcsim::data::read_fashion_mnist(kFashionMnist, false);
    imcsim::engine::FunctionalEngine eng(graph);
    uint64_t correct = 0;
    std::vector<int32_t> codes(28 * 28);
    for (size_t i = 0; i < 20; ++i) {
      imcsim::engine::pixels_to_codes(graph.input, std::span<const uint8_t>(ds.pixels).subspan(i * 784, 784), codes);
      correct += eng.infer(codes).predicted_class == ds.labels[i];
    }
    EXPECT_EQ(rep.at("accuracy").at("correct").get<uint64_t>(), correct);
    EXPECT_DOUBLE_EQ(rep.at("accuracy").at("top1").get<double>(), double(correct) / 20.0);
    EXPECT_GT(rep.at("latency").at("cycles_per_image").get<double>(), 0.0);
    EXPECT_GT(rep.at("energy").at("pj_per_image").get<double>(), 0.0);
    EXPECT_GT(rep.at("area").at("chip_mm2").get<double>(), 0.0);
    // No error lines: stderr holds only the run banner and progress lines.
    for (const auto& line : r.err_lines()) EXPECT_EQ(line.find("error"), std::string::npos) << line;
  }
}

}  // namespace
