#include "src/engine/memory_snapshot.h"

#include <filesystem>
#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/model/lambda_stream_cache.h"
#include "tests/base/faulty_env.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

class MemorySnapshotTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ModelConfig c = SmallModelConfig();
    c.mem_layers = {0, 2};
    engine_ = LoadEngine(WriteSmallModel("snapshot_model", c));
    ASSERT_NE(engine_, nullptr);
    std::mt19937 rng(3);
    for (int i = 0; i < 300; ++i) document_.push_back(static_cast<int>(rng() % 97));
    for (int i = 0; i < 20; ++i) question_.push_back(static_cast<int>(rng() % 97));
  }

  // A state whose memory holds the document, with the given index spec.
  ModelState BuildMemory() {
    MemoryOptions options;
    EXPECT_TRUE(ParseIndexSpec(GetParam(), &options).ok());
    options.ivf_nlist = 4;
    options.ivf_nprobe = 2;
    options.ivf_train_size = 160;  // train part-way through the document
    auto state = engine_->NewState(options);
    EXPECT_TRUE(state.ok()) << state.status();
    EXPECT_TRUE(engine_->Prefill(document_, 16, &*state, LogitsMode::kNone, Ignore()).ok());
    // Snapshots hold memory, not the local cache: move it all to memory.
    EXPECT_TRUE(engine_->transformer().FlushLocalCache(&*state).ok());
    return *std::move(state);
  }

  std::vector<float> Ask(ModelState* state) {
    std::vector<float> logits;
    EXPECT_TRUE(engine_
                    ->Prefill(question_, 8, state, LogitsMode::kAll,
                              [&](int64_t, int64_t rows, const float* l) {
                                logits.insert(logits.end(), l, l + rows * 97);
                              })
                    .ok());
    return logits;
  }

  static LogitsSink Ignore() {
    return [](int64_t, int64_t, const float*) {};
  }

  std::unique_ptr<Engine> engine_;
  std::vector<int> document_, question_;
};

