#include "src/model/local_cache.h"

namespace fot {

LocalCache::LocalCache(int num_kv_heads, int head_dim, int capacity, bool keeps_raw_keys)
    : row_(num_kv_heads * head_dim),
      capacity_(capacity),
      keeps_raw_keys_(keeps_raw_keys),
      keys_(new float[static_cast<size_t>(capacity) * row_]),
      values_(new float[static_cast<size_t>(capacity) * row_]),
      raw_keys_(keeps_raw_keys ? new float[static_cast<size_t>(capacity) * row_] : nullptr),
      provenance_(capacity) {}

}  // namespace fot
