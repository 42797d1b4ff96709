// The Fot gRPC service: each handler checks and converts its request, calls
// the SessionManager / Session, and converts the answer. Synchronous API:
// streams are plain ServerWriter / ServerReaderWriter loops. Every handler
// runs inside Guard(), so no exception leaves it, and every absl::Status
// becomes a grpc::Status in ToGrpcStatus() alone. The conversions between engine types and fot.v1
// messages live in service_conversions.{h,cc}.
#include "src/server/service.h"

#include <google/protobuf/message.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "proto/fot.grpc.pb.h"
#include "src/server/document_ingest.h"
#include "src/server/generation.h"
#include "src/server/server_metrics.h"
#include "src/server/service_auth.h"
#include "src/server/service_conversions.h"
#include "src/server/watchdog.h"

namespace fot {
namespace {

namespace pb = ::fot::v1;
using service_internal::AuthorizeCall;
using service_internal::EntryResolver;
using service_internal::FillAck;
using service_internal::FillEntry;
using service_internal::FillOptions;
using service_internal::FillSessionInfo;
using service_internal::SpecOf;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 10000;
constexpr int kDefaultRadius = 16;
constexpr int kMaxRadius = 4096;

// The one place where absl::Status becomes grpc::Status. The codes are equal
// numerically (both follow google.rpc.Code).
grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  const auto grpc_code =
      code >= 1 && code <= 16 ? static_cast<grpc::StatusCode>(code) : grpc::StatusCode::UNKNOWN;
  std::string message(status.message());
  if (message.size() > 4096) message.resize(4096);
  return grpc::Status(grpc_code, message);
}

// Runs a handler body; exceptions become INTERNAL.
template <typename Body>
grpc::Status Guard(const char* method, Body&& body) {
  try {
    return ToGrpcStatus(body());
  } catch (const std::exception& e) {
    return ToGrpcStatus(absl::InternalError(absl::StrCat(method, ": ", e.what())));
  } catch (...) {
    return ToGrpcStatus(absl::InternalError(absl::StrCat(method, ": unknown exception")));
  }
}

// Text or token ids of one input; InvalidArgument if both are set, or if
// neither is and `required`. (Text is valid UTF-8: protobuf's parser refuses
// a `string` field that is not.)
absl::StatusOr<std::vector<int>> TextOrIds(const Tokenizer& tokenizer, const std::string& text,
                                           const google::protobuf::RepeatedField<int32_t>& ids,
                                           const char* what, bool required) {
  if (!text.empty() && !ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("give ", what, " as text or as token ids, not both"));
  }
  std::vector<int> out;
  if (!text.empty()) {
    out = tokenizer.Encode(text);
  } else {
    out.assign(ids.begin(), ids.end());
  }
  if (required && out.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  return out;
}

// Why a query stopped early, for its client: the server shut down, the
// client stopped reading for write_timeout, its deadline passed, or it
// cancelled.
absl::Status CancelledQueryStatus(const grpc::ServerContext& context, const SessionManager& manager,
                                  bool write_timed_out) {
  if (manager.shutting_down()) return absl::UnavailableError("the server is shutting down");
  if (write_timed_out) {
    return absl::DeadlineExceededError(
        "the client read no reply for the server's write timeout (--write_timeout_s)");
  }
  if (context.deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the query ran out of time (its deadline passed)");
  }
  return absl::CancelledError("the client cancelled");
}

int FirstMemoryLayer(const Session& session) {
  return session.memory_layers().empty() ? 0 : session.memory_layers().front();
}

class FotService final : public pb::Fot::Service {
 public:
  FotService(SessionManager* manager, ServerOptions options)
      : manager_(manager), options_(std::move(options)) {}

