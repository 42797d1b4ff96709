#include "src/model/linear.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "src/model/kernels.h"
#include "src/model/weight_kernels.h"

namespace fot {
namespace {

// Below this many multiply-adds a product runs on the calling thread.
constexpr int64_t kParallelWork = 1 << 18;
// Up to this many activation rows the row kernels run: each weight is read
// once from memory and reused from cache for every row.
constexpr int64_t kRowKernelRows = 8;
// Weight rows converted to float32 at a time for one GEMM call: large enough
// that OpenBLAS's packing of the activations (once per call) is a few percent
// of the call, small enough to stay in the last-level cache.
constexpr int64_t kPanelRows = 512;

void LinearImpl(const float* x, int64_t n, const WeightMatrix& w, bool accumulate, float* y) {
  const int in = static_cast<int>(w.cols), out = static_cast<int>(w.rows);
  if (w.type == WeightType::kF32) {
    if (accumulate) {
      LinearAccumulate(x, n, in, w.f32(), out, y);
    } else {
      Linear(x, n, in, w.f32(), out, y);
    }
    return;
  }
  const int threads =
      static_cast<int>(std::min<int64_t>(omp_get_max_threads(), n * in * out / kParallelWork + 1));
  // Thread t's output columns: slices aligned to 16.
  const int per_thread = ((out + threads - 1) / threads + 15) / 16 * 16;

  if (n <= kRowKernelRows) {
    PreparedActivations prepared;
    PrepareActivations(x, n, w, &prepared);
    const KernelIsa isa = BestKernelIsa(w.type);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int t = 0; t < threads; ++t) {
      const int first = std::min(out, t * per_thread);
      const int count = std::min(out, first + per_thread) - first;
      if (count > 0) RowDots(w, first, count, prepared, accumulate, y + first, out, isa);
    }
    return;
  }

  // int8: the activations quantized as the row kernels quantize them, then
  // scaled back to floats for the GEMM.
  const float* a = x;
  std::vector<float> dequantized;
  if (w.type == WeightType::kInt8) {
    PreparedActivations prepared;
    PrepareActivations(x, n, w, &prepared);
    dequantized.resize(static_cast<size_t>(n) * in);
    const int64_t groups = w.groups_per_row();
    for (int64_t t = 0; t < n; ++t) {
      for (int c = 0; c < in; ++c) {
        dequantized[t * in + c] = static_cast<float>(prepared.q[t * prepared.stride + c]) *
                                  prepared.scales[t * groups + c / w.group];
      }
    }
    a = dequantized.data();
  }
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int t = 0; t < threads; ++t) {
    const int first = std::min(out, t * per_thread);
    const int end = std::min(out, first + per_thread);
    if (end <= first) continue;
    std::vector<float> panel(static_cast<size_t>(std::min<int64_t>(kPanelRows, end - first)) * in);
    for (int p = first; p < end; p += kPanelRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, end - p));
      DecodeRows(w, p, rows, panel.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), rows, in, 1.0f, a,
                  in, panel.data(), in, accumulate ? 1.0f : 0.0f, y + p, out);
    }
  }
}

}  // namespace

void Linear(const float* x, int64_t n, const WeightMatrix& w, float* y) {
  LinearImpl(x, n, w, false, y);
}

void LinearAccumulate(const float* x, int64_t n, const WeightMatrix& w, float* y) {
  LinearImpl(x, n, w, true, y);
}

}  // namespace fot
