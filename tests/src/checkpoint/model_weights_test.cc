#include "src/checkpoint/model_weights.h"

#include <unistd.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/checkpoint/safetensors_writer.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

std::string FreshDir(const std::string& suffix = "") {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "_" + info->name() + suffix;
  for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  fs::path dir =
      fs::path(::testing::TempDir()) / ("fot_mw_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string Golden(const std::string& folder) { return std::string(FOT_GOLDEN_DIR) + "/" + folder; }

// A small longllama with grouped heads: 4 heads of 4 dims, 2 kv heads.
ModelConfig SmallConfig() {
  ModelConfig config;
  config.model_type = "longllama";
  config.vocab_size = 32;
  config.hidden_size = 16;
  config.intermediate_size = 24;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 8;
  config.last_context_length = 4;
  config.mem_layers = {1};
  return config;
}

int64_t Count(const TensorSpec& spec) {
  int64_t n = 1;
  for (int64_t dim : spec.shape) n *= dim;
  return n;
}

// The float pointer ModelWeights serves for a Hugging Face tensor name.
const float* Served(const ModelWeights& weights, const std::string& name) {
  if (name == "model.embed_tokens.weight") return weights.embed_tokens();
  if (name == "model.norm.weight") return weights.final_norm();
  if (name == "lm_head.weight") return weights.lm_head();
  const int layer = std::stoi(name.substr(std::strlen("model.layers.")));
  const LayerWeights& l = weights.layer(layer);
  const std::string field = name.substr(name.find('.', std::strlen("model.layers.")) + 1);
  const std::map<std::string, const float*> fields = {
      {"self_attn.q_proj.weight", l.q_proj},
      {"self_attn.k_proj.weight", l.k_proj},
      {"self_attn.v_proj.weight", l.v_proj},
      {"self_attn.o_proj.weight", l.o_proj},
      {"mlp.gate_proj.weight", l.gate_proj},
      {"mlp.up_proj.weight", l.up_proj},
      {"mlp.down_proj.weight", l.down_proj},
      {"input_layernorm.weight", l.input_layernorm},
      {"post_attention_layernorm.weight", l.post_attention_layernorm},
  };
  return fields.at(field);
}

// Every tensor's served floats equal the decoded file contents.
void ExpectServesCheckpoint(const ModelWeights& weights, const std::string& dir) {
  auto checkpoint = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  for (const TensorSpec& spec : ExpectedTensors(weights.config())) {
    SCOPED_TRACE(spec.name);
    const TensorInfo* info = (*checkpoint)->Find(spec.name).value();
    std::vector<float> expected(static_cast<size_t>(Count(spec)));
    DecodeToFloats(info->data, expected.size(), info->dtype, expected.data());
    ASSERT_EQ(
        std::memcmp(Served(weights, spec.name), expected.data(), expected.size() * sizeof(float)),
        0);
  }
}

class GoldenLoadTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenLoadTest, LoadsZeroCopyAndServesTheFileContents) {
  const std::string dir = Golden(GetParam());
  auto config = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  auto weights = ModelWeights::Load(dir, *config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->num_layers(), config->num_hidden_layers);
  EXPECT_EQ(weights->resident_weight_bytes(), 0u);  // aligned F32: used in place
  EXPECT_EQ(weights->mapped_bytes(), fs::file_size(dir + "/model.safetensors"));
  ExpectServesCheckpoint(*weights, dir);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenLoadTest, ::testing::Values("tiny", "deep", "tied", "gqa"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

TEST(ModelWeightsTest, TiedGoldenModelUsesEmbeddingsAsLmHead) {
  const std::string dir = Golden("tied");
  auto config = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_FALSE(SafetensorsCheckpoint::Open(dir).value()->Contains("lm_head.weight"));
  auto weights = ModelWeights::Load(dir, *config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->lm_head(), weights->embed_tokens());
  const int64_t vocab = 512, hidden = 64, inter = 172, layers = 3;
  EXPECT_EQ(
      weights->num_parameters(),
      vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * inter + 2 * hidden) + hidden);
}

TEST(ModelWeightsTest, UntiedConfigOnTiedFileReportsMissingLmHead) {
  const std::string dir = Golden("tied");
  auto config = ModelConfig::FromFile(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  config->tie_word_embeddings = false;
  auto weights = ModelWeights::Load(dir, *config);
  ASSERT_FALSE(weights.ok());
  const std::string message(weights.status().message());
  EXPECT_NE(message.find(dir + "/model.safetensors: missing tensor 'lm_head.weight'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("tie_word_embeddings"), std::string::npos) << message;
}

TEST(ModelWeightsTest, RandomCheckpointServesTheGeneratedValues) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  RandomCheckpointOptions options;
  options.seed = 7;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
  auto weights = ModelWeights::Load(dir, ModelConfig::FromFile(dir + "/config.json").value());
  ASSERT_TRUE(weights.ok()) << weights.status();
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    SCOPED_TRACE(spec.name);
    const bool is_norm = spec.name.find("norm.weight") != std::string::npos;
    std::vector<float> expected = RandomTensorValues(spec.name, Count(spec), is_norm, options);
    ASSERT_EQ(
        std::memcmp(Served(*weights, spec.name), expected.data(), expected.size() * sizeof(float)),
        0);
  }
  // Norms are near one, matrices near zero.
  EXPECT_NEAR(weights->final_norm()[0], 1.0f, 0.2f);
  EXPECT_NEAR(weights->layer(0).q_proj[0], 0.0f, 0.2f);
}

TEST(ModelWeightsTest, RandomCheckpointIsDeterministicAndSeeded) {
  RandomCheckpointOptions a, b;
  b.seed = 1;
  EXPECT_EQ(RandomTensorValues("x", 10, false, a), RandomTensorValues("x", 10, false, a));
  EXPECT_NE(RandomTensorValues("x", 10, false, a), RandomTensorValues("x", 10, false, b));
  EXPECT_NE(RandomTensorValues("x", 10, false, a), RandomTensorValues("y", 10, false, a));
}

TEST(ModelWeightsTest, ShardedCheckpointLoadsTheSameFloatsAsSingleFile) {
  const ModelConfig config = SmallConfig();
  const std::string single = FreshDir("_single"), sharded = FreshDir("_sharded");
  RandomCheckpointOptions options;
  ASSERT_TRUE(WriteRandomCheckpoint(single, config, options).ok());
  options.num_shards = 3;
  ASSERT_TRUE(WriteRandomCheckpoint(sharded, config, options).ok());
  ASSERT_TRUE(fs::exists(sharded + "/model-00003-of-00003.safetensors"));
  ASSERT_TRUE(fs::exists(sharded + "/model.safetensors.index.json"));
  ASSERT_FALSE(fs::exists(sharded + "/model.safetensors"));
  auto a = ModelWeights::Load(single, config);
  auto b = ModelWeights::Load(sharded, config);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    SCOPED_TRACE(spec.name);
    ASSERT_EQ(std::memcmp(Served(*a, spec.name), Served(*b, spec.name),
                          static_cast<size_t>(Count(spec)) * sizeof(float)),
              0);
  }
}

class HalfPrecisionLoadTest : public ::testing::TestWithParam<DType> {};

TEST_P(HalfPrecisionLoadTest, ConvertsOnceToOwnedFloats) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  RandomCheckpointOptions options;
  options.dtype = GetParam();
  options.num_shards = 2;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
  auto weights = ModelWeights::Load(dir, config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->resident_weight_bytes(),
            static_cast<size_t>(weights->num_parameters()) * sizeof(float));
  ExpectServesCheckpoint(*weights, dir);
  // The served floats are the generated ones rounded to the 16-bit dtype.
  std::vector<float> generated =
      RandomTensorValues("model.embed_tokens.weight", 32 * 16, false, options);
  std::vector<uint8_t> encoded = EncodeFloats(generated.data(), generated.size(), GetParam());
  std::vector<float> rounded(generated.size());
  DecodeToFloats(encoded.data(), rounded.size(), GetParam(), rounded.data());
  EXPECT_EQ(std::vector<float>(weights->embed_tokens(), weights->embed_tokens() + rounded.size()),
            rounded);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, HalfPrecisionLoadTest,
                         ::testing::Values(DType::kF16, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(ModelWeightsTest, UnalignedF32IsCopied) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, RandomCheckpointOptions()).ok());
  // Rewrite the file with one more byte of header padding: data now starts at
  // an odd offset.
  const std::string path = dir + "/model.safetensors";
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  bytes.insert(8 + n, " ");
  ++n;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(n >> (8 * i));
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto weights = ModelWeights::Load(dir, config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->resident_weight_bytes(),
            static_cast<size_t>(weights->num_parameters()) * sizeof(float));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(weights->embed_tokens()) % alignof(float), 0u);
  ExpectServesCheckpoint(*weights, dir);
}