  grpc::Status GetServerInfo(grpc::ServerContext* context, const pb::GetServerInfoRequest* request,
                             pb::ServerInfo* out) override {
    return Guard("GetServerInfo", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "GetServerInfo", Scope::kReadOnly, {}));
      const ModelConfig& c = manager_->engine().config();
      // The folder's name only: clients learn no server paths.
      std::string_view model = options_.model_dir;
      while (model.size() > 1 && model.back() == '/') model.remove_suffix(1);
      out->set_model_dir(std::string(model.substr(model.find_last_of('/') + 1)));
      out->set_model_type(c.model_type);
      out->set_vocab_size(c.vocab_size);
      out->set_hidden_size(c.hidden_size);
      out->set_num_layers(c.num_hidden_layers);
      out->set_num_heads(c.num_attention_heads);
      out->set_num_kv_heads(c.num_key_value_heads);
      out->set_window(c.max_position_embeddings);
      out->set_last_context_length(c.last_context_length);
      for (int l : c.mem_layers) out->add_memory_layers(l);
      out->set_bos_id(manager_->tokenizer().bos_id());
      out->set_eos_id(manager_->tokenizer().eos_id());
      SessionOptions defaults = manager_->options().defaults;
      if (defaults.last_context_length == 0) defaults.last_context_length = c.last_context_length;
      FillOptions(defaults, out->mutable_default_options());
      out->set_max_sessions(manager_->options().max_sessions);
      out->set_max_message_bytes(options_.max_message_bytes);
      out->set_sessions(manager_->size());
      return absl::OkStatus();
    });
  }

  grpc::Status CreateSession(grpc::ServerContext* context, const pb::CreateSessionRequest* request,
                             pb::SessionInfo* out) override {
    return Guard("CreateSession", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "CreateSession", Scope::kReadWrite, {request->name()}));
      FOT_ASSIGN_OR_RETURN(auto session,
                           manager_->Create(request->name(), SpecOf(request->options())));
      FillSessionInfo(*session, true, out);
      return absl::OkStatus();
    });
  }

  grpc::Status GetSession(grpc::ServerContext* context, const pb::GetSessionRequest* request,
                          pb::SessionInfo* out) override {
    return Guard("GetSession", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "GetSession", Scope::kReadOnly, {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto session, manager_->Get(request->session()));
      FillSessionInfo(*session, true, out);
      return absl::OkStatus();
    });
  }

  grpc::Status ListSessions(grpc::ServerContext* context, const pb::ListSessionsRequest* request,
                            pb::ListSessionsResponse* out) override {
    return Guard("ListSessions", [&]() -> absl::Status {
      FOT_ASSIGN_OR_RETURN(const Grant grant,
                           Authorize(context, "ListSessions", Scope::kReadOnly, {}));
      if (manager_->shutting_down()) return absl::UnavailableError("the server is shutting down");
      for (const auto& session : manager_->List())
        if (grant.Covers(session->name())) FillSessionInfo(*session, false, out->add_sessions());
      for (const std::string& name : manager_->Snapshots())
        if (grant.Covers(name)) out->add_snapshots(name);
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteSession(grpc::ServerContext* context, const pb::DeleteSessionRequest* request,
                             pb::DeleteSessionResponse*) override {
    return Guard("DeleteSession", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "DeleteSession", Scope::kReadWrite, {request->session()}));
      return manager_->Delete(request->session());
    });
  }

  grpc::Status Ingest(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<pb::IngestResponse, pb::IngestRequest>* stream) override {
    return Guard("Ingest", [&]() -> absl::Status {
      FOT_ASSIGN_OR_RETURN(const Grant grant, Authorize(context, "Ingest", Scope::kReadWrite, {}));
      Watchdog::Timer timer(&watchdog_, [context] { context->TryCancel(); });
      const auto read = [&](pb::IngestRequest* request) {
        timer.Arm(limits().idle_timeout);
        const bool ok = stream->Read(request);
        timer.Disarm();
        return ok;
      };
      const auto write = [&](const pb::IngestResponse& response) {
        timer.Arm(limits().write_timeout);
        const bool ok = stream->Write(response);
        timer.Disarm();
        return ok;
      };
      pb::IngestRequest request;
      if (!read(&request)) {
        // Nothing arrived, or a message protobuf could not parse (a string
        // field with invalid UTF-8): a stream must start with `open`.
        return absl::InvalidArgumentError(
            "the Ingest stream ended before its `open` message (or that message did not parse: "
            "text fields must be UTF-8)");
      }
      if (!request.has_open()) {
        return absl::InvalidArgumentError("the first Ingest message must be `open`");
      }
      const pb::IngestOpen& open = request.open();
      FOT_RETURN_IF_ERROR(CheckGrant(grant, Scope::kReadWrite, "Ingest", {open.session()}));
      FOT_ASSIGN_OR_RETURN(
          std::unique_ptr<DocumentIngest> ingest,
          DocumentIngest::Open(manager_, {open.session(), open.document(), open.resume(),
                                          open.offset(), open.add_bos()}));
      pb::IngestResponse response;
      FillAck(ingest->Ack(), &response);
      if (!write(response)) return absl::CancelledError("the client went away");
      std::vector<int> ids;
      while (read(&request)) {
        if (!request.has_chunk()) {
          (void)ingest->Close();
          return absl::InvalidArgumentError("after `open`, Ingest messages must be chunks");
        }
        const pb::IngestChunk& chunk = request.chunk();
        ids.assign(chunk.token_ids().begin(), chunk.token_ids().end());
        auto ack = ingest->Chunk(chunk.text(), ids, chunk.end_of_document());
        if (!ack.ok()) {
          (void)ingest->Close();  // keeps what was appended before the error
          return ack.status();
        }
        response.Clear();
        FillAck(*ack, &response);
        if (!write(response)) break;
        // Work that the acknowledgement need not wait for.
        ingest->AfterAck();
        if (chunk.end_of_document()) return absl::OkStatus();
      }
      // The client half-closed or vanished without ending the document, or
      // sent a chunk protobuf could not parse (text that is not UTF-8): save
      // what arrived (the client resumes from the last resume_offset).
      FOT_ASSIGN_OR_RETURN(IngestAck last, ingest->Close());
      if (timer.expired()) {
        return absl::DeadlineExceededError(absl::StrCat(
            "the stream sent or read nothing for ", absl::FormatDuration(limits().idle_timeout),
            " (--idle_timeout_s) or ", absl::FormatDuration(limits().write_timeout),
            " (--write_timeout_s); resume it"));
      }
      if (context->IsCancelled()) return absl::CancelledError("the client cancelled the stream");
      response.Clear();
      FillAck(last, &response);
      write(response);
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteDocument(grpc::ServerContext* context,
                              const pb::DeleteDocumentRequest* request,
                              pb::DeleteDocumentResponse*) override {
    return Guard("DeleteDocument", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(
          Allow(context, "DeleteDocument", Scope::kReadWrite, {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto session, manager_->Get(request->session()));
      FOT_RETURN_IF_ERROR(session->session().DeleteDocument(request->document()));
      return manager_->Persist(*session);
    });
  }

  grpc::Status Generate(grpc::ServerContext* context, const pb::GenerateRequest* request,
                        grpc::ServerWriter<pb::GenerateResponse>* writer) override {
    return Guard("Generate", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "Generate",
                                request->keep_turn() ? Scope::kReadWrite : Scope::kReadOnly,
                                {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto managed, manager_->Get(request->session()));
      const Tokenizer& tokenizer = manager_->tokenizer();
      const ModelConfig& config = manager_->engine().config();
      FOT_ASSIGN_OR_RETURN(std::vector<int> question,
                           TextOrIds(tokenizer, request->question(), request->question_token_ids(),
                                     "question", /*required=*/true));
      GenerationParams params;
      params.sampling.temperature = request->temperature();
      params.sampling.top_p = request->top_p() == 0 ? 1.0f : request->top_p();
      params.sampling.seed = request->seed();
      params.max_tokens = request->max_tokens();
      params.stop.assign(request->stop().begin(), request->stop().end());
      params.ignore_eos = request->ignore_eos();
      params.retrieval = request->retrieval();
      params.documents.assign(request->documents().begin(), request->documents().end());
      params.trace = request->trace();
      params.trace_top = request->trace_top();
      params.keep_turn = request->keep_turn();
      FOT_ASSIGN_OR_RETURN(std::unique_ptr<Generation> generation,
                           Generation::Prepare(manager_, managed, std::move(question), params,
                                               manager_->options().metrics));
      std::optional<EntryResolver> resolver;
      if (params.trace) {
        resolver.emplace(managed->session(), tokenizer);
        for (int t : generation->question()) resolver->AddQueryToken(t);
      }

      bool cancelled = false, shutdown = false, write_failed = false;
      // A client that stops reading is cancelled after write_timeout: the
      // query holds its session's memory while it waits.
      Watchdog::Timer timer(&watchdog_, [context] { context->TryCancel(); });
      const auto stopped = [&] { return context->IsCancelled() || manager_->shutting_down(); };
      pb::GenerateResponse message;
      const auto on_token = [&](const GeneratedToken& token, const std::string& text,
                                const float* logits) {
        message.Clear();
        message.set_token_id(token.token);
        message.set_text(text);
        message.set_piece(tokenizer.PieceText(token.token));
        if (resolver.has_value()) {
          resolver->AddQueryToken(token.token);
          resolver->FillTrace(token.traces, message.mutable_trace());
        }
        if (request->return_logits() && logits != nullptr) {
          message.mutable_logits()->Add(logits, logits + config.vocab_size);
        }
        timer.Arm(limits().write_timeout);
        if (!writer->Write(message)) write_failed = true;
        timer.Disarm();
        cancelled = context->IsCancelled();
        shutdown = manager_->shutting_down();
        return !(write_failed || cancelled || shutdown);
      };
      absl::StatusOr<QueryResult> generated = generation->Run(on_token, stopped);
      if (!generated.ok() && stopped()) {
        return CancelledQueryStatus(*context, *manager_, timer.expired());
      }
      FOT_ASSIGN_OR_RETURN(QueryResult result, std::move(generated));
      FOT_ASSIGN_OR_RETURN(GenerationEnd end, generation->Finish(result));
      if (shutdown || cancelled || write_failed) {
        return CancelledQueryStatus(*context, *manager_, timer.expired());
      }
      message.Clear();
      message.set_token_id(-1);
      message.set_done(true);
      message.set_text(end.text);
      message.set_finish_reason(std::string(FinishReasonName(end.finish)));
      message.set_prompt_tokens(result.prompt_tokens);
      message.set_generated_tokens(static_cast<int32_t>(result.tokens.size()));
      writer->Write(message);
      return absl::OkStatus();
    });
  }

  grpc::Status Score(grpc::ServerContext* context, const pb::ScoreRequest* request,
                     pb::ScoreResponse* out) override {
    return Guard("Score", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "Score", Scope::kReadOnly, {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto managed, manager_->Get(request->session()));
      const Tokenizer& tokenizer = manager_->tokenizer();
      FOT_ASSIGN_OR_RETURN(std::vector<int> context_tokens,
                           TextOrIds(tokenizer, request->context(), request->context_token_ids(),
                                     "context", /*required=*/false));
      FOT_ASSIGN_OR_RETURN(
          std::vector<int> continuation,
          TextOrIds(tokenizer, request->continuation(), request->continuation_token_ids(),
                    "continuation", /*required=*/true));
      FOT_RETURN_IF_ERROR(
          CheckQueryTokens(static_cast<int64_t>(context_tokens.size() + continuation.size()),
                           "context with its continuation", limits()));
      FOT_ASSIGN_OR_RETURN(auto retrieval,
                           QueryRetrieval(*managed, request->retrieval(), {}, limits()));
      const auto cancelled = [&] { return context->IsCancelled() || manager_->shutting_down(); };
      absl::StatusOr<ScoreResult> scored =
          managed->session().Score(context_tokens, continuation, retrieval, cancelled);
      if (!scored.ok() && cancelled()) return CancelledQueryStatus(*context, *manager_, false);
      FOT_ASSIGN_OR_RETURN(ScoreResult result, std::move(scored));
      out->set_log_likelihood(result.log_likelihood);
      out->mutable_token_log_probs()->Add(result.token_log_probs.begin(),
                                          result.token_log_probs.end());
      out->set_perplexity(result.perplexity);
      out->mutable_continuation_token_ids()->Add(continuation.begin(), continuation.end());
      DetokenizeStream detokenize(&tokenizer);
      for (size_t i = 0; i < continuation.size(); ++i) {
        pb::TokenScore* token = out->add_token_scores();
        token->set_token_id(continuation[i]);
        token->set_piece(tokenizer.PieceText(continuation[i]));
        std::string text = detokenize.Feed(continuation[i]);
        if (i + 1 == continuation.size()) text += detokenize.Flush();
        token->set_text(std::move(text));
        if (i < result.token_log_probs.size()) token->set_log_prob(result.token_log_probs[i]);
      }
      return absl::OkStatus();
    });
  }

  grpc::Status MemoryStats(grpc::ServerContext* context, const pb::MemoryStatsRequest* request,
                           pb::MemoryStatsResponse* out) override {
    return Guard("MemoryStats", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "MemoryStats", Scope::kReadOnly, {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto managed, manager_->Get(request->session()));
      const Session& session = managed->session();
      const ::fot::MemoryStats stats = session.Stats();
      for (const LayerStats& l : stats.layers) {
        pb::LayerStats* layer = out->add_layers();
        layer->set_layer(l.layer);
        layer->set_index(l.index);
        for (const HeadStats& h : l.heads) {
          pb::HeadStats* head = layer->add_heads();
          head->set_kv_head(h.kv_head);
          head->set_entries(h.entries);
          head->set_live_entries(h.live_entries);
          head->set_bytes(h.bytes);
          head->set_searched_queries(h.search.queries);
          head->set_keys_scored(h.search.keys_scored);
          head->set_search_nanos(h.search.search_nanos);
        }
      }
      const std::vector<DocumentInfo> documents = session.Documents();
      for (int64_t id : stats.documents) {
        if (id >= 0 && id < static_cast<int64_t>(documents.size())) {
          out->add_documents(documents[id].name);
        }
      }
      out->set_bytes(stats.bytes);
      const IngestProgress progress = session.Progress();
      out->set_stream_tokens(progress.stream_tokens);
      out->set_committed_tokens(progress.committed_tokens);
      return absl::OkStatus();
    });
  }

  grpc::Status ListEntries(grpc::ServerContext* context, const pb::ListEntriesRequest* request,
                           pb::ListEntriesResponse* out) override {
    return Guard("ListEntries", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "ListEntries", Scope::kReadOnly, {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto managed, manager_->Get(request->session()));
      const Session& session = managed->session();
      const int layer = request->has_layer() ? request->layer() : FirstMemoryLayer(session);
      const int page = request->page_size() == 0 ? kDefaultPageSize : request->page_size();
      if (page < 1 || page > kMaxPageSize) {
        return absl::InvalidArgumentError(
            absl::StrCat("page_size must lie in [1, ", kMaxPageSize, "]"));
      }
      // The page token is the decimal offset of the page's first entry.
      int64_t offset = request->offset();
      if (offset < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("offset ", offset, " must be >= 0 (the id of the page's first entry)"));
      }
      if (!request->page_token().empty()) {
        if (offset != 0) {
          return absl::InvalidArgumentError(
              "give page_token (to continue a listing) or offset (to start one), not both");
        }
        if (!absl::SimpleAtoi(request->page_token(), &offset) || offset < 0) {
          return absl::InvalidArgumentError(
              "page_token is not one this server returned; pass a response's next_page_token, "
              "or use offset");
        }
      }
      FOT_ASSIGN_OR_RETURN(std::vector<MemoryEntry> entries,
                           session.ListEntries(layer, offset, page));
      int64_t total = 0;
      for (const LayerStats& l : session.Stats().layers) {
        if (l.layer == layer && !l.heads.empty()) total = l.heads.front().entries;
      }
      const std::vector<DocumentInfo> documents = session.Documents();
      for (const MemoryEntry& e : entries) {
        FillEntry(manager_->tokenizer(), documents, e, out->add_entries());
      }
      const int64_t next = offset + static_cast<int64_t>(entries.size());
      out->set_total_entries(total);
      out->set_offset(offset);
      if (!entries.empty() && next < total) {
        out->set_next_page_token(absl::StrCat(next));
        out->set_has_more(true);
      }
      return absl::OkStatus();
    });
  }

  grpc::Status EntryContext(grpc::ServerContext* context, const pb::EntryContextRequest* request,
                            pb::EntryContextResponse* out) override {
    return Guard("EntryContext", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "EntryContext", Scope::kReadOnly, {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto managed, manager_->Get(request->session()));
      const Session& session = managed->session();
      const int layer = request->has_layer() ? request->layer() : FirstMemoryLayer(session);
      const int radius = request->radius() == 0 ? kDefaultRadius : request->radius();
      if (radius < 1 || radius > kMaxRadius) {
        return absl::InvalidArgumentError(absl::StrCat("radius must lie in [1, ", kMaxRadius, "]"));
      }
      FOT_ASSIGN_OR_RETURN(std::vector<MemoryEntry> entries,
                           session.EntryContext(layer, request->id(), radius));
      const std::vector<DocumentInfo> documents = session.Documents();
      // Each token's text as the stream decodes it (whole characters only), so
      // the three parts are valid UTF-8 and concatenate to the decoded text.
      DetokenizeStream detokenize(&manager_->tokenizer());
      bool seen = false;
      for (const MemoryEntry& e : entries) {
        FillEntry(manager_->tokenizer(), documents, e, out->add_entries());
        const std::string text = detokenize.Feed(e.provenance.token);
        if (e.id == request->id()) {
          out->set_entry_text(text);
          seen = true;
        } else {
          (seen ? out->mutable_text_after() : out->mutable_text_before())->append(text);
        }
      }
      out->mutable_text_after()->append(detokenize.Flush());
      return absl::OkStatus();
    });
  }

  grpc::Status SearchMemory(grpc::ServerContext* context, const pb::SearchMemoryRequest* request,
                            pb::SearchMemoryResponse* out) override {
    return Guard("SearchMemory", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "SearchMemory", Scope::kReadOnly, {request->session()}));
      FOT_ASSIGN_OR_RETURN(auto managed, manager_->Get(request->session()));
      const Tokenizer& tokenizer = manager_->tokenizer();
      FOT_ASSIGN_OR_RETURN(std::vector<int> text,
                           TextOrIds(tokenizer, request->text(), request->token_ids(), "text",
                                     /*required=*/true));
      FOT_RETURN_IF_ERROR(
          CheckQueryTokens(static_cast<int64_t>(text.size()), "search text", limits()));
      const int top = request->top() == 0 ? kDefaultTraceTop : request->top();
      if (top < 1 || top > kMaxTop) {
        return absl::InvalidArgumentError(absl::StrCat("top must lie in [1, ", kMaxTop, "]"));
      }
      FOT_ASSIGN_OR_RETURN(auto retrieval,
                           QueryRetrieval(*managed, request->retrieval(), {}, limits()));
      EntryResolver resolver(managed->session(), tokenizer);
      for (int t : text) resolver.AddQueryToken(t);
      const auto cancelled = [&] { return context->IsCancelled() || manager_->shutting_down(); };
      absl::StatusOr<std::vector<AttentionTrace>> searched =
          managed->session().Search(text, top, retrieval, cancelled);
      if (!searched.ok() && cancelled()) return CancelledQueryStatus(*context, *manager_, false);
      FOT_ASSIGN_OR_RETURN(std::vector<AttentionTrace> traces, std::move(searched));
      resolver.FillTrace(traces, out->mutable_layers());
      return absl::OkStatus();
    });
  }

  grpc::Status SaveSession(grpc::ServerContext* context, const pb::SaveSessionRequest* request,
                           pb::SaveSessionResponse* out) override {
    return Guard("SaveSession", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "SaveSession", Scope::kReadWrite,
                                {request->session(), request->snapshot()}));
      FOT_ASSIGN_OR_RETURN(
          int64_t bytes,
          manager_->SaveSnapshot(request->session(), request->snapshot(), request->overwrite()));
      out->set_bytes(bytes);
      return absl::OkStatus();
    });
  }

  grpc::Status LoadSession(grpc::ServerContext* context, const pb::LoadSessionRequest* request,
                           pb::SessionInfo* out) override {
    return Guard("LoadSession", [&]() -> absl::Status {
      FOT_RETURN_IF_ERROR(Allow(context, "LoadSession", Scope::kReadWrite,
                                {request->snapshot(), request->session()}));
      FOT_ASSIGN_OR_RETURN(auto session,
                           manager_->LoadSnapshot(request->snapshot(), request->session()));
      FillSessionInfo(*session, true, out);
      return absl::OkStatus();
    });
  }

  // The limits every request is checked against (SessionManagerOptions).
  const Limits& limits() const { return manager_->options().limits; }

 private:
  // Every handler runs in this Guard: fot::Guard, counted into the server's
  // metrics by method and status code.
  template <typename Body>
  grpc::Status Guard(const char* method, Body&& body) {
    const auto start = std::chrono::steady_clock::now();
    grpc::Status status = fot::Guard(method, std::forward<Body>(body));
    if (ServerMetrics* metrics = manager_->options().metrics) {
      metrics->CountRequest(
          "grpc", method,
          absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
          SecondsSince(start));
    }
    return status;
  }

  // The caller's grant for `method` (service_auth.h): Unauthenticated or
  // PermissionDenied unless its key has `needed` for every name in `names`.
  absl::StatusOr<Grant> Authorize(grpc::ServerContext* context, std::string_view method,
                                  Scope needed,
                                  std::initializer_list<std::string_view> names) const {
    absl::StatusOr<Grant> grant =
        AuthorizeCall(options_.api_keys.get(), *context, method, needed, names);
    if (!grant.ok() && options_.refusals != nullptr) {
      options_.refusals->Refused("grpc", method, context->peer(), grant.status());
    }
    return grant;
  }
  absl::Status Allow(grpc::ServerContext* context, std::string_view method, Scope needed,
                     std::initializer_list<std::string_view> names) const {
    return Authorize(context, method, needed, names).status();
  }

  SessionManager* manager_;
  const ServerOptions options_;
  Watchdog watchdog_;  // idle streams and unread replies (Limits' timeouts)
};

}  // namespace

