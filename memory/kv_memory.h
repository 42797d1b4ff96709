// The memory of one memory layer: every (key, value) pair that has left the
// local context, in one KvStore per kv head (DESIGN.md §1: with grouped heads
// memory is stored once per kv head, and every query head of the group
// searches that store).
//
// Keys are the raw key projection ("rotated as position 0"). Entries get ids
// in append order, the same in every head's store.
//
// An overlay reads a base memory followed by entries of its own and appends
// only to its own: a query's private view of a session's memory (DESIGN.md
// §2). Its own entries are searched exactly; ids continue after the base's.
//
// Thread safety: as KvStore — readers may run concurrently with each other and
// with one writer (Append, DeleteDocument). An overlay's base must not change
// while the overlay is in use.
#ifndef FOTSERVE_MEMORY_KV_MEMORY_H_
#define FOTSERVE_MEMORY_KV_MEMORY_H_

#include <algorithm>
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

  // An empty overlay over `base` (not owned; must outlive the overlay).
  static absl::StatusOr<std::unique_ptr<KvMemory>> CreateOverlay(const KvMemory* base);

  // Appends n entries. keys and values are [n, num_kv_heads, head_dim], the
  // layout the key/value projections produce; provenance is [n].
  [[nodiscard]] absl::Status Append(const float* keys, const float* values,
                                    const Provenance* provenance, int64_t n);

  // Hides a document's entries from every head's search.
  [[nodiscard]] absl::Status DeleteDocument(int64_t document);

  // Entries appended (deleted ones included), the base's too.
  int64_t size() const { return base_size() + stores_.front()->size(); }
  // Whether any entry is deleted (base or own).
  bool has_deleted() const;
  int num_kv_heads() const { return static_cast<int>(stores_.size()); }
  int head_dim() const { return stores_.front()->head_dim(); }
  const MemoryOptions& options() const { return stores_.front()->options(); }
  // This memory's own store of a kv head (an overlay's own entries only).
  const KvStore& store(int kv_head) const { return *stores_[kv_head]; }

  // Reads across base and own entries, as KvStore's, per kv head. Provenance
  // and deletion are the same in every head.
  [[nodiscard]] absl::Status Search(int kv_head, const float* queries, int64_t nq,
                                    int64_t query_stride, int k, const SearchFilter* filter,
                                    int64_t* ids, float* scores) const;
  [[nodiscard]] absl::Status ReadKeys(int kv_head, int64_t first, int64_t count, float* out) const;
  [[nodiscard]] absl::Status ReadValues(int kv_head, int64_t first, int64_t count,
                                        float* out) const;
  [[nodiscard]] absl::Status GatherValues(int kv_head, const int64_t* ids, int64_t n,
                                          float* out) const;
  [[nodiscard]] absl::Status ReadProvenance(int64_t first, int64_t count, Provenance* out) const;
  bool is_deleted(int64_t id) const;

  // Bytes held by all heads' stores.
  int64_t bytes() const;

  // Saves every head's store under dir/head_<h> through `env`; Load reads
  // them back.
  [[nodiscard]] absl::Status Save(const std::string& dir, Env* env = Env::Default()) const;
  static absl::StatusOr<std::unique_ptr<KvMemory>> Load(const std::string& dir, int num_kv_heads);

 private:
  KvMemory(std::vector<std::unique_ptr<KvStore>> stores, const KvMemory* base)
      : base_(base), stores_(std::move(stores)) {}

  int64_t base_size() const { return base_ == nullptr ? 0 : base_->size(); }
  // Calls read(memory, first, count, offset) for the part of [first, first +
  // count) in the base and the part in this memory's own stores.
  template <typename Read>
  absl::Status SplitRange(int64_t first, int64_t count, Read read) const;

  const KvMemory* base_;                          // not owned; null for a plain memory
  std::vector<std::unique_ptr<KvStore>> stores_;  // [kv_head]
};

}  // namespace fot

#endif  // FOTSERVE_MEMORY_KV_MEMORY_H_
