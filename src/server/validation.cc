#include "src/server/validation.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace fot {

absl::Status ValidateName(std::string_view name, std::string_view what) {
  const bool ok = !name.empty() && name.size() <= 64 && name.front() != '.' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(what), " '", std::string(name.substr(0, 80)),
      "' is not a valid name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.'"));
}

absl::Status ValidateUtf8(std::string_view text, bool allow_incomplete_end) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    int length;
    uint32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      length = 2, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, min = 0x10000;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte ", i));
    }
    uint32_t code = c & (0x7F >> length);
    for (int k = 1; k < length; ++k) {
      if (i + k >= n) {
        if (allow_incomplete_end) return absl::OkStatus();
        return absl::InvalidArgumentError(
            absl::StrCat("invalid UTF-8: the text ends inside a character at byte ", i));
      }
      if ((s[i + k] & 0xC0) != 0x80) {
        return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte ", i + k));
      }
      code = (code << 6) | (s[i + k] & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte ", i));
    }
    i += length;
  }
  return absl::OkStatus();
}

}  // namespace fot
