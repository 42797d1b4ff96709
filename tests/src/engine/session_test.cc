// The session invariant (DESIGN.md §2): for any chunking of the ingested
// documents and any question, a query's logits and greedy tokens equal one
// Engine::Prefill over all documents' tokens followed by the question, then
// Engine::Append per generated token. Plus: queries leave the session as it
// was, keep_turn, deletion, save/load, and concurrent queries; all of it for
// lambda attention too, where the equality is exact (the session commits the
// stream in the blocks a one-shot call runs).
#include "src/engine/session.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "src/checkpoint/random_checkpoint.h"
#include "src/model/kernels.h"
#include "tests/base/faulty_env.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

constexpr int kVocab = 97;

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = LoadEngine(WriteSmallModel("session_model", SmallModelConfig()));
    ASSERT_NE(engine_, nullptr);
    std::mt19937 rng(9);
    for (int d = 0; d < 3; ++d) {
      documents_.emplace_back();
      for (int i = 0; i < 37 + 11 * d; ++i) documents_.back().push_back(rng() % kVocab);
    }
    for (int i = 0; i < 5; ++i) question_.push_back(rng() % kVocab);
  }

  std::unique_ptr<Session> NewSession(const AttentionOptions& attention = {}) {
    SessionOptions options;
    options.memory.dtype = StorageType::kFloat32;
    options.attention = attention;
    auto session = Session::Create(engine_.get(), options);
    EXPECT_TRUE(session.ok()) << session.status();
    return *std::move(session);
  }

  // Ingests every document, cut into chunks of `chunk` tokens.
  void Ingest(Session* session, size_t chunk) {
    for (size_t d = 0; d < documents_.size(); ++d) {
      const std::string name = "doc" + std::to_string(d);
      ASSERT_TRUE(session->StartDocument(name).ok());
      for (size_t i = 0; i < documents_[d].size(); i += chunk) {
        const size_t n = std::min(chunk, documents_[d].size() - i);
        ASSERT_TRUE(session->AppendToDocument(name, {documents_[d].data() + i, n}).ok());
      }
    }
  }

  struct Answer {
    std::vector<int> tokens;
    std::vector<float> logits;  // each generated token's logits row, concatenated
  };

  Answer Ask(Session* session, int max_tokens = 24) {
    Answer answer;
    QueryOptions options;
    options.max_tokens = max_tokens;
    options.stop_at_eos = false;
    options.on_token = [&](const GeneratedToken& t, const float* logits) {
      answer.logits.insert(answer.logits.end(), logits, logits + kVocab);
      return true;
    };
    auto result = session->Generate(question_, options);
    EXPECT_TRUE(result.ok()) << result.status();
    answer.tokens = result->tokens;
    return answer;
  }

  // The one-shot reference: everything in one Prefill, then greedy Appends.
  Answer OneShot(int max_tokens = 24, const AttentionOptions& attention = {}) {
    std::vector<int> all;
    for (const auto& d : documents_) all.insert(all.end(), d.begin(), d.end());
    all.insert(all.end(), question_.begin(), question_.end());
    Answer answer;
    GreedyOneShot(*engine_, all, max_tokens, attention, &answer.tokens, &answer.logits);
    return answer;
  }

  // The reference of Score: one Prefill over the documents, `question` and
  // `continuation`, and the log-softmax of the rows that predict the
  // continuation's tokens.
  double OneShotLogLikelihood(const std::vector<int>& question,
                              const std::vector<int>& continuation,
                              const AttentionOptions& attention = {}) {
    std::vector<int> all;
    for (const auto& d : documents_) all.insert(all.end(), d.begin(), d.end());
    all.insert(all.end(), question.begin(), question.end());
    all.insert(all.end(), continuation.begin(), continuation.end());
    ModelState state = *engine_->NewState(engine_->DefaultMemoryOptions(), attention);
    std::vector<float> logits;
    EXPECT_TRUE(engine_
                    ->Prefill(all, 8, &state, LogitsMode::kAll,
                              [&](int64_t, int64_t rows, const float* l) {
                                logits.insert(logits.end(), l, l + rows * kVocab);
                              })
                    .ok());
    double expected = 0;
    for (size_t i = 0; i < continuation.size(); ++i) {
      const size_t row = all.size() - continuation.size() - 1 + i;
      double sum = 0;
      for (int v = 0; v < kVocab; ++v) sum += std::exp(logits[row * kVocab + v]);
      expected += logits[row * kVocab + continuation[i]] - std::log(sum);
    }
    return expected;
  }

  static float MaxAbsDifference(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float worst = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      worst = std::max(worst, std::fabs(a[i] - b[i]));
    }
    return worst;
  }

  std::unique_ptr<Engine> engine_;
  std::vector<std::vector<int>> documents_;
  std::vector<int> question_;
};

