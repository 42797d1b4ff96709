#include "src/server/validation.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/utf8.h"

namespace fot {

absl::Status ValidateName(std::string_view name, std::string_view what) {
  const bool ok = !name.empty() && name.size() <= 64 && name.front() != '.' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(what), " '", TruncateName(name),
      "' is not a valid name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.'"));
}

std::string TruncateName(std::string_view name) {
  return std::string(name.substr(0, CompleteCharactersPrefix(name.substr(0, 80))));
}

}  // namespace fot
