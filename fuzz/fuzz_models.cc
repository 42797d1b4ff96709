#include "fuzz/fuzz_models.h"

#include <memory>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "src/checkpoint/random_checkpoint.h"
#include "tests/src/small_model_config.h"

namespace fot::fuzz {

std::string TokenizerCorpus() { return SmallTokenizerCorpus(); }

namespace {

template <typename T>
T ValueOrDie(absl::StatusOr<T> value, const char* what) {
  if (!value.ok()) Fail(__FILE__, __LINE__, std::string(what) + ": " + value.status().ToString());
  return *std::move(value);
}

}  // namespace

ModelConfig SmallConfig() {
  ModelConfig c = SmallModelConfig();
  c.vocab_size = 400;  // the trained tokenizer's
  return c;
}

const std::string& SmallModelDir() {
  static const std::string* dir = [] {
    auto* path = new std::string(FreshDir("small_model"));
    RandomCheckpointOptions options;
    options.init_std = 0.3f;  // as the service tests: logits far from uniform
    const absl::Status written = WriteRandomCheckpoint(*path, SmallConfig(), options);
    if (!written.ok()) Fail(__FILE__, __LINE__, "small model: " + written.ToString());
    return path;
  }();
  return *dir;
}

const Engine& SmallEngine() {
  static const Engine* engine =
      ValueOrDie(Engine::Load(SmallModelDir()), "loading the small model").release();
  return *engine;
}

const Tokenizer& TrainedTokenizer() {
  static const Tokenizer* tokenizer = [] {
    const std::string dir = FreshDir("trained_tokenizer");
    WriteFileOrDie(dir + "/corpus.txt", TokenizerCorpus());
    const absl::Status trained = TrainTokenizer(dir + "/corpus.txt", 400, dir + "/tokenizer.model");
    if (!trained.ok()) Fail(__FILE__, __LINE__, "training the tokenizer: " + trained.ToString());
    return ValueOrDie(Tokenizer::Load(dir + "/tokenizer.model"), "loading the tokenizer").release();
  }();
  return *tokenizer;
}

const Tokenizer& FotDictTokenizer() {
  static const Tokenizer* tokenizer =
      ValueOrDie(Tokenizer::Load(std::string(FOT_SOURCE_DIR) + "/models/fot-dict/tokenizer.model"),
                 "loading models/fot-dict's tokenizer")
          .release();
  return *tokenizer;
}

}  // namespace fot::fuzz