TEST(ModelWeightsTest, MovedWeightsKeepTheirPointers) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  RandomCheckpointOptions options;
  options.dtype = DType::kBF16;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
  auto loaded = ModelWeights::Load(dir, config);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const float* embed = loaded->embed_tokens();
  const float* q = loaded->layer(1).q_proj;
  ModelWeights moved = *std::move(loaded);
  EXPECT_EQ(moved.embed_tokens(), embed);
  EXPECT_EQ(moved.layer(1).q_proj, q);
  ExpectServesCheckpoint(moved, dir);
}

TEST(ModelWeightsTest, MissingTensorNamesTensorAndFile) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  std::map<std::string, std::vector<float>> tensors;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    if (spec.name == "model.layers.1.mlp.up_proj.weight") continue;
    tensors[spec.name] = std::vector<float>(static_cast<size_t>(Count(spec)), 0.5f);
  }
  ASSERT_TRUE(WriteCheckpoint(dir, config, tensors).ok());
  auto weights = ModelWeights::Load(dir, config);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(weights.status().message().find(
                dir + "/model.safetensors: missing tensor 'model.layers.1.mlp.up_proj.weight' "
                      "(expected shape [24, 16])"),
            std::string::npos)
      << weights.status();
}

TEST(ModelWeightsTest, WrongShapeNamesTensorFileAndBothShapes) {
  const std::string dir = FreshDir();
  ModelConfig mha = SmallConfig();
  mha.num_key_value_heads = 4;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, mha, RandomCheckpointOptions()).ok());
  auto weights = ModelWeights::Load(dir, SmallConfig());  // expects 2 kv heads
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find(
                dir + "/model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight' has "
                      "shape [16, 16], expected [8, 16]"),
            std::string::npos)
      << weights.status();
}

