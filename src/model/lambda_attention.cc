#include "src/model/lambda_attention.h"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "base/status_macros.h"
#include "src/model/attention_tiles.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

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

void Rotate(const Rope& rope, int rotation, float* vector) {
  if (rotation != LambdaPositions::kNoRotation) rope.Apply(vector, 1, 1, rotation);
}

// Best first; equal scores by id, so every call ranks alike.
bool Better(const LambdaScratch::Candidate& a, const LambdaScratch::Candidate& b) {
  return a.score != b.score ? a.score > b.score : a.id < b.id;
}

// One Step call: what its tiles share, read-only inside the parallel loop.
struct LambdaCall {
  const AttentionDims& dims;
  const LambdaPositions& positions;
  const Rope& rope;
  const float* q;  // [n, num_heads, head_dim], raw
  int n;
  int64_t t0;  // stream position of the call's first token
  int L;
  float scale;
  const SearchFilter& filter;
  const LambdaCache& cache;
  const KvMemory* memory;  // null: a layer without memory
  int64_t memory_size;
  bool knn;
  int top_k;
  const KnnResults& knn_results;
  // Memory leaving the local branch during this call: [in_call_first, in_call_end).
  int64_t in_call_first, in_call_end;
  int in_call;
  Segments segments;
  AttentionTrace* trace;  // null: none
  float* out;

  int group() const { return dims.num_heads / dims.num_kv_heads; }
  int64_t position(const TileRows& tile, int r) const { return t0 + (tile.first_row + r) % n; }
};

// The keys of this call, as runs of one kind and one rotation origin:
// global (the sinks before this call; later sinks are local to every query
// here), local (the ring, where position t0 − L is no query's local key, and
// the new keys) and the in-call memory.
Segments CallSegments(const LambdaCall& c, const float* new_keys, const float* v,
                      const Provenance* provenance) {
  const LambdaCache& cache = c.cache;
  const int kv_stride = c.dims.num_kv_heads * c.dims.head_dim;
  Segments segments;
  auto add_runs = [&](KeyKind kind, int64_t first, int64_t end, bool in_ring) {
    while (first < end) {
      const int64_t origin = first / c.L * c.L;
      const int64_t stop = std::min(end, origin + c.L);
      if (in_ring) {
        const int slot = cache.Slot(first);
        segments.Add({kind, first, stop, origin,
                      kind == KeyKind::kLocal ? cache.ring_keys(slot) : cache.ring_raw_keys(slot),
                      cache.ring_values(slot), cache.ring_provenance(slot)});
      } else {
        const size_t at = static_cast<size_t>(first - c.t0);
        segments.Add({kind, first, stop, origin, new_keys + at * kv_stride, v + at * kv_stride,
                      provenance + at});
      }
      first = stop;
    }
  };
  const int64_t sinks = std::min<int64_t>(cache.n_global(), c.t0);
  if (sinks > 0 && c.t0 + c.n - 1 - c.L >= 0) {
    segments.Add({KeyKind::kGlobal, 0, sinks, 0, cache.sink_keys(), cache.sink_values(), nullptr});
  }
  add_runs(KeyKind::kLocal, std::max<int64_t>(0, c.t0 - c.L + 1), c.t0, /*in_ring=*/true);
  add_runs(KeyKind::kLocal, c.t0, c.t0 + c.n, /*in_ring=*/false);
  add_runs(KeyKind::kMemory, c.in_call_first, c.in_call_end, /*in_ring=*/true);
  return segments;
}

// The unscaled, memory-positioned query of row `row` of kv head g.
void MemoryQuery(const LambdaCall& c, int g, int row, float* dst) {
  const float* src = c.q + RowOffset(c.dims, c.n, g, row);
  std::copy(src, src + c.dims.head_dim, dst);
  Rotate(c.rope, c.positions.QueryRotation(KeyKind::kMemory, c.t0 + row % c.n, 0), dst);
}

// The tile's queries, pre-scaled: unrotated (each key segment rotates its
// own copy) and memory-positioned; an empty softmax.
void StartLambdaTile(const LambdaCall& c, const TileRows& tile, LambdaScratch::Tile* s) {
  const int hd = c.dims.head_dim;
  StartTile(c.dims, c.q, c.n, tile, c.scale, s);
  if (c.memory != nullptr) {
    for (int r = 0; r < tile.rows; ++r) {
      const float* scaled = &s->queries[static_cast<size_t>(r) * hd];
      float* mq = &s->memory_queries[static_cast<size_t>(r) * hd];
      std::copy(scaled, scaled + hd, mq);
      Rotate(c.rope, c.positions.QueryRotation(KeyKind::kMemory, c.position(tile, r), 0), mq);
    }
  }
  std::fill_n(s->in_call.begin(), static_cast<size_t>(tile.rows) * c.in_call, kNegInf);
}

