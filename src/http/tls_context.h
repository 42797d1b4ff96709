// The HTTP port's TLS, from the same certificate, key and client CAs as the
// gRPC port (--tls-cert, --tls-key, --tls-client-ca; src/server/tls_config.h):
// an OpenSSL context for cpp-httplib's SSLServer. With client CAs a client
// must present a certificate that chains to one of them, as gRPC requires.
#ifndef FOTSERVE_SRC_HTTP_TLS_CONTEXT_H_
#define FOTSERVE_SRC_HTTP_TLS_CONTEXT_H_

#include <openssl/ssl.h>

#include "absl/status/status.h"
#include "src/server/tls_config.h"

namespace fot::http {

// Configures `ctx` (a fresh server context) with `tls`, which must be
// enabled: TLS 1.2 or later, the certificate chain and its key, and with
// client CAs, mutual TLS. InvalidArgument if OpenSSL refuses a part (which
// LoadTlsConfig's checks make unlikely).
[[nodiscard]] absl::Status ConfigureTlsContext(const TlsConfig& tls, SSL_CTX* ctx);

}  // namespace fot::http

#endif  // FOTSERVE_SRC_HTTP_TLS_CONTEXT_H_
