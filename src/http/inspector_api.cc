// The inspector's JSON views of sessions (see inspector_api.h).
#include "src/http/inspector_api.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/http/openai_api.h"

namespace fot::http {
namespace {

using nlohmann::json;

// The document holding stream position `position`, or -1.
int64_t DocumentAt(const std::vector<DocumentInfo>& documents, int64_t position) {
  auto it = std::upper_bound(documents.begin(), documents.end(), position,
                             [](int64_t p, const DocumentInfo& d) { return p < d.first; });
  if (it == documents.begin()) return -1;
  return std::prev(it)->id;
}

}  // namespace

json SessionJson(const ManagedSession& managed, bool with_documents) {
  const Session& session = managed.session();
  const IngestProgress progress = session.Progress();
  const MemoryStats stats = session.Stats();
  json layers = json::array();
  for (const LayerStats& l : stats.layers) {
    json heads = json::array();
    for (const HeadStats& h : l.heads) {
      heads.push_back({{"kv_head", h.kv_head},
                       {"entries", h.entries},
                       {"live_entries", h.live_entries},
                       {"bytes", h.bytes}});
    }
    layers.push_back({{"layer", l.layer}, {"index", l.index}, {"heads", std::move(heads)}});
  }
  const std::vector<DocumentInfo> documents = session.Documents();
  json out = {{"name", managed.name()},
              {"retrieval", DescribeRetrieval(session.options().retrieval)},
              {"index", DescribeOptions(session.options().memory)},
              {"attention", AttentionModeName(session.options().attention.mode)},
              {"stream_tokens", progress.stream_tokens},
              {"committed_tokens", progress.committed_tokens},
              {"document_count", documents.size()},
              {"memory", {{"bytes", stats.bytes}, {"layers", std::move(layers)}}}};
  if (with_documents) {
    json docs = json::array();
    for (const DocumentInfo& d : documents) {
      docs.push_back({{"name", d.name},
                      {"index", d.id},
                      {"first", d.first},
                      {"tokens", d.tokens},
                      {"deleted", d.deleted}});
    }
    out["documents"] = std::move(docs);
  }
  return out;
}

absl::StatusOr<json> StreamTokensJson(const ManagedSession& managed, const Tokenizer& tokenizer,
                                      int64_t first, int64_t count) {
  if (first < 0) return InvalidParam("first", "'first' must be >= 0");
  if (count < 1 || count > kMaxTokensPerPage) {
    return InvalidParam("count", absl::StrCat("'count' must lie in [1, ", kMaxTokensPerPage, "]"));
  }
  const Session& session = managed.session();
  const std::vector<int> ids = session.StreamTokens(first, count);
  const std::vector<DocumentInfo> documents = session.Documents();
  DetokenizeStream detokenize(&tokenizer);
  json tokens = json::array();
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t position = first + static_cast<int64_t>(i);
    std::string text = detokenize.Feed(ids[i]);
    if (i + 1 == ids.size()) text += detokenize.Flush();
    tokens.push_back({{"position", position},
                      {"token_id", ids[i]},
                      {"text", std::move(text)},
                      {"document_index", DocumentAt(documents, position)}});
  }
  return json{{"first", first},
              {"stream_tokens", session.Progress().stream_tokens},
              {"tokens", std::move(tokens)}};
}

absl::StatusOr<json> EntryContextJson(const ManagedSession& managed, const Tokenizer& tokenizer,
                                      int layer, int64_t id, int radius) {
  if (radius < 1 || radius > kMaxContextRadius) {
    return InvalidParam("radius",
                        absl::StrCat("'radius' must lie in [1, ", kMaxContextRadius, "]"));
  }
  const Session& session = managed.session();
  absl::StatusOr<std::vector<MemoryEntry>> entries = session.EntryContext(layer, id, radius);
  if (!entries.ok()) return entries.status();
  const std::vector<DocumentInfo> documents = session.Documents();
  DetokenizeStream detokenize(&tokenizer);
  std::string before, text, after;
  bool seen = false;
  json list = json::array();
  for (const MemoryEntry& e : *entries) {
    const int64_t d = e.provenance.document;
    list.push_back(
        {{"id", e.id},
         {"document",
          d >= 0 && d < static_cast<int64_t>(documents.size()) ? documents[d].name : std::string()},
         {"document_index", d},
         {"position", e.provenance.position},
         {"token_id", e.provenance.token},
         {"token_text", tokenizer.PieceText(e.provenance.token)},
         {"deleted", e.deleted}});
    const std::string piece = detokenize.Feed(e.provenance.token);
    if (e.id == id) {
      text = piece;
      seen = true;
    } else {
      (seen ? after : before) += piece;
    }
  }
  after += detokenize.Flush();
  return json{{"layer", layer},        {"id", id},           {"entries", std::move(list)},
              {"text_before", before}, {"entry_text", text}, {"text_after", after}};
}

}  // namespace fot::http
