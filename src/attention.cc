#include "src/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "src/kernels.h"

namespace fot {
namespace {

// A tile of query rows times a block of keys is the largest score buffer:
// 256 × 512 floats = 512 KiB, which stays in L2.
constexpr int kTileRows = 256;
constexpr int kKeyBlock = 512;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Running softmax state of one tile of query rows. Rows are (group member j,
// position p) pairs flattened as j * n + p, so a query head group shares each
// key block and one matrix product serves all its heads.
struct Tile {
  int first_row;
  int rows;
  int n;           // queries per head
  int num_cached;  // local positions before the first query
};

// Folds one block of keys into the tile's running softmax:
//   m' = max(m, max s);  l = l·e^(m−m') + Σ e^(s−m');  O = O·e^(m−m') + e^(s−m')·V
// causal: mask local keys beyond each row's own position.
void FoldBlock(const Tile& tile, int head_dim, const float* block_keys, const float* block_values,
               int key_stride, int block_size, bool causal, AttentionScratch* s) {
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
    const float new_max = std::max(s->row_max[r], MaxOf(row, block_size));
    const float block_sum = ExpShiftedSum(row, block_size, new_max);
    const float rescale = s->row_max[r] == kNegInf ? 0.0f : std::exp(s->row_max[r] - new_max);
    s->row_sum[r] = s->row_sum[r] * rescale + block_sum;
    s->row_max[r] = new_max;
    if (rescale != 1.0f) {
      float* o = s->output.data() + static_cast<size_t>(r) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] *= rescale;
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tile.rows, head_dim, block_size, 1.0f,
              scores, block_size, block_values, key_stride, 1.0f, s->output.data(), head_dim);
}

}  // namespace

void Attend(const AttentionDims& dims, const float* q, int n, int num_cached, const float* keys,
            const float* values, const KvMemory* memory, AttentionScratch* scratch, float* out) {
  const int hd = dims.head_dim;
  const int group = dims.num_heads / dims.num_kv_heads;
  const int total_rows = group * n;
  const int num_local = num_cached + n;
  const int kv_stride = dims.num_kv_heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  const int tile_rows = std::min(kTileRows, total_rows);
  const int max_block = std::max(kKeyBlock, num_local);
  scratch->queries.resize(static_cast<size_t>(tile_rows) * hd);
  scratch->output.resize(static_cast<size_t>(tile_rows) * hd);
  scratch->scores.resize(static_cast<size_t>(tile_rows) * max_block);
  scratch->row_max.resize(tile_rows);
  scratch->row_sum.resize(tile_rows);

  for (int g = 0; g < dims.num_kv_heads; ++g) {
    for (int first = 0; first < total_rows; first += tile_rows) {
      const Tile tile{first, std::min(tile_rows, total_rows - first), n, num_cached};
      // Gather this tile's query rows, pre-scaled.
      for (int r = 0; r < tile.rows; ++r) {
        const int row = first + r;
        const int head = g * group + row / n;
        const float* src = q + (static_cast<size_t>(row % n) * dims.num_heads + head) * hd;
        float* dst = scratch->queries.data() + static_cast<size_t>(r) * hd;
        for (int d = 0; d < hd; ++d) dst[d] = src[d] * scale;
      }
      std::fill_n(scratch->output.begin(), static_cast<size_t>(tile.rows) * hd, 0.0f);
      std::fill_n(scratch->row_max.begin(), tile.rows, kNegInf);
      std::fill_n(scratch->row_sum.begin(), tile.rows, 0.0f);

      if (memory != nullptr) {
        const float* mk = memory->keys(g);
        const float* mv = memory->values(g);
        for (int64_t b = 0; b < memory->size(); b += kKeyBlock) {
          const int size = static_cast<int>(std::min<int64_t>(kKeyBlock, memory->size() - b));
          FoldBlock(tile, hd, mk + b * hd, mv + b * hd, hd, size, /*causal=*/false, scratch);
        }
      }
      FoldBlock(tile, hd, keys + g * hd, values + g * hd, kv_stride, num_local, /*causal=*/true,
                scratch);

      // Normalise and scatter back to [position, head, head_dim].
      for (int r = 0; r < tile.rows; ++r) {
        const int row = first + r;
        const int head = g * group + row / n;
        const float inv_sum = 1.0f / scratch->row_sum[r];
        const float* o = scratch->output.data() + static_cast<size_t>(r) * hd;
        float* dst = out + (static_cast<size_t>(row % n) * dims.num_heads + head) * hd;
        for (int d = 0; d < hd; ++d) dst[d] = o[d] * inv_sum;
      }
    }
  }
}

}  // namespace fot