TEST_F(SessionTest, AnyChunkingGivesTheLogitsAndTokensOfOneShotProcessing) {
  const Answer expected = OneShot();
  for (size_t chunk : {1, 3, 16, 1000}) {
    std::unique_ptr<Session> session = NewSession();
    Ingest(session.get(), chunk);
    const Answer actual = Ask(session.get());
    EXPECT_EQ(actual.tokens, expected.tokens) << "chunk " << chunk;
    EXPECT_LE(MaxAbsDifference(actual.logits, expected.logits), 1e-4) << "chunk " << chunk;
  }
}

TEST_F(SessionTest, WindowsAreCommittedOnlyOnceLMinusOneTokensFollowThem) {
  std::unique_ptr<Session> session = NewSession();
  ASSERT_TRUE(session->StartDocument("a").ok());
  std::vector<int> tokens(22, 5);  // W + L − 2: one token short
  IngestProgress p = *session->AppendToDocument("a", tokens);
  EXPECT_EQ(p.committed_tokens, 0);
  const int one = 6;
  p = *session->AppendToDocument("a", {&one, 1});
  EXPECT_EQ(p.committed_tokens, 16);
  EXPECT_EQ(p.stream_tokens, 23);
  EXPECT_EQ(session->Stats().layers[0].heads[0].entries, 16);
}

TEST_F(SessionTest, QueriesLeaveTheSessionUnchangedAndRepeatable) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 7);
  const IngestProgress before = session->Progress();
  const int64_t entries = session->Stats().layers[0].heads[0].entries;
  const Answer first = Ask(session.get(), 40);  // generates past W: flushes into the overlay
  EXPECT_EQ(session->Progress().stream_tokens, before.stream_tokens);
  EXPECT_EQ(session->Stats().layers[0].heads[0].entries, entries);
  EXPECT_EQ(Ask(session.get(), 40).tokens, first.tokens);
}

TEST_F(SessionTest, KeepTurnAppendsQuestionAndAnswerAsADocument) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  const int64_t before = session->Progress().stream_tokens;
  QueryOptions options;
  options.max_tokens = 4;
  options.stop_at_eos = false;
  options.keep_turn = true;
  ASSERT_TRUE(session->Generate(question_, options).ok());
  EXPECT_EQ(session->Progress().stream_tokens, before + 5 + 4);
  EXPECT_EQ(session->Documents().back().name, "turn-3");
}

TEST_F(SessionTest, CallerCanStopGenerationAfterAnyToken) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  QueryOptions options;
  options.max_tokens = 20;
  int seen = 0;
  options.on_token = [&](const GeneratedToken&, const float*) { return ++seen < 3; };
  auto result = session->Generate(question_, options);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->stopped_by_caller);
  EXPECT_EQ(result->tokens.size(), 3u);
}

TEST_F(SessionTest, ACancelledQueryStopsWithinOneWindowOfItsPrefill) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  // A question of many windows (W = 16): asked before each window, the
  // caller says stop at the third ask; the prefill runs no further.
  std::vector<int> question;
  for (int i = 0; i < 40 * 16; ++i) question.push_back(i % kVocab);
  int asked = 0;
  QueryOptions options;
  options.max_tokens = 4;
  options.cancelled = [&] { return ++asked >= 3; };
  auto result = session->Generate(question, options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  EXPECT_EQ(asked, 3);
  auto score = session->Score(question, question_, std::nullopt, [&] { return true; });
  EXPECT_EQ(score.status().code(), absl::StatusCode::kCancelled) << score.status();
  auto search = session->Search(question, 4, std::nullopt, [&] { return true; });
  EXPECT_EQ(search.status().code(), absl::StatusCode::kCancelled) << search.status();
  // The session is untouched and answers as before.
  options.cancelled = nullptr;
  EXPECT_TRUE(session->Generate(question_, options).ok());
}

