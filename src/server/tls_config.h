// fot-server's TLS material: the PEM files of --tls-cert, --tls-key and
// --tls-client-ca, read and checked at startup so that a wrong file is one
// clear message rather than a server that cannot listen. Knows nothing of
// gRPC (service_auth.cc turns a TlsConfig into server credentials).
#ifndef FOTSERVE_SRC_SERVER_TLS_CONFIG_H_
#define FOTSERVE_SRC_SERVER_TLS_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"

namespace fot {

struct TlsConfig {
  // PEM: the server's certificate, then any intermediates. Empty: plaintext.
  std::string cert_chain;
  // PEM: the certificate's private key (unencrypted).
  std::string private_key;
  // PEM: the CAs that client certificates must chain to. Empty: clients need
  // no certificate; set: mutual TLS, a client without a valid one is refused.
  std::string client_ca;

  bool enabled() const { return !cert_chain.empty(); }
};

// Reads the three files (empty paths: not given). All empty: TLS off.
// InvalidArgument naming the flag when a certificate comes without its key
// or the other way round, a client CA comes without them, a file holds no
// PEM certificate or key, the key is encrypted, or it does not match the
// certificate; file errors name the file.
absl::StatusOr<TlsConfig> LoadTlsConfig(const std::string& cert_path, const std::string& key_path,
                                        const std::string& client_ca_path);

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_TLS_CONFIG_H_
