#include "src/safetensors_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "src/status_macros.h"

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

uint16_t FloatToHalf(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // infinity or NaN (NaN keeps its top payload bits, made quiet)
    if (abs == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds past the largest half
  if (abs < 0x38800000u) {                        // below 2^-14: a half subnormal (or zero)
    const uint32_t exponent = abs >> 23;
    const uint32_t shift = 126 - exponent;  // value / 2^-24 == mantissa >> shift
    if (exponent == 0 || shift > 24) return sign;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    uint32_t q = mantissa >> shift;
    const uint32_t rem = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t h = (abs >> 13) - ((127u - 15u) << 10);  // rebias the exponent
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return static_cast<uint16_t>(sign | h);
}

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t FloatToBFloat16(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float BFloat16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
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
