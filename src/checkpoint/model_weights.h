// The model's weights as float32 matrices, loaded from a Hugging Face folder.
//
// Matrices are row-major with Hugging Face's [out_features, in_features]
// layout: y = W x reads W one row per output. F32 tensors that are 4-byte
// aligned in the file are used in place from the read-only mapping (zero
// copy); F16/BF16 (or unaligned F32) tensors are converted once into buffers
// owned here.
//
// Ownership: ModelWeights owns the mapping and the converted buffers; every
// pointer it hands out is valid while it lives, and stays valid when it is
// moved (the buffers themselves never move). Immutable after Load: safe to
// read from several threads at once.
#ifndef FOTSERVE_SRC_CHECKPOINT_MODEL_WEIGHTS_H_
#define FOTSERVE_SRC_CHECKPOINT_MODEL_WEIGHTS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/safetensors_reader.h"

namespace fot {

// One decoder block. Shapes are [rows, cols], row-major.
struct LayerWeights {
  const float* q_proj = nullptr;                    // [heads * head_dim, hidden]
  const float* k_proj = nullptr;                    // [kv_heads * head_dim, hidden]
  const float* v_proj = nullptr;                    // [kv_heads * head_dim, hidden]
  const float* o_proj = nullptr;                    // [hidden, heads * head_dim]
  const float* gate_proj = nullptr;                 // [intermediate, hidden]
  const float* up_proj = nullptr;                   // [intermediate, hidden]
  const float* down_proj = nullptr;                 // [hidden, intermediate]
  const float* input_layernorm = nullptr;           // [hidden]
  const float* post_attention_layernorm = nullptr;  // [hidden]
};

// A tensor the model needs: its Hugging Face name and expected shape.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// Every tensor a checkpoint for `config` holds, in Hugging Face's order:
// embeddings, then each layer, then the final norm, then lm_head (absent when
// tie_word_embeddings).
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

class ModelWeights {
 public:
  // Validates `config`, opens the checkpoint in `model_dir` (see
  // SafetensorsCheckpoint::Open) and checks that every expected tensor exists
  // with the expected shape. Tensors the model does not use are ignored.
  static absl::StatusOr<ModelWeights> Load(const std::string& model_dir, const ModelConfig& config);

  ModelWeights(ModelWeights&&) noexcept;
  ModelWeights& operator=(ModelWeights&&) noexcept;
  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;
  ~ModelWeights();

  const ModelConfig& config() const { return config_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }

  const float* embed_tokens() const { return embed_tokens_; }  // [vocab, hidden]
  const float* final_norm() const { return final_norm_; }      // [hidden]
  // [vocab, hidden]; the same pointer as embed_tokens() when tied.
  const float* lm_head() const { return lm_head_; }
  const LayerWeights& layer(int i) const { return layers_[static_cast<size_t>(i)]; }

  // Number of weights (tied embeddings counted once).
  int64_t num_parameters() const { return num_parameters_; }
  // Bytes of converted float buffers owned in RAM (0 for an aligned F32 file).
  size_t resident_weight_bytes() const { return resident_bytes_; }
  // Bytes of checkpoint files mapped (shared with the page cache).
  size_t mapped_bytes() const;

 private:
  ModelWeights();

  ModelConfig config_;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
  std::vector<std::unique_ptr<float[]>> owned_;  // converted tensors
  const float* embed_tokens_ = nullptr;
  const float* final_norm_ = nullptr;
  const float* lm_head_ = nullptr;
  std::vector<LayerWeights> layers_;
  int64_t num_parameters_ = 0;
  size_t resident_bytes_ = 0;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_MODEL_WEIGHTS_H_
