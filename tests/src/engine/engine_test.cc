// The engine's window and memory rules on small random checkpoints: grouped
// heads against the same weights expanded to full multi-head, a plain llama
// checkpoint against a float64 causal transformer written out here, memory
// growth, and the errors a caller can cause.
#include "src/engine/engine.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "tests/src/reference_logits.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

ModelState NewStateOrDie(const Engine& engine) {
  absl::StatusOr<ModelState> state = engine.NewState();
  EXPECT_TRUE(state.ok()) << state.status();
  return *std::move(state);
}

ModelConfig SmallConfig(int heads, int kv_heads) {
  ModelConfig c = SmallModelConfig();
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  return c;
}

std::string WriteModel(const std::string& name, const ModelConfig& config, uint32_t seed) {
  return WriteSmallModel("engine_test_" + name, config, seed);
}

std::vector<float> AllLogits(const Engine& engine, const std::vector<int>& ids, int last_context,
                             ModelState* state) {
  std::vector<float> logits;
  const int vocab = engine.config().vocab_size;
  absl::Status status = engine.Prefill(ids, last_context, state, LogitsMode::kAll,
                                       [&](int64_t, int64_t rows, const float* l) {
                                         logits.insert(logits.end(), l, l + rows * vocab);
                                       });
  EXPECT_TRUE(status.ok()) << status;
  return logits;
}

float MaxAbsDifference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  return worst;
}

std::vector<float> Copy(const float* data, size_t count) { return {data, data + count}; }
std::vector<float> Copy(const WeightMatrix& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  DecodeRows(m, 0, m.rows, out.data());
  return out;
}

// Every tensor of a loaded model, with each kv head's k/v projection rows
// repeated for each query head of its group: the same model as full MHA.
std::map<std::string, std::vector<float>> ExpandToMultiHead(const ModelConfig& config,
                                                            const ModelWeights& w) {
  const size_t hidden = config.hidden_size;
  const int hd = config.head_dim(), group = config.num_attention_heads / config.num_key_value_heads;
  std::map<std::string, std::vector<float>> tensors;
  tensors["model.embed_tokens.weight"] = Copy(w.embed_tokens());
  tensors["model.norm.weight"] = Copy(w.final_norm(), hidden);
  tensors["lm_head.weight"] = Copy(w.lm_head());
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layer(l);
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto expand = [&](const WeightMatrix& m) {
      const std::vector<float> floats = Copy(m);
      const float* kv = floats.data();
      std::vector<float> out;
      for (int h = 0; h < config.num_attention_heads; ++h) {
        const float* rows = kv + static_cast<size_t>(h / group) * hd * hidden;
        out.insert(out.end(), rows, rows + hd * hidden);
      }
      return out;
    };
    tensors[p + "self_attn.q_proj.weight"] = Copy(lw.q_proj);
    tensors[p + "self_attn.k_proj.weight"] = expand(lw.k_proj);
    tensors[p + "self_attn.v_proj.weight"] = expand(lw.v_proj);
    tensors[p + "self_attn.o_proj.weight"] = Copy(lw.o_proj);
    tensors[p + "mlp.gate_proj.weight"] = Copy(lw.gate_proj);
    tensors[p + "mlp.up_proj.weight"] = Copy(lw.up_proj);
    tensors[p + "mlp.down_proj.weight"] = Copy(lw.down_proj);
    tensors[p + "input_layernorm.weight"] = Copy(lw.input_layernorm, hidden);
    tensors[p + "post_attention_layernorm.weight"] = Copy(lw.post_attention_layernorm, hidden);
  }
  return tensors;
}

class GroupedHeadsTest : public ::testing::TestWithParam<int> {};

TEST_P(GroupedHeadsTest, GivesTheLogitsOfTheSameWeightsExpandedToMultiHead) {
  const int kv_heads = GetParam();
  const ModelConfig grouped = SmallConfig(4, kv_heads);
  const std::string dir = WriteModel("grouped" + std::to_string(kv_heads), grouped, 7);
  std::unique_ptr<Engine> engine = LoadEngine(dir);
  ASSERT_NE(engine, nullptr);

  ModelConfig full = grouped;
  full.num_key_value_heads = full.num_attention_heads;
  const std::string full_dir =
      ::testing::TempDir() + "/engine_test_expanded" + std::to_string(kv_heads);
  std::filesystem::remove_all(full_dir);
  ASSERT_TRUE(WriteCheckpoint(full_dir, full,
                              ExpandToMultiHead(grouped, engine->transformer().weights()),
                              DType::kF32, 1)
                  .ok());
  std::unique_ptr<Engine> expanded = LoadEngine(full_dir);
  ASSERT_NE(expanded, nullptr);

  // 60 tokens with W = 16, L = 8: six windows go to memory before the last.
  const std::vector<int> ids = RandomTokens(60, grouped.vocab_size, 3);
  ModelState a = NewStateOrDie(*engine), b = NewStateOrDie(*expanded);
  EXPECT_LE(MaxAbsDifference(AllLogits(*engine, ids, 8, &a), AllLogits(*expanded, ids, 8, &b)),
            1e-5);
}

INSTANTIATE_TEST_SUITE_P(KvHeads, GroupedHeadsTest, ::testing::Values(1, 2), [](const auto& info) {
  return info.param == 1 ? std::string("Mqa") : std::string("Gqa");
});

