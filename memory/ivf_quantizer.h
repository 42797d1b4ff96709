// The coarse quantizer of an IVF index with many small lists.
//
// Small lists rank well for the memory layers' queries (ivf_bounds.h), so an
// automatic IVF index has about one list per 64 keys: 16384 lists at 1M keys.
// Plain k-means into that many centroids costs keys x lists per iteration,
// and so does assigning each new key to its nearest centroid (at 262k keys,
// 4096 lists made the whole ingest 3x slower). Two levels cost ~sqrt(lists)
// instead: sqrt(nlist) coarse clusters, each split by its own k-means into
// lists in proportion to its points; the quantizer is an IVF over the list
// centroids, so a key is compared with the lists of a few coarse clusters.
//
// Thread safety: a pure function; the returned index is the caller's.
#ifndef FOTSERVE_MEMORY_IVF_QUANTIZER_H_
#define FOTSERVE_MEMORY_IVF_QUANTIZER_H_

#include <cstdint>
#include <memory>
#include <vector>

namespace faiss {
struct Index;
}  // namespace faiss

namespace fot {

// k-means iterations of every IVF (re)training (FAISS's default is 25):
// lists only need to be compact, not converged, to rank well.
inline constexpr int kIvfKmeansIterations = 10;

// Coarse clusters whose lists a key is compared with to pick its list.
inline constexpr int kQuantizerProbes = 8;

// A trained quantizer of nlist centroids over n points x [n, d]: an
// IndexIVFFlat whose entry l is centroid l. With n < nlist the missing
// centroids repeat others, and their lists stay empty. Throws what FAISS throws.
std::unique_ptr<faiss::Index> TrainTwoLevelQuantizer(int d, int nlist, const float* x, int64_t n);

// Picks the list of each new key, as quantizer.assign would: the nearest
// centroid of a flat L2 quantizer, or of the lists of a two-level
// quantizer's nprobe nearest coarse clusters (ties go to the first centroid
// scanned, as in FAISS; distances may differ from FAISS's in the last bits).
// Debian's FAISS 1.7.3 scans a two-level quantizer's lists with scalar
// distance code, most of a 1M-key retraining; here centroids are kept in
// blocks of 16, dimension-major, so that one instruction advances 16
// distances. A key's list depends on that key alone, not on the keys
// assigned with it.
//
// Thread safety: immutable once made; Assign may run on any threads.
class ListAssigner {
 public:
  // For a flat L2 quantizer or one TrainTwoLevelQuantizer made (copies what
  // it needs: the quantizer may go); nullptr for any other quantizer, whose
  // own assign then applies.
  static std::unique_ptr<ListAssigner> For(const faiss::Index& quantizer);

  // The lists of n points x [n, d].
  void Assign(const float* x, int64_t n, int64_t* lists) const;

  // Centroids of one group (the coarse ones, or one cluster's lists).
  struct Group {
    int64_t count = 0;
    std::vector<float> blocks;  // [ceil(count / 16), d, 16]; padding is +inf
    std::vector<int64_t> ids;   // list number (or cluster number) of each
  };

 private:
  ListAssigner(int d, int64_t probes) : d_(d), probes_(probes) {}

  const int d_;
  const int64_t probes_;      // two-level: coarse clusters scanned; 0: flat
  Group coarse_;              // flat: every centroid; two-level: the coarse ones
  std::vector<Group> lists_;  // two-level: the list centroids of each coarse cluster
};

}  // namespace fot

#endif  // FOTSERVE_MEMORY_IVF_QUANTIZER_H_
