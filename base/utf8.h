// UTF-8 checks, for the server (document names, document text as it grows)
// and for clients (text fields before they are sent).
#ifndef FOTSERVE_BASE_UTF8_H_
#define FOTSERVE_BASE_UTF8_H_

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace fot {

// OK if `text` is valid UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF). With allow_incomplete_end, a truncated character at the
// very end is accepted (more bytes may follow). InvalidArgument naming the
// byte otherwise.
[[nodiscard]] absl::Status ValidateUtf8(std::string_view text, bool allow_incomplete_end);

// The length of the longest prefix of `text` that does not end inside a
// character: what of a chunk of bytes can be sent now.
size_t CompleteCharactersPrefix(std::string_view text);

}  // namespace fot

#endif  // FOTSERVE_BASE_UTF8_H_
