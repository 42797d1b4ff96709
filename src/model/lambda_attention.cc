#include "src/model/lambda_attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "base/status_macros.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

// As attention.cc: a tile of query rows times a block of keys is the largest
// score buffer. Rows are (group member j, position p) pairs flattened as
// j * n + p, so a query head group shares each key block.
constexpr int kTileRows = 256;
constexpr int kKeyBlock = 512;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Keys at consecutive stream positions [first, end), all of one kind, stored
// kv_stride floats apart: a run of sinks, of ring slots or of new keys.
struct Segment {
  KeyKind kind;
  int64_t first, end;
  int64_t origin;     // local keys: L·⌊first/L⌋, their rotation origin
  const float* keys;  // entry `first`, [num_kv_heads, head_dim]
  const float* values;
  const Provenance* provenance;  // [end − first]
  int count() const { return static_cast<int>(end - first); }
};

// Up to 7 segments: sinks, 2 ring runs, 2 runs of new keys, 2 memory runs.
struct Segments {
  std::array<Segment, 8> items;
  int size = 0;
  void Add(const Segment& segment) { items[size++] = segment; }
};

// The positions of `segment` that the query at t sees, [lo, hi) (the Λ mask).
std::pair<int64_t, int64_t> Visible(const Segment& segment, int64_t t, int local_window) {
  if (segment.kind == KeyKind::kLocal) {
    return {std::max(segment.first, t - local_window + 1), std::min(segment.end, t + 1)};
  }
  // Global and memory keys: those that have left the local branch.
  return {segment.first, std::min(segment.end, t - local_window + 1)};
}

bool InFilter(const SearchFilter& filter, const Provenance& provenance) {
  return filter.documents.empty() || std::find(filter.documents.begin(), filter.documents.end(),
                                               provenance.document) != filter.documents.end();
}

// scores[rows, count] = queries[rows, hd] · keys[count, hd (stride)]ᵀ
void Scores(const float* queries, int rows, int head_dim, const float* keys, int key_stride,
            int count, float* scores) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, count, head_dim, 1.0f, queries,
              head_dim, keys, key_stride, 0.0f, scores, count);
}

// Folds masked score rows into the tile, then output += P · values.
void FoldScores(int rows, int count, int head_dim, const float* values, int value_stride,
                LambdaScratch::Tile* s) {
  float* scores = s->scores.data();
  for (int r = 0; r < rows; ++r) {
    FoldSoftmaxRow(scores + static_cast<size_t>(r) * count, count, head_dim, &s->row_max[r],
                   &s->row_sum[r], s->output.data() + static_cast<size_t>(r) * head_dim);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, head_dim, count, 1.0f, scores, count,
              values, value_stride, 1.0f, s->output.data(), head_dim);
}

void Rotate(const Rope& rope, int rotation, float* vector) {
  if (rotation != LambdaPositions::kNoRotation) rope.Apply(vector, 1, 1, rotation);
}

// Best first; equal scores by id, so every call ranks alike.
bool Better(const LambdaScratch::Candidate& a, const LambdaScratch::Candidate& b) {
  return a.score != b.score ? a.score > b.score : a.id < b.id;
}

}  // namespace

LambdaAttention::LambdaAttention(int head_dim, float rope_theta, int max_local_window)
    : rope_(head_dim, rope_theta, LambdaPositions::TableSize(max_local_window)) {}

