// The conversions between engine / session-manager types and the fot.v1
// messages (see service_conversions.h).
#include "src/server/service_conversions.h"

#include <string>

#include "absl/strings/str_join.h"

namespace fot::service_internal {

namespace pb = ::fot::v1;

void FillOptions(const SessionOptions& options, pb::SessionOptions* out) {
  out->set_retrieval(DescribeRetrieval(options.retrieval));
  out->set_index(DescribeOptions(options.memory));
  out->set_memory_dtype(std::string(StorageTypeName(options.memory.dtype)));
  out->set_last_context_length(options.last_context_length);
  const AttentionOptions& a = options.attention;
  out->set_attention(AttentionModeName(a.mode));
  if (a.mode != AttentionMode::kLambda) return;  // the lambda fields stay unset
  out->set_n_global(a.n_global);
  out->set_local_window(a.local_window);
  if (a.memory_positioning) {
    out->set_memory_positioning(MemoryPositioningName(*a.memory_positioning));
  }
  if (a.memory_layers) {
    out->set_memory_layers(a.memory_layers->empty() ? "none"
                                                    : absl::StrJoin(*a.memory_layers, ","));
  }
}

SessionOptionsSpec SpecOf(const pb::SessionOptions& o) {
  SessionOptionsSpec spec;
  spec.retrieval = o.retrieval();
  spec.index = o.index();
  spec.memory_dtype = o.memory_dtype();
  spec.last_context_length = o.last_context_length();
  spec.attention = o.attention();
  if (o.has_n_global()) spec.n_global = o.n_global();
  spec.local_window = o.local_window();
  spec.memory_positioning = o.memory_positioning();
  spec.memory_layers = o.memory_layers();
  return spec;
}

void FillSessionInfo(const ManagedSession& managed, bool with_documents, pb::SessionInfo* out) {
  const Session& session = managed.session();
  out->set_name(managed.name());
  FillOptions(session.options(), out->mutable_options());
  const IngestProgress progress = session.Progress();
  out->set_stream_tokens(progress.stream_tokens);
  out->set_committed_tokens(progress.committed_tokens);
  out->set_memory_bytes(session.Stats().bytes);
  const std::vector<DocumentInfo> documents = session.Documents();
  out->set_document_count(static_cast<int32_t>(documents.size()));
  if (!with_documents) return;
  for (const DocumentInfo& d : documents) {
    pb::DocumentInfo* doc = out->add_documents();
    const DocumentState state = managed.Document(d.name);
    const DocumentState saved = managed.SavedDocument(d.name);
    doc->set_name(d.name);
    doc->set_index(d.id);
    doc->set_first_token(d.first);
    doc->set_tokens(d.tokens);
    doc->set_deleted(d.deleted);
    doc->set_complete(state.complete);
    doc->set_text(state.text);
    doc->set_resume_offset(saved.offset);
  }
}

void FillAck(const IngestAck& ack, pb::IngestResponse* out) {
  out->set_document_tokens(ack.document_tokens);
  out->set_stream_tokens(ack.stream_tokens);
  out->set_committed_tokens(ack.committed_tokens);
  out->set_resume_offset(ack.resume_offset);
  out->set_pending_bytes(ack.pending_bytes);
  out->set_complete(ack.complete);
}

void FillEntry(const Tokenizer& tokenizer, const std::vector<DocumentInfo>& documents,
               const MemoryEntry& e, pb::MemoryEntry* out) {
  out->set_id(e.id);
  out->set_document_index(e.provenance.document);
  if (e.provenance.document >= 0 &&
      e.provenance.document < static_cast<int64_t>(documents.size())) {
    out->set_document(documents[e.provenance.document].name);
  }
  out->set_position(e.provenance.position);
  out->set_token_id(e.provenance.token);
  out->set_token_text(tokenizer.PieceText(e.provenance.token));
  out->set_deleted(e.deleted);
}

EntryResolver::EntryResolver(const Session& session, const Tokenizer& tokenizer)
    : provenance_(session, tokenizer) {}

void EntryResolver::Fill(int64_t id, pb::MemoryEntry* out) const {
  const ResolvedEntry e = provenance_.Resolve(id);
  out->set_id(e.id);
  out->set_document(e.document);
  out->set_document_index(e.document_index);
  out->set_position(e.position);
  out->set_token_id(e.token_id);
  out->set_token_text(e.token_text);
  out->set_deleted(e.deleted);
}

void EntryResolver::FillTrace(const std::vector<AttentionTrace>& traces,
                              google::protobuf::RepeatedPtrField<pb::LayerRetrieval>* out) const {
  for (size_t layer = 0; layer < traces.size(); ++layer) {
    if (!provenance_.IsMemoryLayer(static_cast<int>(layer))) continue;
    pb::LayerRetrieval* l = out->Add();
    l->set_layer(static_cast<int>(layer));
    for (size_t h = 0; h < traces[layer].heads.size(); ++h) {
      pb::HeadRetrieval* head = l->add_heads();
      head->set_head(static_cast<int>(h));
      for (const TracedEntry& e : traces[layer].heads[h]) {
        pb::RetrievedEntry* r = head->add_entries();
        Fill(e.id, r->mutable_entry());
        r->set_inner_product(e.inner_product);
        r->set_attention_share(e.attention_share);
      }
    }
  }
}

}  // namespace fot::service_internal
