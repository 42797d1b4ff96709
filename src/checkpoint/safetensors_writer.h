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
#include <string>
#include <vector>

#include "absl/status/status.h"
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

// Scalar conversions. F32 -> 16 bit rounds to nearest, ties to even; values
// beyond the 16-bit range become infinities; NaN stays NaN.

// `count` floats encoded as `dtype`, little-endian.
std::vector<uint8_t> EncodeFloats(const float* values, size_t count, DType dtype);
// Decodes `count` elements of `dtype` from `bytes` (any alignment) into `out`.
void DecodeToFloats(const uint8_t* bytes, size_t count, DType dtype, float* out);

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_SAFETENSORS_WRITER_H_
