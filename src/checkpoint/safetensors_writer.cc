#include "src/checkpoint/safetensors_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace fot {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this code assumes a little-endian host");

using Json = nlohmann::json;

absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Writes the pieces to a temporary file beside `path`, then renames it over `path`.
absl::Status WritePiecesAtomically(const std::string& path,
                                   const std::vector<std::pair<const void*, size_t>>& pieces) {
  std::string temp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot create a temporary file beside it: ", std::strerror(errno)));
  }
  absl::Status status = absl::OkStatus();
  for (const auto& [data, size] : pieces) {
    status = WriteAll(fd, data, size, temp);
    if (!status.ok()) break;
  }
  if (status.ok() && ::fchmod(fd, 0644) != 0) {
    status = absl::InternalError(absl::StrCat(temp, ": chmod failed: ", std::strerror(errno)));
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = absl::InternalError(absl::StrCat(temp, ": fsync failed: ", std::strerror(errno)));
  }
  if (::close(fd) != 0 && status.ok()) {
    status = absl::InternalError(absl::StrCat(temp, ": close failed: ", std::strerror(errno)));
  }
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    status = absl::InternalError(
        absl::StrCat(path, ": rename from ", temp, " failed: ", std::strerror(errno)));
  }
  if (!status.ok()) ::unlink(temp.c_str());
  return status;
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  return WritePiecesAtomically(path, {{contents.data(), contents.size()}});
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat(path, ": invalid tensor name '", t.name, "'"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' is given twice"));
    }
    uint64_t expected = DTypeSize(t.dtype);
    for (int64_t dim : t.shape) {
      if (dim < 0) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name,
                                                       "' has a negative dimension in shape ",
                                                       ShapeToString(t.shape)));
      }
      expected *= static_cast<uint64_t>(dim);
    }
    if (expected != t.bytes.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' has ", t.bytes.size(), " bytes, but shape ",
                       ShapeToString(t.shape), " of ", DTypeName(t.dtype), " needs ", expected));
    }
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string header_text = header.dump(-1, ' ', false, Json::error_handler_t::replace);
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint8_t length[8];
  uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(n >> (8 * i));

  std::vector<std::pair<const void*, size_t>> pieces;
  pieces.emplace_back(length, sizeof(length));
  pieces.emplace_back(header_text.data(), header_text.size());
  for (const TensorToWrite& t : tensors) pieces.emplace_back(t.bytes.data(), t.bytes.size());
  return WritePiecesAtomically(path, pieces);
}

std::vector<uint8_t> EncodeFloats(const float* values, size_t count, DType dtype) {
  std::vector<uint8_t> bytes(count * DTypeSize(dtype));
  switch (dtype) {
    case DType::kF32:
      if (count > 0) std::memcpy(bytes.data(), values, count * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        const uint16_t h =
            dtype == DType::kF16 ? FloatToHalf(values[i]) : FloatToBFloat16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
      break;
  }
  return bytes;
}

void DecodeToFloats(const uint8_t* bytes, size_t count, DType dtype, float* out) {
  switch (dtype) {
    case DType::kF32:
      if (count > 0) std::memcpy(out, bytes, count * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        out[i] = dtype == DType::kF16 ? HalfToFloat(h) : BFloat16ToFloat(h);
      }
      break;
  }
}

}  // namespace fot
