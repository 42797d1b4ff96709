#include "client/proto_json.h"

#include <cstdio>

namespace fot::client {

using nlohmann::json;

json ToJson(const fot::v1::ServerInfo& info) {
  return {{"model_dir", info.model_dir()},
          {"model_type", info.model_type()},
          {"vocab_size", info.vocab_size()},
          {"hidden_size", info.hidden_size()},
          {"num_layers", info.num_layers()},
          {"num_heads", info.num_heads()},
          {"num_kv_heads", info.num_kv_heads()},
          {"window", info.window()},
          {"last_context_length", info.last_context_length()},
          {"memory_layers",
           json(std::vector<int>(info.memory_layers().begin(), info.memory_layers().end()))},
          {"bos_id", info.bos_id()},
          {"eos_id", info.eos_id()},
          {"default_options", ToJson(info.default_options())},
          {"max_sessions", info.max_sessions()},
          {"max_message_bytes", info.max_message_bytes()},
          {"sessions", info.sessions()}};
}

json ToJson(const fot::v1::SessionOptions& options) {
  json out = {{"retrieval", options.retrieval()},
              {"index", options.index()},
              {"memory_dtype", options.memory_dtype()},
              {"last_context_length", options.last_context_length()},
              {"attention", options.attention()}};
  // The lambda options: null for fot sessions.
  const bool lambda = options.attention() == "lambda";
  out["n_global"] = options.has_n_global() ? json(options.n_global()) : json();
  out["local_window"] = lambda ? json(options.local_window()) : json();
  out["memory_positioning"] = lambda ? json(options.memory_positioning()) : json();
  out["memory_layers"] = lambda ? json(options.memory_layers()) : json();
  return out;
}

json ToJson(const fot::v1::DocumentInfo& document) {
  return {{"name", document.name()},
          {"index", document.index()},
          {"first_token", document.first_token()},
          {"tokens", document.tokens()},
          {"deleted", document.deleted()},
          {"complete", document.complete()},
          {"text", document.text()},
          {"resume_offset", document.resume_offset()}};
}

json ToJson(const fot::v1::SessionInfo& session) {
  json documents = json::array();
  for (const auto& d : session.documents()) documents.push_back(ToJson(d));
  return {{"name", session.name()},
          {"options", ToJson(session.options())},
          {"stream_tokens", session.stream_tokens()},
          {"committed_tokens", session.committed_tokens()},
          {"memory_bytes", session.memory_bytes()},
          {"document_count", session.document_count()},
          {"documents", documents}};
}

json ToJson(const fot::v1::MemoryEntry& entry) {
  return {{"id", entry.id()},
          {"document", entry.document()},
          {"document_index", entry.document_index()},
          {"position", entry.position()},
          {"token_id", entry.token_id()},
          {"token_text", entry.token_text()},
          {"deleted", entry.deleted()}};
}

json ToJson(const fot::v1::RetrievedEntry& entry) {
  return {{"entry", ToJson(entry.entry())},
          {"inner_product", entry.inner_product()},
          {"attention_share", entry.attention_share()}};
}

json ToJson(const fot::v1::LayerRetrieval& layer) {
  json heads = json::array();
  for (const auto& head : layer.heads()) {
    json entries = json::array();
    for (const auto& e : head.entries()) entries.push_back(ToJson(e));
    heads.push_back({{"head", head.head()}, {"entries", entries}});
  }
  return {{"layer", layer.layer()}, {"heads", heads}};
}

json ToJson(const fot::v1::MemoryStatsResponse& stats) {
  json layers = json::array();
  for (const auto& layer : stats.layers()) {
    json heads = json::array();
    for (const auto& h : layer.heads()) {
      heads.push_back({{"kv_head", h.kv_head()},
                       {"entries", h.entries()},
                       {"live_entries", h.live_entries()},
                       {"bytes", h.bytes()}});
    }
    layers.push_back({{"layer", layer.layer()}, {"index", layer.index()}, {"heads", heads}});
  }
  return {{"layers", layers},
          {"documents",
           json(std::vector<std::string>(stats.documents().begin(), stats.documents().end()))},
          {"bytes", stats.bytes()},
          {"stream_tokens", stats.stream_tokens()},
          {"committed_tokens", stats.committed_tokens()}};
}

void PrintJson(const json& value) {
  // Invalid UTF-8 (a token piece cut mid-character) becomes U+FFFD rather
  // than an exception.
  const std::string text = value.dump(2, ' ', false, json::error_handler_t::replace);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace fot::client
