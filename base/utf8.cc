#include "base/utf8.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace fot {

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

size_t CompleteCharactersPrefix(std::string_view text) {
  // A character is at most 4 bytes: look back at most 3 for its lead byte.
  const size_t n = text.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte
    const size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    return length > back ? n - back : n;
  }
  return n;
}

}  // namespace fot
