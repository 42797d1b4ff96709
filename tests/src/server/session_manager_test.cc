// SessionManager without gRPC: chunked text tokenizes exactly as the whole
// document, UTF-8 checks, names and options, the session limit, and that
// acknowledged ingests survive reopening the data directory.
#include "src/server/session_manager.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/utf8.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "src/checkpoint/random_checkpoint.h"
#include "src/server/document_ingest.h"
#include "src/server/validation.h"
#include "src/storage/database.h"
#include "tests/base/faulty_env.h"
#include "tests/src/storage/faulty_file_system.h"

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
    auto errors = std::make_shared<std::vector<std::string>>();
    options.on_load_error = [errors](const std::string& e) { errors->push_back(e); };
    auto manager = SessionManager::Open(engine_, tokenizer_, options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    (*manager)->WaitUntilLoaded();
    EXPECT_TRUE(errors->empty()) << errors->front();
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

  // Streams `text` into a new document of `session` in chunks of `chunk`
  // bytes; the last acknowledgement.
  static IngestAck Ingest(SessionManager* manager, const std::string& session,
                          const std::string& document, const std::string& text, size_t chunk) {
    auto ingest = DocumentIngest::Open(manager, {session, document, true, 0, true});
    EXPECT_TRUE(ingest.ok()) << ingest.status();
    IngestAck last;
    for (size_t at = 0; ingest.ok() && at < text.size(); at += chunk) {
      auto ack = (*ingest)->Chunk(text.substr(at, chunk), {}, at + chunk >= text.size());
      EXPECT_TRUE(ack.ok()) << ack.status();
      if (ack.ok()) last = *ack;
      (*ingest)->AfterAck();  // as the service does between acknowledgements
    }
    return last;
  }

  // What a query sees: the log-likelihood of a fixed continuation, per token.
  static std::vector<float> Probe(SessionManager* manager, const std::string& name) {
    auto session = manager->Get(name);
    EXPECT_TRUE(session.ok()) << session.status();
    if (!session.ok()) return {};
    auto score = (*session)->session().Score(tokenizer_->Encode(" the quiet house"),
                                             tokenizer_->Encode(" sees birds"), std::nullopt);
    EXPECT_TRUE(score.ok()) << score.status();
    return score.ok() ? score->token_log_probs : std::vector<float>{};
  }

  static std::string LongText(int sentences) {
    std::string text;
    for (int i = 0; i < sentences; ++i) {
      text += "the river " + std::to_string(i * 13 % 97) + " sees birds and a bright window. ";
    }
    return text;
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
  ASSERT_TRUE(manager->Delete("one").ok());
  EXPECT_EQ(manager->Delete("one").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager->Create("three", {}).ok());
  manager->Shutdown();
  EXPECT_EQ(manager->Create("four", {}).status().code(), absl::StatusCode::kUnavailable);
  manager.reset();
  // Deleted means gone from the data directory too; the others come back.
  manager = Open(data, 2);
  EXPECT_EQ(manager->Get("one").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager->Get("two").ok());
  EXPECT_TRUE(manager->Get("three").ok());
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

// A disk that fails at any one write of the storage engine while a document
// streams in (ENOSPC that stays, or one EIO): the chunk gets an error or an
// acknowledgement, and after a restart the session holds at least everything
// acknowledged, loads without errors, and resumes to the one-shot stream.
TEST_F(ManagerTest, AFailingDiskDuringIngestLosesNothingAcknowledged) {
  const std::string text =
      "the river sees birds and a bright window. the quiet house stands by the old mill, where "
      "the miller keeps his grain and the children play until the evening bell rings";
  const std::string base = ::testing::TempDir() + "/manager_failing_disk";
  std::filesystem::remove_all(base);
  {
    auto manager = Open(base);
    ASSERT_TRUE(manager->Create("s", {}).ok());
  }
  const std::string data = base + "_copy";
  std::vector<int> expected = {tokenizer_->bos_id()};
  for (int t : tokenizer_->Encode(text)) expected.push_back(t);
  int runs = 0;
  for (const bool no_space : {true, false}) {
    for (int fail_at = 1;; fail_at += 2, ++runs) {
      SCOPED_TRACE(testing::Message() << (no_space ? "ENOSPC" : "EIO") << " at " << fail_at);
      std::filesystem::remove_all(data);
      std::filesystem::copy(base, data, std::filesystem::copy_options::recursive);
      auto fs = std::make_shared<FaultyFileSystem>(fail_at, no_space, /*stays_failed=*/no_space);
      int64_t acknowledged = 0;
      {
        SessionManagerOptions options;
        options.data_dir = data;
        options.file_system = fs;
        options.defaults.memory = engine_->DefaultMemoryOptions();
        auto manager = SessionManager::Open(engine_, tokenizer_, options);
        if (manager.ok()) {
          (*manager)->WaitUntilLoaded();
          auto ingest = DocumentIngest::Open(manager->get(), {"s", "doc", false, 0, true});
          for (size_t at = 0; ingest.ok() && at < text.size(); at += 16) {
            auto ack = (*ingest)->Chunk(text.substr(at, 16), {}, at + 16 >= text.size());
            if (!ack.ok()) {
              EXPECT_TRUE(absl::IsResourceExhausted(ack.status()) ||
                          absl::IsUnavailable(ack.status()))
                  << ack.status();
              EXPECT_EQ(ack.status().message().find(data), std::string::npos) << "a server path";
              break;
            }
            acknowledged = ack->resume_offset;
          }
        }
      }
      auto manager = Open(data);  // a good disk: expects no load errors
      auto session = manager->Get("s");
      ASSERT_TRUE(session.ok()) << session.status();
      const int64_t offset = (*session)->Document("doc").offset;
      EXPECT_GE(offset, acknowledged);
      if (offset < static_cast<int64_t>(text.size())) {
        auto ingest = DocumentIngest::Open(manager.get(), {"s", "doc", true, offset, true});
        ASSERT_TRUE(ingest.ok()) << ingest.status();
        ASSERT_TRUE((*ingest)->Chunk(text.substr(offset), {}, true).ok());
      }
      EXPECT_EQ((*session)->session().StreamTokens(0, 1000), expected);
      if (!fs->failed()) break;  // the run got through: every point was tried
    }
  }
  EXPECT_GT(runs, 20);
}

// A write that fails once (EIO) fails its chunk, and only it: the same
// server resumes the document from the acknowledged offset, the session's
// stream is whole, and its queries answer (issue 16, finding 3).
TEST_F(ManagerTest, AChunkThatFailsOnceLeavesTheSessionWorking) {
  const std::string text = LongText(12);
  int failures = 0;
  for (int fail_at = 3; fail_at < 200; fail_at += 7) {
    SCOPED_TRACE(testing::Message() << "EIO at " << fail_at);
    const std::string data = ::testing::TempDir() + "/manager_fails_once";
    std::filesystem::remove_all(data);
    SessionManagerOptions options;
    options.data_dir = data;
    options.file_system = std::make_shared<FaultyFileSystem>(fail_at, false, false);
    options.defaults.memory = engine_->DefaultMemoryOptions();
    auto opened = SessionManager::Open(engine_, tokenizer_, options);
    if (!opened.ok()) continue;  // the failure hit opening the database
    std::unique_ptr<SessionManager> manager = *std::move(opened);
    manager->WaitUntilLoaded();
    if (!manager->Create("s", {}).ok()) continue;  // ...or creating the session
    int64_t offset = 0;
    bool failed = false;
    for (int attempt = 0; attempt < 3 && offset < static_cast<int64_t>(text.size()); ++attempt) {
      auto ingest =
          DocumentIngest::Open(manager.get(), {"s", "doc", offset > 0 || failed, offset, true});
      ASSERT_TRUE(ingest.ok()) << ingest.status();
      for (size_t at = offset; at < text.size(); at += 40) {
        auto ack = (*ingest)->Chunk(text.substr(at, 40), {}, at + 40 >= text.size());
        if (!ack.ok()) {
          failed = true;
          break;
        }
        offset = ack->resume_offset;
        (*ingest)->AfterAck();
      }
      if (!failed || offset >= static_cast<int64_t>(text.size())) {
        auto closed = (*ingest)->Close();
        if (!closed.ok()) failed = true;
      }
    }
    failures += failed;
    auto session = manager->Get("s");
    ASSERT_TRUE(session.ok()) << session.status();
    EXPECT_EQ((*session)->Document("doc").offset, static_cast<int64_t>(text.size()));
    std::vector<int> expected = {tokenizer_->bos_id()};
    for (int t : tokenizer_->Encode(text)) expected.push_back(t);
    EXPECT_EQ((*session)->session().StreamTokens(0, 100000), expected);
    QueryOptions query;
    query.max_tokens = 2;
    EXPECT_TRUE((*session)->session().Generate(tokenizer_->Encode(" the river"), query).ok());
  }
  EXPECT_GT(failures, 5);
}

// A restart rebuilds every index from the storage engine (from a checkpoint
// plus the entries after it, or from the entries alone) into a session whose
// queries equal those of the session before it, bit for bit.
TEST_F(ManagerTest, RestartRebuildsSessionsThatAnswerBitForBitAsBefore) {
  const std::string text = LongText(60);
  for (const std::string index : {"flat", "ivf:train_size=128", "flat:dtype=f32"}) {
    for (const int64_t checkpoint : {int64_t{64}, int64_t{1} << 40}) {
      SCOPED_TRACE(index + " checkpoint every " + std::to_string(checkpoint));
      const std::string data = ::testing::TempDir() + "/manager_restart";
      std::filesystem::remove_all(data);
      SessionManagerOptions options;
      options.data_dir = data;
      options.checkpoint_entries = checkpoint;
      options.defaults.memory = engine_->DefaultMemoryOptions();
      std::vector<float> before;
      int64_t committed = 0;
      {
        auto manager = *SessionManager::Open(engine_, tokenizer_, options);
        ASSERT_TRUE(manager->Create("s", {"knn:4", index, "", 0}).ok());
        Ingest(manager.get(), "s", "doc", text, 37);  // its end commits what it can
        committed = (*manager->Get("s"))->session().Progress().committed_tokens;
        before = Probe(manager.get(), "s");
      }
      EXPECT_GT(committed, 256);  // enough to train the IVF index
      EXPECT_EQ(std::filesystem::is_empty(data + "/index"), checkpoint > committed);
      auto manager = *SessionManager::Open(engine_, tokenizer_, options);
      manager->WaitUntilLoaded();
      EXPECT_EQ(Probe(manager.get(), "s"), before);
      EXPECT_EQ((*manager->Get("s"))->Durable().committed_tokens, committed);
      EXPECT_EQ((*manager->Get("s"))->session().memory_entries(), committed);
    }
  }
}

// A memory checkpoint follows an index rebuild without waiting for the
// memory to grow by checkpoint_entries: a restart from an older checkpoint
// would redo the rebuild (at 1M entries, seconds of a restart).
TEST_F(ManagerTest, AnIndexRebuildIsCheckpointedRightAway) {
  const std::string data = ::testing::TempDir() + "/manager_rebuild_checkpoint";
  std::filesystem::remove_all(data);
  SessionManagerOptions options;
  options.data_dir = data;
  options.checkpoint_entries = 600;  // by growth: at 600 entries, then at 1200
  options.defaults.memory = engine_->DefaultMemoryOptions();
  std::vector<float> before;
  {
    auto manager = *SessionManager::Open(engine_, tokenizer_, options);
    ASSERT_TRUE(manager->Create("s", {"knn:4", "ivf:train_size=700", "", 0}).ok());
    Ingest(manager.get(), "s", "doc", LongText(90), 64);
    const int64_t committed = (*manager->Get("s"))->session().Progress().committed_tokens;
    ASSERT_GT(committed, 700);   // the index was built at 700 entries...
    ASSERT_LT(committed, 1200);  // ...and the memory did not grow enough for a checkpoint
    before = Probe(manager.get(), "s");
  }
  int64_t newest = 0;  // entries of the newest checkpoint (index/<data>-<entries, hex>)
  for (const auto& dir : std::filesystem::directory_iterator(data + "/index")) {
    const std::string name = dir.path().filename().string();
    newest = std::max<int64_t>(newest, std::stoll(name.substr(name.find('-') + 1), nullptr, 16));
  }
  EXPECT_GE(newest, 700);
  auto manager = *SessionManager::Open(engine_, tokenizer_, options);
  manager->WaitUntilLoaded();
  EXPECT_EQ(Probe(manager.get(), "s"), before);
}

// Records of one session damaged on disk (a wrong JSON type, a record that
// does not parse): that session is reported with what is wrong, the others
// serve, and DeleteSession frees its name.
TEST_F(ManagerTest, ADamagedSessionIsReportedAloneAndCanBeDeleted) {
  const std::string data = ::testing::TempDir() + "/manager_damaged";
  std::filesystem::remove_all(data);
  {
    auto manager = Open(data);
    for (const char* name : {"good", "typed", "garbled"}) {
      ASSERT_TRUE(manager->Create(name, {}).ok());
      Ingest(manager.get(), name, "doc", LongText(5), 50);
    }
  }
  {
    auto db = Database::Open(data + "/db");
    ASSERT_TRUE(db.ok()) << db.status();
    rocksdb::WriteBatch batch;
    // A string where the header has a number.
    auto header = (*db)->Get("n/typed");
    ASSERT_TRUE(header.ok() && header->has_value());
    nlohmann::json typed = nlohmann::json::parse(**header);
    typed["data"] = "seven";
    batch.Put("n/typed", typed.dump());
    // A progress record that is not JSON.
    header = (*db)->Get("n/garbled");
    ASSERT_TRUE(header.ok() && header->has_value());
    const uint64_t data_id = nlohmann::json::parse(**header)["data"].get<uint64_t>();
    char key[64];
    std::snprintf(key, sizeof(key), "d/%016llx/prog", static_cast<unsigned long long>(data_id));
    batch.Put(key, "{not json");
    ASSERT_TRUE((*db)->Write(&batch).ok());
  }
  SessionManagerOptions options;
  options.data_dir = data;
  options.defaults.memory = engine_->DefaultMemoryOptions();
  auto errors = std::make_shared<std::vector<std::string>>();
  options.on_load_error = [errors](const std::string& e) { errors->push_back(e); };
  auto manager = *SessionManager::Open(engine_, tokenizer_, options);
  manager->WaitUntilLoaded();
  EXPECT_EQ(errors->size(), 2u) << absl::StrJoin(*errors, "\n");
  EXPECT_FALSE(Probe(manager.get(), "good").empty());
  for (const char* name : {"typed", "garbled"}) {
    const absl::Status status = manager->Get(name).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_NE(status.message().find(name), std::string::npos) << status;
    EXPECT_EQ(status.message().find(data), std::string::npos) << "a server path: " << status;
    EXPECT_EQ(manager->Create(name, {}).status().code(), absl::StatusCode::kAlreadyExists);
    ASSERT_TRUE(manager->Delete(name).ok());
    EXPECT_TRUE(manager->Create(name, {}).ok());
  }
}

// Snapshots share the session's data: saving one writes a few records, the
// session goes on growing, and the snapshot loads as the session was, also
// after the session is deleted and the server restarts.
TEST_F(ManagerTest, SnapshotsShareDataAndOutliveTheirSession) {
  const std::string data = ::testing::TempDir() + "/manager_snapshots";
  std::filesystem::remove_all(data);
  std::vector<float> at_save;
  {
    auto manager = Open(data);
    ASSERT_TRUE(manager->Create("s", {"knn:4", "ivf:train_size=128", "", 0}).ok());
    Ingest(manager.get(), "s", "one", LongText(40), 64);
    at_save = Probe(manager.get(), "s");
    auto bytes = manager->SaveSnapshot("s", "snap", false);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_GT(*bytes, 0);
    Ingest(manager.get(), "s", "two", LongText(30), 64);
    EXPECT_NE(Probe(manager.get(), "s"), at_save);
    ASSERT_TRUE(manager->LoadSnapshot("snap", "copy").ok());
    EXPECT_EQ(Probe(manager.get(), "copy"), at_save);
    Ingest(manager.get(), "copy", "three", LongText(20), 64);  // grows on its own
    ASSERT_TRUE(manager->Delete("s").ok());
  }
  auto manager = Open(data);
  EXPECT_EQ(manager->Get("s").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(manager->Get("copy").ok());
  EXPECT_EQ((*manager->Get("copy"))->session().Documents().size(), 2u);
  ASSERT_TRUE(manager->LoadSnapshot("snap", "again").ok());
  EXPECT_EQ(Probe(manager.get(), "again"), at_save);
  EXPECT_EQ(manager->Snapshots(), std::vector<std::string>{"snap"});
  // Names freed by a delete are new sessions again, snapshots or not.
  ASSERT_TRUE(manager->Delete("again").ok());
  ASSERT_TRUE(manager->Create("again", {}).ok());
  ASSERT_TRUE(manager->Create("s", {}).ok());
  Ingest(manager.get(), "again", "fresh", LongText(10), 64);
  EXPECT_EQ((*manager->Get("again"))->session().Documents().size(), 1u);
  ASSERT_TRUE(manager->SaveSnapshot("again", "snap", /*overwrite=*/true).ok());
  ASSERT_TRUE(manager->Create("after", {}).ok());
}

// Every session kind comes back from a crash right after its creation,
// before anything was ingested.
TEST_F(ManagerTest, SessionsComeBackFromACrashRightAfterCreation) {
  const std::string data = ::testing::TempDir() + "/manager_created";
  std::filesystem::remove_all(data);
  {
    auto manager = Open(data);
    ASSERT_TRUE(manager->Create("fot", {}).ok());
    ASSERT_TRUE(manager->Create("lambda", {"", "", "", 0, "lambda"}).ok());
  }
  auto manager = Open(data);  // expects no load errors
  for (const char* name : {"fot", "lambda"}) {
    Ingest(manager.get(), name, "doc", LongText(10), 64);
    EXPECT_FALSE(Probe(manager.get(), name).empty()) << name;
  }
}

// A data directory of the earlier layout (sessions/<name>/state and
// ingest.json, snapshots/<name>/...) moves into the storage engine at the
// first start: same answers, resumable documents, the old files gone.
TEST_F(ManagerTest, AnEarlierLayoutMovesIntoTheStorageEngine) {
  const std::string data = ::testing::TempDir() + "/manager_old_layout";
  std::filesystem::remove_all(data);
  SessionOptions options;
  options.memory = engine_->DefaultMemoryOptions();
  auto session = *Session::Create(engine_, options);
  ASSERT_TRUE(session->StartDocument("doc").ok());
  const std::string text = LongText(20);
  const std::vector<int> ids = tokenizer_->Encode(text);
  ASSERT_TRUE(session->AppendToDocument("doc", ids).ok());
  const std::string ingest = absl::StrCat(
      R"({"format":"fotserve-ingest 1","documents":{"doc":[{"text":true,"complete":false,"offset":)",
      text.size(), R"(,"tokens":)", ids.size(), "}]}}");
  for (const std::string& dir : {data + "/sessions/old", data + "/snapshots/oldsnap"}) {
    ASSERT_TRUE(session->Save(dir + "/state").ok());
    std::ofstream(dir + "/ingest.json") << ingest;
  }
  // And one whose session.json has a string where a number belongs.
  ASSERT_TRUE(session->Save(data + "/sessions/broken/state").ok());
  {
    std::ifstream in(data + "/sessions/broken/state/session.json");
    nlohmann::json json = nlohmann::json::parse(in);
    json["committed"] = "many";
    std::ofstream(data + "/sessions/broken/state/session.json") << json.dump();
  }
  auto expected = session->Score(tokenizer_->Encode(" the quiet house"),
                                 tokenizer_->Encode(" sees birds"), std::nullopt);
  ASSERT_TRUE(expected.ok());
  SessionManagerOptions manager_options;
  manager_options.data_dir = data;
  manager_options.defaults.memory = engine_->DefaultMemoryOptions();
  std::vector<std::string> errors;
  manager_options.on_load_error = [&errors](const std::string& e) { errors.push_back(e); };
  auto manager = *SessionManager::Open(engine_, tokenizer_, manager_options);
  manager->WaitUntilLoaded();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("'broken'"), std::string::npos) << errors[0];
  EXPECT_TRUE(std::filesystem::exists(data + "/sessions/broken"));  // left for the operator
  EXPECT_EQ(Probe(manager.get(), "old"), expected->token_log_probs);
  EXPECT_FALSE(std::filesystem::exists(data + "/sessions/old"));
  EXPECT_FALSE(std::filesystem::exists(data + "/snapshots/oldsnap"));
  EXPECT_EQ((*manager->Get("old"))->SavedDocument("doc").offset, static_cast<int64_t>(text.size()));
  ASSERT_TRUE(manager->LoadSnapshot("oldsnap", "fromsnap").ok());
  EXPECT_EQ(Probe(manager.get(), "fromsnap"), expected->token_log_probs);
}

// DeleteSession racing CreateSession of the same name: every call gets a
// clear status, and whatever the manager says at the end survives a restart.
TEST_F(ManagerTest, DeleteAndCreateOfOneNameRaceToAClearOutcome) {
  const std::string data = ::testing::TempDir() + "/manager_race";
  std::filesystem::remove_all(data);
  bool exists = false;
  {
    auto manager = Open(data);
    std::vector<std::thread> threads;
    std::atomic<int> unexpected{0};
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 40; ++i) {
          const absl::Status s =
              (i + t) % 2 == 0 ? manager->Create("x", {}).status() : manager->Delete("x");
          if (!s.ok() && !absl::IsNotFound(s) && !absl::IsAlreadyExists(s) &&
              !absl::IsUnavailable(s)) {
            ++unexpected;
            ADD_FAILURE() << s;
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(unexpected, 0);
    exists = manager->Get("x").ok();
  }
  auto manager = Open(data);
  EXPECT_EQ(manager->Get("x").ok(), exists);
  if (!exists) {
    EXPECT_TRUE(manager->Create("x", {}).ok());
  }
}

// The memory checkpoint is derived state: a damaged one is reported and the
// session rebuilt from its records, with the same answers. A second server
// on the same data directory is refused.
TEST_F(ManagerTest, ADamagedCheckpointIsRebuiltFromTheRecords) {
  const std::string data = ::testing::TempDir() + "/manager_checkpoint";
  std::filesystem::remove_all(data);
  SessionManagerOptions options;
  options.data_dir = data;
  options.checkpoint_entries = 64;
  options.defaults.memory = engine_->DefaultMemoryOptions();
  std::vector<float> before;
  {
    auto manager = *SessionManager::Open(engine_, tokenizer_, options);
    ASSERT_TRUE(manager->Create("s", {"knn:4", "ivf:train_size=128", "", 0}).ok());
    Ingest(manager.get(), "s", "doc", LongText(40), 50);
    before = Probe(manager.get(), "s");
    EXPECT_EQ(SessionManager::Open(engine_, tokenizer_, options).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  int damaged = 0;
  for (const auto& file : std::filesystem::recursive_directory_iterator(data + "/index")) {
    if (file.is_regular_file() && file.path().filename() != "MANIFEST") {
      std::ofstream(file.path(), std::ios::trunc) << "damaged";
      ++damaged;
    }
  }
  ASSERT_GT(damaged, 0);
  std::vector<std::string> errors;
  options.on_load_error = [&errors](const std::string& e) { errors.push_back(e); };
  auto manager = *SessionManager::Open(engine_, tokenizer_, options);
  manager->WaitUntilLoaded();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("rebuilding"), std::string::npos) << errors[0];
  EXPECT_EQ(Probe(manager.get(), "s"), before);
}

}  // namespace
}  // namespace fot
