// Writing graphs: the in-memory Graph (graph.h) back to the protobuf message of
// sim/graph/imcsim_graph.proto, as the binary .imcg container (docs/graph_format.md, the format
// graph_loader.h reads) or the protobuf text format. load_graph(save_graph(g)) gives back g,
// field for field (tests/unit/graph_writer_test.cc). What the internal graph does not keep is
// written canonically: node output tensors are named after their node (with a suffix only if
// that name is already taken), weight_scale always has N values, psum_scale is written empty
// when every value is exactly 1.0 and bias empty when every value is +0.0; a shape_only graph
// gets no weights, scales or biases (the loader fills them in).
#pragma once

#include <filesystem>
#include <string>

#include "sim/graph/graph.h"

namespace imcsim::graph {

// The .imcg container bytes: header, protobuf payload, FNV-1a 64 checksum.
std::string serialize_graph(const Graph& graph);

// The protobuf text format (what load_graph reads from .txt / .pbtxt / .textproto files).
std::string graph_to_text(const Graph& graph);

// Writes the graph atomically (temporary file + rename): text format if the file name ends in
// .txt / .pbtxt / .textproto, else the binary container. Throws std::runtime_error.
void save_graph(const Graph& graph, const std::filesystem::path& file);

}  // namespace imcsim::graph
