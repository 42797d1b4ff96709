// Writing whole Hugging Face model folders: random-weight models for tests,
// benchmarks and fot-make-model, and folders with caller-chosen weights.
//
// Each call writes only inside `dir`; calls on different folders may run
// concurrently.
#ifndef FOTSERVE_SRC_CHECKPOINT_RANDOM_CHECKPOINT_H_
#define FOTSERVE_SRC_CHECKPOINT_RANDOM_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/safetensors_reader.h"

namespace fot {

struct RandomCheckpointOptions {
  uint32_t seed = 0;          // same seed, same weights (whatever dtype or shard count)
  float init_std = 0.02f;     // matrices ~ N(0, init_std^2); norms ~ 1 + N(0, init_std^2)
  DType dtype = DType::kF32;  // storage dtype of every tensor
  int num_shards = 1;         // 1: model.safetensors; N > 1: N shards + index.json
};

// Creates `dir` if needed and writes config.json plus the weights of every
// tensor in ExpectedTensors(config) (no lm_head.weight when tied). Each
// tensor's values depend only on the seed and its name, so a sharded and a
// single-file checkpoint hold the same floats.
[[nodiscard]] absl::Status WriteRandomCheckpoint(const std::string& dir, const ModelConfig& config,
                                                 const RandomCheckpointOptions& options);

// Creates `dir` if needed and writes config.json plus `tensors` (name -> row-
// major floats, shaped as ExpectedTensors(config) says, or [size] for names it
// does not know), stored as `dtype`, in `num_shards` files. Writes whatever it
// is given, so tests can build checkpoints the loader must reject. A stale
// model.safetensors or index from another layout is removed.
[[nodiscard]] absl::Status WriteCheckpoint(const std::string& dir, const ModelConfig& config,
                                           const std::map<std::string, std::vector<float>>& tensors,
                                           DType dtype = DType::kF32, int num_shards = 1);

// The deterministic random values WriteRandomCheckpoint stores for tensor
// `name` (before rounding to a 16-bit dtype).
std::vector<float> RandomTensorValues(const std::string& name, int64_t count, bool is_norm,
                                      const RandomCheckpointOptions& options);

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_RANDOM_CHECKPOINT_H_
