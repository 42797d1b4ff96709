#include "src/checkpoint/model_weights.h"

#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "src/checkpoint/safetensors_writer.h"

namespace fot {
namespace {

std::string LayerPrefix(int layer) { return absl::StrCat("model.layers.", layer, "."); }

}  // namespace

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  const int64_t q_rows = static_cast<int64_t>(config.num_attention_heads) * config.head_dim();
  const int64_t kv_rows = static_cast<int64_t>(config.num_key_value_heads) * config.head_dim();
  const int64_t inter = config.intermediate_size;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {config.vocab_size, hidden}});
  for (int i = 0; i < config.num_hidden_layers; ++i) {
    const std::string p = LayerPrefix(i);
    specs.push_back({p + "self_attn.q_proj.weight", {q_rows, hidden}});
    specs.push_back({p + "self_attn.k_proj.weight", {kv_rows, hidden}});
    specs.push_back({p + "self_attn.v_proj.weight", {kv_rows, hidden}});
    specs.push_back({p + "self_attn.o_proj.weight", {hidden, q_rows}});
    specs.push_back({p + "mlp.gate_proj.weight", {inter, hidden}});
    specs.push_back({p + "mlp.up_proj.weight", {inter, hidden}});
    specs.push_back({p + "mlp.down_proj.weight", {hidden, inter}});
    specs.push_back({p + "input_layernorm.weight", {hidden}});
    specs.push_back({p + "post_attention_layernorm.weight", {hidden}});
  }
  specs.push_back({"model.norm.weight", {hidden}});
  if (!config.tie_word_embeddings) {
    specs.push_back({"lm_head.weight", {config.vocab_size, hidden}});
  }
  return specs;
}

ModelWeights::ModelWeights() = default;
ModelWeights::ModelWeights(ModelWeights&&) noexcept = default;
ModelWeights& ModelWeights::operator=(ModelWeights&&) noexcept = default;
ModelWeights::~ModelWeights() = default;

size_t ModelWeights::mapped_bytes() const { return checkpoint_ ? checkpoint_->mapped_bytes() : 0; }

absl::StatusOr<ModelWeights> ModelWeights::Load(const std::string& model_dir,
                                                const ModelConfig& config) {
  FOT_RETURN_IF_ERROR(config.Validate());
  ModelWeights weights;
  weights.config_ = config;
  FOT_ASSIGN_OR_RETURN(weights.checkpoint_, SafetensorsCheckpoint::Open(model_dir));
  const SafetensorsCheckpoint& checkpoint = *weights.checkpoint_;

  // A checkpoint with more layers than the config almost always means the
  // config belongs to another model; say so rather than silently truncate.
  const std::string extra_layer = LayerPrefix(config.num_hidden_layers) + "self_attn.q_proj.weight";
  if (checkpoint.Contains(extra_layer)) {
    return absl::FailedPreconditionError(
        absl::StrCat(checkpoint.source(), ": holds '", extra_layer, "', but the config (",
                     config.source.empty() ? "config" : config.source, ") has num_hidden_layers = ",
                     config.num_hidden_layers, "; config and weights belong to different models"));
  }

  // The float data of one expected tensor: in place if possible, else converted.
  auto get = [&](const TensorSpec& spec) -> absl::StatusOr<const float*> {
    if (!checkpoint.Contains(spec.name)) {
      std::string hint;
      if (spec.name == "lm_head.weight") {
        hint =
            "; the config has tie_word_embeddings = false (set it to true if lm_head shares "
            "model.embed_tokens.weight)";
      }
      return absl::NotFoundError(absl::StrCat(checkpoint.source(), ": missing tensor '", spec.name,
                                              "' (expected shape ", ShapeToString(spec.shape), ")",
                                              hint));
    }
    FOT_ASSIGN_OR_RETURN(const TensorInfo* info, checkpoint.Find(spec.name));
    if (info->shape != spec.shape) {
      return absl::FailedPreconditionError(absl::StrCat(
          info->file, ": tensor '", spec.name, "' has shape ", ShapeToString(info->shape),
          ", expected ", ShapeToString(spec.shape), " from the config (",
          config.source.empty() ? "config" : config.source, ")"));
    }
    const size_t count = static_cast<size_t>(info->num_elements());
    if (info->dtype == DType::kF32 &&
        reinterpret_cast<uintptr_t>(info->data) % alignof(float) == 0) {
      return reinterpret_cast<const float*>(info->data);
    }
    std::unique_ptr<float[]> buffer(new (std::nothrow) float[count == 0 ? 1 : count]);
    if (buffer == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(info->file, ": out of memory converting '",
                                                       spec.name, "' (", count, " floats)"));
    }
    DecodeToFloats(info->data, count, info->dtype, buffer.get());
    const float* result = buffer.get();
    weights.owned_.push_back(std::move(buffer));
    weights.resident_bytes_ += count * sizeof(float);
    return result;
  };

  std::vector<TensorSpec> specs = ExpectedTensors(config);
  std::vector<const float*> data;
  data.reserve(specs.size());
  for (const TensorSpec& spec : specs) {
    FOT_ASSIGN_OR_RETURN(const float* p, get(spec));
    data.push_back(p);
    int64_t n = 1;
    for (int64_t dim : spec.shape) n *= dim;
    weights.num_parameters_ += n;
  }

  // Unpack in ExpectedTensors' order.
  size_t k = 0;
  weights.embed_tokens_ = data[k++];
  weights.layers_.resize(static_cast<size_t>(config.num_hidden_layers));
  for (LayerWeights& layer : weights.layers_) {
    layer.q_proj = data[k++];
    layer.k_proj = data[k++];
    layer.v_proj = data[k++];
    layer.o_proj = data[k++];
    layer.gate_proj = data[k++];
    layer.up_proj = data[k++];
    layer.down_proj = data[k++];
    layer.input_layernorm = data[k++];
    layer.post_attention_layernorm = data[k++];
  }
  weights.final_norm_ = data[k++];
  weights.lm_head_ = config.tie_word_embeddings ? weights.embed_tokens_ : data[k++];
  return weights;
}

}  // namespace fot
