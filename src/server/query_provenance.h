// Where the memory entries a query retrieved came from, for its traces:
// which document, position and token each entry id stands for, resolved from
// a snapshot of the session taken before the query (a query must not call
// into its session while it runs: the session holds its lock).
//
// Committed memory holds the stream's tokens in order, so entry e of a
// layer's committed memory is stream token Session::EntryPosition(e) (e itself
// under fot); a query's own entries (ids past the committed ones) continue in
// its input's order: the pending tail, then the query's tokens (question,
// generated).
//
// Knows nothing of gRPC or HTTP (service_conversions.h writes these as
// fot.v1 messages, src/http as JSON).
//
// Thread safety: a QueryProvenance belongs to one query.
#ifndef FOTSERVE_SRC_SERVER_QUERY_PROVENANCE_H_
#define FOTSERVE_SRC_SERVER_QUERY_PROVENANCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "src/engine/session.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {

struct ResolvedEntry {
  int64_t id = 0;
  std::string document;        // "" for the query's own tokens
  int64_t document_index = 0;  // session-local number; -1: the query
  int64_t position = 0;        // in the document (or in the query)
  int token_id = 0;
  std::string token_text;  // the vocabulary piece
  bool deleted = false;
};

class QueryProvenance {
 public:
  QueryProvenance(const Session& session, const Tokenizer& tokenizer);

  // Appends a token of the query (question first, then each generated one).
  void AddQueryToken(int token) { query_.push_back(token); }

  ResolvedEntry Resolve(int64_t id) const;

  // The layers with memory, ascending (traces list every layer).
  const std::vector<int>& memory_layers() const { return memory_layers_; }
  bool IsMemoryLayer(int layer) const;

 private:
  void SetToken(int token, ResolvedEntry* out) const;

  const Tokenizer& tokenizer_;
  const Session& session_;  // for EntryPosition only, which takes no lock
  std::vector<int> memory_layers_;
  std::vector<DocumentInfo> documents_;  // in stream order
  std::vector<int> stream_;
  std::vector<int> query_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_QUERY_PROVENANCE_H_
