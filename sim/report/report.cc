#include "sim/report/report.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

namespace imcsim::report {

using nlohmann::json;

namespace {

json per_component(const cost::PerComponent& v, double unit_scale = 1.0) {
  json j = json::object();
  for (size_t k = 0; k < cost::kComponentCount; ++k)
    j[cost::component_name(static_cast<cost::Component>(k))] = v[k] * unit_scale;
  return j;
}

}  // namespace

json graph_summary_json(const graph::Graph& g) {
  const auto& p = g.provenance;
  json nodes = json::array();
  for (const auto& n : g.nodes) {
    json jn = {{"name", n.name}, {"op", graph::op_name(n.op)}, {"output_shape", n.output_shape.dims},
               {"output_bits", n.output_quant.bits}, {"output_scale", n.output_quant.scale},
               {"output_zero_point", n.output_quant.zero_point}};
    if (const auto* l = std::get_if<graph::ImcLayer>(&n.op)) {
      jn["imc"] = {{"rows_k", l->rows_k()}, {"cols_n", l->cols_n()},
                   {"input_bits", g.tensor_quant(n.inputs[0]).bits}, {"weight_bits", l->weight_bits},
                   {"cell_bits", l->cell_bits}, {"dac_bits", l->dac_bits},
                   {"encoding", kernels::encoding_name(l->encoding)},
                   {"row_tiling", l->row_tiling == graph::RowTilingRule::kContiguous ? "contiguous" : "channel_aligned"},
                   {"trained_array_rows", l->array_rows}, {"ashift_offset", l->ashift_offset},
                   {"adc", {{"kind", kernels::adc_kind_name(l->adc.kind)},
                            {"bits", l->adc.bits},
                            {"granularity", kernels::adc_granularity_name(l->adc.granularity)},
                            {"rounding", kernels::adc_rounding_name(l->adc.rounding)},
                            {"signed_codes", l->adc.signed_codes},
                            {"frac_bits", l->adc.frac_bits}}}};
    }
    nodes.push_back(std::move(jn));
  }
  return {{"name", g.name}, {"file", g.source_file}, {"num_classes", g.num_classes},
          {"input", {{"shape", g.input.shape.dims}, {"bits", g.input.quant.bits},
                     {"dataset_format", g.input.dataset_format}}},
          {"nodes", nodes}, {"golden_pairs", g.golden.size()},
          {"provenance", {{"exporter", p.exporter}, {"command", p.command}, {"seed", p.seed},
                          {"method", p.method}, {"dataset", p.dataset},
                          {"float_accuracy", p.float_accuracy},
                          {"fake_quant_accuracy", p.fake_quant_accuracy},
                          {"reference_accuracy", p.reference_accuracy},
                          {"reference_images", p.reference_images}, {"created_utc", p.created_utc},
                          {"torch_version", p.torch_version}}}};
}

json mapping_json(const mapping::Mapping& m) {
  json layers = json::array();
  for (const auto& l : m.layers)
    layers.push_back({{"node", l.node}, {"rows_k", l.rows_k}, {"cols_n", l.cols_n},
                      {"positions", l.positions}, {"input_groups", l.input_groups},
                      {"slices", l.slices},
                      {"physical_cols_per_weight_col", l.physical_cols_per_weight_col},
                      {"row_tiles", l.row_tiles}, {"max_rows_per_tile", l.max_rows_per_tile},
                      {"weight_cols_per_array", l.weight_cols_per_array},
                      {"col_tiles", l.col_tiles}, {"replication", l.replication}, {"arrays", l.arrays},
                      {"tiles", l.tiles},
                      {"first_tile", l.first_tile}, {"adc_bits", l.adc_bits},
                      {"cells_used", l.cells_used}, {"utilisation", l.utilisation}});
  return {{"array_rows", m.geometry.rows}, {"array_cols", m.geometry.cols},
          {"arrays_used", m.arrays_used}, {"tiles_used", m.tiles_used},
          {"tiles_available", m.geometry.tiles}, {"utilisation", m.utilisation},
          {"layers", layers}};
}

json build_report(const RunInfo& info, const graph::Graph& g, const config::ArchConfig& arch,
                  const mapping::Mapping& m, const engine::DatasetResult& ds,
                  const cost::CostReport& c, const timing::SystemcTimingResult* sc) {
  json j;
  j["imcsim"] = {{"version", IMCSIM_VERSION}, {"report_format", 1}, {"command", info.command_line}};
  j["inputs"] = {{"graph", info.graph_file}, {"arch_config", info.arch_file},
                 {"dataset_images", info.images_file}, {"dataset_labels", info.labels_file}};

  // Accuracy, with the exporter's reference figure for comparison.
  std::vector<uint64_t> class_total(g.num_classes, 0), class_correct(g.num_classes, 0);
  json acc = {{"images", ds.images}, {"correct", ds.correct}, {"top1", ds.accuracy()}};
  if (g.provenance.reference_images > 0) {
    acc["reference_top1"] = g.provenance.reference_accuracy;
    acc["reference_images"] = g.provenance.reference_images;
    if (g.provenance.reference_images == ds.images)
      acc["delta_vs_reference"] = ds.accuracy() - g.provenance.reference_accuracy;
  }
  if (ds.images == 0)
    acc = {{"images", 0}, {"measured", false}, {"note", "timing-only run: no data, no accuracy"}};
  j["accuracy"] = acc;

  // Latency.
  json lat_nodes = json::array();
  uint64_t analytical_total = 0;
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    const auto& n = c.nodes[i];
    analytical_total += n.cycles;
    json jn = {{"node", n.node}, {"op", n.op}, {"cycles", n.cycles}, {"analytical_cycles", n.cycles}};
    if (n.input_steps) {
      jn["input_steps"] = n.input_steps;
      jn["step_cycles"] = n.step_cycles;
      jn["adc_conversion_cycles"] = n.adc_conversion_cycles;
    }
    if (sc) {
      const auto& t = sc->nodes[i];
      jn["cycles"] = t.cycles / sc->images;
      jn["where_cycles_went"] = {
          {"array_read", t.array_read}, {"array_stall_input", t.array_stall_input},
          {"array_stall_sample_hold", t.array_stall_sample_hold}, {"adc_busy", t.adc_busy},
          {"adc_idle", t.adc_idle}, {"bus_busy", t.bus_busy}, {"fetch_stall_bus", t.fetch_stall_bus},
          {"fetch_stall_input_register", t.fetch_stall_slot}, {"write_stall_bus", t.write_stall_bus},
          {"digital_busy", t.digital_busy}, {"global_buffer_busy", t.gb_busy},
          {"fetch_stall_global_buffer", t.fetch_stall_gb}, {"write_stall_global_buffer", t.write_stall_gb},
          {"interconnect_busy", t.link_busy}, {"fetch_stall_interconnect", t.fetch_stall_link},
          {"write_stall_interconnect", t.write_stall_link}};
    }
    lat_nodes.push_back(std::move(jn));
  }
  j["latency"] = {{"model", sc ? "systemc" : "analytical"},
                  {"analytical_cycles_per_image", analytical_total},
                  {"execution", "layer by layer, one image at a time"},
                  {"clock_mhz", arch.clock_mhz},
                  {"cycles_per_image", c.cycles_per_image},
                  {"ns_per_image", c.latency_ns_per_image},
                  {"images_per_s", c.latency_ns_per_image > 0 ? 1e9 / c.latency_ns_per_image : 0.0},
                  {"per_node", lat_nodes}};