// One segment of global, local or in-call memory keys: scores, the Λ mask,
// one fold. knn keeps the in-call memory scores aside, to be merged with
// FAISS's results.
void FoldSegment(const LambdaCall& c, const Segment& seg, const TileRows& tile,
                 LambdaScratch::Tile* s) {
  const int hd = c.dims.head_dim;
  const int kv_stride = c.dims.num_kv_heads * hd;
  const int rows = tile.rows;
  // Only the positions some row of the tile sees: [begin, end).
  int64_t begin = seg.end, end = seg.first;
  for (int r = 0; r < rows; ++r) {
    const auto [lo, hi] = Visible(seg, c.position(tile, r), c.L);
    if (lo < hi) {
      begin = std::min(begin, lo);
      end = std::max(end, hi);
    }
  }
  if (begin >= end) return;
  const float* queries = s->memory_queries.data();
  if (seg.kind != KeyKind::kMemory) {
    std::copy_n(s->queries.begin(), static_cast<size_t>(rows) * hd, s->rotated.begin());
    for (int r = 0; r < rows; ++r) {
      Rotate(c.rope, c.positions.QueryRotation(seg.kind, c.position(tile, r), seg.origin),
             &s->rotated[static_cast<size_t>(r) * hd]);
    }
    queries = s->rotated.data();
  }
  const int count = static_cast<int>(end - begin);
  const size_t skip = static_cast<size_t>(begin - seg.first);
  const size_t column = static_cast<size_t>(tile.kv_head) * hd;
  ScoreBlock(queries, rows, hd, seg.keys + skip * kv_stride + column, kv_stride, count,
             s->scores.data());
  for (int r = 0; r < rows; ++r) {
    float* row = &s->scores[static_cast<size_t>(r) * count];
    const auto [lo, hi] = Visible(seg, c.position(tile, r), c.L);
    const int visible_begin = static_cast<int>(std::clamp(lo - begin, int64_t{0}, end - begin));
    const int visible_end =
        static_cast<int>(std::clamp(hi - begin, int64_t{visible_begin}, end - begin));
    std::fill(row, row + visible_begin, kNegInf);
    std::fill(row + visible_end, row + count, kNegInf);
    if (seg.kind == KeyKind::kMemory && !c.filter.documents.empty()) {
      for (int j = visible_begin; j < visible_end; ++j) {
        if (!InFilter(c.filter, seg.provenance[skip + j])) row[j] = kNegInf;
      }
    }
    if (c.knn && seg.kind == KeyKind::kMemory) {  // merged with FAISS's in FoldKnnRow
      std::copy(row, row + count,
                &s->in_call[static_cast<size_t>(r) * c.in_call + (begin - c.in_call_first)]);
    }
  }
  if (c.knn && seg.kind == KeyKind::kMemory) return;
  FoldScores(rows, count, hd, seg.values + skip * kv_stride + column, kv_stride, s);
}

// knn: row r's top K of FAISS's results and the in-call entries, folded in;
// traced (shares filled in by FinishLambdaTile) for a last query.
absl::Status FoldKnnRow(const LambdaCall& c, const TileRows& tile, int r, LambdaScratch::Tile* s) {
  const int hd = c.dims.head_dim;
  const int g = tile.kv_head;
  const int row = tile.first_row + r;
  std::vector<LambdaScratch::Candidate>& candidates = s->candidates;
  candidates.clear();
  if (c.memory_size > 0) {
    const size_t at = KnnResultAt(c.group() * c.n, c.top_k, g, row);
    for (int j = 0; j < c.top_k; ++j) {
      if (c.knn_results.ids[at + j] < 0) continue;
      candidates.push_back(
          {c.knn_results.scores[at + j] * c.scale, c.knn_results.ids[at + j], nullptr, {}});
    }
  }
  for (int e = 0; e < c.in_call; ++e) {
    const float score = s->in_call[static_cast<size_t>(r) * c.in_call + e];
    if (score == kNegInf) continue;
    const int slot = c.cache.Slot(c.in_call_first + e);
    candidates.push_back({score, c.memory_size + e, c.cache.ring_values(slot) + g * hd,
                          *c.cache.ring_provenance(slot)});
  }
  const int take = std::min<int>(c.top_k, candidates.size());
  std::partial_sort(candidates.begin(), candidates.begin() + take, candidates.end(), Better);
  candidates.resize(take);
  float* p = s->scores.data();
  for (int j = 0; j < take; ++j) p[j] = candidates[j].score;
  float* output = &s->output[static_cast<size_t>(r) * hd];
  FoldSoftmaxRow(p, take, hd, &s->row_max[r], &s->row_sum[r], output);
  // Values of the FAISS entries, gathered in one call.
  s->gather_ids.clear();
  for (const auto& candidate : candidates) {
    if (candidate.values == nullptr) s->gather_ids.push_back(candidate.id);
  }
  if (!s->gather_ids.empty()) {
    FOT_RETURN_IF_ERROR(c.memory->GatherValues(g, s->gather_ids.data(), s->gather_ids.size(),
                                               s->block_values.data()));
  }
  for (int j = 0, from_memory = 0; j < take; ++j) {
    const float* value = candidates[j].values;
    if (value == nullptr) value = &s->block_values[static_cast<size_t>(from_memory++) * hd];
    cblas_saxpy(hd, p[j], value, 1, output, 1);
  }
  absl::Status status;
  if (c.trace != nullptr && row % c.n == c.n - 1) {
    std::vector<TracedEntry>* entries = &c.trace->heads[g * c.group() + row / c.n];
    for (int j = 0; j < std::min(c.trace->top, take) && status.ok(); ++j) {
      Provenance where = candidates[j].provenance;
      if (candidates[j].values == nullptr) {
        status = c.memory->ReadProvenance(candidates[j].id, 1, &where);
      }
      entries->push_back({candidates[j].id, where, candidates[j].score / c.scale,
                          candidates[j].score});  // share filled in by FinishLambdaTile
    }
  }
  return status;
}

