#include "src/lambda_cache.h"

#include <cstring>

namespace fot {

LambdaCache::LambdaCache(int num_kv_heads, int head_dim, int n_global, int local_window,
                         bool keeps_raw_keys)
    : row_(num_kv_heads * head_dim),
      n_global_(n_global),
      local_window_(local_window),
      keeps_raw_keys_(keeps_raw_keys),
      sink_keys_(static_cast<size_t>(n_global) * row_),
      sink_values_(sink_keys_.size()),
      ring_keys_(static_cast<size_t>(local_window) * row_),
      ring_raw_keys_(keeps_raw_keys ? ring_keys_.size() : 0),
      ring_values_(ring_keys_.size()),
      ring_provenance_(local_window) {}

void LambdaCache::Push(const float* raw_keys, const float* rotated, const float* values,
                       const Provenance* provenance, int n) {
  const size_t bytes = row_ * sizeof(float);
  for (int r = 0; r < n; ++r) {
    const int64_t position = tokens_ + r;
    const size_t in = static_cast<size_t>(r) * row_;
    if (position < n_global_) {  // a sink: kept unrotated for the whole stream
      std::memcpy(&sink_keys_[position * row_], raw_keys + in, bytes);
      std::memcpy(&sink_values_[position * row_], values + in, bytes);
    }
    const int slot = Slot(position);
    std::memcpy(&ring_keys_[Offset(slot)], rotated + in, bytes);
    if (keeps_raw_keys_) std::memcpy(&ring_raw_keys_[Offset(slot)], raw_keys + in, bytes);
    std::memcpy(&ring_values_[Offset(slot)], values + in, bytes);
    ring_provenance_[slot] = provenance[r];
  }
  tokens_ += n;
}

}  // namespace fot
