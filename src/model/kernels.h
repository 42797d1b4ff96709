// Small numeric kernels of the transformer: the building blocks that the
// forward pass in transformer.cc reads as equations. Matrix products go to
// OpenBLAS; everything else is a plain loop the compiler vectorises.
#ifndef FOTSERVE_SRC_MODEL_KERNELS_H_
#define FOTSERVE_SRC_MODEL_KERNELS_H_

#include <cstdint>

namespace fot {

// Threading: the engine parallelises with OpenMP in its own loops and runs
// every BLAS call single-threaded inside them (see UseSingleThreadedBlas), so
// the non-BLAS work (softmax, gathers) is spread over the cores too, and
// concurrent sessions do not fight over one BLAS thread pool.

// y[n, out] = x[n, in] · w[out, in]ᵀ  (the Hugging Face Linear layout).
void Linear(const float* x, int64_t n, int in, const float* w, int out, float* y);

// Same, but adds into y instead of overwriting it (residual connections).
void LinearAccumulate(const float* x, int64_t n, int in, const float* w, int out, float* y);

// Makes OpenBLAS run each call on the calling thread. Process-wide: OpenBLAS
// has one setting. The engine calls it when it is created.
void UseSingleThreadedBlas();

// out[n, dim] = x / sqrt(mean(x²) + eps) * weight, row by row.
void RmsNorm(const float* x, const float* weight, int64_t n, int dim, float eps, float* out);

// gate[i] = silu(gate[i]) * up[i]: the SwiGLU non-linearity.
void SwiGlu(float* gate, const float* up, int64_t count);

// x[i] = exp(x[i]), vectorised; relative error below 2e-7 on the range that
// softmax feeds it (x ≤ 0), exp(-inf) = 0.
void ExpInPlace(float* x, int64_t count);

// x[i] = exp(x[i] - shift); returns the sum of the new x. One pass, for
// softmax rows.
float ExpShiftedSum(float* x, int64_t count, float shift);

// Folds `count` scores of one row (scaled; masked entries -inf) into the
// row's running (online) softmax, leaving e^(s − m') in scores for the caller
// to multiply with the values:
//   m' = max(m, max s);  l = l·e^(m−m') + Σ e^(s−m');  O = O·e^(m−m')
// A row with nothing visible yet gets zero weights.
void FoldSoftmaxRow(float* scores, int count, int head_dim, float* row_max, float* row_sum,
                    float* output);

// The largest element (-inf for count 0).
float MaxOf(const float* x, int64_t count);

// Index of the largest element; ties go to the lowest index.
int ArgMax(const float* x, int count);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_KERNELS_H_
