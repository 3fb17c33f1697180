// Reading labelled image datasets in IDX format (MNIST / Fashion-MNIST), plain or gzip
// compressed (.gz, via Boost.Iostreams). Errors name the file and what was wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace imcsim::data {

struct DatasetError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ImageDataset {
  uint32_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols, row-major per image
  std::vector<uint8_t> labels;  // count
  std::string images_file, labels_file;
};

// Reads an idx3-ubyte image file and an idx1-ubyte label file of the same length.
ImageDataset read_idx_dataset(const std::filesystem::path& images, const std::filesystem::path& labels);

// The Fashion-MNIST test set in `dir` (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)
// or training set (train-*). Default dir: Debian's dataset-fashion-mnist package.
inline constexpr const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";
ImageDataset read_fashion_mnist(const std::filesystem::path& dir, bool training_set);

}  // namespace imcsim::data
