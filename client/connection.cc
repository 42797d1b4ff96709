#include "client/connection.h"

#include <grpc/support/log.h>
#include <grpcpp/support/client_interceptor.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

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
  if (absl::StrContains(message, "andshake") || absl::StrContains(message, "SSL_ERROR")) {
    return "TLS handshake failed: a server without TLS, a certificate that --tls-ca does not "
           "sign, or a client certificate (--tls-cert) the server does not accept";
  }
  if (absl::StrContains(message, "Socket closed")) {
    return "Socket closed: does the server need --tls, or a client certificate (--tls-cert)?";
  }
  for (const char* reason :
       {"Connection refused", "Connection reset", "No route to host", "Name or service not known",
        "DNS resolution failed", "Deadline Exceeded"}) {
    if (absl::StrContains(message, reason)) return reason;
  }
  return "";
}

// gRPC's own log lines (a failed TLS handshake logs one) would break fotctl's
// one line per error; the error's line carries the reason. GRPC_VERBOSITY
// set: gRPC logs as it would.
void DropGrpcLog(gpr_log_func_args*) {}

// Adds `authorization: Bearer KEY` to the metadata of every call.
class BearerKey final : public grpc::experimental::Interceptor {
 public:
  explicit BearerKey(const std::string* header) : header_(header) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;  // owned by the factory, which outlives the channel's calls
};

class BearerKeyFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerKeyFactory(const std::string& key) : header_("Bearer " + key) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerKey(&header_);
  }

 private:
  const std::string header_;
};

std::shared_ptr<grpc::ChannelCredentials> CredentialsFor(const ConnectOptions& options) {
  if (!options.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_ca;
  ssl.pem_private_key = options.tls_key;
  ssl.pem_cert_chain = options.tls_cert;
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::StatusOr<Connection> Connect(const ConnectOptions& options) {
  if (std::getenv("GRPC_VERBOSITY") == nullptr) gpr_set_log_function(DropGrpcLog);
  const std::string& address = options.address;
  const double wait_seconds = options.wait_seconds;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  // Reconnect quickly when a script starts fotctl just before the server.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  Connection connection;
  connection.address = address;
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.api_key.empty()) {
    interceptors.push_back(std::make_unique<BearerKeyFactory>(options.api_key));
  }
  connection.channel = grpc::experimental::CreateCustomChannelWithInterceptors(
      address, CredentialsFor(options), args, std::move(interceptors));
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
