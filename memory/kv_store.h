// The FAISS-backed memory of ONE (memory layer, kv head): keys searchable by
// inner product, values beside them under the same id, provenance per entry.
//
// Ids are dense and stable: entry i is the i-th key ever appended. Nothing is
// renumbered; deleted entries keep their id (and their values stay readable),
// they are only hidden from Search via a tombstone bitmap.
//
// How each kind searches (MemoryOptions explains when to use which):
//   flat   keys in FAISS IndexFlatIP (f32) or IndexScalarQuantizer fp16 with
//          inner product. Exact: scores are inner products with the keys as
//          stored. Unfiltered f32 searches are one IndexFlatIP search; the rest
//          decode keys in blocks and run FAISS's BLAS-backed knn_inner_product
//          per block for all queries, because this generic FAISS 1.7.3 build
//          scans fp16 codes ~20x slower and its IDSelector path for flat
//          indexes skips BLAS (kv_search.cc has the figures).
//   hnsw / ivf  maximum inner product is reduced to nearest neighbour in L2:
//          key x becomes (x, e1, e2) with e1^2 + e2^2 = B^2 - |x|^2 for a norm
//          bound B, the query q becomes (q, 0, 0), so |q' - x'|^2 = |q|^2 + B^2 -
//          2 <q, x> ranks keys exactly by inner product. Measured on FAISS 1.7.3,
//          inner-product HNSW builds at ~200 keys/s on key-like data (all inserts
//          converge on the few largest keys) and inner-product IVF clusters badly;
//          the reduction builds at thousands/s with recall >= 0.95. Two extra
//          coordinates instead of one keep the reduction exact under fp16 codes
//          (e1 is rounded down to a code, e2 carries the small remainder). B is
//          1.25 x the largest key norm when the index is built (kHnswBuildSize
//          keys for HNSW, ivf_train_size keys for IVF; before that, keys are
//          searched exactly). Later keys above B would be misranked by the
//          reduction, so they are kept out of the approximate search and scanned
//          exactly on every query ("overflow" entries). Scores are inner
//          products with the keys as stored, like flat: IVF with float or fp16
//          codes is searched list-major (ivf_scan.h), one matrix product per
//          probed list, which scores the stored keys directly; HNSW results are
//          re-scored from the stored keys. Both are merged with the overflow.
//          IVF probes the lists with the highest estimates of the query's
//          best inner product (ivf_bounds.h), until they hold ivf_max_scan of
//          the keys, not the lists nearest in the reduced space: the memory
//          layers' queries are not distributed like the keys. With automatic
//          lists (the default) a list holds ~64 keys, and the index is
//          retrained on all its keys whenever twice its lists fit (the memory
//          doubled), with a new bound B, so overflow entries only live until
//          the next retraining.
//          IVF-PQ keys are PQ codes, which blur the extra coordinates: it
//          fetches 8k candidates and re-ranks them by the inner product with
//          the reconstructed keys (its scores use the reconstruction too).
// For hnsw/ivf, tombstones and the document filter are a FAISS IDSelector
// passed per call in SearchParameters (FAISS 1.7.3 honours it for every index
// used here), with nprobe passed per call in SearchParametersIVF. FAISS 1.7.3 ignores
// SearchParametersHNSW::efSearch (measured: the index's own efSearch is used),
// so ef_search is set on the index once, when it is built or loaded. When the
// selection (live entries passing the filter) is small — at most 1/8 of all
// ids, or at most 2k — approximate kinds search it exactly instead (a filtered
// graph/list walk finds too few of a small subset); so k >= live size returns
// every live entry, exactly like flat.
//
// Thread safety: every method may be called from any thread. Readers (Search,
// Read*, GatherValues, provenance, is_deleted, Documents, Save, bytes, sizes)
// run concurrently with each other and with writers (Append, DeleteDocument),
// which are serialised among themselves. An entry becomes visible to readers
// only once it is complete (absl::Mutex reader/writer lock). Readers wait only
// while a writer changes shared state: adding keys to the FAISS index (fast
// for flat and IVF, ~0.3-1 ms per key for HNSW) and copying values. IVF
// (re)training and the first HNSW build run on a private index while readers
// keep searching the previous one. FAISS parallelises each search with
// OpenMP internally.
#ifndef FOTSERVE_MEMORY_KV_STORE_H_
#define FOTSERVE_MEMORY_KV_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"
#include "memory/memory_options.h"

namespace fot {
namespace kv_internal {
struct StoreState;  // kv_store.cc
}  // namespace kv_internal

struct Provenance {
  int64_t document = 0;  // document id in the session
  int64_t position = 0;  // token position in the document
  int32_t token = 0;     // token id

  bool operator==(const Provenance&) const = default;
};

// Which entries a search considers, and whether it may approximate.
struct SearchFilter {
  std::vector<int64_t> documents;  // only entries of these documents; empty: all
  // Score every selected key, whatever the index: exact search over the same
  // memory, the reference an approximate index is measured against.
  bool exact = false;
  // IVF: when in (0, 1], the share of keys a query may scan, instead of the
  // store's ivf_max_scan (to measure one memory at several budgets).
  double max_scan = 0;
};

// What searches have cost so far (KvStore::search_counters), for measuring
// an index on real traffic.
struct SearchCounters {
  int64_t queries = 0;        // query rows searched (that found at least one entry)
  int64_t keys_scored = 0;    // inner products with stored keys; exact and IVF
                              // searches only (HNSW and IVF-PQ are not counted)
  int64_t lists_bounded = 0;  // IVF list bounds evaluated, ~2 keys' work each
  int64_t search_nanos = 0;   // time inside Search (steady clock), for the same searches
};

class KvStore {
 public:
  // InvalidArgument for bad options (ValidateMemoryOptions).
  static absl::StatusOr<std::unique_ptr<KvStore>> Create(int head_dim,
                                                         const MemoryOptions& options);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  // Appends n entries with ids size() .. size() + n - 1. Row i of keys starts
  // at keys + i * key_stride (floats), likewise values; head_dim floats each.
  // A store is a function of the entries appended, not of how they were
  // batched: keys are rounded to their storage first, and the index is
  // (re)built at the same sizes whatever the batches (a restart replays the
  // entries in other batches and gets the same store).
  // Keys and values must be finite and, when stored as float16, within ±65504
  // (InvalidArgument naming the row otherwise; nothing is appended then).
  [[nodiscard]] absl::Status Append(const float* keys, int64_t key_stride, const float* values,
                                    int64_t value_stride, const Provenance* provenance, int64_t n);

