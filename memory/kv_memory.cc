#include "memory/kv_memory.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

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
  return std::unique_ptr<KvMemory>(new KvMemory(std::move(stores)));
}

absl::Status KvMemory::Append(const float* keys, const float* values,
                              const Provenance* provenance, int64_t n) {
  const int64_t row = static_cast<int64_t>(num_kv_heads()) * head_dim();
  for (int h = 0; h < num_kv_heads(); ++h) {
    absl::Status status = stores_[h]->Append(keys + h * head_dim(), row, values + h * head_dim(),
                                             row, provenance, n);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status KvMemory::DeleteDocument(int64_t document) {
  for (auto& store : stores_) {
    absl::Status status = store->DeleteDocument(document);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

int64_t KvMemory::bytes() const {
  int64_t total = 0;
  for (const auto& store : stores_) total += store->bytes();
  return total;
}

absl::Status KvMemory::Save(const std::string& dir) const {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat(dir, ": cannot create: ", error.message()));
  for (int h = 0; h < num_kv_heads(); ++h) {
    absl::Status status = stores_[h]->Save(absl::StrCat(dir, "/head_", h));
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KvMemory>> KvMemory::Load(const std::string& dir,
                                                         int num_kv_heads) {
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
  return std::unique_ptr<KvMemory>(new KvMemory(std::move(stores)));
}

}  // namespace fot
