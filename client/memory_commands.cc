// fotctl memory stats|ls|show|search|rm|save|load.
#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "client/commands.h"
#include "client/progress.h"
#include "client/proto_json.h"
#include "client/table.h"
#include "client/text_check.h"
#include "client/trace_view.h"

namespace fot::client {
namespace {

constexpr int kMaxPage = 10000;  // ListEntries' largest page_size

}  // namespace

absl::Status MemoryStats(const Connection& c, const Output& out, const std::string& session) {
  fot::v1::MemoryStatsRequest request;
  request.set_session(session);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::MemoryStatsResponse stats;
  const grpc::Status status = c.stub->MemoryStats(&context, request, &stats);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    nlohmann::json j = ToJson(stats);
    j["session"] = session;
    PrintJson(j);
    return absl::OkStatus();
  }
  std::printf("session '%s': %s tokens, %s committed to memory, %s of memory\n", session.c_str(),
              GroupThousands(stats.stream_tokens()).c_str(),
              GroupThousands(stats.committed_tokens()).c_str(), HumanBytes(stats.bytes()).c_str());
  std::printf("documents with live entries: %s\n",
              stats.documents().empty() ? "none" : absl::StrJoin(stats.documents(), ", ").c_str());
  // The share of its store a query scanned, over the searches so far.
  const auto scanned = [](const fot::v1::HeadStats& h) -> std::string {
    if (h.searched_queries() == 0 || h.entries() == 0 || h.keys_scored() == 0) return "-";
    const double share = static_cast<double>(h.keys_scored()) / h.searched_queries() / h.entries();
    return absl::StrFormat("%.2f%%", 100 * std::min(share, 1.0));
  };
  Table table({"layer", "index", "kv head", "entries", "live", "bytes", "scanned/query"});
  table.AlignRight(0).AlignRight(2).AlignRight(3).AlignRight(4).AlignRight(5).AlignRight(6);
  for (const auto& layer : stats.layers()) {
    bool first = true;
    for (const auto& h : layer.heads()) {
      table.AddRow({first ? std::to_string(layer.layer()) : "", first ? layer.index() : "",
                    std::to_string(h.kv_head()), GroupThousands(h.entries()),
                    GroupThousands(h.live_entries()), HumanBytes(h.bytes()), scanned(h)});
      first = false;
    }
  }
  std::fputs(table.Render().c_str(), stdout);
  return absl::OkStatus();
}

absl::Status MemoryList(const Connection& c, const Output& out, const std::string& session,
                        std::optional<int> layer, int64_t offset, int64_t limit) {
  // The first page starts at `offset`; later ones follow next_page_token.
  std::vector<fot::v1::MemoryEntry> entries;
  std::string page_token;
  int64_t total = 0;
  bool more = false;
  while (static_cast<int64_t>(entries.size()) < limit) {
    fot::v1::ListEntriesRequest request;
    request.set_session(session);
    if (layer.has_value()) request.set_layer(*layer);
    const int64_t wanted = limit - static_cast<int64_t>(entries.size());
    request.set_page_size(static_cast<int>(std::min<int64_t>(wanted, kMaxPage)));
    if (page_token.empty()) {
      request.set_offset(offset);
    } else {
      request.set_page_token(page_token);
    }
    FOT_RETURN_IF_ERROR(CheckText(request));
    grpc::ClientContext context;
    fot::v1::ListEntriesResponse response;
    const grpc::Status status = c.stub->ListEntries(&context, request, &response);
    if (!status.ok()) return FromGrpc(status, c.address);
    if (page_token.empty() && response.offset() != offset) {
      return absl::FailedPreconditionError(
          "the server ignored --offset (it predates ListEntriesRequest.offset); upgrade "
          "fot-server");
    }
    total = response.total_entries();
    entries.insert(entries.end(), response.entries().begin(), response.entries().end());
    more = response.has_more();
    page_token = response.next_page_token();
    if (!more || response.entries().empty()) break;
  }
  const int64_t next = offset + static_cast<int64_t>(entries.size());
  if (out.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : entries) list.push_back(ToJson(e));
    PrintJson({{"session", session},
               {"layer", layer.has_value() ? nlohmann::json(*layer) : nlohmann::json()},
               {"offset", offset},
               {"total_entries", total},
               {"has_more", more},
               {"next_offset", more ? nlohmann::json(next) : nlohmann::json()},
               {"entries", list}});
    return absl::OkStatus();
  }
  if (entries.empty()) {
    std::printf("no entries at offset %lld (the layer has %s)\n", static_cast<long long>(offset),
                GroupThousands(total).c_str());
    return absl::OkStatus();
  }
  std::printf("entries %lld-%lld of %s\n", static_cast<long long>(offset),
              static_cast<long long>(next - 1), GroupThousands(total).c_str());
  Table table({"id", "document", "pos", "token id", "token", "state"});
  table.AlignRight(0).AlignRight(2).AlignRight(3);
  for (const auto& e : entries) {
    table.AddRow({std::to_string(e.id()), Printable(e.document(), 32), std::to_string(e.position()),
                  std::to_string(e.token_id()), Printable(e.token_text(), 24),
                  e.deleted() ? "deleted" : ""});
  }
  std::fputs(table.Render().c_str(), stdout);
  if (more) {
    const std::string layer_flag = layer.has_value() ? absl::StrCat(" --layer ", *layer) : "";
    std::printf("more: fotctl memory ls %s%s --offset %lld --limit %lld\n", session.c_str(),
                layer_flag.c_str(), static_cast<long long>(next), static_cast<long long>(limit));
  }
  return absl::OkStatus();
}

