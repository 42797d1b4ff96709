// The OpenAI API's JSON (see openai_api.h).
#include "src/http/openai_api.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace fot::http {
namespace {

using nlohmann::json;

// Where InvalidParam keeps the field's name in a status.
constexpr char kParamPayload[] = "type.fotserve/openai.param";

std::string Str(std::string_view s) { return std::string(s); }

// The field `name` of `body`, or null when it is absent (a JSON null counts
// as absent, as OpenAI treats it).
const json* Field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status WrongType(std::string_view param, std::string_view expected) {
  return InvalidParam(param, absl::StrCat("'", Str(param), "' must be ", Str(expected)));
}

absl::Status ReadBool(const json& body, const char* name, bool* out) {
  const json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return WrongType(name, "true or false");
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadString(const json& body, const char* name, std::string* out) {
  const json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return WrongType(name, "a string");
  *out = v->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadNumber(const json& body, const char* name, double lo, double hi,
                        std::optional<double>* out) {
  const json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return WrongType(name, "a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) {
    return InvalidParam(
        name, absl::StrCat("'", name, "' is ", x, "; it must lie in [", lo, ", ", hi, "]"));
  }
  *out = x;
  return absl::OkStatus();
}

absl::Status ReadInteger(const json& body, const char* name, int64_t lo, int64_t hi,
                         std::optional<int64_t>* out) {
  const json* v = Field(body, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number_integer()) return WrongType(name, "an integer");
  // Out of int64 range only for unsigned values above 2^63.
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
    return InvalidParam(name, absl::StrCat("'", name, "' must lie in [", lo, ", ", hi, "]"));
  }
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) {
    return InvalidParam(
        name, absl::StrCat("'", name, "' is ", x, "; it must lie in [", lo, ", ", hi, "]"));
  }
  *out = x;
  return absl::OkStatus();
}

// Fields that would change the answer in ways fotserve does not implement:
// refused unless they hold their neutral value.
absl::Status RefuseUnsupported(const json& body, bool chat) {
  std::optional<int64_t> n;
  if (absl::Status s = ReadInteger(body, "n", 1, 1, &n); !s.ok()) {
    return InvalidParam("n", "fotserve returns one choice per request: 'n' must be 1");
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    std::optional<double> x;
    if (absl::Status s = ReadNumber(body, name, 0, 0, &x); !s.ok()) {
      return InvalidParam(name, absl::StrCat("'", name, "' is not supported (it must be 0)"));
    }
  }
  if (const json* v = Field(body, "logit_bias"); v != nullptr && !(v->is_object() && v->empty())) {
    return InvalidParam("logit_bias", "'logit_bias' is not supported");
  }
  if (const json* v = Field(body, "logprobs");
      v != nullptr && !(*v == false || (!chat && *v == 0))) {
    return InvalidParam("logprobs", "'logprobs' is not supported");
  }
  if (chat) {
    if (const json* v = Field(body, "tools"); v != nullptr && !(v->is_array() && v->empty())) {
      return InvalidParam("tools", "tools are not supported");
    }
    if (const json* v = Field(body, "functions"); v != nullptr && !(v->is_array() && v->empty())) {
      return InvalidParam("functions", "functions are not supported");
    }
    if (const json* v = Field(body, "response_format"); v != nullptr) {
      if (!v->is_object() || v->value("type", "") != "text") {
        return InvalidParam("response_format", "only the response_format {\"type\": \"text\"}");
      }
    }
  } else {
    if (const json* v = Field(body, "echo"); v != nullptr && *v != false) {
      return InvalidParam("echo", "'echo' is not supported");
    }
    std::optional<int64_t> best_of;
    if (absl::Status s = ReadInteger(body, "best_of", 1, 1, &best_of); !s.ok()) {
      return InvalidParam("best_of", "'best_of' must be 1");
    }
    if (const json* v = Field(body, "suffix"); v != nullptr && *v != "") {
      return InvalidParam("suffix", "'suffix' is not supported");
    }
  }
  return absl::OkStatus();
}

// stop: a string, a list of strings, or null.
absl::Status ReadStops(const json& body, std::vector<std::string>* out) {
  const json* v = Field(body, "stop");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string()) {
    out->push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const json& s : *v) {
      if (!s.is_string()) return WrongType("stop", "a string or a list of strings");
      out->push_back(s.get<std::string>());
    }
  } else {
    return WrongType("stop", "a string or a list of strings");
  }
  if (out->size() > static_cast<size_t>(kMaxOpenAiStops)) {
    return InvalidParam("stop", absl::StrCat("at most ", kMaxOpenAiStops, " stop strings"));
  }
  for (const std::string& s : *out) {
    if (s.empty() || s.size() > kMaxStopBytes) {
      return InvalidParam("stop",
                          absl::StrCat("a stop string must have 1 to ", kMaxStopBytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

// The `fotserve` object.
absl::Status ReadFotserveOptions(const json& body, GenerationParams* params) {
  const json* v = Field(body, "fotserve");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_object()) return WrongType("fotserve", "an object");
  for (const auto& [key, value] : v->items()) {
    if (key != "retrieval" && key != "documents" && key != "trace" && key != "trace_top" &&
        key != "ignore_eos") {
      return InvalidParam(absl::StrCat("fotserve.", key),
                          absl::StrCat("unknown fotserve option '", key,
                                       "' (retrieval, documents, trace, trace_top, ignore_eos)"));
    }
  }
  const json& o = *v;
  if (absl::Status s = ReadString(o, "retrieval", &params->retrieval); !s.ok()) {
    return WrongType("fotserve.retrieval", "a string such as \"knn:64\"");
  }
  if (const json* docs = Field(o, "documents"); docs != nullptr) {
    if (!docs->is_array()) return WrongType("fotserve.documents", "a list of document names");
    for (const json& d : *docs) {
      if (!d.is_string()) return WrongType("fotserve.documents", "a list of document names");
      params->documents.push_back(d.get<std::string>());
    }
  }
  if (!ReadBool(o, "trace", &params->trace).ok()) {
    return WrongType("fotserve.trace", "true or false");
  }
  if (!ReadBool(o, "ignore_eos", &params->ignore_eos).ok()) {
    return WrongType("fotserve.ignore_eos", "true or false");
  }
  std::optional<int64_t> top;
  if (!ReadInteger(o, "trace_top", 1, kMaxTop, &top).ok()) {
    return InvalidParam(
        "fotserve.trace_top",
        absl::StrCat("'fotserve.trace_top' must be an integer in [1, ", kMaxTop, "]"));
  }
  if (top) params->trace_top = static_cast<int>(*top);
  return absl::OkStatus();
}

// What completions and chat share: model, sampling, length, stop, stream.
absl::Status ReadCommon(const json& body, bool chat, CompletionRequest* out) {
  if (!body.is_object()) return InvalidParam("", "the request body must be a JSON object");
  out->chat = chat;
  const json* model = Field(body, "model");
  if (model == nullptr) {
    return InvalidParam("model", "'model' is required: the name of a session (GET /v1/models)");
  }
  if (!model->is_string() || model->get<std::string>().empty()) {
    return WrongType("model", "a session name");
  }
  out->model = model->get<std::string>();
  if (absl::Status s = RefuseUnsupported(body, chat); !s.ok()) return s;

  std::optional<int64_t> max_tokens;
  const char* length_field = "max_tokens";
  if (chat && Field(body, "max_completion_tokens") != nullptr)
    length_field = "max_completion_tokens";
  if (absl::Status s = ReadInteger(body, length_field, 1, kMaxTokensLimit, &max_tokens); !s.ok()) {
    return s;
  }
  out->params.max_tokens = static_cast<int>(
      max_tokens.value_or(chat ? kDefaultChatMaxTokens : kDefaultCompletionMaxTokens));

  std::optional<double> temperature, top_p;
  if (absl::Status s = ReadNumber(body, "temperature", 0, 2, &temperature); !s.ok()) return s;
  if (absl::Status s = ReadNumber(body, "top_p", 0, 1, &top_p); !s.ok()) return s;
  if (top_p && *top_p == 0) return InvalidParam("top_p", "'top_p' must lie in (0, 1]");
  out->params.sampling.temperature = static_cast<float>(temperature.value_or(1.0));
  out->params.sampling.top_p = static_cast<float>(top_p.value_or(1.0));
  std::optional<int64_t> seed;
  if (absl::Status s = ReadInteger(body, "seed", std::numeric_limits<int64_t>::min(),
                                   std::numeric_limits<int64_t>::max(), &seed);
      !s.ok()) {
    return s;
  }
  if (seed) {
    out->params.sampling.seed = static_cast<uint64_t>(*seed);
    out->has_seed = true;
  }
  if (absl::Status s = ReadStops(body, &out->params.stop); !s.ok()) return s;
  if (absl::Status s = ReadBool(body, "stream", &out->stream); !s.ok()) return s;
  if (const json* options = Field(body, "stream_options"); options != nullptr) {
    if (!options->is_object()) return WrongType("stream_options", "an object");
    if (!out->stream) {
      return InvalidParam("stream_options", "'stream_options' needs 'stream': true");
    }
    if (!ReadBool(*options, "include_usage", &out->include_usage).ok()) {
      return WrongType("stream_options.include_usage", "true or false");
    }
  }
  return ReadFotserveOptions(body, &out->params);
}

// Text of a message's content: a string, or a list of text parts.
absl::StatusOr<std::string> ContentText(const json& content, size_t index) {
  const std::string param = absl::StrCat("messages[", index, "].content");
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return WrongType(param, "a string or a list of text parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return InvalidParam(param, "only text parts ({\"type\": \"text\", \"text\": ...})");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

json FotserveTokens(const json* tokens) { return json{{"tokens", *tokens}}; }

}  // namespace

absl::Status InvalidParam(std::string_view param, std::string_view message) {
  absl::Status status = absl::InvalidArgumentError(Str(message));
  if (!param.empty()) status.SetPayload(kParamPayload, absl::Cord(Str(param)));
  return status;
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

ApiError ErrorOf(const absl::Status& status, bool model_lookup) {
  ApiError error;
  error.http_status = HttpStatusOf(status.code());
  error.message = std::string(status.message());
  if (error.message.size() > 4096) error.message.resize(4096);
  error.type = error.http_status >= 500 ? "server_error" : "invalid_request_error";
  if (absl::optional<absl::Cord> param = status.GetPayload(kParamPayload)) {
    error.param = std::string(*param);
  }
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated:
      error.type = "authentication_error";
      error.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      error.type = "permission_error";
      error.code = "permission_denied";
      break;
    case absl::StatusCode::kNotFound:
      if (model_lookup) {
        error.param = "model";
        error.code = "model_not_found";
      } else {
        error.code = "not_found";
      }
      break;
    case absl::StatusCode::kResourceExhausted:
      error.type = "rate_limit_error";
      error.code = "resource_exhausted";
      break;
    case absl::StatusCode::kUnavailable:
      error.code = "unavailable";
      break;
    default:
      break;
  }
  return error;
}

json ErrorJson(const ApiError& error) {
  return json{{"error",
               {{"message", error.message},
                {"type", error.type},
                {"param", error.param ? json(*error.param) : json(nullptr)},
                {"code", error.code ? json(*error.code) : json(nullptr)}}}};
}

absl::StatusOr<CompletionRequest> ParseCompletionRequest(const json& body) {
  CompletionRequest out;
  if (absl::Status s = ReadCommon(body, /*chat=*/false, &out); !s.ok()) return s;
  const json* prompt = Field(body, "prompt");
  if (prompt == nullptr) return InvalidParam("prompt", "'prompt' is required");
  const auto ids_of = [&](const json& list) -> absl::Status {
    for (const json& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() > std::numeric_limits<int>::max()) {
        return InvalidParam("prompt", "token ids must be integers >= 0");
      }
      out.prompt_token_ids.push_back(static_cast<int>(id.get<int64_t>()));
    }
    return absl::OkStatus();
  };
  if (prompt->is_string()) {
    out.prompt = prompt->get<std::string>();
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    out.prompt = (*prompt)[0].get<std::string>();
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
    if (absl::Status s = ids_of(*prompt); !s.ok()) return s;
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_array()) {
    if (absl::Status s = ids_of((*prompt)[0]); !s.ok()) return s;
  } else if (prompt->is_array() && prompt->size() > 1) {
    return InvalidParam("prompt", "fotserve answers one prompt per request, not a batch");
  } else {
    return WrongType("prompt", "a string or a list of token ids");
  }
  if (out.prompt.empty() && out.prompt_token_ids.empty()) {
    return InvalidParam("prompt", "'prompt' is empty");
  }
  return out;
}

absl::StatusOr<CompletionRequest> ParseChatRequest(const json& body,
                                                   const ChatTemplate& chat_template) {
  CompletionRequest out;
  if (absl::Status s = ReadCommon(body, /*chat=*/true, &out); !s.ok()) return s;
  const json* messages = Field(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return InvalidParam("messages", "'messages' must be a non-empty list of messages");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string param = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return WrongType(param, "an object with 'role' and 'content'");
    const std::string role = m.value("role", "");
    if (role != "system" && role != "developer" && role != "user" && role != "assistant" &&
        role != "tool") {
      return InvalidParam(absl::StrCat(param, ".role"),
                          "'role' must be system, developer, user, assistant or tool");
    }
    if (!chat_template.Supports(role)) {
      return InvalidParam(absl::StrCat(param, ".role"),
                          absl::StrCat("the model's chat template (", chat_template.source,
                                       ") has no '", role, "' role"));
    }
    absl::StatusOr<std::string> content = ContentText(m.value("content", json()), i);
    if (!content.ok()) return content.status();
    out.messages.push_back({role, *std::move(content)});
  }
  out.prompt = RenderChat(chat_template, out.messages);
  for (const std::string& stop : chat_template.stop) {
    if (std::find(out.params.stop.begin(), out.params.stop.end(), stop) == out.params.stop.end()) {
      out.params.stop.push_back(stop);
    }
  }
  return out;
}

std::string_view OpenAiFinishReason(FinishReason reason) {
  return reason == FinishReason::kLength ? "length" : "stop";
}

json UsageJson(int64_t prompt_tokens, int64_t completion_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

json CompletionResponse(bool chat, const ResponseIds& ids, const std::string& text,
                        FinishReason finish, int64_t prompt_tokens, int64_t completion_tokens,
                        const json* tokens) {
  json choice = {
      {"index", 0}, {"logprobs", nullptr}, {"finish_reason", Str(OpenAiFinishReason(finish))}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  json out = {{"id", ids.id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", ids.created},
              {"model", ids.model},
              {"choices", json::array({choice})},
              {"usage", UsageJson(prompt_tokens, completion_tokens)}};
  if (tokens != nullptr) out["fotserve"] = FotserveTokens(tokens);
  return out;
}

json CompletionChunk(bool chat, const ResponseIds& ids, const std::string& text, bool first,
                     std::optional<FinishReason> finish, const json* token) {
  json choice = {{"index", 0},
                 {"logprobs", nullptr},
                 {"finish_reason", finish ? json(Str(OpenAiFinishReason(*finish))) : json()}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && !finish)) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  json out = {{"id", ids.id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", ids.created},
              {"model", ids.model},
              {"choices", json::array({choice})}};
  if (token != nullptr) out["fotserve"] = *token;
  return out;
}

json UsageChunk(bool chat, const ResponseIds& ids, int64_t prompt_tokens,
                int64_t completion_tokens) {
  return json{{"id", ids.id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", ids.created},
              {"model", ids.model},
              {"choices", json::array()},
              {"usage", UsageJson(prompt_tokens, completion_tokens)}};
}

json TokenJson(int token_id, const std::string& piece, const std::string& text,
               const QueryProvenance* provenance, const std::vector<AttentionTrace>* traces) {
  json out = {{"token_id", token_id}, {"piece", piece}, {"text", text}};
  if (provenance == nullptr || traces == nullptr) return out;
  json layers = json::array();
  for (size_t layer = 0; layer < traces->size(); ++layer) {
    if (!provenance->IsMemoryLayer(static_cast<int>(layer))) continue;
    json heads = json::array();
    for (size_t h = 0; h < (*traces)[layer].heads.size(); ++h) {
      json entries = json::array();
      for (const TracedEntry& t : (*traces)[layer].heads[h]) {
        const ResolvedEntry e = provenance->Resolve(t.id);
        entries.push_back({{"id", e.id},
                           {"document", e.document},
                           {"document_index", e.document_index},
                           {"position", e.position},
                           {"token_id", e.token_id},
                           {"token_text", e.token_text},
                           {"deleted", e.deleted},
                           {"inner_product", t.inner_product},
                           {"attention_share", t.attention_share}});
      }
      heads.push_back({{"head", h}, {"entries", std::move(entries)}});
    }
    layers.push_back({{"layer", layer}, {"heads", std::move(heads)}});
  }
  out["trace"] = std::move(layers);
  return out;
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string SseEvent(const json& data) { return absl::StrCat("data: ", Dump(data), "\n\n"); }

}  // namespace fot::http
