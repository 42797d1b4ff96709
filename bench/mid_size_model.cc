#include "bench/mid_size_model.h"

#include <filesystem>

#include "base/status_macros.h"
#include "src/checkpoint/random_checkpoint.h"

namespace fot {

ModelConfig MidSizeConfig() {
  ModelConfig c;
  c.model_type = "longllama";
  c.vocab_size = 32000;
  c.hidden_size = 512;
  c.intermediate_size = 1376;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.max_position_embeddings = 512;
  c.last_context_length = 256;
  c.mem_layers = {3, 6};
  return c;
}

std::string MidSizeModelDir() {
  return (std::filesystem::temp_directory_path() / "fotserve_bench_mid_model").string();
}

absl::StatusOr<std::unique_ptr<Engine>> LoadMidSizeModel(const WeightsOptions& weights) {
  const std::string dir = MidSizeModelDir();
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    RandomCheckpointOptions options;
    options.seed = 1;
    FOT_RETURN_IF_ERROR(WriteRandomCheckpoint(dir, MidSizeConfig(), options));
  }
  return Engine::Load(dir, weights);
}

}  // namespace fot
