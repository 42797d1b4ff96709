// The input format of service_fuzzer.cc, shared with its seeds
// (seed_service.cc): calls as parts (fuzz_support.h), each a selector byte
// (an Rpc, modulo kRpcCount) followed by the serialized request.
#ifndef FOTSERVE_FUZZ_SERVICE_INPUT_H_
#define FOTSERVE_FUZZ_SERVICE_INPUT_H_

#include <google/protobuf/message.h>

#include <cstddef>
#include <string>

namespace fot::fuzz {

// The RPCs of proto/fot.proto, in the harness's order.
enum class Rpc : unsigned char {
  kGetServerInfo,
  kCreateSession,
  kGetSession,
  kListSessions,
  kDeleteSession,
  kIngest,  // consecutive Ingest parts are one stream's messages
  kDeleteDocument,
  kGenerate,
  kScore,
  kMemoryStats,
  kListEntries,
  kEntryContext,
  kSearchMemory,
  kSaveSession,
  kLoadSession,
};
inline constexpr size_t kRpcCount = 15;

// The sessions every input starts with (service_fuzzer.cc), each holding
// the document "doc".
inline constexpr char kFotSession[] = "fot";
inline constexpr char kLambdaSession[] = "lambda";

// One call's part.
inline std::string CallPart(Rpc rpc, const google::protobuf::Message& request) {
  return std::string(1, static_cast<char>(rpc)) + request.SerializeAsString();
}

}  // namespace fot::fuzz

#endif  // FOTSERVE_FUZZ_SERVICE_INPUT_H_
