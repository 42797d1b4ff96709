// Limits (src/server/limits.h): which values are refused, and what a token of
// memory is charged.
#include "src/server/limits.h"

#include <string>

#include "gtest/gtest.h"
#include "src/engine/engine.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

TEST(LimitsTest, OutOfRangeLimitsAreRefusedByName) {
  EXPECT_TRUE(ValidateLimits(Limits{}).ok());
  Limits limits;
  limits.max_top_k = 0;
  EXPECT_NE(ValidateLimits(limits).message().find("max_top_k"), std::string::npos);
  limits = Limits{};
  limits.max_memory_bytes = -1;
  EXPECT_NE(ValidateLimits(limits).message().find("max_memory_bytes"), std::string::npos);
  limits = Limits{};
  limits.write_timeout = absl::Seconds(-1);
  EXPECT_EQ(ValidateLimits(limits).code(), absl::StatusCode::kInvalidArgument);
}

TEST(LimitsTest, TopKSinkTokensAndQueryLengthAreBounded) {
  Limits limits;
  limits.max_top_k = 64;
  limits.max_n_global = 8;
  limits.max_query_tokens = 100;
  Retrieval knn{Retrieval::Mode::kKnn, 64, {}};
  EXPECT_TRUE(CheckRetrieval(knn, limits).ok());
  knn.top_k = 65;
  const absl::Status too_many = CheckRetrieval(knn, limits);
  EXPECT_EQ(too_many.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.message().find("--max_top_k"), std::string::npos) << too_many;
  EXPECT_TRUE(CheckRetrieval(Retrieval{}, limits).ok());  // dense reads no top-k

  SessionOptions options;
  options.attention.mode = AttentionMode::kLambda;
  options.attention.n_global = 9;
  EXPECT_NE(CheckSessionOptions(options, limits).message().find("--max_n_global"),
            std::string::npos);
  options.attention.mode = AttentionMode::kFot;  // n_global means nothing to fot
  EXPECT_TRUE(CheckSessionOptions(options, limits).ok());

  EXPECT_TRUE(CheckQueryTokens(100, "question", limits).ok());
  EXPECT_NE(CheckQueryTokens(101, "question", limits).message().find("--max_query_tokens"),
            std::string::npos);
}

TEST(LimitsTest, ATokenCostsAKeyAndAValuePerMemoryLayerAndKvHead) {
  const ModelConfig config = SmallModelConfig();  // 2 memory layers, 2 kv heads, head_dim 8
  std::unique_ptr<Engine> engine = LoadEngine(WriteSmallModel("limits_model", config));
  ASSERT_NE(engine, nullptr);
  SessionOptions options;
  options.memory.dtype = StorageType::kFloat16;
  auto session = Session::Create(engine.get(), options);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(MemoryBytesPerToken(**session, config), 2 * 2 * (2 * 8 * 2 + 28));
}

TEST(LimitsTest, TheDefaultMemoryBudgetIsHalfOfThisMachinesMemory) {
  const int64_t bytes = DefaultMaxMemoryBytes();
  EXPECT_GT(bytes, int64_t{64} << 20);
  EXPECT_LT(bytes, int64_t{1} << 50);
}

}  // namespace
}  // namespace fot
