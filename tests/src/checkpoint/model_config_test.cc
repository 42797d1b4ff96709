#include "src/checkpoint/model_config.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fot {
namespace {

using Json = nlohmann::json;

std::string GoldenConfig(const std::string& folder) {
  return std::string(FOT_GOLDEN_DIR) + "/" + folder + "/config.json";
}

// A minimal valid longllama config (the golden "tiny" one, written out).
Json BaseConfig() {
  return Json::parse(R"({
    "architectures": ["LongLlamaForCausalLM"], "model_type": "longllama",
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
    "max_position_embeddings": 32, "last_context_length": 16, "mem_layers": [1],
    "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000.0})");
}

TEST(ModelConfigTest, GoldenTinyConfigParses) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(GoldenConfig("tiny"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "longllama");
  EXPECT_EQ(config->vocab_size, 512);
  EXPECT_EQ(config->hidden_size, 64);
  EXPECT_EQ(config->intermediate_size, 172);
  EXPECT_EQ(config->num_hidden_layers, 3);
  EXPECT_EQ(config->num_attention_heads, 4);
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->max_position_embeddings, 32);
  EXPECT_EQ(config->last_context_length, 16);
  EXPECT_EQ(config->mem_layers, std::vector<int>({1}));
  EXPECT_TRUE(config->mem_positionals);
  EXPECT_EQ(config->mem_dtype, "float32");
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FLOAT_EQ(config->rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(config->rope_theta, 10000.0f);
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_id, 2);
  EXPECT_EQ(config->head_dim(), 16);
  EXPECT_TRUE(config->IsMemoryLayer(1));
  EXPECT_FALSE(config->IsMemoryLayer(0));
}

TEST(ModelConfigTest, GoldenGqaConfigHasGroupedHeads) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(GoldenConfig("gqa"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_attention_heads, 8);
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_EQ(config->head_dim(), 16);
  EXPECT_EQ(config->max_position_embeddings, 48);
  EXPECT_EQ(config->mem_layers, std::vector<int>({1, 3}));
}

TEST(ModelConfigTest, GoldenTiedConfigTiesEmbeddings) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(GoldenConfig("tied"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_EQ(config->mem_layers, std::vector<int>({0, 2}));
  EXPECT_EQ(config->last_context_length, 20);
}

TEST(ModelConfigTest, GoldenDeepConfigParses) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(GoldenConfig("deep"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_hidden_layers, 6);
  EXPECT_EQ(config->vocab_size, 1000);
  EXPECT_EQ(config->mem_layers, std::vector<int>({2, 4}));
  EXPECT_EQ(config->last_context_length, 32);
}

TEST(ModelConfigTest, LlamaConfigGetsDefaults) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(R"({
      "model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 128})",
                                                             "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->last_context_length, 128);
  EXPECT_TRUE(config->mem_layers.empty());
  EXPECT_TRUE(config->mem_positionals);
  EXPECT_EQ(config->mem_dtype, "float32");
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FLOAT_EQ(config->rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(config->rms_norm_eps, 1e-6f);
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_id, 2);
}

TEST(ModelConfigTest, LlamaConfigIgnoresMemoryFields) {
  Json json = BaseConfig();
  json["model_type"] = "llama";
  json["mem_layers"] = {0, 1};
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json.dump(), "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->mem_layers.empty());
}

TEST(ModelConfigTest, LongllamaLastContextDefaultsTo1024) {
  Json json = BaseConfig();
  json.erase("last_context_length");
  json["max_position_embeddings"] = 2048;
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json.dump(), "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->last_context_length, 1024);
}

TEST(ModelConfigTest, MemLayersAreSorted) {
  Json json = BaseConfig();
  json["mem_layers"] = {2, 0};
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json.dump(), "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mem_layers, std::vector<int>({0, 2}));
}

TEST(ModelConfigTest, NullRopeScalingAndNullTokenIdsAreAccepted) {
  Json json = BaseConfig();
  json["rope_scaling"] = nullptr;
  json["bos_token_id"] = nullptr;
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(json.dump(), "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token_id, 1);
}

TEST(ModelConfigTest, ToJsonRoundTripsLongllama) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile(GoldenConfig("gqa"));
  ASSERT_TRUE(config.ok()) << config.status();
  config->mem_positionals = false;
  config->tie_word_embeddings = true;
  const std::string text = config->ToJson();
  absl::StatusOr<ModelConfig> again = ModelConfig::FromJson(text, "roundtrip");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ToJson(), text);
  EXPECT_FALSE(again->mem_positionals);
  EXPECT_TRUE(again->tie_word_embeddings);
  Json json = Json::parse(text);
  EXPECT_EQ(json["architectures"][0], "LongLlamaForCausalLM");
  EXPECT_EQ(json["torch_dtype"], "float32");
  EXPECT_EQ(json["rms_norm_eps"].get<double>(), 1e-6);  // shortest form, not 9.99999997e-07
}

