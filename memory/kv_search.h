// Search inside a KvStore, beside the IVF scan (ivf_scan.h): which entries a
// query may see (Selection), reading stored keys back (KeyReader), exact
// top-k over stored keys, and FAISS's HNSW / IVF-PQ search with its results
// re-scored exactly. Internal to the store; every function reads the store's
// state, so the caller holds its lock (shared).
#ifndef FOTSERVE_MEMORY_KV_SEARCH_H_
#define FOTSERVE_MEMORY_KV_SEARCH_H_

#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "memory/kv_store.h"
#include "memory/kv_store_internal.h"
#include "memory/memory_options.h"

namespace fot::kv_internal {

// Decodes stored keys by id straight from the codes. (Index::reconstruct
// would do too, but FAISS 1.7.3 decodes scalar-quantizer codes in an OpenMP
// parallel region even for one vector: per-result calls cost a thread wake-up
// each, milliseconds on a busy machine.) Reads the index: caller holds a lock.
class KeyReader {
 public:
  KeyReader(const Shape& s, const StoreState& st);
  void Read(int64_t id, float* out);
  // Keys first.. as stored floats, when they are (flat f32 codes), else null.
  const float* Contiguous(int64_t first) const;

 private:
  void Decode(const uint8_t* code, float* out) const;

  const Shape s_;
  const uint8_t* codes_ = nullptr;
  size_t code_size_ = 0;
  const faiss::IndexIVF* ivf_ = nullptr;
  bool pq_ = false;
  std::vector<float> buf_;
};

// The tombstone/document/overflow predicate, handed to FAISS as an IDSelector.
// FAISS calls it from its OpenMP threads; it only reads, under the caller's
// read lock.
struct Selection final : faiss::IDSelector {
  Selection(const StoreState& st, const SearchFilter* filter) : st(st) {
    if (filter != nullptr) documents = filter->documents;
    std::sort(documents.begin(), documents.end());
    documents.erase(std::unique(documents.begin(), documents.end()), documents.end());
    restricts = st.deleted > 0 || !documents.empty();
    selected_live = st.size - st.deleted;
    if (!documents.empty()) {
      selected_live = 0;
      for (int64_t doc : documents) {
        auto it = st.live_per_document.find(doc);
        if (it != st.live_per_document.end()) selected_live += it->second;
      }
    }
  }
  bool is_member(faiss::Index::idx_t id) const override {
    if (id < 0 || id >= st.size || TestBit(st.deleted_bits, id)) return false;
    if (exclude_overflow && TestBit(st.overflow_bits, id)) return false;
    return documents.empty() ||
           std::binary_search(documents.begin(), documents.end(), st.provenance[id].document);
  }
  std::vector<int64_t> Members(const std::vector<int64_t>* among = nullptr) const {
    std::vector<int64_t> out;
    if (among != nullptr) {
      for (int64_t id : *among) {
        if (is_member(id)) out.push_back(id);
      }
    } else {
      for (int64_t id = 0; id < st.size; ++id) {
        if (is_member(id)) out.push_back(id);
      }
    }
    return out;
  }

  const StoreState& st;
  std::vector<int64_t> documents;  // sorted, unique; empty: all
  bool exclude_overflow = false;
  bool restricts = false;  // false: every id below st.size is a member
  int64_t selected_live = 0;
};

// Merges sorted (best first) row b [k] into row a [k].
void MergeRow(int k, float* a_score, int64_t* a_id, const float* b_score, const int64_t* b_id);

// Exact top-k over the keys of `members` (all ids when null): keys decoded to
// float in blocks, each block one BLAS-backed FAISS search for all queries.
// Used for flat kinds too: FAISS 1.7.3's generic build scans fp16 codes ~30x
// slower than this (measured: 7.3 s vs 0.2 s for 2048 queries x 50k keys,
// d=64), and its IDSelector path for IndexFlat skips BLAS (12x slower).
void ExactSearch(const Shape& s, const StoreState& st, const float* q, int64_t nq, int k,
                 const std::vector<int64_t>* members, float* scores, int64_t* ids);

// HNSW and IVF-PQ: FAISS's own search over the reduced keys (queries `qa`),
// its results re-scored exactly from the stored keys (`q`) and sorted again.
void SearchAndRescore(const Shape& s, const StoreState& st, const MemoryOptions& o, const float* q,
                      const float* qa, int64_t nq, int kk, int64_t selected_live,
                      const faiss::IDSelector* selector, float* d, int64_t* r);

}  // namespace fot::kv_internal

#endif  // FOTSERVE_MEMORY_KV_SEARCH_H_
