#include "sim/graph/container.h"

#include <climits>
#include <cstring>

#include <fmt/format.h>

#include "sim/graph/graph_loader.h"

namespace imcsim::graph {
namespace {

constexpr char kMagic[8] = {'I', 'M', 'C', 'G', 'R', 'A', 'P', 'H'};

void put_le(std::string& out, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t read_le(const char* p, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

}  // namespace

uint64_t fnv1a64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string wrap_container(std::string_view payload) {
  std::string out(kMagic, sizeof kMagic);
  put_le(out, kContainerVersion, 4);
  put_le(out, 0, 4);
  put_le(out, payload.size(), 8);
  out += payload;
  put_le(out, fnv1a64(payload), 8);
  return out;
}

std::string_view unwrap_container(std::string_view bytes, const std::string& name) {
  if (bytes.size() < kContainerHeaderBytes || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw GraphError(fmt::format("{}: not an imcsim graph (missing IMCGRAPH header; text graphs must "
                                 "end in .txt / .pbtxt / .textproto)", name));
  const auto version = static_cast<uint32_t>(read_le(bytes.data() + 8, 4));
  if (version != kContainerVersion)
    throw GraphError(fmt::format("{}: unsupported container version {} (expected {})", name, version,
                                 kContainerVersion));
  const uint64_t payload = read_le(bytes.data() + 16, 8);
  // Compare without forming header + payload + trailer, which a hostile length could wrap.
  if (bytes.size() < kContainerHeaderBytes + kContainerTrailerBytes ||
      payload != bytes.size() - kContainerHeaderBytes - kContainerTrailerBytes)
    throw GraphError(fmt::format("{}: truncated or padded file: header announces {} payload bytes, "
                                 "file has {} bytes (a {}-byte header and an {}-byte checksum around it)", name,
                                 payload, bytes.size(), kContainerHeaderBytes, kContainerTrailerBytes));
  if (payload > static_cast<uint64_t>(INT32_MAX))
    throw GraphError(fmt::format("{}: payload of {} bytes exceeds the 2 GiB protobuf limit", name, payload));
  const std::string_view body = bytes.substr(kContainerHeaderBytes, payload);
  const uint64_t stored = read_le(body.data() + payload, 8);
  const uint64_t actual = fnv1a64(body);
  if (stored != actual)
    throw GraphError(fmt::format("{}: corrupt file: payload checksum {:016x} does not match stored "
                                 "{:016x}", name, actual, stored));
  return body;
}

}  // namespace imcsim::graph
