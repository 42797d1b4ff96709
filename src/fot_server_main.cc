// fot-server: serves a model over gRPC (proto/fot.proto) — sessions with a
// kNN memory, documents streamed in, generation with retrieval traces, memory
// inspection — plus gRPC health checking and reflection.
//
//   fot-server --model DIR --data-dir DATA [--listen 127.0.0.1:50051]
//              [--api-keys FILE] [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
//              [--http_listen HOST:PORT]
//
// With --http_listen, an HTTP port serves the OpenAI-compatible API over the
// same sessions, Prometheus metrics (/metrics) and /healthz (src/http); with
// TLS, as HTTPS with the same certificate, key and client CAs.
// Loads the model once; sessions saved in --data-dir load at startup, and
// every acknowledged ingest is saved there. SIGINT / SIGTERM shut down
// gracefully: new calls get UNAVAILABLE, running ones get a few seconds.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/command_line.h"
#include "src/engine/engine.h"
#include "src/http/chat_template.h"
#include "src/http/http_server.h"
#include "src/server/api_keys.h"
#include "src/server/refusal_log.h"
#include "src/server/server_metrics.h"
#include "src/server/service.h"
#include "src/server/session_manager.h"
#include "src/server/tls_config.h"
#include "src/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Model folder: config.json, model.safetensors, tokenizer.model");
ABSL_FLAG(std::string, weights_dtype, "auto",
          "How the weights are kept: auto (as in the file, used in place), f32, bf16, or int8 "
          "(quantized at load in groups of 32 values; int8:64 for groups of 64)");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve on (host:port; port 0 picks one)");
ABSL_FLAG(std::string, data_dir, "",
          "Folder of the storage engine holding sessions and snapshots (created if missing); "
          "without it sessions live in memory only");
ABSL_FLAG(std::string, default_retrieval, "dense",
          "Retrieval of sessions that do not choose: 'dense', 'knn:K' or 'knn:K:exact'");
ABSL_FLAG(std::string, default_index, "flat",
          "Memory index of sessions that do not choose: flat, hnsw or ivf, with parameters as in "
          "'hnsw:m=32' or 'ivf:max_scan=0.1' (dtype defaults to the config's mem_dtype)");
ABSL_FLAG(int, max_sessions, 64, "Most sessions held at once");
ABSL_FLAG(int, max_message_bytes, 4 << 20, "Largest request message accepted, in bytes");
ABSL_FLAG(int, threads, 0,
          "Most gRPC worker threads (one per running call; 0: gRPC's default). The engine's own "
          "parallelism follows OMP_NUM_THREADS");
ABSL_FLAG(int64_t, checkpoint_entries, 32768,
          "Checkpoint a session's memory (so that a restart replays only what follows) once this "
          "many entries, and an eighth of those checkpointed, have been added since the last, "
          "and after an index rebuild once the memory holds this many");
ABSL_FLAG(int, shutdown_grace_ms, 5000, "How long running calls may finish after a signal");
// Authentication and TLS (src/server/api_keys.h, src/server/tls_config.h).
ABSL_FLAG(std::string, api_keys, "",
          "File of API keys, one per line: KEY [read-only|read-write|admin] [prefix=NAME]; "
          "calls then need 'authorization: Bearer KEY' (health checks never do)");
ABSL_FLAG(std::string, tls_cert, "", "TLS: the server's PEM certificate chain (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "TLS: the PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "Mutual TLS: PEM CA certificates that client certificates must chain to");
// The HTTP port (src/http/http_server.h; README "The HTTP API").
ABSL_FLAG(std::string, http_listen, "",
          "Also serve the OpenAI-compatible HTTP API, /metrics and /healthz on HOST:PORT (':PORT' "
          "or 'PORT' alone: 127.0.0.1; port 0 picks one); off when empty");
ABSL_FLAG(int, http_threads, 16,
          "Threads of the HTTP port: connections served at once (a streamed answer holds one)");
// Limits (src/server/limits.h; README "Limits").
ABSL_FLAG(int, max_top_k, 1024, "Most entries a knn:K retrieval may read per query and head");
ABSL_FLAG(int, max_n_global, 1024, "Most sink tokens (n_global) of a lambda session");
ABSL_FLAG(int64_t, max_query_tokens, 65536,
          "Most tokens of one question, Score context + continuation, or search text");
