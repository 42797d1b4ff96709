// The gRPC server of proto/fot.proto: the Fot service over a SessionManager,
// plus gRPC health checking and server reflection.
//
// This header keeps gRPC out of its includes (the implementation lives in
// service.cc, the only code besides generated code and the client that sees
// gRPC), so mains and tests start a server without gRPC types.
//
// Thread safety: Start, port and Wait may be called from any thread; Shutdown
// from any thread (also while another thread waits in Wait).
#ifndef FOTSERVE_SRC_SERVER_SERVICE_H_
#define FOTSERVE_SRC_SERVER_SERVICE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "src/server/api_keys.h"
#include "src/server/refusal_log.h"
#include "src/server/session_manager.h"
#include "src/server/tls_config.h"

namespace fot {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see FotServer::port).
  std::string listen = "127.0.0.1:50051";
  // Largest request message accepted; larger ones fail with RESOURCE_EXHAUSTED.
  int max_message_bytes = 4 << 20;
  // Most gRPC worker threads (each running call holds one); 0: gRPC's default.
  int threads = 0;
  // Reported by GetServerInfo.
  std::string model_dir;
  // The keys every Fot call and server reflection must present as
  // `authorization: Bearer KEY` metadata, and what each may do (api_keys.h).
  // Null: no authentication. Health checking never needs a key.
  std::shared_ptr<const ApiKeys> api_keys;
  // TLS (with a client CA: mutual TLS); off by default.
  TlsConfig tls;
  // Where calls refused for their key are logged; not owned, must outlive the
  // server. Null: they are not logged.
  RefusalLog* refusals = nullptr;
};

class FotServer {
 public:
  // Builds and starts the server. `manager` is not owned and must outlive the
  // server. Unavailable if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<FotServer>> Start(SessionManager* manager,
                                                          const ServerOptions& options);
  ~FotServer();  // Shutdown(0) and Wait
  FotServer(const FotServer&) = delete;
  FotServer& operator=(const FotServer&) = delete;

  // The port actually bound.
  int port() const;

  // Stops accepting calls: new calls and running queries end with
  // UNAVAILABLE, health checks report NOT_SERVING, and calls still running
  // after `grace` are cancelled. Every acknowledged ingest is already saved.
  void Shutdown(absl::Duration grace);

  // Blocks until the server has shut down.
  void Wait();

  struct Impl;

 private:
  explicit FotServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_SERVICE_H_
