// The memory of one memory layer: every (key, value) pair that has left the
// local context, one store per kv head, appended window by window.
//
// Keys are kept as the raw key projection (DESIGN.md §1: "rotated as position
// 0"). Entries are laid out contiguously per head so that attention can stream
// through them block by block.
//
// Thread safety: const methods may run concurrently; Append and Clear need
// exclusive access.
#ifndef FOTSERVE_MEMORY_KV_MEMORY_H_
#define FOTSERVE_MEMORY_KV_MEMORY_H_

#include <cstdint>
#include <vector>

namespace fot {

class KvMemory {
 public:
  KvMemory(int num_kv_heads, int head_dim);

  // Appends n entries. keys and values are [n, num_kv_heads, head_dim], the
  // layout the key/value projections produce.
  void Append(const float* keys, const float* values, int64_t n);

  // Removes every entry.
  void Clear();

  int64_t size() const { return size_; }
  int num_kv_heads() const { return num_kv_heads_; }
  int head_dim() const { return head_dim_; }

  // [size, head_dim] for one kv head; valid until the next Append or Clear.
  const float* keys(int kv_head) const { return keys_[kv_head].data(); }
  const float* values(int kv_head) const { return values_[kv_head].data(); }

  // Bytes held by keys and values.
  int64_t bytes() const;

 private:
  int num_kv_heads_;
  int head_dim_;
  int64_t size_ = 0;
  std::vector<std::vector<float>> keys_;    // [kv_head][size * head_dim]
  std::vector<std::vector<float>> values_;  // [kv_head][size * head_dim]
};

}  // namespace fot

#endif  // FOTSERVE_MEMORY_KV_MEMORY_H_
