// The gRPC service end to end: a real FotServer on a loopback port (port 0),
// a small random model and a trained tokenizer, the generated client stub.
//
// The DESIGN.md §2 invariant through the wire: documents streamed in any
// chunking give Generate's tokens and logits equal to one Engine::Prefill over
// the concatenated tokens plus the question, then Engine::Append per token.
// Plus: resuming cut streams, concurrent sessions, every error status, a
// restart on the same data directory, traces, inspection, health and
// reflection; invalid UTF-8 in every text field of every request (raw wire
// bytes), paging of memory entries, and the text of generated, scored and
// inspected tokens (always valid UTF-8, concatenating to the decoded text).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "proto/fot.grpc.pb.h"
#include "src/kernels.h"
#include "src/random_checkpoint.h"
#include "src/service.h"
#include "src/session_manager.h"

namespace fot {
namespace {

namespace pb = ::fot::v1;
constexpr int kVocab = 400;
constexpr int kLast = 8;  // the model's last_context_length

std::string Corpus() {
  const std::vector<std::string> words = {"the", "river", "stone", "house", "quiet", "bright",
                                          "window", "apple", "sees", "birds", "and", "a"};
  std::string corpus;
  for (int i = 0; i < 500; ++i) {
    for (int w = 0; w < 9; ++w) corpus += words[(i * 7 + w * 5) % words.size()] + " ";
    corpus += std::to_string(i * 37 % 1000) + ".\n";
    if (i % 10 == 0) corpus += "Café crème, naïve façade: ça coûte 5 €.\n";
  }
  return corpus;
}

// Three documents that span several windows (W = 16 tokens), with multi-byte
// characters and runs of spaces for the chunk boundaries to split.
const std::vector<std::string>& Documents() {
  static const auto* docs = new std::vector<std::string>{
      "the river sees birds and a bright window. Café crème, naïve  façade: ça coûte 5 €. "
      "the quiet house sees 37 apples",
      "  stone  and apple and 東京 window, the bright birds see a quiet river 😀 again",
      "a house. a stone. a window; the river and the birds and the 999 quiet apples.\n"};
  return *docs;
}

const char kQuestion[] = " what does the river see?";

struct Answer {
  grpc::Status status;
  std::vector<int> tokens;
  std::vector<float> logits;  // rows of every generated token, concatenated
  std::string text;
  std::vector<pb::GenerateResponse> messages;
};

class ServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new std::string(::testing::TempDir() + "/service_model");
    std::filesystem::create_directories(*model_dir_);
    {
      std::ofstream out(*model_dir_ + "/corpus.txt");
      out << Corpus();
    }
    ASSERT_TRUE(TrainTokenizer(*model_dir_ + "/corpus.txt", kVocab,
                               *model_dir_ + "/tokenizer.model").ok());
    ModelConfig c;
    c.model_type = "longllama";
    c.vocab_size = kVocab;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 16;
    c.last_context_length = kLast;
    c.mem_layers = {1, 2};
    RandomCheckpointOptions options;
    options.init_std = 0.3f;
    ASSERT_TRUE(WriteRandomCheckpoint(*model_dir_, c, options).ok());
    engine_ = Engine::Load(*model_dir_)->release();
    tokenizer_ = Tokenizer::Load(*model_dir_ + "/tokenizer.model")->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete tokenizer_;
    delete model_dir_;
  }

  struct Server {
    std::unique_ptr<SessionManager> manager;
    std::unique_ptr<FotServer> server;
    std::unique_ptr<pb::Fot::Stub> stub;
    std::shared_ptr<grpc::Channel> channel;
  };

