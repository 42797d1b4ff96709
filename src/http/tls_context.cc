// The HTTP port's OpenSSL context (see tls_context.h).
#include "src/http/tls_context.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/server/openssl_pem.h"

namespace fot::http {
namespace {

using pem::Bio;
using pem::Certificate;
using pem::MemoryBio;
using pem::NoPassphrase;
using pem::PrivateKey;

// Identifies this server's TLS sessions, which OpenSSL needs before it
// resumes a session whose client certificate it verified.
constexpr unsigned char kSessionContext[] = "fotserve-http";

// Every certificate in `pem`, in order.
std::vector<Certificate> Certificates(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  std::vector<Certificate> out;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    out.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the text reads as an error
  return out;
}

// InvalidArgument with OpenSSL's reason for refusing `what`.
absl::Status Refused(const std::string& what) {
  char reason[256] = "no reason given";
  if (const unsigned long code = ERR_get_error(); code != 0) {
    ERR_error_string_n(code, reason, sizeof(reason));
  }
  ERR_clear_error();
  return absl::InvalidArgumentError(
      absl::StrCat("the HTTP port's TLS: OpenSSL refused ", what, " (", reason, ")"));
}

absl::Status UseCertificateAndKey(const TlsConfig& tls, SSL_CTX* ctx) {
  const std::vector<Certificate> chain = Certificates(tls.cert_chain);
  if (chain.empty()) return Refused("--tls-cert: it holds no PEM certificate");
  if (SSL_CTX_use_certificate(ctx, chain[0].get()) != 1)
    return Refused("the --tls-cert certificate");
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1) {
      return Refused(absl::StrCat("certificate ", i + 1, " of --tls-cert"));
    }
  }
  Bio key_bio = MemoryBio(tls.private_key);
  PrivateKey key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return Refused("the --tls-key private key");
  }
  return absl::OkStatus();
}

// Mutual TLS: only clients whose certificate chains to a CA of `client_ca`.
absl::Status RequireClientCertificates(const std::string& client_ca, SSL_CTX* ctx) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  const std::vector<Certificate> cas = Certificates(client_ca);
  if (cas.empty()) return Refused("--tls-client-ca: it holds no PEM certificate");
  for (const Certificate& ca : cas) {
    // The store verifies; the list tells clients which CAs to pick a certificate for.
    if (X509_STORE_add_cert(store, ca.get()) != 1 || SSL_CTX_add_client_CA(ctx, ca.get()) != 1) {
      return Refused("a --tls-client-ca certificate");
    }
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return absl::OkStatus();
}

}  // namespace

absl::Status ConfigureTlsContext(const TlsConfig& tls, SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1) != 1) {
    return Refused("the session id context");
  }
  if (absl::Status s = UseCertificateAndKey(tls, ctx); !s.ok()) return s;
  if (tls.client_ca.empty()) return absl::OkStatus();
  return RequireClientCertificates(tls.client_ca, ctx);
}

}  // namespace fot::http
