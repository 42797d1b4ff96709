// fot-run end to end, through the real binary: golden parity of the logits
// file and of a cached greedy continuation, and one clear error line with a
// non-zero exit for each kind of bad input.
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/checkpoint/npy.h"

namespace fot {
namespace {

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr together
};

Result RunFotRun(const std::string& args) {
  const std::string command = std::string(FOT_BINARY_DIR) + "/fot-run " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string Golden(const std::string& file) {
  return std::string(FOT_GOLDEN_DIR) + "/tiny/" + file;
}

float MaxAbsDifference(const std::string& a_path, const std::string& b_path) {
  std::vector<int64_t> a_shape, b_shape;
  auto a = ReadNpyFloat32(a_path, &a_shape);
  auto b = ReadNpyFloat32(b_path, &b_shape);
  EXPECT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a_shape, b_shape);
  if (!a.ok() || !b.ok() || a->size() != b->size()) return INFINITY;
  float worst = 0;
  for (size_t i = 0; i < a->size(); ++i) worst = std::max(worst, std::fabs((*a)[i] - (*b)[i]));
  return worst;
}

TEST(FotRunTest, LogitsFileAndCachedGreedyContinuationMatchTheReference) {
  const std::string out = ::testing::TempDir() + "/fot_run_logits.npy";
  const std::string ids = ::testing::TempDir() + "/fot_run_ids.npy";
  const Result r = RunFotRun("--model " + std::string(FOT_GOLDEN_DIR) + "/tiny --input-ids " +
                             Golden("input_ids.npy") +
                             " --last-context-length 16 --use-cache --generate 40 --ignore-eos"
                             " --logits-out " +
                             out + " --generated-ids-out " + ids);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos) << r.output;
  EXPECT_LE(MaxAbsDifference(out, Golden("logits_nocache.npy")), 5e-4);
  EXPECT_LE(MaxAbsDifference(::testing::TempDir() + "/fot_run_logits.generated.npy",
                             Golden("greedy_logits.npy")),
            5e-4);
  auto generated = ReadNpyTokenIds(ids);
  auto expected = ReadNpyTokenIds(Golden("greedy.npy"));
  ASSERT_TRUE(generated.ok() && expected.ok());
  EXPECT_EQ(*generated, *expected);
}

TEST(FotRunTest, GenerationWithoutTheCacheRerunsTheWholeSequence) {
  // Without --use-cache, the logits after feeding generated token g0 are those
  // of a fresh forward over prompt + g0, with that sequence's window split.
  const std::string dir = ::testing::TempDir();
  const std::string model = "--model " + std::string(FOT_GOLDEN_DIR) + "/tiny";
  ASSERT_EQ(RunFotRun(model + " --input-ids " + Golden("input_ids.npy") +
                      " --generate 2 --ignore-eos --logits-out " + dir + "/nocache.npy" +
                      " --generated-ids-out " + dir + "/nocache_ids.npy")
                .exit_code,
            0);
  auto prompt = ReadNpyTokenIds(Golden("input_ids.npy"));
  auto generated = ReadNpyTokenIds(dir + "/nocache_ids.npy");
  ASSERT_TRUE(prompt.ok() && generated.ok());
  std::vector<int64_t> extended(prompt->begin(), prompt->end());
  extended.push_back(generated->front());
  ASSERT_TRUE(WriteNpyInt64(dir + "/extended_ids.npy", extended).ok());
  ASSERT_EQ(RunFotRun(model + " --input-ids " + dir + "/extended_ids.npy --logits-out " + dir +
                      "/extended.npy")
                .exit_code,
            0);

  std::vector<int64_t> step_shape, full_shape;
  auto step = ReadNpyFloat32(dir + "/nocache.generated.npy", &step_shape);
  auto full = ReadNpyFloat32(dir + "/extended.npy", &full_shape);
  ASSERT_TRUE(step.ok() && full.ok());
  const int64_t vocab = full_shape[1];
  ASSERT_EQ(full_shape[0], static_cast<int64_t>(extended.size()));
  float worst = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    worst = std::max(worst, std::fabs((*step)[v] - (*full)[(full_shape[0] - 1) * vocab + v]));
  }
  EXPECT_LE(worst, 1e-5);
}

