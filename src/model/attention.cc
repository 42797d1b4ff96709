#include "src/model/attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "src/model/attention_tiles.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

// The local keys of the window: scores by one matrix product, the causal mask
// (query at local position num_cached + p sees keys [0, num_cached + p]),
// then the values.
void FoldLocalKeys(const TileRows& tile, int n, int num_cached, int head_dim, const float* keys,
                   const float* values, int key_stride, TileBuffers* s) {
  const int count = num_cached + n;
  ScoreBlock(s->queries.data(), tile.rows, head_dim, keys, key_stride, count, s->scores.data());
  for (int r = 0; r < tile.rows; ++r) {
    float* row = s->scores.data() + static_cast<size_t>(r) * count;
    const int position = (tile.first_row + r) % n;
    const int visible = num_cached + position + 1;
    std::fill(row + std::min(visible, count), row + count, kNegInf);
  }
  FoldScores(tile.rows, count, head_dim, values, key_stride, s);
}

// knn: each row's retrieved entries, with the scores FAISS returned.
absl::Status FoldRetrieved(const TileRows& tile, int head_dim, int top_k, float scale,
                           const KvMemory& memory, const int64_t* ids, const float* scores,
                           TileBuffers* s) {
  for (int r = 0; r < tile.rows; ++r) {
    const size_t row = static_cast<size_t>(tile.first_row + r) * top_k;
    float* p = s->scores.data();
    for (int j = 0; j < top_k; ++j) p[j] = ids[row + j] < 0 ? kNegInf : scores[row + j] * scale;
    float* output = s->output.data() + static_cast<size_t>(r) * head_dim;
    FoldSoftmaxRow(p, top_k, head_dim, &s->row_max[r], &s->row_sum[r], output);
    absl::Status status =
        memory.GatherValues(tile.kv_head, ids + row, top_k, s->block_values.data());
    if (!status.ok()) return status;
    cblas_sgemv(CblasRowMajor, CblasTrans, top_k, head_dim, 1.0f, s->block_values.data(), head_dim,
                p, 1, 1.0f, output, 1);
  }
  return absl::OkStatus();
}

// What one Attend call's tiles share; read-only inside the parallel loop.
struct AttendCall {
  const AttentionDims& dims;
  const float* q;
  int n;
  int num_cached;
  const float* keys;
  const float* values;
  const KvMemory* memory;
  int64_t memory_size;
  const Retrieval& retrieval;
  float scale;
  bool knn;
  int top_k;
  const KnnResults& knn_results;
  AttentionTrace* trace;  // null: none
  float* out;
};

// The last query's trace for kv head g's row `row` (its query head): knn,
// exactly what it attended to, best first; dense, the best entries by inner
// product (a search of the head's store); each with its share of the softmax.
absl::Status TraceLastQuery(const AttendCall& c, const TileRows& tile, int r,
                            const TileBuffers& s) {
  const int row = tile.first_row + r;
  const int g = tile.kv_head;
  const int group = c.dims.num_heads / c.dims.num_kv_heads;
  std::vector<TracedEntry>* entries = &c.trace->heads[g * group + row / c.n];
  absl::Status failure;
  if (c.knn) {
    const int total_rows = group * c.n;
    const size_t at = KnnResultAt(total_rows, c.top_k, g, row);
    for (int j = 0; j < std::min(c.trace->top, c.top_k) && c.knn_results.ids[at + j] >= 0; ++j) {
      const float score = c.knn_results.scores[at + j];
      Provenance provenance;
      absl::Status status = c.memory->ReadProvenance(c.knn_results.ids[at + j], 1, &provenance);
      if (!status.ok()) failure = status;
      entries->push_back({c.knn_results.ids[at + j], provenance, score,
                          std::exp(score * c.scale - s.row_max[r]) / s.row_sum[r]});
    }
    return failure;
  }
  failure = SearchTopEntries(*c.memory, g, c.q + RowOffset(c.dims, c.n, g, row), c.dims.head_dim,
                             c.trace->top, c.retrieval.filter, entries);
  if (!failure.ok()) return failure;
  for (TracedEntry& entry : *entries) {
    entry.attention_share = std::exp(entry.inner_product * c.scale - s.row_max[r]) / s.row_sum[r];
  }
  return absl::OkStatus();
}

// One tile: memory (knn's retrieved entries or every entry), then the local
// keys, into one softmax; the trace of the last query; the scatter.
absl::Status AttendTile(const AttendCall& c, const TileRows& tile, TileBuffers* s) {
  const int hd = c.dims.head_dim;
  const int g = tile.kv_head;
  StartTile(c.dims, c.q, c.n, tile, c.scale, s);
  absl::Status status;
  if (c.knn) {
    const int total_rows = c.dims.num_heads / c.dims.num_kv_heads * c.n;
    const size_t at = KnnResultAt(total_rows, c.top_k, g, 0);
    status = FoldRetrieved(tile, hd, c.top_k, c.scale, *c.memory, &c.knn_results.ids[at],
                           &c.knn_results.scores[at], s);
  } else if (c.memory_size > 0) {
    status = FoldDenseMemory(s->queries.data(), tile.rows, hd, g, *c.memory, c.retrieval.filter, s);
  }
  if (!status.ok()) return status;
  const int kv_stride = c.dims.num_kv_heads * hd;
  FoldLocalKeys(tile, c.n, c.num_cached, hd, c.keys + g * hd, c.values + g * hd, kv_stride, s);

  absl::Status failure;
  if (c.trace != nullptr && c.memory_size > 0) {
    for (int r = 0; r < tile.rows; ++r) {
      if ((tile.first_row + r) % c.n != c.n - 1) continue;
      absl::Status traced = TraceLastQuery(c, tile, r, *s);
      if (!traced.ok()) failure = traced;
    }
  }
  ScatterTile(c.dims, c.n, tile, *s, c.out);
  return failure;
}

}  // namespace

