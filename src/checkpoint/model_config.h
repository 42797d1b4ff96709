// The model's hyper-parameters, read from a Hugging Face config.json.
//
// Both plain LLaMA ("llama") and LongLLaMA ("longllama") configs load. A llama
// config is a longllama one without memory layers whose local context is the
// whole window (last_context_length = max_position_embeddings).
//
// A ModelConfig is a plain value: copy it freely; it is safe to read from
// several threads at once.
#ifndef FOTSERVE_SRC_CHECKPOINT_MODEL_CONFIG_H_
#define FOTSERVE_SRC_CHECKPOINT_MODEL_CONFIG_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fot {

struct ModelConfig {
  std::string model_type;  // "llama" or "longllama"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;      // default: num_attention_heads (MHA)
  int max_position_embeddings = 0;  // W, the local context window
  // L, the length of the last (cached) window. longllama's field; a llama config
  // without it uses max_position_embeddings.
  int last_context_length = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;   // lm_head shares model.embed_tokens.weight
  std::vector<int> mem_layers;        // memory layer indices (FromJson sorts them); none for llama
  bool mem_positionals = true;        // false: memory layers apply no rotary embedding
  std::string mem_dtype = "float32";  // "float32", "float16" or "bfloat16"
  int bos_token_id = 1;
  int eos_token_id = 2;
  // Where this config was read from (a path or a caller-given name); prefixes
  // every error message. Empty for configs built in code.
  std::string source;

  int head_dim() const { return num_attention_heads > 0 ? hidden_size / num_attention_heads : 0; }
  bool IsMemoryLayer(int layer) const;

  // Parses config.json text. `source_name` (e.g. the file's path) names the
  // source in error messages. The result is validated.
  static absl::StatusOr<ModelConfig> FromJson(std::string_view json_text,
                                              std::string_view source_name);
  // Reads and parses the file at `path` (a config.json, not its folder).
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);

  // A Hugging Face style config.json (architectures, torch_dtype, ...) that
  // FromJson reads back to an equal config. `torch_dtype` is what the weights
  // are stored as: "float32", "float16" or "bfloat16".
  std::string ToJson(std::string_view torch_dtype = "float32") const;

  // Checks every constraint the engine relies on (positive sizes, heads that
  // divide evenly, an even head_dim, mem_layers in range and unique,
  // 1 <= last_context_length <= max_position_embeddings, ...). Messages start
  // with `source` (or "config") and name the field.
  [[nodiscard]] absl::Status Validate() const;
};

// OK if every id lies in [0, config.vocab_size); InvalidArgument naming the
// first that does not and its position.
[[nodiscard]] absl::Status CheckTokenIds(const ModelConfig& config, absl::Span<const int> tokens);

// OK if 1 <= last_context_length <= window (max_position_embeddings): the
// length L of the last window (DESIGN.md §1). InvalidArgument otherwise.
[[nodiscard]] absl::Status CheckLastContextLength(int last_context_length, int window);

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_MODEL_CONFIG_H_
