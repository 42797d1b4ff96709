// What fot-server measures, in one Prometheus registry (src/metrics) that the
// gRPC service, the HTTP API, the session manager and the generation code all
// count into; `GET /metrics` on the HTTP port renders it (README "Metrics"
// lists every name).
//
// Knows nothing of gRPC or HTTP: callers pass their method names and status
// codes as text.
//
// Thread safety: every method may be called from any thread.
#ifndef FOTSERVE_SRC_SERVER_SERVER_METRICS_H_
#define FOTSERVE_SRC_SERVER_SERVER_METRICS_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "src/metrics/metrics.h"

namespace fot {

class SessionManager;

class ServerMetrics {
 public:
  ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // One finished request: `api` "grpc" or "http", `method` the gRPC method
  // ("Generate") or HTTP route ("POST /v1/completions"), `code` its status
  // ("OK", "NOT_FOUND"; "200", "404").
  void CountRequest(std::string_view api, std::string_view method, std::string_view code,
                    double seconds);

  void AddIngestedTokens(int64_t tokens) { ingested_tokens_.Increment(tokens); }
  // A query's prompt (what it ran: pending tail + question) and its answer.
  void AddPromptTokens(int64_t tokens) { prompt_tokens_.Increment(tokens); }
  void AddGeneratedToken() { generated_tokens_.Increment(); }
  void ObserveTimeToFirstToken(double seconds) { time_to_first_token_.Observe(seconds); }
  void ObserveInterTokenLatency(double seconds) { inter_token_latency_.Observe(seconds); }

  // A synced write of a session's records (what an acknowledgement waits
  // for), a snapshot (SaveSession) and a memory checkpoint, with how they
  // ended.
  void ObserveStoreWrite(double seconds, bool ok);
  void ObserveSnapshotSave(double seconds, bool ok);
  void ObserveCheckpoint(double seconds, bool ok);

  // Counts a running stream of `kind` ("generate", "ingest") while alive.
  class StreamScope {
   public:
    StreamScope(ServerMetrics* metrics, std::string_view kind);  // metrics may be null
    ~StreamScope();
    StreamScope(const StreamScope&) = delete;
    StreamScope& operator=(const StreamScope&) = delete;

   private:
    metrics::Gauge* gauge_;
  };

  // The text exposition of everything, with the sessions and their memory
  // (entries, bytes, searches per session and index kind) read from
  // `manager` now (null: none yet).
  std::string Render(const SessionManager* manager);

  metrics::Registry& registry() { return registry_; }

 private:
  void CollectSessions(const SessionManager* manager) ABSL_EXCLUSIVE_LOCKS_REQUIRED(render_mu_);

  metrics::Registry registry_;
  metrics::Family<metrics::Counter>& requests_;
  metrics::Family<metrics::Histogram>& request_duration_;
  metrics::Counter& ingested_tokens_;
  metrics::Counter& prompt_tokens_;
  metrics::Counter& generated_tokens_;
  metrics::Histogram& time_to_first_token_;
  metrics::Histogram& inter_token_latency_;
  metrics::Family<metrics::Gauge>& active_streams_;
  metrics::Family<metrics::Counter>& store_writes_;
  metrics::Histogram& store_write_duration_;
  metrics::Family<metrics::Counter>& snapshot_saves_;
  metrics::Histogram& snapshot_save_duration_;
  metrics::Family<metrics::Counter>& checkpoints_;
  metrics::Histogram& checkpoint_duration_;
  // Read from the session manager at each scrape.
  metrics::Family<metrics::Gauge>& sessions_;
  metrics::Family<metrics::Gauge>& session_stream_tokens_;
  metrics::Family<metrics::Gauge>& memory_entries_;
  metrics::Family<metrics::Gauge>& memory_live_entries_;
  metrics::Family<metrics::Gauge>& memory_bytes_;
  metrics::Family<metrics::Counter>& memory_searches_;
  metrics::Family<metrics::Counter>& memory_keys_scored_;
  metrics::Family<metrics::Counter>& memory_search_seconds_;
  absl::Mutex render_mu_;  // one scrape refills the session gauges at a time
};

// Seconds since `start`, for the observations above.
inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_SERVER_METRICS_H_
