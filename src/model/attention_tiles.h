// The pieces that Attend (attention.h) and Λ attention (lambda_attention.h)
// are both built of, so that tiling, gathering, folding and scattering exist
// once.
//
// A call's n queries are worked on per kv head g, as rows: row j·n + p is
// query head g·group + j at position p, so the heads of a group share every
// block of keys and one matrix product serves them all. A kv head's rows are
// cut into tiles of at most kTileRows; each (kv head, tile) is one work item
// for the OpenMP team. A tile keeps a running (online) softmax per row:
// blocks of keys are scored, masked by the caller, and folded into it; at the
// end each row is normalised and scattered back to [position, head, dim].
//
// Free functions over caller-owned buffers (TileBuffers, KnnResults in
// attention.h); nothing here keeps state.
#ifndef FOTSERVE_SRC_MODEL_ATTENTION_TILES_H_
#define FOTSERVE_SRC_MODEL_ATTENTION_TILES_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "memory/kv_memory.h"
#include "src/model/attention.h"

namespace fot {

// A tile of query rows times a block of keys is the largest score buffer:
// 256 × 512 floats = 512 KiB, which stays in L2.
inline constexpr int kTileRows = 256;
inline constexpr int kKeyBlock = 512;
inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// One work item: kv head `kv_head`'s rows [first_row, first_row + rows).
struct TileRows {
  int kv_head;
  int first_row;
  int rows;
};

// How a call's rows are cut into work items, and how many threads share them.
struct TileGrid {
  int total_rows;  // group · n per kv head
  int tile_rows;
  int tiles_per_head;
  int items;    // num_kv_heads · tiles_per_head
  int threads;  // 1 when the call is too little work to share

  // keys_per_row: how many keys each row scores (local and memory), which
  // decides whether waking the team is worth it.
  static TileGrid For(int num_kv_heads, int total_rows, int64_t keys_per_row);
  TileRows Item(int item) const;
};

// Runs attend_tile(thread, tile) for every item of the grid on grid.threads
// OpenMP threads (thread: the index of the caller's per-thread buffers). A
// thread whose tile failed takes no further tiles; returns the failure of
// the lowest-numbered thread that failed.
[[nodiscard]] absl::Status ForEachTile(
    const TileGrid& grid, absl::FunctionRef<absl::Status(int thread, const TileRows&)> attend_tile);

// Offset of row `row` of kv head g in a [n, num_heads, head_dim] array (the
// queries, or the output).
inline size_t RowOffset(const AttentionDims& dims, int n, int kv_head, int row) {
  const int group = dims.num_heads / dims.num_kv_heads;
  return (static_cast<size_t>(row % n) * dims.num_heads + kv_head * group + row / n) *
         dims.head_dim;
}

// Sizes a thread's buffers for tiles of tile_rows and key blocks of `block`
// (the memory block buffers only if the layer has memory).
void ReserveTile(int tile_rows, int head_dim, int block, bool memory, TileBuffers* buffers);

// The tile's queries from q [n, num_heads, head_dim], multiplied by `scale`,
// into buffers->queries; and an empty running softmax for its rows.
void StartTile(const AttentionDims& dims, const float* q, int n, const TileRows& tile, float scale,
               TileBuffers* buffers);

// scores[rows, count] = queries[rows, head_dim] · keys[count, head_dim]ᵀ, the
// keys key_stride floats apart.
void ScoreBlock(const float* queries, int rows, int head_dim, const float* keys, int key_stride,
                int count, float* scores);

// Folds the (already masked) score rows buffers->scores [rows, count] into
// the running softmax, then output += P · values (value_stride apart).
void FoldScores(int rows, int count, int head_dim, const float* values, int value_stride,
                TileBuffers* buffers);

// Whether `filter` lets a query see an entry of `provenance`'s document.
bool InFilter(const SearchFilter& filter, const Provenance& provenance);

// Dense memory: scores `queries` [rows, head_dim] (scaled) against every
// entry of kv head g's store, block by block, and folds them in; deleted
// entries and documents outside `filter` are masked. Fails if memory does.
[[nodiscard]] absl::Status FoldDenseMemory(const float* queries, int rows, int head_dim,
                                           int kv_head, const KvMemory& memory,
                                           const SearchFilter& filter, TileBuffers* buffers);

// Normalises the tile's rows and writes them to out [n, num_heads, head_dim].
void ScatterTile(const AttentionDims& dims, int n, const TileRows& tile, const TileBuffers& buffers,
                 float* out);

// knn: copies every row's query (unscaled) from q [n, num_heads, head_dim]
// to knn->queries [num_kv_heads][group · n, head_dim] and sizes the results
// for top_k a row. Callers may reposition the queries before searching.
void GatherSearchQueries(const AttentionDims& dims, const float* q, int n, int top_k,
                         KnnResults* knn);
// One search of each kv head's store for all of its gathered queries.
[[nodiscard]] absl::Status SearchGatheredQueries(const KvMemory& memory, const AttentionDims& dims,
                                                 int n, int top_k, const SearchFilter& filter,
                                                 KnnResults* knn);
// Where row `row` of kv head g finds its top_k results in knn->ids and scores.
inline size_t KnnResultAt(int total_rows, int top_k, int kv_head, int row) {
  return static_cast<size_t>(kv_head) * total_rows * top_k + static_cast<size_t>(row) * top_k;
}

// Tracing: the `top` entries of kv head g's store with the largest
// ⟨query, key⟩ (query unscaled), best first, appended to *entries with their
// provenance; attention_share is left 0 for the caller to fill.
[[nodiscard]] absl::Status SearchTopEntries(const KvMemory& memory, int kv_head, const float* query,
                                            int head_dim, int top, const SearchFilter& filter,
                                            std::vector<TracedEntry>* entries);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_ATTENTION_TILES_H_
