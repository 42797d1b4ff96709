// List-major search of an IVF index for a batch of queries: the queries are
// grouped by the inverted lists they probe, and each probed list is decoded
// once and scored against all of its queries with one matrix product.
//
// Why not IndexIVF::search: FAISS 1.7.3 scans query by query, each probed list
// once per query, with a per-vector distance loop (and, in this generic
// build, fp16 codes decoded in software). A window of 512 queries probing 32
// lists each then costs ~20x a matrix product over the same keys (measured in
// bench/memory_bench.cc). Grouping by list turns the scan into BLAS sgemm and
// decodes each list once per batch instead of once per query.
//
// Which lists a query probes: those with the highest estimates of its best
// inner product (memory/ivf_bounds.h), in that order, until they hold
// max_keys keys or max_lists lists. (Not the lists of the nearest centroids:
// for the memory layers' queries that misses most of what exact search finds.)
// A search of at most kIvfDecodeQueries queries plans the same way, first
// from a uint8 copy of the estimates (memory/ivf_bounds.h ScoreCoarse), then
// from the float ones of the lists that can make its plan.
//
// Scores are inner products of the queries with the first `dim` coordinates of
// the stored codes: exact for the stored keys, so no re-scoring is needed.
// Codes must be plain floats: IndexIVFFlat (f32) or IndexIVFScalarQuantizer
// with QT_fp16 and no residual encoding. With max_lists >= nlist and max_keys
// >= the index's size every list is probed and the result is exact.
//
// Thread safety: reads the index only; the caller keeps it unchanged for the
// duration (kv_store.cc holds its read lock). Parallel over lists with
// OpenMP; each list's product is one single-threaded-sized sgemm call.
#ifndef FOTSERVE_MEMORY_IVF_SCAN_H_
#define FOTSERVE_MEMORY_IVF_SCAN_H_

#include <cstdint>

namespace faiss {
struct IndexIVF;
struct IDSelector;
}  // namespace faiss

namespace fot {

class IvfBounds;

struct IvfScanRequest {
  const float* queries = nullptr;  // [nq, dim]
  int64_t nq = 0;
  int dim = 0;                        // coordinates scored (<= index.d)
  const IvfBounds* bounds = nullptr;  // of this index (required)
  int64_t max_lists = 1;              // lists probed per query at most (capped at nlist)
  int64_t max_keys = 1;               // keys per query at most: lists stop once they hold this many
  int k = 1;
  const faiss::IDSelector* selector = nullptr;  // null: every id
  int64_t* keys_scanned = nullptr;              // if set: keys in all queries' probed lists
  int64_t* lists_bounded = nullptr;             // if set: list and group estimates computed
};

// Writes the k best (largest inner product) ids and scores per query, best
// first, into ids/scores [nq, k]; rows are padded with -1 / -inf. Throws what
// FAISS throws (callers convert to absl::Status).
void IvfScan(const faiss::IndexIVF& index, bool fp16_codes, const IvfScanRequest& request,
             float* scores, int64_t* ids);

}  // namespace fot

#endif  // FOTSERVE_MEMORY_IVF_SCAN_H_