TEST_F(SessionTest, TraceNamesTheDocumentsRetrievedFrom) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  QueryOptions options;
  options.max_tokens = 2;
  options.trace = true;
  options.trace_top = 3;
  options.retrieval = *ParseRetrieval("knn:3");
  std::vector<GeneratedToken> tokens;
  options.on_token = [&](const GeneratedToken& t, const float*) {
    tokens.push_back(t);
    return true;
  };
  ASSERT_TRUE(session->Generate(question_, options).ok());
  ASSERT_EQ(tokens.size(), 2u);
  const std::vector<TracedEntry>& head0 = tokens[0].traces[1].heads[0];
  ASSERT_EQ(head0.size(), 3u);
  for (const TracedEntry& e : head0) {
    EXPECT_GE(e.provenance.document, 0);
    EXPECT_LE(e.provenance.document, 2);
  }
}

TEST_F(SessionTest, DeletedDocumentsAreNoLongerRetrieved) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  ASSERT_TRUE(session->DeleteDocument("doc0").ok());
  auto traces = session->Search(question_, 50, *ParseRetrieval("knn:50"));
  ASSERT_TRUE(traces.ok()) << traces.status();
  for (const auto& head : (*traces)[1].heads) {
    for (const TracedEntry& e : head) EXPECT_NE(e.provenance.document, 0);
  }
  EXPECT_EQ(session->DeleteDocument("doc0").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(session->DeleteDocument("nope").code(), absl::StatusCode::kNotFound);
}

TEST_F(SessionTest, SaveAndLoadKeepMemoryTailAndDocuments) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 9);
  const std::string dir = ::testing::TempDir() + "/saved_session";
  ASSERT_TRUE(session->Save(dir).ok());
  auto loaded = Session::Load(engine_.get(), dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->Progress().stream_tokens, session->Progress().stream_tokens);
  EXPECT_EQ((*loaded)->Documents().size(), 3u);
  const Answer a = Ask(session.get()), b = Ask(loaded->get());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.logits, b.logits);
  // And ingest continues where it stopped.
  const int more = 4;
  EXPECT_TRUE((*loaded)->AppendToDocument("doc2", {&more, 1}).ok());
}

// Every write of the save failing in turn: the error comes back, and the
// directory loads as the previous save or the new one, never a mixture.
TEST_F(SessionTest, AFailingDiskAtAnyWriteKeepsAWholeSave) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 9);
  const std::string dir = ::testing::TempDir() + "/session_failing_disk";
  ASSERT_TRUE(session->Save(dir).ok());
  const int64_t previous = session->Progress().stream_tokens;
  const int more[] = {4, 5, 6, 7, 8};
  ASSERT_TRUE(session->AppendToDocument("doc2", more).ok());
  const int64_t next = session->Progress().stream_tokens;
  std::unique_ptr<Session> previous_session = *Session::Load(engine_.get(), dir);
  const int operations = ForEachFailurePoint(
      [&](Env& env) { return session->Save(dir, &env); },
      [&](const absl::Status& status, int fail_at) {
        auto loaded = Session::Load(engine_.get(), dir);
        ASSERT_TRUE(loaded.ok()) << "failing at " << fail_at << ": " << loaded.status();
        const int64_t tokens = (*loaded)->Progress().stream_tokens;
        if (status.ok()) {
          EXPECT_EQ(tokens, next);
          return;
        }
        EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
        EXPECT_TRUE(tokens == previous || tokens == next) << fail_at;
        ASSERT_TRUE(previous_session->Save(dir).ok());
      },
      ENOSPC, /*stride=*/3);  // samples the failure points of a long save
  EXPECT_GT(operations, 40);
}

