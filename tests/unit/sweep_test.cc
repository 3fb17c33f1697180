// Design-space sweeps (sim/sweep/, imcsim sweep / sweep-merge / run --set; docs/sweep.md):
//  * spec parsing (file and --set forms, ranges, tied keys) and its one-line errors naming the
//    field (unknown key, empty range, bad shard, bad objective);
//  * --set applied before the config's validation: the config parser names the key;
//  * point keys: FNV-1a test vectors, stable under axis extension, changed by input contents;
//  * grid order, seeded random draws, sharding (disjoint, complete);
//  * Pareto marking on hand-made rows; CSV quoting;
//  * end to end with the real binary: run --set, shard + merge equal to an unsharded sweep, and
//    kill -9 in the middle of a sweep, restarted: every point exactly once, finished points not
//    re-run, results equal to an uninterrupted sweep.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sim/config/arch_config.h"
#include "sim/sweep/overrides.h"
#include "sim/sweep/sweep.h"

extern char** environ;

namespace imcsim::sweep {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

const fs::path kSourceDir = IMCSIM_SOURCE_DIR;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh directory under the temp dir, removed when the test program ends.
struct TempDir {
  fs::path path;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
std::vector<std::unique_ptr<TempDir>>& temp_dirs() {
  static std::vector<std::unique_ptr<TempDir>> dirs;
  return dirs;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("imcsim_sweep_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  temp_dirs().push_back(std::make_unique<TempDir>());
  temp_dirs().back()->path = d;
  return d;
}

// Runs a shell command in the source directory; returns the exit code, output in `out`.
int sh(const std::string& cmd, std::string* out = nullptr) {
  const fs::path log = fs::temp_directory_path() / ("imcsim_sweep_test_sh_" + std::to_string(::getpid()));
  const int rc = std::system(("cd '" + kSourceDir.string() + "' && " + cmd + " >'" + log.string() + "' 2>&1").c_str());
  if (out) *out = read_file(log);
  fs::remove(log);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string imcsim() { return std::string("'") + IMCSIM_BINARY + "'"; }

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- spec parsing --------------------------------------------------------------------------

TEST(SweepSpec, ParsesFileFormsAndRanges) {
  const json j = json::parse(R"({
    "graph": "g.imcg", "arch": "a.json", "images": 200, "mode": "grid",
    "axes": [
      {"key": "adc.bits", "values": [3, 4]},
      {"keys": ["/array/rows", "/array/cols"], "range": {"from": 64, "to": 512, "factor": 2}},
      {"key": "/clock_mhz", "range": {"from": 1000, "to": 1200, "step": 100}},
      {"key": "graph.adc_bits", "values": [4]},
      {"key": "run.execution", "values": ["layer", "pipelined"]}
    ],
    "objectives": ["accuracy:max", "energy:min"]})");
  const SweepSpec s = parse_spec(j, "s.json");
  EXPECT_EQ(s.graph, "g.imcg");
  EXPECT_EQ(s.images, 200);
  ASSERT_EQ(s.axes.size(), 5u);
  EXPECT_EQ(s.axes[0].keys, std::vector<std::string>{"/adc/bits"});
  EXPECT_EQ(s.axes[1].keys, (std::vector<std::string>{"/array/rows", "/array/cols"}));
  EXPECT_EQ(s.axes[1].values, (std::vector<json>{64, 128, 256, 512}));
  EXPECT_TRUE(s.axes[1].values[0].is_number_integer());
  EXPECT_EQ(s.axes[2].values, (std::vector<json>{1000, 1100, 1200}));
  ASSERT_EQ(s.objectives.size(), 2u);
  EXPECT_EQ(s.objectives[0], (Objective{"accuracy_top1", true}));
  EXPECT_EQ(s.objectives[1], (Objective{"energy_pj", false}));
  // The spec survives a round trip through its JSON (what sweep_spec.json holds).
  const SweepSpec back = parse_spec(spec_json(s), "back");
  EXPECT_EQ(spec_json(back), spec_json(s));
}

TEST(SweepSpec, CommandLineAxes) {
  Axis a = parse_axis_arg("adc.bits=3,4,5");
  EXPECT_EQ(a.keys, std::vector<std::string>{"/adc/bits"});
  EXPECT_EQ(a.values, (std::vector<json>{3, 4, 5}));
  a = parse_axis_arg("/adc/kind=sar,flash");
  EXPECT_EQ(a.values, (std::vector<json>{"sar", "flash"}));
  a = parse_axis_arg("/adc/bits=3:6");
  EXPECT_EQ(a.values, (std::vector<json>{3, 4, 5, 6}));
  a = parse_axis_arg("/adc/bits=2:8:3");
  EXPECT_EQ(a.values, (std::vector<json>{2, 5, 8}));
  a = parse_axis_arg("/array/rows+/array/cols=64:256:x2");
  EXPECT_EQ(a.keys, (std::vector<std::string>{"/array/rows", "/array/cols"}));
  EXPECT_EQ(a.values, (std::vector<json>{64, 128, 256}));
  a = parse_axis_arg("/clock_mhz=0.5:1.5:0.5");
  EXPECT_EQ(a.values, (std::vector<json>{0.5, 1.0, 1.5}));
  // Settings of tied keys: a scalar for every key, an array one per key.
  Axis tied{{"/a", "/b"}, {}};
  EXPECT_EQ(tied.settings_of(7), (std::vector<Setting>{{"/a", 7}, {"/b", 7}}));
  EXPECT_EQ(tied.settings_of(json::array({1, 2})), (std::vector<Setting>{{"/a", 1}, {"/b", 2}}));
}

TEST(SweepSpec, KeysAndValues) {
  EXPECT_EQ(canonical_key("adc.bits", false), "/adc/bits");
  EXPECT_EQ(canonical_key("/components/adc/energy_pj", false), "/components/adc/energy_pj");
  // Short names of the arch config's ADC-resolution override.
  EXPECT_EQ(canonical_key("graph.adc_bits", false), "/adc/layer_bits_override");
  EXPECT_EQ(canonical_key("graph.adc_method", true), "/adc/override_references");
  EXPECT_EQ(canonical_key("graph.calib_images", false), "/adc/override_calibration_images");
  EXPECT_EQ(canonical_key("run.execution", true), "run.execution");
  EXPECT_EQ(parse_value("3"), json(3));
  EXPECT_EQ(parse_value("2.5"), json(2.5));
  EXPECT_EQ(parse_value("true"), json(true));
  EXPECT_EQ(parse_value("sar"), json("sar"));
  EXPECT_EQ(parse_value("\"3\""), json("3"));
  const Setting s = parse_setting("adc.kind=flash", "--set", false);
  EXPECT_EQ(s, (Setting{"/adc/kind", "flash"}));
}

TEST(SweepSpec, ErrorsNameTheField) {
  auto spec_error = [](const char* text) { return error_of([&] { check_spec(parse_spec(json::parse(text), "s.json")); }); };
  EXPECT_EQ(spec_error(R"({"axes": [{"key": "/adc/bits", "values": []}]})"),
            "s.json: /axes/0/values: empty (expected at least one value)");
  EXPECT_EQ(spec_error(R"({"axes": [{"key": "/adc/bits", "range": {"from": 8, "to": 3, "step": 1}}]})"),
            "s.json: /axes/0/range: empty range: from 8 > to 3");
  EXPECT_EQ(spec_error(R"({"axis": []})"),
            "s.json: /axis: unknown key (expected one of: arch, axes, dataset_dir, description, graph, images, mode, "
            "objectives, pareto_group, samples, seed)");
  EXPECT_EQ(spec_error(R"({"pareto_group": ["graph"], "axes": [{"key": "/adc/bits", "values": [3]}]})"),
            "pareto_group: graph is not a swept key");
  EXPECT_EQ(spec_error(R"({"axes": [{"key": "/adc/bits", "vals": [1]}]})"),
            "s.json: /axes/0/vals: unknown key (expected one of: integer, key, keys, log, max, min, range, values)");
  EXPECT_EQ(spec_error(R"({"axes": [{"key": "graph.adc_bitz", "values": [1]}]})"),
            "s.json: /axes/0/key: graph.adc_bitz: unknown key (expected an arch-config JSON pointer or one of: graph, "
            "graph.adc_bits, graph.adc_method, graph.calib_images, run.execution, run.timing, run.replication, "
            "run.stream_images, run.seed)");
  EXPECT_EQ(spec_error(R"({"axes": [{"key": "/adc/bits", "range": {"from": 1, "to": 3, "step": 0}}]})"),
            "s.json: /axes/0/range/step: must be > 0, got 0");
  EXPECT_EQ(spec_error(R"({"axes": []})"), "axes: none (give --set KEY=V1,V2 or a sweep file with \"axes\")");
  EXPECT_EQ(spec_error(R"({"axes": [{"key": "/adc/bits", "values": [3]}, {"key": "adc.bits", "values": [4]}]})"),
            "/adc/bits: key swept twice (one axis per key)");
  EXPECT_EQ(spec_error(R"({"mode": "random", "axes": [{"key": "/adc/bits", "values": [3]}]})"),
            "samples: random mode needs samples >= 1 (--samples N)");
  EXPECT_EQ(spec_error(R"({"axes": [{"key": "/clock_mhz", "min": 1, "max": 2}]})"),
            "/clock_mhz: a min/max axis needs \"mode\": \"random\" (a grid needs values or a range)");
  EXPECT_EQ(spec_error(R"({"images": 0, "objectives": ["accuracy:max"], "axes": [{"key": "/adc/bits", "values": [3]}]})"),
            "objectives: accuracy needs measured images (--images N or \"all\"); this sweep is timing only");
  EXPECT_EQ(spec_error(R"({"objectives": ["energy:lowest"], "axes": [{"key": "/adc/bits", "values": [3]}]})"),
            "s.json: /objectives/0: objective 'energy:lowest': direction must be max or min, got 'lowest'");
  EXPECT_EQ(error_of([] { parse_axis_arg("/adc/bits=5:3"); }), "--set /adc/bits: range: empty range: from 5 > to 3");
  EXPECT_EQ(error_of([] { parse_axis_arg("/adc/bits="); }), "--set /adc/bits: empty value list");
  EXPECT_EQ(error_of([] { parse_axis_arg("/adc/bits=3,,4"); }), "--set /adc/bits: empty value in '3,,4'");
  EXPECT_EQ(error_of([] { parse_axis_arg("adc..bits=3"); }), "--set adc..bits: empty path component in key");
  EXPECT_EQ(error_of([] { parse_axis_arg("adcbits"); }), "--set 'adcbits': expected KEY=V1,V2,... or KEY=FROM:TO[:STEP]");
  EXPECT_EQ(error_of([] { parse_objectives("power:min"); }).substr(0, 47),
            "objective 'power:min': unknown column 'power' (");
  EXPECT_EQ(error_of([] { parse_setting("run.execution=layer", "--set", false); }),
            "--set run.execution: unknown key (expected an arch-config JSON pointer or one of: graph.adc_bits, "
            "graph.adc_method, graph.calib_images)");
  // The ADC override's values are checked by the config's validation, naming the key.
  const fs::path arch = kSourceDir / "arch_configs" / "default.json";
  const std::string set_error =
      error_of([&] { load_arch_config_with(arch, {{canonical_key("graph.adc_bits", false), 17}}); });
  EXPECT_NE(set_error.find("/adc/layer_bits_override"), std::string::npos) << set_error;
  const std::string method_error = error_of([&] {
    load_arch_config_with(arch, {{"/adc/layer_bits_override", 4}, {canonical_key("graph.adc_method", false), "magic"}});
  });
  EXPECT_NE(method_error.find("/adc/override_references"), std::string::npos) << method_error;
}

TEST(SweepSpec, ShardErrors) {
  EXPECT_EQ(parse_shard("1/4"), (Shard{1, 4}));
  EXPECT_EQ(parse_shard("0/1"), (Shard{0, 1}));
  EXPECT_EQ(error_of([] { parse_shard("4/4"); }),
            "--shard: index 4 out of range (expected 0 <= I < 4; shards are numbered from 0)");
  EXPECT_EQ(error_of([] { parse_shard("0/0"); }), "--shard: the shard count must be >= 1, got '0/0'");
  EXPECT_EQ(error_of([] { parse_shard("3"); }), "--shard: expected I/N with 0 <= I < N (e.g. 0/4) or auto, got '3'");
  EXPECT_EQ(error_of([] { parse_shard("a/4"); }), "--shard: index 'a' is not a non-negative integer");
  EXPECT_EQ(error_of([] { parse_shard("-1/4"); }), "--shard: index '-1' is not a non-negative integer");
  ::setenv("SLURM_ARRAY_TASK_ID", "7", 1);
  ::setenv("SLURM_ARRAY_TASK_MIN", "5", 1);
  ::setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
  EXPECT_EQ(parse_shard("auto"), (Shard{2, 3}));
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  ::unsetenv("SLURM_ARRAY_TASK_MIN");
  ::unsetenv("SLURM_ARRAY_TASK_COUNT");
}

// ---- --set on the arch config -----------------------------------------------------------------

TEST(SweepOverrides, AppliedBeforeValidation) {
  const fs::path arch = kSourceDir / "arch_configs" / "default.json";
  const auto c = load_arch_config_with(arch, {{"/adc/bits", 6}, {"/array/rows", 256}, {"/adc/layer_bits_override", 4}});
  EXPECT_EQ(c.adc.bits, 6u);
  EXPECT_EQ(c.adc.layer_bits_override, 4u);
  EXPECT_EQ(c.array.rows, 256u);
  EXPECT_EQ(c.array.cols, 128u);
  // The validation layer sees the overridden value and names the key.
  const std::string src = arch.string() + " (with --set ";
  EXPECT_EQ(error_of([&] { load_arch_config_with(arch, {{"/adc/bitz", 3}}); }),
            src + "/adc/bitz=3): /adc/bitz: unknown key (expected one of: kind, bits, columns_per_adc, "
                  "conversion_cycles, layer_bits_override, override_references, override_calibration_images); did you mean \"bits\"?");
  EXPECT_EQ(error_of([&] { load_arch_config_with(arch, {{"/adc/kind", "magic"}}); }).substr(0, src.size() + 29),
            src + "/adc/kind=magic): /adc/kind: ");
  EXPECT_NE(error_of([&] { load_arch_config_with(arch, {{"/adc/bits", "eight"}}); }).find("/adc/bits: expected"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { load_arch_config_with(arch, {{"/clock_mhz/x", 1}}); }),
            src + "/clock_mhz/x=1): /clock_mhz/x: cannot set /clock_mhz/x: /clock_mhz is not an object");
}

// ---- point keys, enumeration, shards ------------------------------------------------------------

SweepSpec tiny_spec() {
  SweepSpec s;
  s.graph = (kSourceDir / "workloads" / "fmnist_cnn" / "fmnist_cnn.imcg").string();
  s.arch = (kSourceDir / "arch_configs" / "default.json").string();
  s.axes = {parse_axis_arg("/adc/bits=8,9,10"), parse_axis_arg("/adc/kind=sar,flash")};
  return s;
}

TEST(SweepPoints, Fnv1aVectors) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(SweepPoints, GridOrderAndKeys) {
  const SweepSpec s = tiny_spec();
  const auto points = enumerate_points(s);
  ASSERT_EQ(points.size(), 6u);
  // Last axis fastest.
  std::vector<std::pair<int, std::string>> got;
  for (const auto& p : points) got.emplace_back(p.settings[0].value.get<int>(), p.settings[1].value.get<std::string>());
  EXPECT_EQ(got, (std::vector<std::pair<int, std::string>>{
                     {8, "sar"}, {8, "flash"}, {9, "sar"}, {9, "flash"}, {10, "sar"}, {10, "flash"}}));
  std::set<std::string> keys;
  for (const auto& p : points) {
    EXPECT_EQ(p.key.size(), 16u);
    keys.insert(p.key);
    // The key is the hash of the identity, which holds the settings and the inputs' hashes.
    const json id = point_identity(s, p.settings, p.graph, file_fnv1a64(p.graph), file_fnv1a64(s.arch));
    EXPECT_EQ(p.key, point_key(id));
    EXPECT_EQ(id["settings"]["/adc/bits"], p.settings[0].value);
  }
  EXPECT_EQ(keys.size(), 6u);
  // Extending the sweep keeps the keys of the old points.
  SweepSpec wider = s;
  wider.axes[0] = parse_axis_arg("/adc/bits=7,8,9,10,11");
  std::set<std::string> wider_keys;
  for (const auto& p : enumerate_points(wider)) wider_keys.insert(p.key);
  for (const auto& k : keys) EXPECT_TRUE(wider_keys.count(k)) << k;
  // The axis order does not matter either (settings are keyed as an object).
  SweepSpec swapped = s;
  std::swap(swapped.axes[0], swapped.axes[1]);
  std::set<std::string> swapped_keys;
  for (const auto& p : enumerate_points(swapped)) swapped_keys.insert(p.key);
  EXPECT_EQ(swapped_keys, keys);
  // Other images, or another arch file content, give other keys.
  SweepSpec more_images = s;
  more_images.images = 100;
  EXPECT_NE(enumerate_points(more_images)[0].key, points[0].key);
  const fs::path dir = fresh_dir("keys");
  fs::copy_file(s.arch, dir / "a.json");
  SweepSpec other_arch = s;
  other_arch.arch = (dir / "a.json").string();
  const std::string key_a = enumerate_points(other_arch)[0].key;
  EXPECT_NE(key_a, points[0].key);  // the path is part of the identity
  std::ofstream(dir / "a.json", std::ios::app) << "\n";
  EXPECT_NE(enumerate_points(other_arch)[0].key, key_a);  // so is the content
}

TEST(SweepPoints, RandomIsSeededAndDeduplicated) {
  SweepSpec s = tiny_spec();
  s.random = true;
  s.samples = 40;
  s.seed = 3;
  const auto a = enumerate_points(s), b = enumerate_points(s);
  ASSERT_EQ(a.size(), 6u);  // 40 draws from 6 combinations: every one drawn, duplicates dropped
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].key, b[i].key);
  s.samples = 3;
  const auto c = enumerate_points(s);
  s.seed = 4;
  const auto d = enumerate_points(s);
  std::string ck, dk;
  for (const auto& p : c) ck += p.key;
  for (const auto& p : d) dk += p.key;
  EXPECT_NE(ck, dk);
  // Continuous axes: inside [min, max], integers when asked.
  s.axes = {Axis{{"/clock_mhz"}, {}, true, 500, 1500, true, true}};
  s.samples = 50;
  for (const auto& p : enumerate_points(s)) {
    ASSERT_TRUE(p.settings[0].value.is_number_integer());
    EXPECT_GE(p.settings[0].value.get<int>(), 500);
    EXPECT_LE(p.settings[0].value.get<int>(), 1500);
  }
}

TEST(SweepPoints, ShardsSplitDisjointAndComplete) {
  const auto points = enumerate_points(tiny_spec());
  std::vector<std::string> joined;
  for (uint64_t i = 0; i < 4; ++i)
    for (const auto& p : shard_points(points, {i, 4})) {
      EXPECT_EQ(p.index % 4, i);
      joined.push_back(p.key);
    }
  std::sort(joined.begin(), joined.end());
  std::vector<std::string> all;
  for (const auto& p : points) all.push_back(p.key);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(joined, all);
  EXPECT_EQ(shard_points(points, {0, 4}).size(), 2u);  // indices 0, 4
  EXPECT_EQ(shard_points(points, {3, 4}).size(), 1u);  // index 3
}

TEST(SweepPoints, RunCommand) {
  SweepSpec s = tiny_spec();
  s.graph = "g.imcg";
  s.arch = "a b.json";
  s.images = 100;
  Point p;
  p.graph = "g.imcg";
  p.settings = {{"/adc/bits", 4}, {"/name", "3"}, {"run.execution", "pipelined"}, {"graph.adc_bits", 4}};
  EXPECT_EQ(run_command(s, p),
            "imcsim run --graph g.imcg --arch 'a b.json' --set /adc/bits=4 --set '/name=\"3\"' --set graph.adc_bits=4 "
            "--execution pipelined --images 100");
  s.images = 0;
  EXPECT_EQ(run_args(s, p).back(), "--timing-only");
}

// ---- Pareto, CSV ------------------------------------------------------------------------------

TEST(SweepPareto, HandMadeRows) {
  // (accuracy max, energy min): B dominates A; C and B trade off; D duplicates C (both kept);
  // E lacks accuracy (never on the front); F is dominated by C.
  std::vector<ojson> rows;
  auto row = [](const char* k, json acc, double e) {
    ojson r;
    r["key"] = k;
    r["accuracy_top1"] = acc;
    r["energy_pj"] = e;
    return r;
  };
  rows.push_back(row("A", 0.80, 20));
  rows.push_back(row("B", 0.85, 10));
  rows.push_back(row("C", 0.90, 30));
  rows.push_back(row("D", 0.90, 30));
  rows.push_back(row("E", nullptr, 1));
  rows.push_back(row("F", 0.89, 30));
  const std::vector<Objective> obj = {{"accuracy_top1", true}, {"energy_pj", false}};
  EXPECT_EQ(mark_pareto(rows, obj), 3u);
  std::string front;
  for (const auto& r : rows)
    if (r["pareto"].get<bool>()) front += r["key"].get<std::string>();
  EXPECT_EQ(front, "BCD");
  // Energy alone: E (1 pJ) is the front.
  EXPECT_EQ(mark_pareto(rows, {{"energy_pj", false}}), 1u);
  EXPECT_TRUE(rows[4]["pareto"].get<bool>());
  // Three objectives: G is better in latency only, so it joins the front.
  for (auto& r : rows) r["latency_ns"] = 100.0;
  rows.push_back(row("G", 0.5, 99));
  rows.back()["latency_ns"] = 50.0;
  EXPECT_EQ(mark_pareto(rows, {{"accuracy_top1", true}, {"energy_pj", false}, {"latency_ns", false}}), 4u);
  EXPECT_TRUE(rows.back()["pareto"].get<bool>());
}

TEST(SweepPareto, OneFrontPerGroup) {
  // Two networks: net b's points are all worse than net a's, but b has its own front.
  std::vector<ojson> rows;
  auto row = [](const char* k, const char* net, double acc, double e) {
    ojson r;
    r["key"] = k;
    r["graph"] = net;
    r["accuracy_top1"] = acc;
    r["energy_pj"] = e;
    return r;
  };
  rows.push_back(row("a1", "a", 0.9, 10));
  rows.push_back(row("a2", "a", 0.8, 20));  // dominated by a1
  rows.push_back(row("b1", "b", 0.5, 30));
  rows.push_back(row("b2", "b", 0.6, 40));
  rows.push_back(row("b3", "b", 0.4, 50));  // dominated by b1
  const std::vector<Objective> obj = {{"accuracy_top1", true}, {"energy_pj", false}};
  EXPECT_EQ(mark_pareto(rows, obj), 1u);  // one front: a1 dominates every b
  EXPECT_EQ(mark_pareto(rows, obj, {"graph"}), 3u);
  std::string front;
  for (const auto& r : rows)
    if (r["pareto"].get<bool>()) front += r["key"].get<std::string>();
  EXPECT_EQ(front, "a1b1b2");
  // The spec carries the grouping through its JSON.
  SweepSpec s = parse_spec(json::parse(R"({"pareto_group": ["graph"], "axes": [{"key": "graph", "values": ["x"]}]})"), "s");
  EXPECT_EQ(s.pareto_group, std::vector<std::string>{"graph"});
  EXPECT_EQ(parse_spec(spec_json(s), "back").pareto_group, s.pareto_group);
}

TEST(SweepOutput, CsvQuoting) {
  ojson r;
  r["key"] = "k";
  r["/name"] = "a,b";
  r["q"] = "say \"hi\"";
  r["x"] = nullptr;
  r["n"] = 2.5;
  r["pareto"] = true;
  EXPECT_EQ(rows_csv({r}), "key,/name,q,x,n,pareto\nk,\"a,b\",\"say \"\"hi\"\"\",,2.5,true\n");
}

// ---- end to end with the binary ------------------------------------------------------------------

TEST(SweepCli, RunSetOverridesAndErrors) {
  const fs::path dir = fresh_dir("runset");
  std::string out;
  ASSERT_EQ(sh(imcsim() + " run --timing-only -q --set /adc/bits=10 --set adc.kind=flash --out " + dir.string(), &out), 0)
      << out;
  const json rep = json::parse(read_file(dir / "report.json"));
  EXPECT_EQ(rep["config"]["adc"]["bits"], 10);
  EXPECT_EQ(rep["config"]["adc"]["kind"], "flash");
  EXPECT_EQ(rep["run"]["set"], (json{{"/adc/bits", 10}, {"/adc/kind", "flash"}}));
  // Bad key: exit 1, one line naming the key.
  EXPECT_EQ(sh(imcsim() + " run --timing-only -q --set /adc/bitz=10 --out " + dir.string() + "/x", &out), 1);
  EXPECT_EQ(out,
            "imcsim: error: arch_configs/default.json (with --set /adc/bitz=10): /adc/bitz: unknown key (expected one "
            "of: kind, bits, columns_per_adc, conversion_cycles, layer_bits_override, override_references, override_calibration_images); did you mean \"bits\"?\n");
  EXPECT_EQ(sh(imcsim() + " run --timing-only -q --set adcbits --out " + dir.string() + "/x", &out), 1);
  EXPECT_EQ(out, "imcsim: error: --set 'adcbits': expected KEY=VALUE (e.g. /adc/bits=4)\n");
  // The ADC override by its short name: every linear ADC re-derived at 6 bits (full-scale kept).
  ASSERT_EQ(sh(imcsim() + " run --timing-only -q --set graph.adc_bits=6 --out " + dir.string() + "/v", &out), 0) << out;
  const json v = json::parse(read_file(dir / "v" / "report.json"));
  int rescaled = 0;
  for (const auto& n : v["graph"]["nodes"]) {
    if (!n.contains("imc")) continue;
    ++rescaled;
    EXPECT_EQ(n["imc"]["adc"]["bits"], 6) << n.dump();
    EXPECT_EQ(n["imc"]["adc"]["kind"], "linear") << n.dump();
  }
  EXPECT_EQ(rescaled, 4);
  EXPECT_EQ(v["graph"]["name"], "fmnist_cnn_adc6b_rescale");
  // Re-calibrated (tiny): Lloyd-Max references at 4 bits from 16 training images.
  ASSERT_EQ(sh(imcsim() + " run -q --images 20 --set graph.adc_bits=4 --set graph.adc_method=lloyd-max "
                          "--set graph.calib_images=16 --out " + dir.string() + "/c", &out), 0) << out;
  const json c = json::parse(read_file(dir / "c" / "report.json"));
  int imc = 0;
  for (const auto& n : c["graph"]["nodes"]) {
    if (!n.contains("imc")) continue;
    ++imc;
    EXPECT_EQ(n["imc"]["adc"]["bits"], 4) << n.dump();
    EXPECT_EQ(n["imc"]["adc"]["kind"], "nonlinear") << n.dump();
  }
  EXPECT_EQ(imc, 4);
  EXPECT_EQ(c["accuracy"]["images"], 20);
  EXPECT_EQ(c["graph"]["name"], "fmnist_cnn_calib_lloyd-max_4b");
  // A non-linear graph cannot be rescaled: the error names the node.
  EXPECT_EQ(sh(imcsim() + " run --timing-only -q --graph workloads/fmnist_cnn/fmnist_cnn_adc4_nl.imcg "
                          "--set graph.adc_bits=6 --out " + dir.string() + "/n", &out), 1);
  EXPECT_NE(out.find("/adc/override_references: \"rescale\" cannot re-derive the non-linear ADC of node 'conv1' (#0) "
                     "of workloads/fmnist_cnn/fmnist_cnn_adc4_nl.imcg at 6 bits"),
            std::string::npos)
      << out;
}

TEST(SweepCli, BadSpecsGiveOneLineErrors) {
  std::string out;
  EXPECT_EQ(sh(imcsim() + " sweep --dry-run --set /adc/bitz=3,4", &out), 1);
  EXPECT_EQ(out, "imcsim: error: point 0 (/adc/bitz=3): arch_configs/default.json (with --set /adc/bitz=3): /adc/bitz: "
                 "unknown key (expected one of: kind, bits, columns_per_adc, conversion_cycles, layer_bits_override, override_references, override_calibration_images); did you mean \"bits\"?\n");
  EXPECT_EQ(sh(imcsim() + " sweep --set /adc/bits=8:3", &out), 1);
  EXPECT_EQ(out, "imcsim: error: --set /adc/bits: range: empty range: from 8 > to 3\n");
  EXPECT_EQ(sh(imcsim() + " sweep --set /adc/bits=8 --shard 1/1", &out), 1);
  EXPECT_EQ(out, "imcsim: error: --shard: index 1 out of range (expected 0 <= I < 1; shards are numbered from 0)\n");
  EXPECT_EQ(sh(imcsim() + " sweep", &out), 1);
  EXPECT_EQ(out, "imcsim: error: axes: none (give --set KEY=V1,V2 or a sweep file with \"axes\")\n");
  EXPECT_EQ(sh(imcsim() + " sweep --set /adc/bits=8 --bogus", &out), 2);
  const fs::path dir = fresh_dir("badspec");
  std::ofstream(dir / "s.json") << R"({"axes": [{"key": "/adc/bits", "values": []}]})";
  EXPECT_EQ(sh(imcsim() + " sweep " + (dir / "s.json").string(), &out), 1);
  EXPECT_EQ(out, "imcsim: error: " + (dir / "s.json").string() + ": /axes/0/values: empty (expected at least one value)\n");
  EXPECT_EQ(sh(imcsim() + " sweep-merge --out " + dir.string(), &out), 1);
  EXPECT_EQ(out, "imcsim: error: " + (dir / "sweep_spec.json").string() +
                     ": no such file (is --out the directory a sweep wrote?)\n");
}

TEST(SweepCli, ShardsMergeToTheUnshardedResult) {
  const fs::path dir = fresh_dir("shards");
  const std::string axes = " --set /adc/bits=8,10 --set /adc/kind=sar,flash --set run.execution=layer,pipelined -q";
  std::string out;
  ASSERT_EQ(sh(imcsim() + " sweep -j 2" + axes + " --out " + (dir / "whole").string(), &out), 0) << out;
  // Shared file system: every shard writes into the same directory.
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(sh(imcsim() + " sweep -j 1" + axes + " --shard " + std::to_string(i) + "/3 --out " + (dir / "shared").string(),
                 &out), 0) << out;
  EXPECT_TRUE(fs::exists(dir / "shared" / "sweep.shard-2-of-3.csv"));
  // Merging before every shard ran is an error naming what is missing.
  ASSERT_EQ(sh(imcsim() + " sweep -j 1" + axes + " --shard 0/2 --out " + (dir / "sep0").string(), &out), 0) << out;
  EXPECT_EQ(sh(imcsim() + " sweep-merge --out " + (dir / "sep0").string(), &out), 1);
  EXPECT_NE(out.find("4 of 8 points have no result (first: point 1, key "), std::string::npos) << out;
  // Separate machines: shard 1 elsewhere, copied in with --from.
  ASSERT_EQ(sh(imcsim() + " sweep -j 1" + axes + " --shard 1/2 --out " + (dir / "sep1").string(), &out), 0) << out;
  ASSERT_EQ(sh(imcsim() + " sweep-merge -q --out " + (dir / "shared").string(), &out), 0) << out;
  ASSERT_EQ(sh(imcsim() + " sweep-merge -q --out " + (dir / "sep0").string() + " --from " + (dir / "sep1").string(), &out),
            0) << out;
  const std::string whole = read_file(dir / "whole" / "sweep.csv");
  EXPECT_EQ(std::count(whole.begin(), whole.end(), '\n'), 9);
  EXPECT_EQ(read_file(dir / "shared" / "sweep.csv"), whole);
  EXPECT_EQ(read_file(dir / "sep0" / "sweep.csv"), whole);
  EXPECT_EQ(read_file(dir / "sep0" / "sweep.json"), read_file(dir / "whole" / "sweep.json"));
  // Flash is faster than SAR at the same energy here: the front holds flash points only.
  const json doc = json::parse(read_file(dir / "whole" / "sweep.json"));
  ASSERT_FALSE(doc["pareto_keys"].empty());
  for (const auto& p : doc["points"])
    if (p["pareto"].get<bool>()) {
      EXPECT_EQ(p["/adc/kind"], "flash");
    }
}

size_t finished_points(const fs::path& out) {
  size_t n = 0;
  if (!fs::exists(out / "points")) return 0;
  for (const auto& d : fs::directory_iterator(out / "points")) n += fs::exists(d.path() / "report.json") ? 1 : 0;
  return n;
}

TEST(SweepCli, KillNineMidwayThenResume) {
  const fs::path dir = fresh_dir("resume");
  // 8 points of about 0.6 s each (50 images streamed through the SystemC model), 2 at a time.
  const std::vector<std::string> sweep_args = {
      "sweep", "--set", "/adc/bits=8,9,10,11", "--set", "run.stream_images=40,50", "-j", "2", "-q", "--out"};
  auto spawn = [&](const fs::path& out) {
    std::vector<std::string> a = {IMCSIM_BINARY};
    a.insert(a.end(), sweep_args.begin(), sweep_args.end());
    a.push_back(out.string());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    EXPECT_EQ(::posix_spawn(&pid, IMCSIM_BINARY, nullptr, nullptr, argv.data(), environ), 0);
    return pid;
  };
  auto wait_ok = [](pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  ASSERT_EQ(::chdir(kSourceDir.c_str()), 0);
  const fs::path killed = dir / "killed", clean = dir / "clean";
  const pid_t pid = spawn(killed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (finished_points(killed) < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its runs die with it (PR_SET_PDEATHSIG)
  const size_t done_before = finished_points(killed);
  ASSERT_GE(done_before, 2u);
  ASSERT_LT(done_before, 8u) << "the sweep finished before it was killed: nothing was interrupted";
  EXPECT_FALSE(fs::exists(killed / "sweep.csv"));
  std::map<std::string, std::string> before;  // finished reports, byte for byte
  for (const auto& d : fs::directory_iterator(killed / "points"))
    if (fs::exists(d.path() / "report.json")) before[d.path().filename()] = read_file(d.path() / "report.json");
  // Restart with the same command: finished points are skipped (their reports untouched), the rest run.
  ASSERT_TRUE(wait_ok(spawn(killed)));
  for (const auto& [key, text] : before) EXPECT_EQ(read_file(killed / "points" / key / "report.json"), text) << key;
  ASSERT_TRUE(wait_ok(spawn(clean)));
  // Every point exactly once, with the results of an uninterrupted sweep.
  const json a = json::parse(read_file(killed / "sweep.json")), b = json::parse(read_file(clean / "sweep.json"));
  ASSERT_EQ(a["points"].size(), 8u);
  std::set<std::string> keys;
  for (const auto& p : a["points"]) keys.insert(p["key"].get<std::string>());
  EXPECT_EQ(keys.size(), 8u);
  EXPECT_TRUE(a["missing"].empty());
  EXPECT_EQ(read_file(killed / "sweep.csv"), read_file(clean / "sweep.csv"));
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace imcsim::sweep