// Dense: the last query's best entries by inner product, FAISS's and
// in-call, into *entries (attention_share holding the scaled score).
absl::Status TraceDenseRow(const LambdaCall& c, const TileRows& tile, int r,
                           std::vector<TracedEntry>* entries) {
  const int hd = c.dims.head_dim;
  const int g = tile.kv_head;
  const int top = c.trace->top;
  std::vector<float> query(hd);
  MemoryQuery(c, g, tile.first_row + r, query.data());
  std::vector<TracedEntry> best;
  absl::Status status;
  if (c.memory_size > 0) {
    status = SearchTopEntries(*c.memory, g, query.data(), hd, top, c.filter, &best);
  }
  const int64_t visible_end = std::min(c.in_call_end, c.position(tile, r) - c.L + 1);
  for (int64_t at = c.in_call_first; at < visible_end; ++at) {
    const int slot = c.cache.Slot(at);
    if (!InFilter(c.filter, *c.cache.ring_provenance(slot))) continue;
    const float* key = c.cache.ring_raw_keys(slot) + g * hd;
    float dot = 0;
    for (int d = 0; d < hd; ++d) dot += query[d] * key[d];
    best.push_back(
        {c.memory_size + (at - c.in_call_first), *c.cache.ring_provenance(slot), dot, 0});
  }
  std::sort(best.begin(), best.end(), [](const TracedEntry& a, const TracedEntry& b) {
    return a.inner_product != b.inner_product ? a.inner_product > b.inner_product : a.id < b.id;
  });
  if (static_cast<int>(best.size()) > top) best.resize(top);
  for (const TracedEntry& e : best) {
    entries->push_back({e.id, e.provenance, e.inner_product, e.inner_product * c.scale});
  }
  return status;
}

// The last queries' traces (scaled score → share of the softmax), then the
// normalised rows scattered back.
absl::Status FinishLambdaTile(const LambdaCall& c, const TileRows& tile, LambdaScratch::Tile* s) {
  absl::Status failure;
  for (int r = 0; c.trace != nullptr && c.memory != nullptr && r < tile.rows; ++r) {
    const int row = tile.first_row + r;
    if (row % c.n != c.n - 1) continue;
    std::vector<TracedEntry>* entries = &c.trace->heads[tile.kv_head * c.group() + row / c.n];
    if (!c.knn) {
      absl::Status status = TraceDenseRow(c, tile, r, entries);
      if (!status.ok()) failure = status;
    }
    for (TracedEntry& entry : *entries) {
      entry.attention_share = std::exp(entry.attention_share - s->row_max[r]) / s->row_sum[r];
    }
  }
  ScatterTile(c.dims, c.n, tile, *s, c.out);
  return failure;
}

// One tile: global, local and in-call keys, memory from before this call,
// one softmax.
absl::Status AttendLambdaTile(const LambdaCall& c, const TileRows& tile, LambdaScratch::Tile* s) {
  StartLambdaTile(c, tile, s);
  for (int i = 0; i < c.segments.size; ++i) FoldSegment(c, c.segments.items[i], tile, s);
  absl::Status status;
  if (c.memory != nullptr && !c.knn && c.memory_size > 0) {
    status = FoldDenseMemory(s->memory_queries.data(), tile.rows, c.dims.head_dim, tile.kv_head,
                             *c.memory, c.filter, s);
  } else if (c.knn) {
    for (int r = 0; r < tile.rows && status.ok(); ++r) status = FoldKnnRow(c, tile, r, s);
  }
  if (!status.ok()) return status;
  return FinishLambdaTile(c, tile, s);
}

}  // namespace

