#include "src/model/attention_options.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace fot {

absl::StatusOr<AttentionMode> ParseAttentionMode(const std::string& name) {
  if (name == "fot") return AttentionMode::kFot;
  if (name == "lambda") return AttentionMode::kLambda;
  return absl::InvalidArgumentError(
      absl::StrCat("attention mode '", name, "' is not 'fot' or 'lambda'"));
}

absl::StatusOr<MemoryPositioning> ParseMemoryPositioning(const std::string& name) {
  if (name == "as_first") return MemoryPositioning::kAsFirst;
  if (name == "fixed_distance") return MemoryPositioning::kFixedDistance;
  if (name == "none") return MemoryPositioning::kNone;
  return absl::InvalidArgumentError(absl::StrCat(
      "memory positioning '", name, "' is not 'as_first', 'fixed_distance' or 'none'"));
}

absl::StatusOr<std::vector<int>> ParseLayerList(const std::string& list) {
  std::vector<int> layers;
  if (list == "none") return layers;
  for (const absl::string_view part : absl::StrSplit(list, ',')) {
    int layer = 0;
    if (!absl::SimpleAtoi(part, &layer)) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer list '", list, "' is not comma-separated layer indices (or 'none')"));
    }
    layers.push_back(layer);
  }
  std::sort(layers.begin(), layers.end());
  return layers;
}

const char* AttentionModeName(AttentionMode mode) {
  return mode == AttentionMode::kFot ? "fot" : "lambda";
}

const char* MemoryPositioningName(MemoryPositioning positioning) {
  switch (positioning) {
    case MemoryPositioning::kAsFirst:
      return "as_first";
    case MemoryPositioning::kFixedDistance:
      return "fixed_distance";
    case MemoryPositioning::kNone:
      return "none";
  }
  return "?";
}

std::string DescribeAttention(const AttentionOptions& options) {
  if (options.mode == AttentionMode::kFot) return "fot";
  std::string text =
      absl::StrCat("lambda n_global=", options.n_global, " L=", options.local_window);
  if (options.memory_positioning) {
    absl::StrAppend(&text, " memory=", MemoryPositioningName(*options.memory_positioning));
  }
  if (options.memory_layers) {
    absl::StrAppend(
        &text, " layers=",
        options.memory_layers->empty() ? "none" : absl::StrJoin(*options.memory_layers, ","));
  }
  return text;
}

absl::StatusOr<AttentionOptions> ApplyAttentionSpec(const AttentionSpec& spec,
                                                    const AttentionOptions& base,
                                                    const ModelConfig& config) {
  AttentionOptions attention = base;
  if (!spec.mode.empty()) {
    auto mode = ParseAttentionMode(spec.mode);
    if (!mode.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("attention: ", mode.status().message()));
    }
    if (*mode != attention.mode) {
      attention = AttentionOptions();
      attention.mode = *mode;
    }
  }
  if (attention.mode != AttentionMode::kLambda) {
    std::vector<std::string> lambda_fields;
    if (spec.n_global.has_value()) lambda_fields.push_back("n_global");
    if (spec.local_window != 0) lambda_fields.push_back("local_window");
    if (!spec.memory_positioning.empty()) lambda_fields.push_back("memory_positioning");
    if (!spec.memory_layers.empty()) lambda_fields.push_back("memory_layers");
    if (!lambda_fields.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          absl::StrJoin(lambda_fields, ", "),
          lambda_fields.size() == 1 ? " is an option" : " are options",
          " of attention 'lambda'; this stream's attention is 'fot' (set attention to 'lambda')"));
    }
    return attention;
  }
  if (spec.n_global.has_value()) {
    if (*spec.n_global < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("n_global must be >= 0 (0: no sink tokens), not ", *spec.n_global));
    }
    attention.n_global = *spec.n_global;
  }
  if (spec.local_window < 0 || spec.local_window > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local_window ", spec.local_window, " must lie in [1, ", config.max_position_embeddings,
        "] (the model's max_position_embeddings), or be 0 for the model's own"));
  }
  if (spec.local_window != 0) attention.local_window = spec.local_window;
  if (!spec.memory_positioning.empty()) {
    auto positioning = ParseMemoryPositioning(spec.memory_positioning);
    if (!positioning.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory_positioning: ", positioning.status().message()));
    }
    attention.memory_positioning = *positioning;
  }
  if (!spec.memory_layers.empty()) {
    auto layers = ParseLayerList(spec.memory_layers);
    if (!layers.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("memory_layers: ", layers.status().message()));
    }
    attention.memory_layers = *layers;
  }
  // n_global and local_window are checked above: what is left is the layers.
  auto resolved = ResolveAttentionOptions(config, attention);
  if (!resolved.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.memory_layers.empty() ? "lambda attention: " : "memory_layers: ",
                     resolved.status().message()));
  }
  return *resolved;
}

absl::StatusOr<AttentionOptions> ResolveAttentionOptions(const ModelConfig& config,
                                                         const AttentionOptions& options) {
  const int window = config.max_position_embeddings;
  if (options.mode == AttentionMode::kFot) {
    if (options.local_window != 0 || options.memory_positioning || options.memory_layers) {
      return absl::InvalidArgumentError(
          "local window, memory positioning and memory layers are options of the lambda "
          "attention mode, not of fot");
    }
    return options;
  }
  if (options.n_global < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_global must be >= 0, not ", options.n_global));
  }
  if (options.local_window < 0 || options.local_window > window) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local window ", options.local_window,
        " must lie in [1, max_position_embeddings = ", window, "] (0: max_position_embeddings)"));
  }
  std::vector<int> layers = options.memory_layers ? *options.memory_layers : config.mem_layers;
  std::sort(layers.begin(), layers.end());
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= config.num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory layer ", layers[i],
                       " is outside [0, num_hidden_layers = ", config.num_hidden_layers, ")"));
    }
    if (i > 0 && layers[i] == layers[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory layer ", layers[i], " is listed twice"));
    }
  }
  AttentionOptions resolved;
  resolved.mode = AttentionMode::kLambda;
  resolved.n_global = options.n_global;
  resolved.local_window = options.local_window == 0 ? window : options.local_window;
  resolved.memory_positioning = options.memory_positioning ? *options.memory_positioning
                                : config.model_type == "longllama"
                                    ? MemoryPositioning::kAsFirst
                                    : MemoryPositioning::kFixedDistance;
  resolved.memory_layers = std::move(layers);
  return resolved;
}

}  // namespace fot
