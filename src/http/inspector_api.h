// The JSON views of sessions that the web memory inspector (GET / on the HTTP
// port, inspector.html) reads, under /fotserve/v1: what a session holds
// (options, documents, memory per layer and head), the text of its stream
// token by token, and the context of a memory entry. Questions go through
// POST /v1/completions with fotserve.trace (openai_api.h).
//
//   GET /fotserve/v1/sessions                            every session the key covers
//   GET /fotserve/v1/sessions/{name}                     one, with its documents
//   GET /fotserve/v1/sessions/{name}/tokens?first=F&count=N
//   GET /fotserve/v1/sessions/{name}/entries/{id}/context?layer=L&radius=R
//
// Pure functions over a ManagedSession (no HTTP types); http_server.cc routes.
//
// Thread safety: as the Session methods they call.
#ifndef FOTSERVE_SRC_HTTP_INSPECTOR_API_H_
#define FOTSERVE_SRC_HTTP_INSPECTOR_API_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "src/server/session_manager.h"
#include "src/tokenizer/tokenizer.h"

namespace fot::http {

// Most stream tokens one tokens request returns, and the largest context
// radius (as the gRPC EntryContext's).
inline constexpr int64_t kMaxTokensPerPage = 65536;
inline constexpr int kMaxContextRadius = 4096;

// Name, options, progress and memory (bytes; per memory layer its index and
// per kv head entries, live entries and bytes); with `with_documents` the
// documents (name, index, first stream position, tokens, deleted).
nlohmann::json SessionJson(const ManagedSession& managed, bool with_documents);

// Stream positions [first, first + count) (clamped to the stream), each with
// its token id and its text as the stream decodes it from `first` (so the
// texts concatenate to the decoded text; a token that completes no character
// has ""), and the document it belongs to.
absl::StatusOr<nlohmann::json> StreamTokensJson(const ManagedSession& managed,
                                                const Tokenizer& tokenizer, int64_t first,
                                                int64_t count);

// Memory entry `id` of `layer` with the entries around it in its document
// (`radius` positions each way): their provenance, and the text before, of
// and after the entry.
absl::StatusOr<nlohmann::json> EntryContextJson(const ManagedSession& managed,
                                                const Tokenizer& tokenizer, int layer, int64_t id,
                                                int radius);

}  // namespace fot::http

#endif  // FOTSERVE_SRC_HTTP_INSPECTOR_API_H_
