#include "memory/kv_memory.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace fot {

absl::StatusOr<std::unique_ptr<KvMemory>> KvMemory::Create(int num_kv_heads, int head_dim,
                                                           const MemoryOptions& options) {
  if (num_kv_heads < 1) return absl::InvalidArgumentError("a memory needs at least one kv head");
  std::vector<std::unique_ptr<KvStore>> stores;
  for (int h = 0; h < num_kv_heads; ++h) {
    absl::StatusOr<std::unique_ptr<KvStore>> store = KvStore::Create(head_dim, options);
    if (!store.ok()) return store.status();
    stores.push_back(*std::move(store));
  }
  return std::unique_ptr<KvMemory>(new KvMemory(std::move(stores), nullptr));
}

absl::StatusOr<std::unique_ptr<KvMemory>> KvMemory::CreateOverlay(const KvMemory* base) {
  // A query adds a few windows: exact search over them costs little and keeps
  // the overlay's results those of one exact memory.
  MemoryOptions options;
  options.index_kind = IndexKind::kFlat;
  options.dtype = base->options().dtype;
  std::vector<std::unique_ptr<KvStore>> stores;
  for (int h = 0; h < base->num_kv_heads(); ++h) {
    absl::StatusOr<std::unique_ptr<KvStore>> store = KvStore::Create(base->head_dim(), options);
    if (!store.ok()) return store.status();
    stores.push_back(*std::move(store));
  }
  return std::unique_ptr<KvMemory>(new KvMemory(std::move(stores), base));
}

bool KvMemory::has_deleted() const {
  if (base_ != nullptr && base_->has_deleted()) return true;
  return stores_.front()->live_size() != stores_.front()->size();
}

template <typename Read>
absl::Status KvMemory::SplitRange(int64_t first, int64_t count, Read read) const {
  const int64_t split = base_size();
  if (first < split) {
    const int64_t n = std::min(count, split - first);
    FOT_RETURN_IF_ERROR(read(*base_, first, n, 0));
  }
  const int64_t own_first = std::max(first, split);
  if (own_first < first + count) {
    return read(*this, own_first - split, first + count - own_first, own_first - first);
  }
  return absl::OkStatus();
}

absl::Status KvMemory::ReadKeys(int kv_head, int64_t first, int64_t count, float* out) const {
  const int hd = head_dim();
  return SplitRange(first, count, [&](const KvMemory& m, int64_t f, int64_t n, int64_t at) {
    return &m == this ? m.stores_[kv_head]->ReadKeys(f, n, out + at * hd)
                      : m.ReadKeys(kv_head, f, n, out + at * hd);
  });
}

absl::Status KvMemory::ReadValues(int kv_head, int64_t first, int64_t count, float* out) const {
  const int hd = head_dim();
  return SplitRange(first, count, [&](const KvMemory& m, int64_t f, int64_t n, int64_t at) {
    return &m == this ? m.stores_[kv_head]->ReadValues(f, n, out + at * hd)
                      : m.ReadValues(kv_head, f, n, out + at * hd);
  });
}

absl::Status KvMemory::ReadProvenance(int64_t first, int64_t count, Provenance* out) const {
  return SplitRange(first, count, [&](const KvMemory& m, int64_t f, int64_t n, int64_t at) {
    return &m == this ? m.stores_.front()->ReadProvenance(f, n, out + at)
                      : m.ReadProvenance(f, n, out + at);
  });
}

bool KvMemory::is_deleted(int64_t id) const {
  const int64_t split = base_size();
  return id < split ? base_->is_deleted(id) : stores_.front()->is_deleted(id - split);
}

absl::Status KvMemory::GatherValues(int kv_head, const int64_t* ids, int64_t n, float* out) const {
  if (base_ == nullptr) return stores_[kv_head]->GatherValues(ids, n, out);
  const int hd = head_dim();
  const int64_t split = base_size();
  for (int64_t i = 0; i < n; ++i) {
    FOT_RETURN_IF_ERROR(ids[i] < 0 ? stores_[kv_head]->GatherValues(&ids[i], 1, out + i * hd)
                        : ids[i] < split
                            ? base_->GatherValues(kv_head, &ids[i], 1, out + i * hd)
                            : stores_[kv_head]->ReadValues(ids[i] - split, 1, out + i * hd));
  }
  return absl::OkStatus();
}

