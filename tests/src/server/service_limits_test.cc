// The gRPC service end to end (fixture: service_test_fixture.h): limits and
// server-side timeouts. No request makes the server allocate without bound,
// a full session or server refuses more and serves on, and no client can
// hold a session by stalling (an unread reply, an idle stream, a query past
// its deadline).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/fot.grpc.pb.h"
#include "src/server/limits.h"
#include "src/server/session_manager.h"
#include "tests/src/server/service_test_fixture.h"

namespace fot::service_test {
namespace {

using grpc::StatusCode;

bool Names(const grpc::Status& status, const std::string& limit) {
  return status.error_message().find(limit) != std::string::npos;
}

pb::SessionInfo GetSession(pb::Fot::Stub* stub, const std::string& name) {
  grpc::ClientContext context;
  pb::GetSessionRequest request;
  request.set_session(name);
  pb::SessionInfo info;
  EXPECT_TRUE(stub->GetSession(&context, request, &info).ok());
  return info;
}

TEST_F(ServiceTest, CostlyParametersAreRefusedByNameBeforeAnyWork) {
  SessionManagerOptions options;
  options.limits.max_query_tokens = 64;
  auto s = Start(DataDir("limits_params"), options);
  pb::Fot::Stub* stub = s->stub.get();
  for (const char* retrieval : {"knn:20000000", "knn:2147483647", "knn:1025"}) {
    pb::SessionOptions knn;
    knn.set_retrieval(retrieval);
    const grpc::Status status = CreateSession(stub, "s", knn);
    EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT) << retrieval;
    EXPECT_TRUE(Names(status, "--max_top_k")) << status.error_message();
  }
  for (int n_global : {250000, 2147483647}) {
    pb::SessionOptions lambda;
    lambda.set_attention("lambda");
    lambda.set_n_global(n_global);
    const grpc::Status status = CreateSession(stub, "s", lambda);
    EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Names(status, "--max_n_global")) << status.error_message();
  }
  EXPECT_EQ(s->manager->size(), 0);

  ASSERT_TRUE(CreateSession(stub, "s").ok());
  ASSERT_TRUE(Ingest(stub, "s", "doc0", {Documents()[0]}, true).ok());
  pb::GenerateRequest question = Question("s");
  question.set_retrieval("knn:300000");
  Answer answer = Generate(stub, question);
  EXPECT_EQ(answer.status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Names(answer.status, "--max_top_k")) << answer.status.error_message();
  EXPECT_TRUE(answer.tokens.empty());

  question = Question("s");
  question.set_question(std::string(2000, 'a') + " b c d e f g h i j k l m n o p");
  std::vector<int> long_ids(65, 5);
  question.clear_question();
  question.mutable_question_token_ids()->Add(long_ids.begin(), long_ids.end());
  answer = Generate(stub, question);
  EXPECT_EQ(answer.status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Names(answer.status, "--max_query_tokens")) << answer.status.error_message();
  {
    grpc::ClientContext context;
    pb::ScoreRequest score;
    score.set_session("s");
    score.mutable_context_token_ids()->Add(long_ids.begin(), long_ids.end() - 10);
    score.mutable_continuation_token_ids()->Add(long_ids.begin(), long_ids.begin() + 10);
    pb::ScoreResponse scored;
    const grpc::Status status = stub->Score(&context, score, &scored);
    EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Names(status, "--max_query_tokens")) << status.error_message();
  }
  {
    grpc::ClientContext context;
    pb::SearchMemoryRequest search;
    search.set_session("s");
    search.mutable_token_ids()->Add(long_ids.begin(), long_ids.end());
    pb::SearchMemoryResponse found;
    const grpc::Status status = stub->SearchMemory(&context, search, &found);
    EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Names(status, "--max_query_tokens")) << status.error_message();
  }
  EXPECT_TRUE(Generate(stub, Question("s")).status.ok());
}

