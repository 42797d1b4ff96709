#include "src/server/tls_config.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "base/env.h"
#include "base/status_macros.h"
#include "src/server/openssl_pem.h"

namespace fot {
namespace {

using pem::Bio;
using pem::Certificate;
using pem::MemoryBio;
using pem::NoPassphrase;
using pem::PrivateKey;

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  auto text = Env::Default()->ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat(flag, ": ", text.status().message()));
  }
  return *std::move(text);
}

// The first certificate in `pem`; InvalidArgument naming `flag` if none.
absl::StatusOr<Certificate> FirstCertificate(const std::string& pem, const std::string& path,
                                             const char* flag) {
  Bio bio = MemoryBio(pem);
  Certificate cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  return cert;
}

}  // namespace

absl::StatusOr<TlsConfig> LoadTlsConfig(const std::string& cert_path, const std::string& key_path,
                                        const std::string& client_ca_path) {
  TlsConfig config;
  if (cert_path.empty() && key_path.empty()) {
    if (!client_ca_path.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)");
    }
    return config;
  }
  if (cert_path.empty() || key_path.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together: the server's certificate and its private key");
  }
  FOT_ASSIGN_OR_RETURN(config.cert_chain, ReadPem(cert_path, "--tls-cert"));
  FOT_ASSIGN_OR_RETURN(config.private_key, ReadPem(key_path, "--tls-key"));
  FOT_ASSIGN_OR_RETURN(Certificate cert,
                       FirstCertificate(config.cert_chain, cert_path, "--tls-cert"));
  Bio key_bio = MemoryBio(config.private_key);
  PrivateKey key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", key_path,
                     " holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----; a key "
                     "with a passphrase: `openssl pkey -in KEY -out PLAIN`)"));
  }
  const bool matches = X509_check_private_key(cert.get(), key.get()) == 1;
  ERR_clear_error();
  if (!matches) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-key ", key_path,
                                                   " is not the private key of the certificate in "
                                                   "--tls-cert ",
                                                   cert_path));
  }
  if (!client_ca_path.empty()) {
    FOT_ASSIGN_OR_RETURN(config.client_ca, ReadPem(client_ca_path, "--tls-client-ca"));
    FOT_RETURN_IF_ERROR(
        FirstCertificate(config.client_ca, client_ca_path, "--tls-client-ca").status());
  }
  return config;
}

}  // namespace fot
