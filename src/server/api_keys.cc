#include "src/server/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/env.h"
#include "base/status_macros.h"
#include "src/server/validation.h"

namespace fot {
namespace {

constexpr size_t kMinKeyLength = 16;
constexpr size_t kMaxKeyLength = 4096;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// The line without its comment: from a '#' at its start or after a blank.
std::string_view WithoutComment(std::string_view line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || IsBlank(line[i - 1]))) return line.substr(0, i);
  }
  return line;
}

// The blank-separated words of `line`.
std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsBlank(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !IsBlank(line[i])) ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

// The lines of `text`, without their '\n' (and a '\r' before it).
std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    text.remove_prefix(std::min(end + 1, text.size()));
  }
  return lines;
}

// Whether `word` is "bearer" in any case (RFC 6750's scheme is case-insensitive).
bool IsBearer(std::string_view word) {
  constexpr std::string_view kBearer = "bearer";
  if (word.size() != kBearer.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(word[i])) != kBearer[i]) return false;
  }
  return true;
}

std::optional<Scope> ScopeFromWord(std::string_view word) {
  for (Scope scope : {Scope::kReadOnly, Scope::kReadWrite, Scope::kAdmin}) {
    if (word == ScopeName(scope)) return scope;
  }
  return std::nullopt;
}

// Why `key` cannot be a key, or OK. The message never shows the key.
absl::Status CheckKey(std::string_view key) {
  if (key.size() < kMinKeyLength || key.size() > kMaxKeyLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a key must have ", kMinKeyLength, " to ", kMaxKeyLength, " characters (this one has ",
        key.size(), "; `openssl rand -hex 24` makes one)"));
  }
  for (char c : key) {
    if (c < '!' || c > '~') {
      return absl::InvalidArgumentError(
          "a key must be printable ASCII without spaces (it travels in an HTTP/2 header)");
    }
  }
  return absl::OkStatus();
}

// One non-blank line: the key and its grant.
absl::Status ParseLine(const std::vector<std::string_view>& words, std::string_view* key,
                       Grant* grant) {
  *key = words[0];
  FOT_RETURN_IF_ERROR(CheckKey(*key));
  std::optional<Scope> scope;
  std::optional<std::string> prefix;
  for (size_t i = 1; i < words.size(); ++i) {
    const std::string_view word = words[i];
    if (std::optional<Scope> s = ScopeFromWord(word)) {
      if (scope.has_value()) return absl::InvalidArgumentError("a key has one scope");
      scope = s;
    } else if (word.rfind("prefix=", 0) == 0) {
      if (prefix.has_value()) return absl::InvalidArgumentError("a key has one prefix");
      prefix = std::string(word.substr(7));
      if (absl::Status status = ValidateName(*prefix, "prefix"); !status.ok()) {
        return absl::InvalidArgumentError(
            "prefix=NAME needs a NAME of 1 to 64 characters of A-Z a-z 0-9 . _ -, not "
            "starting with '.' (the start of the session names the key may touch)");
      }
    } else {
      // Not shown: it may be a second key on the line.
      return absl::InvalidArgumentError(
          absl::StrCat("after the key, expected read-only, read-write, admin or prefix=NAME (word ",
                       i + 1, " is none of these; one key per line)"));
    }
  }
  grant->scope = scope.value_or(Scope::kReadWrite);
  grant->prefix = prefix.value_or("");
  if (grant->scope == Scope::kAdmin && !grant->prefix.empty()) {
    return absl::InvalidArgumentError(
        "an admin key covers the whole server and takes no prefix= (use read-write with a prefix)");
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kReadOnly:
      return "read-only";
    case Scope::kReadWrite:
      return "read-write";
    case Scope::kAdmin:
      return "admin";
  }
  return "unknown";
}

bool Grant::Covers(std::string_view name) const {
  if (prefix.empty()) return true;
  return name.size() >= prefix.size() && name.compare(0, prefix.size(), prefix) == 0;
}

