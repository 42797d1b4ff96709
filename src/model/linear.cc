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
// Weight rows per task of the row kernels (128 rows of 3200 bf16: 800 kB).
constexpr int kRowBlock = 128;
// Weight rows converted to float32 at a time for one GEMM call: large enough
// that OpenBLAS's packing of the activations (once per call) is a few percent
// of the call, small enough to stay in the last-level cache.
constexpr int64_t kPanelRows = 512;

void LinearImpl(const float* x, int64_t n, const WeightMatrix& w, bool accumulate, float* y) {
  const int in = static_cast<int>(w.cols), out = static_cast<int>(w.rows);
  const float beta = accumulate ? 1.0f : 0.0f;
  const int threads =
      static_cast<int>(std::min<int64_t>(omp_get_max_threads(), n * in * out / kParallelWork + 1));

  if (n <= kRowKernelRows) {
    PreparedActivations prepared;
    if (w.type != WeightType::kF32) PrepareActivations(x, n, w, &prepared);
    const KernelIsa isa = BestKernelIsa(w.type);
    // Blocks of rows handed out as threads come free: a core that another
    // process slows down takes fewer of them instead of holding up the call.
    const int blocks = (out + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
    for (int b = 0; b < blocks; ++b) {
      const int first = b * kRowBlock;
      const int count = std::min(out, first + kRowBlock) - first;
      if (w.type != WeightType::kF32) {
        RowDots(w, first, count, prepared, accumulate, y + first, out, isa);
      } else if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, count, in, 1.0f,
                    w.f32() + static_cast<size_t>(first) * in, in, x, 1, beta, y + first, 1);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), count, in, 1.0f,
                    x, in, w.f32() + static_cast<size_t>(first) * in, in, beta, y + first, out);
      }
    }
    return;
  }

  if (w.type == WeightType::kF32) {  // one GEMM per thread (kernels.h)
    if (accumulate) {
      LinearAccumulate(x, n, in, w.f32(), out, y);
    } else {
      Linear(x, n, in, w.f32(), out, y);
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
  const int panels = static_cast<int>((out + kPanelRows - 1) / kPanelRows);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<float> panel(static_cast<size_t>(std::min<int64_t>(kPanelRows, out)) * in);
#pragma omp for schedule(dynamic)
    for (int b = 0; b < panels; ++b) {
      const int first = static_cast<int>(b * kPanelRows);
      const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, out - first));
      DecodeRows(w, first, rows, panel.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), rows, in, 1.0f, a,
                  in, panel.data(), in, beta, y + first, out);
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