TEST_F(ServiceTest, ServerInfoNamesTheModelWithoutItsServerPath) {
  auto s = Start(DataDir("limits_info"));
  grpc::ClientContext context;
  pb::ServerInfo info;
  ASSERT_TRUE(s->stub->GetServerInfo(&context, pb::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.model_dir(), "service_model");
}

TEST_F(ServiceTest, AFullSessionRefusesMoreAndServesOn) {
  SessionManagerOptions options;
  const int64_t doc0 = static_cast<int64_t>(AllDocumentTokens(1).size());
  options.limits.max_session_tokens = doc0 + 10;
  options.limits.max_documents = 3;
  auto s = Start(DataDir("limits_session"), options);
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "s").ok());
  ASSERT_TRUE(Ingest(stub, "s", "doc0", {Documents()[0]}, true).ok());
  const grpc::Status full = Ingest(stub, "s", "doc1", Split(Documents()[1], 8), false);
  EXPECT_EQ(full.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Names(full, "--max_session_tokens")) << full.error_message();

  // Nothing past the limit was appended, the refused stream's acknowledged
  // part is whole, and the session answers, commits and ingests what fits.
  const Answer before = Generate(stub, Question("s"));
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();
  pb::SessionInfo info = GetSession(stub, "s");
  EXPECT_LE(info.stream_tokens(), doc0 + 10);
  ASSERT_TRUE(Ingest(stub, "s", "short", {"a b"}, false).ok());
  info = GetSession(stub, "s");
  EXPECT_LE(info.stream_tokens(), doc0 + 10);
  EXPECT_GT(info.committed_tokens(), 0);
  const grpc::Status documents = Ingest(stub, "s", "fourth", {"c"}, false);
  EXPECT_EQ(documents.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Names(documents, "--max_documents")) << documents.error_message();
  EXPECT_TRUE(Generate(stub, Question("s")).status.ok());
}

TEST_F(ServiceTest, TheServerMemoryBudgetCoversEverySession) {
  SessionManagerOptions options;
  SessionOptions session_options;
  session_options.memory = engine_->DefaultMemoryOptions();
  const int64_t per_token =
      MemoryBytesPerToken(**Session::Create(engine_, session_options), engine_->config());
  // Room for the first document and half of the second, over all sessions.
  const int64_t doc0 = static_cast<int64_t>(AllDocumentTokens(1).size());
  const int64_t doc1 = static_cast<int64_t>(tokenizer_->Encode(Documents()[1]).size());
  options.limits.max_memory_bytes = (doc0 + doc1 / 2) * per_token;
  auto s = Start(DataDir("limits_memory"), options);
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "a").ok());
  ASSERT_TRUE(CreateSession(stub, "b").ok());
  ASSERT_TRUE(Ingest(stub, "a", "doc0", {Documents()[0]}, true).ok());
  const grpc::Status full = Ingest(stub, "b", "doc1", {Documents()[1]}, false);
  EXPECT_EQ(full.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Names(full, "--max_memory_bytes")) << full.error_message();
  {
    grpc::ClientContext context;
    pb::DeleteSessionRequest request;
    request.set_session("a");
    pb::DeleteSessionResponse response;
    ASSERT_TRUE(stub->DeleteSession(&context, request, &response).ok());
  }
  EXPECT_TRUE(Ingest(stub, "b", "doc1", {Documents()[1]}, false).ok());
}

