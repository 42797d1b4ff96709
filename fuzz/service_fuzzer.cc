// Fuzzes every RPC of the Fot service (src/server/service.h) in process: a
// FotServer on a loopback port over a SessionManager with a data directory,
// the small random model and the trained tokenizer, called through the
// generated stub.
//
// Input: calls as parts (service_input.h): a part's first byte selects the
// RPC, the rest is the serialized request message; consecutive Ingest parts
// are the messages of one Ingest stream. A part that does not parse as its
// request is skipped; a Generate the server would accept is cut to
// kMaxGenerated tokens.
//
// Every input starts from the same state: sessions "fot" and "lambda"
// (service_input.h), each with the document "doc" ingested, and no snapshot
// (the sessions are recreated after an input that changed any; the server is
// restarted on a fresh data directory after one that saved a snapshot, which
// no RPC deletes).
//
// Checks: no call is answered INTERNAL, UNKNOWN or DATA_LOSS (random
// requests must get a client-facing status: proto/fot.proto), no call
// outlives its deadline, and the server still answers after the input.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/service_input.h"
#include "proto/fot.grpc.pb.h"
#include "src/server/generation.h"
#include "src/server/service.h"
#include "src/server/session_manager.h"

namespace fot::fuzz {
namespace {

namespace pb = ::fot::v1;

// Long enough for any request the harness sends (see kMaxGenerated); a call
// still running then is stuck.
constexpr auto kDeadline = std::chrono::seconds(60);
// Generations the server accepts (up to kMaxTokensLimit tokens) are cut to
// this many tokens: 14881 of them with traces and logits took more than the
// deadline under the sanitizers on two busy cores. Lengths the server
// refuses are sent as they are.
constexpr int kMaxGenerated = 256;

struct Server {
  std::string data_dir;
  std::unique_ptr<SessionManager> manager;
  std::unique_ptr<FotServer> server;
  std::unique_ptr<pb::Fot::Stub> stub;
};

void CheckStatus(const grpc::Status& status, const char* method) {
  const grpc::StatusCode code = status.error_code();
  FOT_FUZZ_CHECK(
      code != grpc::StatusCode::INTERNAL && code != grpc::StatusCode::UNKNOWN &&
          code != grpc::StatusCode::DATA_LOSS && code != grpc::StatusCode::DEADLINE_EXCEEDED,
      std::string(method) + " answered " + std::to_string(code) + ": " + status.error_message());
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + kDeadline);
}

// What a call may have changed, for resetting the state after the input.
enum class Effect { kNone, kSessions, kSnapshots };

template <typename Request, typename Response>
using UnaryMethod = grpc::Status (pb::Fot::Stub::*)(grpc::ClientContext*, const Request&,
                                                    Response*);

// Calls `method` with `bytes` parsed as its request; nullopt if they do not
// parse.
template <typename Request, typename Response>
std::optional<grpc::Status> CallUnary(pb::Fot::Stub& stub, UnaryMethod<Request, Response> method,
                                      std::string_view bytes) {
  Request request;
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return std::nullopt;
  grpc::ClientContext context;
  SetDeadline(&context);
  Response response;
  return (stub.*method)(&context, request, &response);
}

Effect CallGenerate(pb::Fot::Stub& stub, std::string_view bytes) {
  pb::GenerateRequest request;
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return Effect::kNone;
  if (request.max_tokens() > kMaxGenerated && request.max_tokens() <= kMaxTokensLimit) {
    request.set_max_tokens(kMaxGenerated);
  }
  grpc::ClientContext context;
  SetDeadline(&context);
  std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> reader =
      stub.Generate(&context, request);
  pb::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  CheckStatus(reader->Finish(), "Generate");
  return request.keep_turn() ? Effect::kSessions : Effect::kNone;
}

// One Ingest stream: every message that parses, then WritesDone.
grpc::Status Ingest(pb::Fot::Stub& stub, const std::vector<std::string_view>& messages) {
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub.Ingest(&context);
  pb::IngestRequest request;
  pb::IngestResponse ack;
  for (std::string_view bytes : messages) {
    if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) continue;
    if (!stream->Write(request) || !stream->Read(&ack)) break;
  }
  stream->WritesDone();
  while (stream->Read(&ack)) {
  }
  return stream->Finish();
}

