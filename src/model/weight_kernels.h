// Row kernels of the products with f16, bf16 and int8 weights: dot products
// of a few activation rows with many weight rows, read straight from where the
// weights live (linear.h uses them for generation-sized batches).
//
// Each kernel has a portable C++ variant and an AVX-512 one (bf16: the
// AVX512_BF16 dot product vdpbf16ps; int8: AVX512_VNNI's vpdpbusd; f16:
// AVX-512F's conversion and FMA), chosen with __builtin_cpu_supports and
// compiled with function-level target attributes, so a binary built for any
// x86-64 runs everywhere. Both variants perform the same float operations in
// the same order and give the same bits (the AVX-512 instructions flush
// subnormals, values below 1.2e-38, to zero; the portable code keeps them).
// Accumulation is float32 throughout:
//   f32 / f16: w · x exactly, x as given.
//   bf16: x is split into three bfloat16 parts whose sum is x exactly, so the
//         products are those of float32 weights; only the summation order
//         differs from a float32 product.
//   int8: x is quantized like the weights (QuantizeInt8, the weights' group),
//         so a group's dot product is an exact integer, scaled by both
//         scales; int8 weights quantize the activations too.
//
// Free functions without state: safe from any number of threads.
#ifndef FOTSERVE_SRC_MODEL_WEIGHT_KERNELS_H_
#define FOTSERVE_SRC_MODEL_WEIGHT_KERNELS_H_

#include <cstdint>
#include <vector>

#include "src/checkpoint/weight_matrix.h"

namespace fot {

enum class KernelIsa { kPortable, kAvx512 };

// The variant this CPU runs for `type` (kAvx512 where it has the
// instructions, and always kPortable for f32, which goes to BLAS).
KernelIsa BestKernelIsa(WeightType type);

// Activation rows prepared once per product for one weight matrix's kernels.
// Rows are zero padded to `stride` (cols rounded up to 32) so that the
// kernels read whole vectors.
struct PreparedActivations {
  WeightType type = WeightType::kF32;
  int64_t n = 0;                   // rows
  int64_t cols = 0;                // values per row
  int64_t stride = 0;              // padded row length
  int group = 0;                   // int8: values per scale
  std::vector<float> f32;          // f16: [n, stride], x itself
  std::vector<uint16_t> bf16;      // bf16: [3, n, stride], x = hi + mid + lo exactly
  std::vector<int8_t> q;           // int8: [n, stride], x quantized
  std::vector<float> scales;       // int8: [n, groups], the quantization scales
  std::vector<int32_t> lane_sums;  // int8: [n, groups, 8], -128 · Σ q per 4-byte lane
};

// Prepares x[n, w.cols] for products with `w` (f16, bf16 or int8).
void PrepareActivations(const float* x, int64_t n, const WeightMatrix& w, PreparedActivations* out);

// For weight rows r in [first, first + count) and activation rows t < x.n:
//   y[t * ldy + (r - first)] = (accumulate ? that : 0) + Σ_c w[r, c] · x[t, c]
// where x is as prepared (int8: quantized, scaled back).
void RowDots(const WeightMatrix& w, int64_t first, int64_t count, const PreparedActivations& x,
             bool accumulate, float* y, int64_t ldy, KernelIsa isa);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_WEIGHT_KERNELS_H_