TEST_F(ServiceTest, AClientThatStopsReadingIsCancelledAndReleasesItsSession) {
  SessionManagerOptions options;
  options.limits.write_timeout = absl::Milliseconds(500);
  auto s = Start(DataDir("limits_stall"), options);
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "s").ok());
  ASSERT_TRUE(Ingest(stub, "s", "doc0", {Documents()[0]}, true).ok());

  // A long answer with logits in every message fills the transport's window
  // at once; this client reads none of it (and, like a slow reader, does not
  // let gRPC grow its receive window).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(s->server->port()),
                                           grpc::InsecureChannelCredentials(), args);
  auto stalled_stub = pb::Fot::NewStub(channel);
  grpc::ClientContext stalled;
  auto reader = stalled_stub->Generate(&stalled, Question("s", 60000));

  // Committing this document needs the session's memory, which the stalled
  // query holds until the server cancels it.
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = stub->Ingest(&context);
  pb::IngestRequest request;
  request.mutable_open()->set_session("s");
  request.mutable_open()->set_document("doc1");
  pb::IngestResponse ack;
  ASSERT_TRUE(stream->Write(request) && stream->Read(&ack));
  request.Clear();
  request.mutable_chunk()->set_text(Documents()[1]);
  request.mutable_chunk()->set_end_of_document(true);
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  while (stream->Read(&ack)) {
  }
  const grpc::Status ingested = stream->Finish();
  ASSERT_TRUE(ingested.ok()) << ingested.error_message();
  // The stream ends once its committer has committed what it acknowledged.
  EXPECT_GT(GetSession(stub, "s").committed_tokens(),
            static_cast<int64_t>(AllDocumentTokens(2).size()) - 2 * kLast - 16);

  pb::GenerateResponse message;
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), StatusCode::CANCELLED);
}

TEST_F(ServiceTest, AnIdleIngestStreamEndsAndReleasesTheWriter) {
  SessionManagerOptions options;
  options.limits.idle_timeout = absl::Milliseconds(300);
  options.writer_wait = absl::Seconds(30);
  auto s = Start(DataDir("limits_idle"), options);
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "s").ok());

  grpc::ClientContext idle_context;
  auto idle = stub->Ingest(&idle_context);
  pb::IngestRequest request;
  request.mutable_open()->set_session("s");
  request.mutable_open()->set_document("idle");
  pb::IngestResponse ack;
  ASSERT_TRUE(idle->Write(request) && idle->Read(&ack));
  request.Clear();
  request.mutable_chunk()->set_text("one two three ");
  ASSERT_TRUE(idle->Write(request) && idle->Read(&ack));
  // ...and then nothing. Another writer of the session gets it once the
  // server ends the idle stream, well before writer_wait.
  ASSERT_TRUE(Ingest(stub, "s", "next", {"after the idle one"}, false).ok());
  while (idle->Read(&ack)) {
  }
  EXPECT_EQ(idle->Finish().error_code(), StatusCode::CANCELLED);
  // What the idle stream had acknowledged is kept and resumable.
  const pb::SessionInfo info = GetSession(stub, "s");
  ASSERT_EQ(info.documents_size(), 2);
  EXPECT_EQ(info.documents(0).name(), "idle");
  EXPECT_GT(info.documents(0).tokens(), 0);
}

TEST_F(ServiceTest, AQueryPastItsDeadlineStopsAndTheSessionServesOn) {
  SessionManagerOptions options;
  options.limits.max_query_tokens = 1 << 20;
  auto s = Start(DataDir("limits_deadline"), options, 16 << 20);
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "s").ok());
  ASSERT_TRUE(Ingest(stub, "s", "doc0", {Documents()[0]}, true).ok());
  pb::GenerateRequest request = Question("s");
  std::vector<int> ids(400000, 7);  // many thousand windows of prefill
  request.clear_question();
  request.mutable_question_token_ids()->Add(ids.begin(), ids.end());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto reader = stub->Generate(&context, request);
  pb::GenerateResponse message;
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), StatusCode::DEADLINE_EXCEEDED);
  // The prefill stopped: an ingest commits (it needs the session's memory,
  // which a running query holds) and the next query answers.
  ASSERT_TRUE(Ingest(stub, "s", "doc1", {Documents()[1]}, false).ok());
  EXPECT_TRUE(Generate(stub, Question("s")).status.ok());
}

}  // namespace
}  // namespace fot::service_test
