// The binary .imcg container around a serialised imcsim.pb.Graph (docs/graph_format.md):
// "IMCGRAPH" | u32 version (1) | u32 reserved (0) | u64 payload bytes | payload | u64 FNV-1a-64 of
// the payload; integers little-endian. A bare protobuf would silently lose trailing fields when
// truncated: the length and checksum make truncation, padding and corruption detectable.
// Mirrored in scripts/imcsim_py/imcg_file.py.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace imcsim::graph {

inline constexpr uint32_t kContainerVersion = 1;
inline constexpr size_t kContainerHeaderBytes = 8 + 4 + 4 + 8;
inline constexpr size_t kContainerTrailerBytes = 8;

uint64_t fnv1a64(std::string_view data);

// Header + payload + checksum.
std::string wrap_container(std::string_view payload);

// The payload of a container; throws GraphError naming `name` and what is wrong (missing header,
// version, truncated / padded, checksum, payload over protobuf's 2 GiB limit).
std::string_view unwrap_container(std::string_view bytes, const std::string& name);

}  // namespace imcsim::graph
