// Checks of the names clients send, before anything uses them.
#ifndef FOTSERVE_SRC_SERVER_VALIDATION_H_
#define FOTSERVE_SRC_SERVER_VALIDATION_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace fot {

// Names of sessions and snapshots: 1 to 64 of [A-Za-z0-9._-], not starting
// with '.'. InvalidArgument otherwise (`what` names the field).
[[nodiscard]] absl::Status ValidateName(std::string_view name, std::string_view what);

// At most the first 80 bytes of a client's name, for a message, cut between
// characters (a name that is not a valid one may be any bytes).
std::string TruncateName(std::string_view name);

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_VALIDATION_H_
