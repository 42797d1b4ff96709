// The fixture of the gRPC service tests (service_test.cc,
// service_errors_test.cc, service_inspection_test.cc; service_lambda_test.cc
// derives its own suite from it): a real FotServer on a loopback port (port
// 0), a small random model and a trained tokenizer, the generated client stub,
// and the one-shot engine reference that answers are compared with.
//
// The fixture lives in a named namespace, not an anonymous one: its tests are
// spread over several files but form one test suite, and Google Test wants
// one fixture class per suite.
#ifndef FOTSERVE_TESTS_SRC_SERVER_SERVICE_TEST_FIXTURE_H_
#define FOTSERVE_TESTS_SRC_SERVER_SERVICE_TEST_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/fot.grpc.pb.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/model/kernels.h"
#include "src/server/service.h"
#include "src/server/session_manager.h"
#include "tests/src/small_model.h"

namespace fot::service_test {

namespace pb = ::fot::v1;
inline constexpr int kVocab = 400;
inline constexpr int kLast = 8;  // the model's last_context_length

// Three documents that span several windows (W = 16 tokens), with multi-byte
// characters and runs of spaces for the chunk boundaries to split.
inline const std::vector<std::string>& Documents() {
  static const auto* docs = new std::vector<std::string>{
      "the river sees birds and a bright window. Café crème, naïve  façade: ça coûte 5 €. "
      "the quiet house sees 37 apples",
      "  stone  and apple and 東京 window, the bright birds see a quiet river 😀 again",
      "a house. a stone. a window; the river and the birds and the 999 quiet apples.\n"};
  return *docs;
}

inline constexpr char kQuestion[] = " what does the river see?";

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
      out << SmallTokenizerCorpus();
    }
    ASSERT_TRUE(
        TrainTokenizer(*model_dir_ + "/corpus.txt", kVocab, *model_dir_ + "/tokenizer.model").ok());
    ModelConfig c = SmallModelConfig();
    c.vocab_size = kVocab;
    c.last_context_length = kLast;
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
    auto errors = std::make_shared<std::vector<std::string>>();
    options.on_load_error = [errors](const std::string& e) { errors->push_back(e); };
    auto manager = SessionManager::Open(engine_, tokenizer_, options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    (*manager)->WaitUntilLoaded();
    EXPECT_TRUE(errors->empty()) << errors->front();
    server->manager = *std::move(manager);
    ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    server_options.max_message_bytes = max_message_bytes;
    server_options.model_dir = *model_dir_;
    auto started = FotServer::Start(server->manager.get(), server_options);
    EXPECT_TRUE(started.ok()) << started.status();
    server->server = *std::move(started);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    server->channel =
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server->server->port()),
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
                                    pb::SessionOptions options = {},
                                    pb::SessionInfo* info = nullptr) {
    grpc::ClientContext context;
    pb::CreateSessionRequest request;
    request.set_name(name);
    *request.mutable_options() = options;
    pb::SessionInfo ignored;
    return stub->CreateSession(&context, request, info != nullptr ? info : &ignored);
  }

  // Streams one document as the given text pieces (the last ends it), or
  // stops after `stop_after` pieces without ending it (a cut stream); appends
  // every acknowledgement to *acks if given.
  static grpc::Status Ingest(pb::Fot::Stub* stub, const std::string& session,
                             const std::string& document, const std::vector<std::string>& pieces,
                             bool add_bos, pb::IngestResponse* last = nullptr, bool resume = false,
                             int64_t offset = 0, size_t stop_after = SIZE_MAX,
                             std::vector<pb::IngestResponse>* acks = nullptr) {
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
    const auto read = [&] {
      if (!stream->Read(&ack)) return false;
      if (acks != nullptr) acks->push_back(ack);
      return true;
    };
    if (stream->Write(request) && read()) {
      for (size_t i = 0; i < pieces.size() && i < stop_after; ++i) {
        request.Clear();
        request.mutable_chunk()->set_text(pieces[i]);
        request.mutable_chunk()->set_end_of_document(i + 1 == pieces.size());
        if (!stream->Write(request) || !read()) break;
      }
    }
    if (last != nullptr) *last = ack;
    if (stop_after < pieces.size()) {
      context.TryCancel();  // the client vanishes mid-document
      stream->Finish().ok();
      return grpc::Status::OK;
    }
    stream->WritesDone();
    while (read()) {
      if (last != nullptr) *last = ack;
    }
    return stream->Finish();
  }

  // Pieces of `size` bytes, each grown to end between characters: text
  // travels in `string` fields, which hold whole UTF-8 characters.
  static std::vector<std::string> Split(const std::string& text, size_t size) {
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      size_t end = std::min(text.size(), i + size);
      while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
      pieces.push_back(text.substr(i, end - i));
      i = end;
    }
    return pieces;
  }

  static void IngestAll(pb::Fot::Stub* stub, const std::string& session, size_t chunk,
                        size_t documents = SIZE_MAX,
                        std::vector<pb::IngestResponse>* acks = nullptr) {
    for (size_t d = 0; d < Documents().size() && d < documents; ++d) {
      const std::string& text = Documents()[d];
      grpc::Status status = Ingest(stub, session, "doc" + std::to_string(d),
                                   Split(text, chunk == 0 ? text.size() : chunk), d == 0, nullptr,
                                   false, 0, SIZE_MAX, acks);
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

  // The one-shot reference: one Prefill over everything, then greedy Appends,
  // attending as `attention` says (fot by default).
  static Answer Reference(std::vector<int> tokens, int max_tokens = 12,
                          const AttentionOptions& attention = {}) {
    for (int t : tokenizer_->Encode(kQuestion)) tokens.push_back(t);
    Answer answer;
    GreedyOneShot(*engine_, tokens, max_tokens, attention, &answer.tokens, &answer.logits);
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

  static inline std::string* model_dir_ = nullptr;
  static inline Engine* engine_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
};

}  // namespace fot::service_test

#endif  // FOTSERVE_TESTS_SRC_SERVER_SERVICE_TEST_FIXTURE_H_
