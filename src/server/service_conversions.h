// How the engine's and the session manager's types appear on the wire: the
// conversions between them and the fot.v1 messages of proto/fot.proto
// (session options and info, ingest acknowledgements, memory entries and the
// provenance of traced ones).
//
// Kept apart from service.cc so that its handlers read as check, call,
// convert, and so that these conversions need protobuf's generated messages
// but no gRPC: service.cc stays the only code with gRPC service code.
// Internal to fot_service.
//
// Thread safety: the functions take no locks beyond those of the Session
// methods they call. An EntryResolver belongs to one query.
#ifndef FOTSERVE_SRC_SERVER_SERVICE_CONVERSIONS_H_
#define FOTSERVE_SRC_SERVER_SERVICE_CONVERSIONS_H_

#include <cstdint>
#include <vector>

#include "proto/fot.pb.h"
#include "src/engine/memory_inspection.h"
#include "src/engine/session.h"
#include "src/model/attention.h"
#include "src/server/document_ingest.h"
#include "src/server/query_provenance.h"
#include "src/tokenizer/tokenizer.h"

namespace fot::service_internal {

// Resolved session options as SessionInfo and ServerInfo show them; the
// lambda fields stay unset unless the attention is lambda.
void FillOptions(const SessionOptions& options, v1::SessionOptions* out);

// The options of a CreateSession request as the session manager takes them.
SessionOptionsSpec SpecOf(const v1::SessionOptions& o);

// A session's name, options, progress and size; its documents (with their
// ingest state) only if `with_documents`.
void FillSessionInfo(const ManagedSession& managed, bool with_documents, v1::SessionInfo* out);

void FillAck(const IngestAck& ack, v1::IngestResponse* out);

// An entry of committed memory as ListEntries and EntryContext return it;
// `documents` are the session's, in stream order.
void FillEntry(const Tokenizer& tokenizer, const std::vector<DocumentInfo>& documents,
               const MemoryEntry& e, v1::MemoryEntry* out);

// The provenance of traced entries (query_provenance.h) as fot.v1 messages.
class EntryResolver {
 public:
  EntryResolver(const Session& session, const Tokenizer& tokenizer);

  // Appends a token of the query (question first, then each generated one).
  void AddQueryToken(int token) { provenance_.AddQueryToken(token); }

  void Fill(int64_t id, v1::MemoryEntry* out) const;

  void FillTrace(const std::vector<AttentionTrace>& traces,
                 google::protobuf::RepeatedPtrField<v1::LayerRetrieval>* out) const;

 private:
  QueryProvenance provenance_;
};

}  // namespace fot::service_internal

#endif  // FOTSERVE_SRC_SERVER_SERVICE_CONVERSIONS_H_
