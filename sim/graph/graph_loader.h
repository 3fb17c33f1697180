// Loading and validating .imcg graphs. Every structural and numeric invariant that the
// engine relies on is checked here; a problem is reported as GraphError naming the file,
// the node (name and index) and the field, and what was expected.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

#include "sim/graph/graph.h"

namespace imcsim::graph {

struct GraphError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads a graph: the binary container (.imcg, see docs/graph_format.md) or, for files ending in
// .txt / .pbtxt / .textproto, the protobuf text format. Validates and converts it.
Graph load_graph(const std::filesystem::path& file);

// Parses and validates an in-memory protobuf text-format graph (tests); `source_name` is used
// in error messages in place of a file name.
Graph parse_graph_text(const std::string& text, const std::string& source_name);

// Computed output positions of a conv / pooling window: (in + 2 pad - k) / stride + 1, or 0 if
// the window does not fit.
uint32_t window_output_size(uint32_t in, uint32_t kernel, uint32_t stride, uint32_t pad);

}  // namespace imcsim::graph
