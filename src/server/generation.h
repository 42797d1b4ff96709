// One generation query as every front end runs it (the gRPC service's
// Generate, the HTTP API's completions): the request's parameters checked
// against the server's limits, the session's Generate driven with
// cancellation, text streamed through DetokenizeStream with stop strings held
// back, a kept turn persisted, and the metrics counted. The front end only
// converts its request into GenerationParams and writes each piece of text.
//
// Knows nothing of gRPC or HTTP.
//
// Thread safety: a Generation belongs to one request (one thread); StopMatcher
// likewise.
#ifndef FOTSERVE_SRC_SERVER_GENERATION_H_
#define FOTSERVE_SRC_SERVER_GENERATION_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/engine/session.h"
#include "src/server/limits.h"
#include "src/server/server_metrics.h"
#include "src/server/session_manager.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {

// Fixed bounds of a query (proto/fot.proto lists them).
inline constexpr int kDefaultMaxTokens = 64;
inline constexpr int kMaxTokensLimit = 1 << 16;
inline constexpr int kDefaultTraceTop = 8;
inline constexpr int kMaxTop = 256;
inline constexpr int kMaxStops = 16;
inline constexpr size_t kMaxStopBytes = 256;

// Streams generated text, holding back what may still become a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds text; returns what can be sent. Sets stopped() once a stop string
  // appears (the text before it is returned, the rest dropped).
  std::string Add(const std::string& text);
  // The text still held back.
  std::string Flush() { return std::exchange(held_, ""); }
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

// The retrieval a query uses: the session's, or `spec` ("knn:64"), restricted
// to the named documents. nullopt: the session's own. InvalidArgument for a
// bad spec or one past the limits, NotFound for an unknown document.
absl::StatusOr<std::optional<Retrieval>> QueryRetrieval(const ManagedSession& session,
                                                        const std::string& spec,
                                                        const std::vector<std::string>& documents,
                                                        const Limits& limits);

// What a generation request asks for, whatever its wire format.
struct GenerationParams {
  int max_tokens = 0;  // 0: kDefaultMaxTokens; at most kMaxTokensLimit
  SamplingOptions sampling;
  std::vector<std::string> stop;  // at most kMaxStops, each 1 to kMaxStopBytes bytes
  bool ignore_eos = false;
  std::string retrieval;               // "" : the session's
  std::vector<std::string> documents;  // only these documents' entries; empty: all
  bool trace = false;
  int trace_top = 0;  // 0: kDefaultTraceTop; at most kMaxTop
  bool keep_turn = false;
};

enum class FinishReason { kStop, kEos, kLength };

// "stop" (a stop string), "eos" (the end-of-sequence token), "length".
std::string_view FinishReasonName(FinishReason reason);

// How a generation ended.
struct GenerationEnd {
  std::string text;  // what was held back until the end ("" after a stop string)
  FinishReason finish = FinishReason::kLength;
  int64_t prompt_tokens = 0;  // pending tail + question: what the query ran
  int64_t generated_tokens = 0;
};

// Receives each generated token with the text that may be sent now (often
// "", the text of a token that completes no character or may start a stop
// string) and the token's logits. Returning false stops the generation (the
// client went away).
using TokenSink =
    std::function<bool(const GeneratedToken& token, const std::string& text, const float* logits)>;

class Generation {
 public:
  // Checks `question` and `params` against the limits of `manager` and the
  // fixed bounds (InvalidArgument, naming the field), and for a kept turn
  // takes the session's writer lock and checks its capacity (Aborted,
  // ResourceExhausted). `metrics` may be null.
  static absl::StatusOr<std::unique_ptr<Generation>> Prepare(
      SessionManager* manager, std::shared_ptr<ManagedSession> session, std::vector<int> question,
      const GenerationParams& params, ServerMetrics* metrics);

  const std::vector<int>& question() const { return question_; }
  const QueryOptions& options() const { return options_; }
  const ManagedSession& session() const { return *session_; }

  // Runs the query: `sink` gets each token; `cancelled` is asked before each
  // window of the prefill (true ends the query with the session's error,
  // which the caller replaces by its own reason). Call once.
  absl::StatusOr<QueryResult> Run(const TokenSink& sink, std::function<bool()> cancelled);

  // After Run succeeded: persists a kept turn (its error, if any), then says
  // how the text ends.
  absl::StatusOr<GenerationEnd> Finish(const QueryResult& result);

 private:
  Generation(SessionManager* manager, std::shared_ptr<ManagedSession> session,
             std::vector<int> question, std::vector<std::string> stops, ServerMetrics* metrics)
      : manager_(manager),
        session_(std::move(session)),
        question_(std::move(question)),
        detokenize_(&manager->tokenizer()),
        stop_(std::move(stops)),
        metrics_(metrics) {}

  SessionManager* manager_;
  std::shared_ptr<ManagedSession> session_;
  std::vector<int> question_;
  QueryOptions options_;
  std::optional<WriterLock> writer_lock_;  // a kept turn's
  DetokenizeStream detokenize_;
  StopMatcher stop_;
  ServerMetrics* metrics_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_GENERATION_H_