struct CallSpec {
  const char* name;
  std::function<Effect(pb::Fot::Stub&, std::string_view)> call;  // null: Ingest, a stream
};

// A unary RPC: checks its status when the request parses.
#define FOT_UNARY(Method, Request, Response, effect)                                     \
  CallSpec {                                                                             \
#Method, [](pb::Fot::Stub& stub, std::string_view bytes) {                             \
      const std::optional<grpc::Status> status =                                           \
          CallUnary<pb::Request, pb::Response>(stub, &pb::Fot::Stub::Method, bytes);       \
      if (!status.has_value()) return Effect::kNone;                                       \
      CheckStatus(*status, #Method);                                                       \
      return effect;                                                                       \
    } \
  }

// In Rpc order.
const std::vector<CallSpec>& Calls() {
  static const auto* calls = new std::vector<CallSpec>{
      FOT_UNARY(GetServerInfo, GetServerInfoRequest, ServerInfo, Effect::kNone),
      FOT_UNARY(CreateSession, CreateSessionRequest, SessionInfo, Effect::kSessions),
      FOT_UNARY(GetSession, GetSessionRequest, SessionInfo, Effect::kNone),
      FOT_UNARY(ListSessions, ListSessionsRequest, ListSessionsResponse, Effect::kNone),
      FOT_UNARY(DeleteSession, DeleteSessionRequest, DeleteSessionResponse, Effect::kSessions),
      CallSpec{"Ingest", nullptr},
      FOT_UNARY(DeleteDocument, DeleteDocumentRequest, DeleteDocumentResponse, Effect::kSessions),
      CallSpec{"Generate", CallGenerate},
      FOT_UNARY(Score, ScoreRequest, ScoreResponse, Effect::kNone),
      FOT_UNARY(MemoryStats, MemoryStatsRequest, MemoryStatsResponse, Effect::kNone),
      FOT_UNARY(ListEntries, ListEntriesRequest, ListEntriesResponse, Effect::kNone),
      FOT_UNARY(EntryContext, EntryContextRequest, EntryContextResponse, Effect::kNone),
      FOT_UNARY(SearchMemory, SearchMemoryRequest, SearchMemoryResponse, Effect::kNone),
      FOT_UNARY(SaveSession, SaveSessionRequest, SaveSessionResponse, Effect::kSnapshots),
      FOT_UNARY(LoadSession, LoadSessionRequest, SessionInfo, Effect::kSessions),
  };
  return *calls;
}
#undef FOT_UNARY

constexpr size_t kIngest = static_cast<size_t>(Rpc::kIngest);

// --- the server and its starting state -----------------------------------------

std::unique_ptr<Server> StartServer() {
  auto s = std::make_unique<Server>();
  s->data_dir = FreshDir("service_data");
  SessionManagerOptions options;
  options.data_dir = s->data_dir;
  options.defaults.memory = SmallEngine().DefaultMemoryOptions();
  absl::StatusOr<std::unique_ptr<SessionManager>> manager =
      SessionManager::Open(&SmallEngine(), &TrainedTokenizer(), options);
  FOT_FUZZ_CHECK(manager.ok(), "SessionManager::Open: " + manager.status().ToString());
  s->manager = *std::move(manager);
  s->manager->WaitUntilLoaded();
  ServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<FotServer>> server =
      FotServer::Start(s->manager.get(), server_options);
  FOT_FUZZ_CHECK(server.ok(), "FotServer::Start: " + server.status().ToString());
  s->server = *std::move(server);
  s->stub = pb::Fot::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(s->server->port()),
                                                 grpc::InsecureChannelCredentials()));
  return s;
}

