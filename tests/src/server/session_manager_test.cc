// SessionManager without gRPC: chunked text tokenizes exactly as the whole
// document, UTF-8 checks, names and options, the session limit, and that
// acknowledged ingests survive reopening the data directory.
#include "src/server/session_manager.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/utf8.h"
#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/server/document_ingest.h"
#include "src/server/validation.h"
#include "tests/base/faulty_env.h"

namespace fot {
namespace {

std::string ManagerCorpus() {
  const std::vector<std::string> words = {"the",    "river", "stone", "house", "quiet", "bright",
                                          "window", "apple", "sees",  "birds", "and",   "a"};
  std::string corpus;
  for (int i = 0; i < 500; ++i) {
    for (int w = 0; w < 9; ++w) corpus += words[(i * 7 + w * 5) % words.size()] + " ";
    corpus += std::to_string(i * 37 % 1000) + ".\n";
    if (i % 10 == 0) corpus += "Café crème, naïve façade: ça coûte 5 €.\n";
    if (i % 15 == 0) corpus += "Καλημέρα κόσμε. 東京は大きい。\n";
  }
  return corpus;
}

class ManagerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = ::testing::TempDir() + "/manager_model";
    std::filesystem::create_directories(dir);
    {
      std::ofstream out(dir + "/corpus.txt");
      out << ManagerCorpus();
    }
    ASSERT_TRUE(TrainTokenizer(dir + "/corpus.txt", 400, dir + "/tokenizer.model").ok());
    ModelConfig c;
    c.model_type = "longllama";
    c.vocab_size = 400;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 16;
    c.last_context_length = 8;
    c.mem_layers = {1};
    RandomCheckpointOptions options;
    options.init_std = 0.3f;
    ASSERT_TRUE(WriteRandomCheckpoint(dir, c, options).ok());
    engine_ = Engine::Load(dir)->release();
    tokenizer_ = Tokenizer::Load(dir + "/tokenizer.model")->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete tokenizer_;
  }

  std::unique_ptr<SessionManager> Open(const std::string& data_dir, int max_sessions = 4,
                                       Env* env = Env::Default()) {
    SessionManagerOptions options;
    options.data_dir = data_dir;
    options.env = env;
    options.max_sessions = max_sessions;
    options.defaults.memory = engine_->DefaultMemoryOptions();
    std::vector<std::string> errors;
    auto manager = SessionManager::Open(engine_, tokenizer_, options, &errors);
    EXPECT_TRUE(manager.ok()) << manager.status();
    EXPECT_TRUE(errors.empty()) << errors.front();
    return *std::move(manager);
  }

  // Tokens of `text` fed in the given pieces.
  static std::vector<int> Chunked(const std::vector<std::string>& pieces) {
    DocumentTokenizer document(tokenizer_, 0);
    std::vector<int> ids;
    for (size_t i = 0; i < pieces.size(); ++i) {
      absl::Status status = document.Feed(pieces[i], i + 1 == pieces.size(), &ids);
      EXPECT_TRUE(status.ok()) << status;
    }
    return ids;
  }

  static Engine* engine_;
  static Tokenizer* tokenizer_;
};

Engine* ManagerTest::engine_ = nullptr;
Tokenizer* ManagerTest::tokenizer_ = nullptr;

// Inputs where a naive per-chunk Encode goes wrong: runs of spaces, leading
// and trailing spaces, newlines and tabs, SentencePiece's own "▁", multi-byte
// characters (2, 3 and 4 bytes) that chunk boundaries split.
const std::vector<std::string>& TrickyTexts() {
  static const auto* texts = new std::vector<std::string>{
      "the river sees birds and a bright window",
      "  leading spaces, double  spaces   and trailing  ",
      "line one\nline two\n\n\ttabbed\t words \n",
      "Café crème, naïve façade: ça coûte 5 €. Καλημέρα κόσμε. 東京は大きい。",
      "emoji 😀😀 in😀the middle 🍎 apple",
      "a▁literal ▁ space symbol▁▁ and  ▁x",
      "x",
      " ",
      "nospacesatallbutquitealongword",
  };
  return *texts;
}