TEST_P(MemorySnapshotTest, SaveAndLoadGiveIdenticalLogits) {
  ModelState original = BuildMemory();
  const std::string dir = ::testing::TempDir() + "/memory_" + GetParam().substr(0, 4);
  ASSERT_TRUE(SaveMemory(engine_->transformer(), original, dir).ok());
  auto loaded = LoadMemory(engine_->transformer(), dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (ModelState* s : {&original, &*loaded}) {
    s->retrieval = *ParseRetrieval(GetParam() == "flat" ? "dense" : "knn:8");
  }
  EXPECT_EQ(loaded->tokens_seen, original.tokens_seen);
  EXPECT_EQ(Ask(&original), Ask(&*loaded));
}

INSTANTIATE_TEST_SUITE_P(IndexKinds, MemorySnapshotTest, ::testing::Values("flat", "hnsw", "ivf"),
                         [](const auto& info) { return info.param; });

class MemorySnapshotErrorTest : public MemorySnapshotTest {};

TEST_P(MemorySnapshotErrorTest, AFailedSaveLeavesThePreviousOneIntact) {
  ModelState state = BuildMemory();
  const std::string dir = ::testing::TempDir() + "/memory_intact";
  ASSERT_TRUE(SaveMemory(engine_->transformer(), state, dir).ok());
  // A state that lost its last memory layer fails half-way through a save,
  // after layer 0 was written to the staging area.
  const int64_t saved_size = state.memory[0]->size();
  ASSERT_TRUE(engine_->Prefill({1, 2, 3}, 8, &state, LogitsMode::kNone, Ignore()).ok());
  ASSERT_TRUE(engine_->transformer().FlushLocalCache(&state).ok());
  state.memory[2].reset();
  EXPECT_EQ(SaveMemory(engine_->transformer(), state, dir).code(),
            absl::StatusCode::kInvalidArgument);
  auto loaded = LoadMemory(engine_->transformer(), dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->memory[0]->size(), saved_size);
}

// Every write of the save failing in turn: the error comes back and the
// directory loads as the previous save or the new one, never a mixture.
TEST_P(MemorySnapshotErrorTest, AFailingDiskAtAnyWriteKeepsAWholeSave) {
  ModelState state = BuildMemory();
  const std::string dir = ::testing::TempDir() + "/memory_failing_disk";
  const int64_t previous = state.tokens_seen;
  ASSERT_TRUE(SaveMemory(engine_->transformer(), state, dir).ok());
  ModelState previous_state = *LoadMemory(engine_->transformer(), dir);
  ASSERT_TRUE(engine_->Prefill({1, 2, 3}, 8, &state, LogitsMode::kNone, Ignore()).ok());
  ASSERT_TRUE(engine_->transformer().FlushLocalCache(&state).ok());
  const int64_t next = state.tokens_seen;
  const int operations = ForEachFailurePoint(
      [&](Env& env) { return SaveMemory(engine_->transformer(), state, dir, &env); },
      [&](const absl::Status& status, int fail_at) {
        auto loaded = LoadMemory(engine_->transformer(), dir);
        ASSERT_TRUE(loaded.ok()) << "failing at " << fail_at << ": " << loaded.status();
        if (status.ok()) {
          EXPECT_EQ(loaded->tokens_seen, next);
          return;
        }
        EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
        EXPECT_TRUE(loaded->tokens_seen == previous || loaded->tokens_seen == next) << fail_at;
        EXPECT_EQ(loaded->memory[0]->size(), loaded->tokens_seen == previous
                                                 ? previous_state.memory[0]->size()
                                                 : state.memory[0]->size());
        ASSERT_TRUE(SaveMemory(engine_->transformer(), previous_state, dir).ok());
      },
      ENOSPC, /*stride=*/7);  // samples the failure points of a long save
  EXPECT_GT(operations, 40);
}

TEST_P(MemorySnapshotErrorTest, RefusesMissingForeignAndCorruptDirectories) {
  EXPECT_EQ(LoadMemory(engine_->transformer(), ::testing::TempDir() + "/none").status().code(),
            absl::StatusCode::kNotFound);
  const std::string foreign = ::testing::TempDir() + "/foreign";
  std::filesystem::create_directories(foreign);
  std::ofstream(foreign + "/notes.txt") << "mine";
  ModelState state = BuildMemory();
  EXPECT_EQ(SaveMemory(engine_->transformer(), state, foreign).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::filesystem::exists(foreign + "/notes.txt"));

  const std::string dir = ::testing::TempDir() + "/memory_corrupt";
  ASSERT_TRUE(SaveMemory(engine_->transformer(), state, dir).ok());
  std::ofstream(dir + "/MANIFEST") << "fotserve-memory 1\nmem_layers 1\n";
  EXPECT_FALSE(LoadMemory(engine_->transformer(), dir).ok());
}

INSTANTIATE_TEST_SUITE_P(Flat, MemorySnapshotErrorTest, ::testing::Values("flat"));

TEST_P(MemorySnapshotErrorTest, LambdaStateSavesSinksAndRingAndLoadsOnlyAsTheSameAttention) {
  AttentionOptions lambda;
  lambda.mode = AttentionMode::kLambda;
  lambda.n_global = 3;
  lambda.local_window = 5;
  lambda.memory_layers = std::vector<int>{1};  // not the config's 0, 2
  ModelState state = *engine_->NewState(MemoryOptions{}, lambda);
  ASSERT_TRUE(engine_->Prefill(document_, 16, &state, LogitsMode::kNone, Ignore()).ok());
  const std::string dir = ::testing::TempDir() + "/memory_lambda";
  ASSERT_TRUE(SaveMemory(engine_->transformer(), state, dir).ok());
  auto loaded = LoadMemory(engine_->transformer(), dir, lambda);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(dynamic_cast<const LambdaStreamCache&>(*loaded->cache).layers()[2].tokens(), 300);
  EXPECT_EQ(loaded->memory[1]->size(), state.memory[1]->size());
  EXPECT_EQ(loaded->memory[0], nullptr);
  EXPECT_EQ(Ask(&*loaded), Ask(&state));  // continues the stream exactly
  // Loading it as fot, or with another window, is refused.
  EXPECT_EQ(LoadMemory(engine_->transformer(), dir).status().code(),
            absl::StatusCode::kFailedPrecondition);
  lambda.local_window = 6;
  EXPECT_EQ(LoadMemory(engine_->transformer(), dir, lambda).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace fot
