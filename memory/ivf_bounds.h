// Per-list estimates of the best inner product a query can find in each list
// of an IVF index, which order a search by what a list can score instead of
// by how near its centroid is (ivf_scan.h).
//
// Why: the memory layers' queries come from another distribution than the
// keys (another norm, direction and spread), so the lists whose centroids
// are nearest a query in L2 are often not those holding its best keys.
// Measured on models/fot-dict at 262k tokens (bench/fot_dict_eval.cc): 512
// lists probed 32 at a time by L2 distance to the reduced keys' centroids
// answered 82.0% of the questions, exact search 96.5%; 4096 lists ordered by
// these estimates, 5% of the keys scanned, 96.5%, with 0.999 of the exact
// top-64's attention mass for the model's own queries.
//
// Each list keeps the per-axis min and max of its keys in the principal axes
// of the list centroids (an orthonormal A, so <q, k> = <Aq, Ak>). A list's
// estimate for q is the score of its box's centre plus kReach of the box's
// reach: sum_j (Aq)_j mid_j + kReach |(Aq)_j| rad_j. With kReach 1 this is
// an upper bound of <q, k> over the box; less ranks better (ivf_bounds.cc
// has the figures), because a strict bound over-ranks the widest lists.
//
// Everything here is a deterministic function of the index (its centroids
// and stored codes), so a loaded store rebuilds exactly the estimates it
// saved with, and no file format changes.
//
// Thread safety: plain data. Build and Extend mutate; Score only reads and
// may run concurrently with other readers.
#ifndef FOTSERVE_MEMORY_IVF_BOUNDS_H_
#define FOTSERVE_MEMORY_IVF_BOUNDS_H_

#include <cstdint>
#include <vector>

namespace faiss {
struct IndexIVF;
}  // namespace faiss

namespace fot {

class IvfBounds {
 public:
  // Bounds over every list of `index`, whose codes hold keys in their first
  // `dim` coordinates (f32 or, with fp16_codes, fp16). Throws what FAISS throws.
  static IvfBounds Build(const faiss::IndexIVF& index, bool fp16_codes, int dim);

  // Widens the boxes for n new keys [n, dim] added to lists[i].
  void Extend(const float* keys, const int64_t* lists, int64_t n);

  // estimates [nq, nlist]: row i holds every list's estimate for query i
  // (queries [nq, dim]); empty lists get -inf.
  void Score(const float* queries, int64_t nq, float* estimates) const;

  int64_t bytes() const;

 private:
  void Rotate(const float* x, int64_t n, float* out) const;  // out = x A^T
  void Widen(int64_t list, const float* rotated);

  int dim_ = 0;
  int64_t nlist_ = 0;
  std::vector<float> rotation_;  // A [dim, dim], row-major, orthonormal rows
  // Per list: [lo + hi) / 2 then (hi - lo) / 2, [nlist, 2 dim]; so a bound is
  // one product of (Aq, |Aq|) with a row. Empty lists hold NaN-free zeros and
  // are marked in `empty_`.
  std::vector<float> boxes_;
  std::vector<float> lo_, hi_;  // [nlist, dim]
  std::vector<uint8_t> empty_;  // [nlist]
  float max_abs_ = 0;           // largest |lo|, |hi| over every list
};

}  // namespace fot

#endif  // FOTSERVE_MEMORY_IVF_BOUNDS_H_