  static std::unique_ptr<Server> Start(const std::string& data_dir,
                                       SessionManagerOptions options = {},
                                       int max_message_bytes = 1 << 20) {
    auto server = std::make_unique<Server>();
    options.data_dir = data_dir;
    options.defaults.memory = engine_->DefaultMemoryOptions();
    std::vector<std::string> errors;
    auto manager = SessionManager::Open(engine_, tokenizer_, options, &errors);
    EXPECT_TRUE(manager.ok()) << manager.status();
    EXPECT_TRUE(errors.empty()) << errors.front();
    server->manager = *std::move(manager);
    ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    server_options.max_message_bytes = max_message_bytes;
    auto started = FotServer::Start(server->manager.get(), server_options);
    EXPECT_TRUE(started.ok()) << started.status();
    server->server = *std::move(started);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    server->channel = grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(server->server->port()),
        grpc::InsecureChannelCredentials(), args);
    server->stub = pb::Fot::NewStub(server->channel);
    return server;
  }

  static std::string DataDir(const std::string& name) {
    const std::string dir = ::testing::TempDir() + "/service_data_" + name;
    std::filesystem::remove_all(dir);
    return dir;
  }

  static grpc::Status CreateSession(pb::Fot::Stub* stub, const std::string& name,
                                    pb::SessionOptions options = {}) {
    grpc::ClientContext context;
    pb::CreateSessionRequest request;
    request.set_name(name);
    *request.mutable_options() = options;
    pb::SessionInfo info;
    return stub->CreateSession(&context, request, &info);
  }

  // Streams one document as the given text pieces (the last ends it), or
  // stops after `stop_after` pieces without ending it (a cut stream).
  static grpc::Status Ingest(pb::Fot::Stub* stub, const std::string& session,
                             const std::string& document, const std::vector<std::string>& pieces,
                             bool add_bos, pb::IngestResponse* last = nullptr,
                             bool resume = false, int64_t offset = 0, size_t stop_after = SIZE_MAX) {
    grpc::ClientContext context;
    auto stream = stub->Ingest(&context);
    pb::IngestRequest request;
    pb::IngestOpen* open = request.mutable_open();
    open->set_session(session);
    open->set_document(document);
    open->set_add_bos(add_bos);
    open->set_resume(resume);
    open->set_offset(offset);
    pb::IngestResponse ack;
    if (stream->Write(request) && stream->Read(&ack)) {
      for (size_t i = 0; i < pieces.size() && i < stop_after; ++i) {
        request.Clear();
        request.mutable_chunk()->set_text(pieces[i]);
        request.mutable_chunk()->set_end_of_document(i + 1 == pieces.size());
        if (!stream->Write(request) || !stream->Read(&ack)) break;
      }
    }
    if (last != nullptr) *last = ack;
    if (stop_after < pieces.size()) {
      context.TryCancel();  // the client vanishes mid-document
      stream->Finish().ok();
      return grpc::Status::OK;
    }
    stream->WritesDone();
    while (stream->Read(&ack)) {
      if (last != nullptr) *last = ack;
    }
    return stream->Finish();
  }

  static std::vector<std::string> Split(const std::string& text, size_t size) {
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size(); i += size) pieces.push_back(text.substr(i, size));
    return pieces;
  }

  static void IngestAll(pb::Fot::Stub* stub, const std::string& session, size_t chunk) {
    for (size_t d = 0; d < Documents().size(); ++d) {
      const std::string& text = Documents()[d];
      grpc::Status status = Ingest(stub, session, "doc" + std::to_string(d),
                                   Split(text, chunk == 0 ? text.size() : chunk), d == 0);
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  }

  static pb::GenerateRequest Question(const std::string& session, int max_tokens = 12) {
    pb::GenerateRequest request;
    request.set_session(session);
    request.set_question(kQuestion);
    request.set_max_tokens(max_tokens);
    request.set_ignore_eos(true);
    request.set_return_logits(true);
    return request;
  }

  static Answer Generate(pb::Fot::Stub* stub, const pb::GenerateRequest& request) {
    Answer answer;
    grpc::ClientContext context;
    auto reader = stub->Generate(&context, request);
    pb::GenerateResponse message;
    while (reader->Read(&message)) {
      answer.messages.push_back(message);
      answer.text += message.text();
      if (message.done()) continue;
      answer.tokens.push_back(message.token_id());
      answer.logits.insert(answer.logits.end(), message.logits().begin(), message.logits().end());
    }
    answer.status = reader->Finish();
    return answer;
  }

  // Tokens of all documents as one-shot callers tokenize them.
  static std::vector<int> AllDocumentTokens(size_t documents = SIZE_MAX) {
    std::vector<int> all = {tokenizer_->bos_id()};
    for (size_t d = 0; d < Documents().size() && d < documents; ++d) {
      for (int t : tokenizer_->Encode(Documents()[d])) all.push_back(t);
    }
    return all;
  }

  // The one-shot reference: one Prefill over everything, then greedy Appends.
  static Answer Reference(std::vector<int> tokens, int max_tokens = 12) {
    for (int t : tokenizer_->Encode(kQuestion)) tokens.push_back(t);
    ModelState state = *engine_->NewState();
    Answer answer;
    std::vector<float> last(kVocab);
    const LogitsSink keep = [&](int64_t, int64_t rows, const float* l) {
      std::copy(l + (rows - 1) * kVocab, l + rows * kVocab, last.begin());
    };
    EXPECT_TRUE(engine_->Prefill(tokens, kLast, &state, LogitsMode::kLast, keep).ok());
    for (int i = 0; i < max_tokens; ++i) {
      answer.logits.insert(answer.logits.end(), last.begin(), last.end());
      const int token = ArgMax(last.data(), kVocab);
      answer.tokens.push_back(token);
      if (i + 1 < max_tokens) {
        EXPECT_TRUE(engine_->Append({&token, 1}, &state, LogitsMode::kLast, keep).ok());
      }
    }
    return answer;
  }

  static void ExpectSameAnswer(const Answer& actual, const Answer& expected,
                               const std::string& what) {
    ASSERT_TRUE(actual.status.ok()) << what << ": " << actual.status.error_message();
    EXPECT_EQ(actual.tokens, expected.tokens) << what;
    ASSERT_EQ(actual.logits.size(), expected.logits.size()) << what;
    float worst = 0;
    for (size_t i = 0; i < actual.logits.size(); ++i) {
      worst = std::max(worst, std::fabs(actual.logits[i] - expected.logits[i]));
    }
    EXPECT_LE(worst, 1e-4) << what;
  }

  static std::string* model_dir_;
  static Engine* engine_;
  static Tokenizer* tokenizer_;
};