  // Energy.
  json en_nodes = json::array();
  const double leakage_mw = cost::sum(c.leakage_power_mw_by_component);
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    const auto& n = c.nodes[i];
    const auto& e = n.events;
    // Static energy while this node runs (its own cycles per image: SystemC's when it ran).
    const uint64_t node_cycles = sc ? sc->nodes[i].cycles / sc->images : n.cycles;
    const double node_ns = double(node_cycles) * 1000.0 / arch.clock_mhz;
    en_nodes.push_back({{"node", n.node}, {"op", n.op}, {"pj", cost::sum(n.energy_pj)},
                        {"leakage_pj", leakage_mw * node_ns},
                        {"fixed_blocks_pj", c.static_power_mw * node_ns},
                        {"by_component_pj", per_component(n.energy_pj)},
                        {"events", {{"adc_conversions", e.adc_conversions},
                                    {"dac_row_drives", e.dac_row_drives},
                                    {"cell_reads", e.cell_reads},
                                    {"sample_holds", e.sample_holds},
                                    {"shift_adds", e.shift_adds},
                                    {"input_buffer_bytes", e.input_buffer_bytes},
                                    {"output_buffer_bytes", e.output_buffer_bytes},
                                    {"global_buffer_bytes", e.global_buffer_bytes},
                                    {"interconnect_bit_hops", e.interconnect_bit_hops},
                                    {"digital_ops", e.digital_ops},
                                    {"macs", e.macs}}}});
  }
  j["energy"] = {{"model", ds.images ? "analytical: events per image x energy per event + leakage power x latency"
                                      : "analytical, timing-only: every row driven every step (worst case); "
                                        "+ leakage power x latency"},
                 {"pj_per_image", c.energy_pj_per_image},
                 {"by_component_pj", per_component(c.energy_pj_per_image_by_component)},
                 {"dynamic_by_component_pj", per_component(c.dynamic_energy_pj_per_image_by_component)},
                 {"leakage_by_component_pj", per_component(c.leakage_energy_pj_per_image_by_component)},
                 {"leakage_power_mw_by_component", per_component(c.leakage_power_mw_by_component)},
                 {"fixed_blocks_power_mw", c.static_power_mw},
                 {"per_node", en_nodes}};

  // Area.
  j["area"] = {{"model", "instances x area per instance"},
               {"chip_mm2", c.chip_area_um2_total * 1e-6},
               {"by_component_mm2", per_component(c.chip_area_um2, 1e-6)},
               {"used_mm2", c.used_area_um2 * 1e-6},
               {"tiles", arch.chip.tiles},
               {"tiles_used", m.tiles_used}};

  j["efficiency"] = {{"macs_per_image", c.macs_per_image}, {"tops", c.tops},
                     {"tops_per_w", c.tops_per_watt}, {"tops_per_mm2", c.tops_per_mm2}};

  // ADC observations per IMC node.
  json adc = json::array();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!std::holds_alternative<graph::ImcLayer>(g.nodes[i].op) || i >= ds.counters.per_node.size()) continue;
    const auto& n = ds.counters.per_node[i];
    adc.push_back({{"node", g.nodes[i].name}, {"conversions", n.adc_conversions},
                   {"saturations", n.adc_saturations},
                   {"saturation_rate", n.adc_conversions ? double(n.adc_saturations) / double(n.adc_conversions) : 0.0},
                   {"psum_min", n.adc_conversions ? n.psum_min : 0},
                   {"psum_max", n.adc_conversions ? n.psum_max : 0}});
  }
  j["adc"] = adc;
  j["mapping"] = mapping_json(m);
  j["graph"] = graph_summary_json(g);
  j["config"] = config::to_json(arch);
  j["config_notes"] = arch.notes;
  if (sc) {
    auto& l = j["latency"];
    l["execution"] = timing::execution_name(sc->execution);
    l["streamed_images"] = sc->images;
    l["interval_cycles"] = sc->interval_cycles;
    l["analytical_interval_cycles"] = sc->analytical_interval_cycles;
    l["throughput_images_per_s"] = sc->interval_cycles ? arch.clock_mhz * 1e6 / double(sc->interval_cycles) : 0.0;
    l["total_cycles"] = sc->total_cycles;
    l["systemc_wall_s"] = sc->wall_seconds;
    // Busy / stalled cycles per component class, summed over nodes and streamed images.
    timing::NodeTimingResult t;
    for (const auto& n : sc->nodes) {
      t.array_read += n.array_read;
      t.array_stall_input += n.array_stall_input;
      t.array_stall_sample_hold += n.array_stall_sample_hold;
      t.adc_busy += n.adc_busy;
      t.adc_idle += n.adc_idle;
      t.bus_busy += n.bus_busy;
      t.fetch_stall_bus += n.fetch_stall_bus;
      t.write_stall_bus += n.write_stall_bus;
      t.fetch_stall_slot += n.fetch_stall_slot;
      t.digital_busy += n.digital_busy;
      t.gb_busy += n.gb_busy;
      t.fetch_stall_gb += n.fetch_stall_gb;
      t.write_stall_gb += n.write_stall_gb;
      t.link_busy += n.link_busy;
      t.fetch_stall_link += n.fetch_stall_link;
      t.write_stall_link += n.write_stall_link;
    }
    l["busy_stalled_by_component"] = {
        {"array", {{"busy", t.array_read}, {"stalled", t.array_stall_input + t.array_stall_sample_hold}}},
        {"adc", {{"busy", t.adc_busy}, {"idle", t.adc_idle}}},
        {"tile_bus", {{"busy", t.bus_busy}, {"stalled", t.fetch_stall_bus + t.write_stall_bus}}},
        {"input_register", {{"stalled", t.fetch_stall_slot}}},
        {"global_buffer", {{"busy", t.gb_busy}, {"stalled", t.fetch_stall_gb + t.write_stall_gb},
                           {"ports", sc->global_buffer_ports},
                           {"port_busy_cycles", sc->global_buffer_port_busy_cycles}}},
        {"interconnect", {{"busy", t.link_busy}, {"stalled", t.fetch_stall_link + t.write_stall_link},
                          {"kind", std::string(config::to_string(arch.interconnect.kind))},
                          {"links", sc->links.size()}}},
        {"digital", {{"busy", t.digital_busy}}}};
    json links = json::array();
    for (size_t k = 0; k < sc->links.size(); ++k)
      if (sc->links[k].busy_cycles > 0)
        links.push_back({{"id", k}, {"link", sc->links[k].link}, {"busy_cycles", sc->links[k].busy_cycles},
                         {"utilisation", sc->total_cycles ? double(sc->links[k].busy_cycles) / double(sc->total_cycles)
                                                          : 0.0}});
    l["interconnect_links"] = std::move(links);
  }
  j["run"] = {{"threads", info.threads}, {"wall_s", ds.wall_seconds},
              {"simulated_images_per_s", ds.wall_seconds > 0 ? double(ds.images) / ds.wall_seconds : 0.0}};
  return j;
}

