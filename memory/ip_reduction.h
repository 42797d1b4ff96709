// The reduction of maximum inner-product search to L2 search that the
// approximate indexes (HNSW, IVF) are built on: a key x becomes
// (x, e1, e2, 0...) with |x|² + e1² + e2² = B², so that the L2 order of reduced
// keys to a query (q, 0, 0...) is the inner-product order of the keys. e1 is
// the largest value the key codes store exactly, e2 takes the remainder.
// Keys above the bound B are flagged as overflow and searched exactly.
// Internal to the store (kv_store.cc, kv_store_io.cc). Pure functions.
#ifndef FOTSERVE_MEMORY_IP_REDUCTION_H_
#define FOTSERVE_MEMORY_IP_REDUCTION_H_

#include <cstdint>
#include <vector>

#include "memory/kv_store_internal.h"

namespace fot::kv_internal {

// The key coordinate as stored: fp16 codes round it.
float Stored(const Shape& s, float x);

// The largest squared norm of n keys [n, d] as stored.
double MaxNormSq(const Shape& s, const float* x, int64_t n);

// Reduced keys (x, e1, e2, 0...) [n, aug] of keys [n, d] under the bound
// B² = bound_sq; (*overflow)[i] = 1 where |x| > B (reduced with e1 = e2 = 0).
std::vector<float> Augment(const Shape& s, const float* x, int64_t n, double bound_sq,
                           std::vector<uint8_t>* overflow);

}  // namespace fot::kv_internal

#endif  // FOTSERVE_MEMORY_IP_REDUCTION_H_