absl::Status LambdaAttend(const AttentionDims& dims, const LambdaPositions& positions,
                          const Rope& rope, const float* q, const float* k, const float* v,
                          const Provenance* provenance, int n, LambdaCache* cache, KvMemory* memory,
                          const Retrieval& retrieval, LambdaScratch* scratch, float* out,
                          AttentionTrace* trace) {
  const int hd = dims.head_dim;
  const int kv_heads = dims.num_kv_heads;
  const int kv_stride = kv_heads * hd;
  const int L = cache->local_window();
  const int64_t t0 = cache->tokens();

  // New keys, rotated by their ring slot.
  const float* new_keys = k;
  if (positions.rotates) {
    scratch->new_keys.assign(k, k + static_cast<size_t>(n) * kv_stride);
    for (int r = 0; r < n; ++r) {
      rope.Apply(&scratch->new_keys[static_cast<size_t>(r) * kv_stride], 1, kv_heads,
                 positions.KeyRotation(KeyKind::kLocal, t0 + r));
    }
    new_keys = scratch->new_keys.data();
  }

  const int64_t in_call_first = std::max<int64_t>({cache->n_global(), t0 - L, 0});
  const int64_t in_call_end =
      memory != nullptr ? std::max(in_call_first, t0 + n - L) : in_call_first;
  const bool knn = memory != nullptr && retrieval.mode == Retrieval::Mode::kKnn;
  LambdaCall call{.dims = dims,
                  .positions = positions,
                  .rope = rope,
                  .q = q,
                  .n = n,
                  .t0 = t0,
                  .L = L,
                  .scale = 1.0f / std::sqrt(static_cast<float>(hd)),
                  .filter = retrieval.filter,
                  .cache = *cache,
                  .memory = memory,
                  .memory_size = memory != nullptr ? memory->size() : 0,
                  .knn = knn,
                  .top_k = knn ? retrieval.top_k : 0,
                  .knn_results = scratch->knn,
                  .in_call_first = in_call_first,
                  .in_call_end = in_call_end,
                  .in_call = static_cast<int>(in_call_end - in_call_first),
                  .segments = {},
                  .trace = trace,
                  .out = out};
  call.segments = CallSegments(call, new_keys, v, provenance);

  // knn: one search per kv head for all its rows (unscaled ⟨q_mem, key⟩).
  const int total_rows = call.group() * n;
  if (knn && call.memory_size > 0) {
    GatherSearchQueries(dims, q, n, call.top_k, &scratch->knn);
    for (int g = 0; g < kv_heads; ++g) {
      for (int row = 0; row < total_rows; ++row) {
        float* query = &scratch->knn.queries[(static_cast<size_t>(g) * total_rows + row) * hd];
        Rotate(rope, positions.QueryRotation(KeyKind::kMemory, t0 + row % n, 0), query);
      }
    }
    FOT_RETURN_IF_ERROR(
        SearchGatheredQueries(*memory, dims, n, call.top_k, retrieval.filter, &scratch->knn));
  }

  const TileGrid grid = TileGrid::For(
      kv_heads, total_rows, cache->n_global() + L + n + (knn ? call.top_k : call.memory_size));
  if (static_cast<int>(scratch->tiles.size()) < grid.threads) scratch->tiles.resize(grid.threads);
  if (trace != nullptr) trace->heads.assign(dims.num_heads, {});
  const int block = std::max({kKeyBlock, L, n, cache->n_global(), call.top_k + call.in_call});
  FOT_RETURN_IF_ERROR(ForEachTile(grid, [&](int thread, const TileRows& tile) {
    LambdaScratch::Tile* s = &scratch->tiles[thread];
    ReserveTile(grid.tile_rows, hd, block, memory != nullptr, s);
    s->rotated.resize(s->queries.size());
    s->memory_queries.resize(s->queries.size());
    s->in_call.resize(static_cast<size_t>(grid.tile_rows) * call.in_call);
    return AttendLambdaTile(call, tile, s);
  }));

  // The tokens that left the local branch go to memory, then the new ones
  // take their ring slots.
  for (int64_t first = in_call_first; first < in_call_end;) {
    const int64_t stop = std::min(in_call_end, first / L * L + L);
    const int slot = cache->Slot(first);
    FOT_RETURN_IF_ERROR(memory->Append(cache->ring_raw_keys(slot), cache->ring_values(slot),
                                       cache->ring_provenance(slot), stop - first));
    first = stop;
  }
  cache->Push(k, new_keys, v, provenance, n);
  return absl::OkStatus();
}

}  // namespace fot
