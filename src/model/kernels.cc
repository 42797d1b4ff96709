#include "src/model/kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace fot {

namespace {

// Below this many multiply-adds a product runs on the calling thread: waking
// the team costs more than it saves.
constexpr int64_t kParallelWork = 1 << 18;

// y = x · wᵀ + beta · y. The output columns (rows of w) are split across the
// OpenMP team, each thread calling single-threaded OpenBLAS on its slice, so
// every core streams a disjoint part of the weights.
void LinearImpl(const float* x, int64_t n, int in, const float* w, int out, float beta, float* y) {
  const int threads =
      static_cast<int>(std::min<int64_t>(omp_get_max_threads(), n * in * out / kParallelWork + 1));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int t = 0; t < threads; ++t) {
    // Slices aligned to 16 columns keep the BLAS kernels on full vectors.
    const int per_thread = ((out + threads - 1) / threads + 15) / 16 * 16;
    const int first = std::min(out, t * per_thread);
    const int count = std::min(out, first + per_thread) - first;
    if (count <= 0) continue;
    const float* w_slice = w + static_cast<size_t>(first) * in;
    if (n == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, count, in, 1.0f, w_slice, in, x, 1, beta, y + first,
                  1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), count, in, 1.0f, x,
                  in, w_slice, in, beta, y + first, out);
    }
  }
}

}  // namespace

void Linear(const float* x, int64_t n, int in, const float* w, int out, float* y) {
  LinearImpl(x, n, in, w, out, 0.0f, y);
}

void LinearAccumulate(const float* x, int64_t n, int in, const float* w, int out, float* y) {
  LinearImpl(x, n, in, w, out, 1.0f, y);
}

void UseSingleThreadedBlas() { openblas_set_num_threads(1); }

void RmsNorm(const float* x, const float* weight, int64_t n, int dim, float eps, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    float sum_sq = 0.0f;
#pragma omp simd reduction(+ : sum_sq)
    for (int i = 0; i < dim; ++i) sum_sq += xr[i] * xr[i];
    const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(dim) + eps);
    for (int i = 0; i < dim; ++i) yr[i] = xr[i] * inv_rms * weight[i];
  }
}

namespace {

// exp(v) = 2^k · exp(r) with k = round(v / ln 2), |r| ≤ ln2 / 2; exp(r) by a
// degree-6 Taylor polynomial, 2^k built in the exponent bits. Branch-free so
// loops calling it vectorise (with -fno-trapping-math). Below about -87.3 the
// exponent field clamps to zero and the result is exactly 0, which is what
// softmax needs for masked (-inf) scores; NaN gives NaN.
inline float FastExp(float v) {
  v = v < -100.0f ? -100.0f : v;
  v = v > 88.0f ? 88.0f : v;
  const float kf = v * 1.44269504088896341f;
  // NaN (a score from a NaN key or value) passes both clamps, and converting
  // it to int is undefined: k = 0 instead, so that exp(NaN) is NaN, as std::exp.
  const float rounded = kf + (kf >= 0.0f ? 0.5f : -0.5f);
  const int32_t k = static_cast<int32_t>(rounded == rounded ? rounded : 0.0f);
  const float kk = static_cast<float>(k);
  const float r = (v - kk * 0.693359375f) + kk * 2.12194440e-4f;  // ln 2 in two parts
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t exponent = std::max(k + 127, 0);
  const int32_t bits = exponent << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace

void SwiGlu(float* gate, const float* up, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + FastExp(-g)) * up[i];
  }
}

void ExpInPlace(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] = FastExp(x[i]);
}

float ExpShiftedSum(float* x, int64_t count, float shift) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < count; ++i) {
    x[i] = FastExp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

float MaxOf(const float* x, int64_t count) {
  float best = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : best)
  for (int64_t i = 0; i < count; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

void FoldSoftmaxRow(float* scores, int count, int head_dim, float* row_max, float* row_sum,
                    float* output) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const float new_max = std::max(*row_max, MaxOf(scores, count));
  if (new_max == kNegInf) {  // nothing visible yet
    std::fill_n(scores, count, 0.0f);
    return;
  }
  const float block_sum = ExpShiftedSum(scores, count, new_max);
  const float rescale = *row_max == kNegInf ? 0.0f : std::exp(*row_max - new_max);
  *row_sum = *row_sum * rescale + block_sum;
  *row_max = new_max;
  if (rescale != 1.0f) {
    for (int d = 0; d < head_dim; ++d) output[d] *= rescale;
  }
}

int ArgMax(const float* x, int count) {
  int best = 0;
  for (int i = 1; i < count; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

}  // namespace fot
