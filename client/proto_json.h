// fotctl's --json output: the wire messages as JSON objects with the proto's
// field names and plain JSON numbers (64-bit counts stay numbers, unlike the
// canonical proto JSON mapping, so scripts can do arithmetic on them).
//
// Thread safety: pure functions.
#ifndef FOTSERVE_CLIENT_PROTO_JSON_H_
#define FOTSERVE_CLIENT_PROTO_JSON_H_

#include "nlohmann/json.hpp"
#include "proto/fot.pb.h"

namespace fot::client {

nlohmann::json ToJson(const fot::v1::ServerInfo& info);
nlohmann::json ToJson(const fot::v1::SessionOptions& options);
nlohmann::json ToJson(const fot::v1::DocumentInfo& document);
nlohmann::json ToJson(const fot::v1::SessionInfo& session);
nlohmann::json ToJson(const fot::v1::MemoryEntry& entry);
nlohmann::json ToJson(const fot::v1::RetrievedEntry& entry);
nlohmann::json ToJson(const fot::v1::LayerRetrieval& layer);
nlohmann::json ToJson(const fot::v1::MemoryStatsResponse& stats);

// Prints `value` to stdout as one document followed by a newline.
void PrintJson(const nlohmann::json& value);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_PROTO_JSON_H_
