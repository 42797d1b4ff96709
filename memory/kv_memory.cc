#include "memory/kv_memory.h"

namespace fot {

KvMemory::KvMemory(int num_kv_heads, int head_dim)
    : num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      keys_(num_kv_heads),
      values_(num_kv_heads) {}

void KvMemory::Append(const float* keys, const float* values, int64_t n) {
  const int64_t row = static_cast<int64_t>(num_kv_heads_) * head_dim_;
  for (int h = 0; h < num_kv_heads_; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const float* k = keys + i * row + h * head_dim_;
      const float* v = values + i * row + h * head_dim_;
      keys_[h].insert(keys_[h].end(), k, k + head_dim_);
      values_[h].insert(values_[h].end(), v, v + head_dim_);
    }
  }
  size_ += n;
}

void KvMemory::Clear() {
  for (auto& k : keys_) k.clear();
  for (auto& v : values_) v.clear();
  size_ = 0;
}

int64_t KvMemory::bytes() const {
  return 2 * size_ * num_kv_heads_ * head_dim_ * static_cast<int64_t>(sizeof(float));
}

}  // namespace fot
