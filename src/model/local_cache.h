// One layer's local context: the keys and values of the tokens in the current
// window (DESIGN.md §1). Keys are stored already rotated by their position in
// the window; positions only restart when the whole cache is flushed, so a
// stored rotation never goes stale.
#ifndef FOTSERVE_SRC_MODEL_LOCAL_CACHE_H_
#define FOTSERVE_SRC_MODEL_LOCAL_CACHE_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "memory/kv_store.h"

namespace fot {

class LocalCache {
 public:
  // keeps_raw_keys: memory layers that rotate keys also keep the unrotated
  // projection, which is what memory stores when the cache is flushed.
  LocalCache(int num_kv_heads, int head_dim, int capacity, bool keeps_raw_keys);

  int size() const { return size_; }
  int capacity() const { return capacity_; }
  bool keeps_raw_keys() const { return keeps_raw_keys_; }

  // Slots of entry `position` ([num_kv_heads, head_dim] each); valid for
  // position < capacity. Callers write new entries, then call Grow.
  float* keys_at(int position) { return &keys_[Offset(position)]; }
  float* values_at(int position) { return &values_[Offset(position)]; }
  float* raw_keys_at(int position) { return &raw_keys_[Offset(position)]; }
  Provenance* provenance_at(int position) { return &provenance_[position]; }

  // [size, num_kv_heads, head_dim]
  const float* keys() const { return keys_.get(); }
  const float* values() const { return values_.get(); }
  // The unrotated keys: raw_keys when kept, otherwise keys (no rotation applied).
  const float* memory_keys() const { return keeps_raw_keys_ ? raw_keys_.get() : keys_.get(); }
  // Where each entry came from: [size]. What memory records when flushed.
  const Provenance* provenance() const { return provenance_.data(); }

  void Grow(int n) { size_ += n; }
  void Clear() { size_ = 0; }

 private:
  size_t Offset(int position) const { return static_cast<size_t>(position) * row_; }

  int row_;
  int capacity_;
  bool keeps_raw_keys_;
  int size_ = 0;
  // Left uninitialised: a page takes memory only once an entry is written
  // to it, so a cache costs what it holds, not its capacity (a 2048-token
  // window of a 7B-shaped model is 2 GB of keys and values).
  std::unique_ptr<float[]> keys_;       // [capacity, num_kv_heads, head_dim], rotated
  std::unique_ptr<float[]> values_;     // [capacity, num_kv_heads, head_dim]
  std::unique_ptr<float[]> raw_keys_;   // [capacity, num_kv_heads, head_dim] or null
  std::vector<Provenance> provenance_;  // [capacity]
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_LOCAL_CACHE_H_
