// fotctl's connection to fot-server: the channel and stub, and the
// conversion of gRPC errors into the one line fotctl prints.
//
// Thread safety: a Connection's stub may be used from several threads (gRPC
// stubs are thread-safe); the Connection itself is created once in main.
#ifndef FOTSERVE_CLIENT_CONNECTION_H_
#define FOTSERVE_CLIENT_CONNECTION_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "proto/fot.grpc.pb.h"

namespace fot::client {

struct Connection {
  std::string address;  // host:port as given
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<fot::v1::Fot::Stub> stub;
};

struct ConnectOptions {
  std::string address;      // host:port
  double wait_seconds = 0;  // > 0: first wait up to this long for the server to accept
  // TLS; set by itself when any PEM below is given. Off: plaintext.
  bool tls = false;
  std::string tls_ca;    // PEM roots the server's certificate must chain to; empty: the system's
  std::string tls_cert;  // PEM client certificate (mutual TLS), with tls_key
  std::string tls_key;   // PEM private key of tls_cert
  // Sent with every call as `authorization: Bearer KEY`; empty: no key.
  std::string api_key;
};

// Opens a channel to `options.address`, plaintext or TLS, that sends the API
// key with every call. Calls fail fast when the server is down; with
// wait_seconds > 0, first waits up to that long for the server to accept
// connections (for scripts that have just started it).
absl::StatusOr<Connection> Connect(const ConnectOptions& options);

// `status` as an absl::Status with a message a user can act on; an
// unreachable server becomes "cannot reach fot-server at ADDRESS (...)",
// with the reason when gRPC gives one (a refused connection, a failed TLS
// handshake).
absl::Status FromGrpc(const grpc::Status& status, const std::string& address);

// The GetSession call: the session's info, or FromGrpc's error.
absl::StatusOr<fot::v1::SessionInfo> GetSession(const Connection& c, const std::string& name);

// Whether a failed ingest stream is worth one automatic retry (a broken
// connection or a server that asked to retry), rather than a real rejection.
bool IsRetriable(const grpc::Status& status);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_CONNECTION_H_