TEST(ModelConfigTest, ToJsonRoundTripsLlama) {
  ModelConfig config;
  config.model_type = "llama";
  config.vocab_size = 10;
  config.hidden_size = 8;
  config.intermediate_size = 12;
  config.num_hidden_layers = 1;
  config.num_attention_heads = 2;
  config.num_key_value_heads = 1;
  config.max_position_embeddings = 16;
  config.last_context_length = 16;
  const std::string text = config.ToJson("bfloat16");
  Json json = Json::parse(text);
  EXPECT_EQ(json["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(json["torch_dtype"], "bfloat16");
  EXPECT_FALSE(json.contains("mem_layers"));
  absl::StatusOr<ModelConfig> again = ModelConfig::FromJson(text, "roundtrip");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ToJson("bfloat16"), text);
}

TEST(ModelConfigTest, MissingFileNamesThePath) {
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile("/nonexistent/dir/config.json");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("/nonexistent/dir/config.json"), std::string::npos)
      << config.status();
}

TEST(ModelConfigTest, ValidateWithoutSourceSaysConfig) {
  ModelConfig config;
  config.model_type = "llama";
  absl::Status status = config.Validate();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message().substr(0, 8), "config: ") << status;
}

struct BadConfigCase {
  const char* name;
  // Applied to BaseConfig(); or, when `text` is set, the whole file.
  void (*mutate)(Json&);
  const char* text;
  const char* expected;  // substring of the message
};