TEST_F(SessionTest, ScoreIsTheLogLikelihoodOfTheOneShotLogits) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  const std::vector<int> continuation = {3, 14, 15};
  auto score = session->Score(question_, continuation, std::nullopt);
  ASSERT_TRUE(score.ok()) << score.status();
  ASSERT_EQ(score->token_log_probs.size(), 3u);
  const double expected = OneShotLogLikelihood(question_, continuation);
  EXPECT_NEAR(score->log_likelihood, expected, 1e-3);
  EXPECT_NEAR(score->perplexity, std::exp(-expected / 3), 1e-2);
}

TEST_F(SessionTest, RejectsBadRequests) {
  std::unique_ptr<Session> session = NewSession();
  EXPECT_EQ(session->StartDocument("").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(session->StartDocument("a").ok());
  EXPECT_EQ(session->StartDocument("a").status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(session->StartDocument("b").ok());
  const int token = 1, bad = kVocab;
  EXPECT_EQ(session->AppendToDocument("a", {&token, 1}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(session->AppendToDocument("b", {&bad, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session->Generate({}, QueryOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  QueryOptions hot;
  hot.sampling.temperature = -1;
  EXPECT_EQ(session->Generate(question_, hot).status().code(), absl::StatusCode::kInvalidArgument);
  SessionOptions bad_options;
  bad_options.last_context_length = 17;
  EXPECT_EQ(Session::Create(engine_.get(), bad_options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Session::Load(engine_.get(), ::testing::TempDir() + "/none").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SessionTest, ConcurrentQueriesAndIngestOfOneSessionStayConsistent) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  const Answer expected = Ask(session.get(), 8);
  std::vector<std::thread> readers;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        if (Ask(session.get(), 8).tokens.empty()) ++mismatches;
      }
    });
  }
  ASSERT_TRUE(session->StartDocument("late").ok());
  for (int i = 0; i < 40; ++i) {
    const int token = i % kVocab;
    ASSERT_TRUE(session->AppendToDocument("late", {&token, 1}).ok());
  }
  for (auto& r : readers) r.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(session->Progress().stream_tokens, 37 + 48 + 59 + 40);
}

// --- lambda attention -------------------------------------------------------

// G = 2 sinks, L = 6 (not W = 16, so blocks and windows differ), the model's
// memory layers 1 and 2.
AttentionOptions Lambda(int n_global = 2, int local_window = 6) {
  AttentionOptions attention;
  attention.mode = AttentionMode::kLambda;
  attention.n_global = n_global;
  attention.local_window = local_window;
  return attention;
}

TEST_F(SessionTest, LambdaSessionAnyChunkingGivesExactlyTheOneShotLambdaRun) {
  const Answer expected = OneShot(24, Lambda());
  for (size_t chunk : {1, 5, 6, 7, 1000}) {
    std::unique_ptr<Session> session = NewSession(Lambda());
    Ingest(session.get(), chunk);
    const Answer actual = Ask(session.get());
    EXPECT_EQ(actual.tokens, expected.tokens) << "chunk " << chunk;
    EXPECT_EQ(actual.logits, expected.logits) << "chunk " << chunk;  // bit for bit
  }
  // Differs from fot, so the test is not vacuous.
  EXPECT_GT(MaxAbsDifference(OneShot(24).logits, expected.logits), 1e-3);
}

TEST_F(SessionTest, LambdaSessionCommitsBlocksOfLOnceATokenFollowsThem) {
  std::unique_ptr<Session> session = NewSession(Lambda());
  ASSERT_TRUE(session->StartDocument("a").ok());
  std::vector<int> tokens(6, 5);  // one block, nothing after it
  EXPECT_EQ(session->AppendToDocument("a", tokens)->committed_tokens, 0);
  const int one = 6;
  EXPECT_EQ(session->AppendToDocument("a", {&one, 1})->committed_tokens, 6);
  tokens.assign(5, 7);  // 12 tokens: the second block has nothing after it yet
  EXPECT_EQ(session->AppendToDocument("a", tokens)->committed_tokens, 6);
  const IngestProgress p = *session->AppendToDocument("a", {&one, 1});
  EXPECT_EQ(p.committed_tokens, 12);
  EXPECT_EQ(p.stream_tokens, 13);
  // Memory holds the committed tokens that left the local branch, sinks
  // excepted: positions [G, 12 − L) = [2, 6), ids from 0.
  EXPECT_EQ(session->memory_layers(), std::vector<int>({1, 2}));
  EXPECT_EQ(session->Stats().layers[0].heads[0].entries, 4);
  auto entries = session->ListEntries(1, 0, 10);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 4u);
  for (const MemoryEntry& e : *entries) {
    EXPECT_EQ(session->EntryPosition(e.id), e.provenance.position);
    EXPECT_EQ(e.provenance.position, e.id + 2);
  }
}

TEST_F(SessionTest, LambdaQueriesLeaveTheSessionUnchangedAndScoreLikeOneShot) {
  std::unique_ptr<Session> session = NewSession(Lambda());
  Ingest(session.get(), 7);
  const IngestProgress before = session->Progress();
  const int64_t entries = session->Stats().layers[0].heads[0].entries;
  const Answer first = Ask(session.get(), 40);
  EXPECT_EQ(session->Progress().committed_tokens, before.committed_tokens);
  EXPECT_EQ(session->Stats().layers[0].heads[0].entries, entries);
  EXPECT_EQ(Ask(session.get(), 40).logits, first.logits);

  // Score with no context: the pending tail is never empty.
  const std::vector<int> continuation = {3, 14, 15};
  auto score = session->Score({}, continuation, std::nullopt);
  ASSERT_TRUE(score.ok()) << score.status();
  const double expected = OneShotLogLikelihood({}, continuation, Lambda());
  EXPECT_NEAR(score->log_likelihood, expected, 1e-3);
}

TEST_F(SessionTest, LambdaSessionSavedAndLoadedGeneratesIdenticallyAndContinues) {
  AttentionOptions other_layers = Lambda(0, 5);
  other_layers.memory_layers = std::vector<int>{0};
  other_layers.memory_positioning = MemoryPositioning::kFixedDistance;
  for (const AttentionOptions& attention : {Lambda(), other_layers}) {
    const std::string what = DescribeAttention(attention);
    std::unique_ptr<Session> session = NewSession(attention);
    Ingest(session.get(), 9);
    const std::string dir = ::testing::TempDir() + "/saved_lambda_session";
    ASSERT_TRUE(session->Save(dir).ok()) << what;
    auto loaded = Session::Load(engine_.get(), dir);
    ASSERT_TRUE(loaded.ok()) << what << ": " << loaded.status();
    EXPECT_EQ(DescribeAttention((*loaded)->options().attention),
              DescribeAttention(session->options().attention));
    EXPECT_EQ((*loaded)->memory_layers(), session->memory_layers()) << what;
    EXPECT_EQ((*loaded)->Progress().committed_tokens, session->Progress().committed_tokens);
    const Answer a = Ask(session.get()), b = Ask(loaded->get());
    EXPECT_EQ(a.tokens, b.tokens) << what;
    EXPECT_EQ(a.logits, b.logits) << what;
    // Both continue the stream alike: the sinks and ring came back whole.
    const std::vector<int> more = {4, 8, 15, 16, 23, 42, 7, 9, 11, 13, 2, 3};
    ASSERT_TRUE(session->AppendToDocument("doc2", more).ok());
    ASSERT_TRUE((*loaded)->AppendToDocument("doc2", more).ok());
    EXPECT_EQ(Ask(session.get()).logits, Ask(loaded->get()).logits) << what;
  }
}

TEST_F(SessionTest, SessionSavedWithoutAttentionOptionsLoadsAsFot) {
  std::unique_ptr<Session> session = NewSession();
  Ingest(session.get(), 50);
  const std::string dir = ::testing::TempDir() + "/saved_fot_session";
  ASSERT_TRUE(session->Save(dir).ok());
  // A fot session is saved as before lambda attention existed.
  nlohmann::json json = nlohmann::json::parse(std::ifstream(dir + "/session.json"));
  EXPECT_EQ(json["format"], "fotserve-session 1");
  EXPECT_FALSE(json.contains("attention"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/memory/lambda"));
  auto loaded = Session::Load(engine_.get(), dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->options().attention.mode, AttentionMode::kFot);
  EXPECT_EQ(Ask(loaded->get()).logits, Ask(session.get()).logits);
}

TEST_F(SessionTest, LambdaSnapshotWithADamagedRingIsRefused) {
  std::unique_ptr<Session> session = NewSession(Lambda());
  Ingest(session.get(), 50);
  const std::string dir = ::testing::TempDir() + "/damaged_lambda_session";
  ASSERT_TRUE(session->Save(dir).ok());
  const std::string ring = dir + "/memory/lambda/layer_1.bin";
  ASSERT_TRUE(std::filesystem::exists(ring));
  std::filesystem::resize_file(ring, std::filesystem::file_size(ring) - 8);
  auto loaded = Session::Load(engine_.get(), dir);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
  EXPECT_NE(loaded.status().message().find("layer_1.bin"), std::string::npos) << loaded.status();
}

TEST_F(SessionTest, LambdaSessionRejectsOptionsThatDoNotFitTheModel) {
  SessionOptions options;
  options.attention = Lambda(-1);
  auto session = Session::Create(engine_.get(), options);
  EXPECT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(session.status().message().find("n_global"), std::string::npos) << session.status();
  options.attention = Lambda(2, 17);  // W = 16
  EXPECT_EQ(Session::Create(engine_.get(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// No entry of a deleted document is live in memory: every layer's live
// documents and every retrieval leave it out.
void ExpectNoLiveEntriesOf(Session& session, int64_t document, const std::vector<int>& question) {
  const MemoryStats stats = session.Stats();
  EXPECT_EQ(std::count(stats.documents.begin(), stats.documents.end(), document), 0);
  auto traces = session.Search(question, 1000, *ParseRetrieval("knn:1000"));
  ASSERT_TRUE(traces.ok()) << traces.status();
  for (const AttentionTrace& layer : *traces) {
    for (const auto& head : layer.heads) {
      for (const TracedEntry& e : head) EXPECT_NE(e.provenance.document, document);
    }
  }
}

// Issue 16, finding 1: entries that reach memory after the delete (the rest
// of a document still streaming in, or its pending tail committed by later
// documents) are hidden too, also after a save and load.
TEST_F(SessionTest, ADeletedDocumentNeverComesBackIntoMemory) {
  for (const bool lambda : {false, true}) {
    std::unique_ptr<Session> session = NewSession(lambda ? Lambda() : AttentionOptions{});
    ASSERT_TRUE(session->StartDocument("doc0").ok());
    const std::vector<int>& d0 = documents_[0];
    ASSERT_TRUE(session->AppendToDocument("doc0", {d0.data(), 10}).ok());
    ASSERT_TRUE(session->DeleteDocument("doc0").ok());  // while it streams in
    ASSERT_TRUE(session->AppendToDocument("doc0", {d0.data() + 10, d0.size() - 10}).ok());
    for (int d = 1; d < 3; ++d) {  // later documents commit doc0's pending tail
      const std::string name = "doc" + std::to_string(d);
      ASSERT_TRUE(session->StartDocument(name).ok());
      ASSERT_TRUE(session->AppendToDocument(name, documents_[d]).ok());
    }
    ASSERT_GT(session->Progress().committed_tokens, static_cast<int64_t>(d0.size()));
    ExpectNoLiveEntriesOf(*session, 0, question_);
    const std::string dir = ::testing::TempDir() + "/deleted_stays_deleted";
    ASSERT_TRUE(session->Save(dir).ok());
    auto loaded = Session::Load(engine_.get(), dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    for (int i = 0; i < 40; ++i) {  // more windows after the restart
      const int more = i % kVocab;
      ASSERT_TRUE((*loaded)->AppendToDocument("doc2", {&more, 1}).ok());
    }
    ExpectNoLiveEntriesOf(**loaded, 0, question_);
  }
}

}  // namespace
}  // namespace fot
