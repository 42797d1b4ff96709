// The small random LongLLaMA the engine tests share, and writing it to disk.
#ifndef FOTSERVE_TESTS_SRC_SMALL_MODEL_H_
#define FOTSERVE_TESTS_SRC_SMALL_MODEL_H_

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/model/kernels.h"
#include "tests/src/small_model_config.h"

namespace fot {

// Writes `config` with seeded random weights under TempDir()/name and returns
// the folder. Weights of std 0.3 are far from uniform, so a wrong detail moves
// logits visibly.
inline std::string WriteSmallModel(const std::string& name, const ModelConfig& config,
                                   uint32_t seed = 0) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  RandomCheckpointOptions options;
  options.seed = seed;
  options.init_std = 0.3f;
  absl::Status status = WriteRandomCheckpoint(dir, config, options);
  EXPECT_TRUE(status.ok()) << status;
  return dir;
}

// n token ids in [0, vocab), seeded.
inline std::vector<int> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids(n);
  for (int& id : ids) id = static_cast<int>(rng() % vocab);
  return ids;
}

// Loads a model folder; null (with a test failure) if it does not load.
inline std::unique_ptr<Engine> LoadEngine(const std::string& dir) {
  auto engine = Engine::Load(dir);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// The one-shot reference that sessions must match: one Prefill over `tokens`
// (the model's last_context_length as the local window), then `max_tokens`
// greedy Appends. Appends the generated tokens to *generated and each one's
// logits row to *logits.
inline void GreedyOneShot(const Engine& engine, const std::vector<int>& tokens, int max_tokens,
                          const AttentionOptions& attention, std::vector<int>* generated,
                          std::vector<float>* logits) {
  const int vocab = engine.config().vocab_size;
  ModelState state = *engine.NewState(engine.DefaultMemoryOptions(), attention);
  std::vector<float> last(vocab);
  const LogitsSink keep = [&](int64_t, int64_t rows, const float* l) {
    std::copy(l + (rows - 1) * vocab, l + rows * vocab, last.begin());
  };
  EXPECT_TRUE(
      engine.Prefill(tokens, engine.config().last_context_length, &state, LogitsMode::kLast, keep)
          .ok());
  for (int i = 0; i < max_tokens; ++i) {
    logits->insert(logits->end(), last.begin(), last.end());
    const int token = ArgMax(last.data(), vocab);
    generated->push_back(token);
    if (i + 1 < max_tokens) {
      EXPECT_TRUE(engine.Append({&token, 1}, &state, LogitsMode::kLast, keep).ok());
    }
  }
}

}  // namespace fot

#endif  // FOTSERVE_TESTS_SRC_SMALL_MODEL_H_
