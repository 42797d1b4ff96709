// fot-make-model through the real binary: a published shape with flags that
// change it, written in the chosen dtype.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/safetensors_reader.h"

namespace fot {
namespace {

int RunMakeModel(const std::string& args, std::string* output) {
  const std::string command = std::string(FOT_BINARY_DIR) + "/fot-make-model " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output->append(buffer.data(), n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(MakeModelTest, PublishedShapeWithSmallerFlagsInBf16) {
  const std::string dir = ::testing::TempDir() + "/make_model_7b_small";
  std::filesystem::remove_all(dir);
  std::string output;
  // The 7B shape, shrunk: what is not given (rope_theta, window, vocab) stays.
  ASSERT_EQ(RunMakeModel("--out " + dir +
                             " --shape longllama-7b --layers 2 --hidden 128 --heads 4"
                             " --intermediate 256 --mem-layers 1 --dtype bf16",
                         &output),
            0)
      << output;
  auto config = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_hidden_layers, 2);
  EXPECT_EQ(config->hidden_size, 128);
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->vocab_size, 32016);
  EXPECT_EQ(config->rope_theta, 1e6f);
  EXPECT_EQ(config->max_position_embeddings, 2048);
  EXPECT_EQ(config->last_context_length, 1024);
  EXPECT_EQ(config->mem_layers, std::vector<int>{1});
  auto checkpoint = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->Find("model.layers.1.mlp.down_proj.weight").value()->dtype,
            DType::kBF16);
  EXPECT_NE(output.find("vocab 32016"), std::string::npos) << output;
}

TEST(MakeModelTest, UnknownShapeIsOneLine) {
  std::string output;
  EXPECT_EQ(RunMakeModel("--out /tmp/unused --shape gpt-2", &output), 2);
  EXPECT_NE(output.find("--shape: shape 'gpt-2' is not one of longllama-3b, longllama-7b"),
            std::string::npos)
      << output;
}

}  // namespace
}  // namespace fot
