// fot-server's metrics (see server_metrics.h).
#include "src/server/server_metrics.h"

#include <map>
#include <utility>
#include <vector>

#include "src/server/session_manager.h"

namespace fot {
namespace {

using metrics::ExponentialBuckets;

// 1 ms to ~65 s: requests, saves, the first token after a long prefill.
std::vector<double> SlowBuckets() { return ExponentialBuckets(0.001, 2, 17); }
// 0.25 ms to ~4 s: one generated token.
std::vector<double> TokenBuckets() { return ExponentialBuckets(0.00025, 2, 15); }

// "flat" of "flat:dtype=f16".
std::string IndexKindOf(const std::string& index) { return index.substr(0, index.find(':')); }

}  // namespace

ServerMetrics::ServerMetrics()
    : requests_(registry_.AddCounter("fotserve_requests_total",
                                     "Requests finished, by API (grpc, http), method or route, "
                                     "and status code",
                                     {"api", "method", "code"})),
      request_duration_(registry_.AddHistogram("fotserve_request_duration_seconds",
                                               "Time from a request's arrival to its last byte",
                                               {"api", "method"}, SlowBuckets())),
      ingested_tokens_(registry_
                           .AddCounter("fotserve_ingested_tokens_total",
                                       "Document tokens appended to sessions by Ingest streams")
                           .Labels({})),
      prompt_tokens_(registry_
                         .AddCounter("fotserve_prompt_tokens_total",
                                     "Tokens that generation queries ran before their first "
                                     "token (a session's pending tail plus the question)")
                         .Labels({})),
      generated_tokens_(
          registry_.AddCounter("fotserve_generated_tokens_total", "Tokens generated").Labels({})),
      time_to_first_token_(registry_
                               .AddHistogram("fotserve_time_to_first_token_seconds",
                                             "Time from a generation's start to its first token",
                                             {}, SlowBuckets())
                               .Labels({})),
      inter_token_latency_(registry_
                               .AddHistogram("fotserve_inter_token_latency_seconds",
                                             "Time between consecutive generated tokens", {},
                                             TokenBuckets())
                               .Labels({})),
      active_streams_(registry_.AddGauge(
          "fotserve_active_streams", "Streams running now, by kind (generate, ingest)", {"kind"})),
      store_writes_(registry_.AddCounter("fotserve_store_writes_total",
                                         "Synced writes of session records, by outcome",
                                         {"outcome"})),
      store_write_duration_(registry_
                                .AddHistogram("fotserve_store_write_duration_seconds",
                                              "Time of a synced write of session records", {},
                                              SlowBuckets())
                                .Labels({})),
      snapshot_saves_(registry_.AddCounter("fotserve_snapshot_saves_total",
                                           "Snapshots saved (SaveSession), by outcome",
                                           {"outcome"})),
      snapshot_save_duration_(registry_
                                  .AddHistogram("fotserve_snapshot_save_duration_seconds",
                                                "Time of a snapshot save", {}, SlowBuckets())
                                  .Labels({})),
      checkpoints_(registry_.AddCounter("fotserve_memory_checkpoints_total",
                                        "Memory checkpoints written, by outcome", {"outcome"})),
      checkpoint_duration_(registry_
                               .AddHistogram("fotserve_memory_checkpoint_duration_seconds",
                                             "Time of a memory checkpoint", {}, SlowBuckets())
                               .Labels({})),
      sessions_(registry_.AddGauge("fotserve_sessions", "Sessions held (loaded)")),
      session_stream_tokens_(registry_.AddGauge("fotserve_session_stream_tokens",
                                                "Tokens of a session's stream", {"session"})),
      memory_entries_(registry_.AddGauge(
          "fotserve_memory_entries",
          "Memory entries of a session over all memory layers and kv heads (deleted included)",
          {"session", "index"})),
      memory_live_entries_(registry_.AddGauge("fotserve_memory_live_entries",
                                              "Searchable memory entries of a session",
                                              {"session", "index"})),
      memory_bytes_(registry_.AddGauge(
          "fotserve_memory_bytes",
          "Bytes of a session's memory: keys, values, provenance and index structures",
          {"session", "index"})),
      memory_searches_(registry_.AddCounter(
          "fotserve_memory_searches_total",
          "Query rows searched in a session's memory stores since it was loaded",
          {"session", "index"})),
      memory_keys_scored_(registry_.AddCounter(
          "fotserve_memory_keys_scored_total",
          "Inner products of queries with stored keys (exact and IVF searches) since the "
          "session was loaded: the work of memory search",
          {"session", "index"})),
      memory_search_seconds_(registry_.AddCounter(
          "fotserve_memory_search_seconds_total",
          "Time spent searching a session's memory stores since it was loaded (summed over "
          "stores, which a query searches side by side)",
          {"session", "index"})) {}

void ServerMetrics::CountRequest(std::string_view api, std::string_view method,
                                 std::string_view code, double seconds) {
  requests_.Labels({api, method, code}).Increment();
  request_duration_.Labels({api, method}).Observe(seconds);
}

void ServerMetrics::ObserveStoreWrite(double seconds, bool ok) {
  store_writes_.Labels({ok ? "ok" : "error"}).Increment();
  store_write_duration_.Observe(seconds);
}

void ServerMetrics::ObserveSnapshotSave(double seconds, bool ok) {
  snapshot_saves_.Labels({ok ? "ok" : "error"}).Increment();
  snapshot_save_duration_.Observe(seconds);
}

void ServerMetrics::ObserveCheckpoint(double seconds, bool ok) {
  checkpoints_.Labels({ok ? "ok" : "error"}).Increment();
  checkpoint_duration_.Observe(seconds);
}

ServerMetrics::StreamScope::StreamScope(ServerMetrics* metrics, std::string_view kind)
    : gauge_(metrics == nullptr ? nullptr : &metrics->active_streams_.Labels({kind})) {
  if (gauge_ != nullptr) gauge_->Add(1);
}

ServerMetrics::StreamScope::~StreamScope() {
  if (gauge_ != nullptr) gauge_->Add(-1);
}

std::string ServerMetrics::Render(const SessionManager* manager) {
  absl::MutexLock lock(&render_mu_);
  CollectSessions(manager);
  return registry_.Render();
}

void ServerMetrics::CollectSessions(const SessionManager* manager) {
  for (auto* family :
       {&session_stream_tokens_, &memory_entries_, &memory_live_entries_, &memory_bytes_}) {
    family->Clear();
  }
  memory_searches_.Clear();
  memory_keys_scored_.Clear();
  memory_search_seconds_.Clear();
  if (manager == nullptr) {
    sessions_.Labels({}).Set(0);
    return;
  }
  const std::vector<std::shared_ptr<ManagedSession>> sessions = manager->List();
  sessions_.Labels({}).Set(static_cast<double>(sessions.size()));
  for (const auto& managed : sessions) {
    const Session& session = managed->session();
    const std::string& name = managed->name();
    session_stream_tokens_.Labels({name}).Set(
        static_cast<double>(session.Progress().stream_tokens));
    // Per index kind (every layer of a session has the same one today).
    struct Sums {
      double entries = 0, live = 0, bytes = 0, searches = 0, scored = 0, search_seconds = 0;
    };
    std::map<std::string, Sums> by_kind;
    for (const LayerStats& layer : session.Stats().layers) {
      Sums& s = by_kind[IndexKindOf(layer.index)];
      for (const HeadStats& head : layer.heads) {
        s.entries += static_cast<double>(head.entries);
        s.live += static_cast<double>(head.live_entries);
        s.bytes += static_cast<double>(head.bytes);
        s.searches += static_cast<double>(head.search.queries);
        s.scored += static_cast<double>(head.search.keys_scored);
        s.search_seconds += static_cast<double>(head.search.search_nanos) * 1e-9;
      }
    }
    for (const auto& [kind, s] : by_kind) {
      memory_entries_.Labels({name, kind}).Set(s.entries);
      memory_live_entries_.Labels({name, kind}).Set(s.live);
      memory_bytes_.Labels({name, kind}).Set(s.bytes);
      memory_searches_.Labels({name, kind}).SetCollected(s.searches);
      memory_keys_scored_.Labels({name, kind}).SetCollected(s.scored);
      memory_search_seconds_.Labels({name, kind}).SetCollected(s.search_seconds);
    }
  }
}

}  // namespace fot
