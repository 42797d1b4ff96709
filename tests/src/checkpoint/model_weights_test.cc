#include "src/checkpoint/model_weights.h"

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
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

std::vector<float> Floats(const WeightMatrix& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  DecodeRows(m, 0, m.rows, out.data());
  return out;
}

// The floats ModelWeights serves for a Hugging Face tensor name (a matrix
// decoded from its weight type).
std::vector<float> Served(const ModelWeights& weights, const std::string& name) {
  const int64_t hidden = weights.config().hidden_size;
  if (name == "model.embed_tokens.weight") return Floats(weights.embed_tokens());
  if (name == "model.norm.weight") return {weights.final_norm(), weights.final_norm() + hidden};
  if (name == "lm_head.weight") return Floats(weights.lm_head());
  const int layer = std::stoi(name.substr(std::strlen("model.layers.")));
  const LayerWeights& l = weights.layer(layer);
  const std::string field = name.substr(name.find('.', std::strlen("model.layers.")) + 1);
  if (field == "input_layernorm.weight") return {l.input_layernorm, l.input_layernorm + hidden};
  if (field == "post_attention_layernorm.weight") {
    return {l.post_attention_layernorm, l.post_attention_layernorm + hidden};
  }
  const std::map<std::string, const WeightMatrix*> fields = {
      {"self_attn.q_proj.weight", &l.q_proj}, {"self_attn.k_proj.weight", &l.k_proj},
      {"self_attn.v_proj.weight", &l.v_proj}, {"self_attn.o_proj.weight", &l.o_proj},
      {"mlp.gate_proj.weight", &l.gate_proj}, {"mlp.up_proj.weight", &l.up_proj},
      {"mlp.down_proj.weight", &l.down_proj},
  };
  return Floats(*fields.at(field));
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
    const std::vector<float> served = Served(weights, spec.name);
    ASSERT_EQ(served.size(), expected.size());
    ASSERT_EQ(std::memcmp(served.data(), expected.data(), expected.size() * sizeof(float)), 0);
  }
}

// Bytes of the norm weights, which are always float32.
size_t NormBytes(const ModelConfig& config) {
  return static_cast<size_t>((2 * config.num_hidden_layers + 1) * config.hidden_size) *
         sizeof(float);
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
  EXPECT_EQ(weights->lm_head().data, weights->embed_tokens().data);
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
    ASSERT_EQ(Served(*weights, spec.name), expected);
  }
  // Norms are near one, matrices near zero.
  EXPECT_NEAR(weights->final_norm()[0], 1.0f, 0.2f);
  EXPECT_NEAR(weights->layer(0).q_proj.f32()[0], 0.0f, 0.2f);
}

TEST(ModelWeightsTest, RandomCheckpointDrawnInPiecesServesTheWholeSequence) {
  // An embedding of 2100 x 512 floats crosses the writer's piece of 2^20.
  ModelConfig config = SmallConfig();
  config.vocab_size = 2100;
  config.hidden_size = 512;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 8;
  const std::string dir = FreshDir();
  RandomCheckpointOptions options;
  options.dtype = DType::kBF16;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
  auto weights = ModelWeights::Load(dir, config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const std::vector<float> drawn =
      RandomTensorValues("model.embed_tokens.weight", 2100 * 512, false, options);
  const std::vector<float> served = Floats(weights->embed_tokens());
  ASSERT_EQ(served.size(), drawn.size());
  for (size_t i = 0; i < drawn.size(); ++i) {
    ASSERT_EQ(served[i], BFloat16ToFloat(FloatToBFloat16(drawn[i]))) << i;
  }
}

TEST(ModelWeightsTest, PublishedShapesHaveThePublishedSizes) {
  auto small = PublishedShape("longllama-3b");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_TRUE(small->Validate().ok()) << small->Validate();
  EXPECT_EQ(small->hidden_size, 3200);
  EXPECT_EQ(small->num_hidden_layers, 26);
  EXPECT_EQ(small->intermediate_size, 8640);
  EXPECT_EQ(small->vocab_size, 32000);
  EXPECT_EQ(small->mem_layers, (std::vector<int>{6, 12, 18}));
  auto large = PublishedShape("longllama-7b");
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_TRUE(large->Validate().ok()) << large->Validate();
  EXPECT_EQ(large->hidden_size, 4096);
  EXPECT_EQ(large->num_hidden_layers, 32);
  EXPECT_EQ(large->num_attention_heads, 32);
  EXPECT_EQ(large->intermediate_size, 11008);
  EXPECT_EQ(large->vocab_size, 32016);
  EXPECT_EQ(large->mem_layers, (std::vector<int>{8, 16, 24}));
  EXPECT_EQ(large->rope_theta, 1e6f);
  // In bf16: the ~6.8 GB and ~13.5 GB of the published checkpoints.
  auto parameters = [](const ModelConfig& config) {
    int64_t n = 0;
    for (const TensorSpec& spec : ExpectedTensors(config)) n += Count(spec);
    return n;
  };
  EXPECT_NEAR(parameters(*small) * 2 / 1e9, 6.85, 0.01);
  EXPECT_NEAR(parameters(*large) * 2 / 1e9, 13.48, 0.01);
  EXPECT_NE(PublishedShape("llama-13b").status().message().find("longllama-3b, longllama-7b"),
            std::string::npos);
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
    ASSERT_EQ(Served(*a, spec.name), Served(*b, spec.name));
  }
}

