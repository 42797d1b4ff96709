// Writing safetensors files, and the float conversions between F32 and the
// 16-bit dtypes (used by the writer and by ModelWeights when it loads F16/BF16).
//
// All functions are free of shared state and safe to call concurrently
// (on different output paths).
#ifndef FOTSERVE_SRC_CHECKPOINT_SAFETENSORS_WRITER_H_
#define FOTSERVE_SRC_CHECKPOINT_SAFETENSORS_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "base/half_float.h"
#include "src/checkpoint/safetensors_reader.h"

namespace fot {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian; product(shape) * DTypeSize(dtype) bytes
};

// Writes `tensors`, in the given order, to a safetensors file at `path`. The
// header is padded with spaces to a multiple of 8 bytes (as Hugging Face does),
// so F32 data is 4-byte aligned in a mapping. The file is written through
// `env` atomically (WriteFileAtomically): readers never see a partial file.
// Fails on duplicate or empty names and on byte counts that do not match shapes.
[[nodiscard]] absl::Status WriteSafetensors(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
    Env* env = Env::Default());

// One tensor of a file written piece by piece: what its header says.
struct TensorHeader {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
};

// Writes one safetensors file whose header is known first and whose tensor
// bytes arrive in pieces, in header order: a file of any size written while
// holding one piece. The bytes go to `path`.tmp; Finish fsyncs it and renames
// it over `path` (as WriteFileAtomically), so readers never see a partial
// file. Not thread-safe: one writer, one thread.
class SafetensorsFileWriter {
 public:
  // Checks the header as WriteSafetensors does and writes it.
  static absl::StatusOr<std::unique_ptr<SafetensorsFileWriter>> Create(
      const std::string& path, const std::vector<TensorHeader>& tensors,
      const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
      Env* env = Env::Default());
  SafetensorsFileWriter(const SafetensorsFileWriter&) = delete;
  SafetensorsFileWriter& operator=(const SafetensorsFileWriter&) = delete;
  // Without a successful Finish, removes the temporary file.
  ~SafetensorsFileWriter();

  // The next bytes of the tensors; more than the header announces fails.
  [[nodiscard]] absl::Status Append(std::string_view bytes);
  // Fails unless exactly the announced bytes came; then fsync, rename, and
  // fsync of the folder. Call once.
  [[nodiscard]] absl::Status Finish();

 private:
  SafetensorsFileWriter(std::string path, Env* env, std::unique_ptr<WritableFile> file,
                        uint64_t expected);

  std::string path_;
  Env* env_;
  std::unique_ptr<WritableFile> file_;
  uint64_t expected_ = 0;  // bytes of tensor data the header announces
  uint64_t written_ = 0;
  bool finished_ = false;
};

// Scalar conversions. F32 -> 16 bit rounds to nearest, ties to even; values
// beyond the 16-bit range become infinities; NaN stays NaN.

// `count` floats encoded as `dtype`, little-endian.
std::vector<uint8_t> EncodeFloats(const float* values, size_t count, DType dtype);
// Decodes `count` elements of `dtype` from `bytes` (any alignment) into `out`.
void DecodeToFloats(const uint8_t* bytes, size_t count, DType dtype, float* out);

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_SAFETENSORS_WRITER_H_