absl::Status KvMemory::Search(int kv_head, const float* queries, int64_t nq, int64_t query_stride,
                              int k, const SearchFilter* filter, int64_t* ids,
                              float* scores) const {
  const KvStore& own = *stores_[kv_head];
  if (base_ == nullptr) return own.Search(queries, nq, query_stride, k, filter, ids, scores);
  // Both parts' best k, merged by score.
  const size_t total = static_cast<size_t>(nq) * k;
  std::vector<int64_t> base_ids(total), own_ids(total);
  std::vector<float> base_scores(total), own_scores(total);
  absl::Status status = base_->Search(kv_head, queries, nq, query_stride, k, filter,
                                      base_ids.data(), base_scores.data());
  if (status.ok() && own.size() > 0) {
    status = own.Search(queries, nq, query_stride, k, filter, own_ids.data(), own_scores.data());
  } else {
    std::fill(own_ids.begin(), own_ids.end(), -1);
  }
  if (!status.ok()) return status;
  const int64_t split = base_size();
  for (int64_t q = 0; q < nq; ++q) {
    const size_t row = static_cast<size_t>(q) * k;
    int a = 0, b = 0;
    for (int j = 0; j < k; ++j) {
      const bool take_base =
          a < k && base_ids[row + a] >= 0 &&
          (b >= k || own_ids[row + b] < 0 || base_scores[row + a] >= own_scores[row + b]);
      if (take_base) {
        ids[row + j] = base_ids[row + a];
        scores[row + j] = base_scores[row + a++];
      } else if (b < k && own_ids[row + b] >= 0) {
        ids[row + j] = own_ids[row + b] + split;
        scores[row + j] = own_scores[row + b++];
      } else {
        ids[row + j] = -1;
        scores[row + j] = -std::numeric_limits<float>::infinity();
      }
    }
  }
  return absl::OkStatus();
}

absl::Status KvMemory::Append(const float* keys, const float* values, const Provenance* provenance,
                              int64_t n) {
  const int64_t row = static_cast<int64_t>(num_kv_heads()) * head_dim();
  for (int h = 0; h < num_kv_heads(); ++h) {
    FOT_RETURN_IF_ERROR(stores_[h]->Append(keys + h * head_dim(), row, values + h * head_dim(), row,
                                           provenance, n));
  }
  return absl::OkStatus();
}

absl::Status KvMemory::DeleteDocument(int64_t document) {
  for (auto& store : stores_) {
    FOT_RETURN_IF_ERROR(store->DeleteDocument(document));
  }
  return absl::OkStatus();
}

int64_t KvMemory::bytes() const {
  int64_t total = 0;
  for (const auto& store : stores_) total += store->bytes();
  return total;
}

absl::Status KvMemory::Save(const std::string& dir, Env* env) const {
  FOT_RETURN_IF_ERROR(env->CreateDirs(dir));
  for (int h = 0; h < num_kv_heads(); ++h) {
    FOT_RETURN_IF_ERROR(stores_[h]->Save(absl::StrCat(dir, "/head_", h), env));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KvMemory>> KvMemory::Load(const std::string& dir, int num_kv_heads) {
  std::vector<std::unique_ptr<KvStore>> stores;
  for (int h = 0; h < num_kv_heads; ++h) {
    absl::StatusOr<std::unique_ptr<KvStore>> store = KvStore::Load(absl::StrCat(dir, "/head_", h));
    if (!store.ok()) return store.status();
    stores.push_back(*std::move(store));
  }
  if (stores.empty()) return absl::InvalidArgumentError("a memory needs at least one kv head");
  for (const auto& store : stores) {
    if (store->size() != stores.front()->size()) {
      return absl::DataLossError(absl::StrCat(dir, ": the kv heads hold different entry counts"));
    }
  }
  return std::unique_ptr<KvMemory>(new KvMemory(std::move(stores), nullptr));
}

}  // namespace fot
