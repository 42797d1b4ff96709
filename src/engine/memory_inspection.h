// Read-only views of a stream's memory, for people and tools: how much each
// layer and head holds, which entries (with their provenance), the context of
// an entry, and what a query vector retrieves. What the model itself retrieved
// while running text is recorded by the forward pass instead (set
// ModelState::trace; see AttentionTrace).
#ifndef FOTSERVE_SRC_ENGINE_MEMORY_INSPECTION_H_
#define FOTSERVE_SRC_ENGINE_MEMORY_INSPECTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/model/transformer.h"

namespace fot {

struct HeadStats {
  int kv_head;
  int64_t entries;        // appended, deleted included
  int64_t live_entries;   // searchable
  int64_t bytes;          // keys, values, provenance and index
  SearchCounters search;  // what searches of this store have cost so far
};

struct LayerStats {
  int layer;
  std::string index;  // e.g. "flat:dtype=f16"
  std::vector<HeadStats> heads;
};

struct MemoryStats {
  std::vector<LayerStats> layers;  // memory layers only
  std::vector<int64_t> documents;  // with live entries
  int64_t bytes = 0;
};

MemoryStats GetMemoryStats(const ModelState& state);

struct MemoryEntry {
  int64_t id;
  Provenance provenance;
  bool deleted;
};

// Entries [offset, offset + limit) of memory layer `layer` (ids are the same
// in every kv head). Empty past the end; InvalidArgument for a layer without
// memory or a negative range.
absl::StatusOr<std::vector<MemoryEntry>> ListMemoryEntries(const ModelState& state, int layer,
                                                           int64_t offset, int64_t limit);

// The entries around entry `id` that belong to its document and lie within
// `radius` token positions of it, in position order: decode their tokens to
// read the text the entry came from.
absl::StatusOr<std::vector<MemoryEntry>> MemoryEntryContext(const ModelState& state, int layer,
                                                            int64_t id, int radius);

struct RetrievedEntry {
  MemoryEntry entry;
  float inner_product;    // ⟨query, key⟩
  float attention_share;  // of softmax(⟨query, key⟩ / sqrt(head_dim)) over the whole memory
};

// The k entries of (layer, kv_head) with the largest inner product with
// `query` [head_dim], best first, with each one's share of a softmax over all
// live memory entries (exact: it reads the whole memory once).
absl::StatusOr<std::vector<RetrievedEntry>> SearchMemory(const ModelState& state, int layer,
                                                         int kv_head, const float* query, int k);

}  // namespace fot

#endif  // FOTSERVE_SRC_ENGINE_MEMORY_INSPECTION_H_
