// Lambda attention as a per-session option of the gRPC service, end to end,
// on the shared service fixture (service_test_fixture.h).
//
// A lambda session's Generate equals one Engine::Prefill with the same
// attention over the concatenated tokens plus the question (then
// Engine::Append per token), bit for bit and for any chunking; snapshots and
// restarts keep the sinks and ring, so the answers stay identical; the
// options come back resolved; bad ones are INVALID_ARGUMENT naming the field.
#include <grpcpp/grpcpp.h>

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/fot.grpc.pb.h"
#include "src/server/service.h"
#include "src/server/session_manager.h"
#include "tests/src/server/service_test_fixture.h"

namespace fot::service_test {
namespace {

constexpr int kNGlobal = 2;
constexpr int kLocalWindow = 6;  // not W = 16: blocks and windows differ

class ServiceLambdaTest : public ServiceTest {
 protected:
  static std::unique_ptr<Server> Start(const std::string& data_dir) {
    return ServiceTest::Start(data_dir, SessionManagerOptions{});
  }

  static std::string DataDir(const std::string& name) {
    return ServiceTest::DataDir("lambda_" + name);
  }

  static pb::SessionOptions LambdaOptions() {
    pb::SessionOptions options;
    options.set_attention("lambda");
    options.set_n_global(kNGlobal);
    options.set_local_window(kLocalWindow);
    return options;
  }

  static pb::SessionInfo GetSession(pb::Fot::Stub* stub, const std::string& name) {
    grpc::ClientContext context;
    pb::GetSessionRequest request;
    request.set_session(name);
    pb::SessionInfo info;
    EXPECT_TRUE(stub->GetSession(&context, request, &info).ok());
    return info;
  }

  static Answer Generate(pb::Fot::Stub* stub, const std::string& session, bool trace = false) {
    pb::GenerateRequest request = Question(session, /*max_tokens=*/10);
    request.set_trace(trace);
    return ServiceTest::Generate(stub, request);
  }

  // The one-shot reference, as fot-run --attention lambda --n-global 2
  // --local-window 6 --use-cache runs it: one Prefill, then greedy Appends.
  static Answer Reference(const AttentionOptions& attention) {
    return ServiceTest::Reference(AllDocumentTokens(), /*max_tokens=*/10, attention);
  }

  static AttentionOptions Lambda() {
    AttentionOptions attention;
    attention.mode = AttentionMode::kLambda;
    attention.n_global = kNGlobal;
    attention.local_window = kLocalWindow;
    return attention;
  }

