// fotctl checks the text fields of every request before sending it: text
// travels in `string` fields, which protobuf refuses to parse when they are
// not UTF-8, so an unchecked Latin-1 argument would come back as a bare
// INTERNAL. Checking here names the field instead.
#ifndef FOTSERVE_CLIENT_TEXT_CHECK_H_
#define FOTSERVE_CLIENT_TEXT_CHECK_H_

#include <google/protobuf/message.h>

#include "absl/status/status.h"

namespace fot::client {

// InvalidArgument naming the first string field of `request` (nested
// messages included) that is not valid UTF-8, e.g.
// "GenerateRequest.stop[1]: invalid UTF-8 at byte 3; ...".
absl::Status CheckText(const google::protobuf::Message& request);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_TEXT_CHECK_H_
