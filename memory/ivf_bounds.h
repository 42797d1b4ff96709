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
// Thread safety: plain data. Build and Extend mutate; Score, Prepare,
// ScoreCoarse and ScoreLists only read and may run concurrently with other
// readers.
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

  // For a search of a few queries (a generated token's), which reads the
  // table of every list's box once per query (8 MB per store at 1M keys of
  // head_dim 64, more than its scan), a uint8 copy of the table: 4x fewer
  // bytes, whose estimates are within a known error of Score's, so a plan
  // over them loses nothing (ivf_scan.cc PlanFewQuery).

  // One query [dim] in the form the estimates below take: prepared [2 dim].
  void Prepare(const float* query, float* prepared) const;
  // Every list's estimate from the uint8 table, into estimates [nlist]
  // (empty lists: -inf), and the most by which any differs from ScoreLists'.
  float ScoreCoarse(const float* prepared, float* estimates) const;
  // The estimates of lists[0..n) for a prepared query, into estimates [n]:
  // Score's, up to rounding (one fixed summation order per list).
  void ScoreLists(const float* prepared, const int64_t* lists, int64_t n, float* estimates) const;
  // Keys in each list [nlist] (as its inverted list holds them).
  const int64_t* list_keys() const { return list_keys_.data(); }

  int64_t bytes() const;

 private:
  void Rotate(const float* x, int64_t n, float* out) const;  // out = x A^T
  void Widen(int64_t list, const float* rotated);
  void Quantize(int64_t list);
  void RequantizeAll();

  int dim_ = 0;
  int64_t nlist_ = 0;
  std::vector<float> rotation_;  // A [dim, dim], row-major, orthonormal rows
  // Per list: [lo + hi) / 2 then (hi - lo) / 2, [nlist, 2 dim]; so a bound is
  // one product of (Aq, |Aq|) with a row. Empty lists hold NaN-free zeros and
  // are marked in `empty_`.
  std::vector<float> boxes_;
  std::vector<float> lo_, hi_;      // [nlist, dim]
  std::vector<uint8_t> empty_;      // [nlist]
  float max_abs_ = 0;               // largest |lo|, |hi| over every list
  std::vector<int64_t> list_keys_;  // [nlist]
  // The uint8 table: code = round((box value - coarse_lo_[c]) / coarse_step_[c])
  // per column c of boxes_ [nlist, 2 dim], in blocks of 16 lists with a
  // block's codes of one column side by side; the ranges have headroom, and
  // the whole table is requantized when a box leaves them.
  std::vector<uint8_t> coarse_;
  std::vector<float> coarse_lo_, coarse_step_;  // [2 dim]
  bool coarse_ready_ = false;                   // false while Build adds keys
};

}  // namespace fot

#endif  // FOTSERVE_MEMORY_IVF_BOUNDS_H_