absl::Status CheckGrant(const Grant& grant, Scope needed, std::string_view method,
                        std::initializer_list<std::string_view> names) {
  if (grant.scope < needed) {
    return absl::PermissionDeniedError(
        absl::StrCat(std::string(method), " needs a ", std::string(ScopeName(needed)), " key",
                     needed == Scope::kAdmin ? "" : " or better", "; this API key is ",
                     std::string(ScopeName(grant.scope))));
  }
  for (std::string_view name : names) {
    if (name.empty() || grant.Covers(name)) continue;
    return absl::PermissionDeniedError(
        absl::StrCat("this API key is limited to names starting with '", grant.prefix, "'; ",
                     std::string(method), " of '", TruncateName(name), "' is outside it"));
  }
  return absl::OkStatus();
}

ApiKeys::Digest ApiKeys::DigestOf(std::string_view key) {
  Digest digest{};
  unsigned int size = 0;
  // All zeros should OpenSSL fail (it does not for SHA-256): Parse refuses
  // such a digest and Authenticate never accepts one.
  if (EVP_Digest(key.data(), key.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != digest.size()) {
    digest.fill(0);
  }
  return digest;
}

absl::StatusOr<ApiKeys> ApiKeys::Parse(std::string_view text) {
  ApiKeys keys;
  int number = 0;
  for (std::string_view line : Lines(text)) {
    ++number;
    const std::vector<std::string_view> words = Words(WithoutComment(line));
    if (words.empty()) continue;
    std::string_view key;
    Grant grant;
    grant.line = number;
    if (absl::Status status = ParseLine(words, &key, &grant); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", number, ": ", status.message()));
    }
    const Digest digest = DigestOf(key);
    if (digest == Digest{}) return absl::InternalError("SHA-256 is unavailable (OpenSSL)");
    for (const Key& other : keys.keys_) {
      if (other.digest == digest) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", number, ": the same key as line ", other.grant.line));
      }
    }
    keys.keys_.push_back({digest, std::move(grant)});
  }
  if (keys.keys_.empty()) {
    return absl::InvalidArgumentError(
        "no API key in the file (one per line: KEY [read-only|read-write|admin] [prefix=NAME]); "
        "without keys every call would be refused");
  }
  return keys;
}

absl::StatusOr<ApiKeys> ApiKeys::Load(const std::string& path) {
  auto text = Env::Default()->ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("API key file: ", text.status().message()));
  }
  auto keys = Parse(*text);
  if (!keys.ok()) {
    return absl::Status(keys.status().code(),
                        absl::StrCat("API key file ", path, ": ", keys.status().message()));
  }
  return keys;
}

absl::StatusOr<Grant> ApiKeys::Authenticate(std::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "this server needs an API key: send the metadata 'authorization: Bearer KEY' (fotctl: "
        "--api-key-file FILE or $FOTSERVE_API_KEY)");
  }
  const std::vector<std::string_view> words = Words(authorization);
  if (words.size() != 2 || !IsBearer(words[0])) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be 'Bearer KEY' (one API key, no other scheme)");
  }
  const Digest digest = DigestOf(words[1]);
  // Every key is compared, whichever matches, so the time taken does not
  // depend on which key (or how much of one) matched.
  int found = -1;
  for (size_t i = 0; i < keys_.size(); ++i) {
    const bool equal = CRYPTO_memcmp(digest.data(), keys_[i].digest.data(), digest.size()) == 0;
    found = equal ? static_cast<int>(i) : found;
  }
  if (found < 0 || digest == Digest{}) {
    return absl::UnauthenticatedError("the API key is not valid for this server");
  }
  return keys_[found].grant;
}

absl::StatusOr<Grant> ApiKeys::Authorize(std::string_view authorization, Scope needed,
                                         std::string_view method,
                                         std::initializer_list<std::string_view> names) const {
  absl::StatusOr<Grant> grant = Authenticate(authorization);
  if (!grant.ok()) return grant;
  FOT_RETURN_IF_ERROR(CheckGrant(*grant, needed, method, names));
  return grant;
}

}  // namespace fot
