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

// Opens an insecure channel to `address`. Calls fail fast when the server is
// down; with `wait_seconds` > 0, first waits up to that long for the server
// to accept connections (for scripts that have just started it).
absl::StatusOr<Connection> Connect(const std::string& address, double wait_seconds);

// `status` as an absl::Status with a message a user can act on; an
// unreachable server becomes "cannot reach fot-server at ADDRESS (...)".
absl::Status FromGrpc(const grpc::Status& status, const std::string& address);

// The GetSession call: the session's info, or FromGrpc's error.
absl::StatusOr<fot::v1::SessionInfo> GetSession(const Connection& c, const std::string& name);

// Whether a failed ingest stream is worth one automatic retry (a broken
// connection or a server that asked to retry), rather than a real rejection.
bool IsRetriable(const grpc::Status& status);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_CONNECTION_H_
