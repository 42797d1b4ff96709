// The memory of one memory layer: every (key, value) pair that has left the
// local context, in one KvStore per kv head (DESIGN.md §1: with grouped heads
// memory is stored once per kv head, and every query head of the group
// searches that store).
//
// Keys are the raw key projection ("rotated as position 0"). Entries get ids
// in append order, the same in every head's store.
//
// Thread safety: as KvStore — readers may run concurrently with each other and
// with one writer (Append, DeleteDocument).
#ifndef FOTSERVE_MEMORY_KV_MEMORY_H_
#define FOTSERVE_MEMORY_KV_MEMORY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "memory/kv_store.h"
#include "memory/memory_options.h"

namespace fot {

class KvMemory {
 public:
  static absl::StatusOr<std::unique_ptr<KvMemory>> Create(int num_kv_heads, int head_dim,
                                                          const MemoryOptions& options);

  // Appends n entries. keys and values are [n, num_kv_heads, head_dim], the
  // layout the key/value projections produce; provenance is [n].
  [[nodiscard]] absl::Status Append(const float* keys, const float* values,
                                    const Provenance* provenance, int64_t n);

  // Hides a document's entries from every head's search.
  [[nodiscard]] absl::Status DeleteDocument(int64_t document);

  // Entries appended (deleted ones included).
  int64_t size() const { return stores_.front()->size(); }
  int num_kv_heads() const { return static_cast<int>(stores_.size()); }
  int head_dim() const { return stores_.front()->head_dim(); }
  const MemoryOptions& options() const { return stores_.front()->options(); }
  const KvStore& store(int kv_head) const { return *stores_[kv_head]; }

  // Bytes held by all heads' stores.
  int64_t bytes() const;

  // Saves every head's store under dir/head_<h>; Load reads them back.
  [[nodiscard]] absl::Status Save(const std::string& dir) const;
  static absl::StatusOr<std::unique_ptr<KvMemory>> Load(const std::string& dir, int num_kv_heads);

 private:
  explicit KvMemory(std::vector<std::unique_ptr<KvStore>> stores) : stores_(std::move(stores)) {}

  std::vector<std::unique_ptr<KvStore>> stores_;  // [kv_head]
};

}  // namespace fot

#endif  // FOTSERVE_MEMORY_KV_MEMORY_H_