  int64_t size() const;       // ids assigned, deleted included
  int64_t live_size() const;  // entries not deleted

  // For each of nq queries (row i at queries + i * query_stride), the k live
  // entries (passing `filter`, which may be null) with the largest inner
  // product <query, key>: ids [nq, k] and scores [nq, k], best first. Rows are
  // padded with id -1 and score -inf when fewer entries qualify. One FAISS
  // search for all queries. InvalidArgument for k < 1 or bad arguments.
  [[nodiscard]] absl::Status Search(const float* queries, int64_t nq, int64_t query_stride, int k,
                                    const SearchFilter* filter, int64_t* ids, float* scores) const;

  // Keys (as stored: fp16-rounded, or the PQ reconstruction) and values of ids
  // [first, first + count), decoded to float, into out [count, head_dim].
  // Deleted entries are still readable. OutOfRange if the range exceeds size().
  [[nodiscard]] absl::Status ReadKeys(int64_t first, int64_t count, float* out) const;
  [[nodiscard]] absl::Status ReadValues(int64_t first, int64_t count, float* out) const;
  // Values of arbitrary ids into out [n, head_dim]; id -1 gives zeros (so Search
  // results can be passed as they are).
  [[nodiscard]] absl::Status GatherValues(const int64_t* ids, int64_t n, float* out) const;
  // Provenance of ids [first, first + count) into out.
  [[nodiscard]] absl::Status ReadProvenance(int64_t first, int64_t count, Provenance* out) const;

  // Single-entry accessors for inspection; an id outside [0, size()) gives
  // Provenance{-1, -1, -1} and is_deleted true.
  Provenance provenance(int64_t id) const;
  bool is_deleted(int64_t id) const;

  // Hides every entry of `document` from Search (tombstones; ids and values
  // stay). NotFound if no live entry has that document.
  [[nodiscard]] absl::Status DeleteDocument(int64_t document);

  // Distinct documents with at least one live entry, ascending.
  std::vector<int64_t> Documents() const;

  // Writes the store to directory `dir` (created; its parent must exist): the
  // FAISS index (faiss::write_index), values, provenance, tombstones, and a
  // MANIFEST with options, sizes and a checksum per file. Everything is written
  // and fsynced into a staging directory through `env`, then swapped in
  // atomically (ReplaceDirectory), so a failed or interrupted save never
  // replaces a good one. A `dir` that exists but is not a saved store is
  // refused.
  [[nodiscard]] absl::Status Save(const std::string& dir, Env* env = Env::Default()) const;

  // Reads a store written by Save. Trained IVF inverted lists are memory-mapped
  // (IO_FLAG_MMAP) and copied into memory only when the store is next appended
  // to. NotFound for a missing directory or file, DataLoss for a truncated or
  // corrupt one (checksums are verified before anything is parsed).
  static absl::StatusOr<std::unique_ptr<KvStore>> Load(const std::string& dir);

  // Totals over every Search since the store was created or loaded.
  SearchCounters search_counters() const;

  // Bytes held: index (codes, graph, lists, centroids; allocated capacity,
  // memory-mapped lists included), values, provenance, tombstones.
  int64_t bytes() const;

  // The options in use, with automatic values filled in (ResolveMemoryOptions).
  const MemoryOptions& options() const { return options_; }
  int head_dim() const { return head_dim_; }

  // Whether the approximate index is built (always true for flat): false while
  // an HNSW/IVF store still searches its first keys exactly.
  bool index_built() const;
  // Entries whose key norm exceeds the reduction's bound (scanned exactly).
  int64_t overflow_size() const;
  // IVF: the inverted lists of the built index (grows with the memory when
  // ivf_nlist is automatic); 0 for other kinds and before the build.
  int64_t index_lists() const;

 private:
  KvStore(int head_dim, const MemoryOptions& options);
  // Append of n entries that (re)build the index, if at all, only at their end.
  absl::Status AppendPiece(const float* keys, int64_t key_stride, const float* values,
                           int64_t value_stride, const Provenance* provenance, int64_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  const int head_dim_;
  const MemoryOptions options_;

  // Writers (Append, DeleteDocument) hold write_mu_ for their whole duration
  // and mu_ exclusively only while they change *state_; readers hold mu_
  // shared. So a writer may read *state_ holding write_mu_ alone, and slow work
  // (encoding, IVF training, the HNSW build) runs without blocking readers.
  absl::Mutex write_mu_;
  mutable absl::Mutex mu_;
  std::unique_ptr<kv_internal::StoreState> state_;
  mutable std::atomic<int64_t> searched_queries_{0}, scored_keys_{0}, bounded_lists_{0},
      search_nanos_{0};
};

}  // namespace fot

#endif  // FOTSERVE_MEMORY_KV_STORE_H_
