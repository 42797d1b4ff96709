// API keys: the file `fot-server --api-keys FILE` reads, and the decision
// whether a call may run. Knows nothing of gRPC: the service hands it the
// value of the call's `authorization` metadata, the scope the method needs
// and the session (and snapshot) names the call touches.
//
// The key file, one key per line:
//
//   KEY [read-only|read-write|admin] [prefix=NAME]   # a comment
//
// KEY is 16 to 4096 printable ASCII characters without spaces, not starting
// with '#' (`openssl rand -hex 24` makes a good one). The scope defaults to
// read-write; `prefix=NAME` limits the key to sessions and snapshots whose
// names start with NAME (an admin key covers the whole server and takes no
// prefix). `#` starts a comment (at the start of a line or after a space);
// blank lines are ignored. A malformed file is refused with the number of the
// bad line; no message ever contains a key.
//
// Thread safety: an ApiKeys is immutable once parsed; its methods may be
// called from any thread.
#ifndef FOTSERVE_SRC_SERVER_API_KEYS_H_
#define FOTSERVE_SRC_SERVER_API_KEYS_H_

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fot {

// What a key may do; each scope includes the ones before it.
enum class Scope {
  kReadOnly,   // sessions, memory inspection, queries (Generate without keep_turn, Score)
  kReadWrite,  // also creating, ingesting, deleting, snapshots, Generate with keep_turn
  kAdmin,      // also what concerns the whole server; never limited to a prefix
};

// "read-only", "read-write" or "admin", as the key file spells them.
std::string_view ScopeName(Scope scope);

// What a caller may do.
struct Grant {
  Scope scope = Scope::kAdmin;  // the default: a server without keys lets everyone do everything
  std::string prefix;           // names the caller may touch start with it; empty: any name
  int line = 0;                 // the key's line in the key file (0: no key file)

  // Whether the caller may touch the session or snapshot `name`.
  bool Covers(std::string_view name) const;
};

// OK if `grant` has at least `needed` and covers every name in `names`
// (an empty name, a field the request leaves out, names nothing: the server
// fills in another name of the call, or refuses it); PermissionDenied
// otherwise, with a message naming `method` and the scope it needs, or the
// prefix the key is limited to.
[[nodiscard]] absl::Status CheckGrant(const Grant& grant, Scope needed, std::string_view method,
                                      std::initializer_list<std::string_view> names);

class ApiKeys {
 public:
  // Parses the text of a key file. InvalidArgument "line N: ..." for the
  // first malformed line, or when the file holds no key.
  static absl::StatusOr<ApiKeys> Parse(std::string_view text);

  // Reads and parses `path`; its errors name the file (for the server's log).
  static absl::StatusOr<ApiKeys> Load(const std::string& path);

  // The grant of the key in `authorization`, the value of a call's
  // `authorization` metadata ("Bearer KEY"; empty when the call has none).
  // The key is compared with every key of the file in constant time (SHA-256
  // digests compared with CRYPTO_memcmp, no early exit). Unauthenticated when
  // the metadata is missing, not a bearer token, or no key matches.
  absl::StatusOr<Grant> Authenticate(std::string_view authorization) const;

  // Authenticate, then CheckGrant.
  absl::StatusOr<Grant> Authorize(std::string_view authorization, Scope needed,
                                  std::string_view method,
                                  std::initializer_list<std::string_view> names) const;

  size_t size() const { return keys_.size(); }

 private:
  using Digest = std::array<unsigned char, 32>;  // SHA-256
  struct Key {
    Digest digest;  // of the key: the key itself is not kept
    Grant grant;
  };
  ApiKeys() = default;
  static Digest DigestOf(std::string_view key);

  std::vector<Key> keys_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_API_KEYS_H_
