// Consistency checks of a FAISS index read from a saved store (kv_store_io.cc).
//
// faiss::read_index (1.7.3) checks that the file is long enough, not that
// what it read fits together: an HNSW neighbour, an IVF direct-map entry or
// a list's id may point anywhere, a code size may not match its quantizer.
// The store would then read out of bounds on its first search. A MANIFEST
// checksum catches a damaged file, not a wrong one, so Load checks the index
// itself: every reference in range, every size as the store's options make
// it. Internal to fot_kv_store.
#ifndef FOTSERVE_MEMORY_INDEX_CHECK_H_
#define FOTSERVE_MEMORY_INDEX_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "memory/kv_store_internal.h"
#include "memory/memory_options.h"

namespace faiss {
struct Index;
}  // namespace faiss

namespace fot::kv_internal {

// OK if `index` (of a store with options `o` and shape `s`; `built`: the
// approximate index, else the exact staging one) is one the store could
// have written. DataLoss naming `path` and the first inconsistency
// otherwise.
[[nodiscard]] absl::Status CheckLoadedIndex(const faiss::Index& index, const Shape& s,
                                            const MemoryOptions& o, bool built,
                                            const std::string& path);

}  // namespace fot::kv_internal

#endif  // FOTSERVE_MEMORY_INDEX_CHECK_H_
