#include "src/checkpoint/safetensors_writer.h"

#include <algorithm>
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

namespace {

// The header text (padded to a multiple of 8) of `tensors`, laid out back to
// back; `data_bytes` receives their total size.
absl::StatusOr<std::string> HeaderText(const std::string& path,
                                       const std::vector<TensorHeader>& tensors,
                                       const std::map<std::string, std::string>& metadata,
                                       uint64_t* data_bytes) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorHeader& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat(path, ": invalid tensor name '", t.name, "'"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' is given twice"));
    }
    uint64_t bytes = DTypeSize(t.dtype);
    for (int64_t dim : t.shape) {
      if (dim < 0) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name,
                                                       "' has a negative dimension in shape ",
                                                       ShapeToString(t.shape)));
      }
      bytes *= static_cast<uint64_t>(dim);
    }
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump(-1, ' ', false, Json::error_handler_t::replace);
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i)
    file[i] = static_cast<char>(static_cast<uint64_t>(text.size()) >> (8 * i));
  *data_bytes = offset;
  return file + text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFileWriter>> SafetensorsFileWriter::Create(
    const std::string& path, const std::vector<TensorHeader>& tensors,
    const std::map<std::string, std::string>& metadata, Env* env) {
  uint64_t expected = 0;
  FOT_ASSIGN_OR_RETURN(std::string header, HeaderText(path, tensors, metadata, &expected));
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env->NewWritableFile(path + ".tmp"));
  auto writer = std::unique_ptr<SafetensorsFileWriter>(
      new SafetensorsFileWriter(path, env, std::move(file), expected));
  FOT_RETURN_IF_ERROR(writer->file_->Append(header));
  return writer;
}

SafetensorsFileWriter::SafetensorsFileWriter(std::string path, Env* env,
                                             std::unique_ptr<WritableFile> file, uint64_t expected)
    : path_(std::move(path)), env_(env), file_(std::move(file)), expected_(expected) {}

SafetensorsFileWriter::~SafetensorsFileWriter() {
  if (finished_) return;
  file_.reset();
  env_->RemoveAll(path_ + ".tmp").IgnoreError();  // best effort: the caller saw the error
}

absl::Status SafetensorsFileWriter::Append(std::string_view bytes) {
  if (written_ + bytes.size() > expected_) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", written_ + bytes.size(),
                                                   " bytes of tensor data, but the header has ",
                                                   expected_));
  }
  written_ += bytes.size();
  return file_->Append(bytes);
}

absl::Status SafetensorsFileWriter::Finish() {
  if (written_ != expected_) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": ", written_, " bytes of tensor data, but the header has ", expected_));
  }
  FOT_RETURN_IF_ERROR(file_->Close());
  FOT_RETURN_IF_ERROR(env_->Rename(path_ + ".tmp", path_));
  finished_ = true;
  const size_t slash = path_.rfind('/');
  return env_->SyncDir(slash == std::string::npos ? "." : path_.substr(0, slash));
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata, Env* env) {
  std::vector<TensorHeader> headers;
  for (const TensorToWrite& t : tensors) {
    headers.push_back({t.name, t.dtype, t.shape});
    uint64_t expected = DTypeSize(t.dtype);
    bool negative = false;
    for (int64_t dim : t.shape) {
      negative |= dim < 0;
      expected *= static_cast<uint64_t>(std::max<int64_t>(dim, 0));
    }
    if (!negative && expected != t.bytes.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' has ", t.bytes.size(), " bytes, but shape ",
                       ShapeToString(t.shape), " of ", DTypeName(t.dtype), " needs ", expected));
    }
  }
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFileWriter> writer,
                       SafetensorsFileWriter::Create(path, headers, metadata, env));
  for (const TensorToWrite& t : tensors) {
    FOT_RETURN_IF_ERROR(writer->Append(
        std::string_view(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size())));
  }
  return writer->Finish();
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
