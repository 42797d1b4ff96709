// A weight matrix as the forward pass reads it: a view of row-major
// [rows, cols] values in one storage type, wherever they live (the
// checkpoint's read-only mapping, or a buffer that ModelWeights owns).
// Hugging Face's Linear layout: y = W x reads one row of W per output.
//
// A view owns nothing; it is valid while its ModelWeights lives. Plain data:
// safe to copy and to read from any number of threads.
#ifndef FOTSERVE_SRC_CHECKPOINT_WEIGHT_MATRIX_H_
#define FOTSERVE_SRC_CHECKPOINT_WEIGHT_MATRIX_H_

#include <cstddef>
#include <cstdint>

namespace fot {

enum class WeightType {
  kF32,   // float
  kF16,   // IEEE half, as in the file
  kBF16,  // bfloat16, as in the file
  kInt8,  // symmetric int8 in groups of `group` values along a row, one float scale each
};

const char* WeightTypeName(WeightType type);  // "f32", "f16", "bf16", "int8"
size_t WeightTypeSize(WeightType type);       // bytes per element: 4, 2, 2, 1

struct WeightMatrix {
  WeightType type = WeightType::kF32;
  // rows * cols elements, row-major; aligned to the element size.
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  // kInt8 only: element (r, c) is data[r, c] * scales[r * groups_per_row() + c / group].
  // A row's last group is shorter when group does not divide cols.
  const float* scales = nullptr;
  int group = 0;

  int64_t groups_per_row() const { return group > 0 ? (cols + group - 1) / group : 0; }
  // The data as floats; nullptr unless type is kF32.
  const float* f32() const {
    return type == WeightType::kF32 ? static_cast<const float*>(data) : nullptr;
  }
  // Bytes of data and scales.
  size_t bytes() const;
};

// Rows [first, first + count) of `w` as floats, out[count, cols]. Exact for
// f32, f16 and bf16; int8 gives q * scale, rounded once.
void DecodeRows(const WeightMatrix& w, int64_t first, int64_t count, float* out);

// Symmetric int8 quantization of x[count] in groups of `group` values (the
// last group may be shorter): scale = max |x| / 127 over the group (0 for a
// group of zeros), q = x · (127 / max |x|) rounded to the nearest integer,
// ties to even. q[count], scales[ceil(count / group)]. The one quantizer of
// weights (at load) and activations (in the int8 products).
void QuantizeInt8(const float* x, int64_t count, int group, int8_t* q, float* scales);

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_WEIGHT_MATRIX_H_
