// Checks of the names and text clients send, before anything uses them.
#ifndef FOTSERVE_SRC_SERVER_VALIDATION_H_
#define FOTSERVE_SRC_SERVER_VALIDATION_H_

#include <string_view>

#include "absl/status/status.h"

namespace fot {

// Names of sessions and snapshots: 1 to 64 of [A-Za-z0-9._-], not starting
// with '.'. InvalidArgument otherwise (`what` names the field).
[[nodiscard]] absl::Status ValidateName(std::string_view name, std::string_view what);

// OK if `text` is valid UTF-8. With allow_incomplete_end, a truncated
// character at the very end is accepted (more bytes may follow).
[[nodiscard]] absl::Status ValidateUtf8(std::string_view text, bool allow_incomplete_end);

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_VALIDATION_H_
