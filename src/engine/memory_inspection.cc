#include "src/engine/memory_inspection.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace fot {
namespace {

absl::StatusOr<const KvMemory*> MemoryOf(const ModelState& state, int layer) {
  if (layer < 0 || layer >= static_cast<int>(state.memory.size()) ||
      state.memory[layer] == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " has no memory"));
  }
  return state.memory[layer].get();
}

MemoryEntry EntryOf(const KvStore& store, int64_t id) {
  return {id, store.provenance(id), store.is_deleted(id)};
}

}  // namespace

MemoryStats GetMemoryStats(const ModelState& state) {
  MemoryStats stats;
  std::set<int64_t> documents;
  for (int l = 0; l < static_cast<int>(state.memory.size()); ++l) {
    const KvMemory* memory = state.memory[l].get();
    if (memory == nullptr) continue;
    LayerStats layer{l, DescribeOptions(memory->options()), {}};
    for (int h = 0; h < memory->num_kv_heads(); ++h) {
      const KvStore& store = memory->store(h);
      layer.heads.push_back(
          {h, store.size(), store.live_size(), store.bytes(), store.search_counters()});
      stats.bytes += store.bytes();
      for (int64_t d : store.Documents()) documents.insert(d);
    }
    stats.layers.push_back(std::move(layer));
  }
  stats.documents.assign(documents.begin(), documents.end());
  return stats;
}

absl::StatusOr<std::vector<MemoryEntry>> ListMemoryEntries(const ModelState& state, int layer,
                                                           int64_t offset, int64_t limit) {
  FOT_ASSIGN_OR_RETURN(const KvMemory* memory, MemoryOf(state, layer));
  if (offset < 0 || limit < 0) {
    return absl::InvalidArgumentError("offset and limit must not be negative");
  }
  const KvStore& store = memory->store(0);
  std::vector<MemoryEntry> entries;
  for (int64_t id = offset; id < std::min(store.size(), offset + limit); ++id) {
    entries.push_back(EntryOf(store, id));
  }
  return entries;
}

absl::StatusOr<std::vector<MemoryEntry>> MemoryEntryContext(const ModelState& state, int layer,
                                                            int64_t id, int radius) {
  FOT_ASSIGN_OR_RETURN(const KvMemory* memory, MemoryOf(state, layer));
  const KvStore& store = memory->store(0);
  if (id < 0 || id >= store.size()) {
    return absl::NotFoundError(absl::StrCat("no memory entry ", id, " in layer ", layer,
                                            " (it holds ", store.size(), ")"));
  }
  if (radius < 0) return absl::InvalidArgumentError("radius must not be negative");
  // Entries are appended in stream order, so a document's tokens are
  // contiguous runs of ids; scan outwards while the document matches.
  const Provenance center = store.provenance(id);
  auto near = [&](int64_t other) {
    const Provenance p = store.provenance(other);
    return p.document == center.document && std::abs(p.position - center.position) <= radius;
  };
  int64_t begin = id, end = id + 1;
  while (begin > 0 && near(begin - 1)) --begin;
  while (end < store.size() && near(end)) ++end;
  std::vector<MemoryEntry> entries;
  for (int64_t i = begin; i < end; ++i) entries.push_back(EntryOf(store, i));
  return entries;
}

absl::StatusOr<std::vector<RetrievedEntry>> SearchMemory(const ModelState& state, int layer,
                                                         int kv_head, const float* query, int k) {
  FOT_ASSIGN_OR_RETURN(const KvMemory* memory, MemoryOf(state, layer));
  if (kv_head < 0 || kv_head >= memory->num_kv_heads()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv head ", kv_head, " out of range [0, ", memory->num_kv_heads(), ")"));
  }
  if (k < 1) return absl::InvalidArgumentError("k must be at least 1");
  const KvStore& store = memory->store(kv_head);
  const int hd = store.head_dim();
  std::vector<int64_t> ids(k);
  std::vector<float> scores(k);
  FOT_RETURN_IF_ERROR(store.Search(query, 1, hd, k, nullptr, ids.data(), scores.data()));

  // The softmax normaliser over every live entry, streamed block by block.
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float top = scores[0] * scale;
  double normaliser = 0;
  constexpr int64_t kBlock = 4096;
  std::vector<float> keys(kBlock * hd);
  for (int64_t b = 0; b < store.size(); b += kBlock) {
    const int64_t count = std::min(kBlock, store.size() - b);
    FOT_RETURN_IF_ERROR(store.ReadKeys(b, count, keys.data()));
    for (int64_t i = 0; i < count; ++i) {
      if (store.is_deleted(b + i)) continue;
      double dot = 0;
      for (int d = 0; d < hd; ++d) dot += static_cast<double>(query[d]) * keys[i * hd + d];
      normaliser += std::exp(dot * scale - top);
    }
  }
  std::vector<RetrievedEntry> retrieved;
  for (int j = 0; j < k && ids[j] >= 0; ++j) {
    retrieved.push_back({EntryOf(store, ids[j]), scores[j],
                         static_cast<float>(std::exp(scores[j] * scale - top) / normaliser)});
  }
  return retrieved;
}

}  // namespace fot
