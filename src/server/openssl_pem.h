// Owning handles for the OpenSSL objects that reading PEM text creates, and
// the two helpers both TLS loaders need: tls_config.cc (checking the files at
// startup) and src/http/tls_context.cc (the HTTP port's context).
//
// Thread safety: plain functions and handles; each handle is its owner's.
#ifndef FOTSERVE_SRC_SERVER_OPENSSL_PEM_H_
#define FOTSERVE_SRC_SERVER_OPENSSL_PEM_H_

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace fot::pem {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Certificate = std::unique_ptr<X509, X509Free>;
using PrivateKey = std::unique_ptr<EVP_PKEY, KeyFree>;

// A read-only BIO over `pem`, which must outlive it.
inline Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// A passphrase callback that has none: an encrypted key fails to load
// instead of prompting on the server's terminal.
inline int NoPassphrase(char*, int, int, void*) { return 0; }

}  // namespace fot::pem

#endif  // FOTSERVE_SRC_SERVER_OPENSSL_PEM_H_
