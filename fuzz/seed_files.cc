// Seeds of the model-file and tokenizer harnesses (seed_writers.h).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/seed_writers.h"
#include "fuzz/store_files.h"
#include "fuzz/tiny_config.h"
#include "src/checkpoint/npy.h"
#include "src/checkpoint/random_checkpoint.h"

namespace fot::fuzz {
namespace {

namespace fs = std::filesystem;

void CheckOk(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Fail(__FILE__, __LINE__, what + ": " + status.ToString());
}

// A checkpoint of TinyConfig() (or `config`) written by the project's writer.
std::string WriteTinyCheckpoint(const ModelConfig& config, DType dtype, int shards) {
  const std::string dir = FreshDir("seed_checkpoint");
  RandomCheckpointOptions options;
  options.dtype = dtype;
  options.num_shards = shards;
  CheckOk(WriteRandomCheckpoint(dir, config, options), "tiny checkpoint");
  return dir;
}

NpyArray Array(const std::string& dtype, std::vector<int64_t> shape) {
  NpyArray array;
  array.dtype = dtype;
  array.shape = std::move(shape);
  array.bytes.resize(array.num_elements() * NpyItemSize(dtype));
  for (size_t i = 0; i < array.bytes.size(); ++i)
    array.bytes[i] = static_cast<uint8_t>(i * 37 % 11);
  return array;
}

}  // namespace

void WriteSeed(const std::string& dir, const std::string& name, std::string_view bytes) {
  fs::create_directories(dir);
  WriteFileOrDie(dir + "/" + name, bytes);
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(__FILE__, __LINE__, "cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> TreeParts(const std::string& root, const std::string& prefix) {
  std::vector<std::string> paths;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) paths.push_back(fs::relative(entry.path(), root).string());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> parts;
  for (const std::string& path : paths) {
    std::string content = ReadFileOrDie(root + "/" + path);
    if (fs::path(path).filename() == "MANIFEST") content = StarManifest(content);
    parts.push_back(TreePart(prefix + path, content));
  }
  return parts;
}

void WriteSafetensorsSeeds(const std::string& dir) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const std::string model = WriteTinyCheckpoint(TinyConfig(), dtype, 1);
    WriteSeed(dir, std::string("single_") + DTypeName(dtype),
              ReadFileOrDie(model + "/model.safetensors"));
  }
  ModelConfig tied = TinyConfig();
  tied.tie_word_embeddings = true;
  WriteSeed(dir, "tied",
            ReadFileOrDie(WriteTinyCheckpoint(tied, DType::kF32, 1) + "/model.safetensors"));
  const std::string sharded = WriteTinyCheckpoint(TinyConfig(), DType::kF16, 2);
  WriteSeed(dir, "two_shards",
            JoinParts({ReadFileOrDie(sharded + "/model.safetensors.index.json"),
                       ReadFileOrDie(sharded + "/model-00001-of-00002.safetensors"),
                       ReadFileOrDie(sharded + "/model-00002-of-00002.safetensors")}));
}

void WriteModelConfigSeeds(const std::string& dir) {
  ModelConfig llama = TinyConfig();
  llama.model_type = "llama";
  llama.mem_layers.clear();
  llama.last_context_length = llama.max_position_embeddings;
  ModelConfig variants = SmallConfig();
  variants.tie_word_embeddings = true;
  variants.mem_positionals = false;
  variants.mem_dtype = "bfloat16";
  WriteSeed(dir, "tiny", TinyConfig().ToJson());
  WriteSeed(dir, "small", SmallConfig().ToJson("float16"));
  WriteSeed(dir, "llama", llama.ToJson("bfloat16"));
  WriteSeed(dir, "variants", variants.ToJson());
  const std::string source = FOT_SOURCE_DIR;
  WriteSeed(dir, "fot_dict", ReadFileOrDie(source + "/models/fot-dict/config.json"));
  for (const char* golden : {"deep", "gqa", "tied", "tiny"}) {
    WriteSeed(dir, std::string("golden_") + golden,
              ReadFileOrDie(source + "/tests/golden/" + golden + "/config.json"));
  }
}

