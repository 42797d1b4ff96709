// Λ-shaped attention with a distance cap (issue 6) on small random
// checkpoints, against a float64 transformer written here from the equations
// with an explicit mask: every (query t, key s) pair is local, global, memory
// or hidden, and each kind has its rotation. Processing (one call over many
// windows), generation (one token per call) and uneven chunks all match it;
// each memory positioning mode matches its formula; the state stays at
// n_global + L entries per layer while 100k tokens stream through; bad options
// are rejected.
#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/model/fot_stream_cache.h"
#include "src/model/lambda_stream_cache.h"
#include "tests/src/reference_logits.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

using reference::LambdaReferenceLogits;
using reference::Spec;

// The shared small model (small_model.h) as a longllama, or as a plain llama
// (no memory layers, L = W).
ModelConfig SmallConfig(const std::string& type) {
  ModelConfig c = SmallModelConfig();
  c.model_type = type;
  if (type != "longllama") {
    c.mem_layers.clear();
    c.last_context_length = c.max_position_embeddings;
  }
  return c;
}

std::unique_ptr<Engine> LoadModel(const std::string& name, const ModelConfig& config,
                                  uint32_t seed) {
  return LoadEngine(WriteSmallModel("lambda_test_" + name, config, seed));
}

AttentionOptions Lambda(int n_global, int local_window) {
  AttentionOptions options;
  options.mode = AttentionMode::kLambda;
  options.n_global = n_global;
  options.local_window = local_window;
  return options;
}

// Every layer's sinks and ring of a lambda state.
const std::vector<LambdaCache>& LambdaLayers(const ModelState& state) {
  return dynamic_cast<const LambdaStreamCache&>(*state.cache).layers();
}

ModelState NewStateOrDie(const Engine& engine, const AttentionOptions& attention) {
  absl::StatusOr<ModelState> state = engine.NewState(engine.DefaultMemoryOptions(), attention);
  EXPECT_TRUE(state.ok()) << state.status();
  return *std::move(state);
}

// Runs `ids` through the engine in calls of the given sizes (cycled; the first
// call is a Prefill, the rest Appends) and returns every position's logits.
std::vector<float> StreamLogits(const Engine& engine, ModelState* state,
                                const std::vector<int>& ids, const std::vector<int>& chunks) {
  std::vector<float> logits;
  const int vocab = engine.config().vocab_size;
  const LogitsSink sink = [&](int64_t, int64_t rows, const float* l) {
    logits.insert(logits.end(), l, l + rows * vocab);
  };
  size_t at = 0;
  for (size_t call = 0; at < ids.size(); ++call) {
    const size_t size = std::min<size_t>(chunks[call % chunks.size()], ids.size() - at);
    const absl::Span<const int> part(ids.data() + at, size);
    absl::Status status = call == 0 ? engine.Prefill(part, engine.config().last_context_length,
                                                     state, LogitsMode::kAll, sink)
                                    : engine.Append(part, state, LogitsMode::kAll, sink);
    EXPECT_TRUE(status.ok()) << status;
    at += size;
  }
  return logits;
}

void ExpectNear(const std::vector<float>& actual, const std::vector<double>& expected,
                double tolerance, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_NEAR(actual[i], expected[i], tolerance) << what << ": logit " << i;
  }
}

// --- plain LLaMA: the mask and the distance cap ----------------------------

class LlamaLambdaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = LoadModel("llama", SmallConfig("llama"), 21);
    ASSERT_NE(engine_, nullptr);
  }
  std::vector<double> Reference(const std::vector<int>& ids, const Spec& spec) const {
    return LambdaReferenceLogits(engine_->config(), engine_->transformer().weights(), ids, spec);
  }
  std::unique_ptr<Engine> engine_;
};

TEST_F(LlamaLambdaTest, UpToLTokensEqualsPlainCausalAttention) {
  const std::vector<int> ids = RandomTokens(16, 97, 1);  // L = W = 16
  ModelState lambda = NewStateOrDie(*engine_, Lambda(4, 0));
  ModelState fot = NewStateOrDie(*engine_, AttentionOptions{});
  const std::vector<float> actual = StreamLogits(*engine_, &lambda, ids, {16});
  const std::vector<float> causal = StreamLogits(*engine_, &fot, ids, {16});
  ASSERT_EQ(actual.size(), causal.size());
  for (size_t i = 0; i < actual.size(); ++i) ASSERT_NEAR(actual[i], causal[i], 1e-5) << i;
  ExpectNear(actual, Reference(ids, {4, 16, {}}), 1e-4, "reference");
}