TEST(ModelWeightsTest, CheckpointWithMoreLayersThanConfigIsRejected) {
  const std::string dir = FreshDir();
  ASSERT_TRUE(WriteRandomCheckpoint(dir, SmallConfig(), RandomCheckpointOptions()).ok());
  ModelConfig one_layer = SmallConfig();
  one_layer.num_hidden_layers = 1;
  one_layer.mem_layers = {0};
  auto weights = ModelWeights::Load(dir, one_layer);
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find("num_hidden_layers = 1"), std::string::npos)
      << weights.status();
}

TEST(ModelWeightsTest, InvalidConfigIsRejectedBeforeReadingWeights) {
  ModelConfig config = SmallConfig();
  config.num_key_value_heads = 3;
  auto weights = ModelWeights::Load(Golden("tiny"), config);
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find("num_key_value_heads (3) must divide"),
            std::string::npos)
      << weights.status();
}

TEST(ModelWeightsTest, MissingFolderNamesTheFolder) {
  const std::string dir = FreshDir() + "/absent";
  auto weights = ModelWeights::Load(dir, SmallConfig());
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find(dir), std::string::npos) << weights.status();
}

TEST(ModelWeightsTest, GqaCheckpointExpandedToMhaLoadsRepeatedKvRows) {
  // Expanding grouped kv heads into full MHA (each kv head repeated for its
  // group) is how parity tests compare GQA with MHA; WriteCheckpoint makes it.
  const ModelConfig gqa = SmallConfig();
  ModelConfig mha = gqa;
  mha.num_key_value_heads = mha.num_attention_heads;
  const int head_dim = gqa.head_dim(), group = 2;
  std::map<std::string, std::vector<float>> tensors;
  RandomCheckpointOptions options;
  for (const TensorSpec& spec : ExpectedTensors(gqa)) {
    std::vector<float> values = RandomTensorValues(spec.name, Count(spec), false, options);
    if (spec.name.find("k_proj") != std::string::npos ||
        spec.name.find("v_proj") != std::string::npos) {
      std::vector<float> expanded;
      for (int kv = 0; kv < gqa.num_key_value_heads; ++kv) {
        for (int g = 0; g < group; ++g) {
          auto begin = values.begin() + kv * head_dim * gqa.hidden_size;
          expanded.insert(expanded.end(), begin, begin + head_dim * gqa.hidden_size);
        }
      }
      values = expanded;
    }
    tensors[spec.name] = values;
  }
  const std::string dir = FreshDir();
  ASSERT_TRUE(WriteCheckpoint(dir, mha, tensors, DType::kF32, 2).ok());
  auto weights = ModelWeights::Load(dir, ModelConfig::FromFile(dir + "/config.json").value());
  ASSERT_TRUE(weights.ok()) << weights.status();
  const float* k = weights->layer(0).k_proj;  // [4 heads * 4, 16]
  const size_t head_block = static_cast<size_t>(head_dim * gqa.hidden_size);
  EXPECT_EQ(std::memcmp(k, k + head_block, head_block * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(k, k + 2 * head_block, head_block * sizeof(float)), 0);
}

TEST(ModelWeightsTest, RewritingAsSingleFileRemovesTheStaleIndex) {
  const std::string dir = FreshDir();
  RandomCheckpointOptions options;
  options.num_shards = 2;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, SmallConfig(), options).ok());
  options.num_shards = 1;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, SmallConfig(), options).ok());
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
}

}  // namespace
}  // namespace fot
