#include "memory/ivf_bounds.h"

#include <cblas.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/VectorTransform.h>
#include <faiss/invlists/InvertedLists.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "base/half_float.h"

namespace fot {
namespace {

// How far into its box a list's estimate reaches (IvfBounds::Score). Measured
// with the queries models/fot-dict issues at 262k keys (4096 lists, 5% of
// keys scanned), attention-mass recall / answers: reach 1 (the strict bound)
// 0.998 / 96.0%, 0.5 0.9991 / 96.5%, 0 (the box centre) 0.9984 / 96.5%; exact
// search 96.5%. On a random model's keys used as queries, recall@10 at 12k
// keys: 0.944, 0.974, 0.977. The strict bound over-ranks wide lists.
constexpr float kReach = 0.5f;

// The principal axes of the list centroids [n, dim], or the identity when there
// are too few lists to span the space: a bound holds for any orthonormal A,
// only its tightness depends on the choice.
std::vector<float> PrincipalAxes(const std::vector<float>& means, int64_t n, int dim) {
  std::vector<float> identity(static_cast<size_t>(dim) * dim, 0.0f);
  for (int j = 0; j < dim; ++j) identity[j * dim + j] = 1.0f;
  if (n <= dim) return identity;
  faiss::PCAMatrix pca(dim, dim);
  pca.max_points_per_d = std::numeric_limits<size_t>::max();  // every list, deterministic
  pca.train(n, means.data());
  std::vector<float> a(pca.A.begin(), pca.A.end());
  if (a.size() != identity.size()) return identity;
  for (int r = 0; r < dim; ++r) {  // orthonormal rows, or the bound would not hold
    for (int c = r; c < dim; ++c) {
      const float dot = cblas_sdot(dim, &a[r * dim], 1, &a[c * dim], 1);
      if (!(std::fabs(dot - (r == c ? 1.0f : 0.0f)) < 1e-4f)) return identity;
    }
  }
  return a;
}

// <a, b> over n floats in a fixed order, whatever the caller.
float Dot(const float* a, const float* b, int n) {
  constexpr int kLanes = 8;
  float lane[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += a[i + j] * b[i + j];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int j = 0; j < kLanes; ++j) sum += lane[j];
  return sum;
}

// The list centroids' first dim coordinates [nlist, dim]: of a flat
// quantizer, or of a two-level one (an IVF whose entry l is centroid l).
// They never change once trained, unlike the lists' members, so the axes
// derived from them are the same before a save and after the load.
std::vector<float> Centroids(const faiss::IndexIVF& index, int dim) {
  const auto nlist = static_cast<int64_t>(index.nlist);
  const auto d = static_cast<int64_t>(index.quantizer->d);
  std::vector<float> out(nlist * dim, 0.0f);
  if (const auto* flat = dynamic_cast<const faiss::IndexFlat*>(index.quantizer)) {
    for (int64_t l = 0; l < nlist; ++l) std::copy_n(flat->get_xb() + l * d, dim, &out[l * dim]);
  } else if (const auto* two = dynamic_cast<const faiss::IndexIVF*>(index.quantizer)) {
    for (size_t c = 0; c < two->nlist; ++c) {
      const size_t n = two->invlists->list_size(c);
      if (n == 0) continue;
      faiss::InvertedLists::ScopedCodes codes(two->invlists, c);
      faiss::InvertedLists::ScopedIds ids(two->invlists, c);
      const auto* x = reinterpret_cast<const float*>(codes.get());
      for (size_t i = 0; i < n; ++i) {
        if (ids[i] >= 0 && ids[i] < nlist) std::copy_n(x + i * d, dim, &out[ids[i] * dim]);
      }
    }
  }
  return out;
}

// The keys of list l as floats [size, dim]: the first dim coordinates of its codes.
void DecodeList(const faiss::IndexIVF& index, bool fp16_codes, int dim, int64_t l,
                std::vector<float>* keys) {
  const auto n = static_cast<int64_t>(index.invlists->list_size(l));
  keys->resize(n * dim);
  if (n == 0) return;
  faiss::InvertedLists::ScopedCodes codes(index.invlists, l);
  const auto stride = static_cast<int64_t>(index.d);
  for (int64_t i = 0; i < n; ++i) {
    if (fp16_codes) {
      HalfToFloatRow(reinterpret_cast<const uint16_t*>(codes.get()) + i * stride, dim,
                     &(*keys)[i * dim]);
    } else {
      std::copy_n(reinterpret_cast<const float*>(codes.get()) + i * stride, dim, &(*keys)[i * dim]);
    }
  }
}

// Widens box [lo, hi] (dim floats each) to cover `rotated`, and its (mid,
// rad) form `box` [2 dim] with it.
void WidenBox(int dim, const float* rotated, float* lo, float* hi, float* box) {
  for (int j = 0; j < dim; ++j) {
    lo[j] = std::min(lo[j], rotated[j]);
    hi[j] = std::max(hi[j], rotated[j]);
    box[j] = 0.5f * (lo[j] + hi[j]);
    // Rounded up, so that mid + rad covers hi and mid - rad covers lo.
    box[dim + j] = std::nextafter(0.5f * (hi[j] - lo[j]), std::numeric_limits<float>::infinity());
  }
}

}  // namespace

IvfBounds IvfBounds::Build(const faiss::IndexIVF& index, bool fp16_codes, int dim) {
  IvfBounds b;
  b.dim_ = dim;
  b.nlist_ = static_cast<int64_t>(index.nlist);
  b.rotation_ = PrincipalAxes(Centroids(index, dim), b.nlist_, dim);
  std::vector<float> keys, rotated;
  b.boxes_.assign(b.nlist_ * 2 * dim, 0.0f);
  b.lo_.assign(b.nlist_ * dim, std::numeric_limits<float>::infinity());
  b.hi_.assign(b.nlist_ * dim, -std::numeric_limits<float>::infinity());
  b.empty_.assign(b.nlist_, 1);
  b.list_keys_.assign(b.nlist_, 0);
  for (int64_t l = 0; l < b.nlist_; ++l) {
    DecodeList(index, fp16_codes, dim, l, &keys);
    const int64_t n = static_cast<int64_t>(keys.size()) / dim;
    rotated.resize(n * dim);
    if (n > 0) b.Rotate(keys.data(), n, rotated.data());
    for (int64_t i = 0; i < n; ++i) b.Widen(l, &rotated[i * dim]);
  }
  b.RequantizeAll();
  return b;
}

void IvfBounds::Rotate(const float* x, int64_t n, float* out) const {
  // Row by row with one fixed summation order (not sgemm, whose rounding may
  // depend on the batch): a key gets the same box coordinates whether it is
  // added in a window or rebuilt with its whole list at a load.
  for (int64_t i = 0; i < n; ++i) {
    for (int r = 0; r < dim_; ++r)
      out[i * dim_ + r] = Dot(&rotation_[r * dim_], x + i * dim_, dim_);
  }
}

void IvfBounds::Widen(int64_t list, const float* rotated) {
  float* lo = &lo_[list * dim_];
  float* hi = &hi_[list * dim_];
  WidenBox(dim_, rotated, lo, hi, &boxes_[list * 2 * dim_]);
  for (int j = 0; j < dim_; ++j)
    max_abs_ = std::max({max_abs_, std::fabs(lo[j]), std::fabs(hi[j])});
  empty_[list] = 0;
  ++list_keys_[list];
  if (coarse_ready_) Quantize(list);
}

// Headroom of the uint8 table's ranges, as a share of their width each side:
// boxes only grow, and each time one leaves the ranges the whole table is
// quantized again.
constexpr float kCoarseHeadroom = 0.25f;
// The uint8 table holds blocks of this many lists, column-major inside a
// block, so that a block's estimates are summed as one vector.
constexpr int kCoarseBlock = 16;

void IvfBounds::RequantizeAll() {
  const int cols = 2 * dim_;
  coarse_lo_.assign(cols, 0.0f);
  coarse_step_.assign(cols, 0.0f);
  for (int c = 0; c < cols; ++c) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (int64_t l = 0; l < nlist_; ++l) {
      if (empty_[l]) continue;
      lo = std::min(lo, boxes_[l * cols + c]);
      hi = std::max(hi, boxes_[l * cols + c]);
    }
    if (!(lo <= hi)) lo = hi = 0.0f;  // every list empty
    const float pad = kCoarseHeadroom * (hi - lo) + 1e-3f * (std::fabs(lo) + std::fabs(hi)) + 1e-6f;
    coarse_lo_[c] = lo - pad;
    coarse_step_[c] = (hi - lo + 2 * pad) / 255.0f;
  }
  coarse_.assign((nlist_ + kCoarseBlock - 1) / kCoarseBlock * kCoarseBlock * cols, 0);
  coarse_ready_ = true;
  for (int64_t l = 0; l < nlist_; ++l) {
    if (!empty_[l]) Quantize(l);
  }
}