std::string* ServiceTest::model_dir_ = nullptr;
Engine* ServiceTest::engine_ = nullptr;
Tokenizer* ServiceTest::tokenizer_ = nullptr;

// Sessions save at most once a second while ingesting here (each save fsyncs
// every memory store; see RestartKeepsAcknowledgedData for saves per chunk).
SessionManagerOptions SavingEverySecond() {
  SessionManagerOptions options;
  options.min_save_interval = absl::Seconds(1);
  return options;
}

TEST_F(ServiceTest, AnyChunkingGivesTheOneShotAnswer) {
  auto s = Start(DataDir("chunkings"), SavingEverySecond());
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
                     true, acknowledged, 3).ok());
  // ... and again from the very start, resending what the server holds.
  grpc::Status status = Ingest(s->stub.get(), "r", "doc0", Split(text, 13), false, &ack, true, 0);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(ack.complete());
  EXPECT_EQ(ack.resume_offset(), static_cast<int64_t>(text.size()));
  // A complete document cannot grow, but ending it again is harmless.
  status = Ingest(s->stub.get(), "r", "doc0", {"more"}, false, nullptr, true, ack.resume_offset());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  for (size_t d = 1; d < Documents().size(); ++d) {
    ASSERT_TRUE(Ingest(s->stub.get(), "r", "doc" + std::to_string(d), {Documents()[d]}, false).ok());
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
                     nullptr, true, acknowledged).ok());
  ASSERT_TRUE(Ingest(s->stub.get(), "keep", "doc2", {Documents()[2]}, false).ok());
  ExpectSameAnswer(Generate(s->stub.get(), Question("keep")), Reference(AllDocumentTokens()),
                   "after restart");
}

TEST_F(ServiceTest, ConcurrentSessionsAndQueries) {
  auto s = Start(DataDir("concurrent"), SavingEverySecond());
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
  ASSERT_EQ(documents.size(), 3u);  // doc0, the kept (cut) turn, doc1
  EXPECT_LT(documents[1].tokens, 2000);  // of 60000 asked for
}

