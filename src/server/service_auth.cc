#include "src/server/service_auth.h"

#include <grpc/grpc.h>
#include <grpcpp/support/interceptor.h>

#include <string>

namespace fot::service_internal {
namespace {

constexpr std::string_view kAuthorization = "authorization";
constexpr std::string_view kReflectionPrefix = "/grpc.reflection.";

// The first `authorization` value in `metadata`; empty if none.
template <typename Metadata>
std::string_view AuthorizationOf(const Metadata& metadata) {
  auto it = metadata.find(grpc::string_ref(kAuthorization.data(), kAuthorization.size()));
  if (it == metadata.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

// Ends a reflection call whose caller has no valid key, once its metadata
// has arrived. The handler that follows finds the call cancelled: its reads
// fail and nothing it writes reaches the client, which sees UNAUTHENTICATED.
class ReflectionKeyCheck final : public grpc::experimental::Interceptor {
 public:
  ReflectionKeyCheck(grpc::experimental::ServerRpcInfo* info, std::shared_ptr<const ApiKeys> keys,
                     RefusalLog* refusals)
      : info_(info), keys_(std::move(keys)), refusals_(refusals) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      const absl::StatusOr<Grant> grant =
          keys_->Authenticate(AuthorizationOf(*methods->GetRecvInitialMetadata()));
      if (!grant.ok()) {
        if (refusals_ != nullptr) {
          refusals_->Refused("grpc", info_->method(), info_->server_context()->peer(),
                             grant.status());
        }
        const std::string message(grant.status().message());
        grpc_call_cancel_with_status(info_->server_context()->c_call(), GRPC_STATUS_UNAUTHENTICATED,
                                     message.c_str(), nullptr);
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  std::shared_ptr<const ApiKeys> keys_;
  RefusalLog* refusals_;
};

class ReflectionKeyCheckFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  ReflectionKeyCheckFactory(std::shared_ptr<const ApiKeys> keys, RefusalLog* refusals)
      : keys_(std::move(keys)), refusals_(refusals) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (std::string_view(info->method()).substr(0, kReflectionPrefix.size()) != kReflectionPrefix) {
      return nullptr;
    }
    return new ReflectionKeyCheck(info, keys_, refusals_);
  }

 private:
  std::shared_ptr<const ApiKeys> keys_;
  RefusalLog* refusals_;
};

}  // namespace

absl::StatusOr<Grant> AuthorizeCall(const ApiKeys* keys, const grpc::ServerContext& context,
                                    std::string_view method, Scope needed,
                                    std::initializer_list<std::string_view> names) {
  if (keys == nullptr) return Grant{};
  return keys->Authorize(AuthorizationOf(context.client_metadata()), needed, method, names);
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const TlsConfig& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls.client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = tls.client_ca;
  options.pem_key_cert_pairs.push_back({tls.private_key, tls.cert_chain});
  return grpc::SslServerCredentials(options);
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
AuthInterceptors(std::shared_ptr<const ApiKeys> keys, RefusalLog* refusals) {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<ReflectionKeyCheckFactory>(std::move(keys), refusals));
  return out;
}

}  // namespace fot::service_internal
