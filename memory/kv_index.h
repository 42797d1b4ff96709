// The FAISS index behind a KvStore: which index its options build, how it
// grows and retrains, and what it holds in bytes. Internal to the store
// (kv_store.cc, kv_store_io.cc); callers hold the store's locks as each
// function says.
#ifndef FOTSERVE_MEMORY_KV_INDEX_H_
#define FOTSERVE_MEMORY_KV_INDEX_H_

#include <faiss/Index.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "memory/kv_store_internal.h"
#include "memory/memory_options.h"

namespace fot::kv_internal {

// Lists an IVF-PQ search probes (FAISS's own search, by centroid distance).
int PqProbes(const MemoryOptions& o, int nlist);

// Exact inner-product index over raw keys: the flat kind, and the staging
// index of approximate kinds until their build.
std::unique_ptr<faiss::Index> MakeExactIndex(const Shape& s);

// Builds the approximate index over n reduced keys (ip_reduction.h); IVF gets
// `nlist` lists, trained on a sample spread over all n.
std::unique_ptr<faiss::Index> BuildApproximate(const Shape& s, const MemoryOptions& o, int nlist,
                                               const float* aug, int64_t n);

// Grows capacity by 1/8 instead of doubling, so that bytes() stays close to the
// payload (flat fp16 must stay within 30% of 4 x head_dim bytes per entry).
template <typename T>
void GrowFor(std::vector<T>* v, size_t extra) {
  const size_t need = v->size() + extra;
  if (need > v->capacity()) v->reserve(std::max(need, v->capacity() + v->capacity() / 8));
}

// Makes room for n more codes in a flat or HNSW index (GrowFor).
void ReserveIndex(faiss::Index* index, int64_t n);

// Adds n rows x [n, d] to `index`. An IVF's lists are picked by
// `assigner` (ivf_quantizer.h), made for its quantizer when null; other
// indexes ignore it.
void AddToIndex(faiss::Index* index, std::unique_ptr<ListAssigner>* assigner, const float* x,
                int64_t n);

// Copies memory-mapped (read-only) IVF lists into memory so that they accept
// adds. Caller holds mu_ exclusively.
void CopyMappedListsToMemory(StoreState* st);

int64_t VectorBytes(const auto& v) { return v.capacity() * sizeof(v[0]); }
// Bytes the index holds (mapped lists counted at their size).
int64_t IndexBytes(const faiss::Index* index);

// Whether a built IVF store of these options orders its probes by list
// estimates (ivf_bounds.h): every IVF but PQ, whose lossy codes FAISS searches
// itself.
bool UsesBounds(const MemoryOptions& o);

// Widens the bounds of the lists that keys [n, d] (ids first..) went to, as
// the codes store them. Caller holds mu_ exclusively.
void ExtendBounds(const Shape& s, StoreState& st, int64_t first, const float* keys, int64_t n);

// Whether an IVF index with automatic lists is due for a retraining at `keys`
// keys: when twice its lists would fit (memory_options.h).
bool NeedsMoreLists(const MemoryOptions& o, const StoreState& st, int64_t keys);

}  // namespace fot::kv_internal

#endif  // FOTSERVE_MEMORY_KV_INDEX_H_