class HalfPrecisionLoadTest : public ::testing::TestWithParam<DType> {};

TEST_P(HalfPrecisionLoadTest, MatricesStayInPlaceInTheFilesDtype) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  RandomCheckpointOptions options;
  options.dtype = GetParam();
  options.num_shards = 2;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
  auto weights = ModelWeights::Load(dir, config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  // Only the norms are converted (to float32); the matrices are the mapping.
  EXPECT_EQ(weights->resident_weight_bytes(), NormBytes(config));
  const WeightType expected = GetParam() == DType::kF16 ? WeightType::kF16 : WeightType::kBF16;
  EXPECT_EQ(weights->layer(1).down_proj.type, expected);
  EXPECT_EQ(weights->embed_tokens().type, expected);
  const auto checkpoint = SafetensorsCheckpoint::Open(dir).value();
  const TensorInfo* info = checkpoint->Find("model.layers.1.mlp.down_proj.weight").value();
  EXPECT_EQ(std::memcmp(weights->layer(1).down_proj.data, info->data, info->num_bytes), 0);
  ExpectServesCheckpoint(*weights, dir);
  // The served floats are the generated ones rounded to the 16-bit dtype.
  std::vector<float> generated =
      RandomTensorValues("model.embed_tokens.weight", 32 * 16, false, options);
  std::vector<uint8_t> encoded = EncodeFloats(generated.data(), generated.size(), GetParam());
  std::vector<float> rounded(generated.size());
  DecodeToFloats(encoded.data(), rounded.size(), GetParam(), rounded.data());
  EXPECT_EQ(Floats(weights->embed_tokens()), rounded);
}

TEST_P(HalfPrecisionLoadTest, F32OptionConvertsOnceToOwnedFloats) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  RandomCheckpointOptions options;
  options.dtype = GetParam();
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
  auto weights = ModelWeights::Load(dir, config, {.dtype = WeightsDType::kF32});
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->resident_weight_bytes(),
            static_cast<size_t>(weights->num_parameters()) * sizeof(float));
  EXPECT_EQ(weights->layer(0).q_proj.type, WeightType::kF32);
  ExpectServesCheckpoint(*weights, dir);
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
  EXPECT_EQ(reinterpret_cast<uintptr_t>(weights->embed_tokens().data) % alignof(float), 0u);
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
  const void* embed = loaded->embed_tokens().data;
  const void* q = loaded->layer(1).q_proj.data;
  const float* norm = loaded->final_norm();  // converted, owned
  ModelWeights moved = *std::move(loaded);
  EXPECT_EQ(moved.embed_tokens().data, embed);
  EXPECT_EQ(moved.layer(1).q_proj.data, q);
  EXPECT_EQ(moved.final_norm(), norm);
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
  const float* k = weights->layer(0).k_proj.f32();  // [4 heads * 4, 16]
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

TEST(ModelWeightsTest, Bf16OptionRoundsAFloat32FileOnceAtLoad) {
  const std::string dir = FreshDir();
  const ModelConfig config = SmallConfig();
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, RandomCheckpointOptions()).ok());
  auto weights = ModelWeights::Load(dir, config, {.dtype = WeightsDType::kBF16});
  ASSERT_TRUE(weights.ok()) << weights.status();
  const int64_t matrices = weights->num_parameters() - static_cast<int64_t>(NormBytes(config) / 4);
  EXPECT_EQ(weights->resident_weight_bytes(), static_cast<size_t>(matrices) * 2);
  EXPECT_EQ(weights->resident_weight_bytes(),
            weights->weight_bytes() - NormBytes(config) + weights->embed_tokens().bytes());
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  const std::vector<float> original = RandomTensorValues(name, 24 * 16, false, {});
  ASSERT_EQ(weights->layer(0).up_proj.type, WeightType::kBF16);
  const std::vector<float> served = Served(*weights, name);
  for (size_t i = 0; i < original.size(); ++i) {
    ASSERT_EQ(served[i], BFloat16ToFloat(FloatToBFloat16(original[i]))) << i;
  }
}

