// The gRPC side of authentication, for service.cc: the API key a call
// presents, the server's credentials (TLS or plaintext), and the interceptor
// that keeps server reflection to callers with a valid key. The decisions
// themselves are api_keys.h's; this file only carries them to gRPC.
//
// Thread safety: the functions may be called from any thread; the
// interceptors gRPC makes from AuthInterceptors run on its call threads and
// share only the (immutable) keys.
#ifndef FOTSERVE_SRC_SERVER_SERVICE_AUTH_H_
#define FOTSERVE_SRC_SERVER_SERVICE_AUTH_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_interceptor.h>

#include <initializer_list>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/server/api_keys.h"
#include "src/server/refusal_log.h"
#include "src/server/tls_config.h"

namespace fot::service_internal {

// The caller's grant for `method`: `keys` checks the call's `authorization`
// metadata (Unauthenticated, PermissionDenied: api_keys.h). Without keys (no
// --api-keys) every call gets an unlimited admin grant.
absl::StatusOr<Grant> AuthorizeCall(const ApiKeys* keys, const grpc::ServerContext& context,
                                    std::string_view method, Scope needed,
                                    std::initializer_list<std::string_view> names);

// SslServerCredentials for `tls` (with a client CA: client certificates
// requested, required and verified), or plaintext when TLS is off.
std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const TlsConfig& tls);

// For ServerBuilder::experimental().SetInterceptorCreators: a server
// reflection call (grpc.reflection.*) without a valid key in `keys` ends
// UNAUTHENTICATED before the reflection service answers. Other calls pass
// untouched: the Fot handlers check their own keys and health checking stays
// open. `keys` must not be null; refused calls go to `refusals` unless it is
// null (not owned, must outlive the server).
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
AuthInterceptors(std::shared_ptr<const ApiKeys> keys, RefusalLog* refusals);

}  // namespace fot::service_internal

#endif  // FOTSERVE_SRC_SERVER_SERVICE_AUTH_H_
