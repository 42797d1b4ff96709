#include "src/model/attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

// A tile of query rows times a block of keys is the largest score buffer:
// 256 × 512 floats = 512 KiB, which stays in L2.
constexpr int kTileRows = 256;
constexpr int kKeyBlock = 512;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A tile of query rows. Rows are (group member j, position p) pairs flattened
// as j * n + p, so a query head group shares each key block and one matrix
// product serves all its heads.
struct Tile {
  int kv_head;
  int first_row;
  int rows;
  int n;           // queries per head
  int num_cached;  // local positions before the first query
};

// Folds one block of keys into the tile: scores by one matrix product, the
// causal mask (local keys) or the visibility mask (memory), then the values.
void FoldBlock(const Tile& tile, int head_dim, const float* block_keys, const float* block_values,
               int key_stride, int block_size, bool causal, const uint8_t* live,
               AttentionScratch::Tile* s) {
  float* scores = s->scores.data();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tile.rows, block_size, head_dim, 1.0f,
              s->queries.data(), head_dim, block_keys, key_stride, 0.0f, scores, block_size);
  for (int r = 0; r < tile.rows; ++r) {
    float* row = scores + static_cast<size_t>(r) * block_size;
    if (causal) {
      const int position = (tile.first_row + r) % tile.n;
      const int visible = tile.num_cached + position + 1;
      std::fill(row + std::min(visible, block_size), row + block_size, kNegInf);
    }
    if (live != nullptr) {
      for (int j = 0; j < block_size; ++j) row[j] = live[j] ? row[j] : kNegInf;
    }
    FoldSoftmaxRow(row, block_size, head_dim, &s->row_max[r], &s->row_sum[r],
                   s->output.data() + static_cast<size_t>(r) * head_dim);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tile.rows, head_dim, block_size, 1.0f,
              scores, block_size, block_values, key_stride, 1.0f, s->output.data(), head_dim);
}

// Dense: every memory entry of the tile's kv head, block by block.
absl::Status FoldDenseMemory(const Tile& tile, int head_dim, const KvMemory& memory,
                             const Retrieval& retrieval, AttentionScratch::Tile* s) {
  const int64_t size = memory.size();
  const int g = tile.kv_head;
  const bool masked = memory.has_deleted() || !retrieval.filter.documents.empty();
  const std::vector<int64_t>& documents = retrieval.filter.documents;
  for (int64_t b = 0; b < size; b += kKeyBlock) {
    const int count = static_cast<int>(std::min<int64_t>(kKeyBlock, size - b));
    absl::Status status = memory.ReadKeys(g, b, count, s->block_keys.data());
    if (status.ok()) status = memory.ReadValues(g, b, count, s->block_values.data());
    if (masked && status.ok()) {
      status = memory.ReadProvenance(b, count, s->block_provenance.data());
      for (int j = 0; j < count && status.ok(); ++j) {
        const int64_t document = s->block_provenance[j].document;
        s->block_live[j] = !memory.is_deleted(b + j) &&
                           (documents.empty() || std::find(documents.begin(), documents.end(),
                                                           document) != documents.end());
      }
    }
    if (!status.ok()) return status;
    FoldBlock(tile, head_dim, s->block_keys.data(), s->block_values.data(), head_dim, count,
              /*causal=*/false, masked ? s->block_live.data() : nullptr, s);
  }
  return absl::OkStatus();
}

