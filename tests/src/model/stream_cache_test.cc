// The two kinds of StreamCache through the interface alone, with random
// projections and no model: how many entries each holds after N tokens, how
// each plans a call's input, what a flush moves to memory, forking, and
// saving lambda's sinks and rings.
#include "src/model/stream_cache.h"

#include <random>
#include <sstream>
#include <vector>

#include "gtest/gtest.h"
#include "src/model/rope.h"

namespace fot {
namespace {

// 3 layers, memory in layer 1; 4 heads over 2 kv heads of 8; W = 16, L = 8.
ModelConfig Config() {
  ModelConfig c;
  c.model_type = "longllama";
  c.vocab_size = 32;
  c.hidden_size = 32;
  c.intermediate_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  c.last_context_length = 8;
  c.mem_layers = {1};
  return c;
}

AttentionOptions Lambda(int n_global, int local_window) {
  AttentionOptions options;
  options.mode = AttentionMode::kLambda;
  options.n_global = n_global;
  options.local_window = local_window;
  return options;
}

// A stream cache with its memories and the buffers of the layers' inputs:
// tokens run through it as a transformer would, with random projections.
class Stream {
 public:
  explicit Stream(const AttentionOptions& attention)
      : config_(Config()),
        dims_{config_.num_attention_heads, config_.num_key_value_heads, config_.head_dim()},
        rope_(config_.head_dim(), config_.rope_theta, RopePositions(config_)) {
    const absl::StatusOr<AttentionOptions> resolved = ResolveAttentionOptions(config_, attention);
    EXPECT_TRUE(resolved.ok()) << resolved.status();
    cache_ = NewStreamCache(config_, *resolved);
    memory_.resize(config_.num_hidden_layers);
    MemoryOptions options;
    options.dtype = StorageType::kFloat32;
    for (int l : cache_->memory_layers()) {
      memory_[l] = *KvMemory::Create(config_.num_key_value_heads, config_.head_dim(), options);
    }
  }

  StreamCache& cache() { return *cache_; }
  const KvMemory& memory(int layer) const { return *memory_[layer]; }
  absl::Span<const std::unique_ptr<KvMemory>> memories() const { return memory_; }
  // The raw key projections of every token so far, [token, kv_heads, head_dim].
  const std::vector<float>& keys() const { return keys_; }

  // n tokens through every layer as one Forward call; returns layer 0's output.
  std::vector<float> Run(int n) {
    const size_t q_size = static_cast<size_t>(n) * dims_.num_heads * dims_.head_dim;
    const size_t kv_size = static_cast<size_t>(n) * dims_.num_kv_heads * dims_.head_dim;
    std::vector<float> k = Random(kv_size);
    std::vector<float> v = Random(kv_size);
    keys_.insert(keys_.end(), k.begin(), k.end());
    std::vector<Provenance> provenance;
    for (int i = 0; i < n; ++i) provenance.push_back({0, tokens_++, 0});
    std::vector<float> first_out;
    for (int l = 0; l < config_.num_hidden_layers; ++l) {
      std::vector<float> q = Random(q_size);
      std::vector<float> out(q_size);
      EXPECT_TRUE(cache_
                      ->Attend({l, dims_, n, q.data(), k.data(), v.data(), provenance.data(),
                                memory_[l].get(), &retrieval_, &rope_, out.data(), nullptr})
                      .ok());
      if (l == 0) first_out = out;
    }
    return first_out;
  }

  // As the engine runs an input: the planned calls, flushes around them.
  void RunPlanned(StreamInput input, int tokens) {
    std::vector<ForwardCall> calls;
    ASSERT_TRUE(cache_->Plan(input, tokens, config_.last_context_length, &calls).ok());
    for (const ForwardCall& call : calls) {
      if (call.flush_before) ASSERT_TRUE(cache_->Flush(memory_).ok());
      Run(static_cast<int>(call.size));
      if (call.flush_after) ASSERT_TRUE(cache_->Flush(memory_).ok());
    }
  }

  void set_seed(uint32_t seed) { rng_.seed(seed); }
  void replace_cache(std::unique_ptr<StreamCache> cache) { cache_ = std::move(cache); }

 private:
  std::vector<float> Random(size_t count) {
    std::normal_distribution<float> normal;
    std::vector<float> x(count);
    for (float& f : x) f = normal(rng_);
    return x;
  }