const BadConfigCase kBadConfigs[] = {
    {"NotJson", nullptr, "{\"model_type\": ", "not valid JSON"},
    {"NotAnObject", nullptr, "[1, 2]", "expected a JSON object"},
    {"MissingModelType", [](Json& j) { j.erase("model_type"); }, nullptr,
     "missing required field 'model_type'"},
    {"UnsupportedModelType", [](Json& j) { j["model_type"] = "mistral"; }, nullptr,
     "model_type \"mistral\" is not supported"},
    {"MissingHiddenSize", [](Json& j) { j.erase("hidden_size"); }, nullptr,
     "missing required field 'hidden_size'"},
    {"HiddenSizeIsString", [](Json& j) { j["hidden_size"] = "64"; }, nullptr,
     "hidden_size must be an integer"},
    {"HiddenSizeIsFraction", [](Json& j) { j["hidden_size"] = 64.5; }, nullptr,
     "hidden_size must be an integer"},
    {"VocabTooLarge", [](Json& j) { j["vocab_size"] = 1e12; }, nullptr,
     "vocab_size must be an integer"},
    {"VocabOutOfIntRange", [](Json& j) { j["vocab_size"] = 1000000000000LL; }, nullptr,
     "vocab_size (1000000000000) is out of range"},
    {"ZeroVocab", [](Json& j) { j["vocab_size"] = 0; }, nullptr, "vocab_size (0) must be positive"},
    {"NegativeIntermediate", [](Json& j) { j["intermediate_size"] = -4; }, nullptr,
     "intermediate_size (-4) must be positive"},
    {"ZeroLayers", [](Json& j) { j["num_hidden_layers"] = 0; }, nullptr,
     "num_hidden_layers (0) must be positive"},
    {"KvHeadsDoNotDivideHeads",
     [](Json& j) {
       j["num_attention_heads"] = 8;
       j["num_key_value_heads"] = 3;
     },
     nullptr, "num_key_value_heads (3) must divide num_attention_heads (8)"},
    {"HiddenNotDivisibleByHeads", [](Json& j) { j["hidden_size"] = 66; }, nullptr,
     "hidden_size (66) must be divisible by num_attention_heads (4)"},
    {"OddHeadDim", [](Json& j) { j["hidden_size"] = 60; }, nullptr, "15 must be even"},
    {"HiddenActNotSilu", [](Json& j) { j["hidden_act"] = "gelu"; }, nullptr,
     "hidden_act \"gelu\" is not supported"},
    {"RopeScalingSet",
     [](Json& j) {
       j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
     },
     nullptr, "rope_scaling {\"factor\":2.0,\"type\":\"linear\"} is not supported"},
    {"AttentionBias", [](Json& j) { j["attention_bias"] = true; }, nullptr,
     "attention_bias = true is not supported"},
    {"HeadDimMismatch", [](Json& j) { j["head_dim"] = 32; }, nullptr,
     "head_dim (32) must equal hidden_size (64) / num_attention_heads (4)"},
    {"MemLayerOutOfRange",
     [](Json& j) {
       j["mem_layers"] = {1, 3};
     },
     nullptr, "mem_layers entry 3 is out of range [0, 3)"},
    {"MemLayerNegative", [](Json& j) { j["mem_layers"] = {-1}; }, nullptr,
     "mem_layers entry -1 is out of range"},
    {"MemLayerTwice",
     [](Json& j) {
       j["mem_layers"] = {1, 1};
     },
     nullptr, "mem_layers lists layer 1 twice"},
    {"MemLayersNotAList", [](Json& j) { j["mem_layers"] = "1,2"; }, nullptr,
     "mem_layers must be a list of integers"},
    {"LastContextZero", [](Json& j) { j["last_context_length"] = 0; }, nullptr,
     "last_context_length (0) must be between 1 and max_position_embeddings (32)"},
    {"LastContextBeyondWindow", [](Json& j) { j["last_context_length"] = 33; }, nullptr,
     "last_context_length (33) must be between 1 and max_position_embeddings (32)"},
    {"LastContextDefaultBeyondWindow", [](Json& j) { j.erase("last_context_length"); }, nullptr,
     "last_context_length (1024) must be between 1"},
    {"NegativeRmsNormEps", [](Json& j) { j["rms_norm_eps"] = -1e-6; }, nullptr,
     "rms_norm_eps (-1e-06) must be positive"},
    {"RopeThetaIsString", [](Json& j) { j["rope_theta"] = "10000"; }, nullptr,
     "rope_theta must be a number"},
    {"TieIsString", [](Json& j) { j["tie_word_embeddings"] = "yes"; }, nullptr,
     "tie_word_embeddings must be true or false"},
    {"UnknownMemDtype", [](Json& j) { j["mem_dtype"] = "int8"; }, nullptr,
     "mem_dtype \"int8\" is not supported"},
};

class BadConfigTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfigTest, IsRejectedWithFileAndFieldInMessage) {
  const BadConfigCase& c = GetParam();
  std::string text = c.text != nullptr ? std::string(c.text) : "";
  if (c.mutate != nullptr) {
    Json json = BaseConfig();
    c.mutate(json);
    text = json.dump();
  }
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(text, "models/x/config.json");
  ASSERT_FALSE(config.ok()) << "accepted: " << text;
  const std::string message(config.status().message());
  EXPECT_EQ(message.rfind("models/x/config.json: ", 0), 0u) << message;
  EXPECT_NE(message.find(c.expected), std::string::npos)
      << "message: " << message << "\nexpected to contain: " << c.expected;
}

INSTANTIATE_TEST_SUITE_P(Cases, BadConfigTest, ::testing::ValuesIn(kBadConfigs),
                         [](const ::testing::TestParamInfo<BadConfigCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(ModelConfigTest, TokenIdsOutsideTheVocabularyAreNamedWithTheirPosition) {
  ModelConfig config;
  config.vocab_size = 10;
  const std::vector<int> ok = {0, 9}, bad = {3, 10};
  EXPECT_TRUE(CheckTokenIds(config, ok).ok());
  const absl::Status status = CheckTokenIds(config, bad);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("token id 10 at position 1"), std::string::npos) << status;
  EXPECT_FALSE(CheckTokenIds(config, std::vector<int>{-1}).ok());
}

TEST(ModelConfigTest, LastContextLengthLiesWithinTheWindow) {
  EXPECT_TRUE(CheckLastContextLength(1, 32).ok());
  EXPECT_TRUE(CheckLastContextLength(32, 32).ok());
  EXPECT_EQ(CheckLastContextLength(0, 32).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckLastContextLength(33, 32).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fot
