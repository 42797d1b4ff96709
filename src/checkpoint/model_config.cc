#include "src/checkpoint/model_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace fot {
namespace {

using Json = nlohmann::json;

// Never throws: invalid UTF-8 in a string is replaced rather than rejected.
std::string Dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string Src(std::string_view source) {
  return source.empty() ? std::string("config") : std::string(source);
}

// Typed access to the fields of one config object; every error names the
// source and the field. A field that is absent or null keeps its default
// unless it is required.
class FieldReader {
 public:
  FieldReader(const Json& object, std::string_view source) : object_(object), source_(source) {}

  [[nodiscard]] absl::Status Int(const char* key, bool required, int* out) const {
    const Json* value = Get(key);
    if (value == nullptr) return required ? Missing(key) : absl::OkStatus();
    int64_t v = 0;
    if (value->is_number_unsigned()) {
      uint64_t u = value->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int>::max())) return TooLarge(key, *value);
      v = static_cast<int64_t>(u);
    } else if (value->is_number_integer()) {
      v = value->get<int64_t>();
    } else {
      return WrongType(key, "an integer", *value);
    }
    if (v > std::numeric_limits<int>::max() || v < std::numeric_limits<int>::min()) {
      return TooLarge(key, *value);
    }
    *out = static_cast<int>(v);
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Float(const char* key, float* out) const {
    const Json* value = Get(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_number()) return WrongType(key, "a number", *value);
    double v = value->get<double>();
    if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_, ": ", key, " (", Dump(*value), ") is not a finite float"));
    }
    *out = static_cast<float>(v);
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Bool(const char* key, bool* out) const {
    const Json* value = Get(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_boolean()) return WrongType(key, "true or false", *value);
    *out = value->get<bool>();
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status String(const char* key, bool required, std::string* out) const {
    const Json* value = Get(key);
    if (value == nullptr) return required ? Missing(key) : absl::OkStatus();
    if (!value->is_string()) return WrongType(key, "a string", *value);
    *out = value->get<std::string>();
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status IntList(const char* key, std::vector<int>* out) const {
    const Json* value = Get(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_array()) return WrongType(key, "a list of integers", *value);
    std::vector<int> result;
    for (const Json& item : *value) {
      if (!item.is_number_integer() ||
          (item.is_number_unsigned() &&
           item.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int>::max())) ||
          (!item.is_number_unsigned() && (item.get<int64_t>() < std::numeric_limits<int>::min() ||
                                          item.get<int64_t>() > std::numeric_limits<int>::max()))) {
        return WrongType(key, "a list of integers", *value);
      }
      result.push_back(item.is_number_unsigned() ? static_cast<int>(item.get<uint64_t>())
                                                 : static_cast<int>(item.get<int64_t>()));
    }
    *out = std::move(result);
    return absl::OkStatus();
  }

  // The field's value, or nullptr when it is absent or null.
  const Json* Get(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

 private:
  absl::Status Missing(const char* key) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": missing required field '", key, "'"));
  }
  absl::Status WrongType(const char* key, const char* expected, const Json& value) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": ", key, " must be ", expected, ", got ", Dump(value)));
  }
  absl::Status TooLarge(const char* key, const Json& value) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": ", key, " (", Dump(value), ") is out of range"));
  }

  const Json& object_;
  std::string source_;
};

// The float's shortest decimal form as a double, so that 1e-6f is written to
// JSON as 1e-06 rather than 9.999999974752427e-07.
double ShortestDouble(float value) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer) - 1, value);
  *result.ptr = '\0';
  return std::strtod(buffer, nullptr);
}

}  // namespace

