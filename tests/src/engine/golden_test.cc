// Parity with the published LongLLaMA implementation on the reference outputs
// in tests/golden (see its README.md): logits with and without the cache,
// with memory disabled, and a greedy continuation long enough to flush the
// local cache into memory.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "src/checkpoint/npy.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/checkpoint/safetensors_writer.h"
#include "src/engine/engine.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

ModelState NewStateOrDie(const Engine& engine) {
  absl::StatusOr<ModelState> state = engine.NewState();
  EXPECT_TRUE(state.ok()) << state.status();
  return *std::move(state);
}

// The README's bound: an exact float64 implementation lands within 6e-5, any
// semantic mistake moves logits by whole units.
constexpr float kTolerance = 5e-4f;

std::string GoldenPath(const std::string& folder, const std::string& file) {
  return std::string(FOT_GOLDEN_DIR) + "/" + folder + "/" + file;
}

nlohmann::json ReadMeta(const std::string& folder) {
  std::ifstream in(GoldenPath(folder, "meta.json"));
  return nlohmann::json::parse(in);
}

std::vector<float> ReadFloats(const std::string& folder, const std::string& file,
                              std::vector<int64_t>* shape) {
  auto array = ReadNpyFloat32(GoldenPath(folder, file), shape);
  EXPECT_TRUE(array.ok()) << array.status();
  return array.ok() ? *std::move(array) : std::vector<float>();
}

std::vector<int> ReadIds(const std::string& folder, const std::string& file) {
  auto ids = ReadNpyTokenIds(GoldenPath(folder, file));
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? std::vector<int>(ids->begin(), ids->end()) : std::vector<int>();
}

// Runs Prefill with every logits row collected.
std::vector<float> AllLogits(const Engine& engine, const std::vector<int>& ids, int last_context) {
  ModelState state = NewStateOrDie(engine);
  std::vector<float> logits;
  const int vocab = engine.config().vocab_size;
  absl::Status status =
      engine.Prefill(ids, last_context, &state, LogitsMode::kAll,
                     [&](int64_t first, int64_t rows, const float* l) {
                       EXPECT_EQ(first * vocab, static_cast<int64_t>(logits.size()));
                       logits.insert(logits.end(), l, l + rows * vocab);
                     });
  EXPECT_TRUE(status.ok()) << status;
  return logits;
}

// Also prints the figure, which the closing notes of engine changes quote.
float MaxAbsDifference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0.0f;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  std::printf("max |logit difference| = %.3g\n", worst);
  return worst;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = std::string(FOT_GOLDEN_DIR) + "/" + GetParam();
    std::ifstream probe(dir + "/config.json");
    ASSERT_TRUE(probe.good())
        << "golden folder " << dir
        << " is missing; configure with -DFOT_GOLDEN_DIR=<a copy of tests/golden>";
    auto engine = Engine::Load(dir);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    meta_ = ReadMeta(GetParam());
    ids_ = ReadIds(GetParam(), "input_ids.npy");
  }

  std::unique_ptr<Engine> engine_;
  nlohmann::json meta_;
  std::vector<int> ids_;
};

TEST_P(GoldenTest, LogitsWithoutCacheMatchReference) {
  std::vector<int64_t> shape;
  const std::vector<float> expected = ReadFloats(GetParam(), "logits_nocache.npy", &shape);
  const std::vector<float> actual =
      AllLogits(*engine_, ids_, meta_["last_context_length_nocache"].get<int>());
  EXPECT_LE(MaxAbsDifference(actual, expected), kTolerance);
}

