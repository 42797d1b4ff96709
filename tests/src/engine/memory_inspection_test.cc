#include "src/engine/memory_inspection.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

class MemoryInspectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelConfig c = SmallModelConfig();
    c.num_hidden_layers = 2;
    c.mem_layers = {1};
    engine_ = LoadEngine(WriteSmallModel("inspection_model", c));
    ASSERT_NE(engine_, nullptr);
    MemoryOptions memory;
    memory.dtype = StorageType::kFloat32;
    state_ = *engine_->NewState(memory);
    // Two documents of 40 and 30 tokens; provenance names them 7 and 9.
    std::mt19937 rng(5);
    std::vector<int> tokens;
    std::vector<Provenance> provenance;
    for (int i = 0; i < 70; ++i) {
      tokens.push_back(static_cast<int>(rng() % 97));
      provenance.push_back({i < 40 ? 7 : 9, i < 40 ? i : i - 40, tokens.back()});
    }
    ASSERT_TRUE(engine_
                    ->Prefill(
                        tokens, 8, &state_, LogitsMode::kNone,
                        [](int64_t, int64_t, const float*) {}, provenance)
                    .ok());
    tokens_ = tokens;
  }

  std::unique_ptr<Engine> engine_;
  ModelState state_;
  std::vector<int> tokens_;
};

TEST_F(MemoryInspectionTest, StatsCountEveryMemoryLayerHeadAndDocument) {
  const MemoryStats stats = GetMemoryStats(state_);
  ASSERT_EQ(stats.layers.size(), 1u);
  EXPECT_EQ(stats.layers[0].layer, 1);
  ASSERT_EQ(stats.layers[0].heads.size(), 2u);
  EXPECT_EQ(stats.layers[0].heads[1].entries, 62);  // 70 − L
  EXPECT_EQ(stats.layers[0].heads[1].live_entries, 62);
  EXPECT_GT(stats.bytes, 62 * 2 * 2 * 8 * 4);  // keys + values, 2 heads, head_dim 8, f32
  EXPECT_EQ(stats.documents, (std::vector<int64_t>{7, 9}));
}

TEST_F(MemoryInspectionTest, ListsEntriesWithTheirProvenancePageByPage) {
  auto page = ListMemoryEntries(state_, 1, 38, 4);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 4u);
  EXPECT_EQ((*page)[0].id, 38);
  EXPECT_EQ((*page)[0].provenance, (Provenance{7, 38, tokens_[38]}));
  EXPECT_EQ((*page)[2].provenance, (Provenance{9, 0, tokens_[40]}));
  EXPECT_TRUE(ListMemoryEntries(state_, 1, 1000, 10)->empty());
  EXPECT_EQ(ListMemoryEntries(state_, 0, 0, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ListMemoryEntries(state_, 1, -1, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MemoryInspectionTest, ContextOfAnEntryStaysInsideItsDocument) {
  auto context = MemoryEntryContext(state_, 1, 38, 3);
  ASSERT_TRUE(context.ok());
  ASSERT_EQ(context->size(), 5u);  // positions 35..39 of document 7; 40 is document 9
  EXPECT_EQ(context->front().provenance.position, 35);
  EXPECT_EQ(context->back().provenance.position, 39);
  EXPECT_EQ(MemoryEntryContext(state_, 1, 62, 3).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(MemoryInspectionTest, SearchReturnsTheBestEntriesWithExactAttentionShares) {
  const KvStore& store = state_.memory[1]->store(0);
  std::vector<float> keys(store.size() * 8);
  ASSERT_TRUE(store.ReadKeys(0, store.size(), keys.data()).ok());
  // Query with entry 5's key: it scores highest against itself.
  std::vector<float> query(keys.begin() + 5 * 8, keys.begin() + 6 * 8);
  auto retrieved = SearchMemory(state_, 1, 0, query.data(), 3);
  ASSERT_TRUE(retrieved.ok()) << retrieved.status();
  ASSERT_EQ(retrieved->size(), 3u);
  double normaliser = 0, best = -1e30;
  std::vector<double> dots;
  for (int64_t i = 0; i < store.size(); ++i) {
    double dot = 0;
    for (int d = 0; d < 8; ++d) dot += query[d] * keys[i * 8 + d];
    dots.push_back(dot);
    best = std::max(best, dot);
  }
  for (double dot : dots) normaliser += std::exp((dot - best) / std::sqrt(8.0));
  for (const RetrievedEntry& r : *retrieved) {
    EXPECT_NEAR(r.inner_product, dots[r.entry.id], 1e-4);
    EXPECT_NEAR(r.attention_share,
                std::exp((dots[r.entry.id] - best) / std::sqrt(8.0)) / normaliser, 1e-5);
  }
  EXPECT_GE((*retrieved)[0].inner_product, (*retrieved)[1].inner_product);
  EXPECT_EQ(SearchMemory(state_, 1, 2, query.data(), 3).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MemoryInspectionTest, TraceRecordsWhatTheLastTokenRetrievedWithItsShares) {
  state_.trace = true;
  state_.retrieval = *ParseRetrieval("knn:4");
  const int token = 3;
  ASSERT_TRUE(
      engine_
          ->Append({&token, 1}, &state_, LogitsMode::kNone, [](int64_t, int64_t, const float*) {})
          .ok());
  ASSERT_EQ(state_.traces.size(), 2u);
  EXPECT_TRUE(state_.traces[0].heads.empty());  // not a memory layer
  ASSERT_EQ(state_.traces[1].heads.size(), 4u);
  for (const auto& head : state_.traces[1].heads) {
    ASSERT_EQ(head.size(), 4u);
    float total = 0;
    for (const TracedEntry& e : head) {
      EXPECT_GT(e.attention_share, 0.0f);
      total += e.attention_share;
    }
    EXPECT_LT(total, 1.0f);  // the local keys take the rest
    EXPECT_GE(head[0].inner_product, head[3].inner_product);
  }
}

}  // namespace
}  // namespace fot
