// Provenance of a query's retrieved entries (see query_provenance.h).
#include "src/server/query_provenance.h"

#include <algorithm>
#include <iterator>

namespace fot {

QueryProvenance::QueryProvenance(const Session& session, const Tokenizer& tokenizer)
    : tokenizer_(tokenizer),
      session_(session),
      memory_layers_(session.memory_layers()),
      documents_(session.Documents()) {
  stream_ = session.StreamTokens(0, session.Progress().stream_tokens);
}

bool QueryProvenance::IsMemoryLayer(int layer) const {
  return std::binary_search(memory_layers_.begin(), memory_layers_.end(), layer);
}

ResolvedEntry QueryProvenance::Resolve(int64_t id) const {
  ResolvedEntry out;
  out.id = id;
  const int64_t position = session_.EntryPosition(id);
  if (position >= static_cast<int64_t>(stream_.size())) {
    const int64_t q = position - static_cast<int64_t>(stream_.size());
    out.document_index = -1;
    out.position = q;
    if (q < static_cast<int64_t>(query_.size())) SetToken(query_[q], &out);
    return out;
  }
  if (position < 0) return out;
  SetToken(stream_[position], &out);
  auto it = std::upper_bound(documents_.begin(), documents_.end(), position,
                             [](int64_t p, const DocumentInfo& d) { return p < d.first; });
  if (it == documents_.begin()) return out;
  const DocumentInfo& d = *std::prev(it);
  out.document = d.name;
  out.document_index = d.id;
  out.position = position - d.first;
  out.deleted = d.deleted;
  return out;
}

void QueryProvenance::SetToken(int token, ResolvedEntry* out) const {
  out->token_id = token;
  out->token_text = tokenizer_.PieceText(token);
}

}  // namespace fot