void IvfBounds::Quantize(int64_t list) {
  const int cols = 2 * dim_;
  const float* box = &boxes_[list * cols];
  uint8_t* code = &coarse_[list / kCoarseBlock * cols * kCoarseBlock + list % kCoarseBlock];
  for (int c = 0; c < cols; ++c) {
    const float q = std::nearbyint((box[c] - coarse_lo_[c]) / coarse_step_[c]);
    if (!(q >= 0.0f && q <= 255.0f)) {  // out of range: new ranges for everyone
      RequantizeAll();
      return;
    }
    code[c * kCoarseBlock] = static_cast<uint8_t>(q);
  }
}

void IvfBounds::Extend(const float* keys, const int64_t* lists, int64_t n) {
  std::vector<float> rotated(n * dim_);
  Rotate(keys, n, rotated.data());
  for (int64_t i = 0; i < n; ++i) Widen(lists[i], &rotated[i * dim_]);
}

void IvfBounds::Score(const float* queries, int64_t nq, float* estimates) const {
  // (Aq, |Aq|) per query, then one product with every list's (mid, rad).
  std::vector<float> rotated(nq * dim_), both(nq * 2 * dim_);
  Rotate(queries, nq, rotated.data());
  for (int64_t i = 0; i < nq; ++i) {
    for (int j = 0; j < dim_; ++j) {
      both[i * 2 * dim_ + j] = rotated[i * dim_ + j];
      both[i * 2 * dim_ + dim_ + j] = std::fabs(rotated[i * dim_ + j]) * kReach;
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nq),
              static_cast<int>(nlist_), 2 * dim_, 1.0f, both.data(), 2 * dim_, boxes_.data(),
              2 * dim_, 0.0f, estimates, static_cast<int>(nlist_));
  for (int64_t i = 0; i < nq; ++i) {
    float* row = estimates + i * nlist_;
    for (int64_t l = 0; l < nlist_; ++l) {
      if (empty_[l] || std::isnan(row[l])) row[l] = -std::numeric_limits<float>::infinity();
    }
  }
}