void WriteNpySeeds(const std::string& dir) {
  const std::string scratch = FreshDir("seed_npy");
  const std::vector<std::pair<std::string, NpyArray>> arrays = {
      {"f4_2x3", Array("<f4", {2, 3})}, {"f8_4", Array("<f8", {4})},
      {"i8_ids", Array("<i8", {5})},    {"i4_ids", Array("<i4", {3})},
      {"u1_empty", Array("|u1", {0})},  {"b1_2", Array("|b1", {2})},
      {"f2_1x1", Array("<f2", {1, 1})}, {"f4_scalar", Array("<f4", {})}};
  for (const auto& [name, array] : arrays) {
    CheckOk(WriteNpy(scratch + "/a.npy", array), "npy seed " + name);
    WriteSeed(dir, name, ReadFileOrDie(scratch + "/a.npy"));
  }
  // Format 2.0 (a 4-byte header length), which WriteNpy only uses for huge
  // headers: the 1.0 file with its preamble rewritten.
  std::string v1 = ReadFileOrDie(dir + "/f4_2x3");
  const uint16_t len = static_cast<uint8_t>(v1[8]) | static_cast<uint8_t>(v1[9]) << 8;
  std::string v2 = v1.substr(0, 6) + std::string("\x02\x00", 2);
  const uint32_t len2 = len - 2;  // the two extra preamble bytes come out of the padding
  v2.append(reinterpret_cast<const char*>(&len2), 4);
  v2 += v1.substr(10, len - 3) + "\n" + v1.substr(10 + len);
  WriteSeed(dir, "f4_2x3_v2", v2);
  WriteSeed(dir, "golden_input_ids",
            ReadFileOrDie(std::string(FOT_SOURCE_DIR) + "/tests/golden/tiny/input_ids.npy"));
}

void WriteTokenizerModelSeeds(const std::string& dir) {
  const std::string scratch = FreshDir("seed_tokenizer");
  WriteFileOrDie(scratch + "/corpus.txt", TokenizerCorpus());
  for (int vocab : {320, 400}) {
    CheckOk(TrainTokenizer(scratch + "/corpus.txt", vocab, scratch + "/t.model"), "tokenizer");
    const std::string model = ReadFileOrDie(scratch + "/t.model");
    WriteSeed(dir, "trained_" + std::to_string(vocab), model);
    WriteSeed(dir, "trained_" + std::to_string(vocab) + "_text",
              JoinParts({model, "Café crème 東京 the quiet   house \xE2\x96\x81 end"}));
  }
}

void WriteDocumentTokenizerSeeds(const std::string& dir) {
  const std::vector<std::vector<std::string>> documents = {
      {"the river sees birds and a bright window."},
      {"the river se", "es birds  and", " a bright", " window. "},
      {"Caf\xC3", "\xA9 cr\xC3\xA8me, na\xC3\xAF", "ve  fa\xC3\xA7",
       "ade: \xC3\xA7"
       "a co\xC3\xBBte 5 \xE2\x82\xAC."},
      {"  stone  and apple and \xE6\x9D\xB1", "\xE4\xBA\xAC window,   the", " \xF0\x9F\x98",
       "\x80 again"},
      {"a house.\n", "a stone.\n\n", "   ", " 999 quiet apples.\n"},
      {"spaces\xE2\x96\x81symbol \xE2\x96", "\x81\xE2\x96\x81 twice", "\t tab"},
      {"invalid \xFF byte"},
      {"", " leading", "", "   trailing   "}};
  for (size_t i = 0; i < documents.size(); ++i) {
    WriteSeed(dir, "document_" + std::to_string(i), JoinParts(documents[i]));
  }
}

}  // namespace fot::fuzz
