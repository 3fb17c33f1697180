#include "sim/timing/carry_data.h"

#include <fmt/format.h>

namespace imcsim::timing {

CarriedDataCheck check_carried_data(const GraphDataPath& data, const engine::FunctionalEngine& engine,
                                    const std::string& systemc_error) {
  CarriedDataCheck c;
  c.error = systemc_error;
  const auto& graph = engine.graph();
  c.images = data.image_count();
  c.nodes = graph.nodes.size();
  for (size_t img = 0; img < data.image_count(); ++img) {
    const ImageTensors& t = data.image(img);
    const engine::InferenceResult ref = engine.infer(t.input, nullptr, nullptr, nullptr, img);
    for (size_t n = 0; n < graph.nodes.size(); ++n) {
      const auto& node = graph.nodes[n];
      const uint64_t P = data.positions(n);
      auto record = [&](size_t e, double got, double want) {
        ++c.mismatches;
        if (c.first_mismatches.size() >= 10) return;
        const auto* imc = std::get_if<graph::ImcLayer>(&node.op);
        const bool tokens = imc && imc->tokens;
        const uint64_t N = imc ? imc->cols_n() : 1;
        CarriedMismatch m{img, node.name, !P ? e : tokens ? e / N : e % P, !P ? 0 : tokens ? e % N : e / P, got, want};
        c.first_mismatches.push_back(std::move(m));
      };
      if (!node.output_quant.is_float()) {
        const auto& got = t.codes[n];
        const auto& want = ref.node_codes[n];
        for (size_t e = 0; e < got.size(); ++e) {
          ++c.values_checked;
          if (e >= want.size() || got[e] != want[e]) record(e, got[e], e < want.size() ? want[e] : 0);
        }
      } else if (n + 1 == graph.nodes.size()) {  // the engine keeps float values of the last node only
        const auto& got = t.values[n];
        for (size_t e = 0; e < got.size(); ++e) {
          ++c.values_checked;
          if (e >= ref.output_values.size() || got[e] != ref.output_values[e])
            record(e, got[e], e < ref.output_values.size() ? ref.output_values[e] : 0);
        }
      }
    }
  }
  return c;
}

nlohmann::json CarriedDataCheck::to_json() const {
  nlohmann::json first = nlohmann::json::array();
  for (const auto& m : first_mismatches)
    first.push_back({{"image", m.image}, {"node", m.node}, {"position", m.position}, {"column", m.column},
                     {"systemc", m.systemc}, {"engine", m.engine}});
  return {{"images", images},          {"nodes", nodes},
          {"values_checked", values_checked}, {"mismatches", mismatches},
          {"first_mismatches", first}, {"error", error.empty() ? nlohmann::json() : nlohmann::json(error)},
          {"ok", ok()}};
}

std::string CarriedDataCheck::summary() const {
  if (!error.empty()) return "carry-data: the SystemC run moved a value inconsistently: " + error;
  if (mismatches == 0)
    return fmt::format("carry-data: {} values of {} image(s) over {} nodes equal the functional engine's",
                       values_checked, images, nodes);
  const auto& m = first_mismatches.front();
  return fmt::format("carry-data: {} of {} values differ from the functional engine; first: image {}, node '{}', "
                     "position {}, column {}: systemc {} vs engine {}",
                     mismatches, values_checked, m.image, m.node, m.position, m.column, m.systemc, m.engine);
}

}  // namespace imcsim::timing