ABSL_FLAG(int64_t, max_documents, 100000, "Most documents of one session");
ABSL_FLAG(int64_t, max_session_tokens, int64_t{16} << 20, "Most tokens of one session's stream");
ABSL_FLAG(int64_t, max_memory_bytes, 0,
          "Most bytes of memory (keys, values, bookkeeping) of all sessions together; 0: half of "
          "this machine's RAM");
ABSL_FLAG(int, idle_timeout_s, 300,
          "An Ingest stream that sends nothing this long is ended (what it sent is kept)");
ABSL_FLAG(int, write_timeout_s, 30,
          "A call whose client reads no reply this long is cancelled, releasing its session");

namespace fot {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "fot-server: %s\n", message.c_str());
  return 1;
}

// Whether `listen` (host:port, or a unix: socket) takes connections from
// this machine only.
bool IsLoopback(const std::string& listen) {
  if (absl::StartsWith(listen, "unix:")) return true;
  const std::string host = listen.substr(0, listen.rfind(':'));
  return host == "localhost" || host == "[::1]" || absl::StartsWith(host, "127.");
}

int Main(int argc, char** argv) {
  ParseCommandLine(argc, argv, "fot-server --model DIR [--data-dir DIR] [--listen HOST:PORT]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return Fail("--model is required");

  // Keys and TLS files first: a mistake in them shows before the model loads.
  ServerOptions server_options;
  if (const std::string path = absl::GetFlag(FLAGS_api_keys); !path.empty()) {
    auto keys = ApiKeys::Load(path);
    if (!keys.ok()) return Fail(std::string(keys.status().message()));
    server_options.api_keys = std::make_shared<const ApiKeys>(*std::move(keys));
  }
  auto tls = LoadTlsConfig(absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                           absl::GetFlag(FLAGS_tls_client_ca));
  if (!tls.ok()) return Fail(std::string(tls.status().message()));
  server_options.tls = *std::move(tls);
  // The chat template too, when the HTTP port will render chats.
  http::ModelChatTemplate chat_template{http::PlainChatTemplate(), ""};
  if (!absl::GetFlag(FLAGS_http_listen).empty()) {
    auto loaded = http::LoadChatTemplate(model_dir);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    chat_template = *std::move(loaded);
    if (!chat_template.notice.empty()) {
      std::fprintf(stderr, "fot-server: note: %s\n", chat_template.notice.c_str());
    }
  }

  // Signals are taken by sigwait() below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Calls refused for their key, on both ports (declared first: it outlives
  // the servers).
  RefusalLog refusals([](std::string_view line) {
    std::fprintf(stderr, "fot-server: %.*s\n", static_cast<int>(line.size()), line.data());
  });
  server_options.refusals = &refusals;

  // The HTTP port opens before the model loads, so that /healthz can say so.
  ServerMetrics metrics;
  std::unique_ptr<http::HttpServer> http;
  if (const std::string listen = absl::GetFlag(FLAGS_http_listen); !listen.empty()) {
    http::HttpServerOptions http_options;
    http_options.listen = listen;
    http_options.threads = absl::GetFlag(FLAGS_http_threads);
    http_options.max_body_bytes = absl::GetFlag(FLAGS_max_message_bytes);
    http_options.write_timeout = absl::Seconds(absl::GetFlag(FLAGS_write_timeout_s));
    http_options.api_keys = server_options.api_keys;
    http_options.refusals = &refusals;
    http_options.metrics = &metrics;
    http_options.chat_template = std::move(chat_template.chat_template);
    http_options.tls = server_options.tls;
    auto started = http::HttpServer::Start(std::move(http_options));
    if (!started.ok()) return Fail(std::string(started.status().message()));
    http = *std::move(started);
    const std::string& host = http->host();
    const std::string address =
        absl::StrCat(host.find(':') == std::string::npos ? host : absl::StrCat("[", host, "]"), ":",
                     http->port());
    const TlsConfig& tls = server_options.tls;
    std::fprintf(stderr,
                 "fot-server: HTTP port (OpenAI API, /metrics, /healthz) listening on %s%s\n",
                 address.c_str(),
                 !tls.enabled()          ? ""
                 : tls.client_ca.empty() ? " with TLS (HTTPS)"
                                         : " with mutual TLS (HTTPS)");
    if (!IsLoopback(address) && server_options.api_keys == nullptr) {
      std::fprintf(stderr,
                   "fot-server: warning: the HTTP port %s is reachable from other machines and no "
                   "--api-keys are set: anyone who reaches it can query every session\n",
                   address.c_str());
    }
    if (!IsLoopback(address) && !tls.enabled()) {
      std::fprintf(stderr,
                   "fot-server: warning: the HTTP port %s has no TLS: keys and text cross the "
                   "network in the clear (--tls-cert and --tls-key make it HTTPS)\n",
                   address.c_str());
    }
  }

  auto weights = ParseWeightsOptions(absl::GetFlag(FLAGS_weights_dtype));
  if (!weights.ok()) return Fail("--weights_dtype: " + std::string(weights.status().message()));
  auto engine = Engine::Load(model_dir, *weights);
  if (!engine.ok()) return Fail(std::string(engine.status().message()));
  auto tokenizer = Tokenizer::Load(model_dir + "/tokenizer.model");
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));

  SessionManagerOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.checkpoint_entries = absl::GetFlag(FLAGS_checkpoint_entries);
  options.limits.max_top_k = absl::GetFlag(FLAGS_max_top_k);
  options.limits.max_n_global = absl::GetFlag(FLAGS_max_n_global);
  options.limits.max_query_tokens = absl::GetFlag(FLAGS_max_query_tokens);
  options.limits.max_documents = absl::GetFlag(FLAGS_max_documents);
  options.limits.max_session_tokens = absl::GetFlag(FLAGS_max_session_tokens);
  options.limits.max_memory_bytes = absl::GetFlag(FLAGS_max_memory_bytes);
  options.limits.idle_timeout = absl::Seconds(absl::GetFlag(FLAGS_idle_timeout_s));
  options.limits.write_timeout = absl::Seconds(absl::GetFlag(FLAGS_write_timeout_s));
  options.on_load_error = [](const std::string& error) {
    std::fprintf(stderr, "fot-server: not loaded: %s\n", error.c_str());
  };
  options.metrics = &metrics;
  options.defaults.memory = (*engine)->DefaultMemoryOptions();
  auto defaults = ResolveSessionOptions(
      {absl::GetFlag(FLAGS_default_retrieval), absl::GetFlag(FLAGS_default_index), "", 0},
      options.defaults, (*engine)->config());
  if (!defaults.ok()) return Fail(absl::StrCat("default options: ", defaults.status().message()));
  options.defaults = *defaults;

  auto manager = SessionManager::Open(engine->get(), tokenizer->get(), options);
  if (!manager.ok()) return Fail(std::string(manager.status().message()));
  // The HTTP port stops before the manager goes, on every way out.
  absl::Cleanup stop_http = [&http] {
    if (http != nullptr) http->Shutdown();
  };
  if (http != nullptr) http->Attach(manager->get());

  server_options.listen = absl::GetFlag(FLAGS_listen);
  server_options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  server_options.threads = absl::GetFlag(FLAGS_threads);
  server_options.model_dir = model_dir;
  auto server = FotServer::Start(manager->get(), server_options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  const std::string& listen = server_options.listen;
  if (!IsLoopback(listen) && server_options.api_keys == nullptr) {
    std::fprintf(stderr,
                 "fot-server: warning: %s is reachable from other machines and no --api-keys are "
                 "set: anyone who reaches the port can read, change and delete every session\n",
                 listen.c_str());
  }
  if (!IsLoopback(listen) && !server_options.tls.enabled()) {
    std::fprintf(stderr,
                 "fot-server: warning: %s is reachable from other machines without TLS "
                 "(--tls-cert, --tls-key): keys and text cross the network in the clear\n",
                 listen.c_str());
  }
  std::string security;
  if (server_options.tls.enabled()) {
    security = server_options.tls.client_ca.empty() ? " with TLS" : " with mutual TLS";
  }
  if (server_options.api_keys != nullptr) {
    absl::StrAppend(&security, security.empty() ? " with " : " and ",
                    server_options.api_keys->size(),
                    server_options.api_keys->size() == 1 ? " API key" : " API keys");
  }
  std::fprintf(stderr,
               "fot-server: serving %s on %s:%d%s (stored sessions load in the background)\n",
               model_dir.c_str(), listen.substr(0, listen.rfind(':')).c_str(), (*server)->port(),
               security.c_str());

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::fprintf(stderr, "fot-server: %s, shutting down\n",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Shutdown(absl::Milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms)));
  if (http != nullptr) http->Shutdown();  // its generations stop with the manager
  (*server)->Wait();
  return 0;
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) { return fot::Main(argc, argv); }
