// The transformer's matrix products over WeightMatrix views: float32 weights
// go to OpenBLAS as before (kernels.h's Linear); f16, bf16 and int8 weights
// are read where they live and converted on the fly. Accumulation is float32.
//
//   - A few activation rows (generation): the row kernels of
//     weight_kernels.h read every weight once, AVX-512 where the CPU has it.
//   - Many rows (windows of a prompt): blocks of weight rows are converted to
//     float32 (exact for f16 and bf16) and multiplied by OpenBLAS, so the
//     products run at float32 GEMM speed with 1/n of the work spent on
//     conversion.
// Both give the products of the float32-converted weights (int8: of the
// dequantized weights and activations), so which one runs changes the
// results only by the float32 summation order.
//
// Threading as kernels.h says (OpenMP team, single-threaded BLAS inside):
// blocks of weight rows are handed to the team's threads as they come free,
// each thread converting and multiplying its own.
#ifndef FOTSERVE_SRC_MODEL_LINEAR_H_
#define FOTSERVE_SRC_MODEL_LINEAR_H_

#include <cstdint>

#include "src/checkpoint/weight_matrix.h"

namespace fot {

// y[n, w.rows] = x[n, w.cols] · wᵀ  (the Hugging Face Linear layout).
void Linear(const float* x, int64_t n, const WeightMatrix& w, float* y);

// Same, but adds into y instead of overwriting it (residual connections).
void LinearAccumulate(const float* x, int64_t n, const WeightMatrix& w, float* y);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_LINEAR_H_