TEST(LlamaCheckpointTest, WithoutMemoryLayersEqualsPlainCausalAttentionOverAWindow) {
  ModelConfig config = SmallConfig(4, 2);
  config.model_type = "llama";
  config.mem_layers.clear();
  config.last_context_length = config.max_position_embeddings;
  std::unique_ptr<Engine> engine = LoadEngine(WriteModel("llama", config, 11));
  ASSERT_NE(engine, nullptr);

  const std::vector<int> ids = RandomTokens(config.max_position_embeddings, config.vocab_size, 5);
  ModelState state = NewStateOrDie(*engine);
  const std::vector<float> actual = AllLogits(*engine, ids, config.last_context_length, &state);
  // The float64 reference with every key local: plain causal attention.
  const reference::Spec all_local{
      .n_global = 0, .local_window = static_cast<int>(ids.size()), .memory_layers = {}};
  const std::vector<double> expected =
      reference::LambdaReferenceLogits(config, engine->transformer().weights(), ids, all_local);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) ASSERT_NEAR(actual[i], expected[i], 1e-4) << i;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = LoadEngine(WriteModel("rules", SmallConfig(4, 2), 13));
    ASSERT_NE(engine_, nullptr);
  }
  std::unique_ptr<Engine> engine_;
  const LogitsSink ignore_ = [](int64_t, int64_t, const float*) {};
};

TEST_F(EngineTest, PrefillMovesEveryWindowButTheLastIntoMemoryLayersOnly) {
  ModelState state = NewStateOrDie(*engine_);
  // 45 tokens, W = 16, L = 8: windows of 16, 16, 5 go to memory, 8 stay local.
  ASSERT_TRUE(
      engine_->Prefill(RandomTokens(45, 97, 1), 8, &state, LogitsMode::kNone, ignore_).ok());
  EXPECT_EQ(state.cache_size(), 8);
  EXPECT_EQ(state.memory[0], nullptr);
  EXPECT_EQ(state.memory[1]->size(), 37);
  EXPECT_EQ(state.memory[2]->size(), 37);
}

TEST_F(EngineTest, AppendFlushesTheWholeLocalCacheWhenItWouldExceedTheWindow) {
  ModelState state = NewStateOrDie(*engine_);
  ASSERT_TRUE(
      engine_->Prefill(RandomTokens(20, 97, 2), 8, &state, LogitsMode::kNone, ignore_).ok());
  ASSERT_EQ(state.memory[1]->size(), 12);
  ASSERT_TRUE(engine_->Append(RandomTokens(8, 97, 3), &state, LogitsMode::kNone, ignore_).ok());
  EXPECT_EQ(state.cache_size(), 16);
  EXPECT_EQ(state.memory[1]->size(), 12);
  const int token = 5;
  ASSERT_TRUE(engine_->Append({&token, 1}, &state, LogitsMode::kNone, ignore_).ok());
  EXPECT_EQ(state.cache_size(), 1);
  EXPECT_EQ(state.memory[1]->size(), 28);
}

TEST_F(EngineTest, LastModeGivesTheFinalRowOfAllMode) {
  const std::vector<int> ids = RandomTokens(40, 97, 4);
  ModelState all_state = NewStateOrDie(*engine_), last_state = NewStateOrDie(*engine_);
  const std::vector<float> all = AllLogits(*engine_, ids, 8, &all_state);
  std::vector<float> last;
  int64_t last_row = -1;
  ASSERT_TRUE(engine_
                  ->Prefill(ids, 8, &last_state, LogitsMode::kLast,
                            [&](int64_t first, int64_t rows, const float* l) {
                              last_row = first + rows - 1;
                              last.assign(l + (rows - 1) * 97, l + rows * 97);
                            })
                  .ok());
  EXPECT_EQ(last_row, 39);
  // One row goes through sgemv, many through sgemm: equal up to summation order.
  EXPECT_LE(MaxAbsDifference(last, std::vector<float>(all.end() - 97, all.end())), 1e-5);
}

TEST_F(EngineTest, RejectsTokenIdsOutsideTheVocabulary) {
  ModelState state = NewStateOrDie(*engine_);
  absl::Status status = engine_->Prefill({1, 2, 97}, 8, &state, LogitsMode::kNone, ignore_);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("97"), std::string::npos) << status;
  EXPECT_EQ(engine_->Prefill({-1}, 8, &state, LogitsMode::kNone, ignore_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(state.cache_size(), 0) << "a rejected call must not change the state";
}

TEST_F(EngineTest, RejectsLastContextLengthOutsideTheWindowAndEmptyInput) {
  ModelState state = NewStateOrDie(*engine_);
  EXPECT_EQ(engine_->Prefill({1, 2}, 0, &state, LogitsMode::kNone, ignore_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->Prefill({1, 2}, 17, &state, LogitsMode::kNone, ignore_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->Prefill({}, 8, &state, LogitsMode::kNone, ignore_).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, PrefillRefusesAStateWithALocalCacheAndAppendRefusesMoreThanAWindow) {
  ModelState state = NewStateOrDie(*engine_);
  ASSERT_TRUE(engine_->Prefill({1, 2, 3}, 8, &state, LogitsMode::kNone, ignore_).ok());
  EXPECT_EQ(engine_->Prefill({1}, 8, &state, LogitsMode::kNone, ignore_).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine_->Append(RandomTokens(17, 97, 1), &state, LogitsMode::kNone, ignore_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(state.cache_size(), 3);
}

TEST(EngineLoadTest, MissingModelFolderIsAnErrorNamingTheFile) {
  auto engine = Engine::Load(::testing::TempDir() + "/no_such_model");
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("config.json"), std::string::npos) << engine.status();
}

}  // namespace
}  // namespace fot