TEST(FotRunTest, WeightsDtypeChoosesHowTheWeightsAreKept) {
  const std::string dir = ::testing::TempDir();
  const std::string run = "--model " + std::string(FOT_GOLDEN_DIR) + "/tiny --input-ids " +
                          Golden("input_ids.npy") + " --logits-out " + dir + "/weights_";
  for (const char* dtype : {"auto", "f32", "bf16", "int8"}) {
    const Result r = RunFotRun(run + dtype + ".npy --weights-dtype " + dtype);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string kept = std::string(dtype) == "auto" ? "f32" : dtype;
    EXPECT_NE(r.output.find("weights: " + kept + " (" + dtype + ")"), std::string::npos)
        << r.output;
  }
  // The golden file is F32: auto keeps it, f32 too (the same products).
  EXPECT_EQ(MaxAbsDifference(dir + "/weights_auto.npy", dir + "/weights_f32.npy"), 0.0f);
  EXPECT_LE(MaxAbsDifference(dir + "/weights_auto.npy", Golden("logits_nocache.npy")), 5e-4);
  // bf16 and int8 round the weights (init std 0.15, logits up to 5.4): close,
  // not equal (measured 0.09 and 0.43).
  EXPECT_LE(MaxAbsDifference(dir + "/weights_bf16.npy", dir + "/weights_f32.npy"), 0.3);
  EXPECT_LE(MaxAbsDifference(dir + "/weights_int8.npy", dir + "/weights_f32.npy"), 1.0);
}

struct BadInput {
  const char* name;
  std::string args;
  const char* message;  // a fragment the error line must contain
};

class FotRunBadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(FotRunBadInputTest, FailsWithOneClearLine) {
  const Result r = RunFotRun(GetParam().args);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(GetParam().message), std::string::npos) << r.output;
}

const std::string kTiny = "--model " + std::string(FOT_GOLDEN_DIR) + "/tiny ";

INSTANTIATE_TEST_SUITE_P(
    Cases, FotRunBadInputTest,
    ::testing::Values(
        BadInput{"NoModel", "--prompt hi", "--model is required"},
        BadInput{"MissingModelFolder", "--model /nonexistent/model --prompt hi", "config.json"},
        BadInput{"NeitherPromptNorIds", kTiny, "exactly one of --prompt and --input-ids"},
        BadInput{"BothPromptAndIds", kTiny + "--prompt hi --input-ids x.npy", "exactly one"},
        BadInput{"PromptWithoutTokenizer", kTiny + "--prompt hi", "tokenizer.model"},
        BadInput{"MissingIdsFile", kTiny + "--input-ids /nonexistent.npy", "/nonexistent.npy"},
        BadInput{"IdsFileOfFloats", kTiny + "--input-ids " + Golden("logits_nocache.npy"),
                 "logits_nocache.npy"},
        BadInput{"NegativeGenerate",
                 kTiny + "--input-ids " + Golden("input_ids.npy") + " --generate -1", "--generate"},
        BadInput{"NegativeTemperature",
                 kTiny + "--input-ids " + Golden("input_ids.npy") + " --temperature -1",
                 "temperature"},
        BadInput{"LastContextBeyondTheWindow",
                 kTiny + "--input-ids " + Golden("input_ids.npy") + " --last-context-length 33",
                 "last_context_length"},
        BadInput{"UnknownWeightsDtype",
                 kTiny + "--input-ids " + Golden("input_ids.npy") + " --weights-dtype fp8",
                 "--weights_dtype: weights dtype 'fp8' is not one of auto, f32, bf16, int8"},
        BadInput{"UnknownFlag", kTiny + "--no-such-flag", "no_such_flag"},
        BadInput{"StrayArgument", kTiny + "stray", "unexpected argument"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace fot