TEST_F(LlamaLambdaTest, ProcessingFiveWindowsInOneCallMatchesTheExplicitMask) {
  const std::vector<int> ids = RandomTokens(40, 97, 2);  // 5 L
  const Spec spec{3, 8, {}};
  ModelState state = NewStateOrDie(*engine_, Lambda(3, 8));
  const std::vector<double> expected = Reference(ids, spec);
  ExpectNear(StreamLogits(*engine_, &state, ids, {40}), expected, 1e-4, "one call");
  // The mask matters: full causal attention gives other logits from t = L on.
  const std::vector<double> causal = Reference(ids, {0, 40, {}});
  double differs = 0;
  for (size_t i = 8 * 97; i < causal.size(); ++i) {
    differs = std::max(differs, std::fabs(causal[i] - expected[i]));
  }
  EXPECT_GT(differs, 1e-2);
}

TEST_F(LlamaLambdaTest, GenerationTokenByTokenAndUnevenChunksMatchTheExplicitMask) {
  const std::vector<int> ids = RandomTokens(40, 97, 3);
  const Spec spec{3, 8, {}};
  const std::vector<double> expected = Reference(ids, spec);
  ModelState one = NewStateOrDie(*engine_, Lambda(3, 8));
  ExpectNear(StreamLogits(*engine_, &one, ids, {5, 1}), expected, 1e-4, "token by token");
  ModelState uneven = NewStateOrDie(*engine_, Lambda(3, 8));
  ExpectNear(StreamLogits(*engine_, &uneven, ids, {3, 7, 8, 1, 12}), expected, 1e-4, "chunks");
}

TEST_F(LlamaLambdaTest, MoreGlobalTokensThanTheLocalWindowAndNoneAtAll) {
  const std::vector<int> ids = RandomTokens(40, 97, 4);
  for (const int n_global : {0, 11}) {
    ModelState state = NewStateOrDie(*engine_, Lambda(n_global, 6));
    ExpectNear(StreamLogits(*engine_, &state, ids, {9, 1}), Reference(ids, {n_global, 6, {}}), 1e-4,
               "n_global " + std::to_string(n_global));
  }
}

TEST_F(LlamaLambdaTest, MemoryLayersChosenByOptionGiveAPlainCheckpointMemory) {
  const std::vector<int> ids = RandomTokens(40, 97, 5);
  AttentionOptions options = Lambda(2, 8);
  options.memory_layers = std::vector<int>{1};
  ModelState state = NewStateOrDie(*engine_, options);
  ASSERT_EQ(state.memory[0], nullptr);
  ASSERT_NE(state.memory[1], nullptr);
  // llama's default positioning is fixed_distance.
  ExpectNear(StreamLogits(*engine_, &state, ids, {40}),
             Reference(ids, {2, 8, {1}, MemoryPositioning::kFixedDistance}), 1e-4, "memory");
  // Tokens [2, 40 − 8) have left the local branch and are not global.
  EXPECT_EQ(state.memory[1]->size(), 40 - 8 - 2);
}

// --- LongLLaMA: memory under lambda, each positioning mode -----------------

struct PositioningCase {
  const char* name;
  MemoryPositioning positioning;
  bool mem_positionals;
};

void PrintTo(const PositioningCase& c, std::ostream* os) { *os << c.name; }

class MemoryPositioningTest : public ::testing::TestWithParam<PositioningCase> {};

