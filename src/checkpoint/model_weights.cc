#include "src/checkpoint/model_weights.h"

#include <algorithm>
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

absl::StatusOr<WeightsOptions> ParseWeightsOptions(std::string_view text) {
  WeightsOptions options;
  if (text == "auto") {
    options.dtype = WeightsDType::kAuto;
  } else if (text == "f32") {
    options.dtype = WeightsDType::kF32;
  } else if (text == "bf16") {
    options.dtype = WeightsDType::kBF16;
  } else if (text == "int8" || text == "int8:32" || text == "int8:64") {
    options.dtype = WeightsDType::kInt8;
    options.int8_group = text == "int8:64" ? 64 : 32;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("weights dtype '", std::string(text),
                     "' is not one of auto, f32, bf16, int8 (groups of 32) or int8:64"));
  }
  return options;
}

std::string WeightsOptionsToString(const WeightsOptions& options) {
  switch (options.dtype) {
    case WeightsDType::kAuto:
      return "auto";
    case WeightsDType::kF32:
      return "f32";
    case WeightsDType::kBF16:
      return "bf16";
    case WeightsDType::kInt8:
      return options.int8_group == 32 ? "int8" : absl::StrCat("int8:", options.int8_group);
  }
  return "auto";
}

namespace {

WeightType FileWeightType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return WeightType::kF32;
    case DType::kF16:
      return WeightType::kF16;
    case DType::kBF16:
      return WeightType::kBF16;
  }
  return WeightType::kF32;
}

// The type a matrix stored as `dtype` is kept in.
WeightType TargetType(const WeightsOptions& options, DType dtype) {
  switch (options.dtype) {
    case WeightsDType::kAuto:
      return FileWeightType(dtype);
    case WeightsDType::kF32:
      return WeightType::kF32;
    case WeightsDType::kBF16:
      return WeightType::kBF16;
    case WeightsDType::kInt8:
      return WeightType::kInt8;
  }
  return WeightType::kF32;
}

// Converts rows [first, first + count) of `info` (a [rows, cols] tensor)
// into `out`, whose layout `type` gives (int8: values, then scales).
void ConvertRows(const TensorInfo& info, int64_t cols, int64_t first, int64_t count,
                 WeightType type, int group, uint8_t* out, float* scales) {
  const size_t in_size = DTypeSize(info.dtype);
  std::vector<float> row(static_cast<size_t>(cols));
  const int64_t groups = (cols + group - 1) / std::max(group, 1);
  for (int64_t r = first; r < first + count; ++r) {
    const uint8_t* in = info.data + static_cast<size_t>(r * cols) * in_size;
    if (FileWeightType(info.dtype) == type) {  // a copy, for alignment
      const size_t bytes = static_cast<size_t>(cols) * in_size;
      std::memcpy(out + static_cast<size_t>(r) * bytes, in, bytes);
      continue;
    }
    DecodeToFloats(in, static_cast<size_t>(cols), info.dtype, row.data());
    switch (type) {
      case WeightType::kF32:
        std::memcpy(out + static_cast<size_t>(r * cols) * 4, row.data(), row.size() * 4);
        break;
      case WeightType::kF16:
      case WeightType::kBF16:
        for (int64_t c = 0; c < cols; ++c) {
          const uint16_t h =
              type == WeightType::kF16 ? FloatToHalf(row[c]) : FloatToBFloat16(row[c]);
          std::memcpy(out + static_cast<size_t>(r * cols + c) * 2, &h, 2);
        }
        break;
      case WeightType::kInt8:
        QuantizeInt8(row.data(), cols, group, reinterpret_cast<int8_t*>(out) + r * cols,
                     scales + r * groups);
        break;
    }
  }
}

}  // namespace