absl::Status MemoryShow(const Connection& c, const Output& out, const std::string& session,
                        std::optional<int> layer, int64_t entry, int radius) {
  fot::v1::EntryContextRequest request;
  request.set_session(session);
  if (layer.has_value()) request.set_layer(*layer);
  request.set_id(entry);
  request.set_radius(radius);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::EntryContextResponse response;
  const grpc::Status status = c.stub->EntryContext(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, c.address);
  const fot::v1::MemoryEntry* self = nullptr;
  for (const auto& e : response.entries()) {
    if (e.id() == entry) self = &e;
  }
  if (out.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : response.entries()) list.push_back(ToJson(e));
    PrintJson({{"session", session},
               {"entry", self != nullptr ? ToJson(*self) : nlohmann::json()},
               {"text_before", response.text_before()},
               {"entry_text", response.entry_text()},
               {"text_after", response.text_after()},
               {"entries", list}});
    return absl::OkStatus();
  }
  if (self != nullptr) {
    std::printf("entry %lld: document '%s', position %lld, token %d '%s'%s\n",
                static_cast<long long>(entry), self->document().c_str(),
                static_cast<long long>(self->position()), self->token_id(),
                Printable(self->token_text()).c_str(), self->deleted() ? " (deleted)" : "");
  }
  // The entry's own token bracketed, the text around it as it reads (a byte
  // of a character that later tokens complete shows as its piece).
  const std::string entry_text =
      response.entry_text().empty() && self != nullptr ? self->token_text() : response.entry_text();
  std::printf("%s[%s]%s\n", response.text_before().c_str(), entry_text.c_str(),
              response.text_after().c_str());
  return absl::OkStatus();
}

absl::Status MemorySearch(const Connection& c, const Output& out, const std::string& session,
                          const std::string& text, int top, const std::string& retrieval) {
  fot::v1::SearchMemoryRequest request;
  request.set_session(session);
  request.set_text(text);
  request.set_top(top);
  request.set_retrieval(retrieval);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::SearchMemoryResponse response;
  const grpc::Status status = c.stub->SearchMemory(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& layer : response.layers()) layers.push_back(ToJson(layer));
    PrintJson({{"session", session}, {"text", text}, {"layers", layers}});
    return absl::OkStatus();
  }
  EntryContextCache contexts(&c, session, /*radius=*/6);
  Table table({"layer", "head", "document", "pos", "context", "share"});
  table.AlignRight(0).AlignRight(1).AlignRight(3).AlignRight(5);
  for (const auto& layer : response.layers())
    AddTraceRows(table, {}, TopEntries(layer, top), contexts);
  if (table.empty()) {
    std::printf("memory is empty\n");
    return absl::OkStatus();
  }
  std::printf(
      "what the memory layers retrieve for the last token of the text (top %d per layer):\n", top);
  std::fputs(table.Render().c_str(), stdout);
  return absl::OkStatus();
}

absl::Status MemoryDeleteDocument(const Connection& c, const Output& out,
                                  const std::string& session, const std::string& document) {
  fot::v1::DeleteDocumentRequest request;
  request.set_session(session);
  request.set_document(document);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::DeleteDocumentResponse response;
  const grpc::Status status = c.stub->DeleteDocument(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    PrintJson({{"session", session}, {"deleted_document", document}});
  } else {
    std::printf("deleted document '%s' from session '%s' (its entries are no longer retrieved)\n",
                document.c_str(), session.c_str());
  }
  return absl::OkStatus();
}

absl::Status MemorySave(const Connection& c, const Output& out, const std::string& session,
                        const std::string& snapshot, bool overwrite) {
  fot::v1::SaveSessionRequest request;
  request.set_session(session);
  request.set_snapshot(snapshot);
  request.set_overwrite(overwrite);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::SaveSessionResponse response;
  const grpc::Status status = c.stub->SaveSession(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    PrintJson({{"session", session}, {"snapshot", snapshot}, {"bytes", response.bytes()}});
  } else {
    std::printf("saved session '%s' as snapshot '%s' (%s)\n", session.c_str(), snapshot.c_str(),
                HumanBytes(response.bytes()).c_str());
  }
  return absl::OkStatus();
}

absl::Status MemoryLoad(const Connection& c, const Output& out, const std::string& session,
                        const std::string& snapshot) {
  fot::v1::LoadSessionRequest request;
  request.set_snapshot(snapshot);
  request.set_session(session);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::SessionInfo info;
  const grpc::Status status = c.stub->LoadSession(&context, request, &info);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    PrintJson(ToJson(info));
  } else {
    std::printf("loaded snapshot '%s' as session '%s': %s tokens, %d documents, %s of memory\n",
                snapshot.c_str(), info.name().c_str(), GroupThousands(info.stream_tokens()).c_str(),
                info.document_count(), HumanBytes(info.memory_bytes()).c_str());
  }
  return absl::OkStatus();
}

}  // namespace fot::client