TEST_P(MemoryPositioningTest, ProcessingAndGenerationMatchTheFormula) {
  ModelConfig config = SmallConfig("longllama");
  config.mem_positionals = GetParam().mem_positionals;
  std::unique_ptr<Engine> engine = LoadModel(std::string("mem_") + GetParam().name, config, 23);
  ASSERT_NE(engine, nullptr);
  const std::vector<int> ids = RandomTokens(40, 97, 6);
  AttentionOptions options = Lambda(2, 8);
  options.memory_positioning = GetParam().positioning;
  const std::vector<double> expected = LambdaReferenceLogits(
      config, engine->transformer().weights(), ids, {2, 8, {1, 2}, GetParam().positioning});

  ModelState processed = NewStateOrDie(*engine, options);
  ExpectNear(StreamLogits(*engine, &processed, ids, {40}), expected, 1e-4, "processing");
  EXPECT_EQ(processed.memory[0], nullptr);
  EXPECT_EQ(processed.memory[1]->size(), 30);
  EXPECT_EQ(processed.memory[2]->size(), 30);

  ModelState generated = NewStateOrDie(*engine, options);
  ExpectNear(StreamLogits(*engine, &generated, ids, {1}), expected, 1e-4, "generation");
}

INSTANTIATE_TEST_SUITE_P(
    Modes, MemoryPositioningTest,
    ::testing::Values(PositioningCase{"as_first", MemoryPositioning::kAsFirst, true},
                      PositioningCase{"fixed_distance", MemoryPositioning::kFixedDistance, true},
                      PositioningCase{"none", MemoryPositioning::kNone, true},
                      PositioningCase{"no_mem_positionals", MemoryPositioning::kAsFirst, false}),
    [](const auto& info) { return std::string(info.param.name); });

class LongLlamaLambdaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = LoadModel("longllama", SmallConfig("longllama"), 25);
    ASSERT_NE(engine_, nullptr);
  }
  std::unique_ptr<Engine> engine_;
};

TEST_F(LongLlamaLambdaTest, DefaultsToAsFirstWithTheConfigsMemoryLayers) {
  ModelState state = NewStateOrDie(*engine_, Lambda(2, 0));
  EXPECT_EQ(state.attention.local_window, 16);
  EXPECT_EQ(*state.attention.memory_positioning, MemoryPositioning::kAsFirst);
  EXPECT_EQ(*state.attention.memory_layers, (std::vector<int>{1, 2}));
  EXPECT_EQ(dynamic_cast<const FotStreamCache*>(state.cache.get()), nullptr);
  EXPECT_EQ(LambdaLayers(state).size(), 3u);
}

TEST_F(LongLlamaLambdaTest, KnnMergesEntriesLeavingDuringACallExactly) {
  const std::vector<int> ids = RandomTokens(48, 97, 7);
  // knn:K with K >= every memory size equals dense.
  ModelState dense = NewStateOrDie(*engine_, Lambda(2, 8));
  ModelState all = NewStateOrDie(*engine_, Lambda(2, 8));
  all.retrieval = *ParseRetrieval("knn:64");
  const std::vector<float> dense_logits = StreamLogits(*engine_, &dense, ids, {48});
  const std::vector<float> all_logits = StreamLogits(*engine_, &all, ids, {48});
  for (size_t i = 0; i < dense_logits.size(); ++i) {
    ASSERT_NEAR(all_logits[i], dense_logits[i], 1e-4) << i;
  }
  // knn:3 over one call (entries leave the local branch mid-call and are
  // merged with FAISS's results) equals knn:3 token by token (each entry in
  // FAISS by the time it is read).
  ModelState block = NewStateOrDie(*engine_, Lambda(2, 8));
  ModelState step = NewStateOrDie(*engine_, Lambda(2, 8));
  block.retrieval = step.retrieval = *ParseRetrieval("knn:3");
  const std::vector<float> block_logits = StreamLogits(*engine_, &block, ids, {48});
  const std::vector<float> step_logits = StreamLogits(*engine_, &step, ids, {1});
  double knn_vs_dense = 0;
  for (size_t i = 0; i < block_logits.size(); ++i) {
    ASSERT_NEAR(block_logits[i], step_logits[i], 1e-4) << i;
    knn_vs_dense = std::max<double>(knn_vs_dense, std::fabs(block_logits[i] - dense_logits[i]));
  }
  EXPECT_GT(knn_vs_dense, 1e-3) << "knn:3 should differ from dense";
}

