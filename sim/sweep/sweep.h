// Design-space sweeps (imcsim sweep / sweep-merge; docs/sweep.md): the sweep spec (JSON file
// and/or repeated --set KEY=V1,V2), the points it enumerates (grid, or seeded random), each
// point's key (a hash of everything that determines its result), sharding, the result row of a
// point (from its run report), Pareto marking, and the CSV / JSON outputs. Running the points
// (one `imcsim run` process each) is the command's job (sim/app/cmd_sweep.cc). No SystemC here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sim/graph/container.h"
#include "sim/sweep/overrides.h"

namespace imcsim::sweep {

// One dimension of the sweep. `keys` has one key, or several tied keys that take their values
// together (e.g. /array/rows + /array/cols). Either a finite list of values (each a JSON value;
// with tied keys a scalar applies to every key, an array of keys.size() values one to each), or,
// in random mode only, a continuous range [min, max] (log-uniform if `log`, rounded if `integer`).
struct Axis {
  std::vector<std::string> keys;  // canonical (overrides.h)
  std::vector<nlohmann::json> values;
  bool continuous = false;
  double min = 0, max = 0;
  bool log = false, integer = false;
  // The settings of value v (one per key).
  std::vector<Setting> settings_of(const nlohmann::json& value) const;
};

struct Objective {
  std::string column;  // a numeric result column, e.g. "accuracy_top1", "energy_pj", "latency_ns"
  bool maximize = false;
  bool operator==(const Objective&) const = default;
};

struct SweepSpec {
  std::string graph = "workloads/fmnist_cnn/fmnist_cnn.imcg";
  std::string arch = "arch_configs/default.json";
  // Test images per point: 0 = timing only (no accuracy; `run --timing-only`), -1 = all.
  int64_t images = 0;
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";
  bool random = false;   // "mode": "grid" | "random"
  uint64_t samples = 0;  // random: points drawn
  uint64_t seed = 0;     // random: the draw's seed
  std::vector<Axis> axes;
  std::vector<Objective> objectives;  // empty: the defaults (default_objectives)
  // Swept keys whose values split the rows into groups with a Pareto front each (e.g. "graph":
  // one front per network). Empty: one front over all rows.
  std::vector<std::string> pareto_group;
};

// Parses a sweep file's JSON. `source` (the file) prefixes errors: "FILE: /axes/1/values: ...".
SweepSpec parse_spec(const nlohmann::json& j, const std::string& source);
SweepSpec load_spec(const std::filesystem::path& file);
// The spec as a sweep file (parse_spec(spec_json(s)) == s, values listed explicitly).
nlohmann::json spec_json(const SweepSpec& spec);

// One command-line axis: "KEY=V1,V2,...", "KEY=FROM:TO[:STEP]" (arithmetic, inclusive),
// "KEY=FROM:TO:xF" (geometric, factor F), tied keys joined by '+' ("/array/rows+/array/cols=64,128").
Axis parse_axis_arg(const std::string& text);

// "accuracy:max,energy_pj:min" (names may be short: accuracy, energy, latency, area, throughput,
// tops_per_w, tops_per_mm2). Throws SpecError naming the objective.
std::vector<Objective> parse_objectives(const std::string& text);
// accuracy (max, when images are measured), energy_pj (min), latency_ns (min).
std::vector<Objective> default_objectives(const SweepSpec& spec);

// Checks the spec as a whole: at least one axis, no key twice, each axis non-empty, random
// needs samples >= 1, objectives name known columns (accuracy needs images), pareto_group names
// swept keys. Throws SpecError.
void check_spec(const SweepSpec& spec);

struct Point {
  size_t index = 0;                 // position in the enumeration (0-based)
  std::vector<Setting> settings;    // every axis's settings, in axis order
  std::string graph;                // the graph file (spec.graph or the "graph" setting)
  std::string key;                  // 16 hex digits, point_key()
};

// The points of the spec: grid = the Cartesian product in axis order (last axis fastest);
// random = `samples` draws (splitmix64 seeded with spec.seed), duplicates dropped (first kept).
// Keys are filled in (reads the graph and arch files to hash their contents).
std::vector<Point> enumerate_points(const SweepSpec& spec);

// FNV-1a 64 of a byte string, and of a file's bytes (throws naming the file if unreadable).
using graph::fnv1a64;  // the .imcg container's FNV-1a 64 (sim/graph/container.h)
uint64_t file_fnv1a64(const std::filesystem::path& file);

// The canonical JSON a point's key hashes: key format version, graph file path and the FNV-1a
// 64 of its bytes, arch file path and hash, images, dataset dir, and the settings as an object
// (keys sorted). The axes themselves are NOT part of it: a point keeps its key (and its finished
// result) when the sweep is extended with more values or axes that do not change it.
nlohmann::json point_identity(const SweepSpec& spec, const std::vector<Setting>& settings, const std::string& graph,
                              uint64_t graph_hash, uint64_t arch_hash);
std::string point_key(const nlohmann::json& identity);  // fnv1a64(identity.dump()) as 16 hex digits

// "--shard I/N" (0 <= I < N), or "auto" (Slurm array: SLURM_ARRAY_TASK_ID relative to
// SLURM_ARRAY_TASK_MIN / SLURM_ARRAY_TASK_COUNT; MPI: OMPI_COMM_WORLD_RANK / _SIZE, PMI_RANK / PMI_SIZE).
struct Shard {
  uint64_t index = 0, count = 1;
  bool operator==(const Shard&) const = default;
};
Shard parse_shard(const std::string& text);
// The points of shard s: point p belongs to shard p.index % s.count.
std::vector<Point> shard_points(const std::vector<Point>& points, const Shard& s);

// The `imcsim run` arguments of a point (after "run"): --graph, --arch, --set for each arch and
// graph-variant setting, run.* options, --images / --timing-only. No --out, --threads, --quiet.
std::vector<std::string> run_args(const SweepSpec& spec, const Point& point);
// "imcsim run ..." with shell quoting: the one command that reproduces the point.
std::string run_command(const SweepSpec& spec, const Point& point);

// The result row of a finished point from its run report (ordered JSON object): key, index,
// each setting (column named by its key), graph, images, accuracy_top1 (null if not measured),
// latency_cycles, latency_ns, throughput_images_per_s, energy_pj, energy_<component>_pj, area_mm2,
// area_used_mm2, tops, tops_per_w, tops_per_mm2, utilisation, arrays_used, tiles_used,
// adc_saturation_rate, command.
nlohmann::ordered_json result_row(const SweepSpec& spec, const Point& point, const nlohmann::json& report);

// Marks "pareto": true/false on each row: not dominated by any other row (of the same group:
// equal values in every `group` column) in the objectives (rows with a null objective are never
// on the front). Returns how many are on the front.
size_t mark_pareto(std::vector<nlohmann::ordered_json>& rows, const std::vector<Objective>& objectives,
                   const std::vector<std::string>& group = {});

// CSV (header = the first row's columns, RFC 4180 quoting) and the JSON document
// {"spec", "objectives", "points": rows, "pareto_keys", "missing"}.
std::string rows_csv(const std::vector<nlohmann::ordered_json>& rows);
nlohmann::ordered_json rows_document(const SweepSpec& spec, const std::vector<Objective>& objectives,
                                     const std::vector<nlohmann::ordered_json>& rows,
                                     const std::vector<std::string>& missing_keys);

}  // namespace imcsim::sweep