TEST_P(GoldenTest, KnnWithKAtLeastTheMemorySizeEqualsDense) {
  // Every window's keys land in memory, so K = T covers the whole memory.
  ModelState state = NewStateOrDie(*engine_);
  state.retrieval = *ParseRetrieval("knn:" + std::to_string(ids_.size()));
  std::vector<float> knn;
  const int vocab = engine_->config().vocab_size;
  ASSERT_TRUE(engine_
                  ->Prefill(ids_, meta_["last_context_length_nocache"].get<int>(), &state,
                            LogitsMode::kAll,
                            [&](int64_t, int64_t rows, const float* l) {
                              knn.insert(knn.end(), l, l + rows * vocab);
                            })
                  .ok());
  const std::vector<float> dense =
      AllLogits(*engine_, ids_, meta_["last_context_length_nocache"].get<int>());
  // knn folds the retrieved entries in score order, dense folds memory in id
  // order: float32 rounding of two summation orders, which scales with the
  // logits (up to 2.2e-6 x max |logit| measured with OpenBLAS's AVX-512
  // kernels, on the "tied" folder's equal keys).
  float scale = 1;
  for (float x : dense) scale = std::max(scale, std::fabs(x));
  EXPECT_LE(MaxAbsDifference(knn, dense), 5e-6 * scale);
}

TEST_P(GoldenTest, LogitsWithCacheWindowSplitMatchReference) {
  std::vector<int64_t> shape;
  const std::vector<float> expected = ReadFloats(GetParam(), "logits_cache.npy", &shape);
  const std::vector<float> actual =
      AllLogits(*engine_, ids_, meta_["last_context_length_cache"].get<int>());
  EXPECT_LE(MaxAbsDifference(actual, expected), kTolerance);
}

