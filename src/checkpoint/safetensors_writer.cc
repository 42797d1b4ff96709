#include "src/checkpoint/safetensors_writer.h"

#include <bit>
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

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata, Env* env) {
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

  std::vector<std::string_view> pieces;
  pieces.emplace_back(reinterpret_cast<const char*>(length), sizeof(length));
  pieces.emplace_back(header_text);
  for (const TensorToWrite& t : tensors) {
    pieces.emplace_back(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  }
  return WriteFileAtomically(*env, path, pieces);
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