json peak_json(const cost::PeakReport& r, const cost::PeakOptions& options) {
  auto named = [](const std::vector<cost::NamedFigure>& v) {
    json j = json::object();
    for (const auto& f : v) j[f.name] = f.value;
    return j;
  };
  return {{"step_cycles", r.step_cycles}, {"step_ns", r.step_ns},
          {"tile", {{"power_mw", r.tile_power_mw}, {"area_mm2", r.tile_area_um2 * 1e-6},
                    {"power_mw_by_component", per_component(r.tile_power_mw_by_component)},
                    {"area_mm2_by_component", per_component(r.tile_area_um2_by_component, 1e-6)},
                    {"fixed_blocks_power_mw", named(r.tile_fixed_power_mw)},
                    {"fixed_blocks_area_um2", named(r.tile_fixed_area_um2)}}},
          {"chip", {{"power_w", r.chip_power_w}, {"area_mm2", r.chip_area_mm2},
                    {"global_buffer_power_mw", r.global_buffer_power_mw},
                    {"interconnect_power_mw", r.interconnect_power_mw},
                    {"interconnect_area_mm2", r.interconnect_area_um2 * 1e-6},
                    {"fixed_blocks_power_mw", named(r.chip_fixed_power_mw)},
                    {"fixed_blocks_area_um2", named(r.chip_fixed_area_um2)}}},
          {"operation_precision", {{"weight_bits", options.weight_bits}, {"input_bits", options.input_bits}}},
          {"peak_gops", r.peak_gops}, {"gops_per_w", r.gops_per_w}, {"gops_per_mm2", r.gops_per_mm2}};
}

