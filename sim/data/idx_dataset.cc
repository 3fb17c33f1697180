#include "sim/data/idx_dataset.h"

#include <fmt/format.h>

#include <boost/iostreams/copy.hpp>
#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filtering_streambuf.hpp>
#include <fstream>
#include <sstream>

namespace imcsim::data {

namespace {

std::string read_maybe_gzip(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw DatasetError(fmt::format("{}: dataset file not found (install Debian's dataset-fashion-mnist "
                                   "or pass --dataset-dir)", file.string()));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DatasetError(fmt::format("{}: cannot open dataset file", file.string()));
  std::ostringstream out;
  if (file.extension() == ".gz") {
    try {
      boost::iostreams::filtering_streambuf<boost::iostreams::input> buf;
      buf.push(boost::iostreams::gzip_decompressor());
      buf.push(in);
      boost::iostreams::copy(buf, out);
    } catch (const std::exception& e) {
      throw DatasetError(fmt::format("{}: corrupt gzip data: {}", file.string(), e.what()));
    }
  } else {
    out << in.rdbuf();
  }
  return out.str();
}

uint32_t be32(const std::string& b, size_t at) {
  return (uint32_t(uint8_t(b[at])) << 24) | (uint32_t(uint8_t(b[at + 1])) << 16) |
         (uint32_t(uint8_t(b[at + 2])) << 8) | uint32_t(uint8_t(b[at + 3]));
}

}  // namespace

ImageDataset read_idx_dataset(const std::filesystem::path& images, const std::filesystem::path& labels) {
  ImageDataset ds;
  ds.images_file = images.string();
  ds.labels_file = labels.string();
  const std::string img = read_maybe_gzip(images);
  if (img.size() < 16 || be32(img, 0) != 0x00000803)
    throw DatasetError(fmt::format("{}: not an IDX unsigned-byte 3-D image file (magic 0x00000803 expected)",
                                   ds.images_file));
  ds.count = be32(img, 4), ds.rows = be32(img, 8), ds.cols = be32(img, 12);
  const uint64_t need = 16 + uint64_t{ds.count} * ds.rows * ds.cols;
  if (ds.rows == 0 || ds.cols == 0 || img.size() != need)
    throw DatasetError(fmt::format("{}: header announces {} images of {}x{} ({} bytes), file has {} bytes",
                                   ds.images_file, ds.count, ds.rows, ds.cols, need, img.size()));
  ds.pixels.assign(img.begin() + 16, img.end());
  const std::string lab = read_maybe_gzip(labels);
  if (lab.size() < 8 || be32(lab, 0) != 0x00000801)
    throw DatasetError(fmt::format("{}: not an IDX unsigned-byte 1-D label file (magic 0x00000801 expected)",
                                   ds.labels_file));
  if (be32(lab, 4) != ds.count || lab.size() != 8 + uint64_t{ds.count})
    throw DatasetError(fmt::format("{}: {} labels for {} images (file {} bytes)", ds.labels_file,
                                   be32(lab, 4), ds.count, lab.size()));
  ds.labels.assign(lab.begin() + 8, lab.end());
  return ds;
}

ImageDataset read_fashion_mnist(const std::filesystem::path& dir, bool training_set) {
  const char* prefix = training_set ? "train" : "t10k";
  return read_idx_dataset(dir / fmt::format("{}-images-idx3-ubyte.gz", prefix),
                          dir / fmt::format("{}-labels-idx1-ubyte.gz", prefix));
}

}  // namespace imcsim::data