void IvfBounds::Prepare(const float* query, float* prepared) const {
  Rotate(query, 1, prepared);
  for (int j = 0; j < dim_; ++j) prepared[dim_ + j] = std::fabs(prepared[j]) * kReach;
}

float IvfBounds::ScoreCoarse(const float* prepared, float* estimates) const {
  // estimate ~ sum_c p_c (lo_c + step_c code_c) = base + sum_c w_c code_c,
  // off from the float table by at most step_c / 2 per column.
  const int cols = 2 * dim_;
  std::vector<float> w(cols);
  float base = 0.0f, error = 0.0f, scale = 0.0f;
  for (int c = 0; c < cols; ++c) {
    w[c] = prepared[c] * coarse_step_[c];
    base += prepared[c] * coarse_lo_[c];
    error += 0.5f * std::fabs(w[c]);
    scale += std::fabs(prepared[c]) * (std::fabs(coarse_lo_[c]) + 255.0f * coarse_step_[c]);
  }
  // A block's lists side by side: one vector of 16 sums, no horizontal adds.
  for (int64_t b = 0; b * kCoarseBlock < nlist_; ++b) {
    const uint8_t* block = &coarse_[b * cols * kCoarseBlock];
    float sum[kCoarseBlock] = {};
    for (int c = 0; c < cols; ++c) {
      const float wc = w[c];
#pragma omp simd
      for (int j = 0; j < kCoarseBlock; ++j) {
        sum[j] += wc * static_cast<float>(block[c * kCoarseBlock + j]);
      }
    }
    const int64_t n = std::min<int64_t>(kCoarseBlock, nlist_ - b * kCoarseBlock);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t l = b * kCoarseBlock + j;
      estimates[l] = empty_[l] ? -std::numeric_limits<float>::infinity() : base + sum[j];
    }
  }
  // Both tables' sums round too: a margin far above float rounding.
  return error + 1e-4f * scale;
}

void IvfBounds::ScoreLists(const float* prepared, const int64_t* lists, int64_t n,
                           float* estimates) const {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = lists[i];
    const float e = Dot(prepared, &boxes_[l * 2 * dim_], 2 * dim_);
    estimates[i] = empty_[l] || std::isnan(e) ? -std::numeric_limits<float>::infinity() : e;
  }
}

int64_t IvfBounds::bytes() const {
  const size_t floats = rotation_.capacity() + boxes_.capacity() + lo_.capacity() + hi_.capacity() +
                        coarse_lo_.capacity() + coarse_step_.capacity();
  return static_cast<int64_t>(floats * sizeof(float) + empty_.capacity() + coarse_.capacity() +
                              list_keys_.capacity() * sizeof(int64_t));
}

}  // namespace fot
