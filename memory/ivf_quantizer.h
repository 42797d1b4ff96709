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

// The list of each of n points x [n, d]: the nearest centroid of a flat L2
// quantizer, or of the lists of a two-level quantizer's nprobe nearest
// coarse clusters, as quantizer.assign picks them (up to rounding; ties go
// to the first centroid scanned, as in FAISS). Debian's FAISS 1.7.3 scans a
// two-level quantizer's lists with scalar distance code, a fifth of the whole
// ingest at 1M keys; these distances are vectorised. Each point's list
// depends on that point alone, not on the others in the call. Other
// quantizers are left to quantizer.assign.
void AssignToLists(const faiss::Index& quantizer, const float* x, int64_t n, int64_t* lists);

}  // namespace fot

#endif  // FOTSERVE_MEMORY_IVF_QUANTIZER_H_