TEST_F(LongLlamaLambdaTest, DocumentFilterHidesMemoryEntriesOnlyDenseAndKnn) {
  // Tokens [0, 20) are document 0, [20, 40) document 1; queries read only
  // document 1's memory entries (the global and local branches stay whole).
  const std::vector<int> ids = RandomTokens(40, 97, 12);
  std::vector<Provenance> provenance;
  for (int i = 0; i < 40; ++i) provenance.push_back({i < 20 ? 0 : 1, i, ids[i]});
  const std::vector<double> expected =
      LambdaReferenceLogits(engine_->config(), engine_->transformer().weights(), ids,
                            {2, 8, {1, 2}, MemoryPositioning::kAsFirst, /*memory_from=*/20});
  for (const char* retrieval : {"dense", "knn:64"}) {
    ModelState state = NewStateOrDie(*engine_, Lambda(2, 8));
    state.retrieval = *ParseRetrieval(retrieval);
    state.retrieval.filter.documents = {1};
    std::vector<float> logits;
    ASSERT_TRUE(engine_
                    ->Prefill(
                        ids, 8, &state, LogitsMode::kAll,
                        [&](int64_t, int64_t rows, const float* l) {
                          logits.insert(logits.end(), l, l + rows * 97);
                        },
                        provenance)
                    .ok());
    ExpectNear(logits, expected, 1e-4, retrieval);
  }
}

TEST_F(LongLlamaLambdaTest, TraceNamesEntriesThatLeftTheLocalBranch) {
  ModelState state = NewStateOrDie(*engine_, Lambda(2, 8));
  state.retrieval = *ParseRetrieval("knn:4");
  state.trace = true;
  const std::vector<int> ids = RandomTokens(30, 97, 8);
  ASSERT_TRUE(engine_->Prefill(ids, 8, &state, LogitsMode::kNone, nullptr).ok());
  // Last query t = 29 sees memory [2, 21].
  ASSERT_EQ(state.traces.size(), 3u);
  for (int layer : {1, 2}) {
    ASSERT_EQ(state.traces[layer].heads.size(), 4u);
    for (const auto& head : state.traces[layer].heads) {
      ASSERT_EQ(head.size(), 4u);
      double share = 0;
      for (const TracedEntry& entry : head) {
        EXPECT_GE(entry.provenance.position, 2);
        EXPECT_LE(entry.provenance.position, 21);
        EXPECT_EQ(entry.id, entry.provenance.position - 2);
        share += entry.attention_share;
      }
      EXPECT_GT(share, 0);
      EXPECT_LE(share, 1 + 1e-6);
    }
  }
}

TEST_F(LongLlamaLambdaTest, OverlayStateContinuesTheStreamAndLeavesTheBaseAlone) {
  const std::vector<int> ids = RandomTokens(36, 97, 9);
  ModelState base = NewStateOrDie(*engine_, Lambda(2, 8));
  ASSERT_TRUE(engine_->Prefill({ids.data(), 30}, 8, &base, LogitsMode::kNone, nullptr).ok());
  absl::StatusOr<ModelState> overlay = engine_->NewOverlayState(base);
  ASSERT_TRUE(overlay.ok()) << overlay.status();
  std::vector<float> continued;
  ASSERT_TRUE(engine_
                  ->Append({ids.data() + 30, 6}, &*overlay, LogitsMode::kLast,
                           [&](int64_t, int64_t, const float* l) { continued.assign(l, l + 97); })
                  .ok());
  ModelState whole = NewStateOrDie(*engine_, Lambda(2, 8));
  const std::vector<float> all = StreamLogits(*engine_, &whole, ids, {36});
  for (int i = 0; i < 97; ++i) ASSERT_NEAR(continued[i], all[35 * 97 + i], 1e-4) << i;
  EXPECT_EQ(LambdaLayers(base)[0].tokens(), 30);
  EXPECT_EQ(base.memory[1]->size(), 30 - 8 - 2);
}

// --- state size ------------------------------------------------------------

