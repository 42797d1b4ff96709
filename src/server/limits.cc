#include "src/server/limits.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace fot {

int64_t DefaultMaxMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return int64_t{8} << 30;  // unknown: 8 GiB
  return static_cast<int64_t>(pages) * page_size / 2;
}

absl::Status ValidateLimits(const Limits& limits) {
  const std::pair<const char*, int64_t> at_least_one[] = {
      {"max_top_k", limits.max_top_k},
      {"max_query_tokens", limits.max_query_tokens},
      {"max_documents", limits.max_documents},
      {"max_session_tokens", limits.max_session_tokens}};
  for (const auto& [name, value] : at_least_one) {
    if (value < 1) return absl::InvalidArgumentError(absl::StrCat(name, " must be >= 1"));
  }
  if (limits.max_n_global < 0) return absl::InvalidArgumentError("max_n_global must be >= 0");
  if (limits.max_memory_bytes < 0) {
    return absl::InvalidArgumentError("max_memory_bytes must be >= 0 (0: half of the RAM)");
  }
  if (limits.idle_timeout < absl::ZeroDuration() || limits.write_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must be >= 0 (0: none)");
  }
  return absl::OkStatus();
}

absl::Status CheckRetrieval(const Retrieval& retrieval, const Limits& limits) {
  if (retrieval.mode == Retrieval::Mode::kKnn && retrieval.top_k > limits.max_top_k) {
    return absl::InvalidArgumentError(absl::StrCat("retrieval knn:", retrieval.top_k,
                                                   " reads more than the server's limit of ",
                                                   limits.max_top_k, " entries (--max_top_k)"));
  }
  return absl::OkStatus();
}

absl::Status CheckSessionOptions(const SessionOptions& options, const Limits& limits) {
  if (absl::Status s = CheckRetrieval(options.retrieval, limits); !s.ok()) return s;
  if (options.attention.mode == AttentionMode::kLambda &&
      options.attention.n_global > limits.max_n_global) {
    return absl::InvalidArgumentError(absl::StrCat("n_global ", options.attention.n_global,
                                                   " is more sink tokens than the server's limit "
                                                   "of ",
                                                   limits.max_n_global, " (--max_n_global)"));
  }
  return absl::OkStatus();
}

absl::Status CheckQueryTokens(int64_t tokens, const char* what, const Limits& limits) {
  if (tokens > limits.max_query_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", what, " has ", tokens, " tokens, more than the server's limit of ",
                     limits.max_query_tokens,
                     " per query (--max_query_tokens); ingest long text as a document"));
  }
  return absl::OkStatus();
}

int64_t MemoryBytesPerToken(const Session& session, const ModelConfig& config) {
  const int kv_heads =
      config.num_key_value_heads > 0 ? config.num_key_value_heads : config.num_attention_heads;
  const int64_t scalar = BytesPerScalar(session.options().memory.dtype);
  // Provenance (20 bytes) and the index's id of the entry (8).
  const int64_t per_entry = 2 * config.head_dim() * scalar + 28;
  return static_cast<int64_t>(session.memory_layers().size()) * kv_heads * per_entry;
}

}  // namespace fot
