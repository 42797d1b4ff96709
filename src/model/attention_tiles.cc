#include "src/model/attention_tiles.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "src/model/kernels.h"

namespace fot {

TileGrid TileGrid::For(int num_kv_heads, int total_rows, int64_t keys_per_row) {
  TileGrid grid;
  grid.total_rows = total_rows;
  grid.tile_rows = std::min(kTileRows, total_rows);
  grid.tiles_per_head = (total_rows + grid.tile_rows - 1) / grid.tile_rows;
  grid.items = num_kv_heads * grid.tiles_per_head;
  // One token over a short context is too little work to share.
  const int64_t work = static_cast<int64_t>(total_rows) * keys_per_row * num_kv_heads;
  grid.threads = work < (1 << 14) ? 1 : std::min(omp_get_max_threads(), grid.items);
  return grid;
}

TileRows TileGrid::Item(int item) const {
  const int first = (item % tiles_per_head) * tile_rows;
  return {item / tiles_per_head, first, std::min(tile_rows, total_rows - first)};
}

absl::Status ForEachTile(const TileGrid& grid,
                         absl::FunctionRef<absl::Status(int thread, const TileRows&)> attend_tile) {
  std::vector<absl::Status> failures(grid.threads);
#pragma omp parallel for schedule(dynamic) num_threads(grid.threads) if (grid.threads > 1)
  for (int item = 0; item < grid.items; ++item) {
    const int thread = omp_get_thread_num();
    if (!failures[thread].ok()) continue;
    failures[thread] = attend_tile(thread, grid.Item(item));
  }
  for (const absl::Status& failure : failures) {
    if (!failure.ok()) return failure;
  }
  return absl::OkStatus();
}

void ReserveTile(int tile_rows, int head_dim, int block, bool memory, TileBuffers* buffers) {
  buffers->queries.resize(static_cast<size_t>(tile_rows) * head_dim);
  buffers->output.resize(static_cast<size_t>(tile_rows) * head_dim);
  buffers->scores.resize(static_cast<size_t>(tile_rows) * block);
  buffers->row_max.resize(tile_rows);
  buffers->row_sum.resize(tile_rows);
  if (memory) {
    buffers->block_keys.resize(static_cast<size_t>(block) * head_dim);
    buffers->block_values.resize(static_cast<size_t>(block) * head_dim);
    buffers->block_live.resize(block);
    buffers->block_provenance.resize(block);
  }
}

void StartTile(const AttentionDims& dims, const float* q, int n, const TileRows& tile, float scale,
               TileBuffers* buffers) {
  const int hd = dims.head_dim;
  for (int r = 0; r < tile.rows; ++r) {
    const float* src = q + RowOffset(dims, n, tile.kv_head, tile.first_row + r);
    float* dst = buffers->queries.data() + static_cast<size_t>(r) * hd;
    for (int d = 0; d < hd; ++d) dst[d] = src[d] * scale;
  }
  std::fill_n(buffers->output.begin(), static_cast<size_t>(tile.rows) * hd, 0.0f);
  std::fill_n(buffers->row_max.begin(), tile.rows, kNegInf);
  std::fill_n(buffers->row_sum.begin(), tile.rows, 0.0f);
}

void ScoreBlock(const float* queries, int rows, int head_dim, const float* keys, int key_stride,
                int count, float* scores) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, count, head_dim, 1.0f, queries,
              head_dim, keys, key_stride, 0.0f, scores, count);
}

void FoldScores(int rows, int count, int head_dim, const float* values, int value_stride,
                TileBuffers* buffers) {
  float* scores = buffers->scores.data();
  for (int r = 0; r < rows; ++r) {
    FoldSoftmaxRow(scores + static_cast<size_t>(r) * count, count, head_dim, &buffers->row_max[r],
                   &buffers->row_sum[r],
                   buffers->output.data() + static_cast<size_t>(r) * head_dim);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, head_dim, count, 1.0f, scores, count,
              values, value_stride, 1.0f, buffers->output.data(), head_dim);
}

bool InFilter(const SearchFilter& filter, const Provenance& provenance) {
  return filter.documents.empty() || std::find(filter.documents.begin(), filter.documents.end(),
                                               provenance.document) != filter.documents.end();
}