TEST(ModelWeightsTest, Int8OptionQuantizesEveryMatrixInGroups) {
  const std::string dir = FreshDir();
  ModelConfig config = SmallConfig();
  config.hidden_size = 48;  // rows of 48: a group of 32 and a last one of 16
  config.intermediate_size = 64;
  RandomCheckpointOptions options;
  options.dtype = DType::kBF16;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
  auto weights = ModelWeights::Load(dir, config, {.dtype = WeightsDType::kInt8});
  ASSERT_TRUE(weights.ok()) << weights.status();
  const WeightMatrix& gate = weights->layer(1).gate_proj;  // [64, 48]
  ASSERT_EQ(gate.type, WeightType::kInt8);
  EXPECT_EQ(gate.group, 32);
  EXPECT_EQ(gate.groups_per_row(), 2);
  EXPECT_EQ(gate.bytes(), 64u * 48 + 64 * 2 * sizeof(float));
  // Each value within half a step of its group's scale of the file's value.
  const std::string name = "model.layers.1.mlp.gate_proj.weight";
  const auto checkpoint = SafetensorsCheckpoint::Open(dir).value();
  const TensorInfo* info = checkpoint->Find(name).value();
  std::vector<float> file(64 * 48);
  DecodeToFloats(info->data, file.size(), info->dtype, file.data());
  const std::vector<float> served = Served(*weights, name);
  for (int64_t r = 0; r < 64; ++r) {
    for (int64_t c = 0; c < 48; ++c) {
      const float scale = gate.scales[r * 2 + c / 32];
      ASSERT_LE(std::fabs(served[r * 48 + c] - file[r * 48 + c]), scale * 0.5f + 1e-9f)
          << r << ", " << c;
    }
  }
  EXPECT_EQ(weights->embed_tokens().type, WeightType::kInt8);
  EXPECT_EQ(weights->options().int8_group, 32);
  // int8 with groups of 64: one scale per row of 48.
  auto wide = ModelWeights::Load(dir, config, {.dtype = WeightsDType::kInt8, .int8_group = 64});
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->layer(1).gate_proj.groups_per_row(), 1);
  auto odd = ModelWeights::Load(dir, config, {.dtype = WeightsDType::kInt8, .int8_group = 48});
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument) << odd.status();
}

TEST(ModelWeightsTest, WeightsOptionsParseAndPrint) {
  for (const char* text : {"auto", "f32", "bf16", "int8", "int8:64"}) {
    auto options = ParseWeightsOptions(text);
    ASSERT_TRUE(options.ok()) << text << ": " << options.status();
    EXPECT_EQ(WeightsOptionsToString(*options), text);
  }
  EXPECT_EQ(ParseWeightsOptions("int8:32")->int8_group, 32);
  EXPECT_EQ(ParseWeightsOptions("bf16")->dtype, WeightsDType::kBF16);
  for (const char* text : {"", "fp16", "int4", "int8:16", "BF16"}) {
    auto options = ParseWeightsOptions(text);
    ASSERT_FALSE(options.ok()) << text;
    EXPECT_NE(options.status().message().find("auto, f32, bf16, int8"), std::string::npos)
        << options.status();
  }
}

TEST(QuantizeInt8Test, GroupsScaleToTheirLargestMagnitude) {
  // Three groups of 4: an ordinary one, zeros, and a short last one of 2.
  const std::vector<float> x = {0.5f, -1.0f, 0.25f, 0.0f, 0, 0, 0, 0, 3.0f, -0.03f};
  std::vector<int8_t> q(x.size());
  std::vector<float> scales(3);
  QuantizeInt8(x.data(), static_cast<int64_t>(x.size()), 4, q.data(), scales.data());
  EXPECT_EQ(scales, (std::vector<float>{1.0f / 127, 0.0f, 3.0f / 127}));
  EXPECT_EQ(q, (std::vector<int8_t>{64, -127, 32, 0, 0, 0, 0, 0, 127, -1}));  // 63.5 -> 64 (even)
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> damaged = {nan, 1.0f};
  QuantizeInt8(damaged.data(), 2, 32, q.data(), scales.data());
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 127);
}

}  // namespace
}  // namespace fot