absl::StatusOr<ModelWeights> ModelWeights::Load(const std::string& model_dir,
                                                const ModelConfig& config,
                                                const WeightsOptions& options) {
  FOT_RETURN_IF_ERROR(config.Validate());
  if (options.dtype == WeightsDType::kInt8 && options.int8_group != 32 &&
      options.int8_group != 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("int8 weights: group size ", options.int8_group, " is not 32 or 64"));
  }
  ModelWeights weights;
  weights.config_ = config;
  weights.options_ = options;
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

  // The checkpoint's tensor for `spec`, checked against it.
  auto find = [&](const TensorSpec& spec) -> absl::StatusOr<const TensorInfo*> {
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
    return info;
  };
  auto allocate = [&](const TensorInfo& info, size_t bytes) -> absl::StatusOr<uint8_t*> {
    std::unique_ptr<uint8_t[]> buffer(new (std::nothrow) uint8_t[bytes == 0 ? 1 : bytes]);
    if (buffer == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(info.file, ": out of memory converting '",
                                                       info.name, "' (", bytes, " bytes)"));
    }
    weights.owned_.push_back(std::move(buffer));
    weights.resident_bytes_ += bytes;
    return weights.owned_.back().get();
  };

  // A matrix [rows, cols]: in place if the file holds it as it is kept and
  // aligned, else converted into a buffer of ours.
  auto matrix = [&](const TensorSpec& spec) -> absl::StatusOr<WeightMatrix> {
    FOT_ASSIGN_OR_RETURN(const TensorInfo* info, find(spec));
    WeightMatrix m;
    m.type = TargetType(options, info->dtype);
    m.rows = spec.shape[0];
    m.cols = spec.shape[1];
    if (FileWeightType(info->dtype) == m.type &&
        reinterpret_cast<uintptr_t>(info->data) % DTypeSize(info->dtype) == 0) {
      m.data = info->data;
      return m;
    }
    const size_t elements = static_cast<size_t>(m.rows * m.cols);
    float* scales = nullptr;
    if (m.type == WeightType::kInt8) {
      m.group = options.int8_group;
      FOT_ASSIGN_OR_RETURN(uint8_t * s, allocate(*info, m.rows * m.groups_per_row() * 4));
      scales = reinterpret_cast<float*>(s);
      m.scales = scales;
    }
    FOT_ASSIGN_OR_RETURN(uint8_t * out, allocate(*info, elements * WeightTypeSize(m.type)));
    // Blocks of rows in parallel: quantizing a 7B model is seconds of work.
    constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(dynamic)
    for (int64_t first = 0; first < m.rows; first += kBlock) {
      ConvertRows(*info, m.cols, first, std::min(kBlock, m.rows - first), m.type, m.group, out,
                  scales);
    }
    checkpoint.ReleasePages(*info);
    m.data = out;
    return m;
  };
  // A norm weight [hidden]: always float32.
  auto norm = [&](const TensorSpec& spec) -> absl::StatusOr<const float*> {
    FOT_ASSIGN_OR_RETURN(const TensorInfo* info, find(spec));
    const size_t count = static_cast<size_t>(info->num_elements());
    if (info->dtype == DType::kF32 &&
        reinterpret_cast<uintptr_t>(info->data) % alignof(float) == 0) {
      return reinterpret_cast<const float*>(info->data);
    }
    FOT_ASSIGN_OR_RETURN(uint8_t * out, allocate(*info, count * sizeof(float)));
    DecodeToFloats(info->data, count, info->dtype, reinterpret_cast<float*>(out));
    return reinterpret_cast<const float*>(out);
  };

  // In ExpectedTensors' order.
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  for (const TensorSpec& spec : specs) {
    int64_t n = 1;
    for (int64_t dim : spec.shape) n *= dim;
    weights.num_parameters_ += n;
  }
  size_t k = 0;
  FOT_ASSIGN_OR_RETURN(weights.embed_tokens_, matrix(specs[k++]));
  weights.layers_.resize(static_cast<size_t>(config.num_hidden_layers));
  for (LayerWeights& layer : weights.layers_) {
    for (WeightMatrix* m : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
                            &layer.gate_proj, &layer.up_proj, &layer.down_proj}) {
      FOT_ASSIGN_OR_RETURN(*m, matrix(specs[k++]));
      weights.weight_bytes_ += m->bytes();
    }
    FOT_ASSIGN_OR_RETURN(layer.input_layernorm, norm(specs[k++]));
    FOT_ASSIGN_OR_RETURN(layer.post_attention_layernorm, norm(specs[k++]));
    weights.weight_bytes_ += 2 * config.hidden_size * sizeof(float);
  }
  FOT_ASSIGN_OR_RETURN(weights.final_norm_, norm(specs[k++]));
  weights.weight_bytes_ += config.hidden_size * sizeof(float);
  if (config.tie_word_embeddings) {
    weights.lm_head_ = weights.embed_tokens_;
  } else {
    FOT_ASSIGN_OR_RETURN(weights.lm_head_, matrix(specs[k++]));
  }
  weights.weight_bytes_ += weights.lm_head_.bytes();
  return weights;
}

}  // namespace fot