TEST_P(GoldenTest, LogitsWithMemoryLayersDisabledMatchReference) {
  const std::string dir = std::string(FOT_GOLDEN_DIR) + "/" + GetParam();
  auto config = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  config->mem_layers.clear();
  auto weights = ModelWeights::Load(dir, *config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  Engine no_memory(Transformer(*config, *std::move(weights)));

  std::vector<int64_t> shape;
  const std::vector<float> expected = ReadFloats(GetParam(), "logits_nomem.npy", &shape);
  const std::vector<float> actual =
      AllLogits(no_memory, ids_, meta_["last_context_length_nocache"].get<int>());
  EXPECT_LE(MaxAbsDifference(actual, expected), kTolerance);
}

TEST_P(GoldenTest, GreedyContinuationPastTheWindowMatchesReference) {
  const std::vector<int> expected_tokens = ReadIds(GetParam(), "greedy.npy");
  std::vector<int64_t> shape;
  const std::vector<float> expected_logits = ReadFloats(GetParam(), "greedy_logits.npy", &shape);
  const int vocab = engine_->config().vocab_size;
  ASSERT_EQ(expected_logits.size(), expected_tokens.size() * vocab);

  ModelState state = NewStateOrDie(*engine_);
  std::vector<float> last(vocab);
  auto keep_last = [&](int64_t, int64_t rows, const float* l) {
    std::copy(l + (rows - 1) * vocab, l + rows * vocab, last.begin());
  };
  ASSERT_TRUE(engine_
                  ->Prefill(ids_, meta_["last_context_length_greedy"].get<int>(), &state,
                            LogitsMode::kLast, keep_last)
                  .ok());
  bool flushed = false;
  float worst = 0.0f;
  for (size_t i = 0; i < expected_tokens.size(); ++i) {
    const int token = ArgMax(last.data(), vocab);
    ASSERT_EQ(token, expected_tokens[i]) << "step " << i;
    const int cache_before = state.cache_size();
    ASSERT_TRUE(engine_->Append({&token, 1}, &state, LogitsMode::kLast, keep_last).ok());
    flushed |= state.cache_size() < cache_before;
    for (int v = 0; v < vocab; ++v) {
      worst = std::max(worst, std::fabs(last[v] - expected_logits[i * vocab + v]));
    }
  }
  EXPECT_TRUE(flushed) << "the continuation never moved the local cache into memory";
  std::printf("greedy steps: max |logit difference| = %.3g\n", worst);
  EXPECT_LE(worst, kTolerance);
}

INSTANTIATE_TEST_SUITE_P(AllFolders, GoldenTest, ::testing::Values("tiny", "gqa", "tied", "deep"),
                         [](const auto& info) { return info.param; });

// The golden weights rounded to bfloat16 and written as a BF16 checkpoint,
// loaded twice: used in place (the bf16 kernels) and converted to float32 at
// load (OpenBLAS, the path of the tests above). bf16 -> float32 is exact, so
// the two run the same model and may differ only by float32 summation order:
// within the golden bound, with the same greedy tokens.
class GoldenBf16Test : public ::testing::TestWithParam<std::string> {};

// Greedy tokens and the logits of every step after prefilling `ids`.
void Greedy(const Engine& engine, const std::vector<int>& ids, int last_context, int steps,
            std::vector<int>* tokens, std::vector<float>* logits) {
  ModelState state = NewStateOrDie(engine);
  const int vocab = engine.config().vocab_size;
  std::vector<float> last(vocab);
  auto keep_last = [&](int64_t, int64_t rows, const float* l) {
    std::copy(l + (rows - 1) * vocab, l + rows * vocab, last.begin());
  };
  ASSERT_TRUE(engine.Prefill(ids, last_context, &state, LogitsMode::kLast, keep_last).ok());
  for (int i = 0; i < steps; ++i) {
    const int token = ArgMax(last.data(), vocab);
    tokens->push_back(token);
    ASSERT_TRUE(engine.Append({&token, 1}, &state, LogitsMode::kLast, keep_last).ok());
    logits->insert(logits->end(), last.begin(), last.end());
  }
}

TEST_P(GoldenBf16Test, InPlaceEqualsTheFloat32ConvertedPath) {
  const std::string golden = std::string(FOT_GOLDEN_DIR) + "/" + GetParam();
  auto config = ModelConfig::FromFile(golden + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  auto checkpoint = SafetensorsCheckpoint::Open(golden);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::map<std::string, std::vector<float>> tensors;
  for (const TensorSpec& spec : ExpectedTensors(*config)) {
    const TensorInfo* info = (*checkpoint)->Find(spec.name).value();
    std::vector<float>& values = tensors[spec.name];
    values.resize(static_cast<size_t>(info->num_elements()));
    DecodeToFloats(info->data, values.size(), info->dtype, values.data());
  }
  const std::string dir = ::testing::TempDir() + "/golden_bf16_" + GetParam();
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WriteCheckpoint(dir, *config, tensors, DType::kBF16).ok());

  auto in_place = Engine::Load(dir);
  ASSERT_TRUE(in_place.ok()) << in_place.status();
  ASSERT_EQ((*in_place)->transformer().weights().layer(0).gate_proj.type, WeightType::kBF16);
  auto converted = Engine::Load(dir, {.dtype = WeightsDType::kF32});
  ASSERT_TRUE(converted.ok()) << converted.status();
  ASSERT_EQ((*converted)->transformer().weights().layer(0).gate_proj.type, WeightType::kF32);

  const nlohmann::json meta = ReadMeta(GetParam());
  const std::vector<int> ids = ReadIds(GetParam(), "input_ids.npy");
  for (const char* key : {"last_context_length_nocache", "last_context_length_cache"}) {
    SCOPED_TRACE(key);
    const int last_context = meta[key].get<int>();
    EXPECT_LE(MaxAbsDifference(AllLogits(**in_place, ids, last_context),
                               AllLogits(**converted, ids, last_context)),
              kTolerance);
  }
  // Generation: one token at a time, the row kernels against BLAS's sgemv.
  const int steps = static_cast<int>(ReadIds(GetParam(), "greedy.npy").size());
  const int last_context = meta["last_context_length_greedy"].get<int>();
  std::vector<int> tokens_a, tokens_b;
  std::vector<float> logits_a, logits_b;
  Greedy(**in_place, ids, last_context, steps, &tokens_a, &logits_a);
  Greedy(**converted, ids, last_context, steps, &tokens_b, &logits_b);
  EXPECT_EQ(tokens_a, tokens_b);
  EXPECT_LE(MaxAbsDifference(logits_a, logits_b), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(AllFolders, GoldenBf16Test,
                         ::testing::Values("tiny", "gqa", "tied", "deep"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace fot