TEST_F(ServiceTest, ErrorsGetTheRightStatus) {
  SessionManagerOptions options;
  options.max_sessions = 2;
  options.max_pending_text_bytes = 4096;
  options.writer_wait = absl::Seconds(1);
  auto s = Start(DataDir("errors"), options, /*max_message_bytes=*/64 << 10);
  pb::Fot::Stub* stub = s->stub.get();
  auto code = [](const grpc::Status& status) { return status.error_code(); };
  using grpc::StatusCode;

  // Sessions: names, options, duplicates, the limit, unknown names.
  EXPECT_EQ(code(CreateSession(stub, "bad/name")), StatusCode::INVALID_ARGUMENT);
  pb::SessionOptions bad;
  bad.set_retrieval("knn:0");
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  bad.Clear();
  bad.set_index("btree");
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  bad.Clear();
  bad.set_memory_dtype("f8");
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  bad.Clear();
  bad.set_last_context_length(1000);
  EXPECT_EQ(code(CreateSession(stub, "s", bad)), StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(CreateSession(stub, "s").ok());
  EXPECT_EQ(code(CreateSession(stub, "s")), StatusCode::ALREADY_EXISTS);
  ASSERT_TRUE(CreateSession(stub, "t").ok());
  EXPECT_EQ(code(CreateSession(stub, "u")), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(Generate(stub, Question("nope")).status), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(Ingest(stub, "nope", "d", {"x"}, false)), StatusCode::NOT_FOUND);
  {
    grpc::ClientContext context;
    pb::DeleteSessionRequest request;
    request.set_session("nope");
    pb::DeleteSessionResponse response;
    EXPECT_EQ(code(stub->DeleteSession(&context, request, &response)), StatusCode::NOT_FOUND);
  }

  // Documents: invalid UTF-8, empty, duplicate, too large, resume errors.
  EXPECT_EQ(code(Ingest(stub, "s", "bad", {"fine ", "bro\xffken"}, false)),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(Ingest(stub, "s", "cut", {"ends inside \xe2\x82"}, false)),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(Ingest(stub, "s", "empty", {""}, false)), StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(Ingest(stub, "s", "doc", {Documents()[0]}, true).ok());
  EXPECT_EQ(code(Ingest(stub, "s", "doc", {"again"}, false)), StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(code(Ingest(stub, "s", "huge", {std::string(100 << 10, 'a')}, false)),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(Ingest(stub, "s", "nospace", Split(std::string(8000, 'b'), 1000), false)),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(Ingest(stub, "s", "new", {"x"}, false, nullptr, true, 5)), StatusCode::OUT_OF_RANGE);
  pb::IngestResponse ack;
  ASSERT_TRUE(
      Ingest(stub, "s", "open", {"one two three four", " five"}, false, &ack, false, 0, 1).ok());
  ASSERT_TRUE(Ingest(stub, "s", "later", {"five"}, false).ok());
  EXPECT_EQ(code(Ingest(stub, "s", "open", {" more"}, false, nullptr, true, 0)),
            StatusCode::FAILED_PRECONDITION);
  {
    grpc::ClientContext context;  // another stream is ingesting into the session
    auto stream = stub->Ingest(&context);
    pb::IngestRequest request;
    request.mutable_open()->set_session("s");
    request.mutable_open()->set_document("busy");
    pb::IngestResponse first;
    ASSERT_TRUE(stream->Write(request) && stream->Read(&first));
    EXPECT_EQ(code(Ingest(stub, "s", "waiting", {"x"}, false)), StatusCode::ABORTED);
    stream->WritesDone();
    while (stream->Read(&first)) {
    }
    EXPECT_TRUE(stream->Finish().ok());
  }
  {
    grpc::ClientContext context;  // a chunk before `open`
    auto stream = stub->Ingest(&context);
    pb::IngestRequest request;
    request.mutable_chunk()->set_text("x");
    stream->Write(request);
    stream->WritesDone();
    pb::IngestResponse ignored;
    while (stream->Read(&ignored)) {
    }
    EXPECT_EQ(code(stream->Finish()), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext context;  // token ids outside the vocabulary
    auto stream = stub->Ingest(&context);
    pb::IngestRequest request;
    request.mutable_open()->set_session("t");
    request.mutable_open()->set_document("ids");
    stream->Write(request);
    request.Clear();
    request.mutable_chunk()->add_token_ids(kVocab + 5);
    stream->Write(request);
    stream->WritesDone();
    pb::IngestResponse ignored;
    while (stream->Read(&ignored)) {
    }
    EXPECT_EQ(code(stream->Finish()), StatusCode::INVALID_ARGUMENT);
  }

  // Queries: sampling, lengths, filters, empty input.
  pb::GenerateRequest request = Question("s");
  request.set_temperature(-1);
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  request = Question("s");
  request.set_top_p(2);
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  request = Question("s", -3);
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  request = Question("s");
  request.set_retrieval("knn:-1");
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  request = Question("s");
  request.add_documents("no-such-document");
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::NOT_FOUND);
  request = Question("s");
  request.clear_question();
  EXPECT_EQ(code(Generate(stub, request).status), StatusCode::INVALID_ARGUMENT);
  // Invalid UTF-8 in a text field: INVALID_ARGUMENT naming the field (the
  // fields are `bytes`, so the handler sees them; EveryTextFieldIsCheckedForUtf8
  // covers every field of every method).
  request = Question("s");
  request.set_question("bad \xc0\xaf");
  Answer bad_text = Generate(stub, request);
  EXPECT_EQ(code(bad_text.status), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad_text.status.error_message().find("GenerateRequest.question: invalid UTF-8"),
            std::string::npos)
      << bad_text.status.error_message();
  request = Question("s");
  request.add_stop("fine");
  request.add_stop("caf\xe9");  // Latin-1
  bad_text = Generate(stub, request);
  EXPECT_EQ(code(bad_text.status), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad_text.status.error_message().find("GenerateRequest.stop[1]"), std::string::npos)
      << bad_text.status.error_message();
  {
    grpc::ClientContext context;
    pb::ListEntriesRequest list;
    list.set_session("s");
    list.set_layer(0);  // not a memory layer
    pb::ListEntriesResponse response;
    EXPECT_EQ(code(stub->ListEntries(&context, list, &response)), StatusCode::INVALID_ARGUMENT);
  }

  // The server still serves everyone after all of that.
  EXPECT_TRUE(Generate(stub, Question("s")).status.ok());

  // Shutdown: every call is UNAVAILABLE.
  s->manager->Shutdown();
  EXPECT_EQ(code(Generate(stub, Question("s")).status), StatusCode::UNAVAILABLE);
  EXPECT_EQ(code(CreateSession(stub, "v")), StatusCode::UNAVAILABLE);
  s->server->Shutdown(absl::ZeroDuration());
  EXPECT_EQ(code(Generate(stub, Question("s")).status), StatusCode::UNAVAILABLE);
}

TEST_F(ServiceTest, TracesAndInspection) {
  auto s = Start(DataDir("inspect"));
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "i").ok());
  IngestAll(stub, "i", 0);
  const std::vector<int> all = AllDocumentTokens();

  // Each traced entry names the document, position and token it came from.
  pb::GenerateRequest request = Question("i", 4);
  request.set_trace(true);
  request.set_trace_top(3);
  const Answer answer = Generate(stub, request);
  ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
  auto documents = (*s->manager->Get("i"))->session().Documents();
  int checked = 0;
  for (const pb::GenerateResponse& m : answer.messages) {
    if (m.done()) continue;
    ASSERT_EQ(m.trace_size(), 2);  // memory layers 1 and 2
    for (const pb::LayerRetrieval& layer : m.trace()) {
      ASSERT_EQ(layer.heads_size(), 4);
      for (const pb::HeadRetrieval& head : layer.heads()) {
        EXPECT_EQ(head.entries_size(), 3);
        for (const pb::RetrievedEntry& e : head.entries()) {
          EXPECT_GE(e.attention_share(), 0);
          EXPECT_LE(e.attention_share(), 1);
          const int64_t id = e.entry().id();
          if (id >= static_cast<int64_t>(all.size())) {
            EXPECT_EQ(e.entry().document_index(), -1);
            continue;
          }
          const DocumentInfo& d = documents[e.entry().document_index()];
          EXPECT_EQ(e.entry().document(), d.name);
          EXPECT_EQ(d.first + e.entry().position(), id);
          EXPECT_EQ(e.entry().token_id(), all[id]);
          EXPECT_EQ(e.entry().token_text(), tokenizer_->PieceText(all[id]));
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 0);

  // Stats, paged listing, context, search.
  grpc::ClientContext c1;
  pb::MemoryStatsRequest stats_request;
  stats_request.set_session("i");
  pb::MemoryStatsResponse stats;
  ASSERT_TRUE(stub->MemoryStats(&c1, stats_request, &stats).ok());
  ASSERT_EQ(stats.layers_size(), 2);
  const int64_t committed = stats.committed_tokens();
  EXPECT_GT(committed, 0);
  EXPECT_EQ(stats.layers(0).heads(0).entries(), committed);
  EXPECT_EQ(stats.documents_size(), 3);

  std::vector<pb::MemoryEntry> listed;
  std::string token;
  do {
    grpc::ClientContext c;
    pb::ListEntriesRequest list;
    list.set_session("i");
    list.set_layer(2);
    list.set_page_size(10);
    list.set_page_token(token);
    pb::ListEntriesResponse page;
    ASSERT_TRUE(stub->ListEntries(&c, list, &page).ok());
    EXPECT_EQ(page.total_entries(), committed);
    listed.insert(listed.end(), page.entries().begin(), page.entries().end());
    token = page.next_page_token();
  } while (!token.empty());
  ASSERT_EQ(static_cast<int64_t>(listed.size()), committed);
  for (int64_t i = 0; i < committed; ++i) {
    EXPECT_EQ(listed[i].id(), i);
    EXPECT_EQ(listed[i].token_id(), all[i]);
  }

  grpc::ClientContext c2;
  pb::EntryContextRequest context_request;
  context_request.set_session("i");
  context_request.set_id(20);
  context_request.set_radius(4);
  pb::EntryContextResponse context;
  ASSERT_TRUE(stub->EntryContext(&c2, context_request, &context).ok());
  EXPECT_FALSE(context.entries().empty());
  EXPECT_FALSE(context.entry_text().empty());

  grpc::ClientContext c3;
  pb::SearchMemoryRequest search;
  search.set_session("i");
  search.set_text("the quiet river");
  search.set_top(2);
  pb::SearchMemoryResponse found;
  ASSERT_TRUE(stub->SearchMemory(&c3, search, &found).ok());
  ASSERT_EQ(found.layers_size(), 2);
  EXPECT_EQ(found.layers(0).heads(0).entries_size(), 2);

  // Score: log-likelihood and perplexity of a continuation agree with a
  // one-shot forward.
  grpc::ClientContext c4;
  pb::ScoreRequest score_request;
  score_request.set_session("i");
  score_request.set_context(" the river");
  score_request.set_continuation(" sees birds");
  pb::ScoreResponse score;
  ASSERT_TRUE(stub->Score(&c4, score_request, &score).ok());
  std::vector<int> tokens = all;
  for (int t : tokenizer_->Encode(" the river")) tokens.push_back(t);
  const std::vector<int> continuation = tokenizer_->Encode(" sees birds");
  tokens.insert(tokens.end(), continuation.begin(), continuation.end());
  std::vector<float> logits(tokens.size() * kVocab);
  ModelState state = *engine_->NewState();
  ASSERT_TRUE(engine_->Prefill(tokens, kLast, &state, LogitsMode::kAll,
                               [&](int64_t first, int64_t rows, const float* l) {
                                 std::copy(l, l + rows * kVocab, logits.begin() + first * kVocab);
                               }).ok());
  double expected = 0;
  for (size_t i = tokens.size() - continuation.size(); i < tokens.size(); ++i) {
    const float* row = logits.data() + (i - 1) * kVocab;
    double sum = 0;
    const float top = row[ArgMax(row, kVocab)];
    for (int v = 0; v < kVocab; ++v) sum += std::exp(double{row[v]} - top);
    expected += row[tokens[i]] - top - std::log(sum);
  }
  EXPECT_NEAR(score.log_likelihood(), expected, 1e-3);
  EXPECT_EQ(score.token_log_probs_size(), static_cast<int>(continuation.size()));
  EXPECT_NEAR(score.perplexity(), std::exp(-expected / continuation.size()), 1e-2);

  // Deleting a document hides its entries.
  grpc::ClientContext c5;
  pb::DeleteDocumentRequest del;
  del.set_session("i");
  del.set_document("doc0");
  pb::DeleteDocumentResponse deleted;
  ASSERT_TRUE(stub->DeleteDocument(&c5, del, &deleted).ok());
  grpc::ClientContext c6;
  ASSERT_TRUE(stub->MemoryStats(&c6, stats_request, &stats).ok());
  EXPECT_LT(stats.layers(0).heads(0).live_entries(), committed);
  EXPECT_EQ(stats.documents_size(), 2);
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

// --- text and paging of the API -----------------------------------------------

// One call of `method` ("/fot.v1.Fot/Generate") with `request` as its raw wire
// bytes: one message, then half-close, whatever kind the method is (a generic
// call is a stream both ways on the wire). Returns the call's status.
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& request) {
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto call = generic.PrepareCall(&context, method, &queue);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  queue.Next(&tag, &ok);
  const grpc::Slice slice(request);
  grpc::ByteBuffer message(&slice, 1);
  call->Write(message, reinterpret_cast<void*>(2));
  queue.Next(&tag, &ok);  // not ok if the server has already answered
  call->WritesDone(reinterpret_cast<void*>(3));
  queue.Next(&tag, &ok);
  grpc::ByteBuffer response;
  do {
    call->Read(&response, reinterpret_cast<void*>(4));
    queue.Next(&tag, &ok);
  } while (ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return status;
}

// Paths (field chains) to every text field of `type`, nested messages
// included, except IngestChunk.text (which may end inside a character).
void TextFieldsOf(const google::protobuf::Descriptor* type,
                  std::vector<const google::protobuf::FieldDescriptor*> chain,
                  std::vector<std::vector<const google::protobuf::FieldDescriptor*>>* out) {
  using google::protobuf::FieldDescriptor;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    std::vector<const FieldDescriptor*> path = chain;
    path.push_back(field);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (type != pb::IngestChunk::descriptor() || field->name() != "text") out->push_back(path);
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && path.size() < 4) {
      TextFieldsOf(field->message_type(), path, out);
    }
  }
}

TEST_F(ServiceTest, EveryTextFieldIsCheckedForUtf8) {
  auto s = Start(DataDir("utf8"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "u").ok());
  // Invalid UTF-8 (an overlong '/') as a client whose .proto says `string`
  // would put it on the wire: field 1 (session) "u", field 2 (question).
  const std::string generate = std::string("\x0a\x01u\x12\x06") + "bad \xc0\xaf";
  grpc::Status status = RawCall(s->channel, "/fot.v1.Fot/Generate", generate);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_EQ(status.error_message(),
            "GenerateRequest.question: invalid UTF-8 at byte 4; text fields must be UTF-8 (convert "
            "the text first, e.g. with iconv -t UTF-8)");

  // Every text field of every method's request: INVALID_ARGUMENT naming it.
  const google::protobuf::ServiceDescriptor* service =
      pb::GenerateRequest::descriptor()->file()->FindServiceByName("Fot");
  ASSERT_NE(service, nullptr);
  int checked = 0;
  for (int m = 0; m < service->method_count(); ++m) {
    const google::protobuf::MethodDescriptor* method = service->method(m);
    std::vector<std::vector<const google::protobuf::FieldDescriptor*>> fields;
    TextFieldsOf(method->input_type(), {}, &fields);
    for (const auto& chain : fields) {
      std::unique_ptr<google::protobuf::Message> request(
          google::protobuf::MessageFactory::generated_factory()
              ->GetPrototype(method->input_type())
              ->New());
      google::protobuf::Message* message = request.get();
      std::string path = method->input_type()->name();
      for (const google::protobuf::FieldDescriptor* field : chain) {
        const google::protobuf::Reflection* reflection = message->GetReflection();
        path += "." + field->name() + (field->is_repeated() ? "[0]" : "");
        if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
          message = field->is_repeated() ? reflection->AddMessage(message, field)
                                         : reflection->MutableMessage(message, field);
        } else if (field->is_repeated()) {
          reflection->AddString(message, field, "caf\xe9");  // Latin-1
        } else {
          reflection->SetString(message, field, "caf\xe9");
        }
      }
      status = RawCall(s->channel, "/fot.v1.Fot/" + method->name(), request->SerializeAsString());
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << path << ": " << status.error_message();
      EXPECT_EQ(status.error_message().rfind(path + ": invalid UTF-8", 0), 0u)
          << path << ": " << status.error_message();
      ++checked;
    }
  }
  EXPECT_GE(checked, 33);  // every client-written text field of fot.proto

  // Document text may end inside a character (the next chunk completes it).
  EXPECT_TRUE(Ingest(s->stub.get(), "u", "split", {"caf\xc3", "\xa9 cr\xc3\xa8me"}, false).ok());
  // Valid UTF-8 everywhere still works, and the server serves on.
  pb::GenerateRequest request = Question("u", 2);
  request.add_stop("caf\xc3\xa9");
  EXPECT_TRUE(Generate(s->stub.get(), request).status.ok());
}

TEST_F(ServiceTest, ListEntriesPagesFromAnyOffset) {
  auto s = Start(DataDir("paging"));
  pb::Fot::Stub* stub = s->stub.get();
  ASSERT_TRUE(CreateSession(stub, "p").ok());
  IngestAll(stub, "p", 0);
  const std::vector<int> all = AllDocumentTokens();
  auto list = [&](int64_t offset, int page_size, const std::string& token,
                  pb::ListEntriesResponse* response) {
    grpc::ClientContext context;
    pb::ListEntriesRequest request;
    request.set_session("p");
    request.set_layer(1);
    request.set_page_size(page_size);
    request.set_offset(offset);
    request.set_page_token(token);
    return stub->ListEntries(&context, request, response);
  };
  pb::ListEntriesResponse page;
  ASSERT_TRUE(list(0, 1, "", &page).ok());
  const int64_t total = page.total_entries();
  ASSERT_GT(total, 20);

  // Walking by token from an offset visits each later entry once, in order;
  // has_more is set exactly when a token is.
  std::vector<int64_t> ids;
  std::string token;
  int64_t start = 5;
  do {
    ASSERT_TRUE(list(token.empty() ? start : 0, 7, token, &page).ok());
    EXPECT_EQ(page.offset(), token.empty() ? start : ids.back() + 1);
    EXPECT_EQ(page.total_entries(), total);
    EXPECT_EQ(page.has_more(), !page.next_page_token().empty());
    for (const pb::MemoryEntry& e : page.entries()) {
      ids.push_back(e.id());
      EXPECT_EQ(e.token_id(), all[e.id()]);
    }
    token = page.next_page_token();
  } while (!token.empty());
  ASSERT_EQ(static_cast<int64_t>(ids.size()), total - start);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], start + static_cast<int64_t>(i));

  // The last entries, and past the end.
  ASSERT_TRUE(list(total - 2, 10, "", &page).ok());
  EXPECT_EQ(page.entries_size(), 2);
  EXPECT_EQ(page.entries(0).id(), total - 2);
  EXPECT_FALSE(page.has_more());
  EXPECT_TRUE(page.next_page_token().empty());
  ASSERT_TRUE(list(total, 10, "", &page).ok());
  EXPECT_EQ(page.entries_size(), 0);
  EXPECT_FALSE(page.has_more());
  EXPECT_EQ(page.total_entries(), total);
  ASSERT_TRUE(list(total - 3, 3, "", &page).ok());  // exactly the rest
  EXPECT_EQ(page.entries_size(), 3);
  EXPECT_FALSE(page.has_more());

  // Mistakes name what to do.
  grpc::Status status = list(-1, 10, "", &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("offset"), std::string::npos) << status.error_message();
  status = list(3, 10, "12", &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("not both"), std::string::npos) << status.error_message();
  status = list(0, 10, "page-two", &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("next_page_token"), std::string::npos)
      << status.error_message();
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

TEST_F(ServiceTest, ScoreReportsEachTokenWithItsPieceTextAndLogProb) {
  auto s = Start(DataDir("score_tokens"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "sc").ok());
  IngestAll(s->stub.get(), "sc", 0);
  // 東京 and 😀 are not in the vocabulary: their bytes are byte-fallback tokens.
  const std::string continuation = " the river 東京 😀 birds";
  grpc::ClientContext context;
  pb::ScoreRequest request;
  request.set_session("sc");
  request.set_context(" a");
  request.set_continuation(continuation);
  pb::ScoreResponse score;
  const grpc::Status status = s->stub->Score(&context, request, &score);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::vector<int> ids = tokenizer_->Encode(continuation);
  ASSERT_EQ(score.token_scores_size(), static_cast<int>(ids.size()));
  ASSERT_EQ(score.token_log_probs_size(), static_cast<int>(ids.size()));
  std::string text;
  double sum = 0;
  int empty = 0;
  for (int i = 0; i < score.token_scores_size(); ++i) {
    const pb::TokenScore& t = score.token_scores(i);
    EXPECT_EQ(t.token_id(), ids[i]);
    EXPECT_EQ(t.token_id(), score.continuation_token_ids(i));
    EXPECT_EQ(t.piece(), tokenizer_->PieceText(ids[i]));
    EXPECT_EQ(t.log_prob(), score.token_log_probs(i));
    EXPECT_LE(t.log_prob(), 0);
    EXPECT_TRUE(ValidateUtf8(t.text(), false).ok()) << i;
    if (t.text().empty()) ++empty;
    text += t.text();
    sum += t.log_prob();
  }
  EXPECT_EQ(text, tokenizer_->Decode(ids));
  EXPECT_NE(text.find("東京 😀"), std::string::npos) << text;
  EXPECT_GE(empty, 2);  // the first bytes of 東, 京 and 😀 complete nothing
  EXPECT_NEAR(sum, score.log_likelihood(), 1e-3);
}

TEST_F(ServiceTest, EntryContextTextIsValidUtf8AroundEveryEntry) {
  auto s = Start(DataDir("context_text"));
  ASSERT_TRUE(CreateSession(s->stub.get(), "ctx").ok());
  IngestAll(s->stub.get(), "ctx", 0);
  const int64_t committed = (*s->manager->Get("ctx"))->session().Progress().committed_tokens;
  const std::vector<int> all = AllDocumentTokens();
  int byte_entries = 0;
  for (int64_t id = 0; id < committed; ++id) {
    grpc::ClientContext context;
    pb::EntryContextRequest request;
    request.set_session("ctx");
    request.set_id(id);
    request.set_radius(3);
    pb::EntryContextResponse response;
    const grpc::Status status = s->stub->EntryContext(&context, request, &response);
    ASSERT_TRUE(status.ok()) << id << ": " << status.error_message();
    std::vector<int> tokens;
    for (const pb::MemoryEntry& e : response.entries()) tokens.push_back(e.token_id());
    EXPECT_EQ(response.text_before() + response.entry_text() + response.text_after(),
              tokenizer_->Decode(tokens))
        << id;
    for (const std::string* part :
         {&response.text_before(), &response.entry_text(), &response.text_after()}) {
      EXPECT_TRUE(ValidateUtf8(*part, false).ok()) << id;
    }
    if (tokenizer_->PieceText(all[id]).rfind("<0x", 0) == 0) ++byte_entries;
  }
  EXPECT_GT(byte_entries, 0);  // the test saw entries inside characters
}

}  // namespace
}  // namespace fot