// The starting state must build: these calls are the harness's, not input.
void CheckSetUp(const std::optional<grpc::Status>& status, const char* what) {
  FOT_FUZZ_CHECK(status.has_value() && status->ok(),
                 std::string(what) + " failed: " + (status ? status->error_message() : "parse"));
}

void IngestDocument(pb::Fot::Stub& stub, const std::string& session, const std::string& text) {
  pb::IngestRequest open, chunk;
  open.mutable_open()->set_session(session);
  open.mutable_open()->set_document("doc");
  open.mutable_open()->set_add_bos(true);
  chunk.mutable_chunk()->set_text(text);
  chunk.mutable_chunk()->set_end_of_document(true);
  CheckSetUp(Ingest(stub, {open.SerializeAsString(), chunk.SerializeAsString()}),
             "ingesting the base document");
}

void CreateBaseSession(pb::Fot::Stub& stub, const std::string& name, const std::string& attention) {
  pb::CreateSessionRequest request;
  request.set_name(name);
  request.mutable_options()->set_attention(attention);
  CheckSetUp(CallUnary<pb::CreateSessionRequest, pb::SessionInfo>(
                 stub, &pb::Fot::Stub::CreateSession, request.SerializeAsString()),
             "creating a base session");
  // Three windows and a pending tail: memory to search, a tail to run.
  IngestDocument(stub, name,
                 "the river sees birds and a bright window. Café crème, naïve façade: ça coûte "
                 "5 €. the quiet house sees 37 apples, a stone and the river again");
}

void ResetSessions(Server& s) {
  for (const std::shared_ptr<ManagedSession>& session : s.manager->List()) {
    s.manager->Delete(session->name()).IgnoreError();
  }
  CreateBaseSession(*s.stub, kFotSession, "fot");
  CreateBaseSession(*s.stub, kLambdaSession, "lambda");
}

// The server of every input. Never destroyed at exit: libFuzzer exits from
// its own thread of control while the server's threads run.
Server& TheServer(Effect last_effect) {
  static Server* server = nullptr;
  if (server == nullptr || last_effect == Effect::kSnapshots) {
    delete server;  // before its data directory is reused
    server = StartServer().release();
    ResetSessions(*server);
  } else if (last_effect == Effect::kSessions) {
    ResetSessions(*server);
  }
  return *server;
}

// --- one input ----------------------------------------------------------------

// Runs the calls of `parts`; returns the strongest effect among them.
Effect RunCalls(pb::Fot::Stub& stub, const std::vector<std::string_view>& parts) {
  Effect effect = Effect::kNone;
  const auto which = [&](size_t i) {
    return parts[i].empty() ? SIZE_MAX : static_cast<unsigned char>(parts[i][0]) % kRpcCount;
  };
  for (size_t i = 0; i < parts.size(); ++i) {
    if (which(i) == SIZE_MAX) continue;
    if (which(i) != kIngest) {
      effect = std::max(effect, Calls()[which(i)].call(stub, parts[i].substr(1)));
      continue;
    }
    std::vector<std::string_view> messages = {parts[i].substr(1)};
    while (i + 1 < parts.size() && which(i + 1) == kIngest)
      messages.push_back(parts[++i].substr(1));
    CheckStatus(Ingest(stub, messages), "Ingest");
    effect = std::max(effect, Effect::kSessions);
  }
  return effect;
}

void CheckAlive(pb::Fot::Stub& stub) {
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::ServerInfo info;
  const grpc::Status status = stub.GetServerInfo(&context, {}, &info);
  FOT_FUZZ_CHECK(status.ok(), "the server stopped answering: " + status.error_message());
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Requests that do not parse are expected; protobuf need not log each.
  google::protobuf::SetLogHandler(nullptr);
  FOT_FUZZ_CHECK(fot::fuzz::Calls().size() == fot::fuzz::kRpcCount, "Calls() is not in Rpc order");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot::fuzz;
  static Effect last = Effect::kNone;
  Server& server = TheServer(last);
  last = RunCalls(*server.stub, SplitParts(AsText(data, size)));
  CheckAlive(*server.stub);
  return 0;
}