TEST(LambdaStateTest, StaysAtNGlobalPlusLEntriesWhile100kTokensStreamThrough) {
  ModelConfig config;
  config.model_type = "llama";
  config.vocab_size = 31;
  config.hidden_size = 8;
  config.intermediate_size = 16;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.num_key_value_heads = 1;
  config.max_position_embeddings = 32;
  config.last_context_length = 32;
  std::unique_ptr<Engine> engine = LoadModel("tiny", config, 27);
  ASSERT_NE(engine, nullptr);
  ModelState state = NewStateOrDie(*engine, Lambda(4, 0));  // L = 32, no memory layers
  const std::vector<int> ids = RandomTokens(100000, 31, 10);
  int64_t floats = -1;
  std::vector<float> last;
  for (size_t at = 0; at < ids.size(); at += 5000) {
    ASSERT_TRUE(engine
                    ->Append({ids.data() + at, 5000}, &state, LogitsMode::kLast,
                             [&](int64_t, int64_t, const float* l) { last.assign(l, l + 31); })
                    .ok());
    for (const LambdaCache& cache : LambdaLayers(state)) {
      ASSERT_EQ(cache.entries(), 4 + 32);
      if (floats < 0) floats = cache.floats();
      ASSERT_EQ(cache.floats(), floats);  // nothing grows
    }
  }
  EXPECT_EQ(LambdaLayers(state)[0].tokens(), 100000);
  EXPECT_EQ(state.cache_size(), 36);
  for (float v : last) EXPECT_TRUE(std::isfinite(v));
}

TEST(LambdaStateTest, MemoryLayersGrowOnlyTheirMemoryNotTheState) {
  ModelConfig config = SmallConfig("llama");
  std::unique_ptr<Engine> engine = LoadModel("grow", config, 29);
  ASSERT_NE(engine, nullptr);
  AttentionOptions options = Lambda(4, 8);
  options.memory_layers = std::vector<int>{2};
  ModelState state = NewStateOrDie(*engine, options);
  state.retrieval = *ParseRetrieval("knn:2");
  const std::vector<int> ids = RandomTokens(3000, 97, 11);
  for (size_t at = 0; at < ids.size(); at += 500) {
    ASSERT_TRUE(engine->Append({ids.data() + at, 500}, &state, LogitsMode::kNone, nullptr).ok());
    for (const LambdaCache& cache : LambdaLayers(state)) ASSERT_EQ(cache.entries(), 12);
    EXPECT_EQ(state.memory[2]->size(), static_cast<int64_t>(at + 500) - 8 - 4);
  }
}

// --- options ---------------------------------------------------------------

TEST_F(LongLlamaLambdaTest, RejectsBadOptionsWithMessagesNamingTheField) {
  const MemoryOptions memory = engine_->DefaultMemoryOptions();
  auto rejected = [&](const AttentionOptions& options, const std::string& words) {
    absl::StatusOr<ModelState> state = engine_->NewState(memory, options);
    ASSERT_FALSE(state.ok()) << words;
    EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(state.status().message().find(words), std::string::npos) << state.status();
  };
  rejected(Lambda(-1, 8), "n_global");
  rejected(Lambda(2, 17), "local window 17");
  rejected(Lambda(2, -3), "local window -3");
  AttentionOptions layers = Lambda(2, 8);
  layers.memory_layers = std::vector<int>{3};
  rejected(layers, "memory layer 3");
  layers.memory_layers = std::vector<int>{1, 1};
  rejected(layers, "listed twice");
  AttentionOptions fot;
  fot.memory_positioning = MemoryPositioning::kNone;
  rejected(fot, "lambda");
  fot = AttentionOptions{};
  fot.local_window = 8;
  rejected(fot, "lambda");

  EXPECT_FALSE(ParseAttentionMode("lambda2").ok());
  EXPECT_EQ(*ParseAttentionMode("lambda"), AttentionMode::kLambda);
  EXPECT_FALSE(ParseMemoryPositioning("first").ok());
  EXPECT_EQ(*ParseMemoryPositioning("fixed_distance"), MemoryPositioning::kFixedDistance);
  EXPECT_FALSE(ParseLayerList("1,x").ok());
  EXPECT_FALSE(ParseLayerList("").ok());
  EXPECT_EQ(*ParseLayerList("3,1"), (std::vector<int>{1, 3}));
  EXPECT_TRUE(ParseLayerList("none")->empty());
}

TEST_F(LongLlamaLambdaTest, RejectedTokensLeaveTheStateAlone) {
  ModelState state = NewStateOrDie(*engine_, Lambda(2, 8));
  EXPECT_EQ(engine_->Append({1, 97}, &state, LogitsMode::kNone, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LambdaLayers(state)[0].tokens(), 0);
}

}  // namespace
}  // namespace fot