absl::StatusOr<Retrieval> ParseRetrieval(const std::string& spec) {
  Retrieval retrieval;
  if (spec == "dense") return retrieval;
  int k = 0;
  absl::string_view rest = spec;
  const bool exact = absl::ConsumeSuffix(&rest, ":exact");
  if (absl::ConsumePrefix(&rest, "knn:") && absl::SimpleAtoi(rest, &k) && k >= 1) {
    retrieval.mode = Retrieval::Mode::kKnn;
    retrieval.top_k = k;
    retrieval.filter.exact = exact;
    return retrieval;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "retrieval mode '", spec, "' is not 'dense', 'knn:K' or 'knn:K:exact' with K >= 1"));
}

std::string DescribeRetrieval(const Retrieval& retrieval) {
  if (retrieval.mode == Retrieval::Mode::kDense) return "dense";
  return absl::StrCat("knn:", retrieval.top_k, retrieval.filter.exact ? ":exact" : "");
}

// The heads' searches run side by side, each on one thread, for a few query
// rows (generation) and whenever there are at least two heads per thread:
// then no thread waits on another inside a search. With fewer heads (one kv
// head) a window's big batch is spread over the threads inside each search,
// over its many uneven lists. (Side by side made the mid-size model's window
// searches ~8% faster than threads inside each: 8 kv heads, 2 threads.)
constexpr int kMaxRowsForHeadParallelSearch = 16;

absl::Status SearchMemoryHeads(const KvMemory& memory, int kv_heads, const float* queries, int rows,
                               int head_dim, int top_k, const SearchFilter* filter, int64_t* ids,
                               float* scores) {
  const size_t per_head = static_cast<size_t>(rows) * top_k;
  // The lowest failing head's error, as a serial loop would return it; no
  // per-call allocation, since this runs for every generated token.
  absl::Status failure;
  int failed_head = kv_heads;
  const bool side_by_side =
      rows <= kMaxRowsForHeadParallelSearch || kv_heads >= 2 * omp_get_max_threads();
#pragma omp parallel for schedule(dynamic) if (side_by_side)
  for (int g = 0; g < kv_heads; ++g) {
    absl::Status status =
        memory.Search(g, queries + static_cast<size_t>(g) * rows * head_dim, rows, head_dim, top_k,
                      filter, ids + g * per_head, scores + g * per_head);
    if (!status.ok()) {
#pragma omp critical(fot_search_memory_heads)
      if (g < failed_head) {
        failed_head = g;
        failure = std::move(status);
      }
    }
  }
  return failure;
}

absl::Status Attend(const AttentionDims& dims, const float* q, int n, int num_cached,
                    const float* keys, const float* values, const KvMemory* memory,
                    const Retrieval& retrieval, AttentionScratch* scratch, float* out,
                    AttentionTrace* trace) {
  const int hd = dims.head_dim;
  const int total_rows = dims.num_heads / dims.num_kv_heads * n;
  const int num_local = num_cached + n;
  const int64_t memory_size = memory != nullptr ? memory->size() : 0;
  const bool knn = memory_size > 0 && retrieval.mode == Retrieval::Mode::kKnn;
  const int top_k = knn ? retrieval.top_k : 0;

  // knn: one search per kv head for all its query rows (unscaled ⟨q, key⟩).
  if (knn) {
    GatherSearchQueries(dims, q, n, top_k, &scratch->knn);
    FOT_RETURN_IF_ERROR(
        SearchGatheredQueries(*memory, dims, n, top_k, retrieval.filter, &scratch->knn));
  }

  const TileGrid grid =
      TileGrid::For(dims.num_kv_heads, total_rows, num_local + (knn ? top_k : memory_size));
  if (static_cast<int>(scratch->tiles.size()) < grid.threads) scratch->tiles.resize(grid.threads);
  if (trace != nullptr) trace->heads.assign(dims.num_heads, {});
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const AttendCall call{.dims = dims,
                        .q = q,
                        .n = n,
                        .num_cached = num_cached,
                        .keys = keys,
                        .values = values,
                        .memory = memory,
                        .memory_size = memory_size,
                        .retrieval = retrieval,
                        .scale = scale,
                        .knn = knn,
                        .top_k = top_k,
                        .knn_results = scratch->knn,
                        .trace = trace,
                        .out = out};
  const int block = std::max({kKeyBlock, num_local, top_k});
  return ForEachTile(grid, [&](int thread, const TileRows& tile) {
    TileBuffers* s = &scratch->tiles[thread];
    ReserveTile(grid.tile_rows, hd, block, memory != nullptr, s);
    return AttendTile(call, tile, s);
  });
}

}  // namespace fot
