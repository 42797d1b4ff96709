// fot-server's HTTP port (`--http_listen`): the OpenAI-compatible API over
// the sessions of the same SessionManager as the gRPC service, with the same
// limits and API keys, plus Prometheus metrics and a health check.
//
//   GET  /v1/models              the sessions, as OpenAI model objects (with
//                                the chat template in use)
//   GET  /v1/models/{session}    one of them
//   POST /v1/completions         a completion from the session named by `model`
//   POST /v1/chat/completions    a chat answer (chat_template.h)
//   GET  /metrics                Prometheus text exposition (server_metrics.h)
//   GET  /healthz                200 once the model and the stored sessions
//                                have loaded; 503 before and while shutting down
//   GET  /                       the web memory inspector (inspector.html)
//   GET  /fotserve/v1/...        the views it reads (inspector_api.h)
//
// With API keys (api_keys.h), /v1 requests need `Authorization: Bearer KEY`
// with at least read-only scope covering the session (so do the inspector's
// views; the page itself needs none, and sends the key the user types);
// /metrics needs a read-only key without a prefix (it names every session);
// /healthz needs none. Errors come in OpenAI's shape (openai_api.h).
//
// With TLS (HttpServerOptions::tls, the gRPC port's --tls-* files) the port
// speaks HTTPS only, mutual TLS included.
//
// Served by cpp-httplib (Debian's libcpp-httplib-dev) on a pool of threads,
// one per connection being served: a streamed answer holds its thread. The
// port opens before the model loads (Start), and serves sessions once
// Attach gives it the manager. Knows nothing of gRPC.
//
// Thread safety: every method may be called from any thread.
#ifndef FOTSERVE_SRC_HTTP_HTTP_SERVER_H_
#define FOTSERVE_SRC_HTTP_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "src/http/chat_template.h"
#include "src/server/api_keys.h"
#include "src/server/refusal_log.h"
#include "src/server/server_metrics.h"
#include "src/server/session_manager.h"
#include "src/server/tls_config.h"

namespace fot::http {

struct HttpServerOptions {
  // HOST:PORT; ":PORT" or "PORT" alone means 127.0.0.1. Port 0 picks a free
  // one (HttpServer::port).
  std::string listen = "127.0.0.1:8080";
  // Threads serving connections (each streamed answer holds one).
  int threads = 16;
  // Largest request body; larger ones get 413.
  size_t max_body_bytes = 4 << 20;
  // A client that reads nothing of a reply this long is cut off, ending its
  // generation (Limits::write_timeout, --write_timeout_s).
  absl::Duration write_timeout = absl::Seconds(30);
  // Null: no authentication.
  std::shared_ptr<const ApiKeys> api_keys;
  // Where requests refused for their key are logged; not owned, must outlive
  // the server. Null: they are not logged.
  RefusalLog* refusals = nullptr;
  // What /metrics renders and where HTTP requests are counted; not owned,
  // must outlive the server. Null: /metrics answers 404.
  ServerMetrics* metrics = nullptr;
  // How chat messages become a prompt (LoadChatTemplate reads the model's).
  ChatTemplate chat_template = PlainChatTemplate();
  // Enabled: HTTPS with this certificate and key (plain HTTP is refused), and
  // with client CAs, only for clients with a certificate that chains to one.
  TlsConfig tls;
};

// HOST and PORT of a --http_listen value (see HttpServerOptions::listen);
// "[::1]:8080" gives "::1". InvalidArgument for anything else.
absl::StatusOr<std::pair<std::string, int>> ParseListenAddress(const std::string& listen);

class HttpServer {
 public:
  // Binds the port and starts serving (every /v1 request answers 503 until
  // Attach). Unavailable if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();  // Shutdown
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& host() const;
  int port() const;

  // The sessions to serve; not owned, must stay alive until Shutdown returns.
  void Attach(SessionManager* manager);

  // Stops accepting connections and waits for those being served (running
  // generations stop once the manager shuts down, or finish). Idempotent.
  void Shutdown();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fot::http

#endif  // FOTSERVE_SRC_HTTP_HTTP_SERVER_H_
