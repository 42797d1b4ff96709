// The gRPC service end to end (fixture: service_test_fixture.h): sessions,
// ingest and generation.
//
// The DESIGN.md §2 invariant through the wire: documents streamed in any
// chunking give Generate's tokens and logits equal to one Engine::Prefill over
// the concatenated tokens plus the question, then Engine::Append per token.
// Plus: resuming cut streams, concurrent sessions, cancellation, a restart on
// the same data directory, snapshots, health and reflection, and the text of
// generated tokens (always valid UTF-8, concatenating to the decoded text).
// Error codes and bad input: service_errors_test.cc; traces, scoring and
// memory inspection: service_inspection_test.cc.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "base/utf8.h"
#include "gtest/gtest.h"
#include "proto/fot.grpc.pb.h"
#include "src/server/session_manager.h"
#include "tests/src/server/service_test_fixture.h"

namespace fot::service_test {
namespace {

TEST_F(ServiceTest, AnyChunkingGivesTheOneShotAnswer) {
  auto s = Start(DataDir("chunkings"), SessionManagerOptions{});
  const Answer expected = Reference(AllDocumentTokens());
  for (size_t chunk : {0, 1, 3, 7, 40}) {
    const std::string name = "chunk" + std::to_string(chunk);
    ASSERT_TRUE(CreateSession(s->stub.get(), name).ok());
    IngestAll(s->stub.get(), name, chunk);
    auto session = s->manager->Get(name);
    ASSERT_TRUE(session.ok());
    EXPECT_EQ((*session)->session().StreamTokens(0, 100000), AllDocumentTokens()) << name;
    const Answer answer = Generate(s->stub.get(), Question(name));
    ExpectSameAnswer(answer, expected, name);
    ASSERT_FALSE(answer.messages.empty());
    EXPECT_TRUE(answer.messages.back().done());
    EXPECT_EQ(answer.messages.back().finish_reason(), "length");
    EXPECT_EQ(answer.text, tokenizer_->Decode(answer.tokens)) << name;
  }
  // Token-id documents give the same answer too.
  ASSERT_TRUE(CreateSession(s->stub.get(), "ids").ok());
  {
    grpc::ClientContext context;
    auto stream = s->stub->Ingest(&context);
    pb::IngestRequest request;
    request.mutable_open()->set_session("ids");
    request.mutable_open()->set_document("all");
    ASSERT_TRUE(stream->Write(request));
    const std::vector<int> all = AllDocumentTokens();
    for (size_t i = 0; i < all.size(); i += 10) {
      request.Clear();
      for (size_t j = i; j < std::min(all.size(), i + 10); ++j) {
        request.mutable_chunk()->add_token_ids(all[j]);
      }
      request.mutable_chunk()->set_end_of_document(i + 10 >= all.size());
      ASSERT_TRUE(stream->Write(request));
    }
    stream->WritesDone();
    pb::IngestResponse ack;
    while (stream->Read(&ack)) {
    }
    ASSERT_TRUE(stream->Finish().ok());
    EXPECT_TRUE(ack.complete());
    EXPECT_EQ(ack.resume_offset(), static_cast<int64_t>(all.size()));
  }
  ExpectSameAnswer(Generate(s->stub.get(), Question("ids")), expected, "token ids");
}

TEST_F(ServiceTest, ResumeAfterACutStreamLosesAndDuplicatesNothing) {
  auto s = Start(DataDir("resume"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "r").ok());
  const std::string& text = Documents()[0];
  const std::vector<std::string> pieces = Split(text, 9);
  pb::IngestResponse ack;
  ASSERT_TRUE(Ingest(s->stub.get(), "r", "doc0", pieces, true, &ack, false, 0, 5).ok());
  const int64_t acknowledged = ack.resume_offset();
  ASSERT_GT(acknowledged, 0);
  ASSERT_LE(acknowledged, 45);
  // Resume from the acknowledged offset...
  ASSERT_TRUE(Ingest(s->stub.get(), "r", "doc0", Split(text.substr(acknowledged), 9), false, &ack,
                     true, acknowledged, 3)
                  .ok());
  // ... and again from the very start, resending what the server holds.
  grpc::Status status = Ingest(s->stub.get(), "r", "doc0", Split(text, 13), false, &ack, true, 0);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(ack.complete());
  EXPECT_EQ(ack.resume_offset(), static_cast<int64_t>(text.size()));
  // A complete document cannot grow, but ending it again is harmless.
  status = Ingest(s->stub.get(), "r", "doc0", {"more"}, false, nullptr, true, ack.resume_offset());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  for (size_t d = 1; d < Documents().size(); ++d) {
    ASSERT_TRUE(
        Ingest(s->stub.get(), "r", "doc" + std::to_string(d), {Documents()[d]}, false).ok());
  }
  EXPECT_EQ((*s->manager->Get("r"))->session().StreamTokens(0, 100000), AllDocumentTokens());
  ExpectSameAnswer(Generate(s->stub.get(), Question("r")), Reference(AllDocumentTokens()),
                   "resumed");
}

TEST_F(ServiceTest, RestartKeepsAcknowledgedData) {
  const std::string data = DataDir("restart");
  const std::string& text = Documents()[1];
  int64_t acknowledged = 0;
  Answer before;
  {
    auto s = Start(data);
    ASSERT_TRUE(CreateSession(s->stub.get(), "keep").ok());
    ASSERT_TRUE(Ingest(s->stub.get(), "keep", "doc0", {Documents()[0]}, true).ok());
    pb::IngestResponse ack;
    ASSERT_TRUE(
        Ingest(s->stub.get(), "keep", "doc1", Split(text, 11), false, &ack, false, 0, 4).ok());
    acknowledged = ack.resume_offset();
    ASSERT_GT(acknowledged, 0);
    before = Generate(s->stub.get(), Question("keep"));
    ASSERT_TRUE(before.status.ok());
    s->server->Shutdown(absl::Seconds(1));
  }
  auto s = Start(data);
  grpc::ClientContext context;
  pb::GetSessionRequest get;
  get.set_session("keep");
  pb::SessionInfo info;
  ASSERT_TRUE(s->stub->GetSession(&context, get, &info).ok());
  ASSERT_EQ(info.documents_size(), 2);
  EXPECT_TRUE(info.documents(0).complete());
  EXPECT_FALSE(info.documents(1).complete());
  EXPECT_EQ(info.documents(1).resume_offset(), acknowledged);
  // The restarted server answers exactly as before...
  const Answer after = Generate(s->stub.get(), Question("keep"));
  EXPECT_EQ(after.tokens, before.tokens);
  EXPECT_EQ(after.logits, before.logits);
  // ... and the cut document resumes where it was acknowledged.
  ASSERT_TRUE(Ingest(s->stub.get(), "keep", "doc1", Split(text.substr(acknowledged), 5), false,
                     nullptr, true, acknowledged)
                  .ok());
  ASSERT_TRUE(Ingest(s->stub.get(), "keep", "doc2", {Documents()[2]}, false).ok());
  ExpectSameAnswer(Generate(s->stub.get(), Question("keep")), Reference(AllDocumentTokens()),
                   "after restart");
}

TEST_F(ServiceTest, ConcurrentSessionsAndQueries) {
  auto s = Start(DataDir("concurrent"), SessionManagerOptions{});
  const Answer expected = Reference(AllDocumentTokens());
  std::vector<std::thread> threads;
  std::vector<Answer> answers(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string name = "c" + std::to_string(t);
      ASSERT_TRUE(CreateSession(s->stub.get(), name).ok());
      IngestAll(s->stub.get(), name, 2 + 5 * t);
      answers[t] = Generate(s->stub.get(), Question(name));
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) ExpectSameAnswer(answers[t], expected, "thread " + std::to_string(t));
  // Several queries on one session at once.
  threads.clear();
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { answers[t] = Generate(s->stub.get(), Question("c0")); });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) ExpectSameAnswer(answers[t], expected, "shared " + std::to_string(t));
}