bool ModelConfig::IsMemoryLayer(int layer) const {
  return std::find(mem_layers.begin(), mem_layers.end(), layer) != mem_layers.end();
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(std::string_view json_text,
                                                  std::string_view source_name) {
  const std::string source = Src(source_name);
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a JSON object, got ", root.type_name()));
  }

  ModelConfig config;
  config.source = source;
  FieldReader in(root, source);
  FOT_RETURN_IF_ERROR(in.String("model_type", /*required=*/true, &config.model_type));
  if (config.model_type != "llama" && config.model_type != "longllama") {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": model_type \"", config.model_type,
                     "\" is not supported (supported: \"llama\", \"longllama\")"));
  }
  const bool longllama = config.model_type == "longllama";

  FOT_RETURN_IF_ERROR(in.Int("vocab_size", true, &config.vocab_size));
  FOT_RETURN_IF_ERROR(in.Int("hidden_size", true, &config.hidden_size));
  FOT_RETURN_IF_ERROR(in.Int("intermediate_size", true, &config.intermediate_size));
  FOT_RETURN_IF_ERROR(in.Int("num_hidden_layers", true, &config.num_hidden_layers));
  FOT_RETURN_IF_ERROR(in.Int("num_attention_heads", true, &config.num_attention_heads));
  config.num_key_value_heads = config.num_attention_heads;
  FOT_RETURN_IF_ERROR(in.Int("num_key_value_heads", false, &config.num_key_value_heads));
  FOT_RETURN_IF_ERROR(in.Int("max_position_embeddings", true, &config.max_position_embeddings));
  // LongLLaMA's own config class defaults last_context_length to 1024.
  config.last_context_length = longllama ? 1024 : config.max_position_embeddings;
  FOT_RETURN_IF_ERROR(in.Int("last_context_length", false, &config.last_context_length));
  FOT_RETURN_IF_ERROR(in.Float("rms_norm_eps", &config.rms_norm_eps));
  FOT_RETURN_IF_ERROR(in.Float("rope_theta", &config.rope_theta));
  FOT_RETURN_IF_ERROR(in.Bool("tie_word_embeddings", &config.tie_word_embeddings));
  FOT_RETURN_IF_ERROR(in.Int("bos_token_id", false, &config.bos_token_id));
  FOT_RETURN_IF_ERROR(in.Int("eos_token_id", false, &config.eos_token_id));
  if (longllama) {
    FOT_RETURN_IF_ERROR(in.IntList("mem_layers", &config.mem_layers));
    std::sort(config.mem_layers.begin(), config.mem_layers.end());
    FOT_RETURN_IF_ERROR(in.Bool("mem_positionals", &config.mem_positionals));
    FOT_RETURN_IF_ERROR(in.String("mem_dtype", false, &config.mem_dtype));
  }

  // Features of the wider LLaMA family that this engine does not implement.
  std::string hidden_act = "silu";
  FOT_RETURN_IF_ERROR(in.String("hidden_act", false, &hidden_act));
  if (hidden_act != "silu") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": hidden_act \"", hidden_act, "\" is not supported (only \"silu\")"));
  }
  if (const Json* scaling = in.Get("rope_scaling")) {
    return absl::UnimplementedError(absl::StrCat(source, ": rope_scaling ", Dump(*scaling),
                                                 " is not supported (must be absent or null)"));
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool bias = false;
    FOT_RETURN_IF_ERROR(in.Bool(key, &bias));
    if (bias) {
      return absl::UnimplementedError(
          absl::StrCat(source, ": ", key, " = true is not supported (no bias weights)"));
    }
  }
  if (const Json* head_dim = in.Get("head_dim")) {
    int value = 0;
    FOT_RETURN_IF_ERROR(in.Int("head_dim", false, &value));
    if (config.num_attention_heads > 0 &&
        value * static_cast<int64_t>(config.num_attention_heads) != config.hidden_size) {
      return absl::UnimplementedError(absl::StrCat(
          source, ": head_dim (", Dump(*head_dim), ") must equal hidden_size (", config.hidden_size,
          ") / num_attention_heads (", config.num_attention_heads, ")"));
    }
  }

  FOT_RETURN_IF_ERROR(config.Validate());
  return config;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open the model config"));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return FromJson(text.str(), path);
}

