#include "client/connection.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "client/text_check.h"

namespace fot::client {
namespace {

// Large enough for a full page of memory entries or a traced answer.
constexpr int kMaxReceiveBytes = 256 << 20;

// The short reason inside gRPC's connection-failure message, if it has one.
std::string ConnectReason(const std::string& message) {
  for (const char* reason :
       {"Connection refused", "Connection reset", "No route to host", "Name or service not known",
        "DNS resolution failed", "Deadline Exceeded", "Socket closed"}) {
    if (absl::StrContains(message, reason)) return reason;
  }
  return "";
}

}  // namespace

absl::StatusOr<Connection> Connect(const std::string& address, double wait_seconds) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  // Reconnect quickly when a script starts fotctl just before the server.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  Connection connection;
  connection.address = address;
  connection.channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  if (wait_seconds > 0) {
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(wait_seconds * 1000));
    if (!connection.channel->WaitForConnected(deadline)) {
      return absl::UnavailableError(
          absl::StrCat("cannot reach fot-server at ", address, " (waited ", wait_seconds, " s)"));
    }
  }
  connection.stub = fot::v1::Fot::NewStub(connection.channel);
  return connection;
}

absl::Status FromGrpc(const grpc::Status& status, const std::string& address) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (absl::StrContains(message, "connect") || absl::StrContains(message, "Connect") ||
       message.empty())) {
    const std::string reason = ConnectReason(message);
    return absl::UnavailableError(absl::StrCat("cannot reach fot-server at ", address,
                                               reason.empty() ? "" : " (" + reason + ")"));
  }
  // absl and gRPC status codes are numerically equal.
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      message.empty()
          ? absl::StrCat("server error ", absl::StatusCodeToString(
                                              static_cast<absl::StatusCode>(status.error_code())))
          : message);
}

absl::StatusOr<fot::v1::SessionInfo> GetSession(const Connection& c, const std::string& name) {
  fot::v1::GetSessionRequest request;
  request.set_session(name);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::SessionInfo info;
  const grpc::Status status = c.stub->GetSession(&context, request, &info);
  if (!status.ok()) return FromGrpc(status, c.address);
  return info;
}

bool IsRetriable(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
      return true;
    default:
      return false;
  }
}

}  // namespace fot::client