struct FotServer::Impl {
  SessionManager* manager;
  std::unique_ptr<FotService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

absl::StatusOr<std::unique_ptr<FotServer>> FotServer::Start(SessionManager* manager,
                                                            const ServerOptions& options) {
  if (options.max_message_bytes < 1024) {
    return absl::InvalidArgumentError("max_message_bytes must be at least 1024");
  }
  auto impl = std::make_unique<Impl>();
  impl->manager = manager;
  impl->service = std::make_unique<FotService>(manager, options);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, service_internal::ServerCredentialsFor(options.tls),
                           &impl->port);
  if (options.api_keys != nullptr) {
    builder.experimental().SetInterceptorCreators(
        service_internal::AuthInterceptors(options.api_keys, options.refusals));
  }
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  if (options.threads > 0) {
    grpc::ResourceQuota quota("fot-server");
    quota.SetMaxThreads(options.threads);
    builder.SetResourceQuota(quota);
  }
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  return std::unique_ptr<FotServer>(new FotServer(std::move(impl)));
}

FotServer::FotServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FotServer::~FotServer() {
  Shutdown(absl::ZeroDuration());
  Wait();
}

int FotServer::port() const { return impl_->port; }

void FotServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->manager->Shutdown();
  if (auto* health = impl_->server->GetHealthCheckService()) health->SetServingStatus(false);
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

void FotServer::Wait() { impl_->server->Wait(); }

}  // namespace fot