TEST_F(ManagerTest, ChunkedTextTokenizesAsTheWholeDocument) {
  std::mt19937 rng(5);
  for (const std::string& text : TrickyTexts()) {
    const std::vector<int> whole = tokenizer_->Encode(text);
    // Every single cut, including cuts inside UTF-8 characters.
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      EXPECT_EQ(Chunked({text.substr(0, cut), text.substr(cut)}), whole)
          << "text '" << text << "' cut at byte " << cut;
    }
    // Random chunkings, 1 to 7 bytes per chunk, and empty chunks.
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<std::string> pieces;
      for (size_t i = 0; i < text.size();) {
        const size_t n = std::min<size_t>(rng() % 8, text.size() - i);
        pieces.push_back(text.substr(i, n));
        i += n;
      }
      pieces.push_back("");
      EXPECT_EQ(Chunked(pieces), whole) << "text '" << text << "' trial " << trial;
    }
  }
}

TEST_F(ManagerTest, ResumedTokenizerContinuesAtABoundary) {
  const std::string text = "the river  sees birds. Café 東京 and a bright window";
  const std::vector<int> whole = tokenizer_->Encode(text);
  DocumentTokenizer first(tokenizer_, 0);
  std::vector<int> ids;
  ASSERT_TRUE(first.Feed(text.substr(0, 23), false, &ids).ok());
  ASSERT_GT(first.consumed(), 0);
  // A new stream resumes from what was consumed.
  DocumentTokenizer second(tokenizer_, first.consumed());
  ASSERT_TRUE(second.Feed(text.substr(first.consumed()), true, &ids).ok());
  EXPECT_EQ(ids, whole);
}