absl::Status LambdaAttention::Step(const AttentionDims& dims, const LambdaPositions& positions,
                                   const float* q, const float* k, const float* v,
                                   const Provenance* provenance, int n, LambdaCache* cache,
                                   KvMemory* memory, const Retrieval& retrieval,
                                   LambdaScratch* scratch, float* out,
                                   AttentionTrace* trace) const {
  const int hd = dims.head_dim;
  const int kv_heads = dims.num_kv_heads;
  const int group = dims.num_heads / kv_heads;
  const int total_rows = group * n;
  const int kv_stride = kv_heads * hd;
  const int L = cache->local_window();
  const int64_t t0 = cache->tokens();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const SearchFilter& filter = retrieval.filter;

  // New keys, rotated by their ring slot.
  const float* new_keys = k;
  if (positions.rotates) {
    scratch->new_keys.assign(k, k + static_cast<size_t>(n) * kv_stride);
    for (int r = 0; r < n; ++r) {
      rope_.Apply(&scratch->new_keys[static_cast<size_t>(r) * kv_stride], 1, kv_heads,
                  positions.KeyRotation(KeyKind::kLocal, t0 + r));
    }
    new_keys = scratch->new_keys.data();
  }

  // The keys of this call, as runs of one kind and one rotation origin.
  Segments segments;
  auto add_runs = [&](KeyKind kind, int64_t first, int64_t end, bool in_ring) {
    while (first < end) {
      const int64_t origin = first / L * L;
      const int64_t stop = std::min(end, origin + L);
      if (in_ring) {
        const int slot = cache->Slot(first);
        segments.Add({kind, first, stop, origin,
                      kind == KeyKind::kLocal ? cache->ring_keys(slot) : cache->ring_raw_keys(slot),
                      cache->ring_values(slot), cache->ring_provenance(slot)});
      } else {
        const size_t at = static_cast<size_t>(first - t0);
        segments.Add({kind, first, stop, origin, new_keys + at * kv_stride, v + at * kv_stride,
                      provenance + at});
      }
      first = stop;
    }
  };
  // global: the sinks before this call (later sinks are local to every query here)
  const int64_t sinks = std::min<int64_t>(cache->n_global(), t0);
  if (sinks > 0 && t0 + n - 1 - L >= 0) {
    segments.Add(
        {KeyKind::kGlobal, 0, sinks, 0, cache->sink_keys(), cache->sink_values(), nullptr});
  }
  // local: the ring (position t0 − L is no query's local key) and the new keys
  add_runs(KeyKind::kLocal, std::max<int64_t>(0, t0 - L + 1), t0, /*in_ring=*/true);
  add_runs(KeyKind::kLocal, t0, t0 + n, /*in_ring=*/false);
  // memory leaving the local branch during this call: [in_call_first, in_call_end)
  const int64_t in_call_first = std::max<int64_t>({cache->n_global(), t0 - L, 0});
  const int64_t in_call_end =
      memory != nullptr ? std::max(in_call_first, t0 + n - L) : in_call_first;
  const int in_call = static_cast<int>(in_call_end - in_call_first);
  add_runs(KeyKind::kMemory, in_call_first, in_call_end, /*in_ring=*/true);

  const int64_t memory_size = memory != nullptr ? memory->size() : 0;
  const bool knn = memory != nullptr && retrieval.mode == Retrieval::Mode::kKnn;
  const int top_k = knn ? retrieval.top_k : 0;

  // The unscaled, memory-positioned query of row `row` of kv head g.
  auto memory_query = [&](int g, int row, float* dst) {
    const int p = row % n;
    const float* src = q + (static_cast<size_t>(p) * dims.num_heads + g * group + row / n) * hd;
    std::copy(src, src + hd, dst);
    Rotate(rope_, positions.QueryRotation(KeyKind::kMemory, t0 + p, 0), dst);
  };

  // knn: one search per kv head for all its rows (unscaled ⟨q_mem, key⟩).
  const size_t per_head = static_cast<size_t>(total_rows) * top_k;
  if (knn && memory_size > 0) {
    const size_t head_queries = static_cast<size_t>(total_rows) * hd;
    scratch->search_queries.resize(head_queries * kv_heads);
    scratch->ids.resize(per_head * kv_heads);
    scratch->search_scores.resize(per_head * kv_heads);
    for (int g = 0; g < kv_heads; ++g) {
      for (int row = 0; row < total_rows; ++row) {
        memory_query(g, row, &scratch->search_queries[g * head_queries + row * hd]);
      }
    }
    FOT_RETURN_IF_ERROR(SearchMemoryHeads(*memory, kv_heads, scratch->search_queries.data(),
                                          total_rows, hd, top_k, &filter, scratch->ids.data(),
                                          scratch->search_scores.data()));
  }

  const int tile_rows = std::min(kTileRows, total_rows);
  const int tiles_per_head = (total_rows + tile_rows - 1) / tile_rows;
  const int items = kv_heads * tiles_per_head;
  const int64_t memory_read = knn ? top_k : memory_size;
  const int64_t work =
      static_cast<int64_t>(total_rows) * (cache->n_global() + L + n + memory_read) * kv_heads;
  const int threads = work < (1 << 14) ? 1 : std::min(omp_get_max_threads(), items);
  if (static_cast<int>(scratch->tiles.size()) < threads) scratch->tiles.resize(threads);
  if (trace != nullptr) trace->heads.assign(dims.num_heads, {});
  std::vector<absl::Status> failures(threads);

#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int item = 0; item < items; ++item) {
    const int thread = omp_get_thread_num();
    if (!failures[thread].ok()) continue;
    LambdaScratch::Tile* s = &scratch->tiles[thread];
    const int block = std::max({kKeyBlock, L, n, cache->n_global(), top_k + in_call});
    s->queries.resize(static_cast<size_t>(tile_rows) * hd);
    s->rotated.resize(s->queries.size());
    s->memory_queries.resize(s->queries.size());
    s->output.resize(s->queries.size());
    s->scores.resize(static_cast<size_t>(tile_rows) * block);
    s->in_call.resize(static_cast<size_t>(tile_rows) * in_call);
    s->row_max.resize(tile_rows);
    s->row_sum.resize(tile_rows);
    if (memory != nullptr) {
      s->block_keys.resize(static_cast<size_t>(block) * hd);
      s->block_values.resize(static_cast<size_t>(block) * hd);
      s->block_live.resize(block);
      s->block_provenance.resize(block);
    }

    const int g = item / tiles_per_head;
    const int first_row = (item % tiles_per_head) * tile_rows;
    const int rows = std::min(tile_rows, total_rows - first_row);
    auto position = [&](int r) { return t0 + (first_row + r) % n; };
    // This tile's query rows, pre-scaled, unrotated; and memory-positioned.
    for (int r = 0; r < rows; ++r) {
      const int row = first_row + r;
      const float* src =
          q + (static_cast<size_t>(row % n) * dims.num_heads + g * group + row / n) * hd;
      float* dst = &s->queries[static_cast<size_t>(r) * hd];
      for (int d = 0; d < hd; ++d) dst[d] = src[d] * scale;
      if (memory != nullptr) {
        float* mq = &s->memory_queries[static_cast<size_t>(r) * hd];
        std::copy(dst, dst + hd, mq);
        Rotate(rope_, positions.QueryRotation(KeyKind::kMemory, position(r), 0), mq);
      }
    }
    std::fill_n(s->output.begin(), static_cast<size_t>(rows) * hd, 0.0f);
    std::fill_n(s->row_max.begin(), rows, kNegInf);
    std::fill_n(s->row_sum.begin(), rows, 0.0f);
    std::fill_n(s->in_call.begin(), static_cast<size_t>(rows) * in_call, kNegInf);

    // Global, local and in-call memory keys: scores, the Λ mask, one fold.
    for (int i = 0; i < segments.size; ++i) {
      const Segment& seg = segments.items[i];
      // Only the positions some row of the tile sees: [begin, end).
      int64_t begin = seg.end, end = seg.first;
      for (int r = 0; r < rows; ++r) {
        const auto [lo, hi] = Visible(seg, position(r), L);
        if (lo < hi) {
          begin = std::min(begin, lo);
          end = std::max(end, hi);
        }
      }
      if (begin >= end) continue;
      const float* queries = s->memory_queries.data();
      if (seg.kind != KeyKind::kMemory) {
        std::copy_n(s->queries.begin(), static_cast<size_t>(rows) * hd, s->rotated.begin());
        for (int r = 0; r < rows; ++r) {
          Rotate(rope_, positions.QueryRotation(seg.kind, position(r), seg.origin),
                 &s->rotated[static_cast<size_t>(r) * hd]);
        }
        queries = s->rotated.data();
      }
      const int count = static_cast<int>(end - begin);
      const size_t skip = static_cast<size_t>(begin - seg.first);
      Scores(queries, rows, hd, seg.keys + skip * kv_stride + g * hd, kv_stride, count,
             s->scores.data());
      for (int r = 0; r < rows; ++r) {
        float* row = &s->scores[static_cast<size_t>(r) * count];
        const auto [lo, hi] = Visible(seg, position(r), L);
        const int visible_begin = static_cast<int>(std::clamp(lo - begin, int64_t{0}, end - begin));
        const int visible_end =
            static_cast<int>(std::clamp(hi - begin, int64_t{visible_begin}, end - begin));
        std::fill(row, row + visible_begin, kNegInf);
        std::fill(row + visible_end, row + count, kNegInf);
        if (seg.kind == KeyKind::kMemory && !filter.documents.empty()) {
          for (int j = visible_begin; j < visible_end; ++j) {
            if (!InFilter(filter, seg.provenance[skip + j])) row[j] = kNegInf;
          }
        }
        if (knn && seg.kind == KeyKind::kMemory) {  // merged with FAISS's below
          std::copy(row, row + count,
                    &s->in_call[static_cast<size_t>(r) * in_call + (begin - in_call_first)]);
        }
      }
      if (knn && seg.kind == KeyKind::kMemory) continue;
      FoldScores(rows, count, hd, seg.values + skip * kv_stride + g * hd, kv_stride, s);
    }

    // Memory before this call.
    absl::Status status;
    if (memory != nullptr && !knn && memory_size > 0) {
      // dense: every entry, block by block
      const bool masked = memory->has_deleted() || !filter.documents.empty();
      for (int64_t b = 0; b < memory_size && status.ok(); b += kKeyBlock) {
        const int count = static_cast<int>(std::min<int64_t>(kKeyBlock, memory_size - b));
        status = memory->ReadKeys(g, b, count, s->block_keys.data());
        if (status.ok()) status = memory->ReadValues(g, b, count, s->block_values.data());
        if (masked && status.ok()) {
          status = memory->ReadProvenance(b, count, s->block_provenance.data());
          for (int j = 0; j < count; ++j) {
            s->block_live[j] =
                !memory->is_deleted(b + j) && InFilter(filter, s->block_provenance[j]);
          }
        }
        if (!status.ok()) break;
        Scores(s->memory_queries.data(), rows, hd, s->block_keys.data(), hd, count,
               s->scores.data());
        if (masked) {
          for (int r = 0; r < rows; ++r) {
            float* row = &s->scores[static_cast<size_t>(r) * count];
            for (int j = 0; j < count; ++j) row[j] = s->block_live[j] ? row[j] : kNegInf;
          }
        }
        FoldScores(rows, count, hd, s->block_values.data(), hd, s);
      }
    } else if (knn) {
      // knn: per row, the top K of FAISS's results and the in-call entries
      for (int r = 0; r < rows && status.ok(); ++r) {
        const int row = first_row + r;
        std::vector<LambdaScratch::Candidate>& candidates = s->candidates;
        candidates.clear();
        if (memory_size > 0) {
          const size_t at = g * per_head + static_cast<size_t>(row) * top_k;
          for (int j = 0; j < top_k; ++j) {
            if (scratch->ids[at + j] < 0) continue;
            candidates.push_back(
                {scratch->search_scores[at + j] * scale, scratch->ids[at + j], nullptr, {}});
          }
        }
        for (int c = 0; c < in_call; ++c) {
          const float score = s->in_call[static_cast<size_t>(r) * in_call + c];
          if (score == kNegInf) continue;
          const int slot = cache->Slot(in_call_first + c);
          candidates.push_back({score, memory_size + c, cache->ring_values(slot) + g * hd,
                                *cache->ring_provenance(slot)});
        }
        const int take = std::min<int>(top_k, candidates.size());
        std::partial_sort(candidates.begin(), candidates.begin() + take, candidates.end(), Better);
        candidates.resize(take);
        float* p = s->scores.data();
        for (int j = 0; j < take; ++j) p[j] = candidates[j].score;
        float* output = &s->output[static_cast<size_t>(r) * hd];
        FoldSoftmaxRow(p, take, hd, &s->row_max[r], &s->row_sum[r], output);
        // Values of the FAISS entries, gathered in one call.
        s->gather_ids.clear();
        for (const auto& c : candidates) {
          if (c.values == nullptr) s->gather_ids.push_back(c.id);
        }
        if (!s->gather_ids.empty()) {
          status = memory->GatherValues(g, s->gather_ids.data(), s->gather_ids.size(),
                                        s->block_values.data());
          if (!status.ok()) break;
        }
        for (int j = 0, from_memory = 0; j < take; ++j) {
          const float* value = candidates[j].values;
          if (value == nullptr) value = &s->block_values[static_cast<size_t>(from_memory++) * hd];
          cblas_saxpy(hd, p[j], value, 1, output, 1);
        }
        if (trace != nullptr && row % n == n - 1) {
          std::vector<TracedEntry>* entries = &trace->heads[g * group + row / n];
          for (int j = 0; j < std::min(trace->top, take) && status.ok(); ++j) {
            Provenance where = candidates[j].provenance;
            if (candidates[j].values == nullptr) {
              status = memory->ReadProvenance(candidates[j].id, 1, &where);
            }
            entries->push_back({candidates[j].id, where, candidates[j].score / scale,
                                candidates[j].score});  // share filled in below
          }
        }
      }
    }
    if (!status.ok()) {
      failures[thread] = status;
      continue;
    }

    // Normalise, trace, scatter back to [position, head, head_dim].
    for (int r = 0; r < rows; ++r) {
      const int row = first_row + r;
      if (trace != nullptr && memory != nullptr && row % n == n - 1) {
        std::vector<TracedEntry>* entries = &trace->heads[g * group + row / n];
        if (!knn) {  // dense: the best entries by inner product, FAISS's and in-call
          std::vector<LambdaScratch::Candidate> best;
          std::vector<float> query(hd);
          memory_query(g, row, query.data());
          const int top = trace->top;
          if (memory_size > 0) {
            std::vector<int64_t> ids(top);
            std::vector<float> scores(top);
            status =
                memory->Search(g, query.data(), 1, hd, top, &filter, ids.data(), scores.data());
            for (int j = 0; j < top && status.ok() && ids[j] >= 0; ++j) {
              Provenance where;
              status = memory->ReadProvenance(ids[j], 1, &where);
              best.push_back({scores[j], ids[j], nullptr, where});
            }
          }
          const int64_t visible_end = std::min(in_call_end, position(r) - L + 1);
          for (int64_t at = in_call_first; at < visible_end; ++at) {
            const int slot = cache->Slot(at);
            if (!InFilter(filter, *cache->ring_provenance(slot))) continue;
            const float* key = cache->ring_raw_keys(slot) + g * hd;
            float dot = 0;
            for (int d = 0; d < hd; ++d) dot += query[d] * key[d];
            best.push_back(
                {dot, memory_size + (at - in_call_first), nullptr, *cache->ring_provenance(slot)});
          }
          std::sort(best.begin(), best.end(), Better);
          if (static_cast<int>(best.size()) > top) best.resize(top);
          for (const auto& c : best) {
            entries->push_back({c.id, c.provenance, c.score, c.score * scale});
          }
          if (!status.ok()) failures[thread] = status;
        }
        for (TracedEntry& entry : *entries) {  // scaled score → share of the softmax
          entry.attention_share = std::exp(entry.attention_share - s->row_max[r]) / s->row_sum[r];
        }
      }
      const float inv_sum = 1.0f / s->row_sum[r];
      const float* o = &s->output[static_cast<size_t>(r) * hd];
      float* dst = out + (static_cast<size_t>(row % n) * dims.num_heads + g * group + row / n) * hd;
      for (int d = 0; d < hd; ++d) dst[d] = o[d] * inv_sum;
    }
  }
  for (const absl::Status& failure : failures) {
    if (!failure.ok()) return failure;
  }

  // The tokens that left the local branch go to memory, then the new ones
  // take their ring slots.
  for (int64_t first = in_call_first; first < in_call_end;) {
    const int64_t stop = std::min(in_call_end, first / L * L + L);
    const int slot = cache->Slot(first);
    absl::Status status = memory->Append(cache->ring_raw_keys(slot), cache->ring_values(slot),
                                         cache->ring_provenance(slot), stop - first);
    if (!status.ok()) return status;
    first = stop;
  }
  cache->Push(k, new_keys, v, provenance, n);
  return absl::OkStatus();
}

}  // namespace fot