// knn: each row's retrieved entries, with the scores FAISS returned.
absl::Status FoldRetrieved(const Tile& tile, int head_dim, int top_k, float scale,
                           const KvMemory& memory, const int64_t* ids, const float* scores,
                           AttentionScratch::Tile* s) {
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

// Dense: the last query's `top` best memory entries by inner product (a search
// of the head's store) with their share of the final softmax.
absl::Status TraceRow(const float* query, int kv_head, int head_dim, float scale, float row_max,
                      float row_sum, const KvMemory& memory, const Retrieval& retrieval, int top,
                      std::vector<TracedEntry>* entries) {
  std::vector<int64_t> ids(top);
  std::vector<float> scores(top);
  const SearchFilter* filter = &retrieval.filter;
  absl::Status status =
      memory.Search(kv_head, query, 1, head_dim, top, filter, ids.data(), scores.data());
  if (!status.ok()) return status;
  entries->clear();
  for (int j = 0; j < top && ids[j] >= 0; ++j) {
    Provenance provenance;
    status = memory.ReadProvenance(ids[j], 1, &provenance);
    if (!status.ok()) return status;
    entries->push_back(
        {ids[j], provenance, scores[j], std::exp(scores[j] * scale - row_max) / row_sum});
  }
  return absl::OkStatus();
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
  const int group = dims.num_heads / dims.num_kv_heads;
  const int total_rows = group * n;
  const int num_local = num_cached + n;
  const int kv_stride = dims.num_kv_heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t memory_size = memory != nullptr ? memory->size() : 0;
  const bool knn = memory_size > 0 && retrieval.mode == Retrieval::Mode::kKnn;
  const int top_k = knn ? retrieval.top_k : 0;

  // knn: one search per kv head for all its query rows (unscaled ⟨q, key⟩).
  if (knn) {
    const size_t head_queries = static_cast<size_t>(total_rows) * hd;
    const size_t per_head = static_cast<size_t>(total_rows) * top_k;
    scratch->search_queries.resize(head_queries * dims.num_kv_heads);
    scratch->ids.resize(per_head * dims.num_kv_heads);
    scratch->scores.resize(per_head * dims.num_kv_heads);
    for (int g = 0; g < dims.num_kv_heads; ++g) {
      for (int row = 0; row < total_rows; ++row) {
        const float* src =
            q + (static_cast<size_t>(row % n) * dims.num_heads + g * group + row / n) * hd;
        std::copy(src, src + hd, &scratch->search_queries[g * head_queries + row * hd]);
      }
    }
    const SearchFilter* filter = &retrieval.filter;
    FOT_RETURN_IF_ERROR(SearchMemoryHeads(*memory, dims.num_kv_heads,
                                          scratch->search_queries.data(), total_rows, hd, top_k,
                                          filter, scratch->ids.data(), scratch->scores.data()));
  }

  const int tile_rows = std::min(kTileRows, total_rows);
  const int tiles_per_head = (total_rows + tile_rows - 1) / tile_rows;
  const int items = dims.num_kv_heads * tiles_per_head;
  // One token over a short context is too little work to share.
  const int64_t memory_read = knn ? top_k : memory_size;
  const int64_t work =
      static_cast<int64_t>(total_rows) * (num_local + memory_read) * dims.num_kv_heads;
  const int threads = work < (1 << 14) ? 1 : std::min(omp_get_max_threads(), items);
  if (static_cast<int>(scratch->tiles.size()) < threads) scratch->tiles.resize(threads);

  if (trace != nullptr) trace->heads.assign(dims.num_heads, {});
  std::vector<absl::Status> failures(threads);
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int item = 0; item < items; ++item) {
    const int thread = omp_get_thread_num();
    if (!failures[thread].ok()) continue;
    AttentionScratch::Tile* s = &scratch->tiles[thread];
    const int block = std::max({kKeyBlock, num_local, top_k});
    s->queries.resize(static_cast<size_t>(tile_rows) * hd);
    s->output.resize(static_cast<size_t>(tile_rows) * hd);
    s->scores.resize(static_cast<size_t>(tile_rows) * block);
    s->row_max.resize(tile_rows);
    s->row_sum.resize(tile_rows);
    if (memory != nullptr) {
      s->block_keys.resize(static_cast<size_t>(block) * hd);
      s->block_values.resize(static_cast<size_t>(block) * hd);
      s->block_live.resize(block);
      s->block_provenance.resize(block);
    }

    const int g = item / tiles_per_head;
    const int first = (item % tiles_per_head) * tile_rows;
    const Tile tile{g, first, std::min(tile_rows, total_rows - first), n, num_cached};
    // Gather this tile's query rows, pre-scaled.
    for (int r = 0; r < tile.rows; ++r) {
      const int row = first + r;
      const float* src =
          q + (static_cast<size_t>(row % n) * dims.num_heads + g * group + row / n) * hd;
      float* dst = s->queries.data() + static_cast<size_t>(r) * hd;
      for (int d = 0; d < hd; ++d) dst[d] = src[d] * scale;
    }
    std::fill_n(s->output.begin(), static_cast<size_t>(tile.rows) * hd, 0.0f);
    std::fill_n(s->row_max.begin(), tile.rows, kNegInf);
    std::fill_n(s->row_sum.begin(), tile.rows, 0.0f);

    absl::Status status;
    if (knn) {
      const size_t per_head = static_cast<size_t>(total_rows) * top_k;
      status = FoldRetrieved(tile, hd, top_k, scale, *memory, &scratch->ids[g * per_head],
                             &scratch->scores[g * per_head], s);
    } else if (memory_size > 0) {
      status = FoldDenseMemory(tile, hd, *memory, retrieval, s);
    }
    if (!status.ok()) {
      failures[thread] = status;
      continue;
    }
    FoldBlock(tile, hd, keys + g * hd, values + g * hd, kv_stride, num_local, /*causal=*/true,
              nullptr, s);

    // Normalise and scatter back to [position, head, head_dim].
    for (int r = 0; r < tile.rows; ++r) {
      const int row = first + r;
      if (trace != nullptr && memory_size > 0 && row % n == n - 1) {
        std::vector<TracedEntry>* entries = &trace->heads[g * group + row / n];
        if (knn) {  // exactly what it attended to, best first
          const size_t at =
              static_cast<size_t>(g) * total_rows * top_k + static_cast<size_t>(row) * top_k;
          for (int j = 0; j < std::min(trace->top, top_k) && scratch->ids[at + j] >= 0; ++j) {
            const float score = scratch->scores[at + j];
            Provenance provenance;
            status = memory->ReadProvenance(scratch->ids[at + j], 1, &provenance);
            if (!status.ok()) failures[thread] = status;
            entries->push_back({scratch->ids[at + j], provenance, score,
                                std::exp(score * scale - s->row_max[r]) / s->row_sum[r]});
          }
        } else {
          status = TraceRow(
              q + (static_cast<size_t>(n - 1) * dims.num_heads + g * group + row / n) * hd, g, hd,
              scale, s->row_max[r], s->row_sum[r], *memory, retrieval, trace->top, entries);
          if (!status.ok()) failures[thread] = status;
        }
      }
      const float inv_sum = 1.0f / s->row_sum[r];
      const float* o = s->output.data() + static_cast<size_t>(r) * hd;
      float* dst = out + (static_cast<size_t>(row % n) * dims.num_heads + g * group + row / n) * hd;
      for (int d = 0; d < hd; ++d) dst[d] = o[d] * inv_sum;
    }
  }
  for (const absl::Status& failure : failures) {
    if (!failure.ok()) return failure;
  }
  return absl::OkStatus();
}

}  // namespace fot
