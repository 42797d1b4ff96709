#include "client/trace_view.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fot::client {
namespace {

constexpr int kSideWidth = 24;  // code points of context either side

// The last `n` code points of `text`.
std::string Tail(const std::string& text, int n) {
  size_t i = text.size();
  int count = 0;
  while (i > 0 && count < n) {
    --i;
    if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) ++count;
  }
  return text.substr(i);
}

}  // namespace

std::vector<TopEntry> TopEntries(const fot::v1::LayerRetrieval& layer, int n) {
  std::vector<TopEntry> all;
  for (const auto& head : layer.heads()) {
    for (const auto& e : head.entries()) all.push_back({layer.layer(), head.head(), e});
  }
  std::stable_sort(all.begin(), all.end(), [](const TopEntry& a, const TopEntry& b) {
    return a.retrieved.attention_share() > b.retrieved.attention_share();
  });
  std::vector<TopEntry> top;
  std::set<int64_t> seen;
  for (TopEntry& e : all) {
    if (static_cast<int>(top.size()) == n) break;
    if (seen.insert(e.retrieved.entry().id()).second) top.push_back(std::move(e));
  }
  return top;
}

std::string Percent(float share) {
  if (share < 0.001f) return "<0.1%";
  return absl::StrFormat("%.1f%%", share * 100);
}

EntryContextCache::EntryContextCache(const Connection* connection, std::string session, int radius)
    : connection_(connection), session_(std::move(session)), radius_(radius) {}

std::string EntryContextCache::Snippet(int layer, const fot::v1::MemoryEntry& entry) {
  const auto key = std::make_pair(layer, entry.id());
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  std::string snippet = absl::StrCat("[", Printable(entry.token_text()), "]");
  if (entry.document_index() >= 0) {
    fot::v1::EntryContextRequest request;
    request.set_session(session_);
    request.set_layer(layer);
    request.set_id(entry.id());
    request.set_radius(radius_);
    grpc::ClientContext context;
    fot::v1::EntryContextResponse response;
    if (connection_->stub->EntryContext(&context, request, &response).ok()) {
      const std::string before = Printable(response.text_before());
      const std::string after = Printable(response.text_after(), kSideWidth);
      // A byte of a character that later tokens complete has no text of its
      // own: show its piece.
      const std::string& own =
          response.entry_text().empty() ? entry.token_text() : response.entry_text();
      snippet = absl::StrCat(DisplayWidth(before) > kSideWidth ? "…" : "", Tail(before, kSideWidth),
                             "[", Printable(own), "]", after);
    }
  }
  cache_.emplace(key, snippet);
  return snippet;
}

void AddTraceRows(Table& table, std::vector<std::string> lead, const std::vector<TopEntry>& entries,
                  EntryContextCache& contexts) {
  for (const TopEntry& e : entries) {
    const fot::v1::MemoryEntry& entry = e.retrieved.entry();
    std::vector<std::string> row = lead;
    for (std::string& cell : lead) cell.clear();
    row.push_back(std::to_string(e.layer));
    row.push_back(std::to_string(e.head));
    row.push_back(entry.document_index() < 0 ? "(query)" : Printable(entry.document(), 24));
    row.push_back(std::to_string(entry.position()));
    row.push_back(contexts.Snippet(e.layer, entry));
    row.push_back(Percent(e.retrieved.attention_share()));
    table.AddRow(std::move(row));
  }
}

}  // namespace fot::client