  static void ExpectIdentical(const Answer& actual, const Answer& expected,
                              const std::string& what) {
    ASSERT_TRUE(actual.status.ok()) << what << ": " << actual.status.error_message();
    EXPECT_EQ(actual.tokens, expected.tokens) << what;
    EXPECT_EQ(actual.logits, expected.logits) << what;  // bit for bit
  }
};

TEST_F(ServiceLambdaTest, GenerateEqualsTheOneShotLambdaRunForAnyChunking) {
  auto s = Start(DataDir("chunkings"));
  const Answer expected = Reference(Lambda());
  for (size_t chunk : {0, 1, 5, 17}) {
    const std::string name = "chunk" + std::to_string(chunk);
    ASSERT_TRUE(CreateSession(s->stub.get(), name, LambdaOptions()).ok());
    std::vector<pb::IngestResponse> acks;
    IngestAll(s->stub.get(), name, chunk, SIZE_MAX, &acks);
    EXPECT_EQ((*s->manager->Get(name))->session().StreamTokens(0, 100000), AllDocumentTokens());
    // Blocks of L, aligned from the stream's first token, are committed once
    // a token follows them; acknowledgements may report fewer (the committer
    // works behind them), and the stream's end leaves a tail of 1 to L.
    for (const pb::IngestResponse& ack : acks) {
      EXPECT_EQ(ack.committed_tokens() % kLocalWindow, 0) << name;
      EXPECT_LE(ack.committed_tokens(), ack.stream_tokens()) << name;
    }
    const IngestProgress done = (*s->manager->Get(name))->session().Progress();
    EXPECT_GE(done.stream_tokens - done.committed_tokens, 1) << name;
    EXPECT_LE(done.stream_tokens - done.committed_tokens, kLocalWindow) << name;
    EXPECT_GT(done.committed_tokens, 0);
    ExpectIdentical(Generate(s->stub.get(), name), expected, name);
  }
  // A fot session of the same text answers otherwise: lambda is in effect.
  ASSERT_TRUE(CreateSession(s->stub.get(), "fot", {}).ok());
  IngestAll(s->stub.get(), "fot", 0);
  EXPECT_NE(Generate(s->stub.get(), "fot").logits, expected.logits);
}

TEST_F(ServiceLambdaTest, SessionInfoEchoesTheResolvedOptions) {
  auto s = Start(DataDir("echo"));
  pb::SessionInfo info;
  ASSERT_TRUE(CreateSession(s->stub.get(), "given", LambdaOptions(), &info).ok());
  EXPECT_EQ(info.options().attention(), "lambda");
  EXPECT_EQ(info.options().n_global(), kNGlobal);
  EXPECT_EQ(info.options().local_window(), kLocalWindow);
  EXPECT_EQ(info.options().memory_positioning(), "as_first");  // a longllama checkpoint
  EXPECT_EQ(info.options().memory_layers(), "1,2");            // its mem_layers

  pb::SessionOptions defaults;
  defaults.set_attention("lambda");
  ASSERT_TRUE(CreateSession(s->stub.get(), "defaults", defaults, &info).ok());
  ASSERT_TRUE(info.options().has_n_global());
  EXPECT_EQ(info.options().n_global(), 4);
  EXPECT_EQ(info.options().local_window(), 16);  // max_position_embeddings

  pb::SessionOptions explicit_zero = defaults;  // 0 sinks is a choice, not "unset"
  explicit_zero.set_n_global(0);
  explicit_zero.set_memory_positioning("none");
  explicit_zero.set_memory_layers("none");
  ASSERT_TRUE(CreateSession(s->stub.get(), "zero", explicit_zero, &info).ok());
  ASSERT_TRUE(info.options().has_n_global());
  EXPECT_EQ(info.options().n_global(), 0);
  EXPECT_EQ(info.options().memory_positioning(), "none");
  EXPECT_EQ(info.options().memory_layers(), "none");
  EXPECT_EQ(GetSession(s->stub.get(), "zero").options().n_global(), 0);

  ASSERT_TRUE(CreateSession(s->stub.get(), "plain", {}, &info).ok());
  EXPECT_EQ(info.options().attention(), "fot");
  EXPECT_FALSE(info.options().has_n_global());
  EXPECT_EQ(info.options().local_window(), 0);
  EXPECT_EQ(info.options().memory_positioning(), "");
}

TEST_F(ServiceLambdaTest, SnapshotLoadAndRestartGiveIdenticalGeneration) {
  const std::string data = DataDir("persist");
  Answer before;
  {
    auto s = Start(data);
    ASSERT_TRUE(CreateSession(s->stub.get(), "orig", LambdaOptions()).ok());
    IngestAll(s->stub.get(), "orig", 13, /*documents=*/2);
    before = Generate(s->stub.get(), "orig");
    ASSERT_TRUE(before.status.ok()) << before.status.error_message();
    grpc::ClientContext save_context;
    pb::SaveSessionRequest save;
    save.set_session("orig");
    save.set_snapshot("snap");
    pb::SaveSessionResponse saved;
    ASSERT_TRUE(s->stub->SaveSession(&save_context, save, &saved).ok());
    grpc::ClientContext load_context;
    pb::LoadSessionRequest load;
    load.set_snapshot("snap");
    load.set_session("copy");
    pb::SessionInfo info;
    ASSERT_TRUE(s->stub->LoadSession(&load_context, load, &info).ok());
    EXPECT_EQ(info.options().attention(), "lambda");
    EXPECT_EQ(info.options().local_window(), kLocalWindow);
    ExpectIdentical(Generate(s->stub.get(), "copy"), before, "loaded snapshot");
    s->server->Shutdown(absl::Seconds(1));
  }
  auto s = Start(data);  // a restart on the same data directory
  for (const std::string name : {"orig", "copy"}) {
    const pb::SessionInfo info = GetSession(s->stub.get(), name);
    EXPECT_EQ(info.options().attention(), "lambda") << name;
    EXPECT_EQ(info.options().n_global(), kNGlobal) << name;
    ExpectIdentical(Generate(s->stub.get(), name), before, name + " after restart");
  }
  // The restored sessions continue their streams as if never saved.
  ASSERT_TRUE(Ingest(s->stub.get(), "orig", "doc2", Split(Documents()[2], 7), false).ok());
  ExpectIdentical(Generate(s->stub.get(), "orig"), Reference(Lambda()), "continued");
}

TEST_F(ServiceLambdaTest, TracesAndMemoryListingAgreeOnWhereEntriesCameFrom) {
  auto s = Start(DataDir("trace"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "t", LambdaOptions()).ok());
  IngestAll(s->stub.get(), "t", 0);
  // Memory ids skip the sink tokens: the listing (from memory's provenance)
  // and the trace (from the session's stream) must still name the same text.
  std::map<int64_t, pb::MemoryEntry> listed;
  {
    grpc::ClientContext context;
    pb::ListEntriesRequest request;
    request.set_session("t");
    request.set_page_size(1000);
    pb::ListEntriesResponse page;
    ASSERT_TRUE(s->stub->ListEntries(&context, request, &page).ok());
    ASSERT_GT(page.entries_size(), 0);
    for (const pb::MemoryEntry& e : page.entries()) listed[e.id()] = e;
  }
  const Answer answer = Generate(s->stub.get(), "t", /*trace=*/true);
  ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
  int checked = 0;
  for (const pb::GenerateResponse& m : answer.messages) {
    if (m.done()) continue;
    ASSERT_EQ(m.trace_size(), 2);  // memory layers 1 and 2
    for (const pb::LayerRetrieval& layer : m.trace()) {
      for (const pb::HeadRetrieval& head : layer.heads()) {
        for (const pb::RetrievedEntry& r : head.entries()) {
          auto it = listed.find(r.entry().id());
          if (it == listed.end()) continue;  // the query's own entries
          EXPECT_EQ(r.entry().document(), it->second.document());
          EXPECT_EQ(r.entry().position(), it->second.position());
          EXPECT_EQ(r.entry().token_id(), it->second.token_id());
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 0);
}

TEST_F(ServiceLambdaTest, BadOptionsAreInvalidArgumentNamingTheField) {
  auto s = Start(DataDir("errors"));
  struct Case {
    std::string what;
    pb::SessionOptions options;
    std::string field;  // the message names it
  };
  std::vector<Case> cases;
  auto lambda = [](auto set) {
    pb::SessionOptions o;
    o.set_attention("lambda");
    set(o);
    return o;
  };
  auto fot = [](auto set) {
    pb::SessionOptions o;
    set(o);
    return o;
  };
  cases.push_back({"negative n_global", lambda([](auto& o) { o.set_n_global(-1); }), "n_global"});
  cases.push_back(
      {"local window over W", lambda([](auto& o) { o.set_local_window(17); }), "local_window"});
  cases.push_back(
      {"negative local window", lambda([](auto& o) { o.set_local_window(-2); }), "local_window"});
  cases.push_back({"unknown positioning",
                   lambda([](auto& o) { o.set_memory_positioning("sideways"); }),
                   "memory_positioning"});
  cases.push_back(
      {"layer out of range", lambda([](auto& o) { o.set_memory_layers("1,7"); }), "memory_layers"});
  cases.push_back(
      {"layer list garbage", lambda([](auto& o) { o.set_memory_layers("x"); }), "memory_layers"});
  cases.push_back(
      {"unknown attention", fot([](auto& o) { o.set_attention("mamba"); }), "attention"});
  cases.push_back({"n_global for fot", fot([](auto& o) { o.set_n_global(4); }), "n_global"});
  cases.push_back({"n_global for explicit fot", fot([](auto& o) {
                     o.set_attention("fot");
                     o.set_n_global(0);
                   }),
                   "n_global"});
  cases.push_back(
      {"local window for fot", fot([](auto& o) { o.set_local_window(8); }), "local_window"});
  cases.push_back(
      {"memory layers for fot", fot([](auto& o) { o.set_memory_layers("1"); }), "memory_layers"});
  cases.push_back({"last_context_length for lambda",
                   lambda([](auto& o) { o.set_last_context_length(4); }), "last_context_length"});
  for (const Case& c : cases) {
    const grpc::Status status = CreateSession(s->stub.get(), "bad", c.options);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_NE(status.error_message().find(c.field), std::string::npos)
        << c.what << ": " << status.error_message();
  }
  // Nothing was created, and the server still serves.
  EXPECT_EQ(s->manager->size(), 0);
  EXPECT_TRUE(CreateSession(s->stub.get(), "good", LambdaOptions()).ok());
}

}  // namespace
}  // namespace fot::service_test