TEST_F(ServiceTest, CancellationStopsGenerationPromptly) {
  SessionManagerOptions options;
  options.writer_wait = absl::Seconds(5);
  auto s = Start(DataDir("cancel"), options);
  ASSERT_TRUE(CreateSession(s->stub.get(), "x").ok());
  ASSERT_TRUE(Ingest(s->stub.get(), "x", "doc0", {Documents()[0]}, true).ok());
  pb::GenerateRequest request = Question("x", 60000);
  request.set_keep_turn(true);  // holds the session's writer lock until generation ends
  {
    grpc::ClientContext context;
    auto reader = s->stub->Generate(&context, request);
    pb::GenerateResponse message;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&message));
    context.TryCancel();
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // An ingest into the same session gets the writer lock: generation ended.
  ASSERT_TRUE(Ingest(s->stub.get(), "x", "doc1", {"after the cancel"}, false).ok());
  auto documents = (*s->manager->Get("x"))->session().Documents();
  ASSERT_EQ(documents.size(), 3u);       // doc0, the kept (cut) turn, doc1
  EXPECT_LT(documents[1].tokens, 2000);  // of 60000 asked for
}

TEST_F(ServiceTest, SnapshotsSaveAndLoad) {
  auto s = Start(DataDir("snapshots"));
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "orig").ok());
  IngestAll(stub, "orig", 17);
  grpc::ClientContext c1;
  pb::SaveSessionRequest save;
  save.set_session("orig");
  save.set_snapshot("snap");
  pb::SaveSessionResponse saved;
  ASSERT_TRUE(stub->SaveSession(&c1, save, &saved).ok());
  EXPECT_GT(saved.bytes(), 0);
  grpc::ClientContext c2;
  EXPECT_EQ(stub->SaveSession(&c2, save, &saved).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  grpc::ClientContext c3;
  pb::LoadSessionRequest load;
  load.set_snapshot("snap");
  load.set_session("copy");
  pb::SessionInfo info;
  ASSERT_TRUE(stub->LoadSession(&c3, load, &info).ok());
  EXPECT_EQ(info.documents_size(), 3);
  grpc::ClientContext c4;
  pb::ListSessionsResponse list;
  ASSERT_TRUE(stub->ListSessions(&c4, {}, &list).ok());
  ASSERT_EQ(list.sessions_size(), 2);
  ASSERT_EQ(list.snapshots_size(), 1);
  EXPECT_EQ(list.snapshots(0), "snap");
  const Answer a = Generate(stub, Question("orig"));
  const Answer b = Generate(stub, Question("copy"));
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.logits, b.logits);
  grpc::ClientContext c5;
  load.set_snapshot("missing");
  EXPECT_EQ(stub->LoadSession(&c5, load, &info).error_code(), grpc::StatusCode::NOT_FOUND);
}

