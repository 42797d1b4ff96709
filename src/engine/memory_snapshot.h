// Saving a stream's memory to a directory and loading it back, so that a
// session survives a restart and a memory built once can be reused.
//
// Layout: dir/MANIFEST (what model and attention the memory belongs to) and
// dir/layer_<l>/head_<h>/ (one KvStore each, see memory/kv_store.h). When
// the stream's cache is saved with it (StreamCache::persistent: lambda's
// sinks and rings) also dir/<kind>/layer_<l>.bin, every layer's
// (StreamCache::Write), e.g. dir/lambda/layer_3.bin: the state a lambda
// stream continues from. A save is written beside the target and swapped in
// whole, so a failed or interrupted save never replaces a good one.
#ifndef FOTSERVE_SRC_ENGINE_MEMORY_SNAPSHOT_H_
#define FOTSERVE_SRC_ENGINE_MEMORY_SNAPSHOT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "src/model/transformer.h"

namespace fot {

// Saves every memory layer's memory of `state` (the memory layers of its
// attention: the config's under fot, attention.memory_layers under lambda);
// not the fot local cache, but under lambda every layer's sinks and ring.
// Every file goes through `env`.
[[nodiscard]] absl::Status SaveMemory(const Transformer& model, const ModelState& state,
                                      const std::string& dir, Env* env = Env::Default());

// What SaveMemory writes, into `dir` (created), which nothing reads yet: a
// directory inside a save's own staging directory, which needs no staging
// and swap of its own. Files and directories are fsynced.
[[nodiscard]] absl::Status WriteMemory(const Transformer& model, const ModelState& state,
                                       const std::string& dir, Env& env);

// A state attending as `attention` says whose memories (and, under lambda,
// sinks and rings) are those saved in dir; under fot its local cache is empty.
// FailedPrecondition if they were saved for a model of another shape or
// another attention (memory saved before lambda existed loads as fot).
absl::StatusOr<ModelState> LoadMemory(const Transformer& model, const std::string& dir,
                                      const AttentionOptions& attention = {});

}  // namespace fot

#endif  // FOTSERVE_SRC_ENGINE_MEMORY_SNAPSHOT_H_