TEST_F(ManagerTest, InvalidUtf8IsRejected) {
  const std::vector<std::string> invalid = {"\xff", "ab\xc0\xaf", "\xed\xa0\x80",
                                            "\xf4\x90\x80\x80", "a\x80"};
  for (const std::string& bad : invalid) {
    DocumentTokenizer document(tokenizer_, 0);
    std::vector<int> ids;
    absl::Status status = document.Feed(bad, false, &ids);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  // A character cut by the chunk boundary is fine until the document ends.
  DocumentTokenizer document(tokenizer_, 0);
  std::vector<int> ids;
  EXPECT_TRUE(document.Feed("price 5 \xe2\x82", false, &ids).ok());
  EXPECT_EQ(document.Feed("", true, &ids).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateUtf8("\xe2\x82\xac", false).ok());
}

TEST_F(ManagerTest, NamesAndOptions) {
  EXPECT_TRUE(ValidateName("a-b_c.9", "session").ok());
  for (const std::string& bad :
       std::vector<std::string>{"", ".hidden", "a/b", "with space", std::string(65, 'x')}) {
    EXPECT_EQ(ValidateName(bad, "session").code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  SessionOptions defaults;
  const ModelConfig& config = engine_->config();
  auto knn = ResolveSessionOptions({"knn:4", "hnsw:m=16", "bf16", 4}, defaults, config);
  ASSERT_TRUE(knn.ok()) << knn.status();
  EXPECT_EQ(knn->retrieval.mode, Retrieval::Mode::kKnn);
  EXPECT_EQ(knn->retrieval.top_k, 4);
  EXPECT_EQ(knn->memory.index_kind, IndexKind::kHnsw);
  EXPECT_EQ(knn->memory.hnsw_m, 16);
  EXPECT_EQ(knn->memory.dtype, StorageType::kBFloat16);
  EXPECT_EQ(knn->last_context_length, 4);
  for (const SessionOptionsSpec& bad :
       {SessionOptionsSpec{"knn:0", "", "", 0}, SessionOptionsSpec{"sparse", "", "", 0},
        SessionOptionsSpec{"", "btree", "", 0}, SessionOptionsSpec{"", "ivf:nlist=x", "", 0},
        SessionOptionsSpec{"", "", "f8", 0}, SessionOptionsSpec{"", "", "", 17},
        SessionOptionsSpec{"", "", "", -1}}) {
    EXPECT_EQ(ResolveSessionOptions(bad, defaults, config).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad.retrieval << bad.index << bad.memory_dtype << bad.last_context_length;
  }
}

TEST_F(ManagerTest, LimitsDuplicatesAndDeletion) {
  const std::string data = ::testing::TempDir() + "/manager_limits";
  auto manager = Open(data, 2);
  ASSERT_TRUE(manager->Create("one", {}).ok());
  EXPECT_EQ(manager->Create("one", {}).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(manager->Create("two", {}).ok());
  EXPECT_EQ(manager->Create("three", {}).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(manager->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(std::filesystem::exists(data + "/sessions/one/state/session.json"));
  ASSERT_TRUE(manager->Delete("one").ok());
  EXPECT_FALSE(std::filesystem::exists(data + "/sessions/one"));
  EXPECT_EQ(manager->Delete("one").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager->Create("three", {}).ok());
  manager->Shutdown();
  EXPECT_EQ(manager->Create("four", {}).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ManagerTest, AcknowledgedIngestSurvivesReopening) {
  const std::string data = ::testing::TempDir() + "/manager_reopen";
  const std::string text = "the river sees birds and a bright window. the quiet house";
  int64_t acknowledged = 0;
  {
    auto manager = Open(data);
    ASSERT_TRUE(manager->Create("s", {}).ok());
    auto ingest = DocumentIngest::Open(manager.get(), {"s", "doc", false, 0, true});
    ASSERT_TRUE(ingest.ok()) << ingest.status();
    auto ack = (*ingest)->Chunk(text.substr(0, 30), {}, false);
    ASSERT_TRUE(ack.ok()) << ack.status();
    acknowledged = ack->resume_offset;
    EXPECT_GT(acknowledged, 0);
    EXPECT_LE(acknowledged, 30);
    // The stream breaks here: no Close, no end of document.
  }
  auto manager = Open(data);
  auto session = manager->Get("s");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->Document("doc").offset, acknowledged);
  // Resume from an earlier offset: the overlap is skipped.
  auto ingest = DocumentIngest::Open(manager.get(), {"s", "doc", true, 5, false});
  ASSERT_TRUE(ingest.ok()) << ingest.status();
  EXPECT_EQ((*ingest)->Ack().resume_offset, acknowledged);
  auto ack = (*ingest)->Chunk(text.substr(5), {}, true);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(ack->complete);
  EXPECT_EQ(ack->resume_offset, static_cast<int64_t>(text.size()));
  std::vector<int> expected = {tokenizer_->bos_id()};
  for (int t : tokenizer_->Encode(text)) expected.push_back(t);
  EXPECT_EQ((*session)->session().StreamTokens(0, 1000), expected);
  ingest->reset();  // ends the stream (releases the session's writer lock)
  // Beyond what the server holds, or a new document with an offset.
  EXPECT_EQ(DocumentIngest::Open(manager.get(), {"s", "other", true, 3, false}).status().code(),
            absl::StatusCode::kOutOfRange);
}

// A disk that fails at any one write while a document streams in: the chunk
// gets an error or an acknowledgement, and after a restart the session holds
// at least everything acknowledged and loads without errors.
TEST_F(ManagerTest, AFailingDiskDuringIngestLosesNothingAcknowledged) {
  const std::string text = "the river sees birds and a bright window. the quiet house";
  const std::string base = ::testing::TempDir() + "/manager_failing_disk";
  std::filesystem::remove_all(base);
  int64_t first = 0;
  {
    auto manager = Open(base);
    ASSERT_TRUE(manager->Create("s", {}).ok());
    auto ingest = DocumentIngest::Open(manager.get(), {"s", "doc", false, 0, true});
    ASSERT_TRUE(ingest.ok()) << ingest.status();
    auto ack = (*ingest)->Chunk(text.substr(0, 30), {}, false);
    ASSERT_TRUE(ack.ok()) << ack.status();
    first = ack->resume_offset;
  }
  const std::string data = base + "_copy";
  const int operations = ForEachFailurePoint(
      [&](Env& env) -> absl::Status {
        std::filesystem::remove_all(data);
        std::filesystem::copy(base, data, std::filesystem::copy_options::recursive);
        SessionManagerOptions options;
        options.data_dir = data;
        options.env = &env;
        options.defaults.memory = engine_->DefaultMemoryOptions();
        auto manager = SessionManager::Open(engine_, tokenizer_, options, nullptr);
        if (!manager.ok()) return manager.status();
        auto ingest = DocumentIngest::Open(manager->get(), {"s", "doc", true, first, false});
        if (!ingest.ok()) return ingest.status();
        auto ack = (*ingest)->Chunk(text.substr(first), {}, true);
        return ack.ok() ? absl::OkStatus() : ack.status();
      },
      [&](const absl::Status& status, int fail_at) {
        auto manager = Open(data);  // expects no load errors
        auto session = manager->Get("s");
        ASSERT_TRUE(session.ok()) << "failing at " << fail_at << ": " << session.status();
        const int64_t offset = (*session)->Document("doc").offset;
        if (status.ok()) {
          EXPECT_EQ(offset, static_cast<int64_t>(text.size())) << fail_at;
        } else {
          EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
          EXPECT_TRUE(offset == first || offset == static_cast<int64_t>(text.size())) << fail_at;
        }
      },
      ENOSPC, /*stride=*/3);  // samples the failure points of a long save
  EXPECT_GT(operations, 20);
}

}  // namespace
}  // namespace fot
