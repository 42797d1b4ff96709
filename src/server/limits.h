// What one request, one session and the whole server may cost, so that no
// request makes the server allocate or compute without bound. Each limit is
// checked before the work it bounds allocates anything. A parameter out of
// range is InvalidArgument; a session or a server that is full is
// ResourceExhausted. Both name the limit and the fot-server flag that sets
// it. Knows nothing of gRPC.
#ifndef FOTSERVE_SRC_SERVER_LIMITS_H_
#define FOTSERVE_SRC_SERVER_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "src/checkpoint/model_config.h"
#include "src/engine/session.h"

namespace fot {

struct Limits {
  // knn:K of a session or of one query: each generated token reads K entries
  // per head and layer.
  int max_top_k = 1024;
  // Sink tokens of a lambda session (copied into every query's state).
  int max_n_global = 1024;
  // Tokens one query runs beyond the session: a question, Score's context
  // and continuation, SearchMemory's text.
  int64_t max_query_tokens = 65536;
  // Documents of one session (kept turns count as documents).
  int64_t max_documents = 100000;
  // Tokens of one session's stream; each becomes one memory entry per
  // memory layer and kv head.
  int64_t max_session_tokens = int64_t{16} << 20;
  // Memory (keys, values and their bookkeeping, at each session's dtype) of
  // all sessions together. 0: DefaultMaxMemoryBytes().
  int64_t max_memory_bytes = 0;
  // An Ingest stream that sends nothing for this long is ended (its
  // acknowledged data is kept), and so is a call whose client has not read a
  // reply for write_timeout: neither can hold a session.
  absl::Duration idle_timeout = absl::Minutes(5);
  absl::Duration write_timeout = absl::Seconds(30);
};

// Half of this machine's physical memory: the rest is for the model's
// weights, the queries' working state and the index structures.
int64_t DefaultMaxMemoryBytes();

// InvalidArgument naming the first limit that is out of range (negative, or
// a count below 1).
[[nodiscard]] absl::Status ValidateLimits(const Limits& limits);

// InvalidArgument if `retrieval` reads more entries than the limits allow.
[[nodiscard]] absl::Status CheckRetrieval(const Retrieval& retrieval, const Limits& limits);

// InvalidArgument if a session with `options` would pass a limit by
// existing (top-k, sink tokens).
[[nodiscard]] absl::Status CheckSessionOptions(const SessionOptions& options, const Limits& limits);

// InvalidArgument if one query's `tokens` (`what`: "question", ...) are more
// than max_query_tokens.
[[nodiscard]] absl::Status CheckQueryTokens(int64_t tokens, const char* what, const Limits& limits);

// Bytes of memory one stream token costs `session` of a model with `config`
// once committed: a key and a value per memory layer and kv head, with their
// provenance and index id. (Index structures and vector growth come on top.)
int64_t MemoryBytesPerToken(const Session& session, const ModelConfig& config);

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_LIMITS_H_