// --- health checking and reflection, through generic calls -------------------

void Await(grpc::CompletionQueue* queue, void* tag) {
  void* got = nullptr;
  bool ok = false;
  ASSERT_TRUE(queue->Next(&got, &ok));
  ASSERT_EQ(got, tag);
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

TEST_F(ServiceTest, HealthCheckingAndReflection) {
  auto s = Start(DataDir("health"));
  grpc::GenericStub generic(s->channel);
  grpc::CompletionQueue queue;
  {
    grpc::ClientContext context;
    const grpc::Slice empty(std::string(""));
    grpc::ByteBuffer request(&empty, 1), response;
    auto call = generic.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &queue);
    call->StartCall();
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    Await(&queue, reinterpret_cast<void*>(1));
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(Bytes(response), std::string("\x08\x01", 2));  // status: SERVING
  }
  {
    grpc::ClientContext context;
    auto call = generic.PrepareCall(
        &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &queue);
    call->StartCall(reinterpret_cast<void*>(2));
    Await(&queue, reinterpret_cast<void*>(2));
    const grpc::Slice list(std::string("\x3a\x01*", 3));  // list_services: "*"
    grpc::ByteBuffer request(&list, 1), response;
    call->Write(request, reinterpret_cast<void*>(3));
    Await(&queue, reinterpret_cast<void*>(3));
    call->Read(&response, reinterpret_cast<void*>(4));
    Await(&queue, reinterpret_cast<void*>(4));
    EXPECT_NE(Bytes(response).find("fot.v1.Fot"), std::string::npos);
    call->WritesDone(reinterpret_cast<void*>(5));
    Await(&queue, reinterpret_cast<void*>(5));
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(6));
    Await(&queue, reinterpret_cast<void*>(6));
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  queue.Shutdown();
}

// A random model samples byte-fallback tokens often (most of this
// vocabulary), so answers hold characters spread over several tokens and
// bytes that form no character at all.
TEST_F(ServiceTest, GeneratedTextIsValidUtf8AndConcatenatesToTheAnswer) {
  auto s = Start(DataDir("gen_text"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "g").ok());
  ASSERT_TRUE(Ingest(s->stub.get(), "g", "doc0", {Documents()[1]}, true).ok());
  int byte_tokens = 0, held_back = 0;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    pb::GenerateRequest request = Question("g", 40);
    request.set_return_logits(false);
    request.set_temperature(1.5f);
    request.set_seed(seed);
    const Answer answer = Generate(s->stub.get(), request);
    ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
    for (const pb::GenerateResponse& m : answer.messages) {
      EXPECT_TRUE(ValidateUtf8(m.text(), false).ok()) << "seed " << seed;
      if (m.done()) {
        EXPECT_EQ(m.piece(), "");
        continue;
      }
      EXPECT_EQ(m.piece(), tokenizer_->PieceText(m.token_id()));
      if (m.piece().rfind("<0x", 0) == 0) ++byte_tokens;
      if (m.text().empty()) ++held_back;
    }
    EXPECT_EQ(answer.text, tokenizer_->Decode(answer.tokens)) << "seed " << seed;
  }
  EXPECT_GT(byte_tokens, 0);
  EXPECT_GT(held_back, 0);
}

}  // namespace
}  // namespace fot::service_test