std::string ModelConfig::ToJson(std::string_view torch_dtype) const {
  const bool longllama = model_type == "longllama";
  Json j = Json::object();
  j["architectures"] = Json::array({longllama ? "LongLlamaForCausalLM" : "LlamaForCausalLM"});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["max_position_embeddings"] = max_position_embeddings;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = ShortestDouble(rms_norm_eps);
  j["rope_theta"] = ShortestDouble(rope_theta);
  j["rope_scaling"] = nullptr;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["torch_dtype"] = std::string(torch_dtype);
  j["use_cache"] = true;
  if (longllama) {
    j["last_context_length"] = last_context_length;
    j["mem_layers"] = mem_layers;
    j["mem_positionals"] = mem_positionals;
    j["mem_dtype"] = mem_dtype;
  } else if (last_context_length != max_position_embeddings) {
    j["last_context_length"] = last_context_length;
  }
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::Status ModelConfig::Validate() const {
  const std::string src = Src(source);
  auto invalid = [&src](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": ", parts...));
  };
  if (model_type != "llama" && model_type != "longllama") {
    return invalid("model_type \"", model_type,
                   "\" is not supported (supported: \"llama\", \"longllama\")");
  }
  const std::pair<const char*, int> sizes[] = {
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"max_position_embeddings", max_position_embeddings},
  };
  for (const auto& [name, value] : sizes) {
    if (value <= 0) return invalid(name, " (", value, ") must be positive");
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return invalid("num_key_value_heads (", num_key_value_heads,
                   ") must divide num_attention_heads (", num_attention_heads, ")");
  }
  if (hidden_size % num_attention_heads != 0) {
    return invalid("hidden_size (", hidden_size, ") must be divisible by num_attention_heads (",
                   num_attention_heads, ")");
  }
  if (head_dim() % 2 != 0) {
    return invalid("head_dim = hidden_size / num_attention_heads = ", head_dim(),
                   " must be even for rotary embeddings");
  }
  if (!CheckLastContextLength(last_context_length, max_position_embeddings).ok()) {
    return invalid("last_context_length (", last_context_length,
                   ") must be between 1 and max_position_embeddings (", max_position_embeddings,
                   ")");
  }
  if (!(rms_norm_eps > 0.0f) || !std::isfinite(rms_norm_eps)) {
    return invalid("rms_norm_eps (", rms_norm_eps, ") must be positive and finite");
  }
  if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta)) {
    return invalid("rope_theta (", rope_theta, ") must be positive and finite");
  }
  if (model_type == "llama" && !mem_layers.empty()) {
    return invalid("mem_layers must be empty for model_type \"llama\"");
  }
  std::set<int> seen;
  for (size_t i = 0; i < mem_layers.size(); ++i) {
    const int layer = mem_layers[i];
    if (layer < 0 || layer >= num_hidden_layers) {
      return invalid("mem_layers entry ", layer, " is out of range [0, ", num_hidden_layers,
                     ") (num_hidden_layers = ", num_hidden_layers, ")");
    }
    if (!seen.insert(layer).second) {
      return invalid("mem_layers lists layer ", layer, " twice (", absl::StrJoin(mem_layers, ","),
                     ")");
    }
  }
  if (mem_dtype != "float32" && mem_dtype != "float16" && mem_dtype != "bfloat16") {
    return invalid("mem_dtype \"", mem_dtype,
                   "\" is not supported (supported: float32, float16, bfloat16)");
  }
  return absl::OkStatus();
}

absl::Status CheckTokenIds(const ModelConfig& config, absl::Span<const int> tokens) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " at position ", i,
                                                     " is outside the vocabulary [0, ",
                                                     config.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLastContextLength(int last_context_length, int window) {
  if (last_context_length < 1 || last_context_length > window) {
    return absl::InvalidArgumentError(
        absl::StrCat("last_context_length ", last_context_length,
                     " must lie in [1, max_position_embeddings = ", window, "]"));
  }
  return absl::OkStatus();
}

}  // namespace fot