  ModelConfig config_;
  AttentionDims dims_;
  Rope rope_;
  Retrieval retrieval_;  // dense
  std::unique_ptr<StreamCache> cache_;
  std::vector<std::unique_ptr<KvMemory>> memory_;
  std::vector<float> keys_;
  int64_t tokens_ = 0;
  std::mt19937 rng_{5};
};

std::vector<ForwardCall> PlanOf(const StreamCache& cache, StreamInput input, int64_t tokens,
                                int last_context_length = 8) {
  std::vector<ForwardCall> calls;
  EXPECT_TRUE(cache.Plan(input, tokens, last_context_length, &calls).ok());
  return calls;
}

TEST(StreamCacheTest, TheAttentionModeChoosesTheKind) {
  Stream fot{AttentionOptions{}};
  EXPECT_STREQ(fot.cache().kind(), "fot");
  EXPECT_FALSE(fot.cache().persistent());
  EXPECT_EQ(fot.cache().sink_tokens(), 0);
  EXPECT_EQ(fot.cache().memory_layers(), std::vector<int>{1});  // the config's

  AttentionOptions options = Lambda(3, 5);
  options.memory_layers = std::vector<int>{0, 2};
  Stream lambda{options};
  EXPECT_STREQ(lambda.cache().kind(), "lambda");
  EXPECT_TRUE(lambda.cache().persistent());
  EXPECT_EQ(lambda.cache().sink_tokens(), 3);
  EXPECT_EQ(lambda.cache().memory_layers(), (std::vector<int>{0, 2}));  // the options'
}

TEST(StreamCacheTest, FotHoldsTheWindowSoFarAndAFlushMovesAllOfItToMemory) {
  Stream fot{AttentionOptions{}};
  fot.Run(5);
  fot.Run(1);
  EXPECT_EQ(fot.cache().entries(), 6);
  EXPECT_EQ(fot.memory(1).size(), 0);  // nothing leaves a window before it ends
  ASSERT_TRUE(fot.cache().Flush(fot.memories()).ok());
  EXPECT_EQ(fot.cache().entries(), 0);
  ASSERT_EQ(fot.memory(1).size(), 6);
  // Memory holds the raw key projections ("rotated as position 0").
  std::vector<float> keys(6 * 8);
  ASSERT_TRUE(fot.memory(1).ReadKeys(1, 0, 6, keys.data()).ok());
  for (int t = 0; t < 6; ++t) {
    for (int d = 0; d < 8; ++d) EXPECT_EQ(keys[t * 8 + d], fot.keys()[(t * 2 + 1) * 8 + d]);
  }
}

TEST(StreamCacheTest, LambdaHoldsSinksAndRingAndMovesWhatLeavesTheRingAsItGoes) {
  AttentionOptions options = Lambda(3, 5);
  options.memory_layers = std::vector<int>{1};
  Stream lambda{options};
  const int expected[] = {0, 4, 7, 8, 8, 8, 8};  // min(N, 3) + min(N, 5)
  for (int n = 0; n <= 12; n += 2) {
    EXPECT_EQ(lambda.cache().entries(), expected[n / 2]) << n << " tokens";
    EXPECT_EQ(lambda.memory(1).size(), std::max(0, n - 3 - 5)) << n << " tokens";
    lambda.Run(2);
  }
  // No window ends: a flush moves nothing.
  ASSERT_TRUE(lambda.cache().Flush(lambda.memories()).ok());
  EXPECT_EQ(lambda.cache().entries(), 8);
  EXPECT_EQ(lambda.memory(1).size(), 14 - 3 - 5);
  // What left the ring is stream positions 3.. (the sinks never enter memory),
  // raw keys.
  std::vector<float> keys(8);
  ASSERT_TRUE(lambda.memory(1).ReadKeys(0, 0, 1, keys.data()).ok());
  for (int d = 0; d < 8; ++d) EXPECT_EQ(keys[d], lambda.keys()[3 * 2 * 8 + d]);
}

TEST(StreamCacheTest, FotPlansWindowsAndWhenTheyGoToMemory) {
  Stream fot{AttentionOptions{}};
  const StreamCache& cache = fot.cache();
  // Prefill: windows of 16 up to the last 8 tokens; all but the last flushed.
  EXPECT_EQ(PlanOf(cache, StreamInput::kPrefill, 40),
            (std::vector<ForwardCall>{
                {0, 16, false, true}, {16, 16, false, true}, {32, 8, false, false}}));
  EXPECT_EQ(PlanOf(cache, StreamInput::kWindow, 16),
            (std::vector<ForwardCall>{{0, 16, false, true}}));
  fot.RunPlanned(StreamInput::kPrefill, 12);  // a window of 4 into memory, the last 8 cached
  EXPECT_EQ(cache.entries(), 8);
  EXPECT_EQ(fot.memory(1).size(), 4);
  // Append: one call; the cache moves to memory first once it would exceed W.
  EXPECT_EQ(PlanOf(cache, StreamInput::kAppend, 8),
            (std::vector<ForwardCall>{{0, 8, false, false}}));
  EXPECT_EQ(PlanOf(cache, StreamInput::kAppend, 9),
            (std::vector<ForwardCall>{{0, 9, true, false}}));
  fot.RunPlanned(StreamInput::kAppend, 9);
  EXPECT_EQ(cache.entries(), 9);
  EXPECT_EQ(fot.memory(1).size(), 12);

  // What does not fit the cache as it is now.
  std::vector<ForwardCall> calls;
  EXPECT_EQ(cache.Plan(StreamInput::kPrefill, 4, 8, &calls).code(),
            absl::StatusCode::kFailedPrecondition);  // not an empty window
  EXPECT_EQ(cache.Plan(StreamInput::kWindow, 4, 8, &calls).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cache.Plan(StreamInput::kAppend, 17, 8, &calls).code(),
            absl::StatusCode::kInvalidArgument);  // more than W
  Stream empty{AttentionOptions{}};
  EXPECT_EQ(empty.cache().Plan(StreamInput::kPrefill, 4, 17, &calls).code(),
            absl::StatusCode::kInvalidArgument);  // last_context_length > W

  // A session commits whole windows once L − 1 tokens follow them.
  EXPECT_EQ(cache.Commits(8).size, 16);
  EXPECT_EQ(cache.Commits(8).follow, 7);
}

TEST(StreamCacheTest, LambdaPlansBlocksOfLAndNeverFlushes) {
  Stream lambda{Lambda(2, 6)};
  const std::vector<ForwardCall> blocks{
      {0, 6, false, false}, {6, 6, false, false}, {12, 2, false, false}};
  EXPECT_EQ(PlanOf(lambda.cache(), StreamInput::kPrefill, 14), blocks);
  lambda.RunPlanned(StreamInput::kPrefill, 14);
  // A stream that has run tokens continues: every input is blocks of L.
  EXPECT_EQ(PlanOf(lambda.cache(), StreamInput::kPrefill, 14), blocks);
  EXPECT_EQ(PlanOf(lambda.cache(), StreamInput::kWindow, 14), blocks);
  EXPECT_EQ(PlanOf(lambda.cache(), StreamInput::kAppend, 14), blocks);
  EXPECT_EQ(PlanOf(lambda.cache(), StreamInput::kAppend, 1),
            (std::vector<ForwardCall>{{0, 1, false, false}}));
  EXPECT_EQ(lambda.cache().Commits(8).size, 6);
  EXPECT_EQ(lambda.cache().Commits(8).follow, 1);
}

TEST(StreamCacheTest, AForkContinuesLambdasStreamAndStartsFotsWindowEmpty) {
  AttentionOptions options = Lambda(2, 4);
  Stream lambda{options};
  lambda.Run(7);
  Stream fork{options};
  fork.replace_cache(lambda.cache().Fork());
  EXPECT_EQ(fork.cache().entries(), lambda.cache().entries());
  fork.set_seed(9);
  lambda.set_seed(9);
  EXPECT_EQ(fork.Run(2), lambda.Run(2));  // the same past, the same attention

  Stream fot{AttentionOptions{}};
  fot.Run(5);
  EXPECT_EQ(fot.cache().Fork()->entries(), 0);
  EXPECT_EQ(fot.cache().entries(), 5);
}

TEST(StreamCacheTest, LambdaSavesEachLayerAndLoadsOnlyTheSameShapeAndPosition) {
  Stream saved{Lambda(2, 4)};
  saved.Run(3);
  saved.Run(4);
  std::vector<std::string> layers;
  for (int l = 0; l < 3; ++l) {
    std::ostringstream out;
    ASSERT_TRUE(saved.cache().Write(l, out).ok());
    layers.push_back(out.str());
  }
  Stream loaded{Lambda(2, 4)};
  for (int l = 0; l < 3; ++l) {
    std::istringstream wrong_position(layers[l]);
    EXPECT_EQ(loaded.cache().Read(l, wrong_position, 6).code(), absl::StatusCode::kDataLoss);
    std::istringstream in(layers[l]);
    ASSERT_TRUE(loaded.cache().Read(l, in, 7).ok());
  }
  EXPECT_EQ(loaded.cache().entries(), saved.cache().entries());
  saved.set_seed(3);
  loaded.set_seed(3);
  EXPECT_EQ(loaded.Run(1), saved.Run(1));

  Stream other_shape{Lambda(3, 4)};
  std::istringstream in(layers[0]);
  EXPECT_EQ(other_shape.cache().Read(0, in, 7).code(), absl::StatusCode::kDataLoss);
  // fot's window is not part of a save.
  Stream fot{AttentionOptions{}};
  std::ostringstream out;
  EXPECT_FALSE(fot.cache().Write(0, out).ok());
}

}  // namespace
}  // namespace fot
