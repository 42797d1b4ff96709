// Saving a stream's memory to a directory and loading it back, so that a
// session survives a restart and a memory built once can be reused.
//
// Layout: dir/MANIFEST (what model the memory belongs to) and
// dir/layer_<l>/head_<h>/ (one KvStore each, see memory/kv_store.h). A save is
// written beside the target and swapped in whole, so a failed or interrupted
// save never replaces a good one.
#ifndef FOTSERVE_SRC_MEMORY_SNAPSHOT_H_
#define FOTSERVE_SRC_MEMORY_SNAPSHOT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/transformer.h"

namespace fot {

// Saves every memory layer's memory (not the local cache) of `state`.
[[nodiscard]] absl::Status SaveMemory(const Transformer& model, const ModelState& state,
                                      const std::string& dir);

// Puts directory `staging` at `target` in one step, replacing what was there
// (which is removed). Used for every save that must never be half-written.
[[nodiscard]] absl::Status ReplaceDirectory(const std::string& staging, const std::string& target);

// A fresh state (empty local cache) whose memories are those saved in dir.
// FailedPrecondition if they were saved for a model of another shape.
absl::StatusOr<ModelState> LoadMemory(const Transformer& model, const std::string& dir);

}  // namespace fot

#endif  // FOTSERVE_SRC_MEMORY_SNAPSHOT_H_