absl::Status FoldDenseMemory(const float* queries, int rows, int head_dim, int kv_head,
                             const KvMemory& memory, const SearchFilter& filter,
                             TileBuffers* buffers) {
  const int64_t size = memory.size();
  const bool masked = memory.has_deleted() || !filter.documents.empty();
  for (int64_t b = 0; b < size; b += kKeyBlock) {
    const int count = static_cast<int>(std::min<int64_t>(kKeyBlock, size - b));
    absl::Status status = memory.ReadKeys(kv_head, b, count, buffers->block_keys.data());
    if (status.ok()) status = memory.ReadValues(kv_head, b, count, buffers->block_values.data());
    if (masked && status.ok()) {
      status = memory.ReadProvenance(b, count, buffers->block_provenance.data());
      for (int j = 0; j < count; ++j) {
        buffers->block_live[j] =
            !memory.is_deleted(b + j) && InFilter(filter, buffers->block_provenance[j]);
      }
    }
    if (!status.ok()) return status;
    ScoreBlock(queries, rows, head_dim, buffers->block_keys.data(), head_dim, count,
               buffers->scores.data());
    if (masked) {
      for (int r = 0; r < rows; ++r) {
        float* row = buffers->scores.data() + static_cast<size_t>(r) * count;
        for (int j = 0; j < count; ++j) row[j] = buffers->block_live[j] ? row[j] : kNegInf;
      }
    }
    FoldScores(rows, count, head_dim, buffers->block_values.data(), head_dim, buffers);
  }
  return absl::OkStatus();
}

void ScatterTile(const AttentionDims& dims, int n, const TileRows& tile, const TileBuffers& buffers,
                 float* out) {
  const int hd = dims.head_dim;
  for (int r = 0; r < tile.rows; ++r) {
    const float inv_sum = 1.0f / buffers.row_sum[r];
    const float* o = buffers.output.data() + static_cast<size_t>(r) * hd;
    float* dst = out + RowOffset(dims, n, tile.kv_head, tile.first_row + r);
    for (int d = 0; d < hd; ++d) dst[d] = o[d] * inv_sum;
  }
}

void GatherSearchQueries(const AttentionDims& dims, const float* q, int n, int top_k,
                         KnnResults* knn) {
  const int hd = dims.head_dim;
  const int total_rows = dims.num_heads / dims.num_kv_heads * n;
  const size_t head_queries = static_cast<size_t>(total_rows) * hd;
  const size_t per_head = static_cast<size_t>(total_rows) * top_k;
  knn->queries.resize(head_queries * dims.num_kv_heads);
  knn->ids.resize(per_head * dims.num_kv_heads);
  knn->scores.resize(per_head * dims.num_kv_heads);
  for (int g = 0; g < dims.num_kv_heads; ++g) {
    for (int row = 0; row < total_rows; ++row) {
      const float* src = q + RowOffset(dims, n, g, row);
      std::copy(src, src + hd, &knn->queries[g * head_queries + row * hd]);
    }
  }
}

absl::Status SearchGatheredQueries(const KvMemory& memory, const AttentionDims& dims, int n,
                                   int top_k, const SearchFilter& filter, KnnResults* knn) {
  const int total_rows = dims.num_heads / dims.num_kv_heads * n;
  return SearchMemoryHeads(memory, dims.num_kv_heads, knn->queries.data(), total_rows,
                           dims.head_dim, top_k, &filter, knn->ids.data(), knn->scores.data());
}

absl::Status SearchTopEntries(const KvMemory& memory, int kv_head, const float* query, int head_dim,
                              int top, const SearchFilter& filter,
                              std::vector<TracedEntry>* entries) {
  std::vector<int64_t> ids(top);
  std::vector<float> scores(top);
  absl::Status status =
      memory.Search(kv_head, query, 1, head_dim, top, &filter, ids.data(), scores.data());
  if (!status.ok()) return status;
  for (int j = 0; j < top && ids[j] >= 0; ++j) {
    Provenance provenance;
    status = memory.ReadProvenance(ids[j], 1, &provenance);
    if (!status.ok()) return status;
    entries->push_back({ids[j], provenance, scores[j], 0.0f});
  }
  return absl::OkStatus();
}

}  // namespace fot