std::string text_summary(const json& r) {
  std::string s;
  const auto& a = r["accuracy"];
  if (!a.contains("top1"))
    s += "accuracy   not measured (timing-only run)";
  else
    s += fmt::format("accuracy   {:.2f} % top-1 ({} / {} images)", 100.0 * a["top1"].get<double>(),
                     a["correct"].get<uint64_t>(), a["images"].get<uint64_t>());
  if (a.contains("reference_top1"))
    s += fmt::format("; Python reference {:.2f} % on {} images", 100.0 * a["reference_top1"].get<double>(),
                     a["reference_images"].get<uint64_t>());
  s += "\n";
  const auto& l = r["latency"];
  s += fmt::format("latency    {} cycles = {:.3f} us per image at {} MHz ({})\n",
                   l["cycles_per_image"].get<uint64_t>(), l["ns_per_image"].get<double>() * 1e-3,
                   l["clock_mhz"].get<double>(), l["model"].get<std::string>());
  const auto& e = r["energy"];
  s += fmt::format("energy     {:.3f} nJ per image;", e["pj_per_image"].get<double>() * 1e-3);
  for (auto& [k, v] : e["by_component_pj"].items())
    if (v.get<double>() > 0) s += fmt::format(" {} {:.1f}%", k, 100.0 * v.get<double>() / e["pj_per_image"].get<double>());
  s += "\n";
  const auto& ar = r["area"];
  s += fmt::format("area       {:.3f} mm2 chip ({} tiles), {:.3f} mm2 in the {} tile(s) used\n",
                   ar["chip_mm2"].get<double>(), ar["tiles"].get<uint64_t>(), ar["used_mm2"].get<double>(),
                   ar["tiles_used"].get<uint64_t>());
  const auto& ef = r["efficiency"];
  s += fmt::format("efficiency {:.4g} TOPS, {:.4g} TOPS/W, {:.4g} TOPS/mm2\n", ef["tops"].get<double>(),
                   ef["tops_per_w"].get<double>(), ef["tops_per_mm2"].get<double>());
  return s;
}

void write_file_atomically(const std::filesystem::path& file, const std::string& content) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (file.has_parent_path()) {
    fs::create_directories(file.parent_path(), ec);
    if (ec) throw std::runtime_error(fmt::format("{}: cannot create directory: {}", file.parent_path().string(), ec.message()));
  }
  std::random_device rd;
  const fs::path tmp = file.string() + fmt::format(".tmp.{}.{:08x}", ::getpid(), rd());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot create: {}", tmp.string(), std::strerror(errno)));
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      fs::remove(tmp, ec);
      throw std::runtime_error(fmt::format("{}: write failed: {}", tmp.string(), err));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    fs::remove(tmp, ec);
    throw std::runtime_error(fmt::format("{}: flush failed: {}", tmp.string(), std::strerror(errno)));
  }
  fs::rename(tmp, file, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(fmt::format("{}: cannot rename into place: {}", file.string(), ec.message()));
  }
}

}  // namespace imcsim::report
