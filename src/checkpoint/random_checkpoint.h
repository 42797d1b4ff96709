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
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// The shape of a published LongLLaMA checkpoint, for random-weight stand-ins
// of the real size: "longllama-3b" (hidden 3200, 26 layers, 32 heads,
// intermediate 8640, vocab 32000, memory layers 6, 12, 18) or "longllama-7b"
// (the CodeLLaMA-based one: hidden 4096, 32 layers, 32 heads, intermediate
// 11008, vocab 32016, memory layers 8, 16, 24, rope_theta 1e6); both with
// W = 2048, L = 1024 and bfloat16 memory. InvalidArgument names the choices.
absl::StatusOr<ModelConfig> PublishedShape(std::string_view name);

// The deterministic random values WriteRandomCheckpoint stores for tensor
// `name` (before rounding to a 16-bit dtype).
std::vector<float> RandomTensorValues(const std::string& name, int64_t count, bool is_norm,
                                      const RandomCheckpointOptions& options);

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_RANDOM_CHECKPOINT_H_
