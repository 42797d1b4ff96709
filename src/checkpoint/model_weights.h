// The model's weights, loaded from a Hugging Face folder.
//
// Matrices are WeightMatrix views (weight_matrix.h), row-major with Hugging
// Face's [out_features, in_features] layout: y = W x reads W one row per
// output. By default (WeightsDType::kAuto) they keep the file's dtype: F32,
// F16 and BF16 tensors aligned to their element size are used in place from
// the read-only mapping (zero copy). Other choices convert each matrix once
// at load into buffers owned here: float32, bfloat16 (rounded to nearest
// even), or int8 quantized in groups (QuantizeInt8). Norm weights are small
// and always float32.
//
// Ownership: ModelWeights owns the mapping and the converted buffers; every
// pointer and view it hands out is valid while it lives, and stays valid when
// it is moved (the buffers themselves never move). Immutable after Load: safe
// to read from several threads at once.
#ifndef FOTSERVE_SRC_CHECKPOINT_MODEL_WEIGHTS_H_
#define FOTSERVE_SRC_CHECKPOINT_MODEL_WEIGHTS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/safetensors_reader.h"
#include "src/checkpoint/weight_matrix.h"

namespace fot {

// How ModelWeights keeps the weight matrices.
enum class WeightsDType {
  kAuto,  // as in the file (F32, F16, BF16), in place
  kF32,   // float32, converted at load unless the file's
  kBF16,  // bfloat16, rounded at load unless the file's
  kInt8,  // int8 in groups, quantized at load from any dtype
};

struct WeightsOptions {
  WeightsDType dtype = WeightsDType::kAuto;  // default: the file's dtype, zero copy
  int int8_group = 32;                       // kInt8: values per scale along a row, 32 or 64
};

// "auto", "f32", "bf16", "int8" (groups of 32) or "int8:64"; InvalidArgument
// names the value and the choices.
absl::StatusOr<WeightsOptions> ParseWeightsOptions(std::string_view text);
// The text ParseWeightsOptions reads back ("int8:64" for another group).
std::string WeightsOptionsToString(const WeightsOptions& options);

// One decoder block. Shapes are [rows, cols], row-major.
struct LayerWeights {
  WeightMatrix q_proj;                              // [heads * head_dim, hidden]
  WeightMatrix k_proj;                              // [kv_heads * head_dim, hidden]
  WeightMatrix v_proj;                              // [kv_heads * head_dim, hidden]
  WeightMatrix o_proj;                              // [hidden, heads * head_dim]
  WeightMatrix gate_proj;                           // [intermediate, hidden]
  WeightMatrix up_proj;                             // [intermediate, hidden]
  WeightMatrix down_proj;                           // [hidden, intermediate]
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
  // Matrices are kept as `options` says; a tensor converted at load leaves
  // the resident set once converted (SafetensorsCheckpoint::ReleasePages), so
  // loading never holds both forms of the whole model.
  static absl::StatusOr<ModelWeights> Load(const std::string& model_dir, const ModelConfig& config,
                                           const WeightsOptions& options = {});

  ModelWeights(ModelWeights&&) noexcept;
  ModelWeights& operator=(ModelWeights&&) noexcept;
  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;
  ~ModelWeights();

  const ModelConfig& config() const { return config_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }

  const WeightMatrix& embed_tokens() const { return embed_tokens_; }  // [vocab, hidden]
  const float* final_norm() const { return final_norm_; }             // [hidden]
  // [vocab, hidden]; the same view as embed_tokens() when tied.
  const WeightMatrix& lm_head() const { return lm_head_; }
  const LayerWeights& layer(int i) const { return layers_[static_cast<size_t>(i)]; }
  const WeightsOptions& options() const { return options_; }

  // Number of weights (tied embeddings counted once).
  int64_t num_parameters() const { return num_parameters_; }
  // Bytes of the weights one token's forward pass and logits read in full:
  // every layer's matrices and norms, the final norm and lm_head, as kept
  // (embedding rows are only gathered, so embed_tokens counts only when tied).
  size_t weight_bytes() const { return weight_bytes_; }
  // Bytes of converted buffers owned in RAM (0 for an aligned file in auto).
  size_t resident_weight_bytes() const { return resident_bytes_; }
  // Bytes of checkpoint files mapped (shared with the page cache).
  size_t mapped_bytes() const;

 private:
  ModelWeights();

  ModelConfig config_;
  WeightsOptions options_;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;  // converted tensors
  WeightMatrix embed_tokens_;
  const float* final_norm_ = nullptr;
  WeightMatrix lm_head_;
  std::vector<LayerWeights> layers_;
  int64_t num_parameters_ = 0;
  size_t weight_bytes_ = 0;
  size_t resident_bytes_ = 0;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_MODEL_WEIGHTS_H_
