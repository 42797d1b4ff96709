// Attention of a window's queries over its local keys and, for memory layers,
// over the layer's memory, in one softmax (DESIGN.md §1).
//
// Two ways to read memory:
//   dense  every entry, streamed in blocks with a running (online) softmax, so
//          a memory of millions of entries never needs a [window × memory]
//          score matrix: the largest buffer is one tile of queries × one block
//          of keys. Bit-for-bit the reference's semantics.
//   knn:K  each query, per head, attends to the K entries of its kv head's
//          store with the largest inner product ⟨q, key⟩ (the FoT paper's
//          method), merged into the same softmax as the local keys. One FAISS
//          search per store serves all queries of the call.
#ifndef FOTSERVE_SRC_MODEL_ATTENTION_H_
#define FOTSERVE_SRC_MODEL_ATTENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "memory/kv_memory.h"

namespace fot {

struct AttentionDims {
  int num_heads;
  int num_kv_heads;  // divides num_heads; query head h reads kv head h / (num_heads / num_kv_heads)
  int head_dim;
};

// How memory layers read their memory.
struct Retrieval {
  enum class Mode { kDense, kKnn };
  Mode mode = Mode::kDense;
  int top_k = 0;        // knn: entries per query and head (>= 1)
  SearchFilter filter;  // only these documents' entries (empty: all); exact search
};

// "dense", "knn:K", or "knn:K:exact": the K best by exact search over every
// key, whatever the store's index (the reference for approximate indexes).
absl::StatusOr<Retrieval> ParseRetrieval(const std::string& spec);
std::string DescribeRetrieval(const Retrieval& retrieval);

// What one query retrieved from memory, per head: the entries with the
// largest inner product (knn: the K it attended to; dense: the top ones of
// all it attended to) and each one's share of the query's attention mass
// (the FoT paper's "kNN score"), which counts the local keys too.
struct TracedEntry {
  int64_t id;
  Provenance provenance;  // where the entry's token came from
  float inner_product;    // ⟨q, key⟩, unscaled
  float attention_share;  // softmax probability of this entry for this query
};
struct AttentionTrace {
  int top = 8;                                  // entries kept per head
  std::vector<std::vector<TracedEntry>> heads;  // [num_heads], best first
};

// One thread's buffers for a tile of query rows (attention_tiles.h).
struct TileBuffers {
  std::vector<float> queries;       // [tile rows, head_dim], scaled by 1/sqrt(head_dim)
  std::vector<float> scores;        // [tile rows, key block]
  std::vector<float> output;        // [tile rows, head_dim], unnormalised
  std::vector<float> row_max;       // [tile rows]
  std::vector<float> row_sum;       // [tile rows]
  std::vector<float> block_keys;    // [key block, head_dim] decoded from memory
  std::vector<float> block_values;  // [key block, head_dim]
  std::vector<uint8_t> block_live;  // [key block] entry visible (not deleted, in filter)
  std::vector<Provenance> block_provenance;
};

// knn: the search results of every query row, per kv head.
struct KnnResults {
  std::vector<float> queries;  // [kv_heads][group * n, head_dim], unscaled
  std::vector<int64_t> ids;    // [kv_heads][group * n * top_k]
  std::vector<float> scores;   // [kv_heads][group * n * top_k]
};

// Buffers reused across calls, so that generating a token allocates nothing.
struct AttentionScratch {
  std::vector<TileBuffers> tiles;  // one per OpenMP thread Attend uses
  KnnResults knn;
};

// n queries sit at local positions [num_cached, num_cached + n). Each attends
// causally to local keys [0, num_cached + n) and, if memory is not null, to
// its kv head's memory as `retrieval` says.
//   q:      [n, num_heads, head_dim], already position-rotated
//   keys:   [num_cached + n, num_kv_heads, head_dim], already rotated
//   values: [num_cached + n, num_kv_heads, head_dim]
//   out:    [n, num_heads, head_dim]
// Work is split over (kv head, tile of query rows) across the OpenMP team.
// With a trace and a memory, records what the LAST query retrieved.
// Fails only if reading the memory fails (a FAISS error).
[[nodiscard]] absl::Status Attend(const AttentionDims& dims, const float* q, int n, int num_cached,
                                  const float* keys, const float* values, const KvMemory* memory,
                                  const Retrieval& retrieval, AttentionScratch* scratch, float* out,
                                  AttentionTrace* trace = nullptr);

// knn: one search of each kv head's store for that head's `rows` queries
// (queries [kv_heads, rows, head_dim], unscaled), into ids and scores
// [kv_heads, rows, top_k]. For a few rows (a generated token) the heads'
// searches run side by side, and a search's own parallel loops run serially
// inside, which saves a thread wake-up per loop (several per store).
[[nodiscard]] absl::Status SearchMemoryHeads(const KvMemory& memory, int kv_heads,
                                             const float* queries, int rows, int head_dim,
                                             int top_k, const SearchFilter* filter, int64_t* ids,
                                             float* scores);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_ATTENTION_H_
